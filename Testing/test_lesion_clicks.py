"""Interactive lesion segmentation in Slicer (issue 14), headless: a Markups ROI as the box, include / exclude
clicks that re-run only their lesion in the worker process and update its segment in place, undo, and the
volume lines with their ranges. The model is an analytic network (``lesion_fixtures``): a click's effect
is known (the clicked voxel joins or leaves the lesion) whatever any trained model's accuracy.

Engine parts first (the correction on the lesion's region equals the engine on the whole image; click
routing; the session record), then the module's Logic against the worker process.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from lesion_fixtures import LESION_CENTRES_RAS, make_click_model_folder, two_lesion_ct
from RadAISegmentLib.errors import InputError
from RadAISegmentLib.lesion.predict import segment_prompts
from RadAISegmentLib.lesion.prompts import LesionPrompt
from RadAISegmentLib.lesion_session import (LesionRecord, LesionSession, bounding_box, correct_lesion,
                                            geometry_image, lesion_for_click, prompt_as_dict, prompt_from_dict,
                                            volume_text)
from RadAISegmentLib.models.loaders import load_model_folder

JOB_TIMEOUT_S = 240
C1, C2 = (np.asarray(c) for c in LESION_CENTRES_RAS)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("click-models")
    make_click_model_folder(folder / "click-lesion")
    make_click_model_folder(folder / "click-lesion-v1", "click-lesion-v1", channels=2)
    return folder


def _voxel(image, point_ras) -> tuple:
    return tuple(int(v) for v in np.round(image.ras_to_index(np.asarray(point_ras, float)))[::-1])


# -- engine --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("click", ["include", "exclude", "none"])
def test_correction_on_the_lesion_s_region_equals_the_engine_on_the_whole_image(models, click):
    model = load_model_folder(models / "click-lesion")
    image = two_lesion_ct()
    labels, _ = segment_prompts(image, [LesionPrompt(seed_ras=tuple(c)) for c in (C1, C2)], model, "cpu")
    prompt = LesionPrompt(seed_ras=tuple(C2))
    if click == "include":
        prompt.include_ras.append(tuple(C2 + [7.0, 0.0, 0.0]))
    elif click == "exclude":
        prompt.exclude_ras.append(tuple(C2 + [0.0, 0.0, 2.0]))
    outline = (labels.array == 2).astype(np.uint8)
    whole, volumes = segment_prompts(image, [prompt], model, "cpu", previous=image.with_array(outline))
    corrected = correct_lesion(image, prompt, model, bounding_box(outline), "cpu")
    mask, offset = bounding_box(whole.array == 1)
    assert corrected.offset_kji == offset and np.array_equal(corrected.mask, mask) and mask.any()
    assert (corrected.volume_ml, corrected.volume_range_ml) == (volumes[0].volume_ml, volumes[0].volume_range_ml)
    if click == "include":                      # the clicked voxel joined the lesion, the seed's ball stayed
        assert whole.array[_voxel(image, C2 + [7.0, 0.0, 0.0])] == 1 and whole.array[_voxel(image, C2)] == 1
    if click == "exclude":
        assert whole.array[_voxel(image, C2 + [0.0, 0.0, 2.0])] == 0
    assert np.array_equal(image.array, two_lesion_ct().array)     # the input is not modified


def test_a_click_goes_to_the_lesion_whose_box_holds_it_and_nearest_centre():
    image = two_lesion_ct()
    grid_only = geometry_image(image.array.shape, image.spacing_mm, image.origin_lps, image.direction_lps)
    assert grid_only.array.strides == (0, 0, 0) and grid_only.same_grid(image)       # no voxels copied
    prompts = [LesionPrompt(seed_ras=tuple(C1)), LesionPrompt(seed_ras=tuple(C2), box_mm=90.0)]
    assert lesion_for_click(grid_only, prompts, C1 + [2, 0, 0], True, 16, 24.0) == 0     # both boxes hold it
    assert lesion_for_click(grid_only, prompts, C1 + [13, 0, 0], True, 16, 24.0) == 1    # only lesion 2's box
    with pytest.raises(InputError, match="outside every lesion's box"):
        lesion_for_click(grid_only, prompts[:1], C2, False, 16, 24.0)
    with pytest.raises(InputError, match="Exclude click .* outside the image"):
        lesion_for_click(grid_only, prompts, (500.0, 0.0, 30.0), False, 16, 24.0)


def test_the_session_record_survives_json_and_states_each_volume_with_its_range():
    prompt = LesionPrompt(seed_ras=(-1.5, 2.0, 3.0), box_corners_ras=((0, 0, 0), (10, 20, 30)),
                          include_ras=[(1.0, 1.0, 1.0)], exclude_ras=[(2.0, 2.0, 2.0)])
    assert prompt_from_dict(prompt_as_dict(prompt)) == prompt
    session = LesionSession("click-lesion", "vtkMRMLScalarVolumeNode1", "cpu", "fp32",
                            [LesionRecord(1, "Lesion 1", prompt_as_dict(prompt), 1.2345, [1.049, 1.41], "S1")])
    again = LesionSession.from_json(session.to_json())
    assert again == session and again.record(1).segment_id == "S1"
    assert again.lines() == ["Lesion 1: 1.23 mL (range 1.05\u20131.41 mL)"]
    assert volume_text("Lesion 2", 0.5, None) == "Lesion 2: 0.50 mL"
    with pytest.raises(InputError, match="Lesion 3 is not part"):
        again.record(3)
    with pytest.raises(InputError, match="unreadable"):
        LesionSession.from_json("{not json")


# -- the module's Logic with the worker process -----------------------------------------------------------------
@pytest.fixture(scope="module")
def scene_logic(slicer_scene, models):
    from slicer_harness import load_module_file
    patch = pytest.MonkeyPatch()
    patch.setenv("RADAI_MODELS_DIR", str(models))
    code = load_module_file("RadAISegment/RadAISegment.py", "_radai_segment_lesion_clicks_test")
    yield types.SimpleNamespace(code=code, logic=code.RadAISegmentLogic(), scene=slicer_scene)
    code.RadAISegmentLogic.shutdownWorker()
    patch.undo()


def _points(scene, name, points):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for point in points:
        node.AddControlPointWorld(*[float(v) for v in point])
    return node


def _segment_arrays(node, volume) -> dict:
    """Segment name -> its voxels on the volume's grid (uint8 [k, j, i])."""
    import slicer
    segmentation = node.GetSegmentation()
    return {segmentation.GetNthSegment(n).GetName(): slicer.util.arrayFromSegmentBinaryLabelmap(
                node, segmentation.GetNthSegmentID(n), volume).copy() for n in range(segmentation.GetNumberOfSegments())}


