"""Synthetic lesion generator (lesion-roi 2.x training data): analytic shapes, partial volume, confinement to a
compartment, slice profile, and well-formed training pairs with prompt channels."""
from __future__ import annotations

import numpy as np
import pytest

from RadAISegmentLib.image import Image
from RadAISegmentLib.lesion.backgrounds import Background, load_background
from RadAISegmentLib.lesion.shapes import (ellipsoid_level_set, grid_points, occupancy, random_rotation,
                                           tube_level_set)
from RadAISegmentLib.lesion.synthetic import acquire, enhancing_meninges, make_case, seed_near_centre, thick_slice


def half_space_background():
    """A CT 'chest wall': lung air (-850 HU) for i < 120, soft tissue (40 HU) for i >= 120 (plane x = 119.5 mm)."""
    array = np.full((60, 60, 240), -850.0, np.float32)
    array[:, :, 120:] = 40.0
    image = Image(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    k, j, i = np.indices(array.shape)
    near = (k > 20) & (k < 40) & (j > 20) & (j < 40)
    return Background("half-space", image, True, np.argwhere(near & (i >= 150)), np.argwhere(near & (i < 119))), image


def test_occupancy_of_an_ellipsoid_has_its_volume_and_stays_in_0_1():
    points = grid_points(40)
    for rotation in (np.eye(3, dtype=np.float32), random_rotation(np.random.default_rng(2))):
        level = ellipsoid_level_set(points, np.array([19.2, 20.1, 18.7], np.float32),
                                    np.array([9.0, 7.0, 5.0], np.float32), rotation)
        fraction = occupancy(level)
        assert fraction.min() >= 0.0 and fraction.max() <= 1.0
        assert fraction.sum() == pytest.approx(4 / 3 * np.pi * 9 * 7 * 5, rel=0.02)


def test_tube_occupancy_has_the_cylinder_volume():
    points = grid_points(48)
    direction = np.array([0.0, 0.6, 0.8], np.float32)
    level = tube_level_set(points, np.array([10.0, 10.0, 10.0], np.float32), direction, 30.0, 3.0, 3.0)
    assert occupancy(level).sum() == pytest.approx(np.pi * 3.0 ** 2 * 30.0, rel=0.05)


def test_thick_slice_profile_keeps_a_linear_ramp_and_flattens_within_a_slice():
    ramp = np.broadcast_to(np.arange(40, dtype=np.float32)[:, None, None], (40, 8, 8)).copy()
    out = thick_slice(ramp, axis=0, thickness_vox=5.0)
    assert np.allclose(out[5:35], ramp[5:35], atol=1e-4)
    step = np.zeros((40, 8, 8), np.float32)
    step[20:] = 1.0
    blurred = thick_slice(step, axis=0, thickness_vox=6.0)
    assert 0.0 < blurred[19, 0, 0] < 1.0 and 0.0 < blurred[21, 0, 0] < 1.0
    assert np.array_equal(thick_slice(step, axis=0, thickness_vox=1.0), step)


def test_thick_slices_are_applied_to_the_whole_scan_not_only_to_the_lesion():
    """6 mm slices on a 1 mm background: background and lesion alike are one sample per slice, linearly
    interpolated between slice centres (zero second difference along the slice axis between centres); slices
    no thicker than the background's own leave the background as it is."""
    rng = np.random.default_rng(3)
    background = rng.normal(size=(48, 6, 6)).astype(np.float32)           # sharp detail along every axis
    lesion = np.zeros_like(background)
    lesion[20:30] = 5.0
    scan = acquire(background, lesion, background_slice_mm=1.0, slice_vox=6.0, slice_axis=0, phase=0.0,
                   spacing_mm=1.0)
    assert np.allclose(scan, thick_slice(background + lesion, 0, 6.0, 0.0))
    second_difference = np.abs(np.diff(scan, n=2, axis=0))
    between_centres = [k for k in range(1, 47) if k % 6 != 0]             # centres at 0, 6, 12, ...
    assert second_difference[[k - 1 for k in between_centres]].max() < 1e-4
    assert np.abs(np.diff(background, n=2, axis=0)).mean() > 1.0          # the input had detail to lose
    thin = acquire(background, lesion, background_slice_mm=2.5, slice_vox=3.0, slice_axis=0, phase=0.0,
                   spacing_mm=1.0)
    assert np.allclose(thin - thick_slice(lesion, 0, 3.0, 0.0), background, atol=1e-5)


def test_enhancing_meninges_are_a_patchy_sheet_just_outside_the_brain():
    """A flat brain surface at i = 31.5 (signed distance i - 31.5 voxels, 1 mm voxels): the sheet lies outside
    the brain, at most 4 mm (+ half a voxel of partial volume) from it, and covers part of the surface only."""
    rng = np.random.default_rng(5)
    i = np.broadcast_to(np.arange(64, dtype=np.float32), (64, 64, 64))
    organ_level = i - 31.5
    for _ in range(5):
        sheet = enhancing_meninges(organ_level, 1.0, rng)
        assert sheet.shape == organ_level.shape and 0.0 <= sheet.min() and sheet.max() <= 1.0
        assert sheet[organ_level < -0.5].max() == 0.0                        # never inside the brain
        assert sheet[organ_level > 4.5].max() == 0.0                         # at most 4 mm thick
        covered = sheet[:, :, 32] > 0.5                                      # the first voxel layer outside
        assert 0.0 < covered.mean() < 1.0 or sheet.max() == 0.0             # patches, not a closed shell
    coarse = enhancing_meninges(organ_level, 3.0, rng)                       # 3 mm voxels: thinner in voxels
    assert coarse[organ_level > 2.0].max() == 0.0


def test_cases_are_well_formed_training_pairs_with_their_prompts():
    background, _ = half_space_background()
    rng = np.random.default_rng(7)
    for _ in range(6):
        case = make_case([background], rng, 32)
        assert case.x.shape == (5, 32, 32, 32) and case.target.shape == (32, 32, 32)
        assert case.x.dtype == np.float32 and np.isfinite(case.x).all()
        assert 0.0 <= case.target.min() and case.target.max() <= 1.0 and case.label.sum() >= 6
        assert case.x[2].max() == 0.0 and case.x[4].max() == 0.0          # no exclude click, no previous outline
        seed = case.info["seed_kji"]
        if case.info["box"] == "corners":
            assert case.x[3][case.label].mean() > 0.99      # the drawn box holds the lesion
        else:
            assert case.x[3].min() == 1.0 and np.allclose(seed, 15.5)               # cube centred on the seed
            centroid = np.argwhere(case.label).mean(axis=0)      # ... at the centroid, +- 25 % r (before confinement)
            assert case.info["confined"] or np.linalg.norm(centroid - 15.5) <= 0.25 * np.sqrt(3) * case.info["diameter_mm"] / 2 / (case.info["edge_mm"] / 32) + 1.5
        if seed is not None:
            assert case.x[1][tuple(np.round(seed).astype(int))] == pytest.approx(0.6, abs=0.05)   # the seed: "around here"


def test_a_lung_lesion_confined_to_its_compartment_stops_at_the_chest_wall():
    """Centred in the lung next to the wall, with confinement the label never crosses the wall's plane,
    although lesion and wall have the same density."""
    background, _ = half_space_background()
    background.lung_kji = background.lung_kji[background.lung_kji[:, 2] > 108]      # lung voxels 1-11 mm from the wall
    background.tissue_kji = background.lung_kji
    rng = np.random.default_rng(11)
    confined = 0
    for _ in range(12):
        case = make_case([background], rng, 32, attached=False)
        if not case.info["confined"] or not case.info["in_lung"]:
            continue
        confined += 1
        spacing = case.info["edge_mm"] / 32
        # crop voxel (k, j, i) -> LPS x along i; the wall plane x = 119.5 (identity direction)
        centre = float(case.info["crop_centre_lps"][0])
        label_i = np.argwhere(case.label)[:, 2]
        assert (centre + (label_i.max() - 15.5) * spacing) <= 119.5 + spacing
    assert confined >= 2


def test_evaluation_cases_are_refused_as_backgrounds(tmp_path):
    path = tmp_path / "lung1_image.nrrd"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="evaluation case"):
        load_background(path)


