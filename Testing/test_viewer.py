"""The interactive viewer (NiiVue, vendored) and `radai view`: embedded data, geometry, refusals, and the page as
Chromium draws it offline (software WebGL2): not blank, segmentation and heat colours present, the read-out
giving a voxel's RAS position and value, and no request leaving the page (with negative controls)."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io as bytes_io
import json
import re

import numpy as np
import pytest

from RadAISegmentLib import io
from RadAISegmentLib.errors import GeometryMismatchError, InputError
from RadAISegmentLib.image import Image, SegmentInfo
from RadAIVolumetricsLib.viewer import ViewerCase, case_payload, viewer_page_html
from RadAIVolumetricsLib.viewer import assets
from chromium_page import ChromiumPage, chromium_binary

LESION_RGB = (0.2, 0.3, 1.0)       # a blue that neither the heat map nor the cyan cross-hair resembles


def nifti_from_base64(text: str):
    import nibabel
    raw = gzip.decompress(base64.b64decode(text))
    return nibabel.Nifti1Image.from_bytes(raw)


@pytest.fixture(scope="module")
def lung_case(sample_data):
    image = io.read_image(sample_data / "lung-tumour_image.nrrd")
    labels = io.read_labelmap(sample_data / "lung-tumour_labels.nrrd", reference=image)
    labels = labels.with_array(labels.array, segments=[SegmentInfo(1, "Lesion", LESION_RGB)])
    k, j, i = np.argwhere(labels.array).mean(axis=0)
    i += 14.0 / 0.57                                   # a heat blob 14 mm beside the lesion: both show on the slices
    grid_k, grid_j, grid_i = np.mgrid[0:48, 0:128, 0:128]
    distance2 = ((grid_i - i) * 0.57) ** 2 + ((grid_j - j) * 0.57) ** 2 + ((grid_k - k) * 5.0) ** 2
    blob = np.exp(-distance2 / (2 * 6.0 ** 2))
    return image, labels, image.with_array(blob.astype(np.float32))


def test_payload_carries_the_volumes_with_their_exact_geometry(lung_case):
    image, labels, saliency = lung_case
    payload = case_payload(ViewerCase("lung", image, labels, saliency, "Grad-CAM", "CT", "HU"))
    layers = {layer["role"]: layer for layer in payload["layers"]}
    for role, source in (("image", image), ("segmentation", labels), ("saliency", saliency)):
        nifti = nifti_from_base64(layers[role]["base64"])
        assert np.allclose(nifti.affine, source.ijk_to_ras, atol=1e-4)        # RAS world = Image.ijk_to_ras
        assert nifti.header.get_sform(coded=True)[1] > 0
    data = np.asarray(nifti_from_base64(layers["image"]["base64"]).dataobj).transpose(2, 1, 0)   # [k, j, i]
    assert np.array_equal(data, image.array)
    shown = np.asarray(nifti_from_base64(layers["segmentation"]["base64"]).dataobj).transpose(2, 1, 0)
    assert layers["segmentation"]["labels"] == [{"value": 1, "display": 3, "name": "Lesion", "rgb": list(LESION_RGB)}]
    assert np.array_equal(shown == 3, labels.array == 1) and set(np.unique(shown)) == {0, 3}
    table = layers["segmentation"]["lut"]
    assert table["A"][:2] == [0, 0] and table["A"][2:5] == [255] * 3 and table["labels"][3] == "Lesion"
    heat = np.asarray(nifti_from_base64(layers["saliency"]["base64"]).dataobj).transpose(2, 1, 0)
    assert np.abs(heat - saliency.array).max() <= 0.0005 + 1e-7            # rounded to 1/1000
    peak = np.unravel_index(np.argmax(saliency.array), saliency.array.shape)
    assert np.allclose(payload["focus_mm"], image.index_to_ras(np.array(peak[::-1], float)))
    names = [mesh["name"] for mesh in payload["meshes"]]
    assert names == ["Lesion", "Grad-CAM ≥ 0.3", "Grad-CAM ≥ 0.6"]
    vertices = np.frombuffer(gzip.decompress(base64.b64decode(payload["meshes"][0]["vertices"])), "<f4").reshape(-1, 3)
    lesion_ras = image.index_to_ras(np.argwhere(labels.array)[:, ::-1].astype(float))
    assert (vertices.min(axis=0) > lesion_ras.min(axis=0) - 3.0).all()    # the surface wraps the lesion's voxels
    assert (vertices.max(axis=0) < lesion_ras.max(axis=0) + 3.0).all()


def test_large_images_are_shown_coarser_by_whole_blocks_and_the_page_says_so():
    from RadAISegmentLib.downsample import block_mean, block_mode, display_factors
    k, j, i = np.mgrid[0:20, 0:64, 0:64]
    ramp = (i + 100 * j + 10000 * k).astype(np.float32)                   # linear: a block's mean is its centre's value
    image = Image(ramp, (0.5, 0.5, 2.0), (10.0, -20.0, 30.0))
    assert display_factors(image, 20 * 32 * 32) == (2, 2, 1)             # the finest axes are coarsened first
    coarse = block_mean(image, (2, 2, 1))
    assert coarse.array.shape == (20, 32, 32) and coarse.spacing_mm == (1.0, 1.0, 2.0)
    assert np.array_equal(coarse.array, ramp[:, ::2, ::2] + 0.5 + 50.0)   # mean of i, i+1 and j, j+1
    assert np.allclose(coarse.index_to_lps([3, 5, 7]), image.index_to_lps([6.5, 10.5, 7]))   # the block's centre
    labels = image.with_array(np.where(i < 33, 1, 2).astype(np.uint8))
    assert np.array_equal(block_mode(labels, (4, 1, 1)).array[0, 0], [1] * 8 + [2] * 8)   # 33 splits block 8: 1,2,2,2
    payload = case_payload(ViewerCase("ramp", image, labels), max_voxels=20 * 32 * 32)
    assert any("Downsampled for display" in note and "(64, 64, 20) → (32, 32, 20)" in note for note in payload["notes"])


def test_viewer_refuses_layers_off_the_image_grid(lung_case, sample_data):
    image, labels, saliency = lung_case
    brain_labels = io.read_labelmap(sample_data / "brain-tumour_labels.nrrd")
    with pytest.raises(GeometryMismatchError, match="segmentation does not lie on the image's voxel grid"):
        case_payload(ViewerCase("x", image, brain_labels))
    broken = saliency.with_array(np.where(labels.array > 0, np.nan, saliency.array).astype(np.float32))
    with pytest.raises(InputError, match="NaN"):
        case_payload(ViewerCase("x", image, labels, broken))


def test_radai_view_refuses_bad_input_in_one_line_and_writes_nothing(lung_case, sample_data, tmp_path, capsys):
    from RadAIVolumetricsLib.cli import main
    image_path = sample_data / "lung-tumour_image.nrrd"
    too_hot = tmp_path / "too_hot.nii.gz"
    io.write_image(lung_case[2].with_array(lung_case[2].array * 3), too_hot)
    out = tmp_path / "view.html"
    cases = [([str(tmp_path / "missing.nrrd"), "--out", str(out)], "No such file"),
             ([str(image_path), "--seg", str(sample_data / "brain-tumour_labels.nrrd"), "--out", str(out)],
              "segmentation does not lie on the image's voxel grid"),
             ([str(image_path), "--saliency", str(too_hot), "--out", str(out)], "needs 0..1"),
             ([str(image_path), "--window", "400,-1000", "--out", str(out)], "HIGH must be greater"),
             ([str(image_path), "--out", str(tmp_path / "view.png")], "name it *.html")]
    for arguments, message in cases:
        assert main(["view", *arguments]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("radai view: error:") and message in error and "\n" not in error
    assert not out.exists() and list(tmp_path.iterdir()) == [too_hot]


def test_vendored_niivue_is_checked_against_its_provenance(tmp_path, monkeypatch):
    provenance = (assets.HERE / "vendor" / "PROVENANCE.txt").read_text()
    assert assets.NIIVUE_SHA256 in provenance and f"@niivue/niivue {assets.NIIVUE_VERSION}" in provenance
    assert hashlib.sha256(assets.NIIVUE_FILE.read_bytes()).hexdigest() == assets.NIIVUE_SHA256
    assert "BSD 2-Clause License" in assets.NIIVUE_LICENCE.read_text()
    tampered = tmp_path / "niivue.umd.js"
    tampered.write_bytes(assets.NIIVUE_FILE.read_bytes().replace(b"use strict", b"use strikt", 1))
    monkeypatch.setattr(assets, "NIIVUE_FILE", tampered)
    assets.niivue_script.cache_clear()
    try:
        with pytest.raises(InputError, match="not the recorded"):
            assets.niivue_script()
    finally:
        assets.niivue_script.cache_clear()


def test_page_policy_forbids_requests_and_allows_exactly_its_own_scripts(lung_case):
    image, labels, saliency = lung_case
    page = viewer_page_html([ViewerCase("lung", image, labels, saliency)], "t")
    policy = re.search(r'http-equiv=\'Content-Security-Policy\' content="([^"]*)"', page).group(1)
    assert policy.startswith("default-src 'none';") and "connect-src" not in policy
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 2
    allowed = set(re.search(r"script-src ([^;]*);", policy).group(1).split())
    assert allowed == {assets.script_hash(text) for text in scripts}
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//)""", page, flags=re.I)


