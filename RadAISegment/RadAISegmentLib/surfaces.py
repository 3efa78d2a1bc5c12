"""Smooth closed surfaces of masks, without VTK: the field they are taken from and triangle meshes in RAS mm.

* :func:`smoothed_field` — a mask padded by one voxel, Gaussian-smoothed in millimetres, thick slices refined
  by linear interpolation (no staircase); its 0.5 level is the surface. Used by the 3D renderer (VTK flying
  edges) and by :func:`mask_mesh_ras` (scikit-image marching cubes) for the web viewer.
* :func:`mask_mesh_ras` — vertices (RAS mm, via :meth:`Image.index_to_ras`) and outward-facing triangles.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from .image import Image


def smoothed_field(mask: np.ndarray, spacing_ijk: Sequence[float], smoothing_mm: float) -> tuple[np.ndarray, int]:
    """Padded (one voxel each side), Gaussian-smoothed float32 field of a ``[k, j, i]`` mask, and the factor by
    which k was refined: field index ``(k', j', i')`` is voxel ``(i' - 1, j' - 1, k' / refine - 1)``."""
    field = np.pad(mask.astype(np.float32), 1)
    sigma = [smoothing_mm / s for s in spacing_ijk[::-1]]
    field = ndi.gaussian_filter(field, [min(max(s, 0.0), 3.0) for s in sigma])
    in_plane = min(spacing_ijk[0], spacing_ijk[1])
    refine = int(np.clip(round(spacing_ijk[2] / in_plane / 1.5), 1, 4))
    if refine > 1:      # linear interpolation between slices at exact positions k + n / refine
        positions = np.arange((field.shape[0] - 1) * refine + 1) / refine
        lower = np.floor(positions).astype(int)
        upper = np.minimum(lower + 1, field.shape[0] - 1)
        weight = (positions - lower)[:, None, None].astype(np.float32)
        field = field[lower] * (1 - weight) + field[upper] * weight
    return field, refine


def iso_level(field: np.ndarray) -> float:
    """0.5, or half the peak for objects so small that smoothing left them below 0.5."""
    peak = float(field.max())
    return 0.5 if peak > 0.5 else 0.5 * peak


def _outward(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangles wound so the closed surface's signed volume is positive (normals point outwards)."""
    a, b, c = (vertices[triangles[:, n]] for n in range(3))
    signed_volume = float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0
    return triangles if signed_volume >= 0 else triangles[:, ::-1].copy()


def mask_mesh_ras(mask: np.ndarray, grid: Image, smoothing_mm: float = 1.5, step: int = 1,
                  level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Closed surface of a ``[k, j, i]`` mask on ``grid``: ``(vertices (N, 3) float32 RAS mm,
    triangles (M, 3) uint32)``.

    ``step``: marching-cubes step in field voxels (2 = about a quarter of the triangles). ``level``: iso-value of a
    continuous map given as ``mask`` (e.g. saliency at 0.3), which is then not smoothed. Empty mask: empty arrays.
    """
    from skimage.measure import marching_cubes
    if level is None and not np.any(mask):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32)
    if level is None:
        field, refine = smoothed_field(mask, grid.spacing_mm, smoothing_mm)
        level = iso_level(field)
    else:
        field, refine = np.pad(np.asarray(mask, dtype=np.float32), 1), 1
        if not (field.max() > level > field.min()):
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32)
    vertices_kji, triangles, _, _ = marching_cubes(field, level=level, step_size=max(1, int(step)))
    ijk = np.c_[vertices_kji[:, 2] - 1.0, vertices_kji[:, 1] - 1.0, vertices_kji[:, 0] / refine - 1.0]
    vertices = grid.index_to_ras(ijk).astype(np.float32)
    return vertices, _outward(vertices.astype(np.float64), triangles.astype(np.uint32))
