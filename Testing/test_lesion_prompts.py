"""Lesion prompts without the network: geometry of boxes and clicks, the simulated reader, the footprint
paste-back, the volume range, and bad prompts (each a typed error before any work)."""
from __future__ import annotations

import numpy as np
import pytest

from RadAISegmentLib.errors import GeometryMismatchError, InputError
from RadAISegmentLib.image import Image
from RadAISegmentLib.lesion.interaction import next_click
from RadAISegmentLib.lesion.preprocess import (Crop, PromptSettings, box_average, box_weights, build_crop,
                                               paste_back_probability)
from RadAISegmentLib.lesion.prompts import (CropGeometry, LesionPrompt, assemble_prompts, crop_geometry,
                                            point_channel, prompts_from_outline)
from RadAISegmentLib.lesion.uncertainty import (calibrate_scales, change_within_uncertainty, exposed_faces,
                                                labelmap_volume_range, probability_volume_range)
from RadAISegmentLib.phantoms import rotation_matrix


def oblique_image(shape=(20, 40, 36), spacing=(0.8, 0.9, 2.0)):
    return Image(np.zeros(shape, np.float32), spacing, (5.0, -7.0, 3.0), rotation_matrix((10, 0, 30)))


def test_point_channel_peaks_at_the_point_with_the_stated_sigma():
    channel = point_channel([(10.0, 12.0, 14.0)], 32, sigma_voxels=2.0)
    assert channel[10, 12, 14] == pytest.approx(1.0)
    assert channel[10, 12, 16] == pytest.approx(np.exp(-4 / 8), rel=1e-5)       # 2 voxels away: exp(-d²/2σ²)
    assert channel[0, 0, 0] == 0.0


def test_a_drawn_box_becomes_a_cube_crop_whose_box_channel_marks_exactly_the_box():
    image = oblique_image()
    low_ijk, high_ijk = np.array([8.0, 10.0, 5.0]), np.array([20.0, 24.0, 11.0])
    corners = (tuple(image.index_to_ras(low_ijk)), tuple(image.index_to_ras(high_ijk)))
    prompt = LesionPrompt(box_corners_ras=corners)
    geometry = crop_geometry(image, prompt, grid=32)
    sides_mm = (high_ijk - low_ijk) * np.asarray(image.spacing_mm)               # 9.6, 12.6, 12.0
    assert geometry.edge_mm == pytest.approx(sides_mm.max() * 1.1)
    crop = build_crop(image, prompt, PromptSettings(grid=32))
    assert crop.tensor.shape == (5, 32, 32, 32)
    box = crop.tensor[3] > 0.5
    # every crop voxel centre inside the box (mapped through the crop's geometry) is marked, no other
    k, j, i = np.indices(box.shape)
    lps = geometry.origin_lps + (np.stack([i, j, k], -1) * geometry.spacing_mm) @ np.asarray(geometry.direction_lps).T
    index = image.lps_to_index(lps.reshape(-1, 3)).reshape(box.shape + (3,))
    inside = np.all((index >= low_ijk - 1e-4) & (index <= high_ijk + 1e-4), axis=-1)
    margin = np.all((index >= low_ijk + 0.05) & (index <= high_ijk - 0.05), axis=-1) | \
        ~np.all((index >= low_ijk - 0.05) & (index <= high_ijk + 0.05), axis=-1)
    assert np.array_equal(box[margin], inside[margin])
    assert crop.tensor[1].max() == 0.0           # no seed given: no positive point


def test_clicks_go_to_the_nearest_lesion_and_a_click_outside_every_box_is_refused():
    image = oblique_image(shape=(30, 80, 80), spacing=(1.0, 1.0, 1.0))
    seed_a, seed_b = image.index_to_ras(np.array([20.0, 40.0, 15.0])), image.index_to_ras(np.array([60.0, 40.0, 15.0]))
    near_b = image.index_to_ras(np.array([55.0, 42.0, 15.0]))
    prompts = assemble_prompts(image, [seed_a, seed_b], [], [near_b], [], box_mm=30.0)
    assert prompts[1].include_ras == [tuple(near_b)] and prompts[0].include_ras == []
    far = image.index_to_ras(np.array([40.0, 75.0, 15.0]))
    with pytest.raises(InputError, match="outside every lesion's box"):
        assemble_prompts(image, [seed_a, seed_b], [], [], [far], box_mm=30.0)


@pytest.mark.parametrize("bad, message", [
    (dict(excludes=["seed"]), "exclude click lies on the seed"),
    (dict(boxes="zero size"), "at least 2 mm"),
    (dict(seeds=[(500.0, 500.0, 500.0)]), "outside the image"),
])
def test_bad_prompts_are_typed_errors(bad, message):
    image = oblique_image(shape=(30, 60, 60), spacing=(1.0, 1.0, 1.0))
    seed = tuple(image.index_to_ras(np.array([30.0, 30.0, 15.0])))
    seeds = bad.get("seeds", [seed])
    excludes = [seed if e == "seed" else e for e in bad.get("excludes", [])]
    boxes = [tuple(image.index_to_ras(np.array([30.0, 30.0, 15.0]))) * 2] if bad.get("boxes") else []
    with pytest.raises(InputError, match=message):
        prompts = assemble_prompts(image, seeds, boxes, [], excludes, box_mm=20.0)
        build_crop(image, prompts[0])


