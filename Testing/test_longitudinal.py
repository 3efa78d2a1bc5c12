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

from RadAISegmentLib.image import Image
from RadAISegmentLib.io import from_sitk, read_image, read_labelmap, to_sitk, write_image
from RadAISegmentLib.phantoms import apply_matrix, followup_pair_phantom
from RadAIVolumetricsLib.longitudinal.compare import compare_timepoints
from RadAIVolumetricsLib.longitudinal.registration import register
from RadAIVolumetricsLib.longitudinal.response import recist_category, volumetric_category
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
    # doubling time from the phantom's own voxel volumes: V(t) = V0·2^(t/Td) over the 90 days between the scans
    grown_truth = [l for l in truth["lesions"] if l["volume_change_fraction"] and l["volume_change_fraction"] > 0][0]
    v0, v1 = grown_truth["baseline"]["voxel_volume_mm3"], grown_truth["followup"]["voxel_volume_mm3"]
    grown = [l for l in result["lesions"] if l["status"] == "matched" and l["volumes_ml"][1] > l["volumes_ml"][0]][0]
    assert grown["doubling_time_days"] == pytest.approx(90 * np.log(2) / np.log(v1 / v0), rel=1e-9)


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


# -- RECIST 1.1 against analytic truth: box lesions ------------------------------------------------------------
SPACING_MM = (1.5, 1.5, 3.0)


def box_long_axis_mm(n_i: int, n_j: int, spacing_mm=SPACING_MM) -> float:
    """RECIST long axis of an axis-aligned box of ``n_i`` x ``n_j`` voxels, by the definition in recist.py: the
    longest chord of the slice outline through the edge midpoints between boundary and outside voxels. That
    outline is an octagon (half a voxel outside the box's voxel centres, corners cut diagonally); the longest
    chord of a convex polygon joins two of its vertices."""
    corners = np.array([(-0.5, 0), (0, -0.5), (n_i - 1, -0.5), (n_i - 0.5, 0), (n_i - 0.5, n_j - 1),
                        (n_i - 1, n_j - 0.5), (0, n_j - 0.5), (-0.5, n_j - 1)]) * np.asarray(spacing_mm[:2])
    return float(max(np.linalg.norm(a - b) for a in corners for b in corners))


def textured_image(shape_kji=(12, 96, 96)) -> Image:
    """A smooth CT-like texture (so registration has something to lock on to) on a 1.5 x 1.5 x 3 mm grid."""
    noise = np.random.default_rng(4).normal(size=shape_kji)
    texture = ndimage.gaussian_filter(noise, (1, 4, 4))
    return Image((40 + 400 * texture / texture.std()).astype(np.float32), SPACING_MM, metadata={"modality": "CT"})


def box_labels(image: Image, boxes: dict[int, tuple[int, int, int, int, int]]) -> Image:
    """Labelmap with one box per lesion: ``label -> (i0, j0, n_i, n_j, n_k)``, slices k = 3 .. 3 + n_k - 1."""
    array = np.zeros(image.array.shape, np.uint8)
    for label, (i0, j0, n_i, n_j, n_k) in boxes.items():
        array[3:3 + n_k, j0:j0 + n_j, i0:i0 + n_i] = label
    return image.with_array(array)


#: baseline lesions: label -> (i0, j0, n_i, n_j), organ. Long axes (mm): 35.78, 27.54, 26.71 (liver x 3),
#: 21.63, 18.31 (lung), 16.23 (kidney), 14.15 (spleen), 8.75 (too small to measure).
BASELINE = {1: ((4, 4, 20, 14), "liver"), 2: ((30, 4, 16, 10), "liver"), 3: ((52, 4, 14, 12), "liver"),
            4: ((4, 30, 12, 9), "lung"), 5: ((22, 30, 10, 8), "lung"), 6: ((38, 30, 9, 7), "kidney"),
            8: ((53, 30, 8, 6), "spleen"), 7: ((67, 30, 5, 4), "spleen")}
#: RECIST 1.1 targets: the largest measurable (>= 10 mm) lesions, at most 2 per organ (3 is the third liver
#: lesion), at most 5 in all (8 is the sixth candidate); 7 is not measurable.
TARGETS = [1, 2, 4, 5, 6]


