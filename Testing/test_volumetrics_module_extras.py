"""RadAIVolumetrics Logic, headless: EF from a Sequences node with its plot chart, and the
Longitudinal tab (tracked lesions share one colour across timepoints, table, chart, inputs untouched)."""
from __future__ import annotations

import numpy as np
import pytest

from slicer_harness import load_module_file

pytestmark = pytest.mark.slicer


@pytest.fixture(scope="module")
def volumetrics_module(slicer_scene):
    return load_module_file("RadAIVolumetrics/RadAIVolumetrics.py", "_radai_volumetrics_module_extras_test")


def _sequence_of_segmentations(scene, labelmaps, images, name):
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    for phase, (labelmap, image) in enumerate(zip(labelmaps, images)):
        reference = volume_node_from_image(image, f"{name} phase {phase}", scene)
        node = segmentation_node_from_labelmap(labelmap, f"{name} seg {phase}", reference)
        sequence.SetDataNodeAtValue(node, str(phase))   # the sequence keeps its own copy
        scene.RemoveNode(node)
        scene.RemoveNode(reference)
    return sequence


def test_ejection_fraction_from_sequence_node_with_volume_curve_chart(volumetrics_module, slicer_scene):
    from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
    from RadAIVolumetricsLib.cardiac import label_volume_ml
    from RadAIVolumetricsLib.mrml import rows_from_table_node
    images, labelmaps, truth = cardiac_cine_phantom(n_phases=8, shape_ijk=(64, 64, 40), spacing_mm=(2.0, 2.0, 3.0))
    sequence = _sequence_of_segmentations(slicer_scene, labelmaps, images, "cine")
    result = volumetrics_module.RadAIVolumetricsLogic().ejectionFractionFromSequence(sequence, "LV blood pool",
                                                                                     heartRateBpm=60.0)
    assert result["ed_phase"] == truth["ed_index"] and result["es_phase"] == truth["es_index"]
    assert result["ejection_fraction_percent"] == pytest.approx(truth["ef_percent"], abs=0.5)
    chart = result["chart"]
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == 1
    series = chart.GetNthPlotSeriesNode(0)
    rows = rows_from_table_node(series.GetTableNode())
    expected = [label_volume_ml(labelmap, "LV blood pool") for labelmap in labelmaps]
    assert [row["blood pool volume"] for row in rows] == pytest.approx(expected)
    assert [row["Time in cycle (ms)"] for row in rows] == pytest.approx([i * 1000.0 / 8 for i in range(8)])


def test_sequence_of_volumes_is_refused_with_a_clear_error(volumetrics_module, slicer_scene):
    from RadAISegmentLib.errors import InputError
    from RadAISegmentLib.mrml import volume_node_from_image
    from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
    images, _, _ = cardiac_cine_phantom(n_phases=3, shape_ijk=(64, 64, 40), spacing_mm=(2.0, 2.0, 3.0))
    sequence = slicer_scene.AddNewNodeByClass("vtkMRMLSequenceNode", "volumes only")
    for phase, image in enumerate(images):
        node = volume_node_from_image(image, f"v{phase}", slicer_scene)
        sequence.SetDataNodeAtValue(node, str(phase))
        slicer_scene.RemoveNode(node)
    with pytest.raises(InputError, match="not a segmentation"):
        volumetrics_module.RadAIVolumetricsLogic().ejectionFractionFromSequence(sequence)


@pytest.fixture(scope="module")
def tracked(volumetrics_module, slicer_scene):
    """Phantom pair (rigid motion, one lesion grows, one shrinks, one new) given follow-up first."""
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    from RadAISegmentLib.phantoms import followup_pair_phantom
    base_ct, base_labels, follow_ct, follow_labels, truth = followup_pair_phantom()
    nodes = {}
    for ct, labels, name in ((follow_ct, follow_labels, "followup"), (base_ct, base_labels, "baseline")):
        lesion = labels.with_array(np.where(labels.array == 5, 1, 0).astype(np.uint8))   # one binary "lesions" mask
        volume = volume_node_from_image(ct, name, slicer_scene)
        nodes[name] = (volume, segmentation_node_from_labelmap(lesion, f"{name} lesions", volume), lesion)
    before = {name: _segment_voxels(segmentation) for name, (_, segmentation, _) in nodes.items()}
    outputs = volumetrics_module.RadAIVolumetricsLogic().trackLesions(
        [nodes["followup"][0], nodes["baseline"][0]], [nodes["followup"][1], nodes["baseline"][1]],
        ["2025-04-01", "2025-01-01"])
    return outputs, nodes, before, truth


