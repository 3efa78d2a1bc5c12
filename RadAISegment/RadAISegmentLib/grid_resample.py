"""Resampling between an image's grid and a model grid that keeps the image's axes (permuted / flipped).

A model grid (:func:`RadAISegmentLib.inference.model_grid`) runs along the input's own i, j, k axes, reordered
and flipped to RAS when the model asks for ``Orientationd("RAS")``, with the model's spacing and its first
voxel centred on a corner voxel of the input. Each model axis therefore samples exactly one input axis, and
both directions of resampling are separable 1D operations:

* image → model grid: linear interpolation along each axis (MONAI ``Spacingd(mode="bilinear")``);
* labels → input grid: nearest neighbour along each axis (MONAI ``Invertd(nearest_interp=True)``).

Outside the other grid's last voxel centre both use the nearest edge value, as MONAI's ``Spacingd`` does with
its default ``padding_mode="border"`` (and its inverse): a structure cut by the edge of the scan keeps its rim.
The model grid's size follows MONAI's ``compute_shape_offset``: ``round(extent / spacing) + 1`` voxels.

Arrays: an :class:`Image` is ``array[k, j, i]``; model-grid arrays are ``[X, Y, Z]`` (MONAI's axis order, X the
model's first axis). Geometry in LPS mm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import GeometryError
from .image import Image


@dataclass(frozen=True)
class GridAxes:
    """How a model grid's axes X, Y, Z run through the input grid.

    ``input_axis[a]`` is the input axis (0 = i, 1 = j, 2 = k) model axis ``a`` runs along; ``positions[a]``
    the continuous input index (along that axis) of each model voxel centre, ``len = size[a]``.
    """

    input_axis: tuple[int, int, int]
    positions: tuple[np.ndarray, np.ndarray, np.ndarray]


def grid_axes(image: Image, spacing: Sequence[float], direction: np.ndarray, origin: Sequence[float],
              size: Sequence[int]) -> GridAxes:
    """The :class:`GridAxes` of the model grid (spacing mm, LPS direction columns, LPS origin, size X, Y, Z)."""
    image_direction = np.asarray(image.direction_lps, dtype=float)
    cosines = image_direction.T @ np.asarray(direction, dtype=float)        # [input axis, model axis]
    axes = tuple(int(np.argmax(np.abs(cosines[:, a]))) for a in range(3))
    if sorted(axes) != [0, 1, 2] or not np.allclose(np.abs(cosines[list(axes), [0, 1, 2]]), 1.0, atol=1e-4):
        raise GeometryError("The model grid does not run along the image's axes; it cannot be resampled "
                            "axis by axis (internal error: model grids keep the input's axes).")
    offset = np.asarray(origin, dtype=float) - np.asarray(image.origin_lps, dtype=float)
    positions = []
    for a, p in enumerate(axes):
        start = float(offset @ image_direction[:, p]) / image.spacing_mm[p]
        step = float(spacing[a]) * float(cosines[p, a]) / image.spacing_mm[p]
        positions.append(start + step * np.arange(int(size[a]), dtype=np.float64))
    return GridAxes(axes, tuple(positions))


def _lerp_axis(array: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``array`` along ``axis`` at continuous ``positions`` (edge value beyond the ends),
    float32."""
    count = array.shape[axis]
    clipped = np.clip(positions, 0.0, count - 1.0)
    if count == 1:
        return np.take(array, np.zeros(len(positions), dtype=np.intp), axis=axis).astype(np.float32)
    lower = np.minimum(np.floor(clipped).astype(np.intp), count - 2)
    weight = (clipped - lower).astype(np.float32)
    if np.all(weight == 0.0):                                          # on the input's voxel centres: a gather
        return np.take(array, lower, axis=axis).astype(np.float32, copy=False)
    shape = [1] * array.ndim
    shape[axis] = len(positions)
    weight = weight.reshape(shape)
    low = np.take(array, lower, axis=axis).astype(np.float32, copy=False)
    high = np.take(array, lower + 1, axis=axis).astype(np.float32, copy=False)
    high -= low
    high *= weight
    low += high
    return low


def image_to_model_grid(image: Image, axes: GridAxes) -> np.ndarray:
    """The image's voxels linearly interpolated onto the model grid, float32 ``[X, Y, Z]``.

    Axes are processed in order of their size ratio (shrinking axes first), so intermediate arrays stay small.
    """
    volume = image.array.transpose(2, 1, 0)                             # [i, j, k] view, no copy
    model_of_input = {p: a for a, p in enumerate(axes.input_axis)}
    order = sorted(range(3), key=lambda p: len(axes.positions[model_of_input[p]]) / volume.shape[p])
    for p in order:
        volume = _lerp_axis(volume, p, axes.positions[model_of_input[p]])
    if volume.dtype != np.float32:
        volume = volume.astype(np.float32)
    return np.ascontiguousarray(volume.transpose(axes.input_axis))     # [i, j, k] → [X, Y, Z]


def labels_to_input_grid(labels_xyz: np.ndarray, image: Image, axes: GridAxes) -> np.ndarray:
    """Model-grid labels ``[X, Y, Z]`` brought onto ``image``'s grid by nearest neighbour, ``[k, j, i]``.

    For each input voxel the nearest model voxel along each axis is taken (ties round up); input voxels
    beyond the model grid's outermost centres take the outermost model voxel (border), never background.
    """
    index = []
    for p in range(3):
        a = axes.input_axis.index(p)
        positions = axes.positions[a]
        count = len(positions)
        if count == 1:
            index.append(np.zeros(image.shape_ijk[p], dtype=np.intp))
            continue
        step = positions[1] - positions[0]
        model_index = (np.arange(image.shape_ijk[p], dtype=np.float64) - positions[0]) / step
        index.append(np.clip(np.floor(model_index + 0.5), 0, count - 1).astype(np.intp))
    input_order = labels_xyz.transpose(np.argsort(axes.input_axis))     # [X, Y, Z] → [i, j, k]
    result = input_order[np.ix_(*index)]                                # [i, j, k]
    return np.ascontiguousarray(result.transpose(2, 1, 0))
