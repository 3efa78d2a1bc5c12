"""RadAISegment module extras, headless: model management through the Logic (install / remove / card
summary, offline, checksummed), results placed under the input's study in the subject hierarchy, the
Sample Data registration of the bundled cases, and the module's start-up hook without ``slicer.app``.

The module file is loaded under a private name (never with ``RadAISegment/`` on ``sys.path``).
"""
from __future__ import annotations

import ast
import hashlib
import os
import json
import shutil
import sys
import types
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest

from slicer_harness import load_module_file

pytestmark = pytest.mark.slicer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_LESION = REPO_ROOT / "Resources" / "Models" / "lesion-roi"
MODULE_FILE = REPO_ROOT / "RadAISegment" / "RadAISegment.py"
UI_FILE = REPO_ROOT / "RadAISegment" / "Resources" / "UI" / "RadAISegment.ui"


@pytest.fixture(scope="module")
def segment_module(slicer_scene):
    return load_module_file("RadAISegment/RadAISegment.py", "_radai_segment_module_extras_test")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "models cache"
    monkeypatch.setenv("RADAI_MODELS_DIR", str(folder))
    return folder


# -- model management ------------------------------------------------------------------------------
def _model_folder(folder: Path, model_id: str) -> Path:
    """A valid model: the shipped lesion-roi weights under a new id, with a card whose summary fields are
    known (title, licence, one model metric and one baseline metric that must not be shown)."""
    folder.mkdir(parents=True)
    shutil.copy2(SHIPPED_LESION / "model.pt", folder / "model.pt")
    card = json.loads((SHIPPED_LESION / "card.json").read_text())
    card.update(id=model_id, title=f"Test lesion model {model_id}", licence="CC-BY-4.0 (test)",
                metrics={"model": {"dice": 0.8123}, "baseline_threshold": {"dice": 0.111}})
    # the copy's own checksum, so the card matches these weights even while lesion-roi is being retrained
    card["weights"]["sha256"] = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    (folder / "card.json").write_text(json.dumps(card, indent=2))
    return folder


def _zip_folder(folder: Path, archive: Path) -> Path:
    """A zip that wraps the model in one top folder, as downloads usually do."""
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, f"wrapped/{folder.name}/{path.relative_to(folder).as_posix()}")
    return archive