def _segment_voxels(segmentation_node) -> dict:
    from RadAISegmentLib.mrml import labelmap_from_segmentation_node
    labelmap = labelmap_from_segmentation_node(segmentation_node)
    return {info.name: int(np.count_nonzero(labelmap.array == info.label)) for info in labelmap.segments}


def _colours(segmentation_node) -> dict:
    segmentation = segmentation_node.GetSegmentation()
    return {segmentation.GetNthSegment(i).GetName(): tuple(round(c, 4) for c in segmentation.GetNthSegment(i).GetColor())
            for i in range(segmentation.GetNumberOfSegments())}


def test_matched_lesions_share_colour_across_timepoints(tracked):
    outputs, nodes, _, _ = tracked
    baseline_node, followup_node = outputs["segmentations"]              # sorted by date: baseline first
    assert baseline_node.GetName() == "baseline tracked lesions"
    baseline, followup = _colours(baseline_node), _colours(followup_node)
    matched = [l for l in outputs["result"].lesions if l["status"] == "matched"]
    new = [l for l in outputs["result"].lesions if l["status"] == "new"]
    assert len(matched) == 2 and len(new) == 1
    for lesion in matched:
        name = f"Lesion {lesion['id']} (matched)"
        assert baseline[name] == followup[name]
    assert f"Lesion {new[0]['id']} (new)" in followup and f"Lesion {new[0]['id']} (new)" not in baseline
    assert len(set(followup.values())) == len(followup)                   # distinct lesions, distinct colours


def test_tracked_segments_hold_the_input_voxels_and_inputs_are_untouched(tracked):
    outputs, nodes, before, _ = tracked
    for name, node in (("baseline", outputs["segmentations"][0]), ("followup", outputs["segmentations"][1])):
        assert _segment_voxels(nodes[name][1]) == before[name]           # input segmentation unchanged
        tracked_voxels = _segment_voxels(node)
        assert sum(tracked_voxels.values()) == int(np.count_nonzero(nodes[name][2].array))
    for lesion in outputs["result"].lesions:                               # each track's voxels = its volume
        for index, node in enumerate(outputs["segmentations"]):
            volume_ml = lesion["volumes_ml"][index]
            voxels = _segment_voxels(node).get(f"Lesion {lesion['id']} ({lesion['status']})", 0)
            spacing = nodes["baseline" if index == 0 else "followup"][0].GetSpacing()
            assert voxels * np.prod(spacing) / 1000.0 == pytest.approx(volume_ml or 0.0, rel=1e-6)


def test_lesion_table_and_volume_chart(tracked):
    from RadAIVolumetricsLib.mrml import rows_from_table_node
    outputs, _, _, _ = tracked
    result = outputs["result"]
    rows = rows_from_table_node(outputs["table"])
    assert [row["lesion"] for row in rows] == [f"Lesion {l['id']}" for l in result.lesions]
    for row, lesion in zip(rows, result.lesions):
        assert row["status"] == lesion["status"]
        assert row["volume followup"] == pytest.approx(lesion["volumes_ml"][1])
        if lesion["volumes_ml"][0] is None:
            assert np.isnan(row["volume baseline"])
    assert outputs["table"].GetColumnUnitLabel("volume followup") == "mL"
    chart = outputs["chart"]
    assert chart.GetNumberOfPlotSeriesNodes() == len(result.lesions)
    days = [row["Days from baseline"] for row in rows_from_table_node(chart.GetNthPlotSeriesNode(0).GetTableNode())]
    assert days == [0.0, 90.0]
    colours = _colours(outputs["segmentations"][1])
    for i in range(chart.GetNumberOfPlotSeriesNodes()):
        series = chart.GetNthPlotSeriesNode(i)
        lesion = next(l for l in result.lesions if f"Lesion {l['id']}" == series.GetName())
        assert tuple(round(c, 4) for c in series.GetColor()) == colours[f"Lesion {lesion['id']} ({lesion['status']})"]
    text = result.summary_text()
    assert "RECIST 1.1: PD" in text


def test_timepoint_without_segmentation_is_refused(volumetrics_module, slicer_scene):
    from RadAISegmentLib.errors import InputError
    with pytest.raises(InputError, match="lacks its volume or its lesion segmentation"):
        volumetrics_module.RadAIVolumetricsLogic().trackLesions([None, None], [None, None], ["2025-01-01", "2025-02-01"])
