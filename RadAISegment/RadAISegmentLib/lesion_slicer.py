"""MRML bridge for interactive lesion segmentation: a Markups ROI as the box, include / exclude point lists,
corrections that re-run one lesion and update its segment in place, and undo.

After *Apply* with a lesion model, the segmentation node carries a :class:`.lesion_session.LesionSession`
(JSON in the node attribute :data:`SESSION_ATTRIBUTE`: model, volume, each lesion's prompt, segment and
volume with its range; it is saved with the scene). A click placed on the include or exclude list is routed to
the lesion whose box holds it (:func:`.lesion_session.lesion_for_click`); :func:`start_correction` sends the
worker only that lesion's prompt plus the click and its current outline (its segment's own extent, never the
whole volume); :func:`finish_correction` saves the segmentation's state in its ``vtkSegmentationHistory``
(as the Segment Editor does before each edit), replaces the segment's voxels in place (same segment, same
node) and records the click; :meth:`CorrectionHistory.undo` restores the previous outline, the record and
the point lists. A click that fails (outside every box, an exclude click on the seed) is removed from its
list, so the lists hold exactly the accepted clicks. Imports ``slicer`` MRML classes only.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import slicer
import vtk

from .errors import InputError, RadAIError
from .jobs import JobInputs, WorkerJob
from .lesion_session import LesionRecord, LesionSession, geometry_image, lesion_for_click, prompt_from_dict
from .mrml import LABEL_VALUE_TAG, _numpy_matrix, _segment_ids, _tag

SESSION_ATTRIBUTE = "RadAI.LesionSession"
RANGE_TAG = "RadAI.VolumeRangeML"


# -- prompts from the scene -------------------------------------------------------------------------------
def roi_corners_ras(roi_node) -> Optional[tuple]:
    """A Markups ROI as the box the engine takes: two opposite corners ``(R1, A1, S1, R2, A2, S2)`` of its
    axis-aligned bounds in RAS mm (None without an ROI or before it has a size)."""
    if roi_node is None:
        return None
    bounds = [0.0] * 6
    roi_node.GetRASBounds(bounds)
    low, high = bounds[0::2], bounds[1::2]
    if not all(np.isfinite(bounds)) or any(h <= lo for lo, h in zip(low, high)):
        return None
    return tuple(float(v) for v in (*low, *high))


def volume_geometry(volume_node):
    """The volume's grid as an engine Image without copying its voxels (``geometry_image``)."""
    from .geometry import decompose_ijk_to_ras
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    spacing, origin_lps, direction_lps = decompose_ijk_to_ras(_numpy_matrix(matrix))
    dimensions = volume_node.GetImageData().GetDimensions()
    return geometry_image(dimensions[::-1], spacing, origin_lps, direction_lps)


# -- the session on the segmentation node -------------------------------------------------------------------
def read_session(segmentation_node) -> Optional[LesionSession]:
    text = segmentation_node.GetAttribute(SESSION_ATTRIBUTE) if segmentation_node is not None else None
    return LesionSession.from_json(text) if text else None


def store_session(segmentation_node, session: LesionSession) -> None:
    segmentation_node.SetAttribute(SESSION_ATTRIBUTE, session.to_json())
    for record in session.lesions:
        segment = segmentation_node.GetSegmentation().GetSegment(record.segment_id)
        if segment is not None and record.volume_range_ml:
            segment.SetTag(RANGE_TAG, ",".join(f"{v:.4f}" for v in record.volume_range_ml))


def segment_id_for_label(segmentation_node, label: int) -> str:
    """The segment holding label value ``label`` (its ``RadAI.LabelValue`` tag), or ''."""
    for segment_id in _segment_ids(segmentation_node):
        if _tag(segmentation_node.GetSegmentation().GetSegment(segment_id), LABEL_VALUE_TAG) == str(int(label)):
            return segment_id
    return ""


