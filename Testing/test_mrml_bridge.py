"""MRML bridge on the headless Slicer core: exact round trips on real data, Slicer-counted volumes."""
from __future__ import annotations

import numpy as np
import pytest

from RadAISegmentLib import io
from RadAISegmentLib.image import Image, SegmentInfo, TerminologyCode

LIVER = SegmentInfo(5, "Liver", (0.86, 0.54, 0.4), TerminologyCode("123037004", "SCT", "Anatomical Structure"),
                    TerminologyCode("10200004", "SCT", "Liver"))


@pytest.fixture(scope="module")
def real_case(sample_data):
    ct = io.read_image(sample_data / "abdomen-ct_image.nii.gz")          # TotalSegmentator's example CT
    seg = io.read_image(sample_data / "abdomen-ct_labels.nii.gz")
    labels = np.where(np.isin(seg.array, [5, 6, 7]), seg.array, 0).astype(np.uint8)
    return ct, seg.with_array(labels, segments=[LIVER, SegmentInfo(6, "Stomach", (0.3, 0.5, 0.9))])


def oblique_image() -> Image:
    """A synthetic image whose direction is a real rotation (not axis-aligned) and anisotropic spacing."""
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    array = np.arange(7 * 9 * 11, dtype=np.float32).reshape(7, 9, 11)
    return Image(array, (0.7, 0.9, 2.5), (-12.5, 30.25, 101.0), rotation, {"modality": "MR"})


def test_volume_round_trip_is_exact_on_real_ct(slicer_scene, real_case):
    from RadAISegmentLib import mrml
    ct, _ = real_case
    node = mrml.volume_node_from_image(ct, "ct", slicer_scene)
    back = mrml.image_from_volume_node(node)
    assert np.array_equal(back.array, ct.array) and back.array.dtype == ct.array.dtype
    assert np.allclose(back.ijk_to_ras, ct.ijk_to_ras, atol=1e-6)
    # Slicer's own IJK->RAS agrees with the Image's geometry.
    import vtk
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    assert np.allclose(matrix.MultiplyPoint((3, 4, 5, 1))[:3], ct.index_to_ras([3, 4, 5]), atol=1e-6)


def test_volume_round_trip_oblique_keeps_geometry_and_modality(slicer_scene):
    from RadAISegmentLib import mrml
    image = oblique_image()
    back = mrml.image_from_volume_node(mrml.volume_node_from_image(image, "oblique", slicer_scene))
    assert np.array_equal(back.array, image.array)
    assert np.allclose(back.spacing_mm, image.spacing_mm, atol=1e-6)
    assert np.allclose(back.origin_lps, image.origin_lps, atol=1e-6)
    assert np.allclose(back.direction_lps, image.direction_lps, atol=1e-6)
    assert back.metadata["modality"] == "MR"


def test_segmentation_round_trip_names_colours_terminology(slicer_scene, real_case):
    from RadAISegmentLib import mrml
    ct, labels = real_case
    volume = mrml.volume_node_from_image(ct, "ct-ref", slicer_scene)
    node = mrml.segmentation_node_from_labelmap(labels, "organs", volume)
    assert node.GetSegmentation().GetNumberOfSegments() == 3
    back = mrml.labelmap_from_segmentation_node(node, ct)
    assert np.array_equal(back.array, labels.array)
    assert back.same_grid(ct, tolerance=1e-6)
    by_label = {s.label: s for s in back.segments}
    assert by_label[5].name == "Liver" and by_label[6].name == "Stomach" and by_label[7].name == "Segment_7"
    assert np.allclose(by_label[5].color_rgb, LIVER.color_rgb, atol=1e-6)
    assert by_label[5].type == LIVER.type and by_label[5].category == LIVER.category


def test_slicer_segment_volumes_equal_voxel_count_times_voxel_volume(slicer_scene, real_case):
    from RadAISegmentLib import mrml
    _, labels = real_case
    node = mrml.segmentation_node_from_labelmap(labels, "volumes", scene=slicer_scene)
    volumes = mrml.segment_volumes_mm3_via_slicer(node)
    expected = {labels.segment_for(v).name: np.count_nonzero(labels.array == v) * labels.voxel_volume_mm3
                for v in labels.label_values()}
    assert volumes == pytest.approx(expected, rel=0, abs=1e-9)
    assert all(v > 0 for v in volumes.values())


