"""nnU-Net v2 models through RadAI's engine: nnU-Net's pipeline reproduced, memory-lean.

For each part (one nnU-Net result folder) of a model, as ``nnUNetPredictor.predict_single_npy_array`` does:
the image array ``(c, k, j, i)`` (reoriented to RAS first when the card says so, as TotalSegmentator does)
is transposed by the plans' ``transpose_forward``, cropped to its non-zero bounding box, normalised per
channel (CT: clip to the plans' foreground 0.5–99.5 percentiles, minus mean, over std; z-score; ...),
resampled to the plans' spacing (:mod:`nnunet_resample`), padded to the patch, and run window by window at
nnU-Net's positions (``tile_step_size``, default 0.5) with nnU-Net's Gaussian (σ = patch/8, peak 10,
float16), mirroring on the checkpoint's axes when enabled, and the folds averaged. Accumulation follows
nnU-Net's order and float16 arithmetic, so the logits are the same; but rows along the first axis are
finished and turned into labels on the input grid as soon as no later window touches them, so per-class
scores never exist for the whole volume (nnU-Net holds them at model and at input resolution).
In PyTorch bfloat16 on the CPU (``--precision bf16 --runtime torch``, the memory-lean choice) the windows of a
plain U-Net of ≥ 16 features run through :mod:`nnunet_slabs` (its full-resolution stages slab by slab: at
TotalSegmentator's width a 128³ window needs ~0.46 GiB above the process instead of ~1.0; the image, the
features the head reads and the head in float32); float32 PyTorch keeps the network's own forward.

``crop_foreground=True`` additionally crops to the body (:func:`inference.foreground_box`) before
resampling: fewer windows, labels outside the body are background.
Parts are combined into one labelmap by the card's label ids; a later part's foreground wins.
"""
from __future__ import annotations

import functools
import itertools
import warnings
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from .cpu_memory import returning_freed_blocks
from .cpu_runtime import resolve_runtime, runtime_network
from .device import DeviceChoice, choose_device, resolve_cpu_precision, run_with_cpu_fallback
from .errors import ModelError
from .image import Image
from .inference import RAS_AXES_LPS, finished_labelmap, foreground_box, looks_like_ct
from .models.loaders import LoadedModel
from .models.nnunet import Configuration, Part
from .nnunet_resample import LabelExporter, logits_axis_maps, new_shape, resample_image
from .nnunet_slabs import slabbed_network
from .progress import CancelToken, ProgressCallback, no_progress
from .sliding import prefer_channels_last, slide_along


def canonical_axes(direction_lps: np.ndarray) -> tuple[list[int], list[bool]]:
    """For the R, A, S axes: the image axis (0=i, 1=j, 2=k) closest to it and whether it points along it."""
    order, positive = [], []
    for axis in range(3):
        dots = RAS_AXES_LPS[:, axis] @ np.asarray(direction_lps)
        dots[order] = 0
        column = int(np.argmax(np.abs(dots)))
        order.append(column)
        positive.append(bool(dots[column] >= 0))
    return order, positive


def oriented(array_kji: np.ndarray, order: list[int], positive: list[bool]) -> np.ndarray:
    """``array[k, j, i]`` with its axes permuted/flipped so that i, j, k point R, A, S (a view)."""
    ijk = array_kji.transpose(2, 1, 0).transpose(order)
    return ijk[tuple(slice(None) if p else slice(None, None, -1) for p in positive)].transpose(2, 1, 0)


def unoriented(array_kji: np.ndarray, order: list[int], positive: list[bool]) -> np.ndarray:
    """Inverse of :func:`oriented`."""
    ijk = array_kji.transpose(2, 1, 0)[tuple(slice(None) if p else slice(None, None, -1) for p in positive)]
    return ijk.transpose(np.argsort(order)).transpose(2, 1, 0)


