"""`radai evaluate` end to end: real tumour masks, a missing file, a grid mismatch, subgroups and drift."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from RadAISegmentLib.io import read_labelmap, write_image


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


CASES = {"lung1": "lung-tumour", "brain1": "brain-tumour", "breast1": "breast-lesion"}   # PyRadiomics -> sample


def make_cohort(tmp_path, sample_data):
    """Real lung1/brain1/breast1 masks (the bundled sample crops) as references; predictions = references eroded
    by one voxel (known effect)."""
    rows, expected_dice, lesions, surviving = [], [], 0, 0
    for index, case in enumerate(CASES):
        reference = read_labelmap(sample_data / f"{CASES[case]}_labels.nrrd")
        reference = reference.with_array((reference.array > 0).astype(np.uint8))
        eroded = ndimage.binary_erosion(reference.array > 0, ndimage.generate_binary_structure(3, 1))
        components, count = ndimage.label(reference.array > 0, np.ones((3, 3, 3)))
        lesions += count
        surviving += len(np.unique(components[eroded]))
        expected_dice.append(2 * eroded.sum() / (eroded.sum() + (reference.array > 0).sum()))
        write_image(reference, tmp_path / f"{case}_ref.nrrd")
        write_image(reference.with_array(eroded.astype(np.uint8)), tmp_path / f"{case}_pred.nrrd")
        rows.append({"study": case, "image": "", "reference": f"{case}_ref.nrrd", "prediction": f"{case}_pred.nrrd",
                     "group": "CT" if case == "lung1" else "MR", "date": f"2025-0{index + 1}-15"})
    rows.append({"study": "missing", "image": "", "reference": "lung1_ref.nrrd", "prediction": "nope.nrrd",
                 "group": "CT", "date": "2025-04-01"})
    with open(tmp_path / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path / "manifest.csv", float(np.mean(expected_dice)), surviving / lesions


def test_evaluate_manifest_on_real_masks(tmp_path, sample_data):
    manifest, expected_dice, expected_sensitivity = make_cohort(tmp_path, sample_data)
    result = run_cli("evaluate", "--manifest", manifest, "--bootstrap", 200, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    label = summary["labels"]["Segment_1"]
    for key in ("dice_mean", "dice_ci95", "hd95_mm_mean", "volume_error_percent_mean", "lesion_sensitivity",
                "false_positives_per_case"):
        assert key in label
    # Eroding by one voxel: Dice = 2|E|/(|E|+|R|) exactly, the volume shrinks, and only the reference
    # components that keep a voxel after erosion are detected (real masks hold stray 1-voxel islands).
    assert label["dice_mean"] == pytest.approx(expected_dice)
    assert label["volume_error_percent_mean"] < 0
    assert expected_sensitivity < 1.0
    assert label["lesion_sensitivity"] == pytest.approx(expected_sensitivity)
    assert label["false_positives_per_case"] == 0.0
    low, high = label["dice_ci95"]
    assert low <= label["dice_mean"] <= high
    assert summary["studies_failed"][0]["study"] == "missing"
    assert set(summary["subgroups"]) == {"CT", "MR"}
    assert summary["drift"]["Segment_1"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64" in html and "missing" in html
    with open(tmp_path / "out" / "per_study.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 4


def test_evaluate_refuses_grid_mismatch_unless_asked(tmp_path, sample_data):
    reference = read_labelmap(sample_data / "breast-lesion_labels.nrrd")
    shifted = type(reference)(reference.array, reference.spacing_mm,
                              tuple(np.add(reference.origin_lps, (2.0, 0, 0))), reference.direction_lps)
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    write_image(reference, tmp_path / "ref" / "case.nrrd")
    write_image(shifted, tmp_path / "pred" / "case.nrrd")
    refused = run_cli("evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--out", tmp_path / "o1",
                      "--bootstrap", 10, "--json")
    summary = json.loads(refused.stdout)
    assert summary["studies_evaluated"] == 0 and "origin" in summary["studies_failed"][0]["error"]
    resampled = run_cli("evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--out", tmp_path / "o2",
                        "--bootstrap", 10, "--resample", "--json")
    assert resampled.returncode == 0
    assert json.loads(resampled.stdout)["studies_evaluated"] == 1


def test_unknown_label_name_is_reported(tmp_path, sample_data):
    manifest, _, _ = make_cohort(tmp_path, sample_data)
    result = run_cli("evaluate", "--manifest", manifest, "--labels", "liver", "--out", tmp_path / "o", "--json",
                     "--bootstrap", 10)
    summary = json.loads(result.stdout)
    assert summary["studies_evaluated"] == 0
    assert "'liver' is not in the reference" in summary["studies_failed"][0]["error"]


def test_evaluate_runs_the_model_when_predictions_are_missing(tmp_path, colin27):
    """Colin27 with its brain-extracted reference: `--model brain-extraction` segments it first, then scores it."""
    from RadAISegmentLib.io import read_image
    image_path, brain_path = colin27
    brain = read_image(brain_path)
    write_image(brain.with_array((brain.array > 0).astype(np.uint8)), tmp_path / "brain_ref.nii.gz")
    with open(tmp_path / "manifest.csv", "w", newline="") as handle:
        handle.write(f"study,image,reference\ncolin27,{image_path},brain_ref.nii.gz\n")
    result = run_cli("evaluate", "--manifest", tmp_path / "manifest.csv", "--model", "brain-extraction",
                     "--bootstrap", 10, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["studies_evaluated"] == 1
    assert summary["labels"]["Segment_1"]["dice_mean"] > 0.93     # deepbet's own figure on Colin27 is 0.936
    assert (tmp_path / "out" / "predictions" / "colin27.nii.gz").exists()


def test_two_segmenters_compared_closed_form(tmp_path):
    """Reference cubes of side n (8, 10, 12 voxels); A = the cube shifted 1 voxel, B = shifted 2 voxels along i.
    Dice(A, ref) = (n-1)/n, Dice(B, ref) = (n-2)/n, so A − B = 1/n per study; Dice(A, B) = (n-1)/n;
    A and B have the reference's volume, so their volumes agree perfectly (bias 0, ICC 1)."""
    from RadAISegmentLib.image import Image
    folders = {name: tmp_path / name for name in ("ref", "a", "b")}
    for folder in folders.values():
        folder.mkdir()
    sides = (8, 10, 12)
    for n in sides:
        for name, shift in (("ref", 0), ("a", 1), ("b", 2)):
            array = np.zeros((16, 16, 20), np.uint8)
            array[2:2 + n, 2:2 + n, 2 + shift:2 + shift + n] = 1
            write_image(Image(array, spacing_mm=(0.8, 0.8, 2.0)), folders[name] / f"cube{n}.nrrd")
    result = run_cli("evaluate", "--pred", folders["a"], "--ref", folders["ref"], "--pred-b", folders["b"],
                     "--bootstrap", 200, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    comparison = json.loads(result.stdout)["comparison"]["Segment_1"]
    assert comparison["studies"] == 3
    assert comparison["dice_a_mean"] == pytest.approx(np.mean([(n - 1) / n for n in sides]))
    assert comparison["dice_b_mean"] == pytest.approx(np.mean([(n - 2) / n for n in sides]))
    assert comparison["dice_difference_mean"] == pytest.approx(np.mean([1 / n for n in sides]))
    low, high = comparison["dice_difference_ci95"]
    assert 1 / 12 - 1e-9 <= low <= comparison["dice_difference_mean"] <= high <= 1 / 8 + 1e-9
    assert comparison["dice_a_vs_b_mean"] == pytest.approx(np.mean([(n - 1) / n for n in sides]))
    assert comparison["volume_bland_altman_a_vs_b_ml"]["bias"] == pytest.approx(0.0)
    assert comparison["volume_icc_a_b"] == pytest.approx(1.0)
    with open(tmp_path / "out" / "per_study.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["dice_b"]) for row in rows] == pytest.approx([(n - 2) / n for n in (10, 12, 8)])
    assert "Two segmenters compared" in (tmp_path / "out" / "report.html").read_text()
    refused = run_cli("evaluate", "--manifest", tmp_path / "none.csv", "--pred-b", folders["b"], "--out", tmp_path / "x")
    assert refused.returncode != 0 and "--pred-b" in refused.stderr