def record_lesions(segmentation_node, inputs: JobInputs, lesions: list, volume_id: str) -> LesionSession:
    """After Apply with a lesion model: the session (each lesion's prompt as assembled, segment, volume and
    range) stored on ``segmentation_node``."""
    records = [LesionRecord(int(lesion["label"]), str(lesion.get("name") or f"Lesion {lesion['label']}"),
                            dict(lesion["prompt"]), float(lesion["volume_ml"]), list(lesion["volume_range_ml"]),
                            segment_id_for_label(segmentation_node, int(lesion["label"])))
               for lesion in lesions]
    session = LesionSession(inputs.model_id, volume_id, inputs.device, inputs.precision, records)
    store_session(segmentation_node, session)
    return session


def volume_lines(segmentation_node) -> list[str]:
    """``Lesion 1: 1.23 mL (range 1.05–1.41 mL)`` per lesion of a RadAI lesion segmentation ([] otherwise)."""
    session = read_session(segmentation_node)
    return session.lines() if session else []


# -- segment voxels on the volume's grid ----------------------------------------------------------------------
def _index_offset(volume_matrix: vtk.vtkMatrix4x4, segment_matrix: vtk.vtkMatrix4x4) -> Optional[np.ndarray]:
    """``(i, j, k)`` of the segment's voxel (0, 0, 0) on the volume's grid when both lie on one lattice (same
    axes and spacing, origins a whole number of voxels apart), else None."""
    to_volume = np.linalg.inv(_numpy_matrix(volume_matrix)) @ _numpy_matrix(segment_matrix)
    shift = to_volume[:3, 3]
    if not np.allclose(to_volume[:3, :3], np.eye(3), atol=1e-5) or not np.allclose(shift, np.round(shift), atol=1e-3):
        return None
    return np.round(shift).astype(int)


def segment_region(segmentation_node, segment_id: str, volume_node) -> tuple[np.ndarray, tuple]:
    """A segment's voxels on the volume's grid as ``(uint8 mask [k, j, i], offset_kji)`` over the segment's own
    extent (not the whole volume). Segments on another lattice are resampled onto the volume's first."""
    from .lesion_session import bounding_box
    oriented = slicer.vtkOrientedImageData()
    segmentation_node.GetBinaryLabelmapRepresentation(segment_id, oriented)
    volume_matrix, segment_matrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(volume_matrix)
    oriented.GetImageToWorldMatrix(segment_matrix)
    extent = oriented.GetExtent()
    if extent[1] < extent[0] or oriented.GetPointData().GetScalars() is None:
        return np.zeros((0, 0, 0), np.uint8), (0, 0, 0)
    shift = _index_offset(volume_matrix, segment_matrix)
    if shift is None:                     # another grid: Slicer resamples onto the volume's
        return bounding_box(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, volume_node))
    from vtk.util.numpy_support import vtk_to_numpy
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    values = vtk_to_numpy(oriented.GetPointData().GetScalars()).reshape(shape)
    mask, offset = bounding_box(values != 0)
    start_kji = (extent[4] + shift[2], extent[2] + shift[1], extent[0] + shift[0])
    return mask, tuple(int(o + s) for o, s in zip(offset, start_kji))


def set_segment_region(segmentation_node, segment_id: str, volume_node, mask: np.ndarray, offset_kji) -> None:
    """Replace a segment's voxels in place (same segment ID, name, colour, tags) by ``mask`` placed at
    ``offset_kji`` of the volume's grid; the segment is emptied where ``mask`` is 0 or absent."""
    from vtk.util.numpy_support import numpy_to_vtk
    labelmap = slicer.vtkOrientedImageData()
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    labelmap.SetImageToWorldMatrix(matrix)
    k, j, i = (int(v) for v in offset_kji)
    depth, rows, columns = mask.shape
    if mask.size:
        labelmap.SetExtent(i, i + columns - 1, j, j + rows - 1, k, k + depth - 1)
        labelmap.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(mask, np.uint8).ravel(), deep=True,
                                                        array_type=vtk.VTK_UNSIGNED_CHAR))
    else:
        labelmap.SetExtent(0, -1, 0, -1, 0, -1)
        labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(labelmap, segmentation_node, segment_id, logic.MODE_REPLACE):
        raise RadAIError(f"Slicer could not update segment {segment_id} of '{segmentation_node.GetName()}'.")


