"""The interactive lesion model's plumbing: legacy crop geometry, the training command (a smoke run that
writes a loadable model with its card) and resuming a run where it stopped."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from RadAISegmentLib.errors import InputError
from RadAISegmentLib.image import Image
from RadAISegmentLib.lesion.preprocess import crop_around_seed, paste_back
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
    for footprint in (False, True):
        pasted = paste_back(probability, crop, image, footprint=footprint)
        assert 2 * (pasted & inside).sum() / (pasted.sum() + inside.sum()) > 0.95


def test_seed_outside_the_image_is_refused():
    image, _, _ = oblique_sphere_image()
    with pytest.raises(InputError, match="outside the image"):
        crop_around_seed(image, (1000.0, 1000.0, 1000.0))


def train(out, *extra):
    return subprocess.run([sys.executable, "-m", "RadAIVolumetricsLib.cli", "train", "lesion-roi", "--out", str(out),
                           "--steps", "40", "--validate-every", "2", "--validation-cases", "4", "--threads", "1",
                           "--no-evaluate", *extra],
                          capture_output=True, text=True, timeout=900)


def test_training_writes_a_loadable_model_and_resumes_where_it_stopped(tmp_path):
    from RadAISegmentLib.models.loaders import load_model_folder
    first = train(tmp_path / "m", "--max-steps", "2")
    assert first.returncode == 0, first.stderr
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["task"] == "promptable-lesion" and card["input"]["channels"] == 5 and card["version"].startswith("2.")
    assert card["metrics"]["training_steps"] == 2 and "were\nnever used" not in card["provenance"]
    assert "never used for training" in card["provenance"]
    model = load_model_folder(tmp_path / "m")                  # SHA-256 verified, weights_only
    assert sum(p.numel() for p in model.network.parameters()) * 4 < 15e6    # weights small enough to commit
    state = torch.load(tmp_path / "m" / "training" / "state.pt", weights_only=True)
    assert state["step"] == 2 and state["sittings"] == 1
    second = train(tmp_path / "m", "--max-steps", "2", "--resume")
    assert second.returncode == 0, second.stderr
    assert "resumed at step 2" in second.stdout and "cases changed" not in second.stdout   # same cases, same scores
    state = torch.load(tmp_path / "m" / "training" / "state.pt", weights_only=True)
    assert state["step"] == 4 and state["sittings"] == 2 and len(state["history"]) == 2
    fresh = train(tmp_path / "other", "--max-steps", "1", "--resume")
    assert fresh.returncode != 0 and "No training state" in (fresh.stderr + fresh.stdout)


def test_the_validation_fingerprint_sees_a_change_in_the_rendered_image_not_only_in_the_lesions():
    """Scores are comparable across sittings only on the same cases: a generator change that renders the same
    lesions differently (thicker slices, say) must change the fingerprint; regenerating the cases must not."""
    from RadAISegmentLib.lesion.train import validation_cases, validation_fingerprint
    cases = validation_cases(seed=0, grid=32, extra_backgrounds=(), count=2)
    again = validation_cases(seed=0, grid=32, extra_backgrounds=(), count=2)
    assert validation_fingerprint(cases) == validation_fingerprint(again)
    again[1].x[0] = again[1].x[0] + 0.01                     # same targets, the image rendered differently
    assert np.array_equal(again[1].target, cases[1].target)
    assert validation_fingerprint(cases) != validation_fingerprint(again)


def test_a_new_run_starts_from_a_model_folder_s_weights_and_step_count(tmp_path):
    """`--from-model DIR`: a later sitting needs only the repository's model folder, not the lost training state."""
    first = train(tmp_path / "m", "--max-steps", "2")
    assert first.returncode == 0, first.stderr
    (tmp_path / "m" / "previous").mkdir()
    (tmp_path / "m" / "previous" / "card.json").write_text("{}")
    started = train(tmp_path / "n", "--max-steps", "0", "--from-model", str(tmp_path / "m"))
    assert started.returncode == 0, started.stderr
    assert "started from" in started.stdout and "step 2" in started.stdout and "afresh" in started.stdout
    weights = torch.load(tmp_path / "n" / "model.pt", weights_only=True)
    source = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert weights.keys() == source.keys() and all(torch.equal(weights[k], source[k]) for k in weights)
    state = torch.load(tmp_path / "n" / "training" / "state.pt", weights_only=True)
    assert state["step"] == 2 and state["sittings"] == 2                       # the run's counters carry on
    assert (tmp_path / "n" / "previous" / "card.json").is_file()              # compared with the same version
    again = train(tmp_path / "n", "--max-steps", "1", "--from-model", str(tmp_path / "m"))
    assert again.returncode != 0 and "--resume" in again.stderr + again.stdout   # never overwrites a run
    both = train(tmp_path / "k", "--max-steps", "1", "--from-model", str(tmp_path / "m"), "--resume")
    assert both.returncode != 0 and "give one of them" in both.stderr + both.stdout
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "card.json").write_text(json.dumps({"task": "segmentation"}))
    wrong = train(tmp_path / "k", "--max-steps", "1", "--from-model", str(tmp_path / "other"))
    assert wrong.returncode != 0 and "not a lesion-roi 2.x model" in wrong.stderr + wrong.stdout
    assert not (tmp_path / "k").exists()                                      # nothing written on bad input


