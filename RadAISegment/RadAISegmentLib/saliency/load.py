"""Model resolution for saliency: :mod:`RadAISegmentLib.models` when installed, otherwise a
model folder (``card.json`` + weights) loaded safely here (TorchScript, or a state dict of an
allow-listed MONAI network read with ``torch.load(weights_only=True)``; SHA-256 checked)."""
from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from ..errors import ChecksumError, ModelError
from ..image import Image
from .explain import SaliencyResult, explain

#: networks a state-dict card may name (no arbitrary imports from card text)
ALLOWED_NETWORKS = {
    "monai.networks.nets.UNet", "monai.networks.nets.BasicUNet", "monai.networks.nets.SegResNet",
    "monai.networks.nets.DynUNet", "monai.networks.nets.UNETR", "monai.networks.nets.SwinUNETR",
}


def _card_as_dict(card: Any) -> dict:
    for attribute in ("as_dict", "to_dict", "raw"):
        value = getattr(card, attribute, None)
        if callable(value):
            return dict(value())
        if isinstance(value, Mapping):
            return dict(value)
    if isinstance(card, Mapping):
        return dict(card)
    return dict(vars(card))


def _from_models_package(model_id: str) -> Optional[tuple[nn.Module, dict]]:
    try:
        models = importlib.import_module("RadAISegmentLib.models")
        load_model = getattr(models, "load_model", None) or importlib.import_module("RadAISegmentLib.inference").load_model
    except (ImportError, AttributeError):
        return None
    loaded = load_model(model_id, device="cpu")
    network = next((getattr(loaded, n) for n in ("network", "module", "model", "net") if isinstance(getattr(loaded, n, None), nn.Module)), None)
    if network is None:
        raise ModelError(f"Model {model_id!r} loaded, but no torch network was found on it; saliency needs a torch model.")
    return network, _card_as_dict(loaded.card)


def load_model_folder(folder: Path) -> tuple[nn.Module, dict]:
    """Load a model folder (``card.json`` + weights) safely; returns ``(network, card dict)``."""
    card_path = folder / "card.json"
    if not card_path.is_file():
        raise ModelError(f"{folder} has no card.json; pass an installed model id or a model folder.")
    card = json.loads(card_path.read_text())
    weights = folder / card.get("weights", {}).get("file", "model.pt")
    if not weights.is_file():
        raise ModelError(f"Weights file {weights} is missing; reinstall the model.")
    expected = card.get("weights", {}).get("sha256")
    if expected and hashlib.sha256(weights.read_bytes()).hexdigest() != expected.lower():
        raise ChecksumError(f"{weights.name} does not match the SHA-256 on its card; the file is corrupt or "
                            "was replaced. Reinstall the model.")
    network_spec = card.get("network", {})
    if network_spec.get("format") == "torchscript":
        return torch.jit.load(str(weights), map_location="cpu"), card
    name = network_spec.get("name", "")
    if network_spec.get("format") != "state_dict" or name not in ALLOWED_NETWORKS:
        raise ModelError(f"Network {name!r} ({network_spec.get('format')}) is not loadable here; supported: "
                         f"torchscript, or state_dict of {', '.join(sorted(ALLOWED_NETWORKS))}.")
    module_name, class_name = name.rsplit(".", 1)
    network = getattr(importlib.import_module(module_name), class_name)(**network_spec.get("parameters", {}))
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return network.eval(), card


def load_for_saliency(model_id: str) -> tuple[nn.Module, dict]:
    """``(network, card dict)`` for a model folder path or an installed/shipped model id."""
    path = Path(model_id)
    if path.is_dir():
        return load_model_folder(path)
    loaded = _from_models_package(model_id)
    if loaded is not None:
        return loaded
    shipped = Path(__file__).resolve().parents[3] / "Resources" / "Models" / model_id
    if shipped.is_dir():
        return load_model_folder(shipped)
    raise ModelError(f"Model {model_id!r} is not installed; list models with `radai models` or pass a model folder.")


def explain_image(image: Image, model_id: str, label: Any = None, seed_ras: Optional[Sequence[float]] = None,
                  method: Optional[str] = None, **kwargs: Any) -> SaliencyResult:
    """:func:`explain` for a model given by id (or folder); the entry point batch and demo use.

    ``method`` defaults to the card's ``saliency.method`` (the one its authors measured to localise
    best, see docs/lesion-model.md), else Grad-CAM."""
    network, card = load_for_saliency(model_id)
    card.setdefault("id", model_id)
    method = method or (card.get("saliency") or {}).get("method") or "gradcam"
    return explain(image, network, card, label=label, seed_ras=seed_ras, method=method, **kwargs)
