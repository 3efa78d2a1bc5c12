"""Headless end-to-end tests of the two Slicer modules' Logic classes on real bundled data.

The module files are loaded under private names (``spec_from_file_location``) so the
``RadAISegment`` package that holds the engine is never shadowed; the Logic itself imports the
engine as ``RadAISegmentLib`` / ``RadAIVolumetricsLib`` exactly as it does inside Slicer.
"""
from __future__ import annotations

import csv
from concurrent.futures import CancelledError as FuturesCancelledError
from pathlib import Path

import numpy as np
import pytest

from slicer_harness import load_module_file

pytestmark = pytest.mark.slicer

REPO_ROOT = Path(__file__).resolve().parents[1]
LESION_MODEL = REPO_ROOT / "Resources" / "Models" / "lesion-roi"


@pytest.fixture(scope="module")
def segment_module(slicer_scene):
    return load_module_file("RadAISegment/RadAISegment.py", "_radai_segment_module_logic_test")


@pytest.fixture(scope="module")
def volumetrics_module(slicer_scene):
    return load_module_file("RadAIVolumetrics/RadAIVolumetrics.py", "_radai_volumetrics_module_logic_test")


def _voxels(node):
    import slicer.util
    return slicer.util.arrayFromVolume(node).copy()


def _segmentation_nodes(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]


def _tumour_prompt() -> tuple[np.ndarray, float]:
    """Seed at the reference tumour's centroid (RAS mm) and the box edge (mm) a reader would draw.

    The same prompt as the model card's ``real_tumours`` evaluation (``lesion.evaluate.case_prompt``),
    so the Logic's result can be checked against the card.
    """
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.sample_data import load_sample_labelmap
    seed_ras, box_mm, _ = case_prompt(load_sample_labelmap("lung-tumour"))
    return np.asarray(seed_ras, dtype=float), box_mm


def _tumour_centroid_ras() -> np.ndarray:
    return _tumour_prompt()[0]


# -- RadAISegmentLogic -----------------------------------------------------------------------------
def test_segment_logic_loads_volume_and_describes_geometry(segment_module, slicer_scene):
    from RadAISegmentLib.io import read_image
    from RadAISegmentLib.sample_data import sample_case
    logic = segment_module.RadAISegmentLogic()
    path = sample_case("abdomen-ct")["image"]
    node = logic.loadVolume(str(path))
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetScene() is slicer_scene
    assert node.GetName() == "abdomen-ct_image"
    engine = read_image(path)
    assert np.array_equal(_voxels(node), engine.array)
    summary = logic.geometrySummary(node)
    assert "voxels" in summary and str(engine.array.shape[2]) in summary
    assert "CPU" in logic.deviceSummary("cpu") and "torch" in logic.deviceSummary("cpu")
    from RadAISegmentLib.models.cache import list_models
    ids = logic.availableModelIds()
    assert set(ids) == {card.id for card in list_models()} and "brain-extraction" in ids
    assert "lesion-roi" not in ids or ids[0] == "lesion-roi"


def test_segment_logic_refuses_to_start_without_input(segment_module, slicer_scene):
    from RadAISegmentLib.errors import InputError
    logic = segment_module.RadAISegmentLogic()
    parameters = segment_module.RadAISegmentParameterNode(slicer_scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    nodes_before = slicer_scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="input volume"):
        logic.startSegmentation(parameters)
    assert slicer_scene.GetNumberOfNodes() == nodes_before


@pytest.fixture(scope="module")
def lesion_run(segment_module, slicer_scene):
    """One lesion-roi run on the lung tumour case with a seed at the reference tumour's centroid."""
    from RadAISegmentLib.models.cache import list_models
    if "lesion-roi" not in {card.id for card in list_models()}:
        raise FileNotFoundError(f"lesion-roi model missing (shipped in {LESION_MODEL}); train it with "
                                "RadAISegmentLib.lesion.train or install it in the models cache")
    from RadAISegmentLib.sample_data import sample_case
    logic = segment_module.RadAISegmentLogic()
    volume = logic.loadVolume(str(sample_case("lung-tumour")["image"]), "lung")
    before = _voxels(volume)
    seeds = slicer_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seed")
    seeds.AddControlPointWorld(*[float(v) for v in _tumour_centroid_ras()])
    parameters = logic.getParameterNode()
    parameters.inputVolume = volume
    parameters.seedPoints = seeds
    parameters.modelId = "lesion-roi"
    parameters.device = "cpu"
    parameters.boxSizeMm = _tumour_prompt()[1]
    for prompt in ("boxRoi", "includePoints", "excludePoints", "lesionSegmentation", "outputSegmentation"):
        setattr(parameters, prompt, None)           # the scene's parameter node may hold another test's prompts
    job = logic.startSegmentation(parameters)
    assert job.wait(300), "lesion-roi did not finish within 5 minutes"
    node = logic.finishSegmentation(job)
    return logic, parameters, volume, before, node


