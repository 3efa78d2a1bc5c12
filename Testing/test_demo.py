"""`radai demo`: the whole pipeline on the bundled data, offline on the CPU, ends with the report's path; the
report's pictures teach (the saliency panel shows the heat map) and its viewers draw in Chromium offline."""
from __future__ import annotations

import io as bytes_io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpl_image

from chromium_page import ChromiumPage, chromium_binary

REPORT_LIMIT_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    run = subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", "demo", "--out", out],
                         capture_output=True, text=True, timeout=1800)   # generous: shared machines are slow
    assert run.returncode == 0, run.stderr[-2000:]
    report = Path(run.stdout.strip().splitlines()[-1])
    assert report == (out / "report.html").resolve()
    return out


def test_demo_runs_every_step_and_writes_a_self_contained_report(demo):
    html = (demo / "report.html").read_text()
    for section in ("Lung tumour from one click", "Organ measurements", "Ejection fraction", "Lesion change over time",
                    "Models, device and timings", "lesion-roi"):
        assert section in html
    assert "Step '" not in html                                                     # no failed step
    assert html.count("data:image/png;base64") >= 8 and "src='http" not in html    # pictures embedded, offline
    assert html.count("class='radai-viewer'") == 4                                  # a viewer for every case
    assert (demo / "report.html").stat().st_size < REPORT_LIMIT_BYTES
    for produced in ("lesion/lesion.seg.nrrd", "lesion/saliency.nii.gz", "lesion/3d_anterior.png",
                     "lesion/3d_right.png", "lesion/3d_saliency.png", "organs/3d_atlas.png", "organs/measurements.json",
                     "cardiac/volume_curve.png", "longitudinal/comparison.json"):
        assert (demo / produced).exists(), produced


def test_the_report_states_how_far_to_trust_each_volume(demo):
    """The lesion's volume comes with the model's stated range, which holds it; the follow-up table says
    whether each change is within measurement uncertainty, as ``comparison.json`` does."""
    import json
    html = (demo / "report.html").read_text()
    lesion = next(row for row in json.loads((demo / "lesion" / "measurements.json").read_text())["segments"]
                  if "label" in row)
    low, high = lesion["volume_range_ml"]
    assert low < lesion["volume_ml"] < high
    assert "Stated range (mL)" in html and f"{low:.2f}–{high:.2f}" in html
    comparison = json.loads((demo / "longitudinal" / "comparison.json").read_text())
    matched = [row for row in comparison["lesions"] if row["status"] == "matched"]
    assert matched and "Within measurement uncertainty?" in html
    for row in matched:
        ranges = row["volume_range_ml"]
        overlap = max(ranges[0][0], ranges[-1][0]) <= min(ranges[0][1], ranges[-1][1])
        assert row["change_within_uncertainty"][-1] == overlap


def test_the_saliency_panel_shows_the_heat_map_and_the_plain_one_does_not(demo):
    plain = mpl_image.imread(str(demo / "lesion" / "axial_plain.png"))[..., :3]
    overlaid = mpl_image.imread(str(demo / "lesion" / "axial.png"))[..., :3]
    assert plain.shape == overlaid.shape
    assert not np.array_equal(plain, overlaid)

    def heat(pixels):
        red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        return (red > 0.3) & ((red > green + 0.15) | (red > blue + 0.25))
    assert heat(overlaid).sum() > 50 and heat(plain).sum() == 0


def _pixels(png: bytes) -> np.ndarray:
    return mpl_image.imread(bytes_io.BytesIO(png), format="png")[..., :3]


@pytest.mark.skipif(chromium_binary() is None, reason="chromium missing: .ci/setup installs it")
def test_report_viewers_draw_offline_with_segments_and_heat(demo):
    """The lesion and organ viewers, drawn as a reader scrolls to them (every case's viewer is checked above)."""
    with ChromiumPage(width=1200, height=1000) as page:
        page.open(demo / "report.html")
        for viewer in ("radai-viewer-1", "radai-viewer-2"):
            page.evaluate(f"document.getElementById('{viewer}').scrollIntoView()")
            page.wait_for(f"['ready', 'error'].includes(document.getElementById('{viewer}').dataset.status)", 600)
            assert page.evaluate(f"document.getElementById('{viewer}').dataset.status") == "ready", page.console()
        lesion = _pixels(page.screenshot_element("#radai-viewer-1 .radai-canvas-box"))
        red, green, blue = lesion[..., 0], lesion[..., 1], lesion[..., 2]
        assert lesion.std() > 0.05
        # the lesion, green beside the heat map (a 1.4 mL lesion, mostly under the heat overlay in the slices)
        assert ((green > red + 0.25) & (green > blue + 0.25)).sum() > 5
        assert ((red > 0.45) & (red > green + 0.2) & (red > blue + 0.2)).sum() > 20   # the Grad-CAM map
        organs = _pixels(page.screenshot_element("#radai-viewer-2 .radai-canvas-box"))
        hues = np.round(organs[(organs.max(axis=2) - organs.min(axis=2)) > 0.25] * 4)
        assert len({tuple(h) for h in hues}) > 8                              # many organ colours
        assert page.remote_requests() == [] and page.blocked_by_policy() == []
