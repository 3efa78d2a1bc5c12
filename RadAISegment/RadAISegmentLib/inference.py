"""Run a segmentation model on an :class:`Image`: resample → normalise → crop → sliding window → argmax →
back onto the input grid.

Resampling choice: the image is resampled (linear) to the model grid, the argmax (uint8 labels) is taken at
model resolution, and only the labels are resampled back (nearest neighbour) onto exactly the input grid —
no per-class scores are ever resampled or held at full resolution. The model grid keeps the input's
(possibly oblique) axes, permuted/flipped to RAS when the model was trained after ``Orientationd("RAS")``.
Tensor layout is MONAI's ``(C, X, Y, Z)`` with X = i, Y = j, Z = k.
"""
from __future__ import annotations

import functools
import warnings
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from .cpu_runtime import resolve_runtime, runtime_network
from .device import DeviceChoice, choose_device, precision_report, resolve_cpu_precision, run_with_cpu_fallback
from .errors import InputError, ModelError
from .grid_resample import grid_axes, image_to_model_grid, labels_to_input_grid
from .image import Image
from .io import to_sitk
from .models.loaders import LoadedModel, load_from_card
from .progress import CancelToken, ProgressCallback, no_progress
from .sliding import sliding_window_labels, windows_span

RAS_AXES_LPS = np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]]).T   # columns: R, A, S in LPS
FAST_MIN_SPACING_MM = 3.0
CROP_MARGIN_MM = 5.0


def model_grid(image: Image, model: LoadedModel, fast: bool = False) -> tuple[tuple, np.ndarray, np.ndarray, tuple]:
    """(spacing (X,Y,Z) mm, direction LPS, origin LPS, size (X,Y,Z)) of the grid the network sees.

    The grid runs along the input's axes (permuted/flipped to RAS for ``Orientationd("RAS")`` models), starts
    at the input's corner voxel centre and has ``round(extent / spacing) + 1`` voxels per axis, as MONAI's
    ``Spacingd`` (``compute_shape_offset``): its last voxel may lie up to half a voxel beyond the input's."""
    direction = np.asarray(image.direction_lps)
    spacing = np.asarray(image.spacing_mm, dtype=float)
    if model.orientation:
        order, signs = [], []
        for axis in range(3):
            dots = RAS_AXES_LPS[:, axis] @ direction
            dots[order] = 0
            column = int(np.argmax(np.abs(dots)))
            order.append(column)
            signs.append(1.0 if dots[column] >= 0 else -1.0)
        direction = direction[:, order] * np.asarray(signs)
        spacing = spacing[order]
    if model.spacing_mm is not None:
        spacing = np.asarray(model.spacing_mm, dtype=float)
    if fast:
        spacing = np.maximum(spacing * 2.0, FAST_MIN_SPACING_MM) if model.spacing_mm is not None else spacing * 2.0
        if model.spatial_dims == 2:
            spacing[2] = image.spacing_mm[2] if not model.orientation else spacing[2] / 2.0
    corners = np.array([[i, j, k] for i in (0, image.shape_ijk[0] - 1) for j in (0, image.shape_ijk[1] - 1)
                        for k in (0, image.shape_ijk[2] - 1)], dtype=float)
    corners_lps = image.index_to_lps(corners)
    local = (corners_lps - np.asarray(image.origin_lps)) @ direction          # coordinates along new axes
    low, high = local.min(0), local.max(0)
    size = tuple(int(np.round((h - l) / s + 1.0)) for l, h, s in zip(low, high, spacing))   # as MONAI Spacingd
    origin = np.asarray(image.origin_lps) + direction @ low
    return tuple(float(s) for s in spacing), direction, origin, size


def _same_grid(image: Image, spacing, direction, origin, size) -> bool:
    return (tuple(size) == image.shape_ijk and np.allclose(spacing, image.spacing_mm, atol=1e-5)
            and np.allclose(direction, image.direction_lps, atol=1e-6)
            and np.allclose(origin, image.origin_lps, atol=1e-4))


def _resample(image: Image, spacing, direction, origin, size, nearest: bool, default: float) -> sitk.Image:
    reference = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    reference.SetSpacing([float(s) for s in spacing])
    reference.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    reference.SetOrigin([float(o) for o in origin])
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    source = to_sitk(image)
    if not nearest:
        source = sitk.Cast(source, sitk.sitkFloat32)
    return sitk.Resample(source, reference, sitk.Transform(), interpolator, float(default))


