"""nnU-Net v2's resampling, reproduced: image to the plans' spacing, logits back to the input's voxels.

Arrays are nnU-Net's ``(c, d0, d1, d2)`` after ``transpose_forward``; spacings are mm in that order.

Image → plans spacing: exactly nnU-Net's ``resample_data_or_seg_to_shape`` — ``skimage.transform.resize``
(spline ``order`` from the plans, edge mode, no anti-aliasing), per slice plus ``order_z`` along the
low-resolution axis when the spacing is anisotropic (> 3×). Computed in float32: scikit-image interpolates
in float64 either way and nnU-Net stores float32, so the values are identical at half the memory. Cubic
splines (nnU-Net's default order 3) are evaluated axis by axis (:mod:`spline_zoom`): the same values, ~4×
faster, with slab-sized temporaries.

Logits → input voxels: nnU-Net resamples every class's logits to the input's shape (linear, nearest along a
separate low-resolution axis) and takes the argmax there — C full-resolution arrays. :class:`LabelExporter`
gives the same labels slab by slab from model-resolution logits: where all model voxels an output voxel
interpolates from have the same argmax, a convex combination cannot change it (the label is copied); only
where they differ are the logits interpolated (float64, rounded to float16 as nnU-Net stores them).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .spline_zoom import cubic_resize

SEPARATE_Z_THRESHOLD = 3.0
#: Boundary voxels whose logits are interpolated at once (bounds the float64 temporaries: classes × this).
MIXED_CHUNK = 1 << 18
#: Classes interpolated per boundary voxel when no more can win there (else all are).
CANDIDATES = 4


def new_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """Voxels per axis at ``target`` spacing (nnU-Net's rule: ``round(spacing / target · shape)``)."""
    return tuple(int(round(s / t * n)) for s, t, n in zip(spacing, target, shape))


def _lowres_axes(spacing: Sequence[float]) -> np.ndarray:
    return np.where(max(spacing) / np.array(spacing) == 1)[0]


def separate_axis(current: Sequence[float], target: Sequence[float], force: Optional[bool] = None,
                  threshold: float = SEPARATE_Z_THRESHOLD) -> Optional[int]:
    """The axis nnU-Net resamples on its own (anisotropic spacing), or None (one 3D interpolation)."""
    if force is not None:
        axes = _lowres_axes(current) if force else None
    elif max(current) / min(current) > threshold:
        axes = _lowres_axes(current)
    elif max(target) / min(target) > threshold:
        axes = _lowres_axes(target)
    else:
        axes = None
    return int(axes[0]) if axes is not None and len(axes) == 1 else None


def axis_nearest(size_in: int, size_out: int) -> np.ndarray:
    """Input index per output index along one axis, as ``map_coordinates(order=0, mode="nearest")`` picks
    it at nnU-Net's coordinates ``in/out · (o + 0.5) − 0.5``."""
    scale = float(size_in) / size_out
    coordinate = scale * (np.arange(size_out) + 0.5) - 0.5
    return np.clip(np.floor(coordinate + 0.5), 0, size_in - 1).astype(np.int64)


def axis_linear(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, high, weight of high)`` per output index: linear interpolation at ``scipy.ndimage.zoom``'s
    grid-mode coordinates ``(o + 0.5) · in/out − 0.5``, clamped to the edge voxels (skimage's edge mode)."""
    coordinate = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    coordinate = np.clip(coordinate, 0, size_in - 1)
    low = np.floor(coordinate).astype(np.int64)
    weight = coordinate - low
    high = np.minimum(low + 1, size_in - 1)
    weight[high == low] = 0.0
    high[weight == 0.0] = low[weight == 0.0]
    return low, high, weight


def resample_image(data: np.ndarray, shape: Sequence[int], current: Sequence[float], target: Sequence[float],
                   order: int = 3, order_z: int = 0, force_separate_z: Optional[bool] = None,
                   anisotropy_threshold: float = SEPARATE_Z_THRESHOLD) -> np.ndarray:
    """nnU-Net's image resampling of ``data`` ``(c, d0, d1, d2)`` (float32) to ``shape`` (float32)."""
    from skimage.transform import resize
    shape = tuple(int(s) for s in shape)
    if tuple(data.shape[1:]) == shape:
        return data
    data = data.astype(np.float32, copy=False)
    axis = separate_axis(current, target, force_separate_z, anisotropy_threshold)
    out = np.empty((data.shape[0],) + shape, dtype=np.float32)
    for c in range(data.shape[0]):
        if order == 3:                                  # the same values, axis by axis (spline_zoom)
            in_plane = [a for a in range(3) if a != axis]
            planar = cubic_resize(data[c], [s if a in in_plane else data.shape[1 + a] for a, s in enumerate(shape)],
                                  axes=in_plane)
            if axis is not None and data.shape[1 + axis] != shape[axis]:
                planar = np.moveaxis(_along_axis0(np.moveaxis(planar, axis, 0), shape[axis], order_z), 0, axis)
            out[c] = planar
            continue
        if axis is None:
            out[c] = resize(data[c], shape, order, mode="edge", anti_aliasing=False)
            continue
        in_plane = tuple(s for a, s in enumerate(shape) if a != axis)
        slices = np.moveaxis(data[c], axis, 0)
        planar = np.stack([resize(s, in_plane, order, mode="edge", anti_aliasing=False) for s in slices])
        if data.shape[1 + axis] != shape[axis]:
            planar = _along_axis0(planar, shape[axis], order_z)
        out[c] = np.moveaxis(planar, 0, axis)
    return out


def _along_axis0(volume: np.ndarray, size: int, order: int) -> np.ndarray:
    """nnU-Net's ``map_coordinates`` step along the separate axis: nearest (order 0) or linear (order 1)."""
    if order == 0:
        return volume[axis_nearest(volume.shape[0], size)]
    if order == 1:
        low, high, weight = axis_linear(volume.shape[0], size)
        w = weight[:, None, None]
        return ((1.0 - w) * volume[low].astype(np.float64) + w * volume[high]).astype(volume.dtype)
    raise ValueError(f"order_z {order} is not supported (nnU-Net's default is 0)")


class AxisMap:
    """Per output index along one axis: the model indices it interpolates from and the high one's weight."""

    def __init__(self, size_model: int, size_out: int, linear: bool) -> None:
        self.identity = size_model == size_out
        if linear and size_model != size_out:
            self.low, self.high, self.weight = axis_linear(size_model, size_out)
        else:
            self.low = axis_nearest(size_model, size_out) if size_model != size_out else np.arange(size_out)
            self.high, self.weight = self.low.copy(), np.zeros(size_out)


def logits_axis_maps(model_shape: Sequence[int], out_shape: Sequence[int], model_spacing: Sequence[float],
                     out_spacing: Sequence[float], settings: dict) -> list[AxisMap]:
    """How nnU-Net's ``resampling_fn_probabilities`` (``settings``: order, order_z, force_separate_z)
    maps the model grid onto the input's cropped grid, one :class:`AxisMap` per axis."""
    if settings["order"] not in (0, 1) or settings["order_z"] not in (0, 1):
        raise ValueError("only orders 0 and 1 of nnU-Net's logit resampling are supported")
    if tuple(model_shape) == tuple(out_shape):
        return [AxisMap(n, n, True) for n in out_shape]
    axis = separate_axis(model_spacing, out_spacing, settings["force_separate_z"], settings["anisotropy_threshold"])
    return [AxisMap(m, o, (settings["order_z"] if a == axis else settings["order"]) == 1)
            for a, (m, o) in enumerate(zip(model_shape, out_shape))]


def _homogeneous(labels: np.ndarray, maps: list[AxisMap], rows: np.ndarray, row_offset: int) -> np.ndarray:
    """Label per output voxel where every model voxel it interpolates from agrees, −1 elsewhere.
    ``labels`` are model rows starting at ``row_offset``; ``rows`` the output rows wanted."""
    current = labels.astype(np.int16)
    for axis in (2, 1):
        low = np.take(current, maps[axis].low, axis=axis)
        high = np.take(current, maps[axis].high, axis=axis)
        low[low != high] = -1
        current = low
    low = current[maps[0].low[rows] - row_offset]
    high = current[maps[0].high[rows] - row_offset]
    low[low != high] = -1
    return low


def _corners(maps: list[AxisMap], voxels: tuple, row_offset: int,
             model_plane: tuple[int, int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 8 interpolation corners of output ``voxels``: ``(row of the voxel-major table, float64 weight)``."""
    per_axis = []
    for axis, index in enumerate(voxels):
        m = maps[axis]
        weight = torch.from_numpy(m.weight[index])
        per_axis.append(((torch.from_numpy(m.low[index]), 1.0 - weight), (torch.from_numpy(m.high[index]), weight)))
    m1, m2 = model_plane
    corners = []
    for (i0, w0) in per_axis[0]:
        for (i1, w1) in per_axis[1]:
            flat01 = ((i0 - row_offset) * m1 + i1) * m2
            corners.extend((flat01 + i2, w0 * w1 * w2) for (i2, w2) in per_axis[2])
    return corners


def _interpolated_labels(table: torch.Tensor, corners: list, head_dtype: torch.dtype) -> torch.Tensor:
    """Argmax of the interpolated logits (float64, rounded to ``head_dtype``) over all classes.

    ``table`` holds the model rows' logits voxel by voxel, ``(rows · m1 · m2, C)``: each corner of the
    interpolation is one contiguous row of C values."""
    total = None
    for flat, weight in corners:
        value = table.index_select(0, flat).double()
        value *= weight[:, None]
        total = value if total is None else total.add_(value)
    return total.to(head_dtype).argmax(1)


def _pruned_labels(table: torch.Tensor, corners: list, head_dtype: torch.dtype) -> torch.Tensor:
    """The same labels as :func:`_interpolated_labels`, interpolating only the classes that can win.

    An interpolated logit lies between its corners' smallest and largest (a convex combination; rounding to
    ``head_dtype`` keeps that, the corners being ``head_dtype`` values). So a class whose largest corner
    value is below ``lower`` (the largest over classes of their smallest corner value) ends strictly below
    some other class: it can neither win nor tie. Voxels sharing their corners share these bounds; where
    more than :data:`CANDIDATES` classes remain, all classes are interpolated."""
    classes = table.shape[1]
    k = min(CANDIDATES, classes)
    first, last = corners[0][0], corners[-1][0]              # the low and the high corner fix all eight
    cells, inverse = torch.unique(first * table.shape[0] + last, return_inverse=True)
    representative = torch.zeros(cells.numel(), dtype=torch.int64).scatter_(0, inverse, torch.arange(inverse.numel()))
    values = torch.stack([table.index_select(0, flat[representative]) for flat, _ in corners]).float()
    most, least = values.max(0).values, values.min(0).values                   # (cells, C)
    lower = least.max(1, keepdim=True).values
    candidate = most >= lower
    top = torch.where(candidate, most, torch.tensor(float("-inf"))).topk(k, dim=1).indices
    fast = candidate.sum(1)[inverse] <= k
    labels = torch.empty(inverse.numel(), dtype=torch.int64)
    slow = torch.nonzero(~fast).flatten()
    if slow.numel():
        labels[slow] = _interpolated_labels(table, [(f[slow], w[slow]) for f, w in corners], head_dtype)
    chosen = torch.nonzero(fast).flatten()
    if chosen.numel():
        classes_k = top[inverse[chosen]]                                          # (n, k)
        flat_table = table.reshape(-1)
        total = None
        for flat, weight in corners:
            value = flat_table[flat[chosen, None] * classes + classes_k].double()
            value *= weight[chosen, None]
            total = value if total is None else total.add_(value)
        rounded = total.to(head_dtype)
        best = rounded.max(1, keepdim=True).values
        labels[chosen] = torch.where(rounded == best, classes_k, classes).min(1).values   # ties: lowest class
    return labels


class LabelExporter:
    """Labels on the input's (cropped, transposed) grid from model-resolution logits arriving in row order.

    ``add(start_row, logits)`` takes finished model rows ``(C, rows, m1, m2)``; output rows are emitted into
    ``self.labels`` (uint8 or uint16 of head indices) as soon as the model rows they need have arrived.
    """

    def __init__(self, maps: list[AxisMap], out_shape: Sequence[int], n_heads: int) -> None:
        self.maps = maps
        self.labels = np.zeros(tuple(out_shape), dtype=np.uint8 if n_heads < 255 else np.uint16)
        self.next_row = 0
        self.held: Optional[torch.Tensor] = None
        self.held_start = 0

    def add(self, start: int, logits: torch.Tensor) -> None:
        """Take model rows ``start .. start + logits.shape[1]`` (contiguous with the previous call)."""
        if all(m.identity for m in self.maps):          # the input's grid is the model's: argmax, nothing held
            self.labels[start:start + logits.shape[1]] = logits.argmax(0).numpy()
            self.next_row = start + logits.shape[1]
            return
        if self.held is None:
            self.held, self.held_start = logits, start
        else:
            needed = int(self.maps[0].low[self.next_row]) if self.next_row < len(self.maps[0].low) else start
            drop = min(max(0, needed - self.held_start), self.held.shape[1])
            self.held = torch.cat([self.held[:, drop:], logits], dim=1)
            self.held_start += drop
        available = self.held_start + self.held.shape[1]
        rows_end = int(np.searchsorted(self.maps[0].high, available, side="left"))
        self._emit(self.next_row, rows_end)
        self.next_row = max(self.next_row, rows_end)

    def _emit(self, first: int, last: int) -> None:
        if last <= first:
            return
        rows = np.arange(first, last)
        heads = self.held.argmax(0).numpy()
        block = _homogeneous(heads, self.maps, rows, self.held_start)
        mixed = np.nonzero(block < 0)
        if mixed[0].size:                          # a voxel-major copy of only the model rows these rows use
            r0 = int(self.maps[0].low[first]) - self.held_start
            r1 = int(self.maps[0].high[last - 1]) - self.held_start + 1
            table = self.held[:, r0:r1].permute(1, 2, 3, 0).contiguous().view(-1, self.held.shape[0])
            for chunk in range(0, mixed[0].size, MIXED_CHUNK):
                part = tuple(m[chunk:chunk + MIXED_CHUNK] for m in mixed)
                corners = _corners(self.maps, (rows[part[0]], part[1], part[2]), self.held_start + r0,
                                   tuple(self.held.shape[2:]))
                block[part] = _pruned_labels(table, corners, self.held.dtype).numpy()
        self.labels[first:last] = block
