"""MRML bridge: :class:`~.image.Image` <-> Slicer volume and segmentation nodes, and their display.

Imports only ``slicer`` MRML/logic classes and ``slicer.util`` (never ``slicer.app``, ``qt``), so it runs
with the headless Slicer core (``trame-slicer[standalone]``) as well as inside Slicer. Geometry goes
through ``Image.ijk_to_ras`` / :func:`.geometry.decompose_ijk_to_ras` (Slicer nodes are RAS; Image is LPS).
Segment label values are kept in the segment tag ``RadAI.LabelValue``; terminology in Slicer's
``TerminologyEntry`` tag format.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import slicer
import slicer.util
import vtk

from . import geometry
from .errors import GeometryMismatchError, LabelError
from .image import Image, SegmentInfo, TerminologyCode, as_label_array
from .heatmap import HEAT_CONTROL_POINTS, SALIENCY_ATTRIBUTE, heat_rgb

LABEL_VALUE_TAG = "RadAI.LabelValue"
MODALITY_ATTRIBUTE = "DICOM.Modality"
TERMINOLOGY_TAG = "TerminologyEntry"
_TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
_ANATOMY_CONTEXT = "Anatomic codes - DICOM master list"


def _scene(scene=None):
    scene = scene if scene is not None else getattr(slicer, "mrmlScene", None)
    if scene is None:
        raise RuntimeError("No MRML scene: pass scene= or set slicer.mrmlScene.")
    return scene


_LOGICS: dict = {}


def _module_logic(scene, module: str, logic_class: str):
    """A Slicer module's logic: the application's if present, else one per scene, created once."""
    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, module):
        return getattr(modules, module).logic()
    key = (module, id(scene))
    if key not in _LOGICS:
        logic = getattr(slicer, logic_class)()
        logic.SetMRMLScene(scene)
        _LOGICS[key] = logic
    return _LOGICS[key]


def _segmentations_logic(scene):
    return _module_logic(scene, "segmentations", "vtkSlicerSegmentationsModuleLogic")


def _volume_rendering_logic(scene):
    return _module_logic(scene, "volumerendering", "vtkSlicerVolumeRenderingLogic")


def _vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    result = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            result.SetElement(r, c, float(matrix[r, c]))
    return result


def _numpy_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _set_geometry(node, image: Image) -> None:
    node.SetIJKToRASMatrix(_vtk_matrix(image.ijk_to_ras))


def volume_node_from_image(image: Image, name: str, scene=None, labelmap: bool = False):
    """Add a ``vtkMRMLScalarVolumeNode`` (or ``vtkMRMLLabelMapVolumeNode``) holding a copy of ``image``.

    The voxel array ``[k, j, i]`` is copied as is; IJKToRAS is ``image.ijk_to_ras``; ``metadata['modality']``
    is stored as the node attribute ``DICOM.Modality``.
    """
    scene = _scene(scene)
    array = image.array.astype(np.uint8) if image.array.dtype == bool else image.array
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    _set_geometry(node, image)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    modality = image.metadata.get("modality")
    if modality:
        node.SetAttribute(MODALITY_ATTRIBUTE, str(modality))
    return node


def image_from_volume_node(node) -> Image:
    """Exact inverse of :func:`volume_node_from_image`: a copy of the voxels, geometry from IJKToRAS."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    spacing, origin_lps, direction_lps = geometry.decompose_ijk_to_ras(_numpy_matrix(matrix))
    metadata = {"source": f"MRML:{node.GetName()}"}
    modality = node.GetAttribute(MODALITY_ATTRIBUTE)
    if modality:
        metadata["modality"] = modality
    return Image(np.array(slicer.util.arrayFromVolume(node), copy=True), spacing, origin_lps, direction_lps, metadata)


# -- terminology ---------------------------------------------------------------------------------
def _code_text(code: Optional[TerminologyCode]) -> str:
    return f"{code.scheme}^{code.value}^{code.meaning}" if code else "^^"


def terminology_entry(info: SegmentInfo) -> str:
    """Slicer's ``TerminologyEntry`` tag: ``context~category~type~typeModifier~anatomyContext~region~regionModifier``."""
    return "~".join([_TERMINOLOGY_CONTEXT, _code_text(info.category), _code_text(info.type), "^^",
                     _ANATOMY_CONTEXT, "^^", "^^"])


