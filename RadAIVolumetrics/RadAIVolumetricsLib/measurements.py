"""Per-segment measurements with their names, units and DICOM codes (one registry, as
Slicer's Segment Statistics plugins declare their measurement info).

:func:`measure_segments` returns, per label, a dict whose keys are exactly the
``radai measure --json`` contract; :data:`MEASURES` says for each key its title,
UCUM unit and code (IBSI codes where IBSI defines the feature, SNOMED CT for
volume and RECIST axes, ``99RADAI`` private codes otherwise), so tables and
DICOM SR export need no second dictionary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from RadAISegmentLib.errors import LabelError
from RadAISegmentLib.geometry import lps_to_ras
from RadAISegmentLib.image import Image, as_label_array
from RadAISegmentLib.progress import CancelToken, ProgressCallback

from .intensity import intensity_statistics
from .recist import recist_axes
from .shape import principal_axes, shape_features


@dataclass(frozen=True)
class MeasureInfo:
    key: str
    title: str
    unit: str           # UCUM
    code: tuple[str, str, str]  # (value, scheme, meaning)


MEASURES: tuple[MeasureInfo, ...] = (
    MeasureInfo("name", "Segment", "", ("", "", "")),
    MeasureInfo("voxel_count", "Voxel count", "{voxels}", ("nvoxels", "99QIICR", "Number of voxels")),
    MeasureInfo("volume_mm3", "Volume", "mm3", ("118565006", "SCT", "Volume")),
    MeasureInfo("volume_ml", "Volume", "mL", ("118565006", "SCT", "Volume")),
    MeasureInfo("mesh_volume_mm3", "Mesh volume", "mm3", ("RNU0", "IBSI", "Volume (mesh)")),
    MeasureInfo("surface_area_mm2", "Surface area", "mm2", ("C0JK", "IBSI", "Surface area (mesh)")),
    MeasureInfo("sphericity", "Sphericity", "1", ("QCFX", "IBSI", "Sphericity")),
    MeasureInfo("max_3d_diameter_mm", "Maximum 3D diameter", "mm", ("L0JK", "IBSI", "Maximum 3D diameter")),
    MeasureInfo("max_2d_diameter_slice_mm", "Maximum 2D diameter (slice)", "mm",
                ("max2dslice", "99RADAI", "Maximum 2D diameter in the row-column plane")),
    MeasureInfo("max_2d_diameter_column_mm", "Maximum 2D diameter (column)", "mm",
                ("max2dcolumn", "99RADAI", "Maximum 2D diameter in the row-slice plane")),
    MeasureInfo("max_2d_diameter_row_mm", "Maximum 2D diameter (row)", "mm",
                ("max2drow", "99RADAI", "Maximum 2D diameter in the column-slice plane")),
    MeasureInfo("major_axis_length_mm", "Major axis length", "mm", ("TDIC", "IBSI", "Major axis length")),
    MeasureInfo("minor_axis_length_mm", "Minor axis length", "mm", ("P9VJ", "IBSI", "Minor axis length")),
    MeasureInfo("least_axis_length_mm", "Least axis length", "mm", ("7J51", "IBSI", "Least axis length")),
    MeasureInfo("elongation", "Elongation", "1", ("Q3CK", "IBSI", "Elongation")),
    MeasureInfo("flatness", "Flatness", "1", ("N17B", "IBSI", "Flatness")),
    MeasureInfo("recist_long_axis_mm", "RECIST long axis", "mm", ("103339001", "SCT", "Long axis")),
    MeasureInfo("recist_short_axis_mm", "RECIST short axis", "mm", ("103340004", "SCT", "Short axis")),
    MeasureInfo("connected_components", "Connected components", "1", ("ncomponents", "99RADAI", "Number of connected components")),
)


def resolve_labels(labelmap: Image, names_or_ids: Optional[Sequence[int | str]]) -> list[int]:
    """Label values for names (case-insensitive, from the segments) or ids; all present labels when None."""
    present = labelmap.label_values()
    if not names_or_ids:
        return present
    by_name = {info.name.lower(): info.label for info in labelmap.segments}
    labels = []
    for item in names_or_ids:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            labels.append(int(text))
        elif text.lower() in by_name:
            labels.append(by_name[text.lower()])
        else:
            known = ", ".join(sorted(info.name for info in labelmap.segments)) or "none (use label ids)"
            raise LabelError(f"No segment named '{text}'; known names: {known}.")
    return labels


def _empty_row(label: int, name: str) -> dict:
    row = {info.key: 0.0 for info in MEASURES if info.key != "name"}
    row.update(label=label, name=name, voxel_count=0, connected_components=0, centroid_ras=None,
               recist_long_axis_endpoints_ras=[], recist_short_axis_endpoints_ras=[], oriented_bounding_box=None,
               intensity={}, warnings=["segment is empty: shape measures are 0, centroid undefined"])
    return row


def measure_segments(labelmap: Image, image: Optional[Image] = None, labels: Optional[Sequence[int | str]] = None,
                     progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> list[dict]:
    """Measure each label of ``labelmap`` (optionally with intensity statistics from ``image``).

    Returns one dict per label with the keys of :data:`MEASURES` plus ``label``,
    ``centroid_ras`` (mm), ``recist_long_axis_endpoints_ras`` / ``..._short_...``
    (``[[R, A, S], [R, A, S]]``), ``oriented_bounding_box`` (centre RAS, axes RAS,
    edge lengths mm), ``intensity`` (empty without image) and ``warnings``.
    """
    label_array = as_label_array(labelmap)
    if image is not None:
        image.require_same_grid(labelmap)
        image.require_finite()
    wanted = resolve_labels(labelmap, labels)
    objects = ndimage.find_objects(label_array)
    rows = []
    for position, label in enumerate(wanted):
        if cancel is not None:
            cancel.raise_if_cancelled()
        name = labelmap.segment_for(label).name
        box = objects[label - 1] if 0 < label <= len(objects) else None
        if box is None:
            rows.append(_empty_row(label, name))
            continue
        mask = label_array[box] == label
        offset = tuple(s.start for s in box)
        features = shape_features(mask, labelmap.spacing_mm)
        indices = np.argwhere(mask) + offset
        centroid_ras = labelmap.index_to_ras(indices.mean(axis=0)[::-1]).tolist()
        axes = recist_axes(labelmap, mask, offset)
        warnings = []
        if any(s.start == 0 or s.stop == dim for s, dim in zip(box, label_array.shape)):
            warnings.append("segment touches the image border: it may extend beyond the scan")
        if features.voxel_count == 1:
            warnings.append("single-voxel segment: shape features are not meaningful")
        components = ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]
        row = {"label": label, "name": name, **features.__dict__,
               "volume_mm3": features.voxel_volume_mm3, "volume_ml": features.voxel_volume_mm3 / 1000.0,
               "recist_long_axis_mm": axes.long_axis_mm, "recist_short_axis_mm": axes.short_axis_mm,
               "recist_long_axis_endpoints_ras": axes.long_axis_endpoints_ras,
               "recist_short_axis_endpoints_ras": axes.short_axis_endpoints_ras,
               "centroid_ras": centroid_ras, "connected_components": int(components),
               "oriented_bounding_box": _oriented_box(labelmap, mask, offset),
               "intensity": intensity_statistics(image.array[box][mask]) if image is not None else {},
               "warnings": warnings}
        del row["voxel_volume_mm3"]
        rows.append(row)
        if progress:
            progress((position + 1) / len(wanted), f"measured {name}")
    return rows


def _oriented_box(labelmap: Image, mask: np.ndarray, offset) -> dict:
    """Box aligned with the principal axes: centre (RAS), unit axes (RAS) and edge lengths (mm, voxel-extent)."""
    _, vectors_kji = principal_axes(mask, labelmap.spacing_mm)
    spacing_kji = np.asarray(labelmap.spacing_mm)[::-1]
    points_mm = (np.argwhere(mask) + offset) * spacing_kji
    projected = points_mm @ vectors_kji
    low, high = projected.min(axis=0), projected.max(axis=0)
    centre_kji = (vectors_kji @ ((low + high) / 2.0)) / spacing_kji
    # axis vectors: from mm-in-[k,j,i] to patient RAS through the image direction (columns are i, j, k)
    axes_ras = [lps_to_ras(np.asarray(labelmap.direction_lps) @ vectors_kji[::-1, n]).tolist() for n in range(3)]
    return {"centre_ras": labelmap.index_to_ras(centre_kji[::-1]).tolist(), "axes_ras": axes_ras,
            "edge_lengths_mm": (high - low + spacing_kji.min()).tolist()}