def ensure_segment(segmentation_node, record: LesionRecord, color_rgb=(0.95, 0.35, 0.2)) -> str:
    """The segment of a lesion, created empty (name, colour, label tag) when the model found nothing there at
    Apply (e.g. a box without a seed); returns its ID (``record.segment_id`` is updated)."""
    segmentation = segmentation_node.GetSegmentation()
    if record.segment_id and segmentation.GetSegment(record.segment_id) is not None:
        return record.segment_id
    record.segment_id = segment_id_for_label(segmentation_node, record.label) or segmentation.AddEmptySegment(
        "", record.name, [float(c) for c in color_rgb])
    segmentation.GetSegment(record.segment_id).SetTag(LABEL_VALUE_TAG, str(int(record.label)))
    return record.segment_id


# -- corrections ------------------------------------------------------------------------------------------------
def remove_point(markups_node, point_id: str) -> None:
    """Remove a control point by ID (nothing if it is gone already)."""
    if markups_node is not None and point_id:
        index = markups_node.GetNthControlPointIndexByID(point_id)
        if index >= 0:
            markups_node.RemoveNthControlPoint(index)


def start_correction(segmentation_node, markups_node, point_index: int, include: bool) -> WorkerJob:
    """Start re-running the one lesion that the click at control point ``point_index`` of ``markups_node``
    belongs to, in the worker (the image is sent only if the worker does not hold it). A click that cannot be
    used is removed from its list and raises :class:`InputError` naming why."""
    from .models.cache import find_model
    from .lesion.preprocess import PromptSettings
    from .slicer_jobs import start_worker_job, volume_identity_key
    point_id = markups_node.GetNthControlPointID(point_index)
    try:
        session = read_session(segmentation_node)
        if session is None or not session.lesions:
            raise InputError(f"'{segmentation_node.GetName() if segmentation_node else 'No segmentation'}' holds no "
                             "RadAI lesions to correct: segment the lesions with a lesion model (Apply) first.")
        volume = segmentation_node.GetScene().GetNodeByID(session.volume_id)
        if volume is None:
            raise InputError("The volume these lesions were segmented on is no longer in the scene.")
        settings = PromptSettings.from_card(find_model(session.model_id).raw.get("input", {}))
        if not settings.interactive:
            raise InputError(f"Model '{session.model_id}' takes only a seed and a box size; correction clicks need "
                             "lesion-roi 2.x (install it, then Apply again).")
        position = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(point_index, position)
        prompts = [prompt_from_dict(record.prompt) for record in session.lesions]
        number = lesion_for_click(volume_geometry(volume), prompts, position, include, settings.grid,
                                  settings.default_box_mm)
        record = session.lesions[number]
        prompt = dict(record.prompt)
        key = "include_ras" if include else "exclude_ras"
        prompt[key] = list(prompt.get(key) or []) + [[float(v) for v in position]]
        present = record.segment_id and segmentation_node.GetSegmentation().GetSegment(record.segment_id)
        previous = segment_region(segmentation_node, record.segment_id, volume) if present else None
        inputs = JobInputs(volume_identity_key(volume), session.model_id, device=session.device, stages=("correct",),
                           precision=session.precision, prompt=prompt, lesion_label=record.label,
                           context={"scene": segmentation_node.GetScene(), "segmentation_id": segmentation_node.GetID(),
                                    "volume_id": volume.GetID(), "markups_id": markups_node.GetID(),
                                    "point_id": point_id, "include": include})
        return start_worker_job(volume, inputs, previous=previous)
    except RadAIError:
        remove_point(markups_node, point_id)
        raise