def test_a_brain_lesion_on_the_cortex_stops_at_the_brain_surface():
    """A head MR whose brain is known (a ball of radius 30 mm in a bright scalp shell): lesions attached to the
    brain surface are cut by it when confined; with 90 % confinement most of them are, and no confined label
    voxel lies outside the ball (beyond half a crop voxel's diagonal)."""
    array = np.full((80, 80, 80), 10.0, np.float32)
    k, j, i = np.indices(array.shape)
    radius_from_centre = np.sqrt((k - 39.5) ** 2 + (j - 39.5) ** 2 + (i - 39.5) ** 2)
    array[radius_from_centre < 36] = 300.0          # scalp: brighter than brain and lesion, right beside it
    brain = radius_from_centre < 30
    array[brain] = 120.0
    image = Image(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    from scipy import ndimage
    background = Background("head", image, False, np.argwhere(ndimage.binary_erosion(brain, iterations=3)),
                            np.zeros((0, 3), int), compartment=brain,
                            surface_kji=np.argwhere(brain & ~ndimage.binary_erosion(brain, iterations=2)))
    rng = np.random.default_rng(5)
    confined = 0
    for _ in range(8):
        case = make_case([background], rng, 32, attached=True)
        assert not case.info["in_lung"]
        if not case.info["confined"]:
            continue
        confined += 1
        spacing = case.info["edge_mm"] / 32
        label_kji = np.argwhere(case.label).astype(float)
        centre_lps = np.asarray(case.info["crop_centre_lps"], float)
        # crop voxel (k, j, i) -> LPS (x, y, z) along (i, j, k) for the identity direction; ball centre 39.5 mm
        positions = centre_lps + (label_kji[:, ::-1] - 15.5) * spacing
        assert np.linalg.norm(positions - 39.5, axis=1).max() <= 30.0 + spacing * np.sqrt(3) / 2 + 0.5
        assert np.linalg.norm(centre_lps - 39.5) > 26.0            # attached: centred on the surface
    assert confined >= 5


def test_a_seed_lands_in_the_lesion_even_when_it_is_too_thin_to_have_an_interior():
    """A lesion one voxel thick (a plate of 100 voxels: erosion leaves nothing) still gets a seed in it; it used
    to stop a training sitting with ``high <= 0``."""
    label = np.zeros((16, 16, 16), bool)
    label[8, 3:13, 3:13] = True
    centre = np.array([8.0, 7.5, 7.5])
    rng = np.random.default_rng(0)
    seeds = [seed_near_centre(label, centre, rng) for _ in range(20)]
    assert all(label[tuple(int(v) for v in seed)] for seed in seeds)
    assert max(np.linalg.norm(seed - centre) for seed in seeds) < 4.0          # near the centre, not anywhere
    solid = np.zeros((16, 16, 16), bool)
    solid[4:12, 4:12, 4:12] = True                                              # with an interior: inside it
    seed = seed_near_centre(solid, np.array([7.5, 7.5, 7.5]), rng)
    assert all(5 <= v <= 10 for v in seed)