def _finish(logic, job):
    assert job.wait(JOB_TIMEOUT_S), "the job did not finish"
    return logic.finishCorrection(job)


@pytest.fixture(scope="module")
def applied(scene_logic):
    """Apply on two lesions: lesion 1 = an ROI drawn around C2 without a seed (the analytic model finds nothing
    there), lesion 2 = a seed at C1 (a ball)."""
    from RadAISegmentLib.mrml import volume_node_from_image
    scene, logic = scene_logic.scene, scene_logic.logic
    volume = volume_node_from_image(two_lesion_ct(), "two lesions", scene)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box around C2")
    roi.SetCenter(*[float(v) for v in C2])
    roi.SetSize(20.0, 20.0, 20.0)
    parameters = logic.getParameterNode()
    parameters.inputVolume, parameters.modelId, parameters.device = volume, "click-lesion", "cpu"
    parameters.seedPoints, parameters.boxRoi = _points(scene, "seeds", [C1]), roi
    parameters.includePoints = _points(scene, "include", [])
    parameters.excludePoints = _points(scene, "exclude", [])
    job = logic.startSegmentation(parameters)
    assert job.inputs.boxes_ras == (tuple(C2 - 10.0) + tuple(C2 + 10.0),)      # the ROI's corners, RAS mm
    assert job.inputs.seeds_ras == (tuple(C1),) and job.inputs.include_ras == ()
    assert job.wait(JOB_TIMEOUT_S)
    node = logic.finishSegmentation(job)
    return types.SimpleNamespace(volume=volume, node=node, parameters=parameters, job=job, roi=roi)


def test_apply_records_each_lesion_s_prompt_segment_and_volume_with_range(scene_logic, applied):
    logic = scene_logic.logic
    assert logic.canCorrect(applied.node) and not logic.canUndoCorrection(applied.node)
    from RadAISegmentLib.lesion_slicer import read_session
    session = read_session(applied.node)
    box_lesion, seed_lesion = session.lesions
    assert box_lesion.prompt["box_corners_ras"] == [list(C2 - 10.0), list(C2 + 10.0)] and box_lesion.prompt["seed_ras"] is None
    assert seed_lesion.prompt["seed_ras"] == list(C1) and box_lesion.volume_ml == 0.0 and seed_lesion.volume_ml > 0
    assert session.volume_id == applied.volume.GetID() and session.model_id == "click-lesion"
    arrays = _segment_arrays(applied.node, applied.volume)
    assert list(arrays) == ["Lesion 2"] and arrays["Lesion 2"][_voxel(two_lesion_ct(), C1)] == 1
    low, high = seed_lesion.volume_range_ml
    assert low <= seed_lesion.volume_ml <= high
    lines = logic.lesionVolumeLines(applied.node)
    assert lines == [f"Lesion 1: 0.00 mL (range 0.00\u20130.00 mL)",
                     f"Lesion 2: {seed_lesion.volume_ml:.2f} mL (range {low:.2f}\u2013{high:.2f} mL)"]
    assert logic.resultText(applied.job, applied.node).splitlines()[1:3] == lines


