"""EF on the analytic cine phantom, ED/ES pairs with closed-form volumes, and the measure/ef CLI contracts."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from RadAISegmentLib.image import Image, SegmentInfo
from RadAISegmentLib.io import write_image
from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
from RadAIVolumetricsLib.cardiac import (ejection_fraction_from_pair, ejection_fraction_from_sequence,
                                         fractional_change, plot_volume_curve)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cine():
    return cardiac_cine_phantom()


def test_sequence_ef_matches_analytic_truth(cine, tmp_path):
    _, labelmaps, truth = cine
    result = ejection_fraction_from_sequence(labelmaps, "LV blood pool", "LV myocardium", heart_rate_bpm=60)
    assert abs(result["ejection_fraction_percent"] - truth["ef_percent"]) < 0.5
    assert (result["ed_phase"], result["es_phase"]) == (truth["ed_index"], truth["es_index"])
    assert result["myocardial_mass_g"] == pytest.approx(truth["lv_mass_g"], rel=0.01)
    assert result["cardiac_output_l_min"] == pytest.approx(truth["cardiac_output_l_per_min"], rel=0.02)
    png = plot_volume_curve(result, tmp_path / "curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def box_labelmap(extent_voxels, spacing):
    array = np.zeros((30, 30, 30), np.uint8)
    array[2:2 + extent_voxels[2], 2:2 + extent_voxels[1], 2:2 + extent_voxels[0]] = 1
    return Image(array, spacing, segments=[SegmentInfo(1, "LV blood pool")])


def test_pair_closed_form_and_negative_ef_is_not_clamped():
    ed = box_labelmap((20, 20, 10), (1.0, 1.0, 5.0))   # 20*20*10*5 mm3 = 20 mL
    es = box_labelmap((10, 20, 10), (1.0, 1.0, 5.0))   # 10 mL
    result = ejection_fraction_from_pair(ed, es, "LV blood pool", heart_rate_bpm=70)
    assert (result["edv_ml"], result["esv_ml"], result["ejection_fraction_percent"]) == pytest.approx((20.0, 10.0, 50.0))
    assert result["cardiac_output_l_min"] == pytest.approx(10.0 * 70 / 1000)
    swapped = ejection_fraction_from_pair(es, ed, 1)
    assert swapped["ejection_fraction_percent"] == pytest.approx(-100.0) and swapped["warnings"]
    assert fractional_change(400.0, 300.0) == pytest.approx(-25.0)


def test_ef_cli_sequence_folder_and_pair(cine, tmp_path):
    _, labelmaps, truth = cine
    folder = tmp_path / "phases"
    for index, labelmap in enumerate(labelmaps):
        write_image(labelmap, folder / f"phase{index:02d}.nii.gz")
    result = run_cli("ef", "--sequence", folder, "--label", 1, "--myocardium", 2, "--heart-rate", 60, "--json",
                     "--plot", tmp_path / "c.png")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("edv_ml", "esv_ml", "stroke_volume_ml", "ejection_fraction_percent", "ed_phase", "es_phase",
                "myocardial_mass_g", "cardiac_output_l_min"):
        assert key in data
    assert abs(data["ejection_fraction_percent"] - truth["ef_percent"]) < 0.5
    assert (tmp_path / "c.png").exists()
    bad = run_cli("ef", "--sequence", folder, "--label", "no such ventricle", "--json")
    assert bad.returncode == 2 and "no such ventricle" in bad.stderr and "Traceback" not in bad.stderr


def test_measure_cli_contract(sample_data, tmp_path):
    image, seg = sample_data / "lung-tumour_image.nrrd", sample_data / "lung-tumour_labels.nrrd"
    result = run_cli("measure", image, seg, "--json")
    assert result.returncode == 0, result.stderr
    segment = json.loads(result.stdout)["segments"][0]
    for key in ("label", "name", "voxel_count", "volume_mm3", "volume_ml", "mesh_volume_mm3", "surface_area_mm2",
                "sphericity", "max_3d_diameter_mm", "max_2d_diameter_slice_mm", "max_2d_diameter_column_mm",
                "max_2d_diameter_row_mm", "major_axis_length_mm", "minor_axis_length_mm", "least_axis_length_mm",
                "elongation", "flatness", "recist_long_axis_mm", "recist_short_axis_mm", "centroid_ras", "intensity"):
        assert key in segment
    assert segment["voxel_count"] == 837 and segment["intensity"]["mean"] < 0  # HU of a lung nodule crop
    shape_only = json.loads(run_cli("measure", "-", seg, "--json").stdout)["segments"][0]
    assert shape_only["intensity"] == {} and shape_only["volume_ml"] == segment["volume_ml"]
    assert run_cli("measure", image, seg, "--csv", tmp_path / "m.csv").returncode == 0
    assert "recist_long_axis_mm" in (tmp_path / "m.csv").read_text()
    mismatch = run_cli("measure", sample_data / "abdomen-ct_image.nii.gz", seg)
    assert mismatch.returncode == 2 and "grid" in mismatch.stderr
