"""Lesion prediction geometry and API: exact crop -> paste round trip on an oblique grid, batched seeds,
bad seeds. (The shipped model on real tumours: test_lesion.py / test_lesion_real.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from RadAISegmentLib.errors import InputError
from RadAISegmentLib.geometry import ras_to_lps
from RadAISegmentLib.image import Image
from RadAISegmentLib.lesion.predict import segment_lesion, segment_lesions
from RadAISegmentLib.lesion.preprocess import crop_around_seed, normalise_crop, paste_back
from RadAISegmentLib.phantoms import rotation_matrix


def oblique_image(values=None):
    array = np.zeros((20, 36, 32), np.float32) if values is None else values
    return Image(array, (0.8, 0.9, 2.0), (5.0, -7.0, 3.0), rotation_matrix((10, 0, 30)))


def crop_voxel_lps(crop) -> np.ndarray:
    """LPS positions (mm) of the crop's voxels, array [k, j, i, 3]."""
    reference = crop.reference
    size = np.array(reference.GetSize())
    k, j, i = np.indices(size[::-1])
    ijk = np.stack([i, j, k], axis=-1) * np.array(reference.GetSpacing())
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    return np.array(reference.GetOrigin()) + ijk @ direction.T


def input_voxel_lps(image: Image) -> np.ndarray:
    k, j, i = np.indices(image.array.shape)
    return image.index_to_lps(np.stack([i.ravel(), j.ravel(), k.ravel()], 1)).reshape(image.array.shape + (3,))


def test_paste_back_reproduces_a_linear_probability_exactly_on_an_oblique_anisotropic_grid():
    image = oblique_image()
    centre_ras = image.index_to_ras(np.array([15.3, 17.8, 9.6]))
    crop = crop_around_seed(image, centre_ras, box_mm=24.0, grid=16)
    normal = np.array([0.48, -0.6, 0.64])
    offset = 1.7                                                   # plane 1.7 mm from the seed along `normal`
    seed_lps = ras_to_lps(np.asarray(centre_ras))
    signed = lambda lps: (lps - seed_lps) @ normal - offset       # noqa: E731  signed distance to the plane (mm)
    probability = 0.5 + signed(crop_voxel_lps(crop)) / 100.0       # linear in space: linear interpolation is exact
    pasted = paste_back(probability.astype(np.float32), crop, image, footprint=False)   # point sampling

    positions = input_voxel_lps(image)
    direction = np.array(crop.reference.GetDirection()).reshape(3, 3)
    crop_index = ((positions - np.array(crop.reference.GetOrigin())) @ direction) / crop.box_mm * 16
    strictly_inside = np.all((crop_index > 1e-3) & (crop_index < 15 - 1e-3), axis=-1)
    outside = np.any((crop_index < -0.5 - 1e-3) | (crop_index > 15.5 + 1e-3), axis=-1)
    distance = signed(positions)
    decided = strictly_inside & (np.abs(distance) > 1e-3)
    assert decided.sum() > 500 and (distance[decided] > 0).any() and (distance[decided] < 0).any()
    assert np.array_equal(pasted[decided], distance[decided] > 0)   # exact on every decided voxel
    assert not pasted[outside].any()                                # nothing outside the box