def _parse_code(text: str) -> Optional[TerminologyCode]:
    parts = text.split("^")
    if len(parts) != 3 or not parts[1]:
        return None
    return TerminologyCode(value=parts[1], scheme=parts[0], meaning=parts[2])


def parse_terminology_entry(entry: str) -> tuple[Optional[TerminologyCode], Optional[TerminologyCode]]:
    """``(category, type)`` from a ``TerminologyEntry`` tag (``(None, None)`` when absent or malformed)."""
    parts = (entry or "").split("~")
    if len(parts) < 3:
        return None, None
    return _parse_code(parts[1]), _parse_code(parts[2])


# -- segmentations -------------------------------------------------------------------------------
def segmentation_node_from_labelmap(labelmap: Image, name: str, reference_volume_node=None, scene=None,
                                    existing_node=None):
    """A ``vtkMRMLSegmentationNode`` with one segment per non-zero label value (names, colours, terminology).

    Segments are imported one by one from binary masks on the labelmap's own grid (exact voxels);
    each records its label value in the ``RadAI.LabelValue`` tag. If ``reference_volume_node`` is given it
    becomes the segmentation's geometry reference. ``existing_node`` (optional) is emptied and reused.
    """
    scene = _scene(scene if scene is not None else (reference_volume_node.GetScene() if reference_volume_node else None))
    logic = _segmentations_logic(scene)
    labels = as_label_array(labelmap)
    if existing_node is not None:
        node = existing_node
        node.GetSegmentation().RemoveAllSegments()
        node.SetName(name)
    else:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    mask_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__radai_mask")
    try:
        for value, box in _label_boxes(labels):
            info = labelmap.segment_for(value)
            start_ijk = np.array([box[2].start, box[1].start, box[0].start], float)
            _set_geometry(mask_node, Image(np.zeros((1, 1, 1), np.uint8), labelmap.spacing_mm,
                                           tuple(labelmap.index_to_lps(start_ijk)), labelmap.direction_lps))
            slicer.util.updateVolumeFromArray(mask_node, np.ascontiguousarray(labels[box] == value, np.uint8))
            segment_ids_before = set(_segment_ids(node))
            if not logic.ImportLabelmapToSegmentationNode(mask_node, node):
                raise LabelError(f"Slicer could not import label {value} ({info.name}) into a segment.")
            new_ids = [s for s in _segment_ids(node) if s not in segment_ids_before]
            segment = node.GetSegmentation().GetSegment(new_ids[0])
            segment.SetName(info.name)
            segment.SetColor(*[float(c) for c in info.color_rgb])
            segment.SetTag(LABEL_VALUE_TAG, str(int(value)))
            if info.category is not None and info.type is not None:   # Slicer rejects an entry with empty codes
                segment.SetTag(TERMINOLOGY_TAG, terminology_entry(info))
    finally:
        scene.RemoveNode(mask_node)
    return node


def _label_boxes(labels: np.ndarray) -> list[tuple[int, tuple[slice, slice, slice]]]:
    """(value, ``[k, j, i]`` slices of its bounding box) per label value present, in increasing order: each
    segment is imported from its own box, not from a mask of the whole volume (seconds saved per label on a
    CT-sized grid)."""
    from scipy import ndimage
    boxes = ndimage.find_objects(labels)
    return [(value, box) for value, box in enumerate(boxes, start=1) if box is not None]


def _segment_ids(node) -> list[str]:
    ids = vtk.vtkStringArray()
    node.GetSegmentation().GetSegmentIDs(ids)
    return [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]


def _segment_label_value(segment, position: int) -> int:
    value = _tag(segment, LABEL_VALUE_TAG)
    return int(value) if value else position + 1