def test_an_evaluation_case_without_a_lesion_or_without_its_reference_is_refused(tmp_path):
    from RadAISegmentLib.errors import LabelError
    from RadAISegmentLib.io import write_image
    from RadAISegmentLib.lesion.evaluate import case_names, load_case
    image, inside, _ = oblique_sphere_image()
    write_image(image, tmp_path / "sphere_image.nrrd")
    write_image(image.with_array(np.where(inside, 2, 0).astype(np.uint8)), tmp_path / "sphere_label.nrrd")
    assert case_names(tmp_path) == ("sphere",)
    with pytest.raises(LabelError, match="no voxel of label 1"):      # label 2 only: no lesion to prompt
        load_case("sphere", tmp_path)
    write_image(image.with_array(inside.astype(np.uint8)), tmp_path / "sphere_label.nrrd")
    assert load_case("sphere", tmp_path)[1].array.sum() == inside.sum()
    write_image(image, tmp_path / "other_image.nrrd")
    with pytest.raises(InputError, match="no reference for other"):
        case_names(tmp_path)


def test_the_best_cutoff_finds_the_probability_level_of_the_reference_boundary():
    """p falls linearly with the distance r (voxels) from the seed, p = 1 - r / 26; the reference is the ball
    r <= 6.5, so p >= 0.75 draws exactly the reference (no voxel centre lies at r = 6.5). A bright blob away
    from the seed (p = 0.95) is not the lesion's part and is dropped, as in the product's outline."""
    from RadAISegmentLib.lesion.evaluate import best_cutoff
    reference = np.zeros((40, 50, 50), bool)
    region = (slice(2, 38), slice(5, 45), slice(5, 45))
    k, j, i = np.indices((36, 40, 40)).astype(float)
    seed_kji = np.array([18.0, 20.0, 20.0])
    distance = np.sqrt((k - 18) ** 2 + (j - 20) ** 2 + (i - 20) ** 2)
    probability = np.clip(1.0 - distance / 26.0, 0.0, 1.0)
    probability[30:34, 2:6, 2:6] = 0.95
    reference[region] = distance <= 6.5
    best = best_cutoff(probability.astype(np.float32), region, seed_kji, reference, (1.0, 1.0, 1.0))
    assert best == {"cutoff": 0.75, "dice": 1.0, "volume_error_percent": 0.0}
    shifted = np.roll(reference, 3, axis=2)                   # the same ball 3 voxels off: no cut-off reaches 1
    assert best_cutoff(probability.astype(np.float32), region, seed_kji, shifted, (1.0, 1.0, 1.0))["dice"] < 0.9
