"""The standard teaching pictures of a case, as PNG files with captions (used by ``radai demo``).

* :func:`lesion_pictures` — a lesion in its anatomical context from the front and from the nearer side
  (landmarks derived from the image by :mod:`.anatomy`, or from a wider ``context_image`` of the same
  patient), a close-up of the segmentation with its saliency map, and the axial slice without and with
  the saliency map.
* :func:`atlas_pictures` — many labelled structures from the front like an anatomy atlas plate (atlas
  colours, names with leader lines) and an axial slice.
* :func:`render_case_pngs` — one or the other: an atlas plate for more than three structures.

In pictures that show a saliency map, segments whose colour could be mistaken for heat colours
(reds, oranges, yellows, purples) are drawn in green instead, and the legend says so.
"""
from __future__ import annotations

import colorsys
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .anatomy import atlas_colours, context_structures
from .errors import InputError
from .image import Image, SegmentInfo, as_label_array
from .render import Callout, render_images_3d, segment_bounds_ras
from .render_slices import display_index_of_ras, ras_canonical, render_side_by_side, render_slice

#: Opacity of the rib cage (ribs, costal cartilages, sternum) on atlas plates: the organs show through it.
ATLAS_SEE_THROUGH = 0.4
#: Colour of a segment drawn beside a saliency map when its own colour looks like heat.
BESIDE_HEAT_RGB = (0.2, 0.85, 0.35)


def looks_like_heat(rgb: Sequence[float]) -> bool:
    """True for reds, oranges, yellows and purples/magentas (hue below 75° or above 260°) that are saturated."""
    hue, _, saturation = colorsys.rgb_to_hls(*[float(c) for c in rgb])
    return saturation > 0.25 and (hue * 360 < 75 or hue * 360 > 260)


def beside_heat(labelmap: Image) -> Image:
    """The labelmap with heat-like segment colours replaced by :data:`BESIDE_HEAT_RGB`."""
    segments = []
    for value in labelmap.label_values():
        info = labelmap.segment_for(value)
        colour = BESIDE_HEAT_RGB if looks_like_heat(info.color_rgb) else info.color_rgb
        segments.append(SegmentInfo(info.label, info.name, colour, info.category, info.type))
    return labelmap.with_array(labelmap.array, segments=segments)


def _centroid_ras(labelmap: Image, value: Optional[int] = None) -> np.ndarray:
    labels = as_label_array(labelmap)
    kji = np.argwhere(labels != 0 if value is None else labels == value).mean(axis=0)
    return labelmap.index_to_ras(kji[::-1])


def _volume_ml(labelmap: Image, value: int) -> float:
    return float(np.count_nonzero(as_label_array(labelmap) == value)) * labelmap.voxel_volume_mm3 / 1000.0


def _strongest_saliency_slice(labelmap: Image, saliency: Image, image: Image) -> int:
    """Axial index (along S) of the lesion's plane where the saliency map is strongest."""
    labels, _ = ras_canonical(as_label_array(labelmap), labelmap)
    heat, _ = ras_canonical(np.asarray(saliency.array, dtype=float), saliency)
    planes = np.nonzero(labels.any(axis=(1, 2)))[0]
    if planes.size == 0:
        return int(np.argmax(heat.max(axis=(1, 2))))
    return int(planes[np.argmax(heat[planes].max(axis=(1, 2)))])


