"""Longitudinal tracking: known rigid motion and known volume change (phantom and real lung tumour),
response categories at their boundaries, new/disappeared lesions, and the compare CLI."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RadAISegmentLib.io import from_sitk, read_image, read_labelmap, to_sitk, write_image
from RadAISegmentLib.phantoms import apply_matrix, followup_pair_phantom
from RadAIVolumetricsLib.longitudinal.compare import compare_timepoints
from RadAIVolumetricsLib.longitudinal.registration import register
from RadAIVolumetricsLib.longitudinal.response import doubling_time_days, recist_category, volumetric_category
from RadAIVolumetricsLib.longitudinal.timepoint import Timepoint


@pytest.fixture(scope="module")
def phantom_pair():
    return followup_pair_phantom()


def lesions_only(labels):
    return labels.with_array((labels.array == max(labels.label_values())).astype(np.uint8))


def test_phantom_pair_registration_matching_and_volumes(phantom_pair):
    base_ct, base_labels, follow_ct, follow_labels, truth = phantom_pair
    result = compare_timepoints([Timepoint(base_ct, lesions_only(base_labels), dt.date(2025, 1, 1), "b"),
                                 Timepoint(follow_ct, lesions_only(follow_labels), dt.date(2025, 4, 1), "f")]).to_json()
    matrix = np.array(result["registration"][0]["transform"]["matrix_lps"])
    for lesion in truth["lesions"]:
        if lesion["baseline"]:
            centre = np.array(lesion["baseline"]["centre_lps"])
            error = apply_matrix(matrix, centre) - apply_matrix(np.array(truth["baseline_to_followup_lps"]), centre)
            assert np.linalg.norm(error) < 1.0
    statuses = sorted(lesion["status"] for lesion in result["lesions"])
    assert statuses == ["matched", "matched", "new"]
    expected = sorted(((l["baseline"]["voxel_volume_mm3"] / 1000 if l["baseline"] else None,
                        l["followup"]["voxel_volume_mm3"] / 1000) for l in truth["lesions"]), key=lambda p: p[1])
    measured = sorted(((l["volumes_ml"][0], l["volumes_ml"][1]) for l in result["lesions"]), key=lambda p: p[1])
    for (b_true, f_true), (b, f) in zip(expected, measured):
        assert f == pytest.approx(f_true, rel=1e-6)          # measured on the follow-up's own grid
        if b_true is not None:
            assert abs(b - b_true) < 0.02 * b_true
        else:
            assert b is None                                 # the new lesion has no baseline volume
    assert result["recist_response"] == "PD" and result["volumetric_response"] == "PD"   # a new lesion appeared
    grown = [l for l in result["lesions"] if l["status"] == "matched" and l["volumes_ml"][1] > l["volumes_ml"][0]][0]
    assert grown["doubling_time_days"] == pytest.approx(doubling_time_days(*grown["volumes_ml"], 90))


def test_real_lung_tumour_moved_and_grown(sample_data):
    image = read_image(sample_data / "lung-tumour_image.nrrd")
    lesion = read_labelmap(sample_data / "lung-tumour_labels.nrrd")
    rigid = sitk.Euler3DTransform()
    centre = image.index_to_lps(np.array(image.shape_ijk) / 2.0)
    rigid.SetCenter(tuple(centre))
    rigid.SetRotation(0.0, 0.0, np.deg2rad(4.0))
    rigid.SetTranslation((3.0, -2.0, 0.0))
    moved_image = from_sitk(sitk.Resample(to_sitk(image), to_sitk(image), rigid.GetInverse(), sitk.sitkLinear, -1024))
    grown = ndimage.binary_dilation(lesion.array > 0, structure=ndimage.generate_binary_structure(3, 1)[1:2])
    grown_sitk = to_sitk(lesion.with_array(grown.astype(np.uint8)))
    moved_lesion = from_sitk(sitk.Resample(grown_sitk, grown_sitk, rigid.GetInverse(), sitk.sitkNearestNeighbor, 0))
    truth_followup_ml = np.count_nonzero(moved_lesion.array) * image.voxel_volume_mm3 / 1000
    truth_baseline_ml = np.count_nonzero(lesion.array) * image.voxel_volume_mm3 / 1000
    result = compare_timepoints([Timepoint(image, lesion, dt.date(2025, 1, 1), "b"),
                                 Timepoint(moved_image, moved_lesion, dt.date(2025, 3, 2), "f")])
    registration = register(image, moved_image)
    centroid = image.index_to_lps(np.argwhere(lesion.array > 0).mean(axis=0)[::-1])
    expected = np.array(rigid.TransformPoint(tuple(centroid)))
    assert np.linalg.norm(np.array(registration.transform.TransformPoint(tuple(centroid))) - expected) < 1.0
    track = result.to_json()["lesions"]
    assert len(track) == 1 and track[0]["status"] == "matched"
    assert abs(track[0]["volumes_ml"][1] - truth_followup_ml) < 0.02 * truth_baseline_ml
    assert track[0]["volume_change_percent"][1] > 0


@pytest.mark.parametrize("sums, new, expected", [
    ([100.0, 70.0], False, "PR"),          # exactly -30 % is PR
    ([100.0, 70.1], False, "SD"),
    ([20.0, 24.0], False, "SD"),           # +20 % but only 4 mm: not PD
    ([30.0, 36.0], False, "PD"),           # +20 % and 6 mm
    ([100.0, 60.0, 72.0], False, "PD"),    # +20 % over the nadir (60), 12 mm
    ([100.0, 100.0], True, "PD"),          # a new lesion with a stable sum
    ([50.0, 0.0], False, "CR"),
])
def test_recist_boundaries(sums, new, expected):
    assert recist_category(sums, len(sums) - 1, new) == expected


@pytest.mark.parametrize("volumes, expected", [([10.0, 3.5], "PR"), ([10.0, 3.6], "SD"), ([10.0, 17.3], "PD"),
                                               ([10.0, 17.2], "SD"), ([10.0, 5.0, 8.65], "PD"), ([10.0, 0.0], "CR")])
def test_volumetric_boundaries(volumes, expected):
    assert volumetric_category(volumes, len(volumes) - 1, False) == expected


def test_disappeared_lesion_and_cli(phantom_pair, tmp_path):
    base_ct, base_labels, follow_ct, follow_labels, _ = phantom_pair
    empty = follow_labels.with_array(np.zeros_like(follow_labels.array))
    write_image(base_ct, tmp_path / "b.nii.gz")
    write_image(lesions_only(base_labels), tmp_path / "bs.nii.gz")
    write_image(follow_ct, tmp_path / "f.nii.gz")
    write_image(empty, tmp_path / "fs.nii.gz")
    run = subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", "compare", "--baseline", tmp_path / "b.nii.gz",
                          tmp_path / "bs.nii.gz", "--followup", tmp_path / "f.nii.gz", tmp_path / "fs.nii.gz",
                          "--date", "2025-01-01", "--date", "2025-02-01", "--json", "--plot", tmp_path / "v.png"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    for key in ("timepoints", "lesions", "sum_of_diameters_mm", "total_volume_ml", "recist_response",
                "volumetric_response", "registration"):
        assert key in data
    assert {l["status"] for l in data["lesions"]} == {"disappeared"}
    assert data["recist_response"] == "CR" and data["volumetric_response"] == "CR"
    assert data["lesions"][0]["doubling_time_days"] is None
    assert (tmp_path / "v.png").exists()


def test_three_timepoints_keep_identities_and_track_the_nadir(phantom_pair):
    base_ct, base_labels, _, _, _ = phantom_pair
    lesion = lesions_only(base_labels)
    shrunk = lesion.with_array(ndimage.binary_erosion(lesion.array > 0, iterations=2).astype(np.uint8))
    points = [Timepoint(base_ct, lesion, dt.date(2025, 1, 1), "t0"),
              Timepoint(base_ct, shrunk, dt.date(2025, 3, 1), "t1"),
              Timepoint(base_ct, lesion, dt.date(2025, 5, 1), "t2")]
    result = compare_timepoints(points).to_json()
    baseline_tracks = [l for l in result["lesions"] if l["volumes_ml"][0]]
    assert len(result["lesions"]) == len(baseline_tracks) == 2          # same identities at all three times
    assert all(l["status"] == "matched" for l in result["lesions"])
    sums = result["sum_of_diameters_mm"]
    assert result["nadir_sum_of_diameters_mm"] == pytest.approx(min(sums)) == pytest.approx(sums[1])
    assert result["recist_by_timepoint"][2] == recist_category(sums, 2, False)


def test_dates_out_of_order_and_different_patients_are_reported(phantom_pair):
    base_ct, base_labels, follow_ct, follow_labels, _ = phantom_pair
    later = Timepoint(follow_ct.with_array(follow_ct.array, patient_id="B"), lesions_only(follow_labels),
                      dt.date(2025, 6, 1), "later")
    earlier = Timepoint(base_ct.with_array(base_ct.array, patient_id="A"), lesions_only(base_labels),
                        dt.date(2025, 1, 1), "earlier")
    result = compare_timepoints([later, earlier])
    assert [p["name"] for p in result.timepoints] == ["earlier", "later"]
    text = " ".join(result.warnings)
    assert "out of date order" in text and "different PatientIDs" in text


def test_split_and_merge_are_recorded(phantom_pair):
    base_ct, _, _, _, _ = phantom_pair
    one = np.zeros(base_ct.array.shape, np.uint8)
    one[30:36, 60:70, 40:80] = 1                                  # one elongated lesion
    two = one.copy()
    two[:, :, 58:62] = 0                                          # cut in two: a split
    shape = base_ct.with_array
    split = compare_timepoints([Timepoint(base_ct, shape(one), dt.date(2025, 1, 1), "b"),
                                Timepoint(base_ct, shape(two), dt.date(2025, 2, 1), "f")]).to_json()
    assert [l["status"] for l in split["lesions"]] == ["split"]
    merged = compare_timepoints([Timepoint(base_ct, shape(two), dt.date(2025, 1, 1), "b"),
                                 Timepoint(base_ct, shape(one), dt.date(2025, 2, 1), "f")]).to_json()
    assert sorted(l["status"] for l in merged["lesions"]) == ["merged", "merged"]


def test_registration_that_cannot_work_falls_back_to_identity_with_a_warning(phantom_pair):
    base_ct, _, _, _, _ = phantom_pair
    flat = base_ct.with_array(np.zeros_like(base_ct.array))
    registration = register(base_ct, flat)
    assert not registration.converged and registration.warnings
    np.testing.assert_allclose(registration.matrix_lps, np.eye(4))
