"""The promptable lesion model: crop/paste geometry, bad prompts, synthetic data, training smoke run,
and the shipped model against the classical baseline on real tumours it never trained on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from RadAISegmentLib.errors import InputError
from RadAISegmentLib.image import Image
from RadAISegmentLib.lesion.baseline import segment_lesion_baseline
from RadAISegmentLib.lesion.preprocess import crop_around_seed, paste_back
from RadAISegmentLib.lesion.synthetic import lesion_fraction
from RadAISegmentLib.phantoms import rotation_matrix


def oblique_sphere_image(radius_mm=10.0):
    grid = Image(np.zeros((40, 60, 60), np.float32), (0.8, 0.9, 2.0), (5.0, -7.0, 3.0), rotation_matrix((10, 0, 30)))
    centre_ijk = np.array([30.0, 30.0, 20.0])
    k, j, i = np.indices(grid.array.shape)
    points = grid.index_to_lps(np.stack([i.ravel(), j.ravel(), k.ravel()], 1)) - grid.index_to_lps(centre_ijk)
    inside = (np.linalg.norm(points, axis=1) <= radius_mm).reshape(grid.array.shape)
    return grid.with_array(np.where(inside, 40.0, -900.0).astype(np.float32)), inside, grid.index_to_ras(centre_ijk)


def test_crop_and_paste_back_round_trip_on_an_oblique_grid():
    image, inside, centre_ras = oblique_sphere_image()
    crop = crop_around_seed(image, centre_ras, box_mm=40.0)
    assert crop.tensor.shape == (2, 48, 48, 48)
    assert crop.tensor[1].max() == pytest.approx(crop.tensor[1][23:25, 23:25, 23:25].max())   # seed at the centre
    probability = (crop.tensor[0] > 0.5).astype(np.float32)     # the sphere, as the ideal network would see it
    pasted = paste_back(probability, crop, image)
    dice = 2 * (pasted & inside).sum() / (pasted.sum() + inside.sum())
    assert dice > 0.9


def test_seed_outside_the_image_is_refused():
    image, _, _ = oblique_sphere_image()
    with pytest.raises(InputError, match="outside the image"):
        crop_around_seed(image, (1000.0, 1000.0, 1000.0))


def test_synthetic_lesion_volume_matches_the_ellipsoid():
    fraction, _ = lesion_fraction(48, np.full(3, 23.5), np.array([8.0, 6.0, 5.0]), np.random.default_rng(0),
                                  lobulation=0.0, supersample=2)
    assert fraction.sum() == pytest.approx(4 / 3 * np.pi * 8 * 6 * 5, rel=0.03)


def test_training_command_smoke(tmp_path, shared_data):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", "train", "lesion-roi", "--out", tmp_path / "m",
                          "--shared-data", shared_data, "--max-steps", "2", "--threads", "1", "--no-evaluate"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["task"] == "promptable-lesion" and len(card["weights"]["sha256"]) == 64
    assert "were never used for training" in card["provenance"]


@pytest.fixture(scope="module")
def shipped_model():
    from RadAISegmentLib.models.cache import find_model
    from RadAISegmentLib.models.loaders import load_from_card
    return load_from_card(find_model("lesion-roi"))


def test_shipped_model_beats_the_baseline_on_real_tumours(shipped_model, shared_data):
    from RadAISegmentLib.lesion.evaluate import evaluate_real_cases
    from RadAISegmentLib.lesion.predict import segment_lesion
    model = evaluate_real_cases(shared_data, lambda im, s, b: segment_lesion(im, s, b, shipped_model))
    baseline = evaluate_real_cases(shared_data, segment_lesion_baseline)
    card_metrics = shipped_model.card.metrics["real_tumours"]["model"]
    for case in ("lung1", "brain1", "breast1"):
        assert model[case]["dice"] == pytest.approx(card_metrics[case]["dice"], abs=0.02)   # the card tells the truth
    for case, minimum in (("lung1", 0.6), ("brain1", 0.4), ("breast1", 0.65)):   # measured 0.71, 0.52, 0.76
        assert model[case]["dice"] >= minimum, (case, model[case])
        assert model[case]["dice"] > baseline[case]["dice"] + 0.1, (case, model[case], baseline[case])


@pytest.mark.parametrize("case", ["lung1", "breast1"])
def test_saliency_of_the_shipped_model_concentrates_on_the_real_tumour(shared_data, case):
    """With the card's saliency method (Grad-CAM++), most of the map lies within 10 mm of the real tumour.
    brain1 does not pass this (about 0.1 for both Grad-CAM variants): docs/lesion-model.md says so."""
    from RadAISegmentLib.io import read_image, read_labelmap
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.saliency import explain_image, saliency_mass_near
    image = read_image(shared_data / "pyradiomics-cases" / f"{case}_image.nrrd")
    reference = read_labelmap(shared_data / "pyradiomics-cases" / f"{case}_label.nrrd", reference=image)
    seed_ras, box_mm, _ = case_prompt(reference)
    result = explain_image(image, "lesion-roi", seed_ras=seed_ras, box_mm=box_mm)
    assert result.metadata["method"] == "gradcampp"                   # the card's choice
    assert result.map.same_grid(image) and 0.0 <= result.map.array.min() and result.map.array.max() <= 1.0
    near = saliency_mass_near(result.map, reference.array > 0, margin_mm=10.0)
    assert near > 0.5    # most of the saliency mass lies within 10 mm of the real tumour    # most of the saliency mass lies within 10 mm of the real tumour