def normalise(volume: torch.Tensor, steps: Sequence[dict]) -> torch.Tensor:
    """Apply card/bundle normalisation steps to ``(C, X, Y, Z)`` float32 (MONAI transform semantics)."""
    for step in steps:
        kind = step["kind"]
        if kind in ("ct_window", "scale_range"):
            a_min, a_max = float(step["a_min"]), float(step["a_max"])
            b_min, b_max = float(step.get("b_min", 0.0)), float(step.get("b_max", 1.0))
            volume = (volume - a_min) / (a_max - a_min) * (b_max - b_min) + b_min
            if step.get("clip", kind == "ct_window"):
                volume = volume.clamp(min(b_min, b_max), max(b_min, b_max))
        elif kind in ("zscore", "zscore_nonzero"):
            nonzero = step.get("nonzero", kind == "zscore_nonzero")
            channels = range(volume.shape[0]) if step.get("channel_wise", False) else [slice(None)]
            volume = volume.clone()
            for c in channels:
                part = volume[c]
                mask = part != 0 if nonzero else torch.ones_like(part, dtype=torch.bool)
                if mask.any():
                    values = part[mask]
                    std = values.std(unbiased=False)
                    part[mask] = (values - values.mean()) / (std if std > 0 else 1.0)
                volume[c] = part
        elif kind == "scale_minmax":
            low, high = volume.min(), volume.max()
            scale = (high - low) if high > low else 1.0
            volume = (volume - low) / scale * (step["maxv"] - step["minv"]) + step["minv"]
        elif kind == "percentile":
            low = torch.quantile(volume.flatten()[::max(1, volume.numel() // 1_000_000)], step["lower"] / 100)
            high = torch.quantile(volume.flatten()[::max(1, volume.numel() // 1_000_000)], step["upper"] / 100)
            volume = ((volume - low) / (high - low if high > low else 1.0)).clamp(0, 1)
    return volume


#: On CT, foreground thinner than about twice this radius (the patient table, cables, a head holder) is
#: left out of the crop unless it lies within ``CROP_MARGIN_MM`` of the body.
TABLE_OPENING_RADIUS_MM = 12.0


def _body_mask(volume: np.ndarray, spacing_mm: Sequence[float], threshold: float) -> tuple[np.ndarray, list[int]]:
    """``(mask, strides)``: the CT foreground on a ~6 mm grid, morphologically opened with a ball of
    :data:`TABLE_OPENING_RADIUS_MM` so thin non-body structures drop out; the unopened mask when the
    opening would remove everything (a small object, a phantom)."""
    from scipy import ndimage
    strides = [max(1, int(6.0 // float(s))) for s in spacing_mm]
    coarse = volume[::strides[0], ::strides[1], ::strides[2]] > threshold
    radii = [max(1, int(np.ceil(TABLE_OPENING_RADIUS_MM / (float(s) * n)))) for s, n in zip(spacing_mm, strides)]
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    ball = sum((g / r) ** 2 for g, r in zip(grid, radii)) <= 1.0
    opened = ndimage.binary_opening(coarse, structure=ball)
    return (opened if opened.any() else coarse), strides


def foreground_box(volume: np.ndarray, spacing_mm: Sequence[float], ct_like: bool,
                   margin_mm: float = CROP_MARGIN_MM) -> tuple[slice, slice, slice]:
    """Bounding box (X, Y, Z slices of ``volume[x, y, z]``, spacing in mm per axis) of the body, grown by
    ``margin_mm``; the whole volume when nothing is found.

    CT: voxels > -500 HU, without structures thinner than ~2.5 cm (the patient table would otherwise
    stretch the box across the whole field of view; see :func:`_body_mask`). Other modalities: voxels
    above 10 % of the 99th percentile over the minimum.
    """
    if ct_like:
        mask, strides = _body_mask(volume, spacing_mm, -500.0)
    else:
        sample = volume[::4, ::4, ::4]
        low = float(sample.min())
        mask, strides = volume > low + 0.1 * (float(np.percentile(sample, 99)) - low), [1, 1, 1]
    if not mask.any():
        return tuple(slice(0, s) for s in volume.shape)
    box = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        margin = int(np.ceil(margin_mm / spacing_mm[axis]))
        first, last = present[0] * strides[axis], present[-1] * strides[axis] + strides[axis] - 1
        box.append(slice(max(0, first - margin), min(volume.shape[axis], last + margin + 1)))
    return tuple(box)


def grow_box(box: Sequence[slice], minimum: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    """Grow each side of ``box`` (about its centre) to at least ``minimum`` voxels, within ``shape``: the
    network then sees real context instead of padding wherever the image allows."""
    grown = []
    for piece, size, limit in zip(box, minimum, shape):
        start, stop = int(piece.start), int(piece.stop)
        width = max(stop - start, min(size, limit))
        start = max(0, min(start - (width - (stop - start)) // 2, limit - width))
        stop = start + width
        grown.append(slice(start, stop))
    return tuple(grown)


def fit_box_to_windows(box: Sequence[slice], roi: Sequence[int], overlap: float,
                       shape: Sequence[int]) -> tuple[slice, ...]:
    """Grow ``box`` (about its centre, within ``shape``) to the span its sliding windows cover anyway.

    Along each axis the crop needs ``n`` windows of ``roi`` voxels at MONAI's interval ``roi·(1-overlap)``;
    those windows reach ``roi + (n-1)·interval`` voxels, so the box is widened to that span: the network
    sees real image context instead of overlapping its own windows more than needed, at no extra cost.
    A box smaller than one window grows to one window (as :func:`grow_box`).
    """
    spans = [windows_span(piece.stop - piece.start, size, overlap) for piece, size in zip(box, roi)]
    return grow_box(box, spans, shape)


def looks_like_ct(image: Image) -> bool:
    modality = str(image.metadata.get("modality", "")).upper()
    if modality:
        return modality == "CT"
    return float(np.min(image.array[::4, ::4, ::4])) < -500.0


def check_modality(image: Image, model: LoadedModel) -> None:
    """Warn when an image's modality is not one the model was made for (e.g. MRI into a CT-only model)."""
    modalities = {m.upper().replace("MRI", "MR") for m in model.card.modality}
    if not modalities:
        return
    observed = str(image.metadata.get("modality", "")).upper() or ("CT" if looks_like_ct(image) else "MR")
    if observed not in modalities:
        warnings.warn(f"Model '{model.card.id}' is made for {', '.join(sorted(modalities))} but the image looks like "
                      f"{observed}; results are unreliable — use a model for {observed}.", UserWarning, stacklevel=3)


def largest_components(labels: np.ndarray) -> np.ndarray:
    """Keep only the largest 26-connected component of each label."""
    from scipy import ndimage
    out = np.zeros_like(labels)
    for value in np.unique(labels):
        if value == 0:
            continue
        components, count = ndimage.label(labels == value, structure=np.ones((3, 3, 3)))
        if count:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            out[components == int(np.argmax(sizes))] = value
    return out


def network_precision(model: LoadedModel, requested: str = "auto") -> str:
    """``"bf16"`` or ``"fp32"``: the CPU arithmetic ``model`` runs in for ``requested`` (``auto|fp32|bf16``).

    ``auto`` follows the card's ``network.precision`` when it pins one, keeps TorchScript networks in float32
    (autocast does not reach inside a scripted graph reliably), and otherwise takes bfloat16 where the CPU has
    bfloat16 instructions (:func:`RadAISegmentLib.device.resolve_cpu_precision`).
    """
    requested = str(requested or "auto").lower()
    if requested == "auto":
        pinned = str(model.card.network.get("precision", "auto")).lower()
        if pinned != "auto":
            requested = pinned
        elif isinstance(model.network, torch.jit.ScriptModule):
            return "fp32"
    return resolve_cpu_precision(requested)


def segment_image(image: Image | Sequence[Image], model: LoadedModel, device: str = "auto", fast: bool = False,
                  largest_component: bool = False, progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None, crop_foreground: bool = True,
                  window_weighting: Optional[str] = None, stitch_dtype: Optional[torch.dtype] = None,
                  precision: str = "auto", runtime: str = "auto") -> Image:
    """Labelmap (uint8, exactly on the input grid, segments from the card/bundle) of ``image``.

    ``image`` may be a list of co-registered images for multi-channel models (e.g. BraTS: T1c, T1, T2, FLAIR).
    ``precision`` (``auto|fp32|bf16``) is the CPU arithmetic (see :func:`network_precision`); the labelmap's
    ``metadata["inference_precision"]`` says which ran. ``runtime`` (``auto|torch|openvino``) is what executes
    the network on the CPU (:mod:`.cpu_runtime`): ``torch`` reproduces MONAI's / nnU-Net's labels exactly,
    OpenVINO is faster and differs at near-ties only; ``auto`` is OpenVINO for nnU-Net models, PyTorch for
    MONAI bundles.
    """
    for item in (image if isinstance(image, (list, tuple)) else [image]):
        item.require_finite()
    if model.card.task == "brain-extraction":
        from .brain import extract_brain
        return extract_brain(image, model, device, progress, cancel)
    images = list(image) if isinstance(image, (list, tuple)) else [image]
    if len(images) != model.in_channels:
        raise ModelError(f"Model '{model.card.id}' needs {model.in_channels} input channel(s) but "
                         f"{len(images)} image(s) were given; pass one co-registered image per channel.")
    reference = images[0]
    for other in images[1:]:
        reference.require_same_grid(other, "channel image")
    check_modality(reference, model)
    if model.card.format == "nnunet_v2":                       # nnU-Net's own pipeline, reproduced
        from .nnunet_inference import segment_nnunet
        return segment_nnunet(images, model, device, fast, largest_component, progress, cancel, crop_foreground,
                              precision, runtime)
    progress = progress or no_progress
    choice = choose_device(device)
    spacing, direction, origin, size = model_grid(reference, model, fast)
    same = _same_grid(reference, spacing, direction, origin, size)
    ct_like = looks_like_ct(reference)
    axes = None if same else grid_axes(reference, spacing, direction, origin, size)
    channels = []
    for item in images:
        if same:
            channels.append(np.ascontiguousarray(np.asarray(item.array, dtype=np.float32).transpose(2, 1, 0)))
        else:                                                   # linear, edge value beyond the input's last voxel
            channels.append(image_to_model_grid(item, axes))                  # (X, Y, Z)
    box = foreground_box(channels[0], spacing, ct_like) if crop_foreground else tuple(slice(0, s) for s in size)
    roi = tuple(model.roi_size) + ((1,) if model.spatial_dims == 2 else ())
    box = fit_box_to_windows(box, roi, model.overlap, size)
    volume = normalise(torch.from_numpy(np.stack(channels)), model.normalisation)
    del channels
    cropped = volume[(slice(None),) + box].contiguous()
    progress(0.0, "running network")

    cpu_precision = network_precision(model, precision)
    ran: list[DeviceChoice] = []

    def work(run_choice: DeviceChoice) -> np.ndarray:
        run_choice = run_choice.with_precision(cpu_precision)
        run_choice = run_choice.with_runtime(resolve_runtime(runtime, run_choice, auto_openvino=False))
        example = (model.sw_batch_size, model.in_channels, *model.roi_size[:model.spatial_dims])
        network, run_choice = runtime_network(model.network.to(run_choice.device), run_choice, example,
                                              lambda m: progress(0.0, m))
        ran.append(run_choice)
        return sliding_window_labels(cropped, network, model.roi_size, model.out_channels, run_choice,
                                     overlap=model.overlap, sw_batch_size=model.sw_batch_size,
                                     spatial_dims=model.spatial_dims, activation=model.activation,
                                     channel_labels=model.channel_labels, progress=progress, cancel=cancel,
                                     mode=window_weighting or model.window_weighting, accumulate_dtype=stitch_dtype,
                                     padding_mode=model.padding_mode)

    crop_labels = run_with_cpu_fallback(work, choice, warn=lambda m: progress(0.0, m))
    labels_xyz = np.zeros(size, dtype=np.uint8)
    labels_xyz[box] = crop_labels
    if same:
        result = np.ascontiguousarray(labels_xyz.transpose(2, 1, 0))
    else:                                                       # nearest, border: edge structures keep their rim
        result = labels_to_input_grid(labels_xyz, reference, axes)
    return finished_labelmap(reference, result, model, ran[-1], largest_component, progress, cancel)


def finished_labelmap(reference: Image, labels_kji: np.ndarray, model: LoadedModel, ran: DeviceChoice,
                      largest_component: bool, progress: ProgressCallback, cancel: Optional[CancelToken]) -> Image:
    """The uint8 labelmap on the input grid (``labels_kji``), each label's largest component when asked, with
    the model's segments that occur and how the network ran (``inference_precision``, ``inference_device``)."""
    if largest_component:
        labels_kji = largest_components(labels_kji)
    if cancel is not None:
        cancel.raise_if_cancelled()
    progress(1.0, "done")
    present = set(np.unique(labels_kji).tolist())
    segments = tuple(s for s in model.segments if s.label in present) or tuple(model.segments)
    return reference.with_array(labels_kji.astype(np.uint8, copy=False), segments=segments,
                                inference_precision=precision_report(ran), inference_device=str(ran.device))


@functools.lru_cache(maxsize=8)
def _cached_model(model_id: str, sha256: str, version: str) -> LoadedModel:
    from .models.cache import find_model
    return load_from_card(find_model(model_id))


def load_model(model_id: str, device: str = "auto") -> LoadedModel:
    """Load an installed/shipped model once per process (cached by id, weights SHA-256 and version)."""
    from .models.cache import find_model
    card = find_model(model_id)
    return _cached_model(model_id, card.weights_sha256, card.version)


def run_model(image: Image, model_id: str, seeds_ras: Optional[list] = None, box_mm: Optional[float] = None,
              device: str = "auto", fast: bool = False, progress: Optional[ProgressCallback] = None,
              cancel: Optional[CancelToken] = None, crop_foreground: bool = True, precision: str = "auto",
              runtime: str = "auto") -> Image:
    """The one entry point for CLI, Slicer and batch: labelmap of ``image`` on its grid.

    Promptable-lesion models need ``seeds_ras`` (RAS mm) and dispatch to :mod:`RadAISegmentLib.lesion.predict`;
    ``crop_foreground``, ``precision`` and ``runtime`` (organ models) as in :func:`segment_image`.
    """
    model = load_model(model_id, device)
    if model.card.task == "promptable-lesion":
        return run_lesion_model(image, model, seeds_ras, box_mm, device, progress, cancel)
    return segment_image(image, model, device=device, fast=fast, progress=progress, cancel=cancel,
                         largest_component=bool(model.card.raw.get("largest_component", False)),
                         crop_foreground=crop_foreground, precision=precision, runtime=runtime)


def check_seed(image: Image, seed_ras: Sequence[float]) -> None:
    index = np.asarray(image.ras_to_index(np.asarray([seed_ras], dtype=float)))[0]
    if np.any(index < -0.5) or np.any(index > np.asarray(image.shape_ijk) - 0.5):
        raise InputError(f"Seed R,A,S = {tuple(round(float(v), 1) for v in seed_ras)} mm lies outside the image "
                         f"(voxel index {np.round(index, 1).tolist()}, shape {list(image.shape_ijk)}); "
                         "give a point inside the volume in RAS millimetres (as Slicer shows).")


def run_lesion_model(image: Image, model: LoadedModel, seeds_ras: Optional[list], box_mm: Optional[float],
                     device: str = "auto", progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None, prompts: Optional[list] = None,
                     previous: Optional[Image] = None) -> Image:
    """Segment one lesion per prompt with the promptable lesion model, all crops in one batch; labels 1..n on
    the input grid (where two lesions overlap, the earlier prompt keeps the voxel). ``prompts``
    (:class:`.lesion.prompts.LesionPrompt`: seed, box, include/exclude clicks) take precedence over
    ``seeds_ras`` + ``box_mm``; ``previous`` is an outline on the input grid to refine. The labelmap's
    ``metadata["volume_range_ml"]`` holds each lesion's stated volume range."""
    if not seeds_ras and not prompts:
        raise InputError(f"Model '{model.card.id}' is promptable: give a seed point with --seed R,A,S (RAS mm) "
                         "or a box with --box R1,A1,S1,R2,A2,S2.")
    image.require_finite()
    for seed in seeds_ras or []:
        check_seed(image, seed)
    try:
        from .lesion.predict import segment_prompts
        from .lesion.prompts import LesionPrompt
    except ImportError as error:
        raise ModelError(f"The lesion model's predictor (RadAISegmentLib.lesion.predict) is not available: "
                         f"{error}.") from error
    if not prompts:
        prompts = [LesionPrompt(seed_ras=tuple(float(v) for v in seed), box_mm=box_mm) for seed in seeds_ras]
    return segment_prompts(image, prompts, model, device, previous, progress, cancel)[0]
