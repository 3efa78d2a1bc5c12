"""The Cardiac tab's cine MRI -> EF in one step (issue 16), headless: a Sequences node of cine volumes and a model
go to RadAI Volumetrics' worker process; back come the numbers, a segmentation sequence synchronised with the
cine in its browser, and the volume curve. The model is analytic (``ventricle_fixtures``), so the worker's
result can be compared with the engine run in this process on the same cine: equal, number for number."""
from __future__ import annotations

import types

import numpy as np
import pytest

from RadAISegmentLib.errors import CancelledError, InputError, ModelError
from ventricle_fixtures import cine_sequence_node, make_bright_ventricle_model_folder, small_phantom_cine

JOB_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def cine_logic(slicer_scene, tmp_path_factory):
    from slicer_harness import load_module_file
    from test_models_cache import make_model_folder
    models = tmp_path_factory.mktemp("cine-models")
    make_bright_ventricle_model_folder(models / "bright-ventricle")
    make_model_folder(models / "tiny-unet")
    patch = pytest.MonkeyPatch()
    patch.setenv("RADAI_MODELS_DIR", str(models))
    code = load_module_file("RadAIVolumetrics/RadAIVolumetrics.py", "_radai_volumetrics_cine_test")
    images, labelmaps, truth = small_phantom_cine()
    yield types.SimpleNamespace(logic=code.RadAIVolumetricsLogic(), scene=slicer_scene, models=models,
                                images=images, truth=truth)
    from RadAISegmentLib.worker_client import stop_shared_workers
    stop_shared_workers()
    patch.undo()


def test_cine_to_ef_in_the_worker_equals_the_engine_and_lands_beside_the_cine(cine_logic):
    from RadAISegmentLib.cine import CineSeries
    from RadAISegmentLib.models.loaders import load_model_folder
    from RadAISegmentLib.mrml import segment_volumes_mm3_via_slicer
    from RadAIVolumetricsLib.cardiac_cine import ejection_fraction_from_cine
    scene, logic, truth = cine_logic.scene, cine_logic.logic, cine_logic.truth
    assert logic.cineModelIds()[0] == "bright-ventricle" and "tiny-unet" in logic.cineModelIds()   # ventricular first
    cine = cine_sequence_node(scene, cine_logic.images, [t / 1000.0 for t in truth["times_ms"]], "SAX cine", "s")
    sequences_before = scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode")
    job = logic.startCineEjectionFraction(cine, "bright-ventricle", 72.0, "cpu", "fp32")
    assert job.inputs["times_ms"] == pytest.approx(truth["times_ms"]) and job.inputs["phases"] == 4
    assert (job.inputs["model_id"], job.inputs["heart_rate_bpm"], job.inputs["precision"]) == ("bright-ventricle", 72.0,
                                                                                                "fp32")
    assert job.wait(JOB_TIMEOUT_S)
    result = logic.finishCineEjectionFraction(job)
    expected, labelmaps = ejection_fraction_from_cine(
        CineSeries(tuple(cine_logic.images), tuple(truth["times_ms"])), load_model_folder(cine_logic.models /
                                                                                          "bright-ventricle"),
        72.0, "cpu", "fp32")
    for key in ("edv_ml", "esv_ml", "stroke_volume_ml", "ejection_fraction_percent", "ed_phase", "es_phase",
                "cardiac_output_l_min", "volumes_ml", "times_ms"):
        assert result[key] == pytest.approx(expected[key]), key
    assert result["ejection_fraction_percent"] > 0 and result["model"] == "bright-ventricle"
    segmentations = result["segmentations"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == sequences_before + 1
    assert segmentations.GetNumberOfDataNodes() == 4
    assert [segmentations.GetNthIndexValue(i) for i in range(4)] == [cine.GetNthIndexValue(i) for i in range(4)]
    assert segmentations.GetIndexUnit() == "s"
    browser = scene.GetFirstNodeByName("SAX cine browser")
    assert browser.IsSynchronizedSequenceNodeID(segmentations.GetID(), False)
    phase = segmentations.GetNthDataNode(int(result["es_phase"]))
    names = [phase.GetSegmentation().GetNthSegment(n).GetName() for n in range(phase.GetSegmentation().GetNumberOfSegments())]
    assert names == ["LV blood pool"]
    es_labels = labelmaps[int(result["es_phase"])]
    assert segment_volumes_mm3_via_slicer(phase) == pytest.approx(
        {"LV blood pool": np.count_nonzero(es_labels.array == 1) * es_labels.voxel_volume_mm3})
    chart = result["chart"]
    assert [chart.GetNthPlotSeriesNode(n).GetName() for n in range(chart.GetNumberOfPlotSeriesNodes())] == [
        "LV blood pool", "RV blood pool"]                          # the model labels the RV too (here never found)
    text = logic.ejectionFractionText(result)
    assert f"EF {result['ejection_fraction_percent']:.1f} %" in text and "CO " in text
    assert f"bright-ventricle on 4 phases: ED phase {result['ed_phase']}, ES phase {result['es_phase']}" in text


def test_a_model_without_an_lv_label_or_a_sequence_of_segmentations_is_a_clear_error(cine_logic):
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap
    scene, logic = cine_logic.scene, cine_logic.logic
    cine = cine_sequence_node(scene, cine_logic.images[:2], [0.0, 500.0], "two phases")
    sequences_before = scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode")
    job = logic.startCineEjectionFraction(cine, "tiny-unet", None, "cpu")
    assert job.wait(JOB_TIMEOUT_S)
    with pytest.raises(ModelError, match="no LV blood-pool label"):
        logic.finishCineEjectionFraction(job)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == sequences_before and not job.folder.exists()
    segmentations = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "segmentations, not volumes")
    for index in range(2):
        node = segmentation_node_from_labelmap(small_phantom_cine()[1][index], "phase", scene=scene)
        segmentations.SetDataNodeAtValue(node, str(index))
        scene.RemoveNode(node)
    with pytest.raises(InputError, match="not a scalar volume"):
        logic.startCineEjectionFraction(segmentations, "bright-ventricle")
    with pytest.raises(InputError, match="Choose a ventricular model"):
        logic.startCineEjectionFraction(cine, "")


def test_cancel_stops_the_worker_and_adds_nothing(cine_logic):
    scene, logic = cine_logic.scene, cine_logic.logic
    cine = cine_sequence_node(scene, cine_logic.images, cine_logic.truth["times_ms"], "cancelled cine")
    sequences_before = scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode")
    job = logic.startCineEjectionFraction(cine, "bright-ventricle", None, "cpu")
    job.cancel()
    assert not job.worker.running and not job.folder.exists()
    with pytest.raises(CancelledError):
        logic.finishCineEjectionFraction(job)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == sequences_before
