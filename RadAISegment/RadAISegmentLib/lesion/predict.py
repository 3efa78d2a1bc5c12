"""Segment lesions from prompts (seed, box, include/exclude clicks, a previous outline) with the lesion model.

Every lesion is one crop (:mod:`.preprocess`); all crops go through the network in one batch, averaged over
the input's flips along the card's mirror axes (lesion-roi 2.3: all three, 8 passes; earlier: left-right). Back on the input grid (footprint probabilities), a lesion keeps the connected
parts of ``p ≥ 0.5`` that hold one of its positive points (seed, include clicks), or, when none does, the part
nearest its seed; inside a drawn box only. Each lesion's volume comes with a range (:mod:`.uncertainty`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..device import choose_device, precision_report, run_with_cpu_fallback
from ..errors import InputError
from ..image import Image, SegmentInfo, TerminologyCode
from ..progress import CancelToken, ProgressCallback
from .preprocess import PromptSettings, build_crop, paste_back_probability
from .prompts import LesionPrompt
from .uncertainty import probability_volume_range

LESION_SEGMENT = SegmentInfo(1, "Lesion", (0.95, 0.35, 0.2),
                             TerminologyCode("49755003", "SCT", "Morphologically Altered Structure"),
                             TerminologyCode("108369006", "SCT", "Neoplasm"))


@dataclass(frozen=True)
class LesionVolume:
    """One lesion's result: its label, volume and stated range (mL), voxel count."""

    label: int
    volume_ml: float
    volume_range_ml: tuple[float, float]
    voxels: int

    def as_dict(self) -> dict:
        return {"label": self.label, "volume_ml": round(self.volume_ml, 4),
                "volume_range_ml": [round(self.volume_range_ml[0], 4), round(self.volume_range_ml[1], 4)],
                "voxels": self.voxels}


def load_lesion_model(model_dir, device: str = "cpu"):
    """Load a lesion model folder (``card.json`` + state dict ``model.pt``, SHA-256 checked,
    ``torch.load(weights_only=True)``) through the generic loader :func:`models.loaders.load_model_folder`."""
    from ..models.loaders import load_model_folder
    model = load_model_folder(model_dir)
    model.network.to(device).eval()
    return model


def _card(model) -> dict:
    card = getattr(model, "card", None)
    return card.as_dict() if card is not None and hasattr(card, "as_dict") else {}


def prompt_settings(model) -> PromptSettings:
    """The model's input conventions from its card (a bare network without card: lesion-roi 1.x)."""
    return PromptSettings.from_card(_card(model).get("input", {}))


def uncertainty_scales(model) -> tuple[float, float]:
    calibration = _card(model).get("uncertainty", {})
    return float(calibration.get("scale_low", 1.0)), float(calibration.get("scale_high", 1.0))


