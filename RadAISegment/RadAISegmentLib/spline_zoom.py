"""Cubic-spline resizing as ``skimage.transform.resize(order=3, mode="edge", anti_aliasing=False)`` does it,
one axis at a time.

scikit-image hands that resize to ``scipy.ndimage.zoom`` (``grid_mode=True``, ``mode="nearest"``: the input
padded by 12 edge voxels, B-spline prefiltered in float64, evaluated at ``(o + 0.5) · in/out − 0.5``) and
clips the result to the input's value range. A tensor-product B-spline is separable: prefiltering along
every axis and then evaluating on the output grid equals, axis after axis, prefiltering along that axis and
evaluating along it. Done that way — the axis that shrinks most first, in slabs — each output value costs
4 taps per axis instead of 64, and the float64 temporaries are a slab's, not the whole padded volume's.
The arithmetic is float64 as scipy's; the float32 results differ from scipy's at most in the last bit.

Arrays are any ``(d0, d1, d2)`` (or 2D) float array; sizes are voxels per axis.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: scipy's edge padding before prefiltering with ``mode="nearest"`` (``_prepad_for_spline_filter``).
SCIPY_NEAREST_PAD = 12
#: Input voxels per slab (bounds the float64 temporaries: ~8 bytes × this × a few).
SLAB_VOXELS = 1 << 22


def cubic_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index (size_out, 4) into the padded axis, weight (size_out, 4))`` of the cubic B-spline at
    scipy's grid-mode coordinates ``(o + 0.5) · in/out − 0.5`` (shifted by the padding)."""
    coordinate = (np.arange(size_out) + 0.5) * (float(size_in) / size_out) - 0.5 + SCIPY_NEAREST_PAD
    base = np.floor(coordinate)
    t = coordinate - base
    index = base.astype(np.int64)[:, None] + np.arange(-1, 3)
    one_minus = 1.0 - t
    weight = np.stack([one_minus ** 3, 4.0 - 6.0 * t ** 2 + 3.0 * t ** 3,
                       1.0 + 3.0 * t + 3.0 * t ** 2 - 3.0 * t ** 3, t ** 3], axis=1) / 6.0
    return np.clip(index, 0, size_in + 2 * SCIPY_NEAREST_PAD - 1), weight


def _zoom_axis(volume: np.ndarray, axis: int, size_out: int) -> np.ndarray:
    """``volume`` prefiltered and evaluated along ``axis`` only (float64 out), slab by slab along another axis."""
    from scipy.ndimage import spline_filter1d
    index, weight = cubic_taps(volume.shape[axis], size_out)
    out_shape = list(volume.shape)
    out_shape[axis] = size_out
    out = np.empty(out_shape, dtype=np.float64)
    if volume.ndim == 1:
        slab_axis, step = None, 1
    else:
        slab_axis = 0 if axis != 0 else 1
        per_index = volume.size // volume.shape[slab_axis]
        step = max(1, SLAB_VOXELS // max(per_index, 1))
    pad = [(SCIPY_NEAREST_PAD, SCIPY_NEAREST_PAD) if a == axis else (0, 0) for a in range(volume.ndim)]
    shape = [1] * volume.ndim
    shape[axis] = size_out
    starts = [0] if slab_axis is None else range(0, volume.shape[slab_axis], step)
    for start in starts:
        where = [slice(None)] * volume.ndim
        if slab_axis is not None:
            where[slab_axis] = slice(start, start + step)
        where = tuple(where)
        padded = np.pad(volume[where], pad, mode="edge").astype(np.float64, copy=False)
        spline_filter1d(padded, 3, axis=axis, output=padded, mode="nearest")
        total = np.take(padded, index[:, 0], axis=axis) * weight[:, 0].reshape(shape)
        for tap in range(1, 4):
            total += np.take(padded, index[:, tap], axis=axis) * weight[:, tap].reshape(shape)
        out[where] = total
    return out


def cubic_resize(volume: np.ndarray, shape: Sequence[int], axes: Sequence[int] | None = None) -> np.ndarray:
    """``volume`` resized to ``shape`` by cubic B-spline along ``axes`` (default all; the others keep their
    size and values), clipped to the value range of each hyperplane spanned by ``axes`` (all axes: the
    whole volume's range, as scikit-image clips one resize call). Returns float32."""
    axes = tuple(range(volume.ndim)) if axes is None else tuple(axes)
    shape = tuple(int(s) for s in shape)
    if any(shape[a] != volume.shape[a] for a in range(volume.ndim) if a not in axes):
        raise ValueError("cubic_resize: axes outside `axes` must keep their size")
    if any(s < 1 for s in shape):
        raise ValueError(f"cubic_resize: output shape {shape} has an empty axis")
    kept = tuple(a for a in range(volume.ndim) if a not in axes)
    low = volume.min(axis=axes, keepdims=True) if kept else volume.min()
    high = volume.max(axis=axes, keepdims=True) if kept else volume.max()
    result = volume
    for axis in sorted(axes, key=lambda a: shape[a] / volume.shape[a]):      # the largest reduction first
        if result.shape[axis] != shape[axis]:
            result = _zoom_axis(result, axis, shape[axis])
    result = np.clip(result, low, high)
    return result.astype(np.float32)
