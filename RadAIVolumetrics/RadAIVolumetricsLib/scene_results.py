"""MRML bridge for RadAI Volumetrics' results: measurement tables with RECIST axes, and the Longitudinal
tab's tracked-lesion table, chart and segmentations. Imports ``slicer`` MRML only (through ``mrml.py``
and ``RadAISegmentLib.mrml``); the module's Logic calls these after converting its input nodes."""
from __future__ import annotations

from typing import Optional

INTENSITY_KEYS = ("mean", "sd", "min", "max", "median", "p5", "p25", "p75", "p95")


def measurement_table(labelmap, image, name: str, table_node=None, draw_recist_axes: bool = False):
    """Every segment of ``labelmap`` measured into a table node (``name``; ``table_node`` overwritten when given):
    columns carry name and unit; first-order statistics of ``image`` (HU for CT, the image's own units
    otherwise) when given; RECIST long and short axes as line markups when ``draw_recist_axes``."""
    from RadAIVolumetricsLib.measurements import MEASURES, measure_segments
    from RadAIVolumetricsLib.mrml import line_markup, table_node_from_rows
    rows = measure_segments(labelmap, image)
    columns = [("name", "")] + [(info.key, info.unit) for info in MEASURES if info.key != "name"]
    flat = [{key: row.get(key) for key, _ in columns} for row in rows]
    if image is not None:
        unit = "HU" if str(image.metadata.get("modality", "")).upper() == "CT" else ""
        columns += [(f"intensity_{key}", unit) for key in INTENSITY_KEYS]
        for row, out in zip(rows, flat):
            out.update({f"intensity_{key}": row["intensity"].get(key) for key in INTENSITY_KEYS})
    table = table_node_from_rows(flat, columns, name, existing_node=table_node)
    if draw_recist_axes:
        for row in rows:
            for key, axis in (("recist_long_axis_endpoints_ras", "long"), ("recist_short_axis_endpoints_ras", "short")):
                ends: Optional[list] = row.get(key)
                if ends:
                    line_markup(ends[0], ends[1], f"{row['name']} RECIST {axis} axis")
    return table


def tracked_lesion_nodes(timepoints, volume_nodes) -> dict:
    """Compare ``timepoints`` (baseline first; ``volume_nodes`` in the same order) and add the results to the
    scene: ``result`` (ComparisonResult), ``table`` (one row per lesion track), ``chart`` (volume over time,
    one series per lesion in its track colour) and ``segmentations`` (per timepoint, a new node whose
    segment ``Lesion <id>`` has the same colour at every timepoint). Inputs are not modified."""
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, show_closed_surfaces
    from RadAIVolumetricsLib.longitudinal.compare import compare_timepoints
    from RadAIVolumetricsLib.longitudinal.tracked import track_color, tracked_labelmaps
    from RadAIVolumetricsLib.mrml import plot_chart, table_node_from_rows
    result = compare_timepoints(timepoints)
    rows, columns = result.track_table()
    scene = volume_nodes[0].GetScene()
    table = table_node_from_rows(rows, columns, "Lesion tracking", scene=scene)
    days = [p["days_from_baseline"] if p["days_from_baseline"] is not None else i
            for i, p in enumerate(result.timepoints)]
    series = {f"Lesion {lesion['id']}": lesion["volumes_ml"] for lesion in result.lesions}
    colors = {f"Lesion {lesion['id']}": track_color(lesion["id"]) for lesion in result.lesions}
    chart = plot_chart(days, series, "Lesion volume over time", "Days from baseline", "Volume (mL)",
                       scene=scene, colors_rgb=colors)
    segmentations = []
    for labelmap, volume in zip(tracked_labelmaps([tp.lesions for tp in timepoints], result.lesions), volume_nodes):
        node = segmentation_node_from_labelmap(labelmap, f"{volume.GetName()} tracked lesions", volume)
        show_closed_surfaces(node)
        segmentations.append(node)
    return {"result": result, "table": table, "chart": chart, "segmentations": segmentations}