def mirror_flips(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of flips along ``mirror_axes`` (crop axes), the identity first: 2**len of them."""
    axes = sorted(set(int(a) for a in mirror_axes))
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


def predict_probabilities(network: torch.nn.Module, tensors: np.ndarray, device: str = "cpu",
                          mirror_axes: Sequence[int] = (2,), autocast=None) -> np.ndarray:
    """Sigmoid probabilities ``[n, g, g, g]`` for a batch ``[n, c, g, g, g]``, averaged over every flip of
    the input along ``mirror_axes`` (crop axes 0 k, 1 j, 2 i; the model card says which: lesion-roi 2.x was
    trained with flips along all three, 1.x runs left-right only; ``()``: one plain pass). One forward pass per
    flip, so memory stays that of the batch. ``autocast``: a context manager for the forward pass (the device
    choice's, e.g. CPU bfloat16, as the model was trained); fp32 without."""
    import contextlib
    network.eval()
    batch = np.asarray(tensors, dtype=np.float32)
    total = None
    flips = mirror_flips(mirror_axes)
    for flip in flips:
        flipped = np.flip(batch, axis=tuple(a + 2 for a in flip)) if flip else batch
        inputs = torch.from_numpy(np.ascontiguousarray(flipped)).to(device)
        if inputs.ndim == 5:
            inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
        with torch.no_grad(), (autocast if autocast is not None else contextlib.nullcontext()):
            probability = torch.sigmoid(network(inputs).float()).cpu().numpy()[:, 0]
        probability = np.flip(probability, axis=tuple(a + 1 for a in flip)) if flip else probability
        total = probability.copy() if total is None else total + probability
    return total / len(flips)


def component_at_seed(mask: np.ndarray, seed_index_kji: np.ndarray) -> np.ndarray:
    """The 26-connected component containing the seed voxel, else the one nearest to it."""
    return select_components(mask, [seed_index_kji], seed_index_kji)


def select_components(mask: np.ndarray, positive_kji: Sequence[np.ndarray], seed_kji: Optional[np.ndarray]
                      ) -> np.ndarray:
    """The 26-connected parts of ``mask`` holding a positive point; when none does, the part nearest
    ``seed_kji`` (or the largest without a seed)."""
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count <= 1:
        return mask
    shape = np.array(mask.shape)
    hits = set()
    for point in positive_kji:
        index = tuple(int(round(v)) for v in np.clip(point, 0, shape - 1))
        if components[index]:
            hits.add(int(components[index]))
    if not hits:
        if seed_kji is None:
            hits = {1 + int(np.argmax(np.bincount(components.ravel())[1:]))}
        else:
            centres = ndimage.center_of_mass(mask, components, range(1, count + 1))
            hits = {1 + int(np.argmin([np.linalg.norm(np.subtract(c, seed_kji)) for c in centres]))}
    return np.isin(components, sorted(hits))


def _previous_for(previous: Optional[Image], number: int, count: int) -> Optional[np.ndarray]:
    if previous is None:
        return None
    labels = previous.array
    if count == 1 and not np.any(labels == number):
        return labels > 0
    return labels == number


def segment_prompts(image: Image, prompts: Sequence[LesionPrompt], model, device: str = "auto",
                    previous: Optional[Image] = None, progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None, precision: str = "auto",
                    probability_maps: Optional[list] = None) -> tuple[Image, list[LesionVolume]]:
    """uint8 labelmap on the input grid, label ``n`` for ``prompts[n-1]``, and each lesion's volume and range.

    ``previous``: a labelmap on the input grid to refine (label ``n`` is lesion ``n``; with one prompt, any
    label). Where two lesions overlap, the earlier prompt keeps the voxel. Bad prompts raise
    :class:`InputError` before any work is done. ``precision``: ``auto`` runs lesion-roi 2.x in bfloat16 on
    CPUs with bf16 instructions (as it was trained), ``fp32`` forces single precision. ``probability_maps``: a
    list to which each lesion's ``(region, probability)`` on the input grid is appended (``region``: slices
    ``[k, j, i]`` of the input array; for diagnostics such as :func:`.evaluate.best_cutoff`).
    """
    if not len(prompts):
        raise InputError("No lesion prompt given; give a seed point R,A,S (mm) inside the lesion or a box around it.")
    image.require_finite()
    if previous is not None:
        image.require_same_grid(previous, "outline to refine")
    settings = prompt_settings(model)
    if not settings.interactive and any(p.include_ras or p.exclude_ras or p.box_corners_ras for p in prompts):
        raise InputError(f"Model '{getattr(getattr(model, 'card', None), 'id', 'lesion')}' takes only a seed and a "
                         "box size; correction clicks and drawn boxes need lesion-roi 2.x.")
    crops = [build_crop(image, prompt, settings, _previous_for(previous, n, len(prompts)) if settings.interactive
                        else None) for n, prompt in enumerate(prompts, start=1)]
    if cancel is not None:
        cancel.raise_if_cancelled()
    if progress:
        progress(0.2, f"lesion: running the network on {len(crops)} crop(s)")
    network = getattr(model, "network", model)
    batch = np.stack([c.tensor for c in crops])
    choice = choose_device(device or "auto", precision if settings.interactive else "fp32")
    ran = []

    def forward(run):
        ran.append(run)
        return predict_probabilities(network.to(run.device), batch, run.device, settings.mirror_axes,
                                     autocast=run.autocast())
    probabilities = run_with_cpu_fallback(forward, choice)
    result = np.zeros(image.array.shape, np.uint8)
    volumes = []
    scale_low, scale_high = uncertainty_scales(model)
    for number, (prompt, crop, probability) in enumerate(zip(prompts, crops, probabilities), start=1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        region, values = paste_back_probability(probability, crop, image, footprint=settings.interactive)
        if probability_maps is not None:
            probability_maps.append((region, values))
        offset = np.array([s.start for s in region], float)
        mask = values >= 0.5
        if prompt.box_corners_ras is not None:
            from .prompts import box_in_index_space
            low, high = box_in_index_space(image, prompt.box_corners_ras)
            k, j, i = np.meshgrid(*(np.arange(s.start, s.stop) for s in region), indexing="ij")
            mask &= (i >= low[0] - 0.5) & (i <= high[0] + 0.5) & (j >= low[1] - 0.5) & (j <= high[1] + 0.5) \
                & (k >= low[2] - 0.5) & (k <= high[2] + 0.5)
        positive = [image.ras_to_index(p)[::-1] - offset for p in prompt.positive_points_ras()]
        seed = positive[0] if positive else None
        if mask.any():
            mask = select_components(mask, positive, seed)
        free = result[region] == 0
        mask &= free
        result[region][mask] = number
        volume, low_ml, high_ml = probability_volume_range(values, mask, image.spacing_mm[::-1], scale_low, scale_high)
        volumes.append(LesionVolume(number, volume, (low_ml, high_ml), int(mask.sum())))
        if progress:
            progress(0.2 + 0.8 * number / len(crops), f"lesion {number}/{len(crops)} done")
    base = model.segments[0] if getattr(model, "segments", None) else LESION_SEGMENT
    segments = [SegmentInfo(n, base.name if len(crops) == 1 else f"{base.name} {n}", base.color_rgb, base.category,
                            base.type) for n in range(1, len(crops) + 1)]
    labelmap = image.with_array(result, segments=segments,
                                volume_range_ml={v.label: list(v.volume_range_ml) for v in volumes},
                                inference_precision=precision_report(ran[-1]), inference_device=str(ran[-1].device))
    return labelmap, volumes


def segment_lesions(image: Image, seeds_ras: Sequence[Sequence[float]], box_mm: Optional[float], model,
                    device: str = "cpu", progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None) -> Image:
    """uint8 labelmap on the input grid with label ``n`` (1-based) for the lesion at ``seeds_ras[n-1]`` (RAS mm),
    each in a cube of ``box_mm`` (default: the card's) around its seed."""
    if not len(seeds_ras):
        raise InputError("No seed points given; give at least one R,A,S point (mm) inside the lesion.")
    prompts = [LesionPrompt(seed_ras=tuple(float(v) for v in seed), box_mm=box_mm) for seed in seeds_ras]
    return segment_prompts(image, prompts, model, device, None, progress, cancel)[0]


def segment_lesion(image: Image, seed_ras: Sequence[float], box_mm: Optional[float], model, device: str = "cpu",
                   progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> Image:
    """uint8 labelmap on the input grid: 1 inside the lesion at ``seed_ras`` (RAS mm), 0 elsewhere."""
    return segment_lesions(image, [seed_ras], box_mm, model, device, progress, cancel)