def test_each_click_re_runs_only_its_lesion_in_place_and_undo_restores_it(scene_logic, applied):
    from RadAISegmentLib.lesion_slicer import read_session
    logic, scene, node, volume = scene_logic.logic, scene_logic.scene, applied.node, applied.volume
    image = two_lesion_ct()
    nodes_before, node_id = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), node.GetID()
    include, exclude = applied.parameters.includePoints, applied.parameters.excludePoints

    # an include click inside the drawn box creates that lesion's segment; the other segment is untouched
    before = _segment_arrays(node, volume)
    include.AddControlPointWorld(*[float(v) for v in C2])
    job = logic.startCorrection(node, include, 0, True)
    assert job.inputs.lesion_label == 1 and job.inputs.prompt["include_ras"] == [list(C2)]
    assert job.inputs.prompt["box_corners_ras"] == [list(C2 - 10.0), list(C2 + 10.0)]
    assert not (job.folder / "input.nrrd").exists()                    # the worker holds the image already
    assert not (job.folder / "previous.npy").exists()                  # lesion 1 had no outline yet
    assert "corrected" in _finish(logic, job)
    after = _segment_arrays(node, volume)
    assert np.array_equal(after["Lesion 2"], before["Lesion 2"]) and after["Lesion 1"][_voxel(image, C2)] == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == nodes_before and node.GetID() == node_id

    # an include click beside lesion 2's ball: its outline goes to the worker, the segment grows to the click
    import slicer
    segment_id = read_session(node).record(2).segment_id
    outline = bounding_box(slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume))
    include.AddControlPointWorld(*[float(v) for v in C1 + [6.0, 0.0, 0.0]])
    job = logic.startCorrection(node, include, 1, True)
    previous = np.load(job.folder / "previous.npy")                    # only the lesion's own extent is sent
    assert np.array_equal(previous, outline[0]) and previous.shape == outline[0].shape and job.inputs.lesion_label == 2
    _finish(logic, job)
    grown = _segment_arrays(node, volume)
    assert grown["Lesion 2"][_voxel(image, C1 + [6.0, 0.0, 0.0])] == 1 and grown["Lesion 2"].sum() > before["Lesion 2"].sum()
    assert np.array_equal(grown["Lesion 1"], after["Lesion 1"])
    assert read_session(node).record(2).segment_id == segment_id           # the same segment, updated in place
    volume_grown = read_session(node).record(2).volume_ml

    # an exclude click 3 mm from the seed removes that part; undo brings it back and removes the click
    exclude.AddControlPointWorld(*[float(v) for v in C1 + [0.0, 0.0, 3.0]])
    _finish(logic, logic.startCorrection(node, exclude, 0, False))
    cut = _segment_arrays(node, volume)
    assert cut["Lesion 2"][_voxel(image, C1 + [0.0, 0.0, 3.0])] == 0 and read_session(node).record(2).volume_ml < volume_grown
    assert logic.canUndoCorrection(node) and logic.undoCorrection(node)
    restored = _segment_arrays(node, volume)
    assert all(np.array_equal(restored[name], grown[name]) for name in grown)
    assert exclude.GetNumberOfControlPoints() == 0 and read_session(node).record(2).volume_ml == volume_grown
    assert read_session(node).record(2).prompt["exclude_ras"] == []
    assert logic.undoCorrection(node) and logic.undoCorrection(node)        # both include clicks undone
    undone = _segment_arrays(node, volume)
    assert list(undone) == ["Lesion 2"] and np.array_equal(undone["Lesion 2"], before["Lesion 2"])
    assert include.GetNumberOfControlPoints() == 0 and not logic.undoCorrection(node)