def test_refining_an_outline_on_another_grid_is_refused():
    from RadAISegmentLib.lesion.predict import segment_prompts
    image = oblique_image()
    other = Image(np.ones((10, 10, 10), np.uint8), (1.0, 1.0, 1.0))
    prompt = LesionPrompt(seed_ras=tuple(image.index_to_ras(np.array([18.0, 20.0, 10.0]))), box_mm=20.0)
    with pytest.raises(GeometryMismatchError):
        segment_prompts(image, [prompt], model=None, previous=other)


def test_prompts_from_an_outline_seed_its_deepest_point_and_box_its_extent():
    image = Image(np.zeros((20, 40, 40), np.uint8), (1.0, 1.0, 2.0))
    image.array[6:14, 10:30, 12:20] = 1          # 8 x 20 x 8 voxels: extent 20 mm in j, 16 mm in k
    prompt, = prompts_from_outline(image)
    assert prompt.box_mm == pytest.approx(1.5 * 20.0 + 10.0)
    seed_index = image.ras_to_index(np.asarray(prompt.seed_ras))[::-1]
    assert image.array[tuple(np.round(seed_index).astype(int))] == 1
    assert 8 <= seed_index[0] <= 11 and 15 <= seed_index[2] <= 16


def test_the_simulated_reader_clicks_the_middle_of_the_largest_error():
    reference = np.zeros((30, 30, 30), bool)
    reference[5:15, 5:15, 5:15] = True
    reference[20:27, 20:27, 20:27] = True            # a second part the model missed (343 voxels)
    prediction = reference.copy()
    prediction[20:27, 20:27, 20:27] = False
    prediction[5:15, 5:15, 15:18] = True             # a smaller over-segmentation (300 voxels)
    click = next_click(prediction, reference)
    assert click.include and click.index_kji == (23, 23, 23) and click.region_volume_mm3 == 343
    prediction[5:15, 5:15, 18:20] = True             # the over-segmentation grows to 500 voxels: now the largest
    click = next_click(prediction, reference, spacing_kji_mm=(2.0, 1.0, 1.0))
    assert not click.include and click.index_kji[2] in (17, 18) and click.region_volume_mm3 == 1000
    assert next_click(reference, reference) is None


def test_box_weights_are_centred_boxes_of_the_stated_width():
    for width in (1.0, 2.0, 2.5, 4.0, 5.3):
        weights = box_weights(width)
        taps = np.arange(len(weights)) - len(weights) // 2
        assert weights.sum() == pytest.approx(1.0) and np.allclose(weights, weights[::-1])
        variance = (weights * taps ** 2).sum()              # a box of width w: w²/12, plus the voxel's 1/12
        assert variance == pytest.approx((width ** 2 + 1) / 12 if width > 1 else 0.0, abs=0.1)


def test_paste_back_gives_each_thick_voxel_the_share_of_it_the_lesion_covers():
    """Input voxels 2 mm thick along k (voxel 5 spans S = 9..11 mm), crop rows 0.5 mm apart: a lesion face
    parallel to the slices at S = 10.5 mm covers 3/4 of voxel 5 and at 11.5 mm a 1/4 of voxel 6; each voxel's
    value is that share, so ``p >= 0.5`` keeps a voxel when more than half of it is lesion (partial volume)."""
    image = Image(np.zeros((12, 16, 16), np.float32), (1.0, 1.0, 2.0))
    centre_ras = image.index_to_ras(np.array([7.5, 7.5, 5.75]))
    geometry = crop_geometry(image, LesionPrompt(seed_ras=tuple(centre_ras), box_mm=16.0), grid=32)
    crop = Crop(np.zeros((5, 32, 32, 32), np.float32), geometry)
    row_s_mm = geometry.origin_lps[2] + np.arange(32) * geometry.spacing_mm     # 3.75, 4.25, ... (LPS S = k)
    for face_mm, voxel, share in ((10.5, 5, 0.75), (10.5, 6, 0.0), (11.5, 6, 0.25), (11.5, 4, 1.0)):
        probability = np.broadcast_to((row_s_mm < face_mm)[:, None, None], (32, 32, 32)).astype(np.float32)
        region, values = paste_back_probability(probability, crop, image)
        assert values[voxel - region[0].start, 8 - region[1].start, 8 - region[2].start] == pytest.approx(share)


