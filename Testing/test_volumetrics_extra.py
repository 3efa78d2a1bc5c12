"""Extra volumetrics checks: oblique phantom vs analytic truth, exact invariance under voxel-axis
permutation, and bad input (geometry mismatch, non-integer / negative labels, unknown names)."""
from __future__ import annotations

import numpy as np
import pytest

from RadAISegmentLib.errors import GeometryMismatchError, InputError, LabelError
from RadAISegmentLib.image import Image, SegmentInfo
from RadAISegmentLib.phantoms import abdominal_ct_phantom
from RadAIVolumetricsLib.cardiac import fractional_change
from RadAIVolumetricsLib.measurements import measure_segments, resolve_labels

PHYSICAL_KEYS = ("volume_mm3", "mesh_volume_mm3", "surface_area_mm2", "sphericity", "max_3d_diameter_mm",
                 "major_axis_length_mm", "minor_axis_length_mm", "least_axis_length_mm", "elongation", "flatness")


@pytest.fixture(scope="module")
def phantoms():
    small = dict(shape_ijk=(96, 96, 48), spacing_mm=(2.0, 2.0, 4.0))
    return abdominal_ct_phantom(rotated=False, **small), abdominal_ct_phantom(rotated=True, **small)


def test_oblique_phantom_matches_analytic_truth_and_axis_aligned_copy(phantoms):
    (ct_a, labels_a, truth_a), (ct_b, labels_b, truth_b) = phantoms
    rows_a = {row["label"]: row for row in measure_segments(labels_a, ct_a)}
    rows_b = {row["label"]: row for row in measure_segments(labels_b, ct_b)}
    for label, info in truth_b["labels"].items():
        label = int(label)
        # voxel volume is the phantom's voxel count x voxel volume (exact) and near the analytic volume
        assert rows_b[label]["voxel_count"] == info["voxel_count"]
        assert rows_b[label]["volume_mm3"] == pytest.approx(info["analytic_volume_mm3"], rel=0.02)
        # same anatomy on an axis-aligned grid: physical measures agree (voxelisation differs -> few %)
        for key in ("volume_mm3", "mesh_volume_mm3", "max_3d_diameter_mm", "major_axis_length_mm"):
            assert rows_b[label][key] == pytest.approx(rows_a[label][key], rel=0.05), (label, key)
        # centroid in RAS agrees with the analytic centre within a voxel
        np.testing.assert_allclose(rows_b[label]["centroid_ras"], info["centre_ras"], atol=4.0)
    lesion = rows_b[5]
    assert lesion["connected_components"] == 2          # the phantom puts two lesions in label 5
    assert lesion["intensity"]["voxel_count"] == lesion["voxel_count"]


def test_voxel_axis_permutation_gives_identical_physical_measures():
    """Swapping the array's i and j axes while swapping the direction columns and spacings describes
    the same physical object: every 3D measure must be equal (to rounding), and the k-plane 2D
    diameter and RECIST axes too (the k axis is unchanged); column/row diameters swap."""
    rng = np.random.default_rng(3)
    array = np.zeros((24, 40, 32), np.uint8)
    k, j, i = np.indices(array.shape)
    array[(((k - 11.3) * 1.5 / 12) ** 2 + ((j - 19.6) * 0.6 / 9) ** 2 + ((i - 15.2) * 0.8 / 7) ** 2) <= 1] = 1
    array[rng.random(array.shape) < 0.002] = 0        # a few holes: not a perfect ellipsoid
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a = Image(array, (0.8, 0.6, 1.5), (1.0, 2.0, 3.0), direction)
    b = Image(np.ascontiguousarray(array.transpose(0, 2, 1)), (0.6, 0.8, 1.5), (1.0, 2.0, 3.0), direction[:, [1, 0, 2]])
    row_a, row_b = measure_segments(a)[0], measure_segments(b)[0]
    for key in PHYSICAL_KEYS + ("max_2d_diameter_slice_mm", "recist_long_axis_mm", "recist_short_axis_mm"):
        assert row_b[key] == pytest.approx(row_a[key], rel=1e-6), key
    assert row_b["max_2d_diameter_column_mm"] == pytest.approx(row_a["max_2d_diameter_row_mm"], rel=1e-6)
    np.testing.assert_allclose(row_b["centroid_ras"], row_a["centroid_ras"], atol=1e-6)


def test_geometry_mismatch_is_refused_with_remedy():
    labels = Image(np.ones((4, 5, 6), np.uint8), (1.0, 1.0, 1.0))
    image = Image(np.zeros((4, 5, 6), np.int16), (1.0, 1.0, 2.0))
    with pytest.raises(GeometryMismatchError, match="Resample"):
        measure_segments(labels, image)


def test_non_integer_and_negative_labels_are_refused():
    with pytest.raises(LabelError, match="non-integer"):
        measure_segments(Image(np.full((3, 3, 3), 0.5, np.float32), (1, 1, 1)))
    with pytest.raises(LabelError, match="negative"):
        measure_segments(Image(np.full((3, 3, 3), -1, np.int16), (1, 1, 1)))
    # whole-number floats (e.g. a labelmap saved as float NIfTI) are accepted
    row = measure_segments(Image(np.pad(np.ones((2, 2, 2), np.float32), 1) * 3, (1, 1, 1)))[0]
    assert row["label"] == 3 and row["voxel_count"] == 8


def test_resolve_labels_by_name_and_unknown_name():
    array = np.zeros((6, 6, 6), np.uint8)
    array[1:3, 1:3, 1:3] = 2
    labels = Image(array, (1, 1, 1), segments=(SegmentInfo(2, "LV blood pool", (1, 0, 0)),))
    assert resolve_labels(labels, ["lv BLOOD pool", "7"]) == [2, 7]
    assert resolve_labels(labels, None) == [2]
    with pytest.raises(LabelError, match="LV blood pool"):
        resolve_labels(labels, ["Myocardium"])


def test_fractional_change_closed_form():
    assert fractional_change(400.0, 100.0) == pytest.approx(-75.0)   # bladder voiding
    assert fractional_change(2500.0, 5000.0) == pytest.approx(100.0)  # lung expiration -> inspiration
    with pytest.raises(InputError):
        fractional_change(0.0, 1.0)
