"""The one place for patient-coordinate and index-order conventions.

Conventions used everywhere in RadAI (engine, MRML bridge, CLI):

* Voxel arrays are indexed ``array[k, j, i]`` (slice, row, column), the order
  SimpleITK's ``GetArrayFromImage`` and Slicer's ``arrayFromVolume`` return.
* ``spacing_mm`` is given in ``(i, j, k)`` order, like ITK/SimpleITK.
* The patient coordinate system of :class:`~RadAISegmentLib.image.Image` is
  **LPS** (DICOM / ITK): +x = patient Left, +y = Posterior, +z = Superior.
* Slicer, NIfTI and user-facing points (e.g. a ``--seed``) are **RAS**. The only
  LPS <-> RAS conversions in the code base are the functions in this module.

The direction matrix's *columns* are the unit vectors of the i, j and k axes
in patient coordinates, so a voxel index ``(i, j, k)`` maps to::

    point_lps = origin_lps + direction_lps @ (spacing_mm * (i, j, k))
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import GeometryError

#: Flips x and y: multiplies an LPS point to give RAS and vice versa.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(points: np.ndarray | Sequence[float]) -> np.ndarray:
    """Convert points from LPS to RAS (mm). Accepts shape ``(3,)`` or ``(N, 3)``."""
    return np.asarray(points, dtype=float) @ LPS_TO_RAS


def ras_to_lps(points: np.ndarray | Sequence[float]) -> np.ndarray:
    """Convert points from RAS to LPS (mm). The flip is its own inverse."""
    return np.asarray(points, dtype=float) @ LPS_TO_RAS


def ijk_to_lps_matrix(spacing_mm: Sequence[float], origin_lps: Sequence[float],
                      direction_lps: np.ndarray) -> np.ndarray:
    """4x4 homogeneous matrix mapping continuous ``(i, j, k, 1)`` to LPS mm."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(direction_lps, dtype=float) @ np.diag(np.asarray(spacing_mm, dtype=float))
    matrix[:3, 3] = np.asarray(origin_lps, dtype=float)
    return matrix


def ijk_to_ras_matrix(spacing_mm: Sequence[float], origin_lps: Sequence[float],
                      direction_lps: np.ndarray) -> np.ndarray:
    """4x4 matrix mapping ``(i, j, k, 1)`` to RAS mm.

    This is Slicer's ``IJKToRAS`` matrix and, for a NIfTI file whose array is
    stored in ``(i, j, k)`` order, its qform/sform affine.
    """
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ ijk_to_lps_matrix(spacing_mm, origin_lps, direction_lps)


def decompose_ijk_to_ras(matrix: np.ndarray) -> tuple[tuple[float, float, float], np.ndarray, np.ndarray]:
    """Split an IJKToRAS (or NIfTI) 4x4 matrix into ``(spacing_mm, origin_lps, direction_lps)``.

    Inverse of :func:`ijk_to_ras_matrix`. Raises :class:`GeometryError` (a ``ValueError``) for a singular
    or sheared matrix, which no scanner geometry produces.
    """
    matrix = np.asarray(matrix, dtype=float)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix
    linear = lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise GeometryError(f"IJK-to-RAS matrix has a zero or invalid axis: spacing {spacing}; "
                            "the file's orientation header is corrupt.")
    direction = linear / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise GeometryError("IJK-to-RAS matrix is sheared; only orthogonal voxel axes are supported "
                            "(resample the volume to an orthogonal grid first).")
    return (float(spacing[0]), float(spacing[1]), float(spacing[2])), lps[:3, 3].copy(), direction


def index_to_lps(indices_ijk: np.ndarray, spacing_mm: Sequence[float], origin_lps: Sequence[float],
                 direction_lps: np.ndarray) -> np.ndarray:
    """Map continuous ``(i, j, k)`` indices, shape ``(3,)`` or ``(N, 3)``, to LPS mm."""
    ijk = np.asarray(indices_ijk, dtype=float)
    linear = np.asarray(direction_lps, dtype=float) @ np.diag(np.asarray(spacing_mm, dtype=float))
    return ijk @ linear.T + np.asarray(origin_lps, dtype=float)


def lps_to_index(points_lps: np.ndarray, spacing_mm: Sequence[float], origin_lps: Sequence[float],
                 direction_lps: np.ndarray) -> np.ndarray:
    """Map LPS mm points, shape ``(3,)`` or ``(N, 3)``, to continuous ``(i, j, k)`` indices."""
    linear = np.asarray(direction_lps, dtype=float) @ np.diag(np.asarray(spacing_mm, dtype=float))
    return (np.asarray(points_lps, dtype=float) - np.asarray(origin_lps, dtype=float)) @ np.linalg.inv(linear).T


def kji_to_ijk(indices_kji: np.ndarray) -> np.ndarray:
    """Reverse the last axis: numpy ``(k, j, i)`` index tuples to ``(i, j, k)``."""
    return np.asarray(indices_kji)[..., ::-1]


def parse_ras_point(text: str) -> tuple[float, float, float]:
    """A user-typed point ``"R,A,S"`` (mm, the coordinates Slicer shows) as three finite floats.

    The one parser for ``--seed`` options and manifest ``seed_ras`` columns; raises
    :class:`~RadAISegmentLib.errors.InputError` naming the expected form.
    """
    from .errors import InputError
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise InputError(f"Point '{text}' is not three numbers R,A,S in millimetres (e.g. 12.5,-40,88; "
                         "on the command line write --seed=-12,40,5 when R is negative).")
    return values  # type: ignore[return-value]


def parse_ras_numbers(text: str, count: int, what: str = "point") -> tuple[float, ...]:
    """``count`` finite comma-separated numbers (RAS mm), e.g. a box's two corners ``R1,A1,S1,R2,A2,S2``."""
    from .errors import InputError
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(np.isfinite(values)):
        raise InputError(f"{what} '{text}' is not {count} comma-separated numbers in RAS millimetres.")
    return values
