"""The pieces of RadAI's nnU-Net pipeline against nnU-Net's own functions (nnunetv2 from PyPI), value for
value: image resampling, window positions, Gaussian, logit resampling + argmax (slab by slab), orientation,
plans/checkpoint reading, combining parts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from RadAISegmentLib import nnunet_resample as resample
from RadAISegmentLib.nnunet_inference import (canonical_axes, nnunet_gaussian, oriented, unoriented,
                                              window_starts)

RESAMPLING = [  # (input shape, current spacing, target spacing): 3D; anisotropic input; anisotropic target
    ((1, 13, 17, 11), (2.0, 1.0, 1.3), (1.5, 1.25, 1.25)),
    ((1, 7, 19, 16), (4.0, 1.0, 0.9), (3.0, 1.3, 1.1)),
    ((2, 15, 12, 14), (1.0, 1.0, 1.0), (3.5, 0.9, 1.0)),
]


@pytest.mark.parametrize("shape, current, target", RESAMPLING)
def test_image_resampling_equals_nnunet(shape, current, target):
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    new = resample.new_shape(shape[1:], current, target)
    theirs = resample_data_or_seg_to_shape(data, new, current, target, is_seg=False, order=3, order_z=0,
                                           force_separate_z=None)
    ours = resample.resample_image(data.copy(), new, current, target, order=3, order_z=0)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("shape, current, target", RESAMPLING)
def test_labels_from_streamed_logits_equal_nnunet_export(shape, current, target):
    """nnU-Net resamples every class's float16 logits to the input's shape and takes the argmax; the
    exporter gets the same labels from model-resolution rows arriving a few at a time."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
    heads = 5
    model_shape = resample.new_shape(shape[1:], current, target)
    rng = np.random.default_rng(1)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(heads,) + tuple(model_shape)), 2), 3) / 4.0
    logits = torch.from_numpy(smooth.astype(np.float16))
    resampled = resample_data_or_seg_to_shape(logits.numpy(), shape[1:], target, current, is_seg=False, order=1,
                                              order_z=0, force_separate_z=None)
    theirs = torch.from_numpy(resampled).float().softmax(0).argmax(0).numpy()
    settings = {"order": 1, "order_z": 0, "force_separate_z": None, "anisotropy_threshold": 3.0}
    maps = resample.logits_axis_maps(model_shape, shape[1:], target, current, settings)
    exporter = resample.LabelExporter(maps, shape[1:], heads)
    for start in range(0, model_shape[0], 3):
        exporter.add(start, logits[:, start:start + 3])
    assert np.array_equal(exporter.labels, theirs)
    mixed = np.count_nonzero(resample._homogeneous(logits.argmax(0).numpy(), maps, np.arange(shape[1]), 0) < 0)
    assert 0 < mixed < theirs.size                    # both paths (copied and interpolated labels) were taken


def test_nearest_axis_equals_map_coordinates():
    from scipy.ndimage import map_coordinates
    for size_in, size_out in ((7, 19), (19, 7), (10, 13), (5, 5)):
        coordinates = float(size_in) / size_out * (np.arange(size_out) + 0.5) - 0.5
        expected = map_coordinates(np.arange(size_in, dtype=float), coordinates[None], order=0, mode="nearest")
        assert np.array_equal(resample.axis_nearest(size_in, size_out), expected.astype(int))


def test_windows_and_gaussian_equal_nnunet():
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
    for image, patch in (((128, 300, 64), (128, 96, 64)), ((97, 160, 211), (40, 56, 48)), ((50, 50, 50), (24, 40, 36))):
        expected = compute_steps_for_sliding_window(image, patch, 0.5)
        assert [window_starts(s, p, 0.5) for s, p in zip(image, patch)] == expected
    for patch in ((24, 40, 40), (12, 32, 32), (7, 9, 11)):
        theirs = compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10, device=torch.device("cpu"))
        assert theirs.dtype == nnunet_gaussian(patch).dtype == torch.float16
        assert torch.equal(nnunet_gaussian(patch), theirs)


def test_canonical_orientation_round_trip():
    """An image stored with flipped / permuted axes is presented to the network in RAS voxel order, and
    labels come back onto its own voxels."""
    array = np.arange(4 * 5 * 6).reshape(4, 5, 6)                        # [k, j, i]
    lps = np.diag([-1.0, 1.0, 1.0])[:, [1, 0, 2]]                        # i → P, j → R, k → S
    order, positive = canonical_axes(lps)
    ras_view = oriented(array, order, positive)
    assert np.array_equal(unoriented(ras_view, order, positive), array)
    assert order == [1, 0, 2] and positive == [True, False, True]
    assert ras_view.shape == (4, 6, 5)


def test_checkpoint_with_numpy_numbers_loads_without_trust(tmp_path):
    from RadAISegmentLib.models.nnunet import read_checkpoint
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {"w": torch.ones(2)}, "logging": {"dice": [np.float64(0.5), np.float32(1)]},
                "_best_ema": np.float64(0.9), "init_args": {"device": torch.device("cpu"), "configuration": "3d_fullres"},
                "inference_allowed_mirroring_axes": (0, 1, 2)}, path)
    loaded = read_checkpoint(path, trusted=False)
    assert torch.equal(loaded["network_weights"]["w"], torch.ones(2))
    assert float(loaded["_best_ema"]) == 0.9


