"""Synthetic lesion generator: analytic properties (volume, attachment to a boundary, slice profile, spicules)."""
from __future__ import annotations

import numpy as np
import pytest

from RadAISegmentLib.image import Image
from RadAISegmentLib.lesion.synthetic import (Background, add_spicules, lesion_fraction, make_case, thick_slice)


def half_space_background():
    """A CT 'chest wall': air (-800 HU) for i < 120, soft tissue (40 HU) for i >= 120; boundary plane x = 119.5 mm.
    Crop centres are 30-36 mm from the plane and >= 80 mm from the image's ends along i."""
    array = np.full((60, 60, 240), -800.0, np.float32)
    array[:, :, 120:] = 40.0
    image = Image(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    k, j, i = np.indices(array.shape)
    candidates = np.argwhere((k > 20) & (k < 40) & (j > 20) & (j < 40) & (np.abs(i - 119.5) > 30)
                             & (np.abs(i - 119.5) < 36))
    return Background(image, True, candidates, "half-space"), image


def plane_distance_mm(case, grid: int) -> float:
    """Distance (mm) from the drawn lesion centre to the boundary plane x_LPS = 119.5 (identity direction)."""
    spacing = case.info["box_mm"] / grid
    centre_lps = case.info["crop_centre_lps"] + (case.info["centre_vox"][::-1] - (grid - 1) / 2.0) * spacing
    return abs(float(centre_lps[0]) - 119.5)


def test_lobulation_free_lesion_has_the_ellipsoid_volume_at_any_supersampling():
    for supersample in (2, 3):
        fraction, _ = lesion_fraction(40, np.array([19.2, 20.1, 18.7]), np.array([7.0, 5.0, 4.0]),
                                      np.random.default_rng(1), lobulation=0.0, supersample=supersample)
        assert fraction.sum() == pytest.approx(4 / 3 * np.pi * 7 * 5 * 4, rel=0.03)
        assert fraction.min() >= 0.0 and fraction.max() <= 1.0


def test_attached_lesions_sit_on_the_tissue_boundary_and_free_ones_do_not():
    background, image = half_space_background()
    rng = np.random.default_rng(3)
    grid = 32
    attached = [make_case([background], rng, grid, attached=True) for _ in range(6)]
    free = [make_case([background], rng, grid, attached=False) for _ in range(6)]
    for case in attached:
        radius_mm = case.info["diameter_mm"] / 2.0
        assert case.info["attached"]
        # the boundary passes through the lesion: centre offset <= 0.35 * sqrt(3) * r, plus the edge detector's
        # placement (top 3 % gradient after a 1.5-voxel Gaussian: within ~2 search voxels of the plane)
        search_voxel_mm = max(3.0 * case.info["box_mm"], 150.0) / grid
        assert plane_distance_mm(case, grid) <= 0.35 * np.sqrt(3) * radius_mm + 2.0 * search_voxel_mm
        assert plane_distance_mm(case, grid) < radius_mm + 2.0 * search_voxel_mm
    for case in free:   # crop centres are >= 30 mm from the plane; the seed is <= 0.35*sqrt(3)*r from the centre
        assert not case.info["attached"]
        assert plane_distance_mm(case, grid) >= 30.0 - 0.35 * np.sqrt(3) * case.info["diameter_mm"] / 2.0 - 1e-6


def test_synthetic_case_is_a_well_formed_training_pair_with_the_seed_inside_the_lesion():
    background, _ = half_space_background()
    rng = np.random.default_rng(7)
    for _ in range(4):
        case = make_case([background], rng, 32)
        assert case.x.shape == (2, 32, 32, 32) and case.y.shape == (32, 32, 32)
        assert case.x.dtype == np.float32 and set(np.unique(case.y)) <= {0.0, 1.0}
        assert np.isfinite(case.x).all()
        seed_offset = np.linalg.norm(case.info["seed_offset_vox"]) * case.info["box_mm"] / 32
        assert seed_offset <= 0.35 * np.sqrt(3) * case.info["diameter_mm"] / 2 + 1e-6


def test_thick_slice_profile_keeps_a_linear_ramp_and_flattens_within_a_slice():
    ramp = np.broadcast_to(np.arange(40, dtype=np.float32)[:, None, None], (40, 8, 8)).copy()
    out = thick_slice(ramp, axis=0, thickness_vox=5.0)
    inside = slice(5, 35)   # between the first and last sampled slice centre
    assert np.allclose(out[inside], ramp[inside], atol=1e-4)
    step = np.zeros((40, 8, 8), np.float32)
    step[20:] = 1.0
    blurred = thick_slice(step, axis=0, thickness_vox=6.0)
    assert 0.0 < blurred[19, 0, 0] < 1.0 and 0.0 < blurred[21, 0, 0] < 1.0   # partial volume across the step
    assert np.array_equal(thick_slice(step, axis=0, thickness_vox=1.0), step)  # thin slices: unchanged


def test_spicules_add_volume_outside_the_body_but_stay_attached():
    from scipy import ndimage
    rng = np.random.default_rng(5)
    centre = np.full(3, 19.5)
    fraction, _ = lesion_fraction(40, centre, np.array([6.0, 6.0, 6.0]), rng, lobulation=0.0)
    spiculated = add_spicules(fraction, centre, 6.0, rng, count=8)
    assert (spiculated >= fraction).all() and spiculated.sum() > fraction.sum() * 1.01
    components, count = ndimage.label(spiculated >= 0.5, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(components.ravel())[1:]
    assert sizes.max() >= 0.99 * sizes.sum()   # spikes grow out of the body (at most a stray tip voxel apart)
