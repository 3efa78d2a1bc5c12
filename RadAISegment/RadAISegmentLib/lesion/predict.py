"""Segment a lesion from a seed point (RAS mm) with the promptable lesion model."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

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


def predict_probability(network: torch.nn.Module, tensor: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Sigmoid probability on the crop grid, averaged with the left-right flipped input (test-time flip)."""
    network.eval()
    with torch.no_grad():
        batch = torch.from_numpy(np.stack([tensor, np.flip(tensor, axis=3).copy()])).to(device)
        probability = torch.sigmoid(network(batch)).cpu().numpy()[:, 0]
    return (probability[0] + np.flip(probability[1], axis=2)) / 2.0


def segment_lesion(image: Image, seed_ras: Sequence[float], box_mm: Optional[float], model, device: str = "cpu",
                   progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> Image:
    """uint8 labelmap on the input grid: 1 inside the lesion at ``seed_ras`` (RAS mm), 0 elsewhere.

    ``model`` is a loaded model (``.network`` a torch module; ``.card``), ``box_mm`` the edge of the
    region around the seed (default from the card, 64 mm).
    """
    if cancel is not None:
        cancel.raise_if_cancelled()
    network = getattr(model, "network", model)
    prompt = {}
    card = getattr(model, "card", None)
    if card is not None and hasattr(card, "as_dict"):
        prompt = card.as_dict().get("input", {}).get("prompt", {})
    crop = crop_around_seed(image, seed_ras, box_mm or prompt.get("default_box_mm"), prompt.get("grid", DEFAULT_GRID))
    if progress:
        progress(0.3, "lesion: running the network")
    device = "cpu" if device in ("auto", None) or not torch.cuda.is_available() else device
    probability = predict_probability(network.to(device), crop.tensor, device)
    if cancel is not None:
        cancel.raise_if_cancelled()
    mask = paste_back(probability, crop, image)
    if mask.any():
        mask = component_at_seed(mask, image.ras_to_index(np.asarray(seed_ras, float))[::-1])
    if progress:
        progress(1.0, "lesion: done")
    return image.with_array(mask.astype(np.uint8), segments=[LESION_SEGMENT])
