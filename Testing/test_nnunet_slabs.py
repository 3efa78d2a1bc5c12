"""The slabbed (memory-lean) forward pass of nnU-Net's plain U-Net equals the network's own forward, is used
only where it is the same network, and runs in the pipeline's bfloat16 PyTorch path.

Networks come from ``dynamic_network_architectures`` (nnU-Net's architecture package) and from nnU-Net's own
planning (``nnunet_builders``: a CT plan and an anisotropic MR plan whose first stage has 1×3×3 kernels).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import nnunet_builders as builders
from RadAISegmentLib import nnunet_slabs
from RadAISegmentLib.nnunet_slabs import SlabbedPlainUNet, run_stage, slabbed_network


def plain_unet(kernel_first=(3, 3, 3), stride_last=(2, 2, 2), deep_supervision=False, norm=nn.InstanceNorm3d,
               features=(4, 8, 16)):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    torch.manual_seed(0)
    network = PlainConvUNet(1, len(features), list(features), nn.Conv3d,
                            [list(kernel_first)] + [[3, 3, 3]] * (len(features) - 1),
                            [[1, 1, 1], list(stride_last)] + [[2, 2, 2]] * (len(features) - 2), 2, 3, 2,
                            conv_bias=True, norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True},
                            nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True},
                            deep_supervision=deep_supervision)
    for module in network.modules():                 # norms that are not the identity, so that errors show
        if isinstance(module, (nn.InstanceNorm3d, nn.BatchNorm3d)):
            nn.init.normal_(module.weight, 1.0, 0.3)
            nn.init.normal_(module.bias, 0.0, 0.3)
    return network.eval()


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(ours - theirs) / torch.linalg.vector_norm(theirs))


@pytest.mark.parametrize("rows", [1, 3, 7, 16, 100])
@pytest.mark.parametrize("kernel_first, stride_last", [((3, 3, 3), (2, 2, 2)), ((1, 3, 3), (1, 2, 2))],
                         ids=["isotropic", "anisotropic"])
def test_slabbed_pass_equals_the_networks_forward(rows, kernel_first, stride_last):
    """Slabs of any height (one row, not dividing the window, more than the window) give the network's
    logits up to float32 rounding, channels-last or not."""
    network = plain_unet(kernel_first, stride_last)
    window = torch.randn(1, 1, 24, 20, 16, generator=torch.Generator().manual_seed(1)) * 3 + 1
    slabbed = slabbed_network(network, 1, (24, 20, 16), rows=rows, min_features=1)
    assert isinstance(slabbed, SlabbedPlainUNet)
    with torch.no_grad():
        theirs = network(window)
        ours = slabbed(window)
        ours_channels_last = slabbed(window.contiguous(memory_format=torch.channels_last_3d))
    assert ours.shape == theirs.shape
    assert relative_difference(ours, theirs) < 1e-5
    assert relative_difference(ours_channels_last, theirs) < 1e-5


def test_slabbed_pass_of_nnunet_planned_networks():
    """Networks as nnU-Net's planner makes them (CT; MR with transposed, anisotropic plans), at their patch."""
    from RadAISegmentLib.models.loaders import load_model_folder
    for case in (builders.ct_case(), builders.mr_case()):
        part = load_model_folder(case.model.folder).extras["nnunet_parts"][0]
        network, patch = part.networks[0].eval(), tuple(part.config.patch_size)
        slabbed = slabbed_network(network, 1, patch, rows=5, min_features=1)
        assert slabbed is not None, case.modality
        window = torch.randn((1, 1) + patch, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            assert relative_difference(slabbed(window), network(window)) < 1e-5, case.modality


def test_bfloat16_slabbed_pass_is_closer_to_float32_than_the_network():
    """Under CPU bfloat16 autocast the slabbed pass departs from the float32 logits less than the network's
    own bfloat16 forward does (the image is not rounded to bfloat16, the head runs in float32, norms' statistics
    are float32), and its logits are float16."""
    network = plain_unet(features=(8, 16, 32))
    window = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(3))
    slabbed = slabbed_network(network, 1, (32, 32, 32), rows=6, min_features=1)
    with torch.no_grad():
        reference = network(window)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            theirs, ours = network(window).float(), slabbed(window).float()
    assert relative_difference(ours, reference) < relative_difference(theirs, reference)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert slabbed(window).dtype == torch.float16


