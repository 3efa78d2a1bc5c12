"""Seg-Grad-CAM / Grad-CAM++ / SmoothGrad for a 3D segmentation model, on the input image's grid.

Entry points: :func:`explain` (an ``nn.Module`` plus its model card as a dict) and
:func:`explain_image` (a model id resolved through :mod:`RadAISegmentLib.models`, or a model
folder). Work is done on a crop around the target (the seed's box, or the bounding box of the
label predicted by a no-grad pass), tiled in model-sized windows; the whole CT is never
back-propagated at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError, LabelError
from ..image import Image, SegmentInfo
from ..io import from_sitk
from ..progress import CancelToken, ProgressCallback
from . import cam
from .grid import bounding_box_kji, pad_to, paste_back, window_starts, working_grid

METHODS = ("gradcam", "gradcampp", "smoothgrad")
#: what users read for each method (picture legends, reports)
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "smoothgrad": "SmoothGrad"}
SMOOTHGRAD_NOTE = "input-gradient saliency; Grad-CAM needs layer access"


@dataclass
class SaliencyResult:
    """``map``: float32 Image on exactly the input image's grid, values in [0, 1].
    ``metadata``: method, layer, label, label_name, model_id, region, all_zero, crop facts."""

    map: Image
    metadata: dict = field(default_factory=dict)
    #: the model's predicted mask of the label (uint16, label value / 0) on the input grid, for display; None if not computed
    labelmap: Optional[Image] = None


@dataclass(frozen=True)
class CardFacts:
    """The few model-card facts saliency needs (see docs/architecture.md, "Model card")."""

    model_id: str
    task: str
    labels: dict            # label value -> name
    spacing_mm: Optional[tuple]   # (i, j, k) mm, None = image spacing
    patch_size_kji: tuple
    normalisation: dict
    prompt_sigma_mm: float

    @staticmethod
    def from_card(card: Mapping[str, Any]) -> "CardFacts":
        spec = card.get("input", {}) or {}
        patch = spec.get("patch_size", [64, 64, 64])
        labels = {int(e["label"]): str(e.get("name", f"Segment_{e['label']}")) for e in card.get("labels", [])}
        spacing = spec.get("spacing_mm")
        return CardFacts(str(card.get("id", "unknown")), str(card.get("task", "segmentation")), labels or {1: "Segment_1"},
                         tuple(float(s) for s in spacing) if spacing else None, tuple(int(p) for p in reversed(patch)),
                         dict(spec.get("normalisation") or {"kind": "none"}),
                         float((spec.get("prompt") or {}).get("sigma_mm", 3.0)))

    @property
    def promptable(self) -> bool:
        return self.task == "promptable-lesion"


def resolve_label(facts: CardFacts, label: Any) -> int:
    """A label value from a value, a numeric string or a (case-insensitive) name on the card."""
    if label is None:
        return min(facts.labels)
    if isinstance(label, (int, np.integer)) or (isinstance(label, str) and label.strip().isdigit()):
        return int(label)
    for value, name in facts.labels.items():
        if name.lower() == str(label).strip().lower():
            return value
    raise LabelError(f"Label {label!r} is not on model {facts.model_id!r}; choose one of "
                     f"{', '.join(f'{v}={n}' for v, n in sorted(facts.labels.items()))}.")


def normalise_intensities(array: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Card intensity normalisation: ``ct_window`` (clip to [a_min, a_max] -> [0, 1]),
    ``zscore_nonzero``, ``percentile`` (lower/upper -> [0, 1]) or none."""
    kind = spec.get("kind", "none")
    array = array.astype(np.float32)
    if kind == "ct_window":
        a_min, a_max = float(spec.get("a_min", -1000)), float(spec.get("a_max", 1000))
        return np.clip((array - a_min) / (a_max - a_min), 0.0, 1.0)
    if kind == "zscore_nonzero":
        values = array[array != 0]
        if values.size == 0:
            return array
        return np.where(array != 0, (array - values.mean()) / max(float(values.std()), 1e-6), 0.0).astype(np.float32)
    if kind == "percentile":
        low, high = np.percentile(array, [float(spec.get("lower", 0.5)), float(spec.get("upper", 99.5))])
        return np.clip((array - low) / max(high - low, 1e-6), 0.0, 1.0)
    return array


