"""Coarser copies of an image for display, by whole blocks of voxels (no interpolation).

A block of ``f_i × f_j × f_k`` voxels becomes one voxel whose centre is the block's centre, so every
output voxel keeps its exact physical position: ``spacing' = spacing × f`` and the origin moves to the
centre of the first block (computed through :meth:`Image.index_to_lps`, the one geometry place).
Intensities are block means; labels are the block's most frequent value (background included).
The edge of the volume that does not fill a whole block is dropped (less than one block, i.e. less
than ``f - 1`` voxels per axis).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError
from .image import Image, as_label_array


def _check_factors(image: Image, factors_ijk: Sequence[int]) -> tuple[int, int, int]:
    factors = tuple(int(f) for f in factors_ijk)
    if len(factors) != 3 or any(f < 1 for f in factors):
        raise InputError(f"Downsampling factors must be three whole numbers >= 1, got {tuple(factors_ijk)}.")
    if any(f > n for f, n in zip(factors, image.shape_ijk)):
        raise InputError(f"Downsampling factors {factors} exceed the image's size {image.shape_ijk} (i, j, k).")
    return factors


def _blocks(array: np.ndarray, factors_ijk: tuple[int, int, int]) -> np.ndarray:
    """View of ``array[k, j, i]`` as ``[K, fk, J, fj, I, fi]`` (trailing partial blocks dropped)."""
    fi, fj, fk = factors_ijk
    k, j, i = (n // f * f for n, f in zip(array.shape, (fk, fj, fi)))
    trimmed = array[:k, :j, :i]
    return trimmed.reshape(k // fk, fk, j // fj, fj, i // fi, fi)


def _coarse_grid(image: Image, factors_ijk: tuple[int, int, int], array: np.ndarray) -> Image:
    first_block_centre = (np.asarray(factors_ijk, dtype=float) - 1.0) / 2.0
    origin = image.index_to_lps(first_block_centre)
    spacing = tuple(s * f for s, f in zip(image.spacing_mm, factors_ijk))
    return Image(array, spacing, tuple(float(v) for v in origin), image.direction_lps, image.metadata, image.segments)


def block_mean(image: Image, factors_ijk: Sequence[int], dtype=None) -> Image:
    """Mean of each block (float32; or ``dtype``, rounded when integer)."""
    factors = _check_factors(image, factors_ijk)
    means = _blocks(np.asarray(image.array, dtype=np.float32), factors).mean(axis=(1, 3, 5), dtype=np.float64)
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.integer):
        means = np.round(means)
    return _coarse_grid(image, factors, means.astype(dtype or np.float32))


def block_mode(labelmap: Image, factors_ijk: Sequence[int]) -> Image:
    """Most frequent label of each block (ties: the smaller label value); segments kept."""
    factors = _check_factors(labelmap, factors_ijk)
    labels = as_label_array(labelmap)
    blocks = _blocks(labels, factors)
    shape = blocks.shape[0], blocks.shape[2], blocks.shape[4]
    best = np.zeros(shape, dtype=labels.dtype)
    best_count = np.full(shape, -1, dtype=np.int64)
    for value in np.unique(labels):
        count = (blocks == value).sum(axis=(1, 3, 5))
        better = count > best_count
        best[better] = value
        best_count[better] = count[better]
    return _coarse_grid(labelmap, factors, best)


def display_factors(image: Image, max_voxels: int) -> tuple[int, int, int]:
    """Smallest block factors (coarsening the finest axes first) that bring the voxel count to ``max_voxels``
    or fewer."""
    if max_voxels < 1:
        raise InputError("max_voxels must be at least 1.")
    factors = [1, 1, 1]
    shape = list(image.shape_ijk)
    while np.prod([n // f for n, f in zip(shape, factors)]) > max_voxels:
        spacing = [s * f for s, f in zip(image.spacing_mm, factors)]
        candidates = [a for a in range(3) if shape[a] // (factors[a] + 1) >= 1]
        axis = min(candidates, key=lambda a: (spacing[a], -shape[a] // factors[a]))
        factors[axis] += 1
    return tuple(factors)
