"""``radai explain``: model folder (card + checksummed state dict) -> saliency volume on the input grid,
JSON metadata and a PNG; and the promptable-lesion path (seed channel, paste-back from the box)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from RadAISegmentLib import io, saliency
from RadAISegmentLib.errors import ChecksumError
from RadAISegmentLib.image import Image
from RadAIVolumetricsLib.cli import main
from saliency_fixtures import SPHERE_CARD, sphere_volume, train_tiny_unet


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    network = train_tiny_unet(steps=60, seed=1, skip_connections=True)
    folder = tmp_path_factory.mktemp("tiny-model")
    torch.save(network.state_dict(), folder / "model.pt")
    card = {**SPHERE_CARD, "network": {"format": "state_dict", "name": "monai.networks.nets.UNet",
                                       "parameters": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                                      "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}},
            "weights": {"file": "model.pt", "sha256": hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def sphere_file(tmp_path_factory):
    rng = np.random.default_rng(11)
    volume, mask = sphere_volume(rng, (40, 56, 60), (20, 30, 28), 5.0)
    image = Image(volume, spacing_mm=(1.0, 1.0, 1.0), origin_lps=(10.0, -5.0, 3.0))
    path = io.write_image(image, tmp_path_factory.mktemp("case") / "sphere.nrrd")
    return path, image, mask


def test_cli_explain_writes_map_on_input_grid_json_and_png(model_folder, sphere_file, tmp_path, capsys):
    path, image, mask = sphere_file
    seed = ",".join(f"{v:.3f}" for v in image.index_to_ras(np.array([28.0, 30.0, 20.0])))
    out, png = tmp_path / "saliency.nrrd", tmp_path / "saliency.png"
    code = main(["explain", str(path), "--model", str(model_folder), "--label", "Sphere", f"--seed={seed}",
                 "--out", str(out), "--png", str(png), "--json"])
    assert code == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["method"] == "gradcam" and facts["label_name"] == "Sphere" and facts["layer"]
    written = io.read_image(out)
    assert written.same_grid(io.read_image(path)) and written.array.dtype == np.float32
    assert 0.0 <= written.array.min() and written.array.max() == pytest.approx(1.0)
    assert saliency.saliency_mass_near(written, mask, 4.0) > 0.7
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_seed_and_tampered_weights(model_folder, sphere_file, tmp_path, capsys):
    path, _, _ = sphere_file
    assert main(["explain", str(path), "--model", str(model_folder), "--seed", "1,2", "--out", str(tmp_path / "x.nrrd")]) == 2
    assert "R,A,S" in capsys.readouterr().err
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "card.json").write_text((model_folder / "card.json").read_text())
    (tampered / "model.pt").write_bytes((model_folder / "model.pt").read_bytes() + b"x")
    with pytest.raises(ChecksumError):
        saliency.load_for_saliency(str(tampered))
    assert not (tmp_path / "x.nrrd").exists()


def test_promptable_model_gets_a_seed_channel_and_zero_outside_its_box(sphere_file):
    _, image, mask = sphere_file
    network = train_tiny_unet(in_channels=2, steps=60)
    card = {**SPHERE_CARD, "id": "tiny-prompt", "task": "promptable-lesion",
            "input": {"patch_size": [32, 32, 32], "normalisation": {"kind": "none"}, "prompt": {"sigma_mm": 3.0}}}
    seed_ras = image.index_to_ras(np.array([28.0, 30.0, 20.0]))
    result = saliency.explain(image, network, card, seed_ras=seed_ras, box_mm=40.0, method="smoothgrad", n_samples=2)
    assert result.map.same_grid(image)
    assert result.metadata["working_spacing_mm"] == pytest.approx([40 / 32] * 3)  # box resampled to the patch grid
    k, j, i = np.meshgrid(*[np.arange(n) for n in mask.shape], indexing="ij")
    outside = (np.abs(i - 28) > 21) | (np.abs(j - 30) > 21) | (np.abs(k - 20) > 21)
    assert outside.any() and not result.map.array[outside].any()
    assert not result.metadata["all_zero"] and result.metadata["predicted_voxels"] > 0
    uniform = saliency.saliency_mass_near(image.with_array(np.ones(mask.shape, np.float32)), mask, 4.0)
    assert saliency.saliency_mass_near(result.map, mask, 4.0) > 3 * uniform


def test_promptable_model_without_box_explains_the_region_segmentation_uses(sphere_file):
    """No --box-mm: the crop is the card's default_box_mm (what `radai segment` uses), not patch x spacing."""
    _, image, _ = sphere_file
    network = train_tiny_unet(in_channels=2, steps=5)
    card = {**SPHERE_CARD, "id": "tiny-prompt", "task": "promptable-lesion",
            "input": {"patch_size": [32, 32, 32], "normalisation": {"kind": "none"},
                      "prompt": {"sigma_mm": 3.0, "default_box_mm": 24.0}}}
    seed_ras = image.index_to_ras(np.array([28.0, 30.0, 20.0]))
    result = saliency.explain(image, network, card, seed_ras=seed_ras, method="smoothgrad", n_samples=1)
    assert result.metadata["crop_size_mm"] == pytest.approx([24.0] * 3)
    assert result.metadata["working_spacing_mm"] == pytest.approx([24.0 / 32] * 3)
