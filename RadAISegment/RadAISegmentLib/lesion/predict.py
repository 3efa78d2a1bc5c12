"""Segment a lesion from a seed point (RAS mm) with the promptable lesion model."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..device import choose_device, run_with_cpu_fallback
from ..errors import InputError
from ..image import Image, SegmentInfo, TerminologyCode
from ..progress import CancelToken, ProgressCallback
from .preprocess import DEFAULT_GRID, crop_around_seed, paste_back

LESION_SEGMENT = SegmentInfo(1, "Lesion", (0.95, 0.35, 0.2),
                             TerminologyCode("49755003", "SCT", "Morphologically Altered Structure"),
                             TerminologyCode("108369006", "SCT", "Neoplasm"))


def component_at_seed(mask: np.ndarray, seed_index_kji: np.ndarray) -> np.ndarray:
    """The 26-connected component containing the seed voxel, else the one nearest to it."""
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count <= 1:
        return mask
    seed = tuple(int(round(v)) for v in np.clip(seed_index_kji, 0, np.array(mask.shape) - 1))
    label = components[seed]
    if label == 0:
        centres = ndimage.center_of_mass(mask, components, range(1, count + 1))
        label = 1 + int(np.argmin([np.linalg.norm(np.subtract(c, seed_index_kji)) for c in centres]))
    return components == label


def load_lesion_model(model_dir, device: str = "cpu"):
    """Load a lesion model folder (``card.json`` + state dict ``model.pt``, SHA-256 checked,
    ``torch.load(weights_only=True)``) through the generic loader :func:`models.loaders.load_model_folder`."""
    from ..models.loaders import load_model_folder
    model = load_model_folder(model_dir)
    model.network.to(device).eval()
    return model


def _prompt_settings(model) -> dict:
    card = getattr(model, "card", None)
    if card is not None and hasattr(card, "as_dict"):
        return card.as_dict().get("input", {}).get("prompt", {})
    return {}


def predict_probabilities(network: torch.nn.Module, tensors: np.ndarray, device: str = "cpu",
                          flip: bool = True) -> np.ndarray:
    """Sigmoid probabilities ``[n, grid, grid, grid]`` for a batch ``[n, 2, grid, grid, grid]`` in one forward pass,
    averaged with the left-right (i-axis) flipped input when ``flip``."""
    network.eval()
    batch = np.asarray(tensors, dtype=np.float32)
    if flip:
        batch = np.concatenate([batch, np.flip(batch, axis=4)])
    with torch.no_grad():
        probability = torch.sigmoid(network(torch.from_numpy(np.ascontiguousarray(batch)).to(device))).cpu().numpy()[:, 0]
    if not flip:
        return probability
    n = len(tensors)
    return (probability[:n] + np.flip(probability[n:], axis=3)) / 2.0


def segment_lesions(image: Image, seeds_ras: Sequence[Sequence[float]], box_mm: Optional[float], model,
                    device: str = "cpu", progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None) -> Image:
    """uint8 labelmap on the input grid with label ``n`` (1-based) for the lesion at ``seeds_ras[n-1]`` (RAS mm).

    All crops go through the network in one batch. Where two lesions' masks overlap, the earlier seed keeps
    the voxel. Any seed outside the image raises :class:`InputError` before any work is done.
    """
    if not len(seeds_ras):
        raise InputError("No seed points given; give at least one R,A,S point (mm) inside the lesion.")
    prompt = _prompt_settings(model)
    crops = [crop_around_seed(image, seed, box_mm or prompt.get("default_box_mm"), prompt.get("grid", DEFAULT_GRID),
                              prompt.get("ct_normalisation", "window")) for seed in seeds_ras]
    if cancel is not None:
        cancel.raise_if_cancelled()
    if progress:
        progress(0.2, f"lesion: running the network on {len(crops)} crop(s)")
    network = getattr(model, "network", model)
    batch = np.stack([c.tensor for c in crops])
    choice = choose_device(device or "auto")     # GPU when present; on CPU sets the thread budget (a Dask
    probabilities = run_with_cpu_fallback(        # task thread starts single-threaded otherwise)
        lambda run: predict_probabilities(network.to(run.device), batch, run.device), choice)
    result = np.zeros(image.array.shape, np.uint8)
    for number, (seed, crop, probability) in enumerate(zip(seeds_ras, crops, probabilities), start=1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        mask = paste_back(probability, crop, image)
        if mask.any():
            mask = component_at_seed(mask, image.ras_to_index(np.asarray(seed, float))[::-1])
        result[mask & (result == 0)] = number
        if progress:
            progress(0.2 + 0.8 * number / len(crops), f"lesion {number}/{len(crops)} done")
    base = model.segments[0] if getattr(model, "segments", None) else LESION_SEGMENT   # the card's name and colour
    segments = [SegmentInfo(n, base.name if len(crops) == 1 else f"{base.name} {n}", base.color_rgb, base.category,
                            base.type) for n in range(1, len(crops) + 1)]
    return image.with_array(result, segments=segments)


def segment_lesion(image: Image, seed_ras: Sequence[float], box_mm: Optional[float], model, device: str = "cpu",
                   progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> Image:
    """uint8 labelmap on the input grid: 1 inside the lesion at ``seed_ras`` (RAS mm), 0 elsewhere.

    ``model`` is a loaded model (``.network`` a torch module; ``.card``), ``box_mm`` the edge of the
    region around the seed (default from the card, 64 mm). One seed of :func:`segment_lesions`.
    """
    return segment_lesions(image, [seed_ras], box_mm, model, device, progress, cancel)
