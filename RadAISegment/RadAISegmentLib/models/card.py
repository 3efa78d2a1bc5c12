"""Model card (``card.json``): parsing and validation (format in docs/architecture.md)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import ModelError
from ..image import SegmentInfo, TerminologyCode, default_color

TASKS = ("segmentation", "promptable-lesion", "brain-extraction")
FORMATS = ("state_dict", "torchscript", "monai_bundle", "nnunet_v2")
NORMALISATION_KINDS = ("ct_window", "scale_range", "zscore", "zscore_nonzero", "percentile", "scale_minmax", "none")


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise ModelError(f"Model card {where}: missing required field '{key}'; add it to card.json.")
    return data[key]


def _code(data: Optional[Mapping[str, Any]]) -> Optional[TerminologyCode]:
    if not data:
        return None
    return TerminologyCode(value=str(data.get("value", "")), scheme=str(data.get("scheme", "SCT")),
                           meaning=str(data.get("meaning", "")))


def parse_normalisation(value: Any, where: str) -> list[dict]:
    """Normalisation steps as a list of dicts with a ``kind`` in :data:`NORMALISATION_KINDS`."""
    steps = value if isinstance(value, list) else [value] if value else []
    for step in steps:
        if not isinstance(step, Mapping) or step.get("kind") not in NORMALISATION_KINDS:
            raise ModelError(f"Model card {where}: input.normalisation step {step!r} is invalid; "
                             f"'kind' must be one of {', '.join(NORMALISATION_KINDS)}.")
    return [dict(s) for s in steps]


@dataclass(frozen=True)
class ModelCard:
    """A validated model card. ``folder`` is where card.json and the weights live."""

    id: str
    title: str
    version: str
    task: str
    modality: tuple[str, ...]
    labels: tuple[SegmentInfo, ...]
    spacing_mm: Optional[tuple[float, float, float]]
    channels: int
    patch_size: Optional[tuple[int, ...]]
    normalisation: list[dict]
    network: dict
    weights: dict
    licence: str = ""
    provenance: str = ""
    metrics: dict = field(default_factory=dict)
    trusted: bool = False
    folder: Optional[Path] = None
    raw: dict = field(default_factory=dict)

    @property
    def weights_sha256(self) -> str:
        """The weights' SHA-256; for models of several files (``weights.files``) a digest over all of them."""
        files = self.weights.get("files")
        if files:
            import hashlib
            text = json.dumps(sorted((str(f.get("file")), str(f.get("sha256"))) for f in files))
            return hashlib.sha256(text.encode()).hexdigest()
        return str(self.weights.get("sha256", ""))

    @property
    def format(self) -> str:
        return str(self.network["format"])

    def as_dict(self) -> dict:
        return dict(self.raw)

    def summary_text(self, max_metrics: int = 6) -> str:
        """A few lines for users choosing a model: title, modality, labels, licence, measured metrics."""
        labels = ", ".join(info.name for info in self.labels[:8]) + (" …" if len(self.labels) > 8 else "")
        lines = [f"{self.title} ({self.id} {self.version})", f"Task: {self.task}; modality: {', '.join(self.modality)}",
                 f"Labels ({len(self.labels)}): {labels}", f"Licence: {self.licence or 'not stated'}"]
        measured = [f"{name} {value:.3g}" for name, value in _measured(self.metrics)][:max_metrics]
        lines.append("Measured: " + ("; ".join(measured) if measured else "no metrics in the card"))
        return "\n".join(lines)


def _measured(metrics: Mapping[str, Any], prefix: str = ""):
    """``(path, value)`` of the card's model metrics worth showing: Dice and volume error of the model
    (not of baselines), depth first."""
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if key == "real_tumours" and isinstance(value, Mapping) and isinstance(value.get("models"), Mapping):
            yield from _real_tumours(value["models"])
        elif isinstance(value, Mapping) and "baseline" not in key:
            yield from _measured(value, f"{path} " if key not in ("model", "real_tumours") else prefix)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and (
                "dice" in key and "offset" not in key or "volume_error" in key):
            yield path.replace("_", " "), float(value)