@functools.lru_cache(maxsize=4)
def nnunet_gaussian(patch: tuple[int, ...]) -> torch.Tensor:
    """nnU-Net's window weight: a unit impulse at ``patch // 2`` blurred with σ = patch/8, peak scaled to
    10, stored as float16 with zeros raised to the smallest positive value."""
    from scipy.ndimage import gaussian_filter
    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    weight = torch.from_numpy(gaussian_filter(impulse, [p / 8 for p in patch], 0, mode="constant", cval=0))
    weight /= torch.max(weight) / 10
    weight = weight.to(torch.float16)
    weight[weight == 0] = torch.min(weight[weight != 0])
    return weight


def window_starts(size: int, patch: int, step: float) -> list[int]:
    """nnU-Net's window starts along one axis: the fewest steps of at most ``patch · step`` voxels, spread
    evenly (rounded half to even) from 0 to ``size − patch``."""
    count = int(np.ceil((size - patch) / (patch * step))) + 1
    actual = (size - patch) / (count - 1) if count > 1 else 0.0
    return [int(np.round(actual * i)) for i in range(count)]


#: Classes of a window's weighted logits added to the float16 sums at once (the float32 temporary of the
#: addition is this many classes', not the whole window's).
ADD_CLASSES = 4
#: nnU-Net normalisations computed voxel by voxel (from the plans' statistics): cropping first changes nothing.
VOXELWISE_NORMALISATION = ("CTNormalization", "NoNormalization", "RGBTo01Normalization")


def _normalise(channel: np.ndarray, scheme: str, mask: Optional[np.ndarray], properties: dict) -> None:
    """nnU-Net's normalisation of one float32 channel, in place (same numpy operations, same result)."""
    if scheme == "CTNormalization":
        np.clip(channel, properties["percentile_00_5"], properties["percentile_99_5"], out=channel)
        channel -= properties["mean"]
        channel /= max(properties["std"], 1e-8)
    elif scheme == "ZScoreNormalization":
        if mask is not None:
            mean, std = channel[mask].mean(), channel[mask].std()
            channel[mask] = (channel[mask] - mean) / max(std, 1e-8)
        else:
            mean, std = channel.mean(), channel.std()
            channel -= mean
            channel /= max(std, 1e-8)
    elif scheme == "RescaleTo01Normalization":
        channel -= channel.min()
        channel /= np.clip(channel.max(), a_min=1e-8, a_max=None)
    elif scheme == "RGBTo01Normalization":
        channel /= 255.0
    elif scheme != "NoNormalization":
        raise ModelError(f"nnU-Net normalisation '{scheme}' is not supported.")


def _nonzero_box(data: np.ndarray) -> tuple[slice, ...]:
    """nnU-Net's crop: bounding box of voxels non-zero in any channel (filling holes cannot enlarge it)."""
    nonzero = np.any(data != 0, axis=0)
    box = []
    for axis in range(3):
        present = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1) if present.size else slice(0, nonzero.shape[axis]))
    return tuple(box)


