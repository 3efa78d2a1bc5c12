"""RadAISegment Logic, headless: model install / remove / card summary, results placed under the input's
study in the subject hierarchy, and the Sample Data registration of the bundled cases."""
from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from slicer_harness import load_module_file

pytestmark = pytest.mark.slicer

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def segment_module(slicer_scene):
    return load_module_file("RadAISegment/RadAISegment.py", "_radai_segment_module_models_test")


def _model_copy(folder: Path, model_id: str) -> Path:
    """The shipped lesion-roi model under a new id (a real, checksummed model folder)."""
    shutil.copytree(REPO_ROOT / "Resources" / "Models" / "lesion-roi", folder)
    card = json.loads((folder / "card.json").read_text())
    card["id"] = model_id
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_install_summary_and_remove_a_model(segment_module, tmp_path, monkeypatch):
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "cache"))
    logic = segment_module.RadAISegmentLogic()
    assert logic.modelCacheFolder() == str(tmp_path / "cache")
    assert logic.installModel(str(_model_copy(tmp_path / "src", "lesion-copy"))) == "lesion-copy"
    assert "lesion-copy" in logic.availableModelIds() and (tmp_path / "cache" / "lesion-copy" / "model.pt").is_file()
    summary = logic.modelCardSummary("lesion-copy")
    assert "CT, MR" in summary and "Apache-2.0" in summary and "lung1 dice" in summary
    logic.removeModel("lesion-copy")
    assert "lesion-copy" not in logic.availableModelIds() and not (tmp_path / "cache" / "lesion-copy").exists()


def test_tampered_weights_are_refused_and_nothing_is_installed(segment_module, tmp_path, monkeypatch):
    from RadAISegmentLib.errors import ModelError
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "cache"))
    source = _model_copy(tmp_path / "src", "tampered")
    with open(source / "model.pt", "r+b") as weights:
        weights.seek(1000)
        weights.write(b"\x00\x01\x02\x03")
    logic = segment_module.RadAISegmentLogic()
    with pytest.raises(ModelError, match="(?i)sha-?256|checksum"):
        logic.installModel(str(source))
    assert "tampered" not in logic.availableModelIds() and not (tmp_path / "cache" / "tampered").exists()


def test_shipped_model_cannot_be_removed(segment_module, tmp_path, monkeypatch):
    from RadAISegmentLib.errors import ModelError
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="shipped models cannot be removed"):
        segment_module.RadAISegmentLogic().removeModel("lesion-roi")
    assert "lesion-roi" in segment_module.RadAISegmentLogic().availableModelIds()


def _study_with_volume(scene, volume):
    hierarchy = __import__("slicer").vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 1")
    study = hierarchy.CreateStudyItem(patient, "CT 2025-01-01")
    hierarchy.CreateItem(study, volume)
    return hierarchy, study


def test_results_are_placed_under_the_input_study(segment_module, slicer_scene):
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.sample_data import load_sample_labelmap, sample_case
    seed, box_mm, _ = case_prompt(load_sample_labelmap("lung-tumour"))
    logic = segment_module.RadAISegmentLogic()
    volume = logic.loadVolume(str(sample_case("lung-tumour")["image"]), "lung in a study")
    hierarchy, study = _study_with_volume(slicer_scene, volume)
    seeds = slicer_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "study seeds")
    seeds.AddControlPointWorld(*[float(v) for v in seed])
    parameters = segment_module.RadAISegmentParameterNode(slicer_scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    parameters.inputVolume, parameters.seedPoints, parameters.modelId = volume, seeds, "lesion-roi"
    parameters.device, parameters.boxSizeMm = "cpu", box_mm
    job = logic.startSegmentation(parameters)
    assert job.wait(300)
    segmentation = logic.finishSegmentation(job, parameters)
    saliency = logic.explainSegmentation(volume, "lesion-roi", seedRAS=seed, boxMm=box_mm)
    for node in (segmentation, saliency):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study, node.GetName()


def test_result_of_a_volume_without_study_stays_at_the_scene_root(segment_module, slicer_scene):
    from RadAISegmentLib.image import Image, SegmentInfo
    from RadAISegmentLib.mrml import place_in_subject_hierarchy, segmentation_node_from_labelmap, volume_node_from_image
    array = np.zeros((4, 5, 6), np.uint8)
    array[1:3, 1:3, 1:3] = 1
    labels = Image(array, (1.0, 1.0, 1.0), segments=(SegmentInfo(1, "box"),))
    volume = volume_node_from_image(labels.with_array(array.astype(np.int16)), "loose volume", slicer_scene)
    node = segmentation_node_from_labelmap(labels, "loose segmentation", volume)
    item = place_in_subject_hierarchy(node, volume)
    hierarchy = __import__("slicer").vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer_scene)
    assert hierarchy.GetItemParent(item) == hierarchy.GetSceneItemID()


def test_sample_data_registers_every_bundled_case_as_local_files(segment_module, monkeypatch):
    from RadAISegmentLib.sample_data import list_sample_cases
    calls = []
    fake = types.ModuleType("SampleData")
    fake.SampleDataLogic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **kwargs: calls.append(kwargs))
    monkeypatch.setitem(sys.modules, "SampleData", fake)
    segment_module.registerSampleData()
    assert sorted(call["sampleName"] for call in calls) == sorted(f"RadAI {name}" for name in list_sample_cases())
    for call in calls:
        assert call["category"] == "RadAI" and Path(call["thumbnailFileName"]).is_file()
        assert len(call["uris"]) == len(call["fileNames"]) == len(call["nodeNames"]) == 1
        assert call["uris"][0].startswith("file://") and Path(call["uris"][0][len("file://"):]).is_file()