def scaled_boxes(factor: float) -> dict[int, tuple[int, int, int, int, int]]:
    """Targets scaled in-plane by ``factor`` (centred in their baseline box); non-targets unchanged; 3 slices."""
    boxes = {}
    for label, ((i0, j0, n_i, n_j), _) in BASELINE.items():
        if label in TARGETS:
            m_i, m_j = max(1, round(n_i * factor)), max(1, round(n_j * factor))
            i0, j0, n_i, n_j = i0 + (n_i - m_i) // 2, j0 + (n_j - m_j) // 2, m_i, m_j
        boxes[label] = (i0, j0, n_i, n_j, 3)
    return boxes


def test_recist_targets_sums_and_responses_from_real_diameter_changes():
    """Four scans of eight box lesions whose RECIST long axes are known in closed form. Targets follow the
    selection rules; each sum of diameters equals the analytic sum; SD, PR and PD are reached by the targets'
    diameters alone (no new lesion, none gone), PD measured from the nadir while the sum is still below baseline."""
    image = textured_image()
    factors = [1.0, 0.9, 0.55, 0.75]
    plans = [scaled_boxes(f) for f in factors]
    dates = [dt.date(2025, 1, 1), dt.date(2025, 3, 1), dt.date(2025, 5, 1), dt.date(2025, 7, 1)]
    points = [Timepoint(image, box_labels(image, plan), date, f"t{n}") for n, (plan, date) in enumerate(zip(plans, dates))]
    result = compare_timepoints(points, organs={label: organ for label, (_, organ) in BASELINE.items()}).to_json()
    assert sorted(result["target_lesion_ids"]) == TARGETS
    assert all(lesion["status"] == "matched" for lesion in result["lesions"]) and len(result["lesions"]) == 8
    sums = [sum(box_long_axis_mm(*plan[t][2:4]) for t in TARGETS) for plan in plans]
    np.testing.assert_allclose(result["sum_of_diameters_mm"], sums, rtol=1e-12)
    voxel_ml = np.prod(SPACING_MM) / 1000
    volumes = [sum(np.prod(plan[t][2:]) for t in TARGETS) * voxel_ml for plan in plans]
    np.testing.assert_allclose(result["target_volume_ml"], volumes, rtol=1e-12)
    # the design, in numbers: t1 -10.8 % (SD), t2 -44.8 % (PR, volume -68 %), t3 still -25 % below baseline
    # but +36 % and +23.6 mm over the nadir t2 (PD; volume +77 % over the nadir)
    change = [100 * (s / sums[0] - 1) for s in sums]
    assert -30 < change[1] < 0 and change[2] < -30 and -30 < change[3] < 0
    assert sums[3] >= 1.2 * sums[2] and sums[3] - sums[2] >= 5
    assert volumes[2] <= 0.35 * volumes[0] and volumes[3] >= 1.73 * volumes[2] and volumes[1] > 0.35 * volumes[0]
    assert result["recist_by_timepoint"] == [None, "SD", "PR", "PD"]
    assert result["volumetric_by_timepoint"] == [None, "SD", "PR", "PD"]
    assert result["nadir_sum_of_diameters_mm"] == pytest.approx(sums[2], rel=1e-12)


def test_doubling_time_matches_exponential_growth():
    """V(t) = V0·2^(t/Td): one lesion grows x8 in 90 days (Td = 30 days), another x2 (Td = 90 days)."""
    image = textured_image()
    baseline = box_labels(image, {1: (10, 10, 10, 10, 4), 2: (50, 10, 10, 10, 4)})
    followup = box_labels(image, {1: (5, 5, 20, 20, 8), 2: (50, 10, 20, 10, 4)})
    result = compare_timepoints([Timepoint(image, baseline, dt.date(2025, 1, 1), "b"),
                                 Timepoint(image, followup, dt.date(2025, 4, 1), "f")]).to_json()
    by_id = {lesion["id"]: lesion for lesion in result["lesions"]}
    voxel_ml = np.prod(SPACING_MM) / 1000
    assert by_id[1]["volumes_ml"] == pytest.approx([400 * voxel_ml, 3200 * voxel_ml], rel=1e-12)
    assert by_id[1]["doubling_time_days"] == pytest.approx(30.0, rel=1e-12)
    assert by_id[2]["doubling_time_days"] == pytest.approx(90.0, rel=1e-12)