def test_features_the_head_reads_are_float32_under_bfloat16():
    """The last block of the last stage (the features the head reads) runs and stays in float32 under bfloat16
    autocast: its output is float32 and closer to the float32 stage than a stage computed in bfloat16 alone."""
    torch.manual_seed(4)
    blocks = []
    for channels_in in (6, 8):
        norm = nn.InstanceNorm3d(8, affine=True)
        nn.init.normal_(norm.weight, 1, 0.3)
        nn.init.normal_(norm.bias, 0, 0.3)
        blocks.append((nn.Conv3d(channels_in, 8, 3, padding=1), norm, nn.LeakyReLU(0.01)))
    x = torch.randn(1, 6, 20, 12, 10)
    with torch.no_grad():
        reference = run_stage(blocks, lambda lo, hi: x[:, :, lo:hi], 20, rows=6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lean = run_stage(blocks, lambda lo, hi: x[:, :, lo:hi], 20, rows=6, last_float32=True)
            rounded = run_stage(blocks, lambda lo, hi: x[:, :, lo:hi], 20, rows=6)
    assert reference.dtype == lean.dtype == torch.float32 and rounded.dtype == torch.bfloat16
    assert relative_difference(lean, reference) < 0.9 * relative_difference(rounded.float(), reference)


def test_instance_norm_statistics_merged_from_slabs():
    """One convolution stage read through a row source: the merged statistics give torch's instance norm."""
    conv = nn.Conv3d(2, 3, 3, padding=1)
    norm = nn.InstanceNorm3d(3, affine=True)
    nn.init.normal_(norm.weight, 1, 0.5)
    nn.init.normal_(norm.bias, 0, 0.5)
    activation = nn.LeakyReLU(0.01)
    x = torch.randn(1, 2, 11, 6, 5) * 50 + 1000          # a large mean: a one-pass variance would lose digits
    with torch.no_grad():
        ours = run_stage([(conv, norm, activation)], lambda lo, hi: x[:, :, lo:hi], 11, rows=4)
        theirs = activation(norm(conv(x)))
    assert relative_difference(ours, theirs) < 1e-5


@pytest.mark.parametrize("change", ["deep_supervision", "batch_norm", "residual", "training", "forward", "narrow"])
def test_other_networks_are_left_as_they_are(change):
    """Anything but a plain U-Net in eval mode whose forward the slabbed pass reproduces runs as it is."""
    if change == "deep_supervision":
        network = plain_unet(deep_supervision=True)
    elif change == "batch_norm":
        network = plain_unet(norm=nn.BatchNorm3d)
    elif change == "residual":
        from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
        network = ResidualEncoderUNet(1, 3, [4, 8, 16], nn.Conv3d, 3, [1, 2, 2], [1, 1, 1], 2, [1, 1],
                                      norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU).eval()
    elif change == "training":
        network = plain_unet().train()
    elif change == "forward":                         # the same modules, another computation: the probe sees it
        network = plain_unet()
        forward = network.forward
        network.forward = lambda x: forward(x) * 1.01
    else:                                             # 4 features at full resolution: run whole by default
        network = plain_unet()
        assert slabbed_network(network, 1, (24, 24, 24), min_features=4) is not None
        assert slabbed_network(network, 1, (24, 24, 24)) is None
        return
    assert slabbed_network(network, 1, (24, 24, 24), min_features=1) is None


def test_pipeline_runs_the_slabbed_pass_in_bfloat16_only(monkeypatch):
    """``--precision bf16 --runtime torch`` runs every window through the slabbed pass (labels agree with
    nnU-Net's at Dice ≥ 0.99); float32 PyTorch keeps the network's own forward (nnU-Net's labels exactly)."""
    from RadAISegmentLib.inference import segment_image
    from RadAISegmentLib.models.loaders import load_model_folder
    from test_nnunet_equality import dice_per_label, nnunet_labels, radai_image
    monkeypatch.setenv("RADAI_TORCH_THREADS", "1")
    monkeypatch.setattr(nnunet_slabs, "SLAB_MIN_FEATURES", 1)       # the test network has 8 features
    case = builders.ct_case()
    model = load_model_folder(case.model.folder)
    model = dataclasses.replace(model, extras=dict(model.extras, nnunet=dict(model.extras["nnunet"],
                                                                             use_mirroring=False)))
    calls = []
    original = SlabbedPlainUNet.forward
    monkeypatch.setattr(SlabbedPlainUNet, "forward", lambda self, x: calls.append(x.dtype) or original(self, x))
    theirs = nnunet_labels(case, False)
    lean = segment_image(radai_image(case), model, device="cpu", crop_foreground=False, runtime="torch",
                         precision="bf16")
    windows = len(calls)
    assert windows >= 1
    assert min(dice_per_label(lean.array, theirs).values()) >= 0.99
    exact = segment_image(radai_image(case), model, device="cpu", crop_foreground=False, runtime="torch",
                          precision="fp32")
    assert len(calls) == windows                       # float32: the network's own forward
    assert np.array_equal(exact.array, theirs)


def test_slabbed_pass_is_checked_once_per_network(monkeypatch):
    network = plain_unet()
    probes = []
    original = nnunet_slabs._probe_agrees
    monkeypatch.setattr(nnunet_slabs, "_probe_agrees", lambda *a: probes.append(1) or original(*a))
    assert slabbed_network(network, 1, (24, 24, 24), min_features=1) is not None
    assert slabbed_network(network, 1, (24, 24, 24), min_features=1) is not None and len(probes) == 1


def test_checked_network_can_be_freed():
    """The record of a checked network does not keep the network (and its weights) alive."""
    import gc
    import weakref
    network = plain_unet()
    slabbed = slabbed_network(network, 1, (24, 24, 24), min_features=1)
    assert slabbed is not None
    alive = weakref.ref(network)
    del network, slabbed
    gc.collect()
    assert alive() is None
