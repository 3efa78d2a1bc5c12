"""The working grid: a crop of the input image, resampled to the model's spacing, and the exact
paste-back of a map from it onto the input image's grid.

The working grid keeps the input image's direction (LPS); its spacing is the model card's
``input.spacing_mm`` (``(i, j, k)``, mm) or the image's own when the card gives none. Maps are
pasted back by linear interpolation with value 0 outside the crop, so the result lies on
exactly the input grid (same shape, spacing, origin, direction).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..image import Image
from ..io import from_sitk, to_sitk


def working_grid(image: Image, centre_lps: Sequence[float], size_mm: Sequence[float],
                 spacing_mm: Optional[Sequence[float]] = None) -> Image:
    """A float32 crop of ``image`` centred at ``centre_lps`` spanning ``size_mm`` (i, j, k) at
    ``spacing_mm`` (default: the image's spacing), linear interpolation; voxels outside the image
    take the image's minimum (air for CT, background for MR). When the spacing equals the image's,
    the crop is snapped onto the image's voxel centres (no interpolation)."""
    spacing = np.asarray(spacing_mm if spacing_mm is not None else image.spacing_mm, dtype=float)
    size_vox = np.maximum(np.ceil(np.asarray(size_mm, dtype=float) / spacing - 1e-6).astype(int), 1)
    direction = np.asarray(image.direction_lps, dtype=float)
    origin = np.asarray(centre_lps, dtype=float) - direction @ ((size_vox - 1) / 2.0 * spacing)
    if np.allclose(spacing, image.spacing_mm, atol=1e-6):
        # same spacing: snap onto the image's voxel centres so crop and paste-back are exact copies
        origin = image.index_to_lps(np.round(image.lps_to_index(origin)))
    return resample_onto(image, size_vox, spacing, origin, direction, linear=True,
                         default=float(np.min(image.array)) if image.array.size else 0.0)


def resample_onto(image: Image, size_ijk: Sequence[int], spacing_mm: Sequence[float], origin_lps: Sequence[float],
                  direction_lps: np.ndarray, linear: bool, default: float) -> Image:
    """Resample ``image`` (as float32) onto the grid given by size (i, j, k), spacing, origin, direction (LPS)."""
    source = to_sitk(image.with_array(image.array.astype(np.float32)))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in size_ijk])
    resampler.SetOutputSpacing([float(s) for s in spacing_mm])
    resampler.SetOutputOrigin([float(o) for o in origin_lps])
    resampler.SetOutputDirection([float(v) for v in np.asarray(direction_lps).ravel()])
    resampler.SetInterpolator(sitk.sitkLinear if linear else sitk.sitkNearestNeighbor)
    resampler.SetDefaultPixelValue(float(default))
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return from_sitk(resampler.Execute(source))


def paste_back(map_on_working: Image, reference: Image) -> np.ndarray:
    """A map on the working grid, resampled onto ``reference``'s exact grid (``(k, j, i)`` float32),
    linear interpolation, 0 outside the working grid."""
    result = resample_onto(map_on_working, reference.shape_ijk, reference.spacing_mm, reference.origin_lps,
                           reference.direction_lps, linear=True, default=0.0)
    return result.array.astype(np.float32)


def window_starts(length: int, window: int, overlap: float = 0.25) -> list[int]:
    """Start indices of windows of size ``window`` covering ``[0, length)`` with ``overlap``."""
    if length <= window:
        return [0]
    step = max(1, int(round(window * (1.0 - overlap))))
    starts = list(range(0, length - window, step)) + [length - window]
    return sorted(set(starts))


def pad_to(array: np.ndarray, shape: Sequence[int], value: float) -> np.ndarray:
    """Pad ``array`` at the high end of each axis to at least ``shape`` with ``value``."""
    pads = [(0, max(0, int(t) - s)) for s, t in zip(array.shape, shape)]
    return np.pad(array, pads, constant_values=value) if any(p[1] for p in pads) else array


def bounding_box_kji(mask: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(low, high_exclusive)`` index bounds (k, j, i) of a boolean mask, or None when empty."""
    if not mask.any():
        return None
    where = np.argwhere(mask)
    return where.min(axis=0), where.max(axis=0) + 1
