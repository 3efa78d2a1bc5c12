"""`radai info` on the real DICOM folder (JSON shape) and its one-line errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np

from RadAISegmentLib import io


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_info_json_on_dicom_folder(test_data):
    folder = test_data / "ct-dicom"
    result = run_cli("info", folder, "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert {"shape", "spacing_mm", "origin", "direction", "coordinate_system", "modality", "min", "max",
            "series"} <= set(facts)
    image = io.read_image(folder)
    assert facts["shape"] == list(image.shape_ijk) == [256, 208, 20]
    assert np.allclose(facts["spacing_mm"], image.spacing_mm) and np.allclose(facts["origin"], image.origin_lps)
    assert np.allclose(facts["direction"], image.direction_lps)
    assert facts["coordinate_system"] == "LPS" and facts["modality"] == "CT"
    assert facts["min"] == float(image.array.min()) and facts["max"] == float(image.array.max())
    assert len(facts["series"]) == 1 and facts["series"][0]["number_of_files"] == 20


def assert_one_line_error(result):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr


def test_info_bad_path(tmp_path):
    result = run_cli("info", tmp_path / "missing.nii.gz")
    assert_one_line_error(result)
    assert "no such file" in result.stderr.lower()


def test_info_corrupt_dicom(test_data, tmp_path):
    folder = tmp_path / "series"
    shutil.copytree(test_data / "ct-dicom", folder)
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:1500])
    result = run_cli("info", folder, "--json")
    assert_one_line_error(result)
    assert "corrupt" in result.stderr.lower() and victim.name in result.stderr