def test_grid_range_of_a_voxel_block_is_a_half_voxel_shell_each_side():
    mask = np.zeros((8, 8, 8), bool)
    mask[2:5, 2:5, 2:5] = True                                  # 27 voxels, 54 exposed faces
    assert exposed_faces(mask) == (54, 54)
    volume, low, high = labelmap_volume_range(mask, (1.0, 2.0, 0.5))      # voxel 1 mm³
    assert volume == pytest.approx(0.027) and low == pytest.approx(0.0) and high == pytest.approx(0.054)
    cube = np.zeros((8, 8, 8), bool)
    cube[1:6, 1:6, 1:6] = True                # 125 voxels, 150 faces: ±75 voxels (a 5 mm cube's faces ±0.5 mm)
    assert labelmap_volume_range(cube, (1, 1, 1))[1:] == pytest.approx((0.05, 0.2))
    edge = np.zeros((3, 3, 3), bool)
    edge[0, 0, 0] = True
    assert exposed_faces(edge) == (6, 3)                       # faces on the array's edge are not outside


def test_probability_range_uses_the_model_spread_and_the_calibrated_scales():
    outline = np.zeros((20, 20, 20), bool)
    outline[5:15, 5:15, 5:15] = True                            # 1000 voxels of 1 mm³
    probability = np.where(outline, 0.9, 0.0).astype(np.float32)
    probability[5:15, 5:15, 5:9] = 0.6                          # 400 voxels inside, not sure
    probability[5:15, 5:15, 15:19] = 0.4                        # 400 voxels outside, possible
    volume, low, high = probability_volume_range(probability, outline, (1, 1, 1))
    assert (volume, low, high) == pytest.approx((1.0, 0.6, 1.4))   # spread: 0.4 each side (grid: 0.3)
    _, low2, high2 = probability_volume_range(probability, outline, (1, 1, 1), scale_low=2.0, scale_high=2.0)
    assert (low2, high2) == pytest.approx((0.2, 1.8))
    probability[5:15, 5:15, 7:9] = 0.9                          # a narrower spread: the grid's half-voxel shell
    probability[5:15, 5:15, 17:19] = 0.0
    assert probability_volume_range(probability, outline, (1, 1, 1))[1:] == pytest.approx((0.7, 1.3))


def test_calibration_reaches_the_asked_coverage_on_its_cases():
    rng = np.random.default_rng(0)
    spreads, truths = [], []
    for _ in range(200):
        volume = rng.uniform(1, 10)
        spreads.append((volume, volume * 0.9, volume * 1.1))
        truths.append(volume * (1 + rng.normal() * 0.15))
    s_low, s_high = calibrate_scales(spreads, truths, coverage=0.9)
    covered = [v - s_low * (v - lo) <= t <= v + s_high * (hi - v) for (v, lo, hi), t in zip(spreads, truths)]
    assert 0.88 <= np.mean(covered) <= 0.95 and s_low > 1.0 and s_high > 1.0


def test_change_within_uncertainty_means_overlapping_ranges():
    assert change_within_uncertainty((1.0, 1.4), (1.3, 1.8))
    assert not change_within_uncertainty((1.0, 1.2), (1.3, 1.8))


def test_the_inference_input_holds_each_point_where_training_puts_it():
    """The seed (a wide Gaussian of peak SEED_PEAK) and the clicks land in the crop at their own positions, as the
    training data's channels (``stack_channels`` with crop coordinates) put them; an oblique image's RAS points
    go through the crop's geometry, never used as crop coordinates."""
    from RadAISegmentLib.lesion.prompts import SEED_PEAK, SEED_SIGMA_VOXELS, positive_channel
    image = oblique_image()
    seed = tuple(image.index_to_ras(np.array([18.0, 20.0, 10.0])))
    include = tuple(image.index_to_ras(np.array([22.0, 20.0, 10.0])))
    exclude = tuple(image.index_to_ras(np.array([14.0, 20.0, 10.0])))
    prompt = LesionPrompt(seed_ras=seed, box_mm=30.0, include_ras=[include], exclude_ras=[exclude])
    crop = build_crop(image, prompt, PromptSettings(grid=32))
    at = [crop.geometry.lps_to_kji(image.index_to_lps(image.ras_to_index(np.asarray(p)))) for p in (seed, include, exclude)]
    assert np.allclose(at[0], 15.5, atol=1e-6)                                    # the cube is centred on the seed
    assert np.allclose(crop.tensor[1], positive_channel(at[0], [at[1]], 32), atol=1e-6)
    assert np.allclose(crop.tensor[2], point_channel([at[2]], 32), atol=1e-6)
    assert crop.tensor[1].max() > np.exp(-3 * 0.25 / 8)          # the include click (at most half a voxel off grid)
    near_seed = tuple(int(round(v)) for v in at[0])
    assert crop.tensor[1][near_seed] == pytest.approx(
        SEED_PEAK * np.exp(-np.sum((np.array(near_seed) - at[0]) ** 2) / (2 * SEED_SIGMA_VOXELS ** 2)), rel=1e-4)