# -- in Chromium -------------------------------------------------------------------------------------------------
needs_chromium = pytest.mark.skipif(chromium_binary() is None, reason="chromium missing: .ci/setup installs it")


def canvas_pixels(page: ChromiumPage, viewer: str) -> np.ndarray:
    from matplotlib import image as mpl_image
    png = page.screenshot_element(f"#{viewer} .radai-canvas-box")
    return mpl_image.imread(bytes_io.BytesIO(png), format="png")[..., :3]


def blue_present(pixels: np.ndarray) -> int:
    """Pixels of the blue segment (also when blended over grey slices); grey, heat and the cyan cross-hair are not."""
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((blue > red + 0.3) & (blue > green + 0.3)).sum())


def heat_present(pixels: np.ndarray) -> int:
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((red > 0.45) & (red > green + 0.2) & (red > blue + 0.2)).sum())


@needs_chromium
def test_radai_view_page_draws_offline_and_reads_out_ras_and_values(lung_case, tmp_path):
    """The page `radai view` writes, opened from file:// with no network: drawn, coloured, geometry end to end."""
    import subprocess
    import sys
    image, labels, saliency = lung_case
    io.write_image(labels, tmp_path / "lesion.seg.nrrd")
    io.write_image(saliency, tmp_path / "saliency.nii.gz")
    io.write_image(image, tmp_path / "ct.nrrd")
    run = subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", "view", str(tmp_path / "ct.nrrd"),
                          "--seg", str(tmp_path / "lesion.seg.nrrd"), "--saliency", str(tmp_path / "saliency.nii.gz"),
                          "--out", str(tmp_path / "view.html")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    with ChromiumPage(width=1200, height=1000) as page:
        page.open(tmp_path / "view.html")
        page.wait_for("['ready', 'error'].includes(document.querySelector('.radai-viewer').dataset.status)",
                      timeout=400)
        assert page.evaluate("document.querySelector('.radai-viewer').dataset.status") == "ready", page.console()
        pixels = canvas_pixels(page, "radai-viewer-1")
        assert pixels.std() > 0.05                                              # not blank
        assert blue_present(pixels) > 30                                         # the segmentation's colour
        assert heat_present(pixels) > 30                                        # the heat map's colours
        legend = page.evaluate("document.querySelector('.radai-legend').textContent")
        assert "Lesion" in legend and "Saliency" in legend
        # the read-out at a voxel's RAS centre gives that RAS position and that voxel's value and segment
        k, j, i = (int(v) for v in np.round(np.argwhere(labels.array).mean(axis=0)))
        ras = image.index_to_ras(np.array([i, j, k], float))
        text = page.evaluate(
            "(() => { const nv = document.querySelector('#radai-viewer-1').radaiNiivue;"
            f" nv.scene.crosshairPos = nv.mm2frac({json.dumps(ras.tolist())}); nv.drawScene();"
            " nv.createOnLocationChange(); return document.querySelector('.radai-readout').textContent; })()")
        expected = f"R {ras[0]:.1f}  A {ras[1]:.1f}  S {ras[2]:.1f} mm (RAS)"
        assert text.startswith(expected), text
        assert f"CT: {int(image.array[k, j, i])} HU" in text and "Segment: Lesion (label 1)" in text, text
        assert page.remote_requests() == [] and page.blocked_by_policy() == []
        assert not [line for line in page.console() if "error" in line.lower()], page.console()


@needs_chromium
def test_the_offline_check_catches_a_page_that_reaches_out(tmp_path, lung_case):
    """Negative controls: a page with a remote image is caught by the request log; with RadAI's policy the same
    image is blocked before any request, and the block is logged."""
    (tmp_path / "leaky.html").write_text("<!DOCTYPE html><html><body><img src='http://radai-test.invalid/x.png'>"
                                         "<script>fetch('https://radai-test.invalid/data')</script></body></html>")
    from RadAIVolumetricsLib.viewer.assets import content_security_policy
    (tmp_path / "guarded.html").write_text(
        "<!DOCTYPE html><html><head>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{content_security_policy()}\">"
        "</head><body><img src='http://radai-test.invalid/x.png'></body></html>")
    with ChromiumPage(width=400, height=300) as page:
        page.open(tmp_path / "leaky.html")
        page.wait_for("document.readyState === 'complete'", timeout=120)
        page.wait_for("true", timeout=10)
        assert "http://radai-test.invalid/x.png" in page.remote_requests()
    with ChromiumPage(width=400, height=300) as page:
        page.open(tmp_path / "guarded.html")
        page.wait_for("document.readyState === 'complete'", timeout=120)
        assert page.blocked_by_policy(), page.console()