class CorrectionHistory:
    """Undo for corrections, per segmentation node: its ``vtkSegmentationHistory`` (the voxels) and, per step,
    the session record before it and the click's point (removed again on undo)."""

    def __init__(self, maximum_steps: int = 20) -> None:
        self.maximum_steps = maximum_steps
        self._entries: dict = {}

    def _entry(self, segmentation_node) -> dict:
        key = (id(segmentation_node.GetScene()), segmentation_node.GetID())
        entry = self._entries.get(key)
        if entry is None or entry["history"].GetSegmentation() is not segmentation_node.GetSegmentation():
            history = slicer.vtkSegmentationHistory()
            history.SetMaximumNumberOfStates(self.maximum_steps)
            history.SetSegmentation(segmentation_node.GetSegmentation())
            entry = self._entries[key] = {"history": history, "steps": []}
        return entry

    def save(self, segmentation_node, click: tuple) -> None:
        """Before a correction: the voxels, the record and the click ``(markups node ID, point ID)``."""
        entry = self._entry(segmentation_node)
        entry["history"].SaveState()
        entry["steps"] = (entry["steps"] + [(segmentation_node.GetAttribute(SESSION_ATTRIBUTE), click)])[
            -self.maximum_steps:]

    def can_undo(self, segmentation_node) -> bool:
        entry = self._entries.get((id(segmentation_node.GetScene()), segmentation_node.GetID())) \
            if segmentation_node is not None else None
        return bool(entry and entry["steps"] and entry["history"].IsRestorePreviousStateAvailable())

    def undo(self, segmentation_node) -> bool:
        """Restore the outline, the record and the point lists before the last correction; False if none."""
        if not self.can_undo(segmentation_node):
            return False
        entry = self._entry(segmentation_node)
        entry["history"].RestorePreviousState()
        attribute, (markups_id, point_id) = entry["steps"].pop()
        segmentation_node.SetAttribute(SESSION_ATTRIBUTE, attribute)
        remove_point(segmentation_node.GetScene().GetNodeByID(markups_id), point_id)
        return True

    def forget(self, segmentation_node) -> None:
        """Drop a node's undo steps (its voxels were replaced by a new Apply)."""
        if segmentation_node is not None:
            self._entries.pop((id(segmentation_node.GetScene()), segmentation_node.GetID()), None)

    def clear(self) -> None:
        self._entries.clear()


def finish_correction(job: WorkerJob, history: CorrectionHistory):
    """Main thread: the corrected lesion's outline replaces its segment's voxels (history saved first), the click
    joins the lesion's prompt and its volume is updated. Returns the segmentation node. A failed or cancelled
    job removes its click from the list and raises its error; the segment is unchanged."""
    context = job.inputs.context
    scene = context["scene"]
    markups = scene.GetNodeByID(context["markups_id"])
    try:
        try:
            correction = job.result().correction
        except RadAIError:
            remove_point(markups, context["point_id"])
            raise
        node, volume = scene.GetNodeByID(context["segmentation_id"]), scene.GetNodeByID(context["volume_id"])
        if node is None or volume is None:
            raise InputError("The segmentation or its volume was removed while the correction ran; nothing changed.")
        session = read_session(node)
        record = session.record(job.inputs.lesion_label)
        history.save(node, (context["markups_id"], context["point_id"]))
        set_segment_region(node, ensure_segment(node, record), volume, correction.mask, correction.offset_kji)
        record.prompt = dict(job.inputs.prompt)
        record.volume_ml, record.volume_range_ml = correction.volume_ml, list(correction.volume_range_ml)
        store_session(node, session)
        return node
    finally:
        job.cleanup()


def place_points(markups_node) -> None:
    """Start placing points on ``markups_node`` in the views (persistent place mode), as Slicer's place button
    does: the selection node's active place node and the interaction node's Place mode (the scene's
    singletons, created if a headless scene lacks them)."""
    scene = markups_node.GetScene()
    selection = _singleton(scene, "vtkMRMLSelectionNode")
    interaction = _singleton(scene, "vtkMRMLInteractionNode")
    selection.SetReferenceActivePlaceNodeClassName(markups_node.GetClassName())
    selection.SetActivePlaceNodeID(markups_node.GetID())
    interaction.SetPlaceModePersistence(1)
    interaction.SetCurrentInteractionMode(interaction.Place)


def _singleton(scene, class_name: str):
    node = scene.GetNodeByID(f"{class_name}Singleton")
    if node is None:
        node = getattr(slicer, class_name)()
        node.SetSingletonTag("Singleton")
        node = scene.AddNode(node)
    return node


def new_point_list(scene, name: str, color_rgb: tuple):
    """An empty point list for clicks, coloured (green include, red exclude)."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetSelectedColor(*color_rgb)
    node.GetDisplayNode().SetColor(*color_rgb)
    return node