def test_segment_voxels_are_read_and_replaced_on_the_volume_s_grid(scene_logic):
    """The segment's own extent is read (no whole-volume export) for segments on the volume's lattice, also when
    Slicer stored them with a shifted origin; a segment on another grid is resampled by Slicer; a replacement
    keeps the segment (ID, name) and clears voxels outside the new mask."""
    import slicer
    from RadAISegmentLib.image import SegmentInfo
    from RadAISegmentLib.lesion_slicer import segment_region, set_segment_region
    from RadAISegmentLib.mrml import segmentation_node_from_labelmap, volume_node_from_image
    scene = scene_logic.scene
    image = two_lesion_ct()
    volume = volume_node_from_image(image, "grid", scene)
    labels = np.zeros(image.array.shape, np.uint8)
    labels[10:14, 20:30, 30:35] = 1
    labels[12, 25, 36] = 1
    info = [SegmentInfo(1, "box", (1.0, 0.0, 0.0))]
    same = segmentation_node_from_labelmap(image.with_array(labels, segments=info), "same lattice", volume)
    coarse = type(image)(labels[::2, ::2, ::2].copy(), tuple(2 * s for s in image.spacing_mm), image.origin_lps,
                         image.direction_lps, segments=info)
    other = segmentation_node_from_labelmap(coarse, "other grid", scene=scene)
    for node in (same, other):
        segment_id = node.GetSegmentation().GetNthSegmentID(0)
        expected = bounding_box(slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume))
        mask, offset = segment_region(node, segment_id, volume)
        assert offset == expected[1] and np.array_equal(mask, expected[0]) and mask.any(), node.GetName()
    segment_id = same.GetSegmentation().GetNthSegmentID(0)
    set_segment_region(same, segment_id, volume, np.ones((2, 3, 4), np.uint8), (5, 6, 7))
    after = slicer.util.arrayFromSegmentBinaryLabelmap(same, segment_id, volume)
    assert after.sum() == 24 and after[5:7, 6:9, 7:11].all() and same.GetSegmentation().GetNthSegment(0).GetName() == "box"
    set_segment_region(same, segment_id, volume, np.zeros((0, 0, 0), np.uint8), (0, 0, 0))
    assert not slicer.util.arrayFromSegmentBinaryLabelmap(same, segment_id, volume).any()
    assert same.GetSegmentation().GetNumberOfSegments() == 1


def test_a_click_that_cannot_be_used_is_a_clear_error_and_is_removed(scene_logic, applied):
    logic, node, volume = scene_logic.logic, applied.node, applied.volume
    before = _segment_arrays(node, volume)
    include, exclude = applied.parameters.includePoints, applied.parameters.excludePoints
    include.AddControlPointWorld(0.0, 30.0, 8.0)                             # outside both boxes
    with pytest.raises(InputError, match="outside every lesion's box"):
        logic.startCorrection(node, include, include.GetNumberOfControlPoints() - 1, True)
    exclude.AddControlPointWorld(*[float(v) for v in C1])                     # on lesion 2's seed: the engine refuses
    job = logic.startCorrection(node, exclude, exclude.GetNumberOfControlPoints() - 1, False)
    assert job.wait(JOB_TIMEOUT_S)
    with pytest.raises(InputError, match="exclude click lies on the seed"):
        logic.finishCorrection(job)
    assert include.GetNumberOfControlPoints() == exclude.GetNumberOfControlPoints() == 0
    after = _segment_arrays(node, volume)
    assert all(np.array_equal(after[name], before[name]) for name in before) and not job.folder.exists()


def test_a_lesion_model_without_clicks_refuses_them_clearly(scene_logic, applied):
    from RadAISegmentLib.mrml import volume_node_from_image
    scene, logic = scene_logic.scene, scene_logic.logic
    volume = volume_node_from_image(two_lesion_ct(), "v1 lesions", scene)
    parameters = scene_logic.code.RadAISegmentParameterNode(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    parameters.inputVolume, parameters.modelId, parameters.device = volume, "click-lesion-v1", "cpu"
    with pytest.raises(InputError, match="place a seed on each lesion"):
        logic.startSegmentation(parameters)                                   # neither seed nor box
    parameters.seedPoints = _points(scene, "v1 seeds", [C1])
    job = logic.startSegmentation(parameters)
    assert job.wait(JOB_TIMEOUT_S)
    node = logic.finishSegmentation(job)
    clicks = _points(scene, "v1 include", [C1 + [4.0, 0.0, 0.0]])
    with pytest.raises(InputError, match="correction clicks need lesion-roi 2.x"):
        logic.startCorrection(node, clicks, 0, True)
    assert clicks.GetNumberOfControlPoints() == 0
    parameters.boxRoi = applied.roi                                           # a drawn box: the worker refuses
    job = logic.startSegmentation(parameters)
    assert job.wait(JOB_TIMEOUT_S)
    with pytest.raises(InputError, match="drawn boxes need lesion-roi 2.x"):
        logic.finishSegmentation(job)
