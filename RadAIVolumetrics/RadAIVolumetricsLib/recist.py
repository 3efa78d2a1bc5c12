"""RECIST long and short axes of a lesion mask, with endpoints in RAS.

Definitions (RECIST 1.1, Eisenhauer et al. 2009):
* the *axial plane* is the voxel plane whose normal is closest to the patient's
  superior axis (for an ordinary axial CT that is the k-plane);
* the long axis is the longest in-plane diameter, on the axial slice where it is longest;
* the short axis is the longest diameter perpendicular to the long axis on that slice.

Diameters are measured on the slice's contour (marching squares at level 0.5 on
the slice mask, i.e. through the boundary voxels' edge midpoints) in physical
mm, so anisotropic pixels and oblique directions are handled exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from skimage.measure import find_contours

from RadAISegmentLib.image import Image

from .shape import max_pairwise_distance


@dataclass
class RecistAxes:
    long_axis_mm: float
    short_axis_mm: float
    long_axis_endpoints_ras: list[list[float]]
    short_axis_endpoints_ras: list[list[float]]
    slice_axis: str
    slice_index: int


def axial_array_axis(image: Image) -> int:
    """Array axis (0 = k, 1 = j, 2 = i) whose voxel direction is closest to the patient S axis."""
    superior_component = np.abs(np.asarray(image.direction_lps)[2, :])  # z of the i, j, k unit vectors
    ijk_axis = int(np.argmax(superior_component))
    return 2 - ijk_axis


def _slice_contour_points(slice_mask: np.ndarray) -> np.ndarray:
    padded = np.pad(slice_mask.astype(np.float32), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        return np.argwhere(slice_mask).astype(float)
    return np.concatenate(contours) - 1.0


def _to_index_ijk(points_2d: np.ndarray, axis: int, index: int) -> np.ndarray:
    """2D points (the two remaining ``[k, j, i]`` axes, ascending) back to continuous ``(i, j, k)``."""
    full = np.zeros((len(points_2d), 3))
    others = [a for a in range(3) if a != axis]
    full[:, others[0]] = points_2d[:, 0]
    full[:, others[1]] = points_2d[:, 1]
    full[:, axis] = index
    return full[:, ::-1]


def recist_axes(labelmap_grid: Image, mask: np.ndarray, offset_kji: tuple[int, int, int] = (0, 0, 0)) -> Optional[RecistAxes]:
    """RECIST axes of ``mask`` (a ``[k, j, i]`` boolean array, possibly a crop starting at ``offset_kji``
    of ``labelmap_grid``). Returns None for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    axis = axial_array_axis(labelmap_grid)
    others = [a for a in range(3) if a != axis]
    in_plane_spacing = np.asarray(labelmap_grid.spacing_mm)[::-1][others]
    candidates = []
    for index in np.nonzero(mask.any(axis=tuple(others)))[0]:
        present = np.argwhere(np.take(mask, index, axis=axis))
        # the slice's bounding-box diagonal (mm) bounds any diameter on it
        candidates.append((float(np.linalg.norm((present.max(axis=0) - present.min(axis=0) + 1) * in_plane_spacing)), index))
    best = None
    for bound, index in sorted(candidates, key=lambda item: (-item[0], item[1])):
        if best is not None and bound <= best[0]:
            break
        slice_mask = np.take(mask, index, axis=axis)
        points_2d = _slice_contour_points(slice_mask) + np.delete(np.asarray(offset_kji, float), axis)
        global_index = int(index + offset_kji[axis])
        physical = labelmap_grid.index_to_lps(_to_index_ijk(points_2d, axis, global_index))
        length, first, second = max_pairwise_distance(physical)
        if best is None or length > best[0]:
            best = (length, first, second, physical, global_index)
    length, first, second, physical, global_index = best
    short_length, short_ends = _perpendicular_diameter(physical, first, second)
    from RadAISegmentLib.geometry import lps_to_ras
    return RecistAxes(float(length), float(short_length),
                      lps_to_ras(np.stack([first, second])).tolist(),
                      lps_to_ras(np.stack(short_ends)).tolist() if short_ends else [],
                      "kji"[axis], global_index)


def _perpendicular_diameter(points: np.ndarray, first: np.ndarray, second: np.ndarray):
    """Longest chord perpendicular to ``first→second`` among contour points (mm), with its endpoints."""
    direction = second - first
    norm = np.linalg.norm(direction)
    if norm == 0 or len(points) < 2:
        return 0.0, None
    u = direction / norm
    centred = points - first
    along = centred @ u
    across_vectors = centred - np.outer(along, u)
    # The perpendicular lies in the slice plane: the plane's normal is u x (any across vector).
    widest = np.argmax(np.linalg.norm(across_vectors, axis=1))
    if np.linalg.norm(across_vectors[widest]) == 0:
        return 0.0, None
    v = across_vectors[widest] / np.linalg.norm(across_vectors[widest])
    across = centred @ v
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    steps = steps[steps > 0]
    bin_width = max(float(np.median(steps)), 0.2) if steps.size else 1.0  # ~ contour point spacing (mm)
    bins = np.round(along / bin_width).astype(np.int64)
    best, ends = 0.0, None
    for value in np.unique(bins):
        members = np.nonzero(bins == value)[0]
        if len(members) < 2:
            continue
        low, high = members[np.argmin(across[members])], members[np.argmax(across[members])]
        width = across[high] - across[low]
        if width > best:
            position = float(along[members].mean())
            best = float(width)
            ends = (first + position * u + across[low] * v, first + position * u + across[high] * v)
    return best, ends
