"""Volumetrics MRML bridge: tables with units, RECIST line markups, plot charts (headless Slicer core)."""
from __future__ import annotations

import math

import numpy as np
import pytest


def test_table_node_keeps_values_units_and_descriptions(slicer_scene):
    from RadAIVolumetricsLib import mrml
    rows = [{"Segment": "Liver", "Volume": 1043118.0, "Voxels": 38634},
            {"Segment": "Stomach", "Volume": 126225.0, "Voxels": None}]
    node = mrml.table_node_from_rows(rows, [("Segment", ""), ("Volume", "mm3"), ("Voxels", "")], "stats", slicer_scene,
                                     descriptions={"Volume": "Voxel count x voxel volume"})
    assert node.GetNumberOfRows() == 2 and node.GetNumberOfColumns() == 3
    assert node.GetColumnUnitLabel("Volume") == "mm3"
    assert node.GetColumnDescription("Volume") == "Voxel count x voxel volume"
    assert node.GetTable().GetColumnByName("Volume").IsA("vtkDoubleArray")
    back = mrml.rows_from_table_node(node)
    assert back[0] == {"Segment": "Liver", "Volume": 1043118.0, "Voxels": 38634.0}
    assert back[1]["Segment"] == "Stomach" and math.isnan(back[1]["Voxels"])


def test_line_markup_length_is_distance_between_ras_points(slicer_scene):
    from RadAIVolumetricsLib import mrml
    p1, p2 = (10.0, -20.0, 30.5), (13.0, -16.0, 42.5)
    node = mrml.line_markup(p1, p2, "RECIST long axis", slicer_scene, color_rgb=(1, 1, 0))
    assert node.GetNumberOfControlPoints() == 2
    assert np.allclose(node.GetNthControlPointPositionWorld(1), p2)
    assert node.GetLineLengthWorld() == pytest.approx(np.linalg.norm(np.subtract(p2, p1)), abs=1e-9)


def test_plot_chart_has_one_series_per_curve(slicer_scene):
    from RadAIVolumetricsLib import mrml
    x = [0, 1, 2, 3]
    chart = mrml.plot_chart(x, {"LV volume": [120, 90, 60, 110], "RV volume": [130, 95, 70, 120]},
                            "Volume-time curve", "Phase", "Volume (mL)", slicer_scene)
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(1)
    table = series.GetTableNode().GetTable()
    assert series.GetYColumnName() == "RV volume"
    assert [table.GetColumnByName("RV volume").GetValue(i) for i in range(4)] == [130, 95, 70, 120]
    assert chart.GetXAxisTitle() == "Phase" and chart.GetYAxisTitle() == "Volume (mL)"
    from RadAISegmentLib.errors import InputError
    with pytest.raises(InputError, match="one y per x"):
        mrml.plot_chart(x, {"bad": [1, 2]}, "t", "x", "y", slicer_scene)


def test_table_node_existing_node_is_replaced(slicer_scene):
    from RadAIVolumetricsLib import mrml
    first = mrml.table_node_from_rows([{"a": 1.0, "b": "x"}], [("a", "mm"), ("b", "")], "t1", slicer_scene)
    second = mrml.table_node_from_rows([{"c": 2.0}, {"c": 3.0}], [("c", "mL")], "t2", existing_node=first)
    assert second is first and first.GetNumberOfColumns() == 1 and first.GetNumberOfRows() == 2
    assert first.GetColumnUnitLabel("c") == "mL" and not first.GetColumnUnitLabel("a")