def _tamper(weights: Path) -> None:
    with open(weights, "r+b") as stream:
        stream.seek(weights.stat().st_size // 2)
        byte = stream.read(1)
        stream.seek(-1, 1)
        stream.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("packaging", ["folder", "zip"])
def test_install_lists_summarises_and_removes_a_model(segment_module, cache, tmp_path, packaging):
    logic = segment_module.RadAISegmentLogic()
    assert logic.modelCacheFolder() == str(cache)
    with pytest.MonkeyPatch.context() as patch:                 # inside the home folder: written as ~/...
        patch.setenv("HOME", str(cache.parent))
        assert logic.modelCacheFolder() == os.path.join("~", cache.name)
    source = _model_folder(tmp_path / "source" / "test-lesion", "test-lesion")
    if packaging == "zip":
        source = _zip_folder(source, tmp_path / "test-lesion.zip")
    assert "test-lesion" not in logic.availableModelIds()
    assert logic.installModel(str(source)) == "test-lesion"
    ids = logic.availableModelIds()
    assert "test-lesion" in ids and ids[0] == "lesion-roi"       # shipped models still listed, lesion-roi first
    weights = tmp_path / "source" / "test-lesion" / "model.pt"
    assert (cache / "test-lesion" / "model.pt").read_bytes() == weights.read_bytes()
    summary = logic.modelCardSummary("test-lesion").splitlines()
    assert 3 <= len(summary) <= 8
    text = "\n".join(summary)
    assert "Test lesion model test-lesion" in summary[0]
    assert "CT, MR" in text and "Lesion" in text and "CC-BY-4.0 (test)" in text
    assert "dice 0.812" in text and "0.111" not in text        # the model's metric, not the baseline's
    logic.removeModel("test-lesion")
    assert "test-lesion" not in logic.availableModelIds()
    assert not (cache / "test-lesion").exists()
    from RadAISegmentLib.errors import ModelError
    with pytest.raises(ModelError, match="test-lesion"):
        logic.modelCardSummary("test-lesion")


@pytest.mark.parametrize("packaging", ["folder", "zip"])
def test_tampered_weights_are_refused_with_a_checksum_error(segment_module, cache, tmp_path, packaging):
    from RadAISegmentLib.errors import ChecksumError
    logic = segment_module.RadAISegmentLogic()
    source = _model_folder(tmp_path / "source" / "tampered", "tampered")
    _tamper(source / "model.pt")
    if packaging == "zip":
        source = _zip_folder(source, tmp_path / "tampered.zip")
    before = logic.availableModelIds()
    with pytest.raises(ChecksumError, match="SHA-256"):
        logic.installModel(str(source))
    assert logic.availableModelIds() == before and "tampered" not in before
    assert not cache.exists() or not any(cache.iterdir()), list(cache.iterdir())


def test_tampered_reinstall_keeps_the_good_installed_copy(segment_module, cache, tmp_path):
    from RadAISegmentLib.errors import ChecksumError
    from RadAISegmentLib.models.cache import verify_model
    logic = segment_module.RadAISegmentLogic()
    good = _model_folder(tmp_path / "good" / "kept", "kept")
    assert logic.installModel(str(good)) == "kept"
    bad = _model_folder(tmp_path / "bad" / "kept", "kept")
    _tamper(bad / "model.pt")
    with pytest.raises(ChecksumError):
        logic.installModel(str(bad))
    assert verify_model("kept").folder == cache / "kept"     # the installed weights still match their card
    assert (cache / "kept" / "model.pt").read_bytes() == (good / "model.pt").read_bytes()


def test_remove_refuses_shipped_models_and_paths(segment_module, cache, tmp_path):
    from RadAISegmentLib.errors import ModelError
    logic = segment_module.RadAISegmentLogic()
    with pytest.raises(ModelError, match="shipped models cannot be removed"):
        logic.removeModel("lesion-roi")
    assert (SHIPPED_LESION / "card.json").is_file() and "lesion-roi" in logic.availableModelIds()
    outside = _model_folder(tmp_path / "outside" / "victim", "victim")   # a model folder beside the cache
    for model_id in ("../outside/victim", str(outside), "..", ""):
        with pytest.raises(ModelError):
            logic.removeModel(model_id)
    assert (outside / "card.json").is_file() and (outside / "model.pt").is_file()
    with pytest.raises(ModelError, match="not installed"):
        logic.removeModel("never-installed")


def test_remove_of_an_installed_override_restores_the_shipped_model(segment_module, cache, tmp_path):
    logic = segment_module.RadAISegmentLogic()
    override = _model_folder(tmp_path / "src" / "lesion-roi", "lesion-roi")
    assert logic.installModel(str(override)) == "lesion-roi"
    assert "Test lesion model" in logic.modelCardSummary("lesion-roi")        # the installed copy wins
    logic.removeModel("lesion-roi")
    assert not (cache / "lesion-roi").exists() and (SHIPPED_LESION / "card.json").is_file()
    assert "Test lesion model" not in logic.modelCardSummary("lesion-roi")    # the shipped card again


def test_ui_has_a_models_section_and_the_widget_wires_it():
    root = ET.parse(UI_FILE).getroot()
    section = next(w for w in root.iter("widget") if w.get("name") == "modelsCollapsibleButton")
    assert section.get("class") == "ctkCollapsibleButton"
    inside = {w.get("name"): w.get("class") for w in section.iter("widget")}
    assert inside["modelCacheLabel"] == inside["installStatusLabel"] == "QLabel"
    assert inside["installModelButton"] == inside["removeModelButton"] == "QPushButton"
    assert inside["installSelectedButton"] == inside["cancelInstallButton"] == "QPushButton"
    assert inside["catalogueTable"] == "QTableWidget" and inside["installProgressBar"] == "QProgressBar"
    # the card label sits right under the model combo box
    rows = {item.find("widget").get("name"): (int(item.get("row")), item.get("column"))
            for item in root.iter("item") if item.get("row") is not None and item.find("widget") is not None}
    assert rows["modelCardLabel"] == (rows["modelComboBox"][0] + 1, rows["modelComboBox"][1])
    widget = _class_methods(MODULE_FILE, "RadAISegmentWidget")
    assert "ModelsSection(self.ui, self.logic" in widget["setup"] and "self.models.stop()" in widget["cleanup"]
    section_methods = _class_methods(MODULE_FILE.parent / "RadAISegmentLib" / "models_section.py", "ModelsSection")
    for button, slot in (("installModelButton", "onInstallFile"), ("removeModelButton", "onRemove"),
                         ("installSelectedButton", "onInstallSelected"), ("cancelInstallButton", "onCancel")):
        assert f"self.ui.{button}.connect('clicked(bool)', self.{slot})" in section_methods["__init__"]
    assert "self.logic.modelCacheFolder()" in section_methods["__init__"]
    assert "QFileDialog" in section_methods["onInstallFile"] and "self.logic.installModel" in section_methods["onInstallFile"]
    assert "self.logic.catalogueIdsForFile" in section_methods["onInstallFile"]     # published archives are verified
    assert "self.logic.removeModel" in section_methods["onRemove"]
    for slot in ("onInstallFile", "onRemove"):
        assert "select_model" in section_methods[slot] and "fillTable" in section_methods[slot]
    assert "modelCardSummary" in section_methods["onModelChanged"]


def _class_methods(path: Path, class_name: str) -> dict[str, str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    return {f.name: ast.unparse(f) for f in cls.body if isinstance(f, ast.FunctionDef)}


def test_catalogue_rows_read_as_the_user_needs_them():
    from RadAISegmentLib.models_section import installed_text, row_texts, row_tooltip, size_text
    row = {"id": "x", "title": "X model", "version": "2.0", "modality": ["CT"], "licence": "MIT", "size_mb": 1250.0,
           "speed_hint": "one network", "installed": False, "update_available": False, "partial_mb": 12.4}
    assert row_texts(row) == ["X model", "resume (12 MB)", "~1.2 GB", "MIT"]
    assert row_tooltip(row) == "x 2.0 (CT): one network" and size_text(36.0) == "~36 MB"
    assert installed_text(dict(row, installed=True, partial_mb=0)) == "yes"
    assert installed_text(dict(row, installed=True, update_available=True)) == "update to 2.0"
    assert installed_text(dict(row, partial_mb=0)) == "no"


# -- subject hierarchy -----------------------------------------------------------------------------
class _FinishedJob:
    """A finished ``WorkerJob`` as ``finishSegmentation`` reads it: the inputs it started with and its result."""

    def __init__(self, labelmap, volume, output=None, model_id="lesion-roi"):
        from RadAISegmentLib.jobs import JobInputs, JobResult
        self.inputs = JobInputs("key", model_id, context={
            "scene": volume.GetScene(), "volume_id": volume.GetID(), "volume_name": volume.GetName(),
            "output_id": output.GetID() if output is not None else None, "opacity": 0.6, "threshold": 0.3})
        self._result = JobResult(self.inputs, labelmap=labelmap)

    def result(self):
        return self._result

    def cleanup(self):
        pass


def _hierarchy(scene):
    import slicer
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def _parent_of(scene, node) -> int:
    hierarchy = _hierarchy(scene)
    item = hierarchy.GetItemByDataNode(node)
    assert item, f"{node.GetName()} has no subject-hierarchy item"
    return hierarchy.GetItemParent(item)


def _parameters(segment_module, scene, volume, seed, box_mm):
    parameters = segment_module.RadAISegmentParameterNode(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{volume.GetName()} seeds")
    seeds.AddControlPointWorld(*[float(v) for v in seed])
    parameters.inputVolume, parameters.seedPoints, parameters.modelId = volume, seeds, "lesion-roi"
    parameters.device, parameters.boxSizeMm = "cpu", box_mm
    return parameters


@pytest.fixture(scope="module")
def study_run(segment_module, slicer_scene):
    """The lesion-roi flow (seed at the tumour, CPU) on the bundled lung tumour filed under Patient > Study."""
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.sample_data import load_sample_labelmap, sample_case
    seed, box_mm, _ = case_prompt(load_sample_labelmap("lung-tumour"))
    logic = segment_module.RadAISegmentLogic()
    volume = logic.loadVolume(str(sample_case("lung-tumour")["image"]), "extras lung")
    hierarchy = _hierarchy(slicer_scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Extras patient")
    study = hierarchy.CreateStudyItem(patient, "Extras CT study")
    hierarchy.CreateItem(study, volume)
    parameters = _parameters(segment_module, slicer_scene, volume, seed, box_mm)
    job = logic.startSegmentation(parameters)
    assert job.wait(300), "lesion-roi did not finish within 5 minutes"
    segmentation = logic.finishSegmentation(job)
    saliency = logic.explainSegmentation(volume, "lesion-roi", seedRAS=seed, boxMm=box_mm)
    return types.SimpleNamespace(logic=logic, volume=volume, patient=patient, study=study, seed=seed,
                                 box_mm=box_mm, parameters=parameters, segmentation=segmentation, saliency=saliency)


def test_segmentation_and_saliency_are_filed_under_the_input_study(study_run, slicer_scene):
    hierarchy = _hierarchy(slicer_scene)
    assert _parent_of(slicer_scene, study_run.volume) == study_run.study
    assert study_run.segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert slicer_scene.GetNodeByID(study_run.saliency.GetID()) is study_run.saliency
    for node in (study_run.segmentation, study_run.saliency):
        assert _parent_of(slicer_scene, node) == study_run.study, node.GetName()
    import vtk
    ids = vtk.vtkIdList()
    hierarchy.GetItemChildren(study_run.study, ids)
    children = [hierarchy.GetItemDataNode(ids.GetId(i)) for i in range(ids.GetNumberOfIds())]
    assert {node.GetID() for node in children} >= {study_run.volume.GetID(), study_run.segmentation.GetID(),
                                                    study_run.saliency.GetID()}
    assert hierarchy.GetItemParent(study_run.study) == study_run.patient


def test_overwritten_output_segmentation_moves_under_the_study(segment_module, study_run, slicer_scene):
    from RadAISegmentLib.mrml import image_from_volume_node, labelmap_from_segmentation_node
    hierarchy = _hierarchy(slicer_scene)
    chosen = slicer_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "chosen output at the root")
    hierarchy.CreateItem(hierarchy.GetSceneItemID(), chosen)
    labelmap = labelmap_from_segmentation_node(study_run.segmentation, image_from_volume_node(study_run.volume))
    node = study_run.logic.finishSegmentation(_FinishedJob(labelmap, study_run.volume, output=chosen))
    assert node.GetID() == chosen.GetID()
    assert _parent_of(slicer_scene, node) == study_run.study


@pytest.mark.parametrize("volume_item", ["at the scene root", "without an item"])
def test_results_of_a_volume_without_a_study_stay_at_the_scene_root(segment_module, study_run, slicer_scene,
                                                                      volume_item):
    from RadAISegmentLib.mrml import image_from_volume_node, labelmap_from_segmentation_node
    from RadAISegmentLib.sample_data import sample_case
    hierarchy = _hierarchy(slicer_scene)
    logic = segment_module.RadAISegmentLogic()
    volume = logic.loadVolume(str(sample_case("lung-tumour")["image"]), f"lung {volume_item}")
    if volume_item == "at the scene root":
        hierarchy.CreateItem(hierarchy.GetSceneItemID(), volume)
    else:
        assert not hierarchy.GetItemByDataNode(volume)
    labelmap = labelmap_from_segmentation_node(study_run.segmentation, image_from_volume_node(study_run.volume))
    parameters = _parameters(segment_module, slicer_scene, volume, study_run.seed, study_run.box_mm)
    segmentation = logic.finishSegmentation(_FinishedJob(labelmap, volume))
    assert np.count_nonzero(labelmap_from_segmentation_node(segmentation, image_from_volume_node(volume)).array)
    nodes = [segmentation]
    if volume_item == "at the scene root":   # one Grad-CAM run is enough for the root case
        nodes.append(logic.explainSegmentation(volume, "lesion-roi", seedRAS=study_run.seed, boxMm=study_run.box_mm))
    for node in nodes:
        assert _parent_of(slicer_scene, node) == hierarchy.GetSceneItemID(), node.GetName()
        assert _parent_of(slicer_scene, node) != study_run.study


# -- Sample Data registration and the start-up hook --------------------------------------------------
@pytest.fixture
def sample_data_calls(monkeypatch) -> list[dict]:
    """A fake ``SampleData`` module recording ``SampleDataLogic.registerCustomSampleDataSource(**kwargs)``."""
    calls: list[dict] = []

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataSource(**kwargs):
            calls.append(kwargs)

    fake = types.ModuleType("SampleData")
    fake.SampleDataLogic = SampleDataLogic
    monkeypatch.setitem(sys.modules, "SampleData", fake)
    return calls


def _local_path(uri: str) -> Path:
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme == "file" and parsed.netloc in ("", "localhost"), uri
    return Path(urllib.request.url2pathname(parsed.path))


def _check_registrations(calls: list[dict], sample_folder: Path) -> None:
    from RadAISegmentLib.sample_data import list_sample_cases, sample_case_info
    names = list_sample_cases()
    assert len(calls) == len(names) == len({call["sampleName"] for call in calls})
    by_name = {call["sampleName"]: call for call in calls}
    node_names = set()
    for name in names:
        call = by_name[f"RadAI {name}"]
        assert call["category"] == "RadAI" and call["loadFileType"] == "VolumeFile"
        assert Path(call["thumbnailFileName"]).is_file()
        assert len(call["uris"]) == len(call["fileNames"]) == len(call["nodeNames"]) == 1
        uri, file_name = call["uris"][0], call["fileNames"][0]
        assert " " not in uri, f"{uri} is not a valid URL (unescaped space)"
        local = _local_path(uri)
        assert local.is_file() and local == (sample_folder / sample_case_info(name).image).resolve()
        assert file_name == local.name
        with urllib.request.urlopen(uri) as response:            # what Sample Data's download does
            assert response.read() == local.read_bytes()
        node_names.add(call["nodeNames"][0])
    assert len(node_names) == len(names)


def test_sample_data_registers_every_bundled_case_as_local_files(segment_module, sample_data_calls):
    segment_module.registerSampleData()
    _check_registrations(sample_data_calls, REPO_ROOT / "Resources" / "SampleData")


def test_sample_data_urls_stay_valid_for_paths_with_spaces(segment_module, sample_data_calls, tmp_path,
                                                           monkeypatch):
    resources = tmp_path / "Rad AI extension" / "Resources"
    shutil.copytree(REPO_ROOT / "Resources" / "SampleData", resources / "SampleData")
    monkeypatch.setenv("RADAI_RESOURCES", str(resources))
    segment_module.registerSampleData()
    _check_registrations(sample_data_calls, resources / "SampleData")


def test_module_init_without_slicer_app(segment_module, monkeypatch):
    import os
    import slicer
    from PySide6 import QtWidgets
    monkeypatch.setenv("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    if QtWidgets.QApplication.instance() is None:      # the module icon (a QIcon) needs one, as in any Slicer
        QtWidgets.QApplication(["RadAI-tests"])
    monkeypatch.delattr(slicer, "app", raising=False)
    module = segment_module.RadAISegment(types.SimpleNamespace(path=str(MODULE_FILE)))
    assert module.parent.title == "RadAI Segment" and module.parent.categories == ["Segmentation"]


def test_module_init_registers_sample_data_once_slicer_has_started(segment_module, sample_data_calls, monkeypatch):
    import slicer
    connections = []
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(connect=lambda *args: connections.append(args)),
                        raising=False)
    segment_module.RadAISegment(types.SimpleNamespace(path=str(MODULE_FILE)))
    assert connections == [("startupCompleted()", segment_module.registerSampleData)]
    assert not sample_data_calls                           # nothing registered before start-up completes
    connections[0][1]()                                    # Slicer emits startupCompleted()
    _check_registrations(sample_data_calls, REPO_ROOT / "Resources" / "SampleData")
