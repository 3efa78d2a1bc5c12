"""What one viewer shows, turned into data a page can embed: gzip NIfTI in base64, colour tables, notes.

Geometry: the NIfTI files are written by :func:`RadAISegmentLib.io.write_image` (ITK), whose affine is the
image's IJK->RAS matrix (:attr:`Image.ijk_to_ras`), the world NiiVue draws and reports in (RAS mm).
Large volumes are coarsened for display by whole voxel blocks (:mod:`RadAISegmentLib.downsample`), the same
blocks for every layer, and the viewer says so.
"""
from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from RadAISegmentLib.downsample import block_mean, block_mode, display_factors
from RadAISegmentLib.errors import InputError
from RadAISegmentLib.heatmap import HEAT_CONTROL_POINTS, heat_rgb
from RadAISegmentLib.image import Image, as_label_array
from RadAISegmentLib.io import write_image

from .meshes import case_meshes

#: Display budget per viewer (voxels of the image); larger images are coarsened by whole blocks.
DEFAULT_MAX_VOXELS = 6_000_000


@dataclass(frozen=True)
class ViewerCase:
    """One case for the viewer: an image, and optionally a segmentation and a saliency map on its grid.

    ``window``: grey window (low, high) in the image's units (``unit``, e.g. "HU"); default: the 1st..99.5th
    percentiles. ``saliency_threshold``: the heat map's initial threshold (0..1). ``focus_ras``: where the
    cross-hair starts (RAS mm). ``note``: a sentence shown under the viewer.

    3D view: surfaces of ``context`` (landmarks from :func:`RadAISegmentLib.anatomy.context_structures`),
    of the segments and of the saliency map at 0.3 and 0.6. They may come from other grids than the slices
    (each is placed by its own geometry): ``surface_labelmap`` / ``surface_saliency`` (default: ``labelmap`` /
    ``saliency``), e.g. the full-resolution segmentation when the slices show a coarser, wider image.
    """

    title: str
    image: Image
    labelmap: Optional[Image] = None
    saliency: Optional[Image] = None
    saliency_name: str = "Saliency"
    image_name: str = "Image"
    unit: str = ""
    window: Optional[tuple[float, float]] = None
    saliency_threshold: float = 0.3
    focus_ras: Optional[tuple[float, float, float]] = None
    note: str = ""
    context: Optional[Image] = None
    surface_labelmap: Optional[Image] = None
    surface_saliency: Optional[Image] = None

    def checked(self) -> "ViewerCase":
        """Refuse layers that are not on the image's grid (GeometryMismatchError names the difference)."""
        if self.labelmap is not None:
            self.image.require_same_grid(self.labelmap, "segmentation")
            as_label_array(self.labelmap)
        if self.saliency is not None:
            self.image.require_same_grid(self.saliency, "saliency map")
            values = np.asarray(self.saliency.array, dtype=float)
            if not np.all(np.isfinite(values)):
                raise InputError("The saliency map holds NaN or infinite values; a heat map needs numbers in 0..1.")
        self.image.require_finite()
        return self


def nifti_base64(image: Image) -> str:
    """The image as a gzip-compressed NIfTI file, base64-encoded (written by the project's NIfTI writer)."""
    with tempfile.TemporaryDirectory(prefix="radai-viewer-") as folder:
        path = Path(folder) / "layer.nii.gz"
        write_image(image, path)
        return base64.b64encode(path.read_bytes()).decode("ascii")


def heat_colormap(steps: int = 64) -> dict:
    """RadAI's heat colours as a NiiVue colour map (R, G, B, A, I on 0..255), alpha rising with the value."""
    fractions = np.linspace(0.0, 1.0, steps)
    rgb = np.round(heat_rgb(fractions) * 255).astype(int)
    alpha = np.round(np.clip(0.35 + 0.65 * fractions, 0, 1) * 255).astype(int)
    return {"R": rgb[:, 0].tolist(), "G": rgb[:, 1].tolist(), "B": rgb[:, 2].tolist(), "A": alpha.tolist(),
            "I": np.round(fractions * 255).astype(int).tolist()}


def image_colormap() -> dict:
    """Grey for the slices, fully transparent in NiiVue's 3D rendering (the 3D view shows surfaces instead)."""
    levels = list(range(0, 256, 15))
    return {"R": levels, "G": levels, "B": levels, "A": [0] * len(levels), "I": levels}


#: Each segment owns this many neighbouring entries of the page's colour table (see :func:`label_display`).
LABEL_SPREAD = 3