def _body_box(data: np.ndarray, box: tuple[slice, ...], spacing: Sequence[float], ct: bool,
              minimum: Sequence[int]) -> tuple[slice, ...]:
    """RadAI's body crop inside nnU-Net's box, grown about its centre to at least ``minimum`` voxels."""
    inner = foreground_box(data[(0,) + box], spacing, ct)
    grown = []
    for piece, outer, size in zip(inner, box, minimum):
        start, stop, limit = piece.start, piece.stop, outer.stop - outer.start
        width = min(max(stop - start, size), limit)
        start = max(0, min(start - (width - (stop - start)) // 2, limit - width))
        grown.append(slice(outer.start + start, outer.start + start + width))
    return tuple(grown)


def preprocess(data: np.ndarray, spacing: Sequence[float], config: Configuration, crop_body: bool, ct: bool):
    """nnU-Net's preprocessing of ``data`` ``(c, k, j, i)`` float32 (modified in place).

    Returns ``(volume (c, d0, d1, d2) float32 at the plans' spacing, box (slices of the transposed array),
    transposed shape, transposed spacing)``.
    """
    forward = config.transpose_forward
    data = data.transpose([0, *[a + 1 for a in forward]])
    spacing_t = [float(spacing[a]) for a in forward]
    box = _nonzero_box(data)
    body = None
    if crop_body:                                                  # on raw intensities (HU for CT)
        minimum = [int(np.ceil(p * t / s)) + 1 for p, t, s in zip(config.patch_size, config.spacing_mm, spacing_t)]
        body = _body_box(data, box, spacing_t, ct, minimum)
    if body is not None and all(scheme in VOXELWISE_NORMALISATION for scheme in config.normalisation):
        box = body                                   # the same values inside the body, without the rest
    cropped = data[(slice(None),) + box]
    mask = None
    if any(s == "ZScoreNormalization" and m for s, m in zip(config.normalisation, config.use_mask_for_norm)):
        from scipy.ndimage import binary_fill_holes
        mask = binary_fill_holes(np.any(cropped != 0, axis=0))
    for c, scheme in enumerate(config.normalisation):
        _normalise(cropped[c], scheme, mask if config.use_mask_for_norm[c] else None,
                   config.intensity_properties.get(c, {}))
    if body is not None:
        box = body
        cropped = data[(slice(None),) + box]
    shape = new_shape(cropped.shape[1:], spacing_t, config.spacing_mm)
    volume = resample_image(cropped, shape, spacing_t, config.spacing_mm, **config.resampling_data)
    return volume, box, data.shape[1:], spacing_t


def _predict(network: torch.nn.Module, window: torch.Tensor, mirror_axes: Optional[Sequence[int]]) -> torch.Tensor:
    """nnU-Net's window prediction: logits, averaged over all mirror-axis combinations when given."""
    prediction = network(window)
    if mirror_axes:                                      # averaged in float32, whatever the network's output
        prediction = prediction.float()
        axes = [a + 2 for a in mirror_axes]
        combinations = [c for n in range(len(axes)) for c in itertools.combinations(axes, n + 1)]
        for flip in combinations:
            prediction += torch.flip(network(torch.flip(window, flip)), flip)
        prediction /= len(combinations) + 1
    return prediction


def add_weighted(sums: torch.Tensor, prediction: torch.Tensor, gaussian: torch.Tensor) -> None:
    """``sums += prediction · gaussian`` as nnU-Net computes it (the product in float32, added to the float16
    sums), :data:`ADD_CLASSES` classes at a time: the float32 temporaries are a few classes', and a bfloat16
    network's window output is never copied whole to float32 (half the window's memory)."""
    for c in range(0, prediction.shape[0], ADD_CLASSES):
        sums[c:c + ADD_CLASSES] += prediction[c:c + ADD_CLASSES].float() * gaussian


def stream_logits(volume: torch.Tensor, networks: list, patch: Sequence[int], step: float,
                  mirror_axes: Optional[Sequence[int]], choice: DeviceChoice, heads: int,
                  progress: ProgressCallback, cancel: Optional[CancelToken], done_before: int = 0,
                  total: int = 1) -> Iterator[tuple[int, torch.Tensor]]:
    """Finished rows ``(start, logits (heads, rows, d1, d2) float16)`` of ``volume`` ``(c, d0, d1, d2)``
    (padded to ≥ patch), in order along d0, averaged over ``networks`` (folds) as nnU-Net does."""
    starts = [window_starts(size, p, step) for size, p in zip(volume.shape[1:], patch)]
    gaussian = nnunet_gaussian(tuple(int(p) for p in patch)).to(choice.sw_device)
    channels_last = [prefer_channels_last(net, choice, 3) for net in networks]
    plane = tuple(volume.shape[2:])
    sums = [torch.zeros((heads, patch[0]) + plane, dtype=torch.float16) for _ in networks]
    weights = torch.zeros((patch[0],) + plane, dtype=torch.float16)
    row0, done = starts[0][0], done_before
    for index, x0 in enumerate(starts[0]):
        if x0 > row0:                                             # slide the buffers to start at x0
            for buffer in sums:
                slide_along(buffer, 1, x0 - row0)
            slide_along(weights, 0, x0 - row0)
            row0 = x0
        for y0, z0 in itertools.product(starts[1], starts[2]):
            if cancel is not None:
                cancel.raise_if_cancelled()
            window = volume[:, x0:x0 + patch[0], y0:y0 + patch[1], z0:z0 + patch[2]][None].to(choice.device)
            with returning_freed_blocks():   # the activations' blocks go back to the system as they are freed
                for fold, network in enumerate(networks):
                    batch = window.contiguous(memory_format=torch.channels_last_3d) if channels_last[fold] else window
                    with torch.no_grad(), choice.autocast():
                        prediction = _predict(network, batch, mirror_axes)[0].to(choice.sw_device)
                    add_weighted(sums[fold][:, :, y0:y0 + patch[1], z0:z0 + patch[2]], prediction, gaussian)
                    del prediction
            weights[:, y0:y0 + patch[1], z0:z0 + patch[2]] += gaussian
            done += 1
            progress(done / total, f"window {done}/{total}")
        finished = (starts[0][index + 1] if index + 1 < len(starts[0]) else x0 + patch[0]) - row0
        logits = None
        for buffer in sums:
            fold_logits = buffer[:, :finished] / weights[:finished]
            logits = fold_logits if logits is None else logits + fold_logits
        if len(networks) > 1:
            logits /= len(networks)
        yield row0, logits


def count_windows(shape: Sequence[int], patch: Sequence[int], step: float) -> int:
    return int(np.prod([len(window_starts(max(s, p), p, step)) for s, p in zip(shape, patch)]))


def part_labels(data: np.ndarray, spacing_kji: Sequence[float], part: Part, settings: dict, choice: DeviceChoice,
                crop_body: bool, ct: bool, progress: ProgressCallback, cancel: Optional[CancelToken],
                windows_done: int = 0, windows_total: int = 1, ran: Optional[list] = None) -> np.ndarray:
    """Head index per voxel of ``data`` ``(c, k, j, i)`` (same shape), as ``nnUNetPredictor`` computes it.
    The choice each fold's network ran with (runtime after any fallback) is appended to ``ran``."""
    ran = [] if ran is None else ran
    config = part.config
    volume, box, shape_t, spacing_t = preprocess(data, spacing_kji, config, crop_body, ct)
    model_shape = volume.shape[1:]
    patch = config.patch_size
    pad = [max(0, p - s) for p, s in zip(patch, model_shape)]
    before = [p // 2 for p in pad]
    tensor = torch.from_numpy(volume)
    if any(pad):
        widths = [w for b, p in zip(reversed(before), reversed(pad)) for w in (b, p - b)]
        tensor = torch.nn.functional.pad(tensor, widths, mode="constant", value=0.0)
    del volume
    out_shape = tuple(s.stop - s.start for s in box)
    maps = logits_axis_maps(model_shape, out_shape, config.spacing_mm, spacing_t, config.resampling_logits)
    exporter = LabelExporter(maps, out_shape, part.out_channels)
    mirror = part.mirror_axes if settings["use_mirroring"] else None
    networks = []
    for network in part.networks:
        runnable, used = runtime_network(network.to(choice.device), choice, (1, data.shape[0], *patch),
                                         lambda m: progress(windows_done / max(windows_total, 1), m))
        if used.runtime == "torch" and used.cpu_bf16 and used.device.type == "cpu":
            runnable = slabbed_network(runnable, data.shape[0], patch) or runnable   # the lean pass (bf16)
        networks.append(runnable)
        ran.append(used)
    inner = tuple(slice(b, b + s) for b, s in zip(before[1:], model_shape[1:]))
    for start, logits in stream_logits(tensor, networks, patch, settings["tile_step_size"], mirror, choice,
                                       part.out_channels, progress, cancel, windows_done, windows_total):
        first, last = max(start, before[0]), min(start + logits.shape[1], before[0] + model_shape[0])
        if last > first:
            exporter.add(first - before[0], logits[:, first - start:last - start][(slice(None), slice(None)) + inner])
    heads = np.zeros(tuple(shape_t), dtype=exporter.labels.dtype)
    heads[box] = exporter.labels
    return heads.transpose(config.transpose_backward)


def segment_nnunet(images: Sequence[Image], model: LoadedModel, device: str = "auto", fast: bool = False,
                   largest_component: bool = False, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None, crop_foreground: bool = True,
                   precision: str = "auto", runtime: str = "auto") -> Image:
    """Labelmap (uint8, on exactly the input grid, the card's label ids) of co-registered ``images`` (one
    per channel, checked by the caller) with an nnU-Net v2 model (``model.extras["nnunet_parts"]``).

    ``precision`` ``auto`` is the card's ``network.precision``, else float32 (nnU-Net's own arithmetic on the
    CPU, so the labels equal nnU-Net's); ``bf16`` runs the network under CPU bfloat16 autocast (faster where
    the CPU has bfloat16 instructions; labels then differ from nnU-Net's at near-ties). ``runtime``
    (``auto|torch|openvino``, :mod:`.cpu_runtime`): ``torch`` gives nnU-Net's labels exactly; OpenVINO (``auto``
    on the CPU when installed) runs the same windows ~2× faster, labels differing at near-ties only.
    """
    if fast:
        warnings.warn(f"Model '{model.card.id}' is an nnU-Net model: it always runs at its plans' spacing, so fast "
                      "mode changes nothing; choose the model's own fast variant if it has one.", UserWarning,
                      stacklevel=3)
    progress = progress or no_progress
    parts: list[Part] = model.extras["nnunet_parts"]
    settings = model.extras["nnunet"]
    reference = images[0]
    arrays = [np.asarray(item.array) for item in images]
    spacing_kji = list(reference.spacing_mm)[::-1]
    axes = None
    if settings.get("orientation"):
        if str(settings["orientation"]).upper() != "RAS":
            raise ModelError(f"Model '{model.card.id}': network.orientation must be 'RAS' or absent.")
        axes = canonical_axes(np.asarray(reference.direction_lps))
        arrays = [np.ascontiguousarray(oriented(a, *axes)) for a in arrays]
        spacing_kji = [reference.spacing_mm[a] for a in axes[0]][::-1]
    ct = looks_like_ct(reference)
    requested = str(precision or "auto").lower()
    if requested == "auto":
        requested = str(model.card.network.get("precision", "fp32")).lower().replace("auto", "fp32")
    choice = choose_device(device).with_precision(resolve_cpu_precision(requested))
    ran: list[DeviceChoice] = []
    shape_kji = arrays[0].shape
    totals = []
    for part in parts:
        spacing_t = [spacing_kji[a] for a in part.config.transpose_forward]
        shape_t = [shape_kji[a] for a in part.config.transpose_forward]
        model_shape = new_shape(shape_t, spacing_t, part.config.spacing_mm)
        totals.append(count_windows(model_shape, part.config.patch_size, settings["tile_step_size"]))
    result = np.zeros(shape_kji, dtype=np.uint8)
    done = 0
    for part, windows in zip(parts, totals):
        def work(run_choice: DeviceChoice) -> np.ndarray:
            run_choice = run_choice.with_precision("bf16" if choice.cpu_bf16 else "fp32")
            run_choice = run_choice.with_runtime(resolve_runtime(runtime, run_choice))
            data = np.stack(arrays, dtype=np.float32)
            return part_labels(data, spacing_kji, part, settings, run_choice, crop_foreground, ct, progress,
                               cancel, done, sum(totals), ran)
        heads = run_with_cpu_fallback(work, choice, warn=lambda m: progress(done / sum(totals), m))
        lut = np.zeros(max(part.out_channels, 1), dtype=np.uint8)
        for index, label in enumerate(part.dataset.head_labels):
            lut[index] = part.to_model_label.get(label, 0)
        mapped = lut[heads]
        np.copyto(result, mapped, where=mapped != 0)
        done += windows
    if axes is not None:
        result = np.ascontiguousarray(unoriented(result, *axes))
    return finished_labelmap(reference, result, model, ran[-1], largest_component, progress, cancel)
