"""Analytic phantoms: voxelised volumes, geometry and transforms match the closed-form truth."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from RadAISegmentLib import geometry, phantoms, phantoms_cardiac
from RadAISegmentLib.errors import GeometryError
from RadAISegmentLib.image import Image


@pytest.fixture(scope="module")
def abdomen():
    return phantoms.abdominal_ct_phantom(seed=0)


@pytest.fixture(scope="module")
def abdomen_rotated():
    return phantoms.abdominal_ct_phantom(rotated=True, seed=0)


@pytest.fixture(scope="module")
def cine():
    return phantoms_cardiac.cardiac_cine_phantom(n_phases=12, heart_rate_bpm=72, edv_ml=140.0, esv_ml=60.0)


@pytest.fixture(scope="module")
def followup():
    return phantoms.followup_pair_phantom(rotation_deg=(4.0, -3.0, 10.0), translation_mm=(7.0, -5.0, 9.0),
                                          volume_change_fraction=0.35, rotated=True)


def _volume_mm3(labelmap: Image, label: int) -> float:
    return float(np.count_nonzero(labelmap.array == label)) * labelmap.voxel_volume_mm3


def _centroid_ras(labelmap: Image, mask: np.ndarray) -> np.ndarray:
    kji = np.argwhere(mask).astype(float)
    return labelmap.index_to_ras(kji[:, ::-1].mean(axis=0))


def _lesion_components(labelmap: Image) -> list[tuple[float, np.ndarray]]:
    """(volume mm³, centroid RAS) of each connected lesion component, found from the array alone."""
    components, count = ndimage.label(labelmap.array == phantoms.LESION.label)
    return [(_volume_mm3(labelmap.with_array((components == n).astype(np.uint8)), 1),
             _centroid_ras(labelmap, components == n)) for n in range(1, count + 1)]


def _nearest(centre: np.ndarray, components):
    return min(components, key=lambda c: np.linalg.norm(c[1] - centre))


@pytest.mark.parametrize("which", ["abdomen", "abdomen_rotated"])
def test_abdominal_voxel_volumes_match_analytic(which, request):
    ct, labels, truth = request.getfixturevalue(which)
    assert ct.same_grid(labels)
    assert {s.name for s in labels.segments} == {"Liver", "Spleen", "Right kidney", "Left kidney", "Lesion"}
    for label, entry in truth["labels"].items():
        measured = _volume_mm3(labels, label)
        assert measured == pytest.approx(entry["analytic_volume_mm3"], rel=0.01), entry["name"]
        assert measured == pytest.approx(entry["voxel_volume_mm3"], abs=1e-6)
    for lesion in truth["lesions"]:
        volume, centre = _nearest(np.asarray(lesion["centre_ras"]), _lesion_components(labels))
        assert volume == pytest.approx(lesion["analytic_volume_mm3"], rel=0.02), lesion["name"]
        assert np.linalg.norm(centre - lesion["centre_ras"]) < 0.5


def test_abdominal_codes_geometry_and_intensities(abdomen, abdomen_rotated):
    ct, labels, truth = abdomen
    codes = {s.name: s.type.value for s in labels.segments}
    assert codes["Liver"] == "10200004" and codes["Spleen"] == "78961009"
    assert codes["Right kidney"] == codes["Left kidney"] == "64033007" and codes["Lesion"] == "108369006"
    assert ct.array.dtype == np.int16 and ct.shape_ijk == (128, 128, 64)
    assert ct.spacing_mm == (1.5, 1.5, 3.0)
    rotated = abdomen_rotated[0].direction_lps
    assert not np.allclose(rotated, np.eye(3)) and np.allclose(rotated.T @ rotated, np.eye(3))
    assert np.linalg.det(rotated) == pytest.approx(1.0)
    corner = ct.array[0, 0, 0]
    assert corner < -900  # air outside the body
    liver = ct.array[labels.array == 1]
    assert np.median(liver) == pytest.approx(truth["hu"]["Liver"], abs=5)
    # organ centres: the voxel centroid equals the analytic centroid (organ minus its lesions)
    for label, entry in truth["labels"].items():
        if label != phantoms.LESION.label:
            assert np.linalg.norm(_centroid_ras(labels, labels.array == label) - entry["centre_ras"]) < 0.5


def test_rotated_grid_gives_same_physical_volumes_and_centres(abdomen, abdomen_rotated):
    _, labels, truth = abdomen
    _, labels_rot, truth_rot = abdomen_rotated
    for label in truth["labels"]:
        assert _volume_mm3(labels_rot, label) == pytest.approx(_volume_mm3(labels, label), rel=0.01)
        centre = _centroid_ras(labels, labels.array == label)
        centre_rot = _centroid_ras(labels_rot, labels_rot.array == label)
        assert np.linalg.norm(centre - centre_rot) < 0.6
    assert truth["analytic_volume_mm3"] == truth_rot["analytic_volume_mm3"]


def test_seed_controls_noise_only():
    first = phantoms.abdominal_ct_phantom(shape_ijk=(96, 96, 48), spacing_mm=(2.0, 2.0, 4.0), seed=3)
    again = phantoms.abdominal_ct_phantom(shape_ijk=(96, 96, 48), spacing_mm=(2.0, 2.0, 4.0), seed=3)
    other = phantoms.abdominal_ct_phantom(shape_ijk=(96, 96, 48), spacing_mm=(2.0, 2.0, 4.0), seed=4)
    assert np.array_equal(first[0].array, again[0].array)
    assert not np.array_equal(first[0].array, other[0].array)
    assert np.array_equal(first[1].array, other[1].array)


def test_too_small_grid_is_reported():
    with pytest.raises(GeometryError, match="beyond the phantom grid"):
        phantoms.abdominal_ct_phantom(shape_ijk=(40, 40, 20))


@pytest.mark.parametrize("spacing", [(0.7, 1.3, 2.9), (2.0, 2.0, 5.0)])
def test_ellipsoid_mask_volume_on_oblique_anisotropic_grid(spacing):
    grid = phantoms.centred_grid((80, 80, 40), spacing, (5.0, -3.0, 2.0), phantoms.rotation_matrix((20, 35, -50)))
    axes = tuple(map(tuple, phantoms.rotation_matrix((-10, 60, 15))))
    shape = phantoms.Ellipsoid((8.0, -1.0, 4.0), (21.0, 13.0, 9.5), axes)
    mask = phantoms.ellipsoid_mask(grid, shape)
    assert mask.sum() * grid.voxel_volume_mm3 == pytest.approx(shape.volume_mm3, rel=0.01)
    # every voxel whose centre is well inside is kept; every voxel well outside is not
    kji = np.argwhere(np.ones(mask.shape, dtype=bool))
    radius = shape.normalised_radius(grid.index_to_lps(kji[:, ::-1].astype(float))).reshape(mask.shape)
    assert mask[radius < 0.7].all() and not mask[radius > 1.3].any()


def test_rigid_matrix_is_rotation_about_centre():
    centre = np.array([10.0, -20.0, 5.0])
    matrix = phantoms.rigid_matrix((0, 0, 90), (1.0, 2.0, 3.0), centre)
    assert np.allclose(phantoms.apply_matrix(matrix, centre), centre + [1, 2, 3])
    # 90° about +z maps +x to +y
    assert np.allclose(phantoms.apply_matrix(matrix, centre + [1, 0, 0]), centre + [1, 2, 3] + [0, 1, 0])


def test_cardiac_volumes_ef_and_phases(cine):
    images, labelmaps, truth = cine
    assert len(images) == len(labelmaps) == truth["n_phases"] == 12
    assert [s.name for s in labelmaps[0].segments] == ["LV blood pool", "LV myocardium", "RV blood pool"]
    assert [s.label for s in labelmaps[0].segments] == [1, 2, 3]
    lv = []
    for labelmap, image, phase in zip(labelmaps, images, truth["phases"]):
        assert image.same_grid(labelmap)
        lv.append(_volume_mm3(labelmap, 1) / 1000.0)
        assert lv[-1] == pytest.approx(phase["lv_volume_ml"], rel=0.01)
        assert _volume_mm3(labelmap, 2) / 1000.0 == pytest.approx(truth["myocardium_volume_ml"], rel=0.01)
        assert _volume_mm3(labelmap, 3) / 1000.0 == pytest.approx(phase["rv_volume_ml"], rel=0.01)
    assert int(np.argmax(lv)) == truth["ed_index"] == 0
    assert int(np.argmin(lv)) == truth["es_index"]
    assert truth["phases"][0]["lv_volume_ml"] == pytest.approx(140.0)
    assert truth["phases"][truth["es_index"]]["lv_volume_ml"] == pytest.approx(60.0)
    measured_ef = 100.0 * (max(lv) - min(lv)) / max(lv)
    assert measured_ef == pytest.approx(truth["ef_percent"], abs=0.7)
    assert truth["ef_percent"] == pytest.approx(100.0 * 80.0 / 140.0)
    assert truth["rr_interval_ms"] == pytest.approx(60000.0 / 72)
    assert truth["lv_mass_g"] == pytest.approx(truth["myocardium_volume_ml"] * 1.05)
    # short-axis cine: k follows the LV long axis, spacing is anisotropic
    assert np.allclose(images[0].direction_lps[:, 2], truth["long_axis_lps"])
    assert images[0].spacing_mm[2] > images[0].spacing_mm[0]
    # blood is bright, myocardium dark
    ed_image, ed_labels = images[0].array, labelmaps[0].array
    assert np.median(ed_image[ed_labels == 1]) > 3 * np.median(ed_image[ed_labels == 2])
    # the cavity centre stays at the analytic LV centre
    assert np.linalg.norm(_centroid_ras(labelmaps[5], labelmaps[5].array == 1) - truth["lv_centre_ras"]) < 0.5


def test_cardiac_rejects_impossible_volumes():
    with pytest.raises(GeometryError):
        phantoms_cardiac.cardiac_cine_phantom(edv_ml=50.0, esv_ml=60.0)


def test_followup_lesions_move_by_the_stated_transform(followup):
    base_ct, base_labels, follow_ct, follow_labels, truth = followup
    matrix = np.asarray(truth["baseline_to_followup_lps"])
    assert np.allclose(matrix @ np.asarray(truth["followup_to_baseline_lps"]), np.eye(4))
    assert np.allclose(matrix[:3, :3], phantoms.rotation_matrix(truth["rotation_deg"]))
    assert base_ct.same_grid(follow_ct) and base_labels.same_grid(follow_labels)
    base_components, follow_components = _lesion_components(base_labels), _lesion_components(follow_labels)
    assert len(base_components) == 2 and len(follow_components) == 3
    for lesion in truth["lesions"]:
        if lesion["baseline"] is None:  # the new lesion
            assert lesion["name"] == "Lesion 3" and lesion["followup"]["analytic_volume_mm3"] > 0
            continue
        base_volume, base_centre = _nearest(np.asarray(lesion["baseline"]["centre_ras"]), base_components)
        moved = geometry.lps_to_ras(phantoms.apply_matrix(matrix, geometry.ras_to_lps(base_centre)))
        follow_volume, follow_centre = _nearest(moved, follow_components)
        assert np.linalg.norm(follow_centre - moved) < 0.6  # measured centroids follow the transform
        assert np.allclose(lesion["followup"]["centre_ras"], geometry.lps_to_ras(phantoms.apply_matrix(
            matrix, geometry.ras_to_lps(lesion["baseline"]["centre_ras"]))))
        expected_ratio = 1.0 + lesion["volume_change_fraction"]
        assert follow_volume / base_volume == pytest.approx(expected_ratio, rel=0.02)
        assert lesion["followup"]["analytic_volume_mm3"] == pytest.approx(
            expected_ratio * lesion["baseline"]["analytic_volume_mm3"])
    assert {lesion["volume_change_fraction"] for lesion in truth["lesions"]} == {0.35, -0.35, None}
    # organs move too: the liver centroid follows the transform and keeps its volume
    liver_base = geometry.ras_to_lps(_centroid_ras(base_labels, base_labels.array == 1))
    liver_follow = geometry.ras_to_lps(_centroid_ras(follow_labels, follow_labels.array == 1))
    assert np.linalg.norm(phantoms.apply_matrix(matrix, liver_base) - liver_follow) < 0.6
    assert base_ct.metadata["study_date"] < follow_ct.metadata["study_date"]