def label_display(labelmap: Image) -> tuple[np.ndarray, dict, list[dict]]:
    """Display values, NiiVue colour table and legend entries of a labelmap.

    NiiVue looks label colours up in a linearly filtered texture, and with a long table the lookup can land a
    fraction of an entry off (measured: background tinted with the first segment's colour once a table has
    about a hundred entries). So the page never shows raw label values: the n-th segment (by label value) is
    shown as value ``3 n`` and owns table entries ``3 n - 1 .. 3 n + 1``; entries 0 and 1 are transparent.
    Returns ``(display array [k, j, i] uint8/uint16, table, [{value, display, name, rgb}, ...])``.
    """
    labels = as_label_array(labelmap)
    values = labelmap.label_values()
    size = LABEL_SPREAD * len(values) + 2
    red, green, blue, alpha = ([0] * size for _ in range(4))
    names = [""] * size
    display = np.zeros(labels.shape, dtype=np.uint8 if size < 256 else np.uint16)
    entries = []
    for rank, value in enumerate(values, start=1):
        info = labelmap.segment_for(value)
        shown = LABEL_SPREAD * rank
        display[labels == value] = shown
        rgb = [int(round(c * 255)) for c in info.color_rgb]
        for index in range(shown - 1, shown + 2):
            red[index], green[index], blue[index], alpha[index], names[index] = rgb[0], rgb[1], rgb[2], 255, info.name
        entries.append({"value": value, "display": shown, "name": info.name, "rgb": [float(c) for c in info.color_rgb]})
    table = {"R": red, "G": green, "B": blue, "A": alpha, "I": list(range(size)), "labels": names}
    return display, table, entries


def _default_window(image: Image) -> tuple[float, float]:
    low, high = np.percentile(np.asarray(image.array, dtype=float), (1.0, 99.5))
    return float(low), float(high if high > low else low + 1.0)


def default_focus_ras(case: ViewerCase) -> Optional[np.ndarray]:
    """Where the cross-hair starts (RAS mm): ``focus_ras``, else the saliency map's strongest voxel, else the
    segmentation's centre of mass, else None (NiiVue's default, the volume's centre)."""
    if case.focus_ras is not None:
        return np.asarray(case.focus_ras, dtype=float)
    if case.saliency is not None and float(np.max(case.saliency.array)) > 0:
        kji = np.unravel_index(int(np.argmax(case.saliency.array)), case.saliency.array.shape)
        return case.saliency.index_to_ras(np.asarray(kji[::-1], dtype=float))
    if case.labelmap is not None and np.any(case.labelmap.array):
        return case.labelmap.index_to_ras(np.argwhere(case.labelmap.array != 0).mean(axis=0)[::-1])
    return None


def case_payload(case: ViewerCase, max_voxels: int = DEFAULT_MAX_VOXELS) -> dict:
    """JSON-ready description of one viewer: layers (gzip NIfTI base64, colour maps, ranges), legend, notes."""
    case = case.checked()
    factors = display_factors(case.image, max_voxels)
    image, labelmap, saliency = case.image, case.labelmap, case.saliency
    notes = [case.note] if case.note else []
    if factors != (1, 1, 1):
        image = block_mean(image, factors, dtype=np.int16 if np.issubdtype(image.array.dtype, np.integer) else None)
        labelmap = block_mode(labelmap, factors) if labelmap is not None else None
        saliency = block_mean(saliency, factors) if saliency is not None else None
        notes.append(f"Downsampled for display: blocks of {factors[0]}×{factors[1]}×{factors[2]} voxels averaged "
                     f"(labels: the most frequent), {case.image.shape_ijk} → {image.shape_ijk} voxels at "
                     f"{', '.join(f'{s:.3g}' for s in image.spacing_mm)} mm.")
    low, high = case.window or _default_window(image)
    layers = [{"role": "image", "title": case.image_name, "file": "image.nii.gz", "colormap": "radai-image",
               "opacity": 1.0,
               "cal_min": float(low), "cal_max": float(high), "unit": case.unit, "base64": nifti_base64(image)}]
    if labelmap is not None:
        display, lut, entries = label_display(labelmap)
        layers.append({"role": "segmentation", "title": "Segment", "file": "segmentation.nii.gz", "colormap": "gray",
                       "opacity": 0.55, "cal_min": 0.0, "cal_max": float(len(lut["I"]) - 1), "lut": lut,
                       "labels": entries, "base64": nifti_base64(labelmap.with_array(display, segments=()))})
    if saliency is not None:
        values = np.round(np.clip(np.asarray(saliency.array, dtype=np.float32), 0.0, 1.0) * 1000) / 1000
        layers.append({"role": "saliency", "title": case.saliency_name, "file": "saliency.nii.gz",
                       "colormap": "radai-heat", "opacity": 0.7, "cal_min": float(case.saliency_threshold),
                       "cal_max": 1.0, "unit": "",
                       "base64": nifti_base64(saliency.with_array(values.astype(np.float32)))})
    meshes = case_meshes(case.surface_labelmap if case.surface_labelmap is not None else case.labelmap,
                         case.surface_saliency if case.surface_saliency is not None else case.saliency,
                         case.context, case.saliency_name)
    return {"title": case.title, "layers": layers, "meshes": meshes, "notes": notes, "heat_colormap": heat_colormap(),
            "image_colormap": image_colormap(),
            "heat_css": [f"rgb({', '.join(str(int(round(c * 255))) for c in rgb)})" for _, rgb in HEAT_CONTROL_POINTS],
            "focus_mm": [float(v) for v in default_focus_ras(case)] if default_focus_ras(case) is not None else None,
            "shape_ijk": list(image.shape_ijk), "spacing_mm": list(image.spacing_mm)}
