"""Surfaces for the viewer's 3D view: segments, anatomical landmarks and saliency iso-surfaces as compact meshes.

Each mesh is a closed surface in RAS mm (:func:`RadAISegmentLib.surfaces.mask_mesh_ras`), its vertices
(float32) and triangles (uint32), little-endian, gzip-compressed and base64-encoded; the page inflates them
with the browser's own ``DecompressionStream`` and hands them to NiiVue. A mesh with more than
``max_triangles`` triangles is re-extracted with a coarser marching-cubes step.
"""
from __future__ import annotations

import base64
import gzip
from typing import Optional

import numpy as np

from RadAISegmentLib.heatmap import heat_rgb
from RadAISegmentLib.image import Image, as_label_array
from RadAISegmentLib.surfaces import mask_mesh_ras

#: Opacity of landmark surfaces by name (others 0.35), as in RadAI's static 3D pictures.
CONTEXT_OPACITY = {"Lungs": 0.18, "Airway": 0.55, "Bone": 1.0, "Brain": 0.3}
MAX_TRIANGLES = 80_000


def _pack(array: np.ndarray, dtype) -> str:
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return base64.b64encode(gzip.compress(data, compresslevel=6, mtime=0)).decode("ascii")


def _mesh(mask: np.ndarray, grid: Image, smoothing_mm: float, level: Optional[float], max_triangles: int):
    for step in (1, 2, 3, 4, 6):
        vertices, triangles = mask_mesh_ras(mask, grid, smoothing_mm, step=step, level=level)
        if len(triangles) <= max_triangles:
            break
    return vertices, triangles


def mesh_entry(name: str, mask: np.ndarray, grid: Image, rgb, opacity: float, kind: str, smoothing_mm: float = 1.5,
               level: Optional[float] = None, max_triangles: int = MAX_TRIANGLES) -> Optional[dict]:
    """One mesh as page data (``None`` when the surface is empty)."""
    vertices, triangles = _mesh(mask, grid, smoothing_mm, level, max_triangles)
    if len(triangles) == 0:
        return None
    return {"name": name, "kind": kind, "rgba255": [int(round(c * 255)) for c in rgb] + [255], "opacity": opacity,
            "vertices": _pack(vertices, np.float32), "triangles": _pack(triangles, np.uint32),
            "triangle_count": int(len(triangles))}


def labelmap_meshes(labelmap: Image, kind: str, opacity_of) -> list[dict]:
    """One mesh per label, in segment colours; smoothing 0.8 in-plane voxels (at least 0.8 mm)."""
    labels = as_label_array(labelmap)
    smoothing = max(0.8, 0.8 * min(labelmap.spacing_mm[:2]))
    entries = []
    for value in labelmap.label_values():
        info = labelmap.segment_for(value)
        entry = mesh_entry(info.name, labels == value, labelmap, info.color_rgb, opacity_of(info.name), kind, smoothing)
        if entry:
            entries.append(entry)
    return entries


def saliency_meshes(saliency: Image, name: str, levels=(0.3, 0.6)) -> list[dict]:
    """Nested iso-surfaces of a saliency map (0..1) at ``levels``, in the heat colour of each level."""
    values = np.asarray(saliency.array, dtype=np.float32)
    entries = []
    for number, level in enumerate(levels):
        entry = mesh_entry(f"{name} ≥ {level:g}", values, saliency, heat_rgb(0.55 + 0.4 * level),
                           0.25 + 0.3 * number, "saliency", level=level)
        if entry:
            entries.append(entry)
    return entries


def case_meshes(labelmap: Optional[Image], saliency: Optional[Image], context: Optional[Image],
                saliency_name: str) -> list[dict]:
    """Landmarks (see-through), segments (opaque) and saliency shells, drawn in this order."""
    meshes = []
    if context is not None:
        meshes += labelmap_meshes(context, "context", lambda name: CONTEXT_OPACITY.get(name, 0.35))
    if labelmap is not None:
        meshes += labelmap_meshes(labelmap, "segment", lambda name: 1.0)
    if saliency is not None:
        meshes += saliency_meshes(saliency, saliency_name)
    return meshes