def test_segment_logic_lesion_roi_creates_named_segmentation(lesion_run):
    from RadAISegmentLib.mrml import labelmap_from_segmentation_node, image_from_volume_node
    from RadAISegmentLib.sample_data import load_sample_labelmap
    logic, parameters, volume, before, node = lesion_run
    assert node.IsA("vtkMRMLSegmentationNode")
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetNthSegment(0)
    assert segment.GetName() == "Lesion"
    import vtk
    from RadAISegmentLib.mrml import TERMINOLOGY_TAG, parse_terminology_entry
    terminology = vtk.reference("")
    assert segment.GetTag(TERMINOLOGY_TAG, terminology), "the Lesion segment has no terminology entry"
    category, segment_type = parse_terminology_entry(str(terminology))
    assert category is not None and segment_type is not None, str(terminology)
    assert segment_type.scheme == "SCT", str(terminology)
    predicted = labelmap_from_segmentation_node(node, image_from_volume_node(volume)).array > 0
    reference = load_sample_labelmap("lung-tumour").array > 0
    dice = 2.0 * np.count_nonzero(predicted & reference) / (predicted.sum() + reference.sum())
    from RadAISegmentLib.models.cache import find_model
    card = find_model("lesion-roi")
    card_dice = card.metrics["real_tumours"]["models"][f"lesion-roi {card.version}"]["lung1"][0]["dice"]   # no clicks
    # the sample case is a crop of PyRadiomics lung1, the card's real-tumour case: the Logic reproduces the card
    assert dice == pytest.approx(card_dice, abs=0.05), (dice, card_dice)
    assert dice > 0.5, f"lesion-roi Dice {dice:.3f} against the reference tumour"
    assert np.array_equal(_voxels(volume), before), "the input volume was modified"
    assert parameters.inputVolume is not None and parameters.outputSegmentation is None


def test_segment_logic_second_run_new_node_unless_output_set(lesion_run, slicer_scene):
    logic, parameters, volume, before, first = lesion_run
    count = len(_segmentation_nodes(slicer_scene))
    job = logic.startSegmentation(parameters)
    assert job.wait(300)
    second = logic.finishSegmentation(job)
    assert second.GetID() != first.GetID()
    assert len(_segmentation_nodes(slicer_scene)) == count + 1
    assert first.GetSegmentation().GetNumberOfSegments() == 1  # earlier result intact
    parameters.outputSegmentation = second
    try:
        job = logic.startSegmentation(parameters)
        assert job.wait(300)
        third = logic.finishSegmentation(job)
    finally:
        parameters.outputSegmentation = None
    assert third.GetID() == second.GetID()
    assert len(_segmentation_nodes(slicer_scene)) == count + 1
    assert np.array_equal(_voxels(volume), before)


def test_segment_logic_cancel_leaves_scene_unchanged(lesion_run, slicer_scene):
    from RadAISegmentLib.errors import CancelledError
    logic, parameters, volume, before, _ = lesion_run
    nodes_before = slicer_scene.GetNumberOfNodes()
    job = logic.startSegmentation(parameters)
    job.cancel()
    assert job.wait(120)
    with pytest.raises((CancelledError, FuturesCancelledError)):
        job.result()
    with pytest.raises((CancelledError, FuturesCancelledError)):
        logic.finishSegmentation(job)  # what the Widget's poll does once the job is done
    assert slicer_scene.GetNumberOfNodes() == nodes_before