def _real_tumours(models: Mapping[str, Any]):
    """An interactive lesion model's real-tumour record (``{model: {case: [rows per click]}}``, the card's own
    model first): each case's Dice and volume error without clicks."""
    for case, rows in next(iter(models.values()), {}).items():
        if rows and isinstance(rows[0], Mapping):
            for name in ("dice", "volume_error_percent"):
                if isinstance(rows[0].get(name), (int, float)):
                    yield f"{case} {name.replace('_', ' ')}", float(rows[0][name])


def parse_card(data: Mapping[str, Any], folder: Optional[Path] = None) -> ModelCard:
    """Validate a card dict; raises :class:`ModelError` naming the first missing/invalid field."""
    if not isinstance(data, Mapping):
        raise ModelError("Model card must be a JSON object; check card.json.")
    where = f"'{data.get('id', folder or '?')}'"
    model_id = str(_require(data, "id", where))
    if "/" in model_id or "\\" in model_id or model_id.startswith("."):
        raise ModelError(f"Model card {where}: id '{model_id}' must be a plain name (no slashes).")
    task = str(_require(data, "task", where))
    if task not in TASKS:
        raise ModelError(f"Model card {where}: task '{task}' is not one of {', '.join(TASKS)}.")
    network = dict(_require(data, "network", where))
    if network.get("format") not in FORMATS:
        raise ModelError(f"Model card {where}: network.format must be one of {', '.join(FORMATS)}, "
                         f"got {network.get('format')!r}.")
    if network["format"] == "state_dict" and not network.get("name"):
        raise ModelError(f"Model card {where}: a state_dict network needs network.name (a MONAI network).")
    weights = dict(_require(data, "weights", where))
    if not (weights.get("file") or weights.get("package") or weights.get("url")):
        raise ModelError(f"Model card {where}: weights needs 'file' (or 'package'/'url').")
    sha = str(weights.get("sha256", ""))
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        raise ModelError(f"Model card {where}: weights.sha256 must be 64 hex digits, got '{sha}'.")
    labels = []
    for entry in data.get("labels", []):
        if not isinstance(entry, Mapping) or "label" not in entry or "name" not in entry:
            raise ModelError(f"Model card {where}: each label needs 'label' and 'name', got {entry!r}.")
        value = int(entry["label"])
        if value <= 0 or value > 255:
            raise ModelError(f"Model card {where}: label values must be 1..255, got {value}.")
        labels.append(SegmentInfo(label=value, name=str(entry["name"]),
                                  color_rgb=tuple(entry.get("color_rgb") or default_color(value)),
                                  category=_code(entry.get("category")), type=_code(entry.get("type"))))
    if task != "segmentation" or network["format"] != "monai_bundle":
        if not labels:
            raise ModelError(f"Model card {where}: 'labels' is empty; list the labels the model writes.")
    model_input = dict(data.get("input", {}))
    spacing = model_input.get("spacing_mm")
    if spacing is not None:
        if len(spacing) != 3 or any(float(s) <= 0 for s in spacing):
            raise ModelError(f"Model card {where}: input.spacing_mm must be three positive numbers, got {spacing}.")
        spacing = tuple(float(s) for s in spacing)
    channels = int(model_input.get("channels", 1))
    if channels < 1:
        raise ModelError(f"Model card {where}: input.channels must be >= 1.")
    patch = model_input.get("patch_size")
    modality = data.get("modality", [])
    modality = (modality,) if isinstance(modality, str) else tuple(str(m) for m in modality)
    return ModelCard(id=model_id, title=str(data.get("title", model_id)), version=str(data.get("version", "0")),
                     task=task, modality=modality, labels=tuple(labels), spacing_mm=spacing, channels=channels,
                     patch_size=tuple(int(p) for p in patch) if patch else None,
                     normalisation=parse_normalisation(model_input.get("normalisation"), where),
                     network=network, weights=weights, licence=str(data.get("licence", "")),
                     provenance=str(data.get("provenance", "")), metrics=dict(data.get("metrics", {})),
                     trusted=bool(data.get("trusted", False)), folder=folder, raw=dict(data))


def load_card(folder: str | Path) -> ModelCard:
    """Read and validate ``folder/card.json``."""
    folder = Path(folder)
    path = folder / "card.json"
    if not path.is_file():
        raise ModelError(f"No card.json in {folder}; a model folder needs a card (see docs/architecture.md).")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelError(f"{path} is not valid JSON ({error}); fix the card.") from error
    return parse_card(data, folder)