class ThresholdNet(torch.nn.Module):
    """A stand-in network: logit = 20 * (image channel - 0.5); the seed channel is ignored."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x[:, :1] - 0.5)


def two_sphere_ct():
    image = oblique_image(np.full((20, 36, 32), -900.0, np.float32))
    positions = input_voxel_lps(image)
    centres_ijk = [np.array([9.0, 12.0, 10.0]), np.array([22.0, 24.0, 10.0])]
    masks = []
    array = image.array.copy()
    for centre in centres_ijk:
        inside = np.linalg.norm(positions - image.index_to_lps(centre), axis=-1) <= 5.0
        array[inside] = 40.0
        masks.append(inside)
    return image.with_array(array), [image.index_to_ras(c) for c in centres_ijk], masks


def test_segment_lesions_labels_each_seed_in_one_batch_like_single_calls():
    image, seeds, masks = two_sphere_ct()
    network = ThresholdNet()
    labelmap = segment_lesions(image, seeds, 16.0, network)
    assert labelmap.array.dtype == np.uint8 and labelmap.same_grid(image)
    assert [s.name for s in labelmap.segments] == ["Lesion 1", "Lesion 2"]
    assert labelmap.segments[0].type.value == "108369006"              # SNOMED CT Neoplasm
    for number, (seed, truth) in enumerate(zip(seeds, masks), start=1):
        mine = labelmap.array == number
        dice = 2 * (mine & truth).sum() / (mine.sum() + truth.sum())
        assert dice > 0.85
        single = segment_lesion(image, seed, 16.0, network).array > 0
        assert np.array_equal(single, mine)                             # batching changes nothing


def test_only_the_component_at_the_seed_is_kept():
    image, seeds, masks = two_sphere_ct()
    labelmap = segment_lesion(image, seeds[0], 60.0, ThresholdNet())    # the box holds both spheres
    assert (labelmap.array[masks[0]] == 1).mean() > 0.7   # 1.25 mm crop voxels vs a 5 mm sphere on 2 mm slices
    assert not labelmap.array[masks[1]].any()


def test_seeds_outside_the_image_are_refused_before_any_work():
    image, seeds, _ = two_sphere_ct()
    with pytest.raises(InputError, match="outside the image"):
        segment_lesions(image, [seeds[0], (500.0, 500.0, 500.0)], None, ThresholdNet())
    with pytest.raises(InputError, match="outside the image"):
        segment_lesion(image, (-500.0, 0.0, 0.0), None, ThresholdNet())
    with pytest.raises(InputError, match="seed"):
        segment_lesions(image, [], None, ThresholdNet())


def test_ct_normalisations_keep_lung_and_soft_tissue_apart():
    hu = np.array([-1000.0, -850.0, -200.0, 40.0, 100.0, 300.0, 1200.0])
    window = normalise_crop(hu, True, "window")
    piecewise = normalise_crop(hu, True, "piecewise")
    assert np.allclose(window, np.clip((hu + 1000) / 1500, 0, 1))
    assert np.allclose(piecewise, [0.0, 0.05625, 0.3, 0.636, 0.72, 1.0, 1.0])
    assert (piecewise[4] - piecewise[3]) / (window[4] - window[3]) == pytest.approx(0.7 / 500 * 1500)  # 2.1x soft-tissue contrast


class _RampNetwork(torch.nn.Module):
    """Logit = image × a fixed ramp that differs along every axis: not flip-equivariant, so each flip's
    pass gives a different answer and the average is known in closed form."""

    def __init__(self, grid: int):
        super().__init__()
        k, j, i = np.indices((grid,) * 3, dtype=np.float32)
        self.register_buffer("ramp", torch.from_numpy((k - 2 * j + 3 * i) / grid))

    def forward(self, x):
        return x[:, :1] * self.ramp


@pytest.mark.parametrize("mirror_axes", [(), (2,), (0, 1, 2)])
def test_mirroring_averages_the_flipped_passes_along_the_cards_axes(mirror_axes):
    from itertools import combinations

    from RadAISegmentLib.lesion.predict import mirror_flips, predict_probabilities
    grid = 6
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(2, 5, grid, grid, grid)).astype(np.float32)
    ramp = _RampNetwork(grid).ramp.numpy()
    flips = [c for r in range(len(mirror_axes) + 1) for c in combinations(mirror_axes, r)]
    # flip the input, run, flip back == the input times the ramp flipped along the same axes
    expected = np.mean([1 / (1 + np.exp(-batch[:, 0] * (np.flip(ramp, f) if f else ramp))) for f in flips], axis=0)
    got = predict_probabilities(_RampNetwork(grid), batch, "cpu", mirror_axes)
    assert got.shape == (2, grid, grid, grid)
    assert np.allclose(got, expected, atol=1e-6)
    assert mirror_flips(mirror_axes) == flips and len(flips) == 2 ** len(mirror_axes)
    if mirror_axes:
        plain = predict_probabilities(_RampNetwork(grid), batch, "cpu", ())
        assert not np.allclose(got, plain, atol=1e-3)          # the mirroring did something


def test_the_card_says_which_axes_to_mirror_and_bad_axes_are_refused():
    from RadAISegmentLib.lesion.card import card_dict
    from RadAISegmentLib.lesion.preprocess import PromptSettings
    card = card_dict("0" * 64, {}, {})
    assert PromptSettings.from_card(card["input"]).mirror_axes == (0, 1, 2)        # lesion-roi 2.3 and later
    assert PromptSettings.from_card({"channels": 5, "prompt": {}}).mirror_axes == (2,)   # earlier cards
    with pytest.raises(ValueError, match="mirror_axes"):
        PromptSettings.from_card({"channels": 5, "prompt": {"mirror_axes": [3]}})
