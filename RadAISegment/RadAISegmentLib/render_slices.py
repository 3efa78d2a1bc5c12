"""2D slice pictures to PNG from engine arrays: numpy + matplotlib's PNG writer (no VTK, no Slicer).

* :func:`render_slice` — windowed grey, labelmap fill + outline in segment colours, heat overlay
  (colour by value, opacity rising from the threshold to 1); radiological display convention (patient
  right on the left of axial/coronal planes).
* :func:`render_side_by_side` — two PNGs joined horizontally.
* :func:`display_index_of_ras` — which displayed plane holds a RAS point.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import geometry
from .atomic import atomic_path
from .errors import InputError
from .image import Image, as_label_array
from .heatmap import heat_rgb


def display_index_of_ras(image: Image, point_ras) -> tuple[int, int, int]:
    """Index ``(s, a, r)`` in the ``[S, A, R]`` canonical array of the voxel nearest a RAS point."""
    ijk = np.round(image.ras_to_index(np.asarray(point_ras, dtype=float))).astype(int)
    ijk = np.clip(ijk, 0, np.array(image.shape_ijk) - 1)
    marker = np.zeros(image.array.shape, dtype=np.uint8)
    marker[ijk[2], ijk[1], ijk[0]] = 1
    canonical, _ = ras_canonical(marker, image)
    return tuple(int(v) for v in np.argwhere(canonical)[0])


def ras_canonical(array: np.ndarray, image: Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Permute/flip ``array[k, j, i]`` to ``[S, A, R]`` order with increasing RAS coordinates.

    Uses the nearest RAS axis of each voxel axis (oblique grids are shown unresampled).
    Returns the array and its spacing along (R, A, S) in mm.
    """
    direction_ras = geometry.lps_to_ras(image.direction_lps.T).T  # columns: i, j, k in RAS
    ras_axis_of = [int(np.argmax(np.abs(direction_ras[:, c]))) for c in range(3)]  # for i, j, k
    if sorted(ras_axis_of) != [0, 1, 2]:
        raise InputError("The image is too oblique to show on axial/coronal/sagittal planes without resampling.")
    ijk = np.transpose(array, (2, 1, 0))  # [i, j, k]
    order = [ras_axis_of.index(r) for r in range(3)]  # voxel axis for R, A, S
    ras = np.transpose(ijk, order)  # [R, A, S]
    for r, voxel_axis in enumerate(order):
        if direction_ras[r, voxel_axis] < 0:
            ras = np.flip(ras, axis=r)
    spacing = tuple(float(image.spacing_mm[order[r]]) for r in range(3))
    return np.transpose(ras, (2, 1, 0)), spacing  # [S, A, R]


def slice_plane(volume_sar: np.ndarray, axis: str, index: int) -> np.ndarray:
    """The displayed 2D plane (row 0 at the top) of an ``[S, A, R]`` array, radiological convention:
    axial: anterior up, patient right on the left; coronal: superior up, right on the left;
    sagittal: superior up, anterior on the left."""
    if axis == "axial":
        return volume_sar[index][::-1, ::-1]
    if axis == "coronal":
        return volume_sar[:, index, :][::-1, ::-1]
    if axis == "sagittal":
        return volume_sar[:, :, index][::-1, ::-1]
    raise InputError(f"Unknown axis '{axis}'; use axial, coronal or sagittal.")


