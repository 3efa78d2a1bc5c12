"""`radai demo`: the whole pipeline on the bundled data, offline on the CPU, ends with the report's path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_every_step_and_writes_a_self_contained_report(tmp_path):
    run = subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", "demo", "--out", tmp_path / "demo"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = Path(run.stdout.strip().splitlines()[-1])
    assert report == (tmp_path / "demo" / "report.html").resolve()
    html = report.read_text()
    for section in ("Lung tumour from one click", "Organ measurements", "Ejection fraction", "Lesion change over time",
                    "Models, device and timings", "lesion-roi"):
        assert section in html
    assert "Step '" not in html                                                     # no failed step
    assert html.count("data:image/png;base64") >= 6 and "src='http" not in html    # pictures embedded, offline
    for produced in ("lesion/lesion.seg.nrrd", "lesion/saliency.nii.gz", "lesion/3d.png", "organs/measurements.json",
                     "cardiac/volume_curve.png", "longitudinal/comparison.json"):
        assert (tmp_path / "demo" / produced).exists(), produced