def lesion_pictures(image: Image, labelmap: Image, out_dir, saliency: Optional[Image] = None,
                    context_image: Optional[Image] = None, callout_text: Optional[dict[int, str]] = None,
                    window: tuple[float, float] = (40.0, 400.0), size: tuple[int, int] = (640, 560),
                    saliency_name: str = "Saliency") -> list[tuple[str, str]]:
    """Pictures of one lesion case (see the module docstring); returns ``[(png_path, caption), ...]``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    context = context_structures(context_image if context_image is not None else image)
    context_names = ", ".join(s.name.lower() for s in context.segments if s.label in context.label_values())
    callouts = [Callout(callout_text.get(v) if callout_text and v in callout_text
                        else f"{labelmap.segment_for(v).name} {_volume_ml(labelmap, v):.1f} mL",
                        tuple(labelmap.segment_for(v).color_rgb), labelmap.segment_for(v).name,
                        tuple(_centroid_ras(labelmap, v))) for v in labelmap.label_values()]
    centre = _centroid_ras(labelmap)
    context_centre = _centroid_ras(context) if context.label_values() else centre
    side = "right" if centre[0] > context_centre[0] else "left"
    pictures = []
    for camera in ("anterior", side):
        path = out_dir / f"3d_{camera}.png"
        render_images_3d(path, labelmap=labelmap, context=context, camera=camera, size=size, callouts=callouts,
                         title=f"{camera.capitalize()} view")
        pictures.append((str(path), f"3D, seen from the patient's {camera if camera != 'anterior' else 'front'}: "
                         "the segmentation (solid) among landmarks derived from the image's own values "
                         f"({context_names}; "
                         "lungs see-through). The segment is also drawn faintly on top, so it shows through ribs. "
                         "Letters mark the patient's sides; the bar gives the scale."))
    if saliency is not None:
        shown = beside_heat(labelmap)
        path = out_dir / "3d_saliency.png"
        render_images_3d(path, labelmap=shown, saliency=saliency, camera="anterior", size=size, surface_opacity=0.55,
                         focus_bounds_ras=segment_bounds_ras(labelmap) + np.array([-25.0, 25.0] * 3),
                         title=f"{saliency_name} close-up", saliency_label=saliency_name)
        pictures.append((str(path), f"Close-up from the front: the segmentation (see-through, "
                         f"{'green' if shown.segments != labelmap.segments else 'its own colour'}) and the "
                         f"{saliency_name} map as a glowing cloud in heat colours (above 0.3)."))
    index = _strongest_saliency_slice(labelmap, saliency, image) if saliency is not None else None
    if index is None:
        index = int(display_index_of_ras(image, centre)[0])
    plain, overlaid = out_dir / "axial_plain.png", out_dir / "axial.png"
    render_slice(image, plain, labelmap=labelmap if saliency is None else beside_heat(labelmap), index=index,
                 window=window)
    if saliency is None:
        pictures.append((str(plain), "Axial slice (radiological convention: patient's right on the left) with the "
                         "segment outlined"))
        return pictures
    render_slice(image, overlaid, labelmap=beside_heat(labelmap), overlay=saliency, index=index, window=window)
    render_side_by_side(plain, overlaid, out_dir / "side_by_side.png")
    pictures.append((str(out_dir / "side_by_side.png"), f"Axial slice where the {saliency_name} map is strongest "
                     "inside the lesion (radiological convention: patient's right on the left). Left: the segmentation "
                     f"alone. Right: the same slice with the {saliency_name} map in heat colours (from 0.15, more "
                     "opaque where higher) under the segmentation's outline."))
    return pictures


def atlas_pictures(image: Image, labelmap: Image, out_dir, callout_count: int = 18, size: tuple[int, int] = (1000, 560),
                   window: tuple[float, float] = (40.0, 400.0), margin: float = 1.5) -> list[tuple[str, str]]:
    """An atlas plate of the labelled structures from the front (largest ``callout_count`` named) and an axial slice."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    coloured = atlas_colours(labelmap)
    values = sorted(coloured.label_values(), key=lambda v: -_volume_ml(coloured, v))
    callouts = [Callout(coloured.segment_for(v).name.replace("_", " "), tuple(coloured.segment_for(v).color_rgb),
                        coloured.segment_for(v).name, only_if_visible=True) for v in values[:callout_count]]
    see_through = {coloured.segment_for(v).name: ATLAS_SEE_THROUGH for v in values
                   if re.search(r"rib|cartilage|sternum", coloured.segment_for(v).name)}
    path = out_dir / "3d_atlas.png"
    render_images_3d(path, labelmap=coloured, camera="anterior", size=size, callouts=callouts, margin=margin,
                     background=(1.0, 1.0, 1.0), background_top=(0.93, 0.94, 0.96), title="Anterior view",
                     legend=False, segment_opacity=see_through)
    pictures = [(str(path), f"The {len(values)} labelled structures from the front, like an anatomy atlas plate "
                 f"(atlas colours: bone ivory, muscle red-brown, arteries red, veins blue; rib cage see-through; the "
                 "largest visible ones named). Letters mark the patient's sides; the bar gives the scale.")]
    render_slice(image, out_dir / "axial.png", labelmap=coloured, window=window)
    pictures.append((str(out_dir / "axial.png"), "Axial slice through the largest labelled area (radiological "
                     "convention: patient's right on the left), structures in the same colours"))
    return pictures


def render_case_pngs(image: Image, labelmap: Optional[Image], out_dir, saliency: Optional[Image] = None,
                     focus_ras: Optional[Sequence[float]] = None, context_image: Optional[Image] = None,
                     window: tuple[float, float] = (40.0, 400.0), **options) -> list[tuple[str, str]]:
    """An atlas plate for more than three structures, otherwise the lesion pictures (``focus_ras`` is unused
    by both and kept for callers that pass it)."""
    del focus_ras
    if labelmap is None or not labelmap.label_values():
        raise InputError("Case pictures need a non-empty labelmap (the segmentation to show).")
    if len(labelmap.label_values()) > 3:
        return atlas_pictures(image, labelmap, out_dir, window=window, **options)
    return lesion_pictures(image, labelmap, out_dir, saliency, context_image, window=window, **options)
