"""The simulated reader: where a reader clicks to correct a lesion outline.

Used to train the model on its own mistakes (:mod:`.train`) and to evaluate it (:mod:`.evaluate`) with
the same protocol: find the largest connected error region (by physical volume) among the missed lesion
(reference and not prediction: an *include* click) and the over-segmented part (prediction and not
reference: an *exclude* click), and click at its interior point farthest from the region's boundary
(Euclidean distance in mm, so anisotropic voxels are handled). Arrays are ``[k, j, i]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Click:
    """One correction: a voxel index (k, j, i) and whether it marks lesion (include) or background (exclude)."""

    index_kji: tuple[int, int, int]
    include: bool
    region_volume_mm3: float


def _largest_region(mask: np.ndarray, voxel_mm3: float) -> tuple[np.ndarray, float]:
    components, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask), 0.0
    sizes = np.bincount(components.ravel())[1:]
    largest = 1 + int(np.argmax(sizes))
    return components == largest, float(sizes.max() * voxel_mm3)


def next_click(prediction: np.ndarray, reference: np.ndarray,
               spacing_kji_mm: Sequence[float] = (1.0, 1.0, 1.0)) -> Optional[Click]:
    """The simulated reader's next click, or None when prediction and reference agree everywhere."""
    prediction, reference = np.asarray(prediction, bool), np.asarray(reference, bool)
    voxel_mm3 = float(np.prod(spacing_kji_mm))
    missed, missed_mm3 = _largest_region(reference & ~prediction, voxel_mm3)
    extra, extra_mm3 = _largest_region(prediction & ~reference, voxel_mm3)
    if missed_mm3 == 0.0 and extra_mm3 == 0.0:
        return None
    include = missed_mm3 >= extra_mm3
    region = missed if include else extra
    padded = np.pad(region, 1)     # the array's edge counts as the region's boundary
    distance = ndimage.distance_transform_edt(padded, sampling=spacing_kji_mm)[1:-1, 1:-1, 1:-1]
    index = np.unravel_index(int(np.argmax(distance)), region.shape)
    return Click(tuple(int(v) for v in index), bool(include), missed_mm3 if include else extra_mm3)
