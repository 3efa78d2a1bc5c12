"""nnU-Net's plain U-Net with its full-resolution stages computed in slabs: the lean CPU forward pass.

In a ``PlainConvUNet`` window (``dynamic_network_architectures``, as nnU-Net v2 and TotalSegmentator build
it) the largest activations are those of the first encoder stage and the last decoder stage: at 3 mm,
TotalSegmentator's width (32 features) and a 128³ window, each is 32 channels × 128³ (128 MiB in bfloat16),
and the last stage holds the upsampled map, the skip, their 64-channel concatenation, a convolution's output
and its instance norm's at once (~1.0 GiB above the process, measured). Here those two stages run slab by slab
along the window's first axis (:data:`SLAB_ROWS` rows, plus the convolutions' halo rows):

* each convolution's raw output is written into one buffer per stage, its instance norm's statistics
  (per channel, over the whole window, as the norm needs) merged from the slabs' means and variances
  (PyTorch's batch-norm statistics kernel per slab, float accumulation; Chan's parallel formula, float64);
* the next convolution reads the previous buffer normalised and activated slab by slab (halo included, one
  fused batch-norm pass with the window's statistics), so a normalised copy, a concatenation or an upsampled
  map of the whole window never exists;
* the last stage's input slab is made on the fly: the transposed convolution (kernel = stride, so output rows
  depend on whole input rows only) of the rows needed, concatenated with the skip's rows;
* under bfloat16 autocast the first convolution (one input channel: cheap), the last one (it makes the features
  the head reads; kept in float32) and the 1×1×1 head run in float32, so the image is never rounded to
  bfloat16, nor are the features that decide the labels, and the logits are kept as float16
  (:func:`_float32_rows`, :meth:`SlabbedPlainUNet._head`).

Every convolution is computed once (no recomputation); only the halo rows of the cheap transposed convolution
and of the normalisation are done twice. Measured on one 128³ window at 32 features, bfloat16, 2 cores: 0.46 GiB
above the process instead of 0.99, 4.0 s instead of 4.2 s (the float32 last convolution costs ~0.4 s of it). The arithmetic is the network's own (same weights,
convolutions, norms, activations), so logits equal the network's forward up to float rounding (float32:
~2e-5 relative; the variance is merged from slabs, and oneDNN may pick other kernels for a slab). It is used
where labels already differ from nnU-Net's at near-ties (``--precision bf16 --runtime torch``): float32
PyTorch keeps nnU-Net's own forward, and with it nnU-Net's labels exactly.

Any other network (residual encoders, deep supervision on, other norms, strided first convolution, fewer than
:data:`SLAB_MIN_FEATURES` features at full resolution, ...) is left as it is: :func:`slabbed_network` returns
None. A probe (a small random input through both, float32) must agree before the slabbed pass is used.
"""
from __future__ import annotations

import logging
import weakref
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOG = logging.getLogger(__name__)

#: Rows (along the window's first axis) computed at once in the full-resolution stages.
SLAB_ROWS = 16
#: Narrower networks (features of the first stage) run whole: their full-resolution maps are small (8 features
#: at 128³: 32 MiB in bfloat16) and per-slab overheads made a window ~10 % slower; at 32 features a window
#: needs 0.46× the activations and is a little faster (4.0 s vs 4.2, with its float32 last convolution).
SLAB_MIN_FEATURES = 16
#: Relative L2 difference of the probe's logits (float32) within which the slabbed pass is the network.
PROBE_TOLERANCE = 1e-4
ACTIVATIONS = (nn.LeakyReLU, nn.ReLU)
Block = tuple[nn.Conv3d, nn.InstanceNorm3d, nn.Module]
RowSource = Callable[[int, int], torch.Tensor]
#: Per network, per (channels, patch, rows, min features): whether its slabbed pass may be used (the probe runs
#: once per network). Only booleans are kept: a value holding the network would keep it alive for ever.
_CHECKED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _leaves(module: nn.Module):
    """The modules of a conv-block stage in the order its forward calls them (``StackedConvBlocks.convs``,
    ``ConvDropoutNormReLU.all_modules``, plain ``nn.Sequential``)."""
    if hasattr(module, "all_modules"):
        module = module.all_modules
    elif hasattr(module, "convs"):
        module = module.convs
    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _leaves(child)
    else:
        yield module