def test_segment_logic_explain_and_render(lesion_run, slicer_scene, tmp_path):
    from PIL import Image as PILImage
    from RadAISegmentLib.mrml import image_from_volume_node
    from RadAISegmentLib.render import render_scene_3d
    logic, parameters, volume, before, segmentation = lesion_run
    seed = _tumour_centroid_ras()
    saliency = logic.explainSegmentation(volume, "lesion-roi", seedRAS=seed, opacity=0.6)
    assert saliency.IsA("vtkMRMLScalarVolumeNode") and saliency.GetAttribute("RadAI.Saliency") == "1"
    heat = image_from_volume_node(saliency)
    assert heat.same_grid(image_from_volume_node(volume))
    assert 0.0 <= heat.array.min() and heat.array.max() <= 1.0 and heat.array.max() > 0.3
    ijk = np.round(heat.ras_to_index(np.asarray([seed]))[0]).astype(int)
    k, j, i = ijk[2], ijk[1], ijk[0]
    assert heat.array[max(k - 5, 0):k + 6, max(j - 10, 0):j + 11, max(i - 10, 0):i + 11].max() > 0.3
    import slicer
    rendering = slicer.modules.volumerendering.logic().GetFirstVolumeRenderingDisplayNode(saliency)
    assert rendering is not None and rendering.GetVisibility(), "saliency is not volume-rendered in 3D"
    assert np.array_equal(_voxels(volume), before)
    def render(nodes, name):
        png = tmp_path / name
        render_scene_3d(nodes, png, size=(400, 300))
        return np.asarray(PILImage.open(png).convert("RGB")).astype(int)

    def heat_purple_pixels(pixels):
        # the heat map's purple-to-red band (blue and red both well above green); the CT ramp, the
        # lesion colour and the background never are
        red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        return int(np.count_nonzero((red > green + 30) & (blue > green + 30)))

    with_saliency = render([volume, segmentation, saliency], "segment-3d.png")
    without = render([volume, segmentation], "segment-3d-no-saliency.png")
    assert with_saliency.reshape(-1, 3).std(axis=0).max() > 5, "render is uniform"
    heat_pixels, heat_free_pixels = heat_purple_pixels(with_saliency), heat_purple_pixels(without)
    assert heat_pixels > 50 and heat_pixels > 5 * heat_free_pixels, (heat_pixels, heat_free_pixels)


# -- RadAIVolumetricsLogic -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def abdomen_nodes(slicer_scene):
    from RadAISegmentLib.io import read_image
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    from RadAISegmentLib.sample_data import load_sample_labelmap, sample_case
    labels = load_sample_labelmap("abdomen-ct")
    volume = volume_node_from_image(read_image(sample_case("abdomen-ct")["image"]), "abdomen", slicer_scene)
    segmentation = segmentation_node_from_labelmap(labels, "organs", volume)
    return volume, segmentation, labels


def test_volumetrics_measure_table_units_axes_and_csv(volumetrics_module, abdomen_nodes, slicer_scene, tmp_path):
    volume, segmentation, labels = abdomen_nodes
    logic = volumetrics_module.RadAIVolumetricsLogic()
    lines_before = slicer_scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode")
    table = logic.measure(segmentation, volume, drawRecistAxes=True)
    assert table.IsA("vtkMRMLTableNode")
    assert table.GetNumberOfRows() == len(labels.label_values())
    vtk_table = table.GetTable()
    names = [vtk_table.GetValue(r, 0).ToString() for r in range(table.GetNumberOfRows())]
    assert sorted(names) == sorted(labels.segment_for(v).name for v in labels.label_values())
    columns = [vtk_table.GetColumnName(c) for c in range(vtk_table.GetNumberOfColumns())]
    volume_column = next(c for c in columns if "volume" in c and c.endswith("mm3"))
    assert table.GetColumnProperty(volume_column, "unitLabel") == "mm3"
    # the volume column agrees with the voxel count of each label
    for row, name in enumerate(names):
        label = next(v for v in labels.label_values() if labels.segment_for(v).name == name)
        expected = np.count_nonzero(labels.array == label) * labels.voxel_volume_mm3
        got = vtk_table.GetValue(row, columns.index(volume_column)).ToDouble()
        assert got == pytest.approx(expected, rel=0.02)
        voxels = _voxels(volume)[labels.array == label]          # intensity statistics of the same voxels
        assert vtk_table.GetValue(row, columns.index("intensity_mean")).ToDouble() == pytest.approx(voxels.mean())
        assert vtk_table.GetValue(row, columns.index("intensity_p95")).ToDouble() == pytest.approx(np.percentile(voxels, 95))
    from RadAISegmentLib.mrml import MODALITY_ATTRIBUTE
    modality = volume.GetAttribute(MODALITY_ATTRIBUTE) or ""
    assert table.GetColumnUnitLabel("intensity_mean") == ("HU" if modality.upper() == "CT" else "")
    assert slicer_scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode") > lines_before
    path = tmp_path / "measurements.csv"
    logic.exportTableCsv(table, str(path))
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == columns and len(rows) == len(names) + 1
    assert sorted(row[0] for row in rows[1:]) == sorted(names)


def test_volumetrics_validate_identical_nodes(volumetrics_module, abdomen_nodes, slicer_scene):
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap
    volume, segmentation, labels = abdomen_nodes
    copy = segmentation_node_from_labelmap(labels, "organs copy", volume)
    rows = volumetrics_module.RadAIVolumetricsLogic().validate(copy, segmentation)
    assert len(rows) == len(labels.label_values())
    assert all(row["dice"] == pytest.approx(1.0) for row in rows)
    assert all(row.get("dice_b") is None for row in rows)
    from RadAISegmentLib.errors import InputError
    with pytest.raises(InputError, match="Select the segmentation"):
        volumetrics_module.RadAIVolumetricsLogic().validate(None, segmentation)