def labelmap_from_segmentation_node(node, reference_image: Optional[Image] = None) -> Image:
    """The segmentation as an integer labelmap on ``reference_image``'s grid, with ``SegmentInfo`` per label.

    Without ``reference_image`` the grid is the segmentation's own reference geometry (Slicer's
    ``ExportAllSegmentsToLabelmapNode`` with the reference-geometry extent).

    Label values come from the ``RadAI.LabelValue`` tag, else the segment's position (1-based).
    Raises :class:`LabelError` if two segments overlap (a labelmap holds one label per voxel).
    """
    scene = node.GetScene() or _scene()
    logic = _segmentations_logic(scene)
    if reference_image is None:
        grid = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__radai_grid")
        try:
            if not logic.ExportAllSegmentsToLabelmapNode(node, grid, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
                raise LabelError(f"Slicer could not export '{node.GetName()}' onto its reference geometry.")
            reference_image = image_from_volume_node(grid)
        finally:
            scene.RemoveNode(grid)
    reference = volume_node_from_image(reference_image.with_array(np.zeros(reference_image.array.shape, np.uint8)),
                                       "__radai_reference", scene, labelmap=True)
    export = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__radai_export")
    labels = np.zeros(reference_image.array.shape, dtype=np.uint16)
    infos = []
    try:
        for position, segment_id in enumerate(_segment_ids(node)):
            segment = node.GetSegmentation().GetSegment(segment_id)
            value = _segment_label_value(segment, position)
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            if not logic.ExportSegmentsToLabelmapNode(node, ids, export, reference):
                raise LabelError(f"Slicer could not export segment '{segment.GetName()}' to a labelmap.")
            exported = image_from_volume_node(export)
            if not exported.same_grid(reference_image, tolerance=1e-6):
                raise GeometryMismatchError(f"Exported segment grid differs: {exported.grid_difference(reference_image)}")
            mask = exported.array != 0
            if np.any(labels[mask] != 0):
                raise LabelError(f"Segment '{segment.GetName()}' overlaps another segment; a labelmap cannot hold both. "
                                 "Export overlapping segments separately.")
            labels[mask] = value
            category, type_ = parse_terminology_entry(_tag(segment, TERMINOLOGY_TAG))
            infos.append(SegmentInfo(value, segment.GetName(), tuple(float(c) for c in segment.GetColor()), category, type_))
    finally:
        scene.RemoveNode(reference)
        scene.RemoveNode(export)
    top = int(labels.max()) if labels.size else 0
    array = labels.astype(np.uint8) if top < 256 else labels
    return reference_image.with_array(array, segments=sorted(infos, key=lambda s: s.label))


def _tag(segment, name: str) -> str:
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else ""


def segment_volumes_mm3_via_slicer(node) -> dict[str, float]:
    """Segment name -> volume (mm³) counted by Slicer's classes, as Segment Statistics' labelmap plugin does:
    non-zero voxels of each segment's binary labelmap (``vtkOrientedImageData``) × voxel volume."""
    result = {}
    for segment_id in _segment_ids(node):
        segment = node.GetSegmentation().GetSegment(segment_id)
        oriented = slicer.vtkOrientedImageData()
        if not node.GetBinaryLabelmapRepresentation(segment_id, oriented):
            raise LabelError(f"Segment '{segment.GetName()}' has no binary labelmap representation.")
        spacing = oriented.GetSpacing()
        voxel_volume = float(spacing[0]) * float(spacing[1]) * float(spacing[2])
        if oriented.GetPointData().GetScalars() is None:
            count = 0
        else:
            from vtk.util.numpy_support import vtk_to_numpy
            count = int(np.count_nonzero(vtk_to_numpy(oriented.GetPointData().GetScalars())))
        result[segment.GetName()] = count * voxel_volume
    return result


def place_in_subject_hierarchy(node, beside_node) -> int:
    """Put ``node`` under the same subject-hierarchy parent (the patient's study) as ``beside_node``,
    e.g. a result next to the volume it came from; at the scene root when that has no parent.
    Creates the node's item if the scene has none yet (the headless core does not auto-create them).
    Returns the node's item id."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    beside_item = hierarchy.GetItemByDataNode(beside_node)
    parent = hierarchy.GetItemParent(beside_item) if beside_item else hierarchy.GetSceneItemID()
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        item = hierarchy.CreateItem(parent, node)
    return item


def show_closed_surfaces(node, opacity_3d: float = 0.6) -> None:
    """Create the closed-surface representation and show it (semi-transparent) in 3D views."""
    node.CreateClosedSurfaceRepresentation()
    display = node.GetDisplayNode()
    if display is None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
    display.SetPreferredDisplayRepresentationName3D("Closed surface")
    display.SetVisibility3D(True)
    display.SetOpacity3D(opacity_3d)


# -- saliency display ----------------------------------------------------------------------------
def heat_color_table_node(name: str = "RadAIHeat", scene=None, threshold: float = 0.3):
    """A 256-entry ``vtkMRMLColorTableNode`` over 0..1 with the heat map; entries below ``threshold`` are transparent."""
    scene = _scene(scene)
    existing = scene.GetFirstNodeByName(name)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    colors = heat_rgb(np.linspace(0, 1, 256))
    for index, rgb in enumerate(colors):
        alpha = 0.0 if index / 255.0 < threshold else 1.0
        table.SetColor(index, f"heat{index}", float(rgb[0]), float(rgb[1]), float(rgb[2]), alpha)
    return table


def saliency_volume_node(saliency: Image, name: str, scene=None, threshold: float = 0.3, opacity: float = 0.5):
    """A scalar volume of the saliency map (values expected in 0..1) shown as a thresholded heat foreground.

    Display: the heat colour table (transparent below ``threshold``), window 0..1, lower threshold at
    ``threshold``. Foreground opacity ``opacity`` is applied to every slice composite node in the scene.
    """
    scene = _scene(scene)
    node = volume_node_from_image(saliency.with_array(saliency.array.astype(np.float32)), name, scene)
    node.SetAttribute(SALIENCY_ATTRIBUTE, "1")
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(heat_color_table_node(scene=scene, threshold=threshold).GetID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetApplyThreshold(True)
    display.SetAutoThreshold(False)
    display.SetLowerThreshold(float(threshold))
    display.SetUpperThreshold(float(max(1.0, np.max(saliency.array))))
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        composite.SetForegroundVolumeID(node.GetID())
        composite.SetForegroundOpacity(opacity)
    return node


def setup_saliency_volume_rendering(volume_node, threshold: float = 0.3, max_opacity: float = 0.6):
    """Volume-render ``volume_node`` (saliency in 0..1) with heat colours; values below ``threshold`` are invisible.

    Returns the ``vtkMRMLVolumeRenderingDisplayNode``.
    """
    scene = volume_node.GetScene() or _scene()
    logic = _volume_rendering_logic(scene)
    display = logic.CreateDefaultVolumeRenderingNodes(volume_node)
    prop = display.GetVolumePropertyNode().GetVolumeProperty()
    opacity = vtk.vtkPiecewiseFunction()
    opacity.AddPoint(0.0, 0.0)
    opacity.AddPoint(float(threshold), 0.0)
    opacity.AddPoint(float(threshold) + 1e-3, 0.05 * max_opacity)
    opacity.AddPoint(1.0, max_opacity)
    color = vtk.vtkColorTransferFunction()
    for value, rgb in HEAT_CONTROL_POINTS:
        color.AddRGBPoint(value, *rgb)
    prop.SetScalarOpacity(opacity)
    prop.SetColor(color)
    prop.ShadeOff()
    display.SetVisibility(True)
    return display


def setup_ct_volume_rendering(volume_node, window: tuple[float, float] = (150.0, 700.0), max_opacity: float = 0.3):
    """Volume-render a CT volume: grey-to-flesh ramp, invisible below ``window[0]`` HU, ``max_opacity`` at ``window[1]``.

    (Slicer's named presets need the application's share folder, absent headless, so the ramp is explicit.)
    """
    scene = volume_node.GetScene() or _scene()
    display = _volume_rendering_logic(scene).CreateDefaultVolumeRenderingNodes(volume_node)
    prop = display.GetVolumePropertyNode().GetVolumeProperty()
    low, high = (float(v) for v in window)
    opacity = vtk.vtkPiecewiseFunction()
    opacity.AddPoint(low - 1000.0, 0.0)
    opacity.AddPoint(low, 0.0)
    opacity.AddPoint(high, max_opacity)
    color = vtk.vtkColorTransferFunction()
    color.AddRGBPoint(low, 0.55, 0.25, 0.15)
    color.AddRGBPoint(high, 1.0, 0.94, 0.85)
    prop.SetScalarOpacity(opacity)
    prop.SetColor(color)
    prop.ShadeOn()
    display.SetVisibility(True)
    return display
