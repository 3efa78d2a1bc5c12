"""Brain extraction with deepbet's pretrained TorchScript networks, its preprocessing reproduced from the
card's ``pipeline`` (deepbet 1.0.2 ``BrainExtraction.run_model``), without importing deepbet.

Steps (array axes X, Y, Z after reorientation to the closest canonical RAS, no resampling):
1. intensity quantiles 0.5/99.5 % of a 128³ nearest-exact thumbnail; thumbnail → bbox network → largest
   component → bounding box (+10 % margin) scaled back to full size;
2. crop → nearest-exact 256³ → normalise ((x-lo)/(hi-lo) clipped to [0,1], z-scored, ·0.226 + 0.449) →
   brain network → channel 1 probability → nearest-exact back into the crop;
3. > 0.5, largest component, holes filled; labels back onto the input grid (inverse permutation/flip).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .errors import InputError
from .image import Image
from .progress import CancelToken, ProgressCallback, no_progress

RAS_IN_LPS = np.diag([-1.0, -1.0, 1.0])


def canonical_axes(direction_lps: np.ndarray) -> tuple[list[int], list[bool]]:
    """For each RAS axis, the (i, j, k) axis closest to it and whether that axis must be flipped."""
    order, flips = [], []
    ras_direction = RAS_IN_LPS @ np.asarray(direction_lps)     # columns of i, j, k in RAS
    for axis in range(3):
        row = ras_direction[axis].copy()
        row[order] = 0
        column = int(np.argmax(np.abs(row)))
        order.append(column)
        flips.append(bool(row[column] < 0))
    return order, flips


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _normalise(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    x = ((x - low) / (high - low)).clamp(0, 1)
    return std * (x - x.mean()) / x.std() + mean


def _bbox(mask_small: torch.Tensor, shape: tuple, margin: float, threshold: float) -> tuple[slice, ...]:
    ranges = [torch.where(mask_small.mean(dims) > threshold)[0] for dims in [(1, 2), (0, 2), (0, 1)]]
    if any(r.numel() == 0 for r in ranges):
        raise InputError("Brain extraction found no head in the image; is it a T1-weighted head MRI?")
    scale = torch.tensor(shape) / torch.tensor(mask_small.shape)
    centre = scale * torch.tensor([(r.max() + 1 + r.min()) / 2 for r in ranges])
    size = (1 + 2 * margin) * scale * torch.tensor([(r.max() + 1) - r.min() for r in ranges])
    centre, size = centre.round(), size.round()
    return tuple(slice(max(0, int(c - s / 2)), min(n, int(c + s / 2))) for c, s, n in zip(centre, size, shape))


def extract_brain(image: Image, model, device: str = "auto", progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None) -> Image:
    """Brain mask (label 1) of a T1-weighted head MRI, on exactly the input grid."""
    from .device import choose_device
    from .models.cache import verify_weights, weights_path
    from .models.card import parse_card
    progress = progress or no_progress
    pipeline = model.card.raw["pipeline"]
    choice = choose_device(device)
    if "bbox_network" not in model.extras:
        bbox_card = parse_card({**model.card.raw, "weights": pipeline["bbox_weights"]}, model.card.folder)
        path = verify_weights(bbox_card, weights_path(bbox_card))
        model.extras["bbox_network"] = torch.jit.load(str(path), map_location="cpu").eval()
    bbox_network = model.extras["bbox_network"].to(choice.device)
    network = model.network.to(choice.device)
    order, flips = canonical_axes(image.direction_lps)
    x_ijk = np.asarray(image.array, dtype=np.float32).transpose(2, 1, 0)
    x_np = np.flip(x_ijk.transpose(order), [a for a in range(3) if flips[a]])
    x = torch.nan_to_num(torch.from_numpy(np.ascontiguousarray(x_np))).to(choice.device)
    mode = pipeline.get("interpolation", "nearest-exact")
    mean, std = pipeline["normalise"]["mean"], pipeline["normalise"]["std"]
    x_small = F.interpolate(x[None, None], tuple(pipeline["bbox_shape"]), mode=mode)[0, 0]
    low, high = x_small.quantile(pipeline["quantiles"][0]), x_small.quantile(pipeline["quantiles"][1])
    progress(0.1, "locating the head")
    with torch.inference_mode():
        small = bbox_network(_normalise(x_small, low, high, mean, std)[None, None])[0, pipeline["output_channel"]]
    mask_small = torch.from_numpy(_largest_component((small > 0.5).cpu().numpy()).astype(np.float32))
    box = _bbox(mask_small, tuple(x.shape), pipeline["bbox_margin"], pipeline["bbox_threshold"])
    if cancel is not None:
        cancel.raise_if_cancelled()
    progress(0.3, "segmenting the brain")
    crop = F.interpolate(x[box][None, None], tuple(pipeline["shape"]), mode=mode)[0, 0]
    with torch.inference_mode():
        probability = network(_normalise(crop, low, high, mean, std)[None, None])[0, pipeline["output_channel"]]
    crop_shape = tuple(x[box].shape)
    probability = F.interpolate(probability[None, None].float(), crop_shape, mode=mode)[0, 0].cpu().numpy()
    if cancel is not None:
        cancel.raise_if_cancelled()
    mask = np.zeros(x.shape, dtype=bool)
    crop_mask = probability > pipeline["threshold"]
    crop_mask = ndimage.binary_fill_holes(_largest_component(crop_mask))
    mask[box] = crop_mask
    mask = np.flip(mask, [a for a in range(3) if flips[a]])
    mask_ijk = mask.transpose(np.argsort(order))
    progress(1.0, "done")
    return image.with_array(np.ascontiguousarray(mask_ijk.transpose(2, 1, 0)).astype(np.uint8),
                            segments=model.segments)