def test_volumetrics_validate_second_reader(volumetrics_module, abdomen_nodes, slicer_scene):
    """A second segmentation without the first label: its Dice (B) and its Dice with A are 0 there, 1 elsewhere;
    its volume of the other labels equals the reference's."""
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap
    volume, segmentation, labels = abdomen_nodes
    dropped = labels.label_values()[0]
    second_array = labels.array.copy()
    second_array[second_array == dropped] = 0
    second = segmentation_node_from_labelmap(labels.with_array(second_array), "reader 2", volume)
    copy = segmentation_node_from_labelmap(labels, "organs copy", volume)
    logic = volumetrics_module.RadAIVolumetricsLogic()
    rows = logic.validate(copy, segmentation, 1.0, second)
    by_label = {row["label"]: row for row in rows}
    dropped_name = labels.segment_for(dropped).name
    assert by_label[dropped_name]["dice_b"] == 0.0 and by_label[dropped_name]["dice_a_vs_b"] == 0.0
    for name, row in by_label.items():
        if name != dropped_name:
            assert row["dice_b"] == pytest.approx(1.0) and row["dice_a_vs_b"] == pytest.approx(1.0)
            assert row["volume_b_ml"] == pytest.approx(row["reference_volume_ml"])
    from RadAIVolumetricsLib.validation.outputs import case_rows_text
    text = case_rows_text(rows)
    assert f"{dropped_name}: Dice 1.000" in text and "A vs B: Dice 0.000" in text


def test_volumetrics_ejection_fraction_cardiac_phantom(volumetrics_module, slicer_scene):
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
    images, labelmaps, truth = cardiac_cine_phantom(n_phases=8, shape_ijk=(64, 64, 40), spacing_mm=(2.0, 2.0, 3.0))
    nodes = []
    for phase in ("ed_index", "es_index"):
        index = truth[phase]
        reference = volume_node_from_image(images[index], f"cine {phase}", slicer_scene)
        nodes.append(segmentation_node_from_labelmap(labelmaps[index], f"LV {phase}", reference))
    result = volumetrics_module.RadAIVolumetricsLogic().ejectionFraction(*nodes, bloodPoolLabel="LV blood pool")
    assert result["ejection_fraction_percent"] == pytest.approx(truth["ef_percent"], abs=0.5)
    text = volumetrics_module.RadAIVolumetricsLogic.ejectionFractionText(result)
    assert f"EF {result['ejection_fraction_percent']:.1f} %" in text


def test_volumetrics_compare_timepoints_progression(volumetrics_module, slicer_scene):
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    from RadAISegmentLib.phantoms import followup_pair_phantom
    base_ct, base_labels, follow_ct, follow_labels, truth = followup_pair_phantom()
    volumes, segmentations = [], []
    for ct, labels, name in ((base_ct, base_labels, "baseline"), (follow_ct, follow_labels, "followup")):
        lesion = labels.with_array(np.where(labels.array == 5, 5, 0).astype(labels.array.dtype),
                                   segments=[labels.segment_for(5)])
        volume = volume_node_from_image(ct, name, slicer_scene)
        volumes.append(volume)
        segmentations.append(segmentation_node_from_labelmap(lesion, f"{name} lesions", volume))
    result = volumetrics_module.RadAIVolumetricsLogic().compareTimepoints(
        volumes, segmentations, ["2025-01-01", "2025-04-01"])
    assert result.to_json()["recist_response"] == "PD"


def test_volumetrics_csv_quotes_names_with_commas(volumetrics_module, slicer_scene, tmp_path):
    from RadAISegmentLib.image import Image, SegmentInfo
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[2:6, 3:9, 4:10] = 1  # 4 x 6 x 6 voxels of 2 x 1 x 1 mm (k, j, i) = 288 mm3
    labelmap = Image(labels, (1.0, 1.0, 2.0), segments=(SegmentInfo(1, "kidney, left"),))
    volume = volume_node_from_image(labelmap.with_array(labels.astype(np.int16)), "box", slicer_scene)
    node = segmentation_node_from_labelmap(labelmap, "box segmentation", volume)
    logic = volumetrics_module.RadAIVolumetricsLogic()
    table = logic.measure(node, volume)
    path = tmp_path / "box.csv"
    logic.exportTableCsv(table, str(path))
    with open(path, newline="", encoding="utf-8") as handle:
        header, row = list(csv.reader(handle))
    assert row[0] == "kidney, left" and len(row) == len(header)
    assert float(row[header.index("volume_mm3")]) == pytest.approx(288.0)