def test_legacy_plans_build_the_same_network():
    """Plans written before nnU-Net 2.4 (``UNet_class_name`` etc., as TotalSegmentator's) give the network
    nnU-Net's own backwards-compatibility code builds."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from RadAISegmentLib.models.nnunet import build_network, read_configuration
    legacy = {"spacing": [1.5, 1.5, 1.5], "patch_size": [32, 32, 32], "normalization_schemes": ["CTNormalization"],
              "use_mask_for_norm": [False], "UNet_class_name": "PlainConvUNet", "UNet_base_num_features": 8,
              "unet_max_num_features": 32, "n_conv_per_stage_encoder": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2],
              "num_pool_per_axis": [2, 2, 2], "pool_op_kernel_sizes": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
              "conv_kernel_sizes": [[3, 3, 3]] * 3, "data_identifier": "x", "preprocessor_name": "DefaultPreprocessor",
              "batch_size": 2, "resampling_fn_data": "resample_data_or_seg_to_shape",
              "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}}
    plans = {"configurations": {"3d_fullres": legacy}, "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "foreground_intensity_properties_per_channel": {"0": {"mean": 0, "std": 1}}}
    ours = build_network(read_configuration(json.loads(json.dumps(plans)), "3d_fullres", "test"), 1, 4)
    manager = PlansManager(json.loads(json.dumps(plans)))
    config = manager.get_configuration("3d_fullres")
    theirs = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                    config.network_arch_init_kwargs_req_import, 1, 4, deep_supervision=False)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), theirs.eval()(x))


@pytest.mark.parametrize("quantum", [0.0, 0.25], ids=["smooth", "ties"])
def test_pruned_boundary_labels_equal_interpolating_every_class(quantum):
    """At boundary voxels the exporter interpolates only the classes whose largest corner logit reaches the
    largest smallest-corner logit (the others cannot win or tie): the labels are those of interpolating
    all 25 classes, including float16 ties (logits on a 0.25 grid), where the lowest class wins."""
    heads, model_shape, out_shape = 25, (6, 9, 8), (13, 20, 17)
    rng = np.random.default_rng(3)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(heads,) + model_shape), 2), 3) / 3.0
    if quantum:
        smooth = np.round(smooth / quantum) * quantum
    logits = torch.from_numpy(smooth.astype(np.float16))
    maps = [resample.AxisMap(m, o, True) for m, o in zip(model_shape, out_shape)]
    table = logits.permute(1, 2, 3, 0).reshape(-1, heads)
    voxels = tuple(np.stack(np.meshgrid(*[np.arange(o) for o in out_shape], indexing="ij")).reshape(3, -1))
    corners = resample._corners(maps, voxels, 0, model_shape[1:])
    every = resample._interpolated_labels(table, corners, torch.float16)
    pruned = resample._pruned_labels(table, corners, torch.float16)
    assert torch.equal(pruned, every)
    values = torch.stack([table.index_select(0, flat) for flat, _ in corners]).float()
    remaining = (values.max(0).values >= values.min(0).values.max(1, keepdim=True).values).sum(1)
    assert (remaining <= resample.CANDIDATES).any() and (remaining > resample.CANDIDATES).any()   # both paths


@pytest.mark.parametrize("shift", [1, 3, 4, 7, 9])
def test_buffers_slide_in_place_as_a_concatenation_would(shift):
    from RadAISegmentLib.sliding import slide_along
    buffer = torch.arange(2 * 8 * 3, dtype=torch.float16).reshape(2, 8, 3)
    expected = torch.cat([buffer[:, shift:], torch.zeros((2, min(shift, 8), 3), dtype=torch.float16)], 1)[:, :8]
    address = buffer.data_ptr()
    slide_along(buffer, 1, shift)
    assert torch.equal(buffer, expected) and buffer.data_ptr() == address



@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_window_sums_are_nnunets_arithmetic_without_a_whole_float32_copy(dtype):
    """``add_weighted`` gives nnU-Net's float16 sums (product in float32, added to float16) a few classes at a
    time, for a float32 window and for a bfloat16 one (whose float32 copy is never made whole)."""
    from RadAISegmentLib.nnunet_inference import ADD_CLASSES, add_weighted
    rng = np.random.default_rng(3)
    heads = ADD_CLASSES * 2 + 1                     # a last, partial group of classes
    prediction = torch.from_numpy(rng.normal(scale=4, size=(heads, 6, 5, 7)).astype(np.float32)).to(dtype)
    gaussian = nnunet_gaussian((6, 5, 7))
    start = torch.from_numpy(rng.normal(size=(heads, 6, 9, 7)).astype(np.float16))
    expected = start.clone()
    weighted = prediction.float() * gaussian        # nnU-Net: prediction *= gaussian; logits[sl] += prediction
    expected[:, :, 2:7] += weighted
    ours = start.clone()
    add_weighted(ours[:, :, 2:7], prediction, gaussian)
    assert ours.dtype == torch.float16
    assert torch.equal(ours, expected)
    assert not torch.equal(ours, start)