def conv_blocks(stage: nn.Module) -> Optional[list[Block]]:
    """``[(conv, norm, activation), ...]`` when ``stage`` is exactly that sequence (3D convolutions with odd
    kernels, stride 1, zero padding of half the kernel; instance norms with per-window statistics; dropout
    only as identity), else None."""
    leaves = [m for m in _leaves(stage) if not (isinstance(m, nn.modules.dropout._DropoutNd) and not m.training)]
    if not leaves or len(leaves) % 3:
        return None
    blocks = []
    for conv, norm, activation in zip(leaves[0::3], leaves[1::3], leaves[2::3]):
        if not (type(conv) is nn.Conv3d and type(norm) is nn.InstanceNorm3d and type(activation) in ACTIVATIONS):
            return None
        if conv.padding_mode != "zeros" or conv.groups != 1 or set(conv.stride) != {1} or set(conv.dilation) != {1}:
            return None
        if any(k % 2 == 0 or p != k // 2 for k, p in zip(conv.kernel_size, conv.padding)):
            return None
        if norm.track_running_stats or norm.num_features != conv.out_channels:
            return None
        blocks.append((conv, norm, activation))
    return blocks


def slab_mean_variance(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and (biased) variance of ``rows`` [N, C, ...], float32, from PyTorch's
    batch-norm statistics kernel (float accumulation for bfloat16 rows when given float32 weights; one fused
    pass over the rows in their own layout, ~10× faster than ``var_mean`` of a float32 copy)."""
    ones = torch.ones(rows.shape[1], dtype=torch.float32, device=rows.device)
    means, variances = [], []
    for n in range(rows.shape[0]):
        _, mean, inverse_std = torch.native_batch_norm(rows[n:n + 1], ones, torch.zeros_like(ones), None, None,
                                                       True, 0.0, 0.0)
        inverse_std = inverse_std.double()
        variance = torch.where(inverse_std > 0, 1.0 / inverse_std.clamp_min(1e-300) ** 2, 0.0)
        means.append(mean.float())
        variances.append(variance.float())
    return torch.stack(means), torch.stack(variances)


class _Statistics:
    """Per-channel mean and variance of a whole window, merged from slabs (Chan et al.), float64."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, None, None

    def add(self, rows: torch.Tensor) -> None:
        mean, variance = slab_mean_variance(rows)
        count = rows[0, 0].numel()
        mean, m2 = mean.double(), variance.double() * count
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * count / total)
        self.count = total

    def norm_arguments(self, norm: nn.InstanceNorm3d) -> tuple:
        """``(mean, variance, weight, bias, eps)`` per sample: with them ``F.batch_norm`` (inference mode) is the
        instance norm's output (one fused pass, whatever the precision of the rows)."""
        mean, variance = self.mean.float(), (self.m2 / self.count).float()
        weight, bias = (norm.weight, norm.bias) if norm.affine else (None, None)
        return mean, variance, weight, bias, norm.eps


def _normalised(rows: torch.Tensor, arguments: tuple, activation: nn.Module) -> torch.Tensor:
    """The norm and activation of ``rows`` (a new tensor, the rows' dtype)."""
    mean, variance, weight, bias, eps = arguments
    pieces = [activation(F.batch_norm(rows[n:n + 1], mean[n], variance[n], weight, bias, False, 0.0, eps))
              for n in range(rows.shape[0])]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def _convolved_rows(conv: nn.Conv3d, source: RowSource, start: int, stop: int, depth: int) -> torch.Tensor:
    """Output rows ``start:stop`` of ``conv`` over a map of ``depth`` rows given by ``source(lo, hi)``."""
    halo = conv.padding[0]
    low, high = max(start - halo, 0), min(stop + halo, depth)
    rows = source(low, high)
    if low - (start - halo) or (stop + halo) - high:
        rows = F.pad(rows, (0, 0, 0, 0, low - (start - halo), (stop + halo) - high))
    return F.conv3d(rows, conv.weight, conv.bias, 1, (0, conv.padding[1], conv.padding[2]))


def _float32_rows(conv: nn.Conv3d, source: RowSource, start: int, stop: int, depth: int,
                  keep_float32: bool = False) -> torch.Tensor:
    """:func:`_convolved_rows` in float32 whatever the autocast (``source`` is read under the caller's
    autocast), its output in the autocast's precision unless ``keep_float32``. Used under bfloat16 where
    rounding decides labels: the network's first convolution reads the image itself, which bfloat16 would round
    to 8 significant bits (~0.4 %, a few HU after CT normalisation), and the last convolution makes the
    features the head reads (:class:`SlabbedPlainUNet`)."""
    device = conv.weight.device.type
    autocast = torch.is_autocast_enabled(device)
    dtype = torch.get_autocast_dtype(device)

    def float32_source(lo: int, hi: int) -> torch.Tensor:
        with torch.autocast(device, dtype=dtype, enabled=autocast):
            return source(lo, hi).float()

    with torch.autocast(device, enabled=False):
        out = _convolved_rows(conv, float32_source, start, stop, depth)
    return out.to(dtype) if autocast and not keep_float32 else out


def run_stage(blocks: Sequence[Block], source: RowSource, depth: int, rows: int = SLAB_ROWS,
              first_float32: bool = False, last_float32: bool = False) -> torch.Tensor:
    """The stage's output (the last block's normalised activations, one tensor) over a map of ``depth`` rows
    read through ``source(lo, hi)``, slab by slab (module docstring). ``source`` is read during the first
    block only; ``first_float32``: that block's convolution in float32 (:func:`_float32_rows`);
    ``last_float32``: the last block's convolution in float32 and its output (normalised) kept in float32."""
    previous = buffer_in = None
    for number, (conv, norm, activation) in enumerate(blocks):
        if previous is not None:
            buffer_in, arguments, act_in = previous

            def source(lo: int, hi: int, buffer_in=buffer_in, arguments=arguments, act_in=act_in):
                return _normalised(buffer_in[:, :, lo:hi], arguments, act_in)
        statistics, buffer = _Statistics(), None
        for start in range(0, depth, rows):
            stop = min(start + rows, depth)
            if last_float32 and number == len(blocks) - 1:
                out = _float32_rows(conv, source, start, stop, depth, keep_float32=True)
            elif first_float32 and number == 0:
                out = _float32_rows(conv, source, start, stop, depth)
            else:
                out = _convolved_rows(conv, source, start, stop, depth)
            if buffer is None:
                shape = (out.shape[0], out.shape[1], depth) + tuple(out.shape[3:])
                layout = torch.channels_last_3d if out.is_contiguous(memory_format=torch.channels_last_3d) \
                    and not out.is_contiguous() else torch.contiguous_format
                buffer = torch.empty(shape, dtype=out.dtype, device=out.device, memory_format=layout)
            buffer[:, :, start:stop] = out
            statistics.add(out)
            del out
        if number == 0:                                 # let go of the first block's input (e.g. the skip)
            getattr(source, "release", lambda: None)()
        source = previous = buffer_in = None            # and of the previous block's buffer
        previous = (buffer, statistics.norm_arguments(norm), activation)
        del buffer
    buffer, arguments, activation = previous
    for start in range(0, depth, rows):                 # the last block normalised in place
        buffer[:, :, start:start + rows] = _normalised(buffer[:, :, start:start + rows], arguments, activation)
    return buffer


class _UpsampledWithSkip:
    """Rows of ``cat(transposed_conv(low_res), skip)``, made on demand (kernel = stride: output row ``r`` comes
    from input row ``r // stride`` only). :meth:`release` drops both inputs."""

    def __init__(self, transposed: nn.ConvTranspose3d, low_res: torch.Tensor, skip: torch.Tensor) -> None:
        self.transposed, self.low_res, self.skip = transposed, low_res, skip

    def __call__(self, lo: int, hi: int) -> torch.Tensor:
        stride = self.transposed.stride[0]
        first, last = lo // stride, -(-hi // stride)
        up = self.transposed(self.low_res[:, :, first:last])[:, :, lo - first * stride:hi - first * stride]
        return torch.cat((up, self.skip[:, :, lo:hi]), 1)

    def release(self) -> None:
        self.low_res = self.skip = None


def _transposed_ok(module: nn.Module) -> bool:
    return (type(module) is nn.ConvTranspose3d and tuple(module.kernel_size) == tuple(module.stride)
            and set(module.padding) == {0} and set(module.output_padding) == {0} and set(module.dilation) == {1}
            and module.groups == 1)


class SlabbedPlainUNet(nn.Module):
    """A ``PlainConvUNet`` (deep supervision off) whose first encoder stage and last decoder stage run in slabs
    (module docstring); the same weights, not a copy."""

    def __init__(self, network: nn.Module, first: list[Block], last: list[Block], rows: int = SLAB_ROWS) -> None:
        super().__init__()
        self.network, self.first, self.last, self.rows = network, first, last, rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoder, decoder = self.network.encoder, self.network.decoder
        depth = x.shape[2]
        skips = [run_stage(self.first, lambda lo, hi: x[:, :, lo:hi], depth, self.rows, first_float32=True)]
        for stage in list(encoder.stages)[1:]:
            skips.append(stage(skips[-1]))
        low_res = skips.pop()
        last = len(decoder.stages) - 1
        for s in range(last):                           # each skip and input let go of as soon as it is used
            upsampled = decoder.transpconvs[s](low_res)
            low_res = decoder.stages[s](torch.cat((upsampled, skips.pop()), 1))
            del upsampled
        source = _UpsampledWithSkip(decoder.transpconvs[last], low_res, skips.pop())
        del low_res
        features = run_stage(self.last, source, depth, self.rows, last_float32=True)
        del source
        return self._head(decoder.seg_layers[-1], features)

    def _head(self, head: nn.Module, features: torch.Tensor) -> torch.Tensor:
        """The 1×1×1 segmentation head computed in float32 from the float32 features (under bfloat16 autocast
        too), slab by slab, and kept as float16, the precision of nnU-Net's sums of window logits (11
        significant bits, where bfloat16 logits have 8 and would decide near-ties by their own rounding); as
        many bytes as bfloat16 logits. Without autocast: the head itself (float32 logits, as the network's)."""
        device = features.device.type
        if type(head) is not nn.Conv3d or not torch.is_autocast_enabled(device):
            return head(features)
        logits = None
        with torch.autocast(device, enabled=False):
            for start in range(0, features.shape[2], self.rows):
                rows = head(features[:, :, start:start + self.rows].float())
                if logits is None:
                    logits = torch.empty((rows.shape[0], rows.shape[1], features.shape[2]) + tuple(rows.shape[3:]),
                                         dtype=torch.float16, device=rows.device,
                                         memory_format=torch.channels_last_3d)
                logits[:, :, start:start + self.rows] = rows
        return logits


def _plain_unet_blocks(network: nn.Module) -> Optional[tuple[list[Block], list[Block]]]:
    encoder, decoder = getattr(network, "encoder", None), getattr(network, "decoder", None)
    if encoder is None or decoder is None or getattr(encoder, "stem", None) is not None:
        return None
    if not getattr(encoder, "return_skips", False) or getattr(decoder, "deep_supervision", True):
        return None
    stages, decoder_stages = getattr(encoder, "stages", None), getattr(decoder, "stages", None)
    transposed, heads = getattr(decoder, "transpconvs", None), getattr(decoder, "seg_layers", None)
    if stages is None or decoder_stages is None or transposed is None or heads is None:
        return None
    if len(stages) < 2 or len(decoder_stages) != len(stages) - 1 or not _transposed_ok(transposed[-1]):
        return None
    first, last = conv_blocks(stages[0]), conv_blocks(decoder_stages[-1])
    return (first, last) if first and last else None


def _probe_agrees(network: nn.Module, slabbed: SlabbedPlainUNet, in_channels: int, patch: Sequence[int]) -> bool:
    """A small random window through the network and its slabbed pass (float32, slabs of a few rows)."""
    factor = [1, 1, 1]
    for stride in getattr(network.encoder, "strides", []):
        stride = list(stride) if isinstance(stride, (list, tuple)) else [stride] * 3
        factor = [f * int(s) for f, s in zip(factor, stride)]
    # the smallest window the network takes, doubled along the slab axis so that the deepest norms see two voxels
    shape = [min(int(p), f * (2 if axis == 0 else 1)) for axis, (p, f) in enumerate(zip(patch, factor))]
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn((1, in_channels, *shape), generator=generator)
    rows = max(1, shape[0] // 3)
    trial = SlabbedPlainUNet(network, slabbed.first, slabbed.last, rows)
    with torch.no_grad():
        theirs, ours = network(probe).float(), trial(probe).float()
    if theirs.shape != ours.shape:
        return False
    return float(torch.linalg.vector_norm(ours - theirs) / torch.linalg.vector_norm(theirs).clamp_min(1e-12)) \
        <= PROBE_TOLERANCE


def slabbed_network(network: nn.Module, in_channels: int, patch: Sequence[int], rows: int = SLAB_ROWS,
                    min_features: Optional[int] = None) -> Optional[SlabbedPlainUNet]:
    """The slabbed pass of ``network`` (in eval mode) when it is a plain U-Net as nnU-Net builds it, with at
    least ``min_features`` (default :data:`SLAB_MIN_FEATURES`) features at full resolution, and a probe agrees
    with its own forward; None otherwise (then use the network itself). Checked once per network."""
    if network.training or isinstance(network, torch.jit.ScriptModule):
        return None
    min_features = SLAB_MIN_FEATURES if min_features is None else min_features
    key = (int(in_channels), tuple(int(p) for p in patch), int(rows), int(min_features))
    per_network = _CHECKED.setdefault(network, {})
    if key not in per_network:
        per_network[key] = _slabs_agree(network, in_channels, patch, rows, min_features)
    return SlabbedPlainUNet(network, *_plain_unet_blocks(network), rows=rows) if per_network[key] else None


def _slabs_agree(network: nn.Module, in_channels: int, patch: Sequence[int], rows: int, min_features: int) -> bool:
    """Whether ``network`` is a plain U-Net of ≥ ``min_features`` whose slabbed pass agrees with its forward."""
    blocks = _plain_unet_blocks(network)
    if blocks is None or blocks[0][0][0].out_channels < min_features:
        return False
    try:
        agrees = _probe_agrees(network, SlabbedPlainUNet(network, *blocks, rows=rows), in_channels, patch)
    except (RuntimeError, ValueError, TypeError) as error:
        LOG.warning("nnU-Net slabbed pass not used (%s: %s)", type(error).__name__, error)
        return False
    if not agrees:
        LOG.warning("nnU-Net slabbed pass not used: its probe differs from the network's own forward.")
    return agrees