_AXIS_DIM = {"axial": 0, "coronal": 1, "sagittal": 2}


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def render_slice(image: Image, path_png, labelmap: Optional[Image] = None, overlay: Optional[Image] = None,
                 axis: str = "axial", index: Optional[int] = None, window: tuple[float, float] = (40.0, 400.0),
                 overlay_threshold: float = 0.15, overlay_alpha: float = 0.75, fill_alpha: float = 0.35,
                 pixel_size_mm: Optional[float] = None) -> np.ndarray:
    """Write one slice as PNG: grey ``window=(level, width)``, labelmap fill + outline in segment colours,
    ``overlay`` (0..1, e.g. saliency) in heat colours where ``>= overlay_threshold``, its opacity rising
    linearly from ``0.3 × overlay_alpha`` at the threshold to ``overlay_alpha`` at 1 (drawn under the outlines).

    ``index`` counts along the RAS axis of the plane (S for axial, A for coronal, R for sagittal),
    default the middle (or the labelmap's largest-area plane). Pixels are square, ``pixel_size_mm``
    (default: the finest in-plane spacing / 2). Returns the RGB array written (rows top to bottom).
    """
    from matplotlib import image as mpl_image
    if axis not in _AXIS_DIM:
        raise InputError(f"Unknown axis '{axis}'; use axial, coronal or sagittal.")
    volume, spacing_ras = ras_canonical(image.array, image)
    labels = overlay_sar = None
    if labelmap is not None:
        image.require_same_grid(labelmap)
        labels, _ = ras_canonical(as_label_array(labelmap), labelmap)
    if overlay is not None:
        image.require_same_grid(overlay, "overlay")
        overlay_sar, _ = ras_canonical(np.asarray(overlay.array, dtype=float), overlay)
    dim = _AXIS_DIM[axis]
    if index is None:
        if labels is not None and labels.any():
            index = int(np.argmax((labels != 0).sum(axis=tuple(d for d in range(3) if d != dim))))
        else:
            index = volume.shape[dim] // 2
    if not 0 <= index < volume.shape[dim]:
        raise InputError(f"Slice index {index} is outside 0..{volume.shape[dim] - 1} along the {axis} axis.")
    level, width = window
    grey = np.clip((slice_plane(volume, axis, index).astype(float) - (level - width / 2)) / width, 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if overlay_sar is not None:
        plane = slice_plane(overlay_sar, axis, index)
        hot = plane >= overlay_threshold
        rise = (plane[hot] - overlay_threshold) / max(1.0 - overlay_threshold, 1e-6)
        alpha = (overlay_alpha * (0.3 + 0.7 * np.clip(rise, 0.0, 1.0)))[:, None]
        rgb[hot] = (1 - alpha) * rgb[hot] + alpha * heat_rgb(plane[hot])
    if labels is not None:
        plane = slice_plane(labels, axis, index)
        for value in np.unique(plane[plane != 0]):
            mask = plane == value
            color = np.asarray(labelmap.segment_for(int(value)).color_rgb, dtype=float)
            if overlay_sar is None:
                rgb[mask] = (1 - fill_alpha) * rgb[mask] + fill_alpha * color
            rgb[_outline(mask)] = color
    # in-plane spacings (rows, columns) of the displayed plane
    row_mm, col_mm = {"axial": (spacing_ras[1], spacing_ras[0]), "coronal": (spacing_ras[2], spacing_ras[0]),
                      "sagittal": (spacing_ras[2], spacing_ras[1])}[axis]
    pixel = pixel_size_mm or min(row_mm, col_mm) / 2
    rows = np.minimum((np.arange(int(round(rgb.shape[0] * row_mm / pixel))) * pixel / row_mm).astype(int), rgb.shape[0] - 1)
    cols = np.minimum((np.arange(int(round(rgb.shape[1] * col_mm / pixel))) * pixel / col_mm).astype(int), rgb.shape[1] - 1)
    out = rgb[rows][:, cols]
    with atomic_path(path_png) as tmp:
        mpl_image.imsave(str(tmp), np.clip(out, 0, 1), format="png")
    return out


def render_side_by_side(png_a, png_b, out_png, gap_px: int = 8) -> None:
    """Join two PNGs left-to-right (top-aligned, dark gap) into ``out_png``."""
    from matplotlib import image as mpl_image
    a, b = (mpl_image.imread(str(p))[..., :3] for p in (png_a, png_b))
    height = max(a.shape[0], b.shape[0])
    canvas = np.zeros((height, a.shape[1] + gap_px + b.shape[1], 3), dtype=float)
    canvas[:a.shape[0], :a.shape[1]] = a
    canvas[:b.shape[0], a.shape[1] + gap_px:] = b
    with atomic_path(out_png) as tmp:
        mpl_image.imsave(str(tmp), canvas, format="png")
