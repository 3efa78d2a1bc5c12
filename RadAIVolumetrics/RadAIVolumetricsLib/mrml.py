"""MRML bridge for measurements: table nodes, markups lines (RECIST axes) and plot charts.

Imports only ``slicer`` MRML classes (never ``slicer.app``/``qt``), so it runs with the headless Slicer
core. Points are RAS mm (Slicer's world coordinates).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import slicer
import vtk


def _scene(scene=None):
    scene = scene if scene is not None else getattr(slicer, "mrmlScene", None)
    if scene is None:
        raise RuntimeError("No MRML scene: pass scene= or set slicer.mrmlScene.")
    return scene


def table_node_from_rows(rows: Sequence[Mapping[str, object]], columns: Sequence[tuple[str, str]], name: str,
                         scene=None, descriptions: Optional[Mapping[str, str]] = None, existing_node=None):
    """A ``vtkMRMLTableNode`` with one column per ``(name, unit)`` and one row per dict.

    Numeric columns (all values int/float/None) are ``double`` (None -> NaN); others are strings.
    Each column's unit goes in the ``unitLabel`` column property, its description (if given) in
    ``description``. ``existing_node`` (optional) is emptied and reused.
    """
    if existing_node is not None:
        node = existing_node
        node.RemoveAllColumns()
        node.SetAndObserveSchema(None)  # drops the old columns' unit labels and descriptions
        node.SetName(name)
    else:
        node = _scene(scene).AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    descriptions = descriptions or {}
    for column_name, unit in columns:
        values = [row.get(column_name) for row in rows]
        numeric = all(v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool)) for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(column_name)
        node.AddColumn(array)
    table.SetNumberOfRows(len(rows))
    for c, (column_name, unit) in enumerate(columns):
        array = table.GetColumn(c)
        for r, row in enumerate(rows):
            value = row.get(column_name)
            if array.IsA("vtkDoubleArray"):
                array.SetValue(r, float("nan") if value is None else float(value))
            else:
                array.SetValue(r, "" if value is None else str(value))
        if unit:
            node.SetColumnUnitLabel(column_name, unit)
        if column_name in descriptions:
            node.SetColumnDescription(column_name, descriptions[column_name])
    table.Modified()
    node.Modified()
    return node


def rows_from_table_node(node) -> list[dict]:
    """The table's rows as dicts (numbers as float, strings as str): the inverse of :func:`table_node_from_rows`."""
    table = node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c, column_name in enumerate(names):
            array = table.GetColumn(c)
            row[column_name] = float(array.GetValue(r)) if array.IsA("vtkDataArray") else str(array.GetValue(r))
        rows.append(row)
    return rows


def table_as_text(node, separator: str = "\t") -> str:
    """A table node as delimited text: header = column names, one line per row, values quoted where
    they hold the separator (e.g. "kidney, left"); for CSV export and the clipboard."""
    import csv
    import io
    table = node.GetTable()
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator, lineterminator="\n")
    writer.writerow([table.GetColumnName(c) for c in range(table.GetNumberOfColumns())])
    for r in range(table.GetNumberOfRows()):
        writer.writerow([table.GetValue(r, c).ToString() for c in range(table.GetNumberOfColumns())])
    return buffer.getvalue()


def line_markup(p1_ras: Sequence[float], p2_ras: Sequence[float], name: str, scene=None,
                color_rgb: Optional[Sequence[float]] = None):
    """A ``vtkMRMLMarkupsLineNode`` between two RAS points (mm), e.g. a RECIST long or short axis."""
    scene = _scene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    node.AddControlPointWorld(*[float(v) for v in p1_ras])
    node.AddControlPointWorld(*[float(v) for v in p2_ras])
    if color_rgb is not None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        if display is not None:
            display.SetSelectedColor(*[float(c) for c in color_rgb])
    return node


def plot_chart(x: Sequence[float], ys: Mapping[str, Sequence[Optional[float]]], title: str, x_label: str,
               y_label: str, scene=None, colors_rgb: Optional[Mapping[str, Sequence[float]]] = None):
    """A ``vtkMRMLPlotChartNode`` with one line series per entry of ``ys`` over the common ``x``.

    The data live in one table node (column ``x_label`` then one column per series; a missing
    value (None) is NaN, which the plot leaves out); each ``vtkMRMLPlotSeriesNode`` references it,
    coloured by ``colors_rgb[name]`` (0..1) when given. Returns the chart node.
    """
    scene = _scene(scene)
    x = [float(v) for v in x]
    for series_name, values in ys.items():
        if len(values) != len(x):
            from RadAISegmentLib.errors import InputError
            raise InputError(f"Series '{series_name}' has {len(values)} values but x has {len(x)}; give one y per x.")
    rows = [{x_label: xv, **{n: float("nan") if v[i] is None else float(v[i]) for n, v in ys.items()}}
            for i, xv in enumerate(x)]
    table = table_node_from_rows(rows, [(x_label, "")] + [(n, "") for n in ys], f"{title} data", scene)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", title)
    chart.SetTitle(title)
    chart.SetXAxisTitle(x_label)
    chart.SetYAxisTitle(y_label)
    for series_name in ys:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", series_name)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(x_label)
        series.SetYColumnName(series_name)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        if colors_rgb and series_name in colors_rgb:
            series.SetColor(*[float(c) for c in colors_rgb[series_name]])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart
