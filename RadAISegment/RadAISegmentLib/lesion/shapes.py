"""Synthetic lesion shapes as partial-volume occupancy on a cubic grid (crop voxels, axes ``[k, j, i]``).

Every shape is a level-set field ``f`` (< 0 inside, 0 on the surface, units: crop voxels, approximately a
signed distance). Occupancy — the fraction of a voxel inside the shape — is ``clip(0.5 - f, 0, 1)``, the
exact partial volume of a voxel cut by a plane, which stands in for supersampling at a fraction of its cost.
A voxel belongs to the lesion label when its occupancy is at least 0.5 (the surface passes through it at
or beyond its centre), which is also the boundary convention the model is trained to predict.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def grid_points(grid: int) -> np.ndarray:
    """float32 ``[grid, grid, grid, 3]``: voxel-centre positions (k, j, i) in crop voxels."""
    axis = np.arange(grid, dtype=np.float32)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def _upsampling_matrix(grid: int, coarse: int) -> np.ndarray:
    """``[grid, coarse]`` rows of normalised Gaussian weights: coarse samples spread smoothly over the grid."""
    fine_positions = (np.arange(grid, dtype=np.float32) + 0.5) / grid
    coarse_positions = (np.arange(coarse, dtype=np.float32) + 0.5) / coarse
    sigma = 0.6 / coarse
    weights = np.exp(-((fine_positions[:, None] - coarse_positions[None, :]) ** 2) / (2 * sigma ** 2))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def smooth_noise(grid: int, correlation_voxels: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance smooth random field ``grid``³: white noise on a coarse grid (one sample per
    ``correlation_voxels``), spread over the grid with separable Gaussian weights."""
    coarse = int(np.clip(round(grid / max(correlation_voxels, 1.0)), 3, grid))
    upsample = _upsampling_matrix(grid, coarse)
    noise = rng.normal(size=(coarse,) * 3).astype(np.float32)
    field = np.einsum("ai,ijk->ajk", upsample, noise)
    field = np.einsum("bj,ajk->abk", upsample, field)
    field = np.einsum("ck,abk->abc", upsample, field)
    return (field - field.mean()) / (field.std() + 1e-6)


def occupancy(level_set: np.ndarray) -> np.ndarray:
    """Partial-volume fraction from a signed-distance-like field in voxel units (< 0 inside)."""
    return np.clip(0.5 - level_set, 0.0, 1.0).astype(np.float32)


def ellipsoid_level_set(points: np.ndarray, centre: np.ndarray, radii: np.ndarray, rotation: np.ndarray,
                        lobulation: float = 0.0, noise: np.ndarray | None = None) -> np.ndarray:
    """Level set (crop voxels) of a rotated ellipsoid whose normalised radius is modulated by
    ``exp(lobulation * noise)`` (lobulated, never split into far islands)."""
    rotated = (points - centre) @ rotation
    normalised = np.sqrt(((rotated / radii) ** 2).sum(axis=-1))
    if lobulation and noise is not None:
        normalised = normalised * np.exp(lobulation * noise)
    # (r - 1) / |grad r| is the distance to the r = 1 surface to first order
    gradient = np.stack(np.gradient(normalised), axis=0)
    slope = np.sqrt((gradient ** 2).sum(axis=0)) + 1e-6
    return ((normalised - 1.0) / slope).astype(np.float32)


def tube_level_set(points: np.ndarray, start: np.ndarray, direction: np.ndarray, length: float,
                   radius_start: float, radius_end: float) -> np.ndarray:
    """Level set of a straight tube (cone frustum) from ``start`` along unit ``direction`` for ``length``
    voxels, radius tapering linearly: vessels (radius constant) and spicules (tapering to a tip)."""
    offsets = points - start
    along = offsets @ direction
    across = np.sqrt(np.maximum((offsets ** 2).sum(axis=-1) - along ** 2, 0.0))
    t = np.clip(along / max(length, 1e-6), 0.0, 1.0)
    radius = radius_start + (radius_end - radius_start) * t
    outside_ends = np.maximum(-along, along - length)
    return np.maximum(across - radius, outside_ends).astype(np.float32)


def keep_component_near(label: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The connected component of a boolean mask nearest to ``centre`` (k, j, i)."""
    components, count = ndimage.label(label)
    if count <= 1:
        return label
    centres = np.asarray(ndimage.center_of_mass(label, components, range(1, count + 1)))
    return components == 1 + int(np.argmin(np.linalg.norm(centres - centre, axis=1)))
