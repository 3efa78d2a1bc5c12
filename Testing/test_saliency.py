"""Seg-Grad-CAM / Grad-CAM++ / SmoothGrad engine: layer choice, formulas, grid exactness, sanity checks."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from RadAISegmentLib import saliency
from RadAISegmentLib.errors import InputError, LabelError
from RadAISegmentLib.image import Image
from saliency_fixtures import SPHERE_CARD, sphere_volume, train_tiny_unet


@pytest.fixture(scope="module")
def tiny_unet():
    return train_tiny_unet()


@pytest.fixture(scope="module")
def sphere_case():
    """A sphere of radius 5 mm at a known spot in a 80x72x46-voxel noisy volume, rotated 30 degrees about
    the k axis and anisotropic (0.8, 0.9, 1.25 mm), so paste-back must go through real geometry."""
    rng = np.random.default_rng(5)
    spacing = (0.8, 0.9, 1.25)
    centre_kji = np.array([22.0, 38.0, 36.0])
    shape = (46, 72, 80)
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    dist2 = (((i - centre_kji[2]) * spacing[0]) ** 2 + ((j - centre_kji[1]) * spacing[1]) ** 2
             + ((k - centre_kji[0]) * spacing[2]) ** 2)
    mask = dist2 <= 5.0 ** 2
    array = (rng.normal(0, 0.3, shape) + mask).astype(np.float32)
    angle = np.deg2rad(30)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image = Image(array, spacing_mm=spacing, origin_lps=(-20.0, 15.0, 40.0), direction_lps=direction)
    seed_ras = image.index_to_ras(centre_kji[::-1])
    return image, mask, seed_ras


def test_auto_layer_is_the_smallest_resolution_layer_for_monai_networks(tiny_unet):
    from monai.networks.nets import BasicUNet, DynUNet, UNet
    example = torch.zeros(1, 1, 32, 32, 32)
    assert saliency.find_target_layer(tiny_unet, example) == "bottleneck"
    unet = UNet(3, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0)
    records = saliency.record_spatial_sizes(unet, example)
    chosen = saliency.find_target_layer(unet, example)
    sizes = {name: int(np.prod(shape)) for name, shape, _ in records}
    assert sizes[chosen] == min(sizes.values()) == 8 ** 3
    assert chosen == "model.1.submodule.1.submodule"  # the bottleneck block, not the SkipConnection concat around it
    basic = BasicUNet(3, 1, 2, features=(4, 4, 8, 8, 16, 4))
    assert saliency.find_target_layer(basic, example) == "down_4"
    dyn = DynUNet(3, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2], filters=[4, 8, 16])
    assert saliency.find_target_layer(dyn, example) == "bottleneck"


def test_gradcampp_weights_follow_chattopadhay_formula():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (3, 2, 2, 2))
    g = rng.normal(0, 1, (3, 2, 2, 2))
    g[0, 0, 0, 0] = 0.0
    expected = []
    for c in range(3):
        total = a[c].sum()
        weight = 0.0
        for v in np.ndindex(2, 2, 2):
            denominator = 2 * g[c][v] ** 2 + total * g[c][v] ** 3
            alpha = g[c][v] ** 2 / denominator if denominator != 0 else 0.0
            weight += alpha * max(g[c][v], 0.0)
        expected.append(weight)
    got = saliency.gradcam_weights(torch.from_numpy(a), torch.from_numpy(g), plus_plus=True).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    plain = saliency.gradcam_weights(torch.from_numpy(a), torch.from_numpy(g), plus_plus=False).numpy()
    np.testing.assert_allclose(plain, g.reshape(3, -1).mean(axis=1), rtol=1e-12)


def test_normalise_map_is_relu_then_max_and_flags_all_zero():
    values, all_zero = saliency.normalise_map(np.array([-2.0, 0.0, 1.0, 4.0]))
    np.testing.assert_allclose(values, [0.0, 0.0, 0.25, 1.0])
    assert not all_zero
    zeros, all_zero = saliency.normalise_map(np.array([-1.0, -3.0]))
    assert all_zero and not zeros.any()


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_gradcam_map_lies_on_the_input_grid_and_on_the_sphere(tiny_unet, sphere_case, method):
    image, mask, seed_ras = sphere_case
    result = saliency.explain(image, tiny_unet, SPHERE_CARD, label="Sphere", seed_ras=seed_ras, method=method)
    assert result.map.same_grid(image) and result.map.array.dtype == np.float32
    assert result.map.array.min() >= 0.0 and result.map.array.max() == pytest.approx(1.0)
    meta = result.metadata
    assert meta["method"] == method and meta["label"] == 1 and meta["model_id"] == "tiny-spheres"
    assert meta["layer"] == saliency.find_target_layer(tiny_unet, torch.zeros(1, 1, 32, 32, 32))
    uniform_fraction = saliency.saliency_mass_near(image.with_array(np.ones(mask.shape, np.float32)), mask, 4.0)
    near = saliency.saliency_mass_near(result.map, mask, 4.0)
    # Grad-CAM concentrates on the sphere; Grad-CAM++ (all-positive weights) is known to spread more
    assert near > (0.8 if method == "gradcam" else 2.0 * uniform_fraction)
    # the crop is 32 mm around the seed: nothing outside a 32*sqrt(3)/2 + 1 mm radius
    points = image.index_to_lps(np.argwhere(np.ones(mask.shape, bool))[:, ::-1])
    seed_lps = image.index_to_lps(image.ras_to_index(seed_ras))
    far = (np.linalg.norm(points - seed_lps, axis=1) > 16 * np.sqrt(3) + 1.5).reshape(mask.shape)
    assert far.any() and not result.map.array[far].any()
    assert result.labelmap.same_grid(image)
    overlap = np.logical_and(result.labelmap.array > 0, mask).sum() / mask.sum()
    assert overlap > 0.7


def test_large_box_centres_a_window_on_the_target_and_tiles_when_asked(tiny_unet, sphere_case):
    image, mask, seed_ras = sphere_case
    large_box = saliency.explain(image, tiny_unet, SPHERE_CARD, seed_ras=seed_ras, box_mm=56.0)
    assert large_box.metadata["n_windows"] == 1  # the sphere fits one patch: one window centred on it
    assert saliency.saliency_mass_near(large_box.map, mask, 4.0) > 0.8
    tiled = saliency.explain(image, tiny_unet, SPHERE_CARD, seed_ras=seed_ras, box_mm=56.0, region="box", overlap=0.0)
    assert tiled.metadata["n_windows"] > 1 and tiled.map.same_grid(image)
    assert tiled.metadata["region_kind"] == "given" and tiled.metadata["crop_size_mm"] == [56.0] * 3
    assert 0.0 <= tiled.map.array.min() and tiled.map.array.max() <= 1.0
    whole = saliency.explain(image, tiny_unet, SPHERE_CARD)  # no seed: crop = predicted label's bounding box
    assert whole.map.same_grid(image)
    assert saliency.saliency_mass_near(whole.map, mask, 4.0) > 0.8


def test_randomising_weights_destroys_gradcam_map(tiny_unet, sphere_case):
    image, _, seed_ras = sphere_case
    check = saliency.randomization_check(partial(saliency.explain, image, card=SPHERE_CARD), tiny_unet, seed=3,
                                         seed_ras=seed_ras, method="gradcam")
    assert check["trained_vs_trained"] == pytest.approx(1.0)
    assert check["trained_vs_random"] < 0.5
    cascading = saliency.randomise_weights(tiny_unet, seed=3, cascading_layers=2)
    changed = [n for (n, p), (_, q) in zip(tiny_unet.named_parameters(), cascading.named_parameters()) if not torch.equal(p, q)]
    assert changed and "model.0.conv.weight" not in changed  # only the last layers, not the first


def test_smoothgrad_for_torchscript_is_labelled_seeded_and_passes_randomisation(tiny_unet, sphere_case):
    image, mask, seed_ras = sphere_case
    scripted = torch.jit.trace(tiny_unet, torch.zeros(1, 1, 32, 32, 32))
    result = saliency.explain(image, scripted, SPHERE_CARD, seed_ras=seed_ras, method="gradcam", n_samples=4)
    assert result.metadata["method"] == "smoothgrad" and result.metadata["requested_method"] == "gradcam"
    assert result.metadata["note"] == saliency.SMOOTHGRAD_NOTE and result.metadata["layer"] is None
    again = saliency.explain(image, scripted, SPHERE_CARD, seed_ras=seed_ras, method="gradcam", n_samples=4)
    np.testing.assert_array_equal(result.map.array, again.map.array)
    uniform = saliency.saliency_mass_near(image.with_array(np.ones(mask.shape, np.float32)), mask, 4.0)
    assert saliency.saliency_mass_near(result.map, mask, 4.0) > 3 * uniform
    check = saliency.randomization_check(partial(saliency.explain, image, card=SPHERE_CARD), tiny_unet, seed=3,
                                         seed_ras=seed_ras, method="smoothgrad", n_samples=4)
    assert check["trained_vs_trained"] < 1.0  # different noise seeds were used
    assert check["trained_vs_random"] < 0.75 * check["trained_vs_trained"]


def test_model_with_no_evidence_gives_zero_map_with_flag(sphere_case):
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)
            torch.nn.init.zeros_(self.conv.weight)
            torch.nn.init.zeros_(self.conv.bias)

        def forward(self, x):
            return self.conv(x)
    image, _, seed_ras = sphere_case
    result = saliency.explain(image, Constant(), SPHERE_CARD, seed_ras=seed_ras)
    assert result.metadata["all_zero"] and not result.map.array.any()
    assert result.map.same_grid(image)


def test_saliency_mass_near_uses_physical_distance():
    spacing = (1.0, 2.0, 3.0)
    shape = (9, 11, 13)
    mask = np.zeros(shape, bool)
    mask[4, 5, 6] = True
    image = Image(np.ones(shape, np.float32), spacing_mm=spacing)
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    distance = np.sqrt(((i - 6) * 1.0) ** 2 + ((j - 5) * 2.0) ** 2 + ((k - 4) * 3.0) ** 2)
    for margin in (0.0, 2.5, 6.0):
        assert saliency.saliency_mass_near(image, mask, margin) == pytest.approx((distance <= margin).sum() / mask.size)


def test_label_and_method_errors_name_the_remedy(tiny_unet, sphere_case):
    image, _, seed_ras = sphere_case
    with pytest.raises(LabelError, match="1=Sphere"):
        saliency.explain(image, tiny_unet, SPHERE_CARD, label="Liver", seed_ras=seed_ras)
    with pytest.raises(InputError, match="gradcam"):
        saliency.explain(image, tiny_unet, SPHERE_CARD, method="lime", seed_ras=seed_ras)
    promptable = {**SPHERE_CARD, "task": "promptable-lesion"}
    with pytest.raises(InputError, match="seed"):
        saliency.explain(image, tiny_unet, promptable)