def _prompt_channel(grid: Image, seed_lps: np.ndarray, sigma_mm: float) -> np.ndarray:
    """Gaussian (peak 1, sigma in mm) at the seed on the working grid, ``(k, j, i)``."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.array.shape], indexing="ij")
    points = grid.index_to_lps(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
    distance2 = ((points - seed_lps) ** 2).sum(axis=1).reshape(grid.array.shape)
    return np.exp(-distance2 / (2.0 * sigma_mm ** 2)).astype(np.float32)


def _model_input(grid: Image, facts: CardFacts, seed_lps: Optional[np.ndarray]) -> np.ndarray:
    channels = [normalise_intensities(grid.array, facts.normalisation)]
    if facts.promptable:
        channels.append(_prompt_channel(grid, seed_lps, facts.prompt_sigma_mm))
    return np.stack(channels)


def explain(image: Image, model: nn.Module, card: Mapping[str, Any], label: Any = None,
            seed_ras: Optional[Sequence[float]] = None, box_mm: Optional[float | Sequence[float]] = None,
            method: str = "gradcam", layer: Optional[str] = None, region: str = "mask",
            n_samples: int = 8, noise_seed: int = 0, overlap: float = 0.5,
            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> SaliencyResult:
    """Saliency of one label of ``model`` for ``image``, as a [0, 1] float32 map on the image's grid.

    Args:
        card: model-card dict (``id``, ``task``, ``labels``, ``input.spacing_mm`` (i, j, k mm),
            ``input.patch_size`` (i, j, k voxels), ``input.normalisation``).
        label: label value or name (default: the card's first label).
        seed_ras: a point (RAS mm) to centre the crop on; required for promptable-lesion models.
            Without it the crop is the bounding box of the label predicted by a no-grad pass.
        box_mm: crop edge length(s) in mm (default: a promptable model's ``default_box_mm``, as
            segmentation uses; otherwise patch size x spacing).
        method: ``gradcam``, ``gradcampp`` or ``smoothgrad``; TorchScript models always use
            ``smoothgrad`` (no layer hooks), recorded in the metadata.
        layer: Grad-CAM layer name (default: the bottleneck, :func:`cam.find_target_layer`).
        region: ``mask`` (predicted mask of the label), ``box`` (every voxel of the crop) or ``image``.
        overlap: fraction of overlap between sliding windows when the crop exceeds one patch;
            overlapping windows are blended with Gaussian importance weights (sigma = patch / 8),
            so a window whose target sits at its edge counts little.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise InputError(f"Unknown saliency method {method!r}; choose one of {', '.join(METHODS)}.")
    if region not in ("mask", "box", "image"):
        raise InputError(f"Unknown region {region!r}; choose mask, box or image.")
    image.require_finite()
    from ..device import choose_device
    choose_device("cpu")     # saliency runs on the CPU with the full thread budget (also in Dask task threads)
    facts = CardFacts.from_card(card)
    label_value = resolve_label(facts, label)
    requested = method
    if cam.is_torchscript(model) and method != "smoothgrad":
        method = "smoothgrad"
    model.eval()
    patch = np.asarray(facts.patch_size_kji)
    seed_lps = None if seed_ras is None else np.asarray(image.index_to_lps(image.ras_to_index(np.asarray(seed_ras, float))))
    if facts.promptable and seed_lps is None:
        raise InputError(f"Model {facts.model_id!r} is promptable: give a seed point (--seed R,A,S) inside the lesion.")

    prompt = ((card.get("input") or {}).get("prompt") or {}) if isinstance(card, dict) else {}
    if facts.promptable and box_mm is None and prompt.get("default_box_mm"):
        box_mm = float(prompt["default_box_mm"])    # the same region segmentation uses by default
    if seed_lps is not None:
        size_mm = (np.full(3, float(box_mm)) if np.isscalar(box_mm) else np.asarray(box_mm, float)) if box_mm is not None \
            else patch[::-1] * np.asarray(facts.spacing_mm or image.spacing_mm)
        spacing = size_mm / patch[::-1] if facts.promptable else (facts.spacing_mm or image.spacing_mm)
        use_lesion_crop = facts.promptable and facts.normalisation.get("kind") != "none"
        card_input = (card.get("input") or {}) if isinstance(card, dict) else {}
        grid, inputs = (_lesion_preprocessing(image, seed_ras, size_mm, patch, card_input) if use_lesion_crop
                        else (None, None))
        if grid is None:
            grid = working_grid(image, seed_lps, size_mm, spacing)
        low, high = np.zeros(3, int), np.asarray(grid.array.shape)
        if region == "mask" and np.any(high > patch):  # large box: find the label inside it first
            low, high = _predicted_bounds(model, _model_input(grid, facts, seed_lps), label_value, patch, overlap, cancel)
    else:
        extent_mm = np.asarray(image.shape_ijk) * np.asarray(image.spacing_mm)
        centre = image.index_to_lps((np.asarray(image.shape_ijk) - 1) / 2.0)
        grid = working_grid(image, centre, extent_mm, facts.spacing_mm)
        size_mm = extent_mm
        low, high = _predicted_bounds(model, _model_input(grid, facts, None), label_value, patch, overlap, cancel)

    if seed_lps is None or inputs is None:
        inputs = _model_input(grid, facts, seed_lps)
    total = np.zeros(grid.array.shape, np.float32)
    counts = np.zeros(grid.array.shape, np.float32)
    predicted = np.zeros(grid.array.shape, np.float32)
    origins = window_origins(low, high, patch, np.asarray(grid.array.shape), overlap)
    chosen_layer, facts_window, results = None, {}, []
    importance = gaussian_importance(patch)
    background = float(inputs[0].min())
    for index, origin in enumerate(origins):
        if cancel is not None:
            cancel.raise_if_cancelled()
        window = tuple(slice(int(o), int(o + p)) for o, p in zip(origin, patch))
        block = inputs[(slice(None),) + window]
        valid = block.shape[1:]
        padded = np.stack([pad_to(c, patch, background if n == 0 else 0.0) for n, c in enumerate(block)])
        tensor = torch.from_numpy(np.ascontiguousarray(padded))[None]
        region_tensor = None if region == "mask" else torch.ones(tuple(patch), dtype=torch.bool)
        if method == "smoothgrad":
            raw, facts_window = cam.smoothgrad(model, tensor, label_value, region_tensor, n_samples=n_samples,
                                               seed=noise_seed, image_channels=1)
        else:
            chosen_layer = chosen_layer or layer or cam.find_target_layer(model, tensor)
            raw, facts_window = cam.gradcam(model, tensor, label_value, region_tensor, chosen_layer,
                                            plus_plus=(method == "gradcampp"))
        crop = tuple(slice(0, v) for v in valid)
        predicted[window] = np.maximum(predicted[window], facts_window["predicted"][crop].astype(np.float32))
        results.append((window, raw[crop], facts_window["region_kind"]))
        if progress is not None:
            progress((index + 1) / len(origins), f"saliency window {index + 1}/{len(origins)}")
    kinds = sorted({kind for _, _, kind in results})
    if len(kinds) > 1:  # some windows hold the predicted label: windows without it add no evidence
        results = [entry for entry in results if entry[2] != "whole_window_no_prediction"]
    for window, raw_window, _ in results:
        weight = importance[tuple(slice(0, w.stop - w.start) for w in window)]
        total[window] += raw_window * weight
        counts[window] += weight
    raw_map = np.divide(total, counts, out=np.zeros_like(total), where=counts > 0)
    normalised, all_zero = cam.normalise_map(raw_map)
    on_input, _ = cam.normalise_map(paste_back(grid.with_array(normalised), image))  # peak 1 after interpolation
    metadata = {
        "method": method, "requested_method": requested, "layer": chosen_layer if method != "smoothgrad" else None,
        "label": label_value, "label_name": facts.labels.get(label_value, f"Segment_{label_value}"),
        "model_id": facts.model_id, "region": region, "region_kind": ",".join(sorted({k for _, _, k in results})),
        "all_zero": bool(all_zero), "n_windows": len(origins),
        "crop_size_mm": [float(s) for s in np.asarray(size_mm)], "working_spacing_mm": list(grid.spacing_mm),
        "seed_ras": None if seed_ras is None else [float(v) for v in seed_ras],
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    if method == "smoothgrad":
        metadata.update(note=SMOOTHGRAD_NOTE, n_samples=int(n_samples), noise_seed=int(noise_seed))
    saliency = image.with_array(on_input, saliency_method=method, saliency_label=label_value)
    mask_on_input = (paste_back(grid.with_array(predicted), image) >= 0.5).astype(np.uint16) * np.uint16(label_value)
    labelmap = image.with_array(mask_on_input, segments=[SegmentInfo(label_value, metadata["label_name"])])
    if facts.promptable and seed_ras is not None and int((card.get("input") or {}).get("channels", 2)) >= 5:
        labelmap = _lesion_outline(image, model, card, seed_ras, float(np.asarray(size_mm, float).ravel()[0]))
        mask_on_input = labelmap.array
    metadata["predicted_voxels"] = int(np.count_nonzero(mask_on_input))
    return SaliencyResult(saliency, metadata, labelmap)


def _lesion_outline(image: Image, model: nn.Module, card: Mapping[str, Any], seed_ras, box_mm: float) -> Image:
    """The lesion outline exactly as ``radai segment`` gives it for the same seed and box (component at the
    seed, footprint paste-back), so a saliency picture shows the segmentation the user gets."""
    from types import SimpleNamespace
    from ..lesion.predict import segment_prompts
    from ..lesion.prompts import LesionPrompt
    loaded = SimpleNamespace(network=model, card=SimpleNamespace(as_dict=lambda: dict(card), id=card.get("id")),
                             segments=None)
    prompt = LesionPrompt(seed_ras=tuple(float(v) for v in seed_ras), box_mm=box_mm)
    return segment_prompts(image, [prompt], loaded, "cpu")[0]


def _lesion_preprocessing(image: Image, seed_ras, size_mm: np.ndarray, patch: np.ndarray, card_input: dict):
    """For promptable-lesion models: the lesion model's OWN crop -> fixed grid + prompt channels
    (:func:`RadAISegmentLib.lesion.preprocess.build_crop` with the card's prompt settings: seed and box for
    lesion-roi 2.x, seed Gaussian for 1.x), so the map is computed on exactly
    the model's input and pasted back through the same geometry. ``(None, None)`` when that module
    is unavailable or the box is not a cube (then the generic crop is used). Cards whose
    normalisation is ``{"kind": "none"}`` (pre-normalised inputs, tests) also use the generic crop."""
    try:
        from ..lesion import preprocess
    except ImportError:
        return None, None
    if len(set(int(p) for p in patch)) != 1 or not np.allclose(size_mm, size_mm[0]):
        return None, None
    from ..lesion.prompts import LesionPrompt
    settings = preprocess.PromptSettings.from_card(card_input)
    settings = preprocess.PromptSettings(int(patch[0]), settings.channels, settings.default_box_mm,
                                         settings.ct_normalisation)
    crop = preprocess.build_crop(image, LesionPrompt(seed_ras=tuple(float(v) for v in seed_ras),
                                                     box_mm=float(size_mm[0])), settings)
    grid = from_sitk(crop.reference)
    return grid.with_array(np.zeros(grid.array.shape, np.float32)), crop.tensor.astype(np.float32)


def window_origins(low: np.ndarray, high: np.ndarray, patch: np.ndarray, grid_shape: np.ndarray,
                   overlap: float) -> list[np.ndarray]:
    """Window origins (k, j, i) on the working grid covering the target bounds ``[low, high)``: one
    window CENTRED on the target when it fits in a patch (Grad-CAM of a target at a window's edge
    is unreliable), else overlapping tiles over the bounds. Clamped inside the grid."""
    limit = np.maximum(grid_shape - patch, 0)
    extent = np.asarray(high) - np.asarray(low)
    if np.all(extent <= patch):
        centre = (np.asarray(low) + np.asarray(high)) / 2.0
        return [np.clip(np.round(centre - patch / 2.0).astype(int), 0, limit)]
    crop = np.maximum(extent, patch)
    return [np.clip(np.asarray(low) + np.array([a, b, c]), 0, limit)
            for a in window_starts(crop[0], patch[0], overlap) for b in window_starts(crop[1], patch[1], overlap)
            for c in window_starts(crop[2], patch[2], overlap)]


def gaussian_importance(patch_kji: Sequence[int], sigma_fraction: float = 0.125) -> np.ndarray:
    """Separable Gaussian weights over a patch (peak 1 at the centre, sigma = ``sigma_fraction`` x edge)."""
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2.0) / max(n * sigma_fraction, 1e-3)) ** 2) for n in patch_kji]
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return np.maximum(weights, 1e-3).astype(np.float32)