def test_overlapping_segments_refuse_labelmap_export(slicer_scene, real_case):
    from RadAISegmentLib import mrml
    from RadAISegmentLib.errors import LabelError
    ct, labels = real_case
    first = mrml.segmentation_node_from_labelmap(labels.with_array((labels.array == 5).astype(np.uint8)), "a", scene=slicer_scene)
    second = mrml.segmentation_node_from_labelmap(labels.with_array((labels.array == 5).astype(np.uint8) * 2), "b",
                                                  scene=slicer_scene)
    first.GetSegmentation().CopySegmentFromSegmentation(second.GetSegmentation(), second.GetSegmentation().GetNthSegmentID(0))
    with pytest.raises(LabelError, match="overlaps"):
        mrml.labelmap_from_segmentation_node(first, ct)


def test_closed_surfaces_and_saliency_display(slicer_scene, real_case):
    from RadAISegmentLib import mrml
    ct, labels = real_case
    node = mrml.segmentation_node_from_labelmap(labels, "surfaces", scene=slicer_scene)
    mrml.show_closed_surfaces(node)
    import vtk
    polydata = vtk.vtkPolyData()
    assert node.GetClosedSurfaceRepresentation(node.GetSegmentation().GetNthSegmentID(0), polydata)
    assert polydata.GetNumberOfPoints() > 100
    assert node.GetDisplayNode().GetPreferredDisplayRepresentationName3D() == "Closed surface"
    saliency = ct.with_array(np.linspace(0, 1, ct.array.size, dtype=np.float32).reshape(ct.array.shape))
    volume = mrml.saliency_volume_node(saliency, "saliency", slicer_scene, threshold=0.3)
    table = slicer_scene.GetNodeByID(volume.GetDisplayNode().GetColorNodeID())
    rgba = [0.0] * 4
    table.GetColor(10, rgba)
    assert rgba[3] == 0.0  # below the threshold: transparent
    table.GetColor(255, rgba)
    assert rgba[3] == 1.0 and rgba[0] > 0.9 and rgba[1] > 0.9  # top of the heat map: bright yellow
    display = mrml.setup_saliency_volume_rendering(volume, threshold=0.3)
    opacity = display.GetVolumePropertyNode().GetVolumeProperty().GetScalarOpacity()
    assert opacity.GetValue(0.2) == 0.0 and opacity.GetValue(0.9) > 0.0


def test_existing_node_is_reused_and_reference_defaults_to_segmentation_geometry(slicer_scene, real_case):
    from RadAISegmentLib import mrml
    ct, labels = real_case
    volume = mrml.volume_node_from_image(ct, "ct-reuse", slicer_scene)
    node = mrml.segmentation_node_from_labelmap(labels, "first", volume)
    liver_only = labels.with_array((labels.array == 5).astype(np.uint8) * 5, segments=[LIVER])
    again = mrml.segmentation_node_from_labelmap(liver_only, "second", volume, existing_node=node)
    assert again is node and node.GetName() == "second"
    assert node.GetSegmentation().GetNumberOfSegments() == 1
    back = mrml.labelmap_from_segmentation_node(node)  # grid from the reference volume's geometry
    assert back.same_grid(ct, tolerance=1e-6)
    assert np.array_equal(back.array, liver_only.array)


def test_segments_without_codes_get_no_terminology_tag(slicer_scene):
    """Slicer's DeserializeTerminologyEntry rejects empty codes ("Invalid type component"): a segment
    without category/type keeps Slicer's own default entry instead of one with empty codes; a coded
    segment carries its codes."""
    import numpy as np
    import vtk
    from RadAISegmentLib.mrml import TERMINOLOGY_TAG, parse_terminology_entry, segmentation_node_from_labelmap
    array = np.zeros((6, 6, 6), np.uint8)
    array[1:3, 1:3, 1:3], array[3:5, 3:5, 3:5] = 1, 5
    labelmap = Image(array, (1.0, 1.0, 1.0), segments=(SegmentInfo(1, "uncoded"), LIVER))
    node = segmentation_node_from_labelmap(labelmap, "codes", scene=slicer_scene)
    tags = {}
    for index in range(node.GetSegmentation().GetNumberOfSegments()):
        segment = node.GetSegmentation().GetNthSegment(index)
        value = vtk.reference("")
        tags[segment.GetName()] = str(value) if segment.GetTag(TERMINOLOGY_TAG, value) else None
    for name, tag in tags.items():
        category, segment_type = parse_terminology_entry(tag)
        assert category is not None and segment_type is not None, (name, tag)   # no empty code in the entry
    assert parse_terminology_entry(tags["Liver"])[1].value == "10200004"
