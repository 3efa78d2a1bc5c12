"""`radai segment IMAGE --model lesion-roi --seed R,A,S --box-mm N --out SEG` typed as a user types it: the
installed `radai` entry point in a subprocess, seeds in RAS mm straight from the shell (negative numbers
included, first coordinate too). The written labelmap equals the engine's own `run_model` with the same prompt."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from RadAISegmentLib.inference import run_model
from RadAISegmentLib.io import read_image, read_labelmap
from RadAISegmentLib.lesion.evaluate import case_prompt

RADAI = str(Path(sys.executable).parent / "radai")


def radai(*args) -> subprocess.CompletedProcess:
    return subprocess.run([RADAI, *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("case", ["lung-tumour", "brain-tumour"])
def test_segment_from_a_typed_seed_equals_the_engine(case, sample_data, tmp_path):
    """lung-tumour's centroid is R +21.86, A +120.54, S -611.50; brain-tumour's is R -46.47, A -16.52, S +15.53:
    `--seed -46.47,-16.52,15.53` starts with a minus sign, which argparse would take for an option unless the
    CLI reads it as a number. The seed is typed with two decimals, as a user copies it from Slicer."""
    image_path = sample_data / f"{case}_image.nrrd"
    reference = read_labelmap(sample_data / f"{case}_labels.nrrd")
    centroid, box_mm, _ = case_prompt(reference)
    typed = ",".join(f"{value:.2f}" for value in centroid)
    assert (typed[0] == "-") == (case == "brain-tumour")
    out = tmp_path / f"{case}.nrrd"
    run = radai("segment", image_path, "--model", "lesion-roi", "--seed", typed, "--box-mm", f"{box_mm:.1f}",
                "--out", out)
    assert run.returncode == 0, run.stderr
    written = read_labelmap(out)
    image = read_image(image_path)
    assert written.same_grid(image)
    expected = run_model(image, "lesion-roi", [tuple(float(v) for v in typed.split(","))], box_mm=round(box_mm, 1),
                         device="cpu")
    np.testing.assert_array_equal(written.array, expected.array)
    lesion = written.array > 0
    assert lesion.any() and np.count_nonzero(lesion & (reference.array > 0)) > 0      # it found this tumour
    # read as RAS, not LPS: the seed falls inside the tumour's bounding box (brain1's centroid is in its
    # necrotic core, so not necessarily on a tumour voxel)
    seed_ijk = image.ras_to_index(np.array([[float(v) for v in typed.split(",")]]))[0]
    tumour_ijk = np.argwhere(reference.array > 0)[:, ::-1]
    assert np.all(tumour_ijk.min(axis=0) - 0.5 <= seed_ijk) and np.all(seed_ijk <= tumour_ijk.max(axis=0) + 0.5)


def test_seed_outside_the_image_is_a_one_line_error(sample_data, tmp_path):
    """The same tumour's centroid typed in LPS (x, y negated) by mistake lies outside the cropped image."""
    centroid = case_prompt(read_labelmap(sample_data / "lung-tumour_labels.nrrd"))[0]
    typed = f"{-centroid[0]:.2f},{-centroid[1]:.2f},{centroid[2]:.2f}"
    run = radai("segment", sample_data / "lung-tumour_image.nrrd", "--model", "lesion-roi", "--seed", typed,
                "--out", tmp_path / "seg.nrrd")
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode != 0 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "outside the image" in run.stderr and "RAS" in run.stderr
    assert not (tmp_path / "seg.nrrd").exists()