def _predicted_bounds(model: nn.Module, inputs: np.ndarray, label: int, patch: np.ndarray, overlap: float,
                      cancel: Optional[CancelToken]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (k, j, i) on the working grid of the label's predicted mask (no-grad windows), with a
    margin of a quarter patch; the whole grid when the label is not predicted anywhere."""
    shape = np.asarray(inputs.shape[1:])
    mask = np.zeros(tuple(shape), bool)
    background = float(inputs[0].min())
    for a in window_starts(shape[0], patch[0], overlap):
        for b in window_starts(shape[1], patch[1], overlap):
            for c in window_starts(shape[2], patch[2], overlap):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                window = tuple(slice(s, s + p) for s, p in zip((a, b, c), patch))
                block = inputs[(slice(None),) + window]
                padded = np.stack([pad_to(ch, patch, background if n == 0 else 0.0) for n, ch in enumerate(block)])
                with torch.no_grad():
                    logits = model(torch.from_numpy(np.ascontiguousarray(padded))[None])
                predicted = cam.predicted_mask(logits, label).numpy()
                valid = tuple(slice(0, v) for v in block.shape[1:])
                mask[window] |= predicted[valid]
    bounds = bounding_box_kji(mask)
    if bounds is None:
        return np.zeros(3, int), shape
    margin = patch // 4
    return np.maximum(bounds[0] - margin, 0), np.minimum(bounds[1] + margin, shape)
