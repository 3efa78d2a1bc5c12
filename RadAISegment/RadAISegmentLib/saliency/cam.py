"""Class-activation and gradient saliency on ONE model-input tensor (no geometry here).

Tensors are ``(batch=1, channels, z, y, x)`` = ``(1, C, k, j, i)`` on the model's input grid.
Maps returned are ``(k, j, i)`` float32 numpy arrays on that same grid, not yet normalised
(ReLU'd, non-negative); :func:`normalise_map` scales them to [0, 1] explicitly (MONAI's default
normaliser in ``monai.visualize`` inverts the map, so it is not used).

Target score (Seg-Grad-CAM, Vinogradova et al. 2020): the sum of one label's per-voxel evidence
over a region mask ``M``: ``y = sum_{v in M} e_label(v)``, where ``e`` is the label's log-odds
(see :func:`label_channel`; equal to the logit for a sigmoid head).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError


def is_torchscript(model: nn.Module) -> bool:
    """True for scripted/traced models, whose submodules cannot take Python forward hooks."""
    return isinstance(model, (torch.jit.ScriptModule, torch.jit.RecursiveScriptModule))


def record_spatial_sizes(model: nn.Module, example: torch.Tensor) -> list[tuple[str, tuple[int, ...], int]]:
    """Run one no-grad forward pass and record, per named submodule with a 5D tensor output,
    ``(name, spatial shape (k, j, i), completion order)``. The root module is excluded."""
    records: list[tuple[str, tuple[int, ...], int]] = []
    handles = []

    def make_hook(name: str):
        def hook(_module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 5 and not _is_skip_concat(inputs, output):
                records.append((name, tuple(int(s) for s in output.shape[2:]), len(records)))
        return hook

    for name, module in model.named_modules():
        if name and isinstance(module, (nn.Conv3d, nn.Sequential)) or (name and _has_5d_children(module)):
            handles.append(module.register_forward_hook(make_hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return records


def _is_skip_concat(inputs: tuple, output: torch.Tensor) -> bool:
    """True for a skip-connection wrapper whose output concatenates its own input with a
    sub-block's output (MONAI ``SkipConnection``): its channels mix encoder and bottleneck
    features, so it is not a bottleneck layer."""
    first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    if first is None or first.shape[2:] != output.shape[2:] or output.shape[1] <= first.shape[1]:
        return False
    channels = first.shape[1]
    return bool(torch.equal(output[:, :channels], first) or torch.equal(output[:, -channels:], first))


def _has_5d_children(module: nn.Module) -> bool:
    """Composite blocks (e.g. DynUNet's UnetBasicBlock) that contain a Conv3d somewhere."""
    return any(isinstance(child, nn.Conv3d) for child in module.modules() if child is not module)


def find_target_layer(model: nn.Module, example: torch.Tensor) -> str:
    """The bottleneck layer, found automatically.

    Walks the module tree, hooks every ``Conv3d`` / ``Sequential`` / block containing a Conv3d,
    runs one forward pass and picks the layer with the smallest spatial resolution (fewest
    voxels). Skip-connection wrappers that concatenate their input to a sub-block's output are
    excluded (their channels mix encoder and bottleneck features; on trained U-Nets their
    Grad-CAM is often all-negative). Among layers at that resolution the one that completes LAST in the forward pass is
    chosen: forward hooks fire on completion, so that is the outermost block of the deepest
    encoder stage / bottleneck (e.g. ``down_4`` of BasicUNet, the block inside the innermost SkipConnection of MONAI's
    UNet, ``bottleneck`` of DynUNet), the layer Seg-Grad-CAM found most informative.
    """
    records = record_spatial_sizes(model, example)
    if not records:
        raise ModelError("The model has no 3D convolution layers to take Grad-CAM from; "
                         "use --method smoothgrad (input-gradient saliency) instead.")
    smallest = min(int(np.prod(shape)) for _, shape, _ in records)
    at_smallest = [r for r in records if int(np.prod(r[1])) == smallest]
    return max(at_smallest, key=lambda r: r[2])[0]


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as error:
        names = [n for n, _ in model.named_modules() if n][:20]
        raise ModelError(f"No layer named {name!r} in the model ({error}); choose one of e.g. {names} "
                         "or omit the layer to pick the bottleneck automatically.") from error


def label_channel(logits: torch.Tensor, label: int) -> torch.Tensor:
    """Per-voxel evidence for one label, ``(k, j, i)``.

    Softmax head (C > 1): the label's log-odds ``z_label - logsumexp(z_others)``. The plain logit
    ``z_label`` is not identifiable (adding a constant to every channel changes no probability),
    and with a 2-class head it can fall where the label becomes MORE likely, which makes Grad-CAM
    maps all-negative; the log-odds is the quantity the segmentation decision depends on.
    Single-channel sigmoid head (label 1): the logit itself (already the log-odds).
    """
    channels = logits.shape[1]
    if channels == 1:
        return logits[0, 0]
    if not 0 <= label < channels:
        raise ModelError(f"Label {label} is outside the model's {channels} output channels; "
                         "pick a label listed on the model card.")
    others = torch.cat([logits[0, :label], logits[0, label + 1:]], dim=0)
    return logits[0, label] - torch.logsumexp(others, dim=0)


def predicted_mask(logits: torch.Tensor, label: int) -> torch.Tensor:
    """Boolean ``(k, j, i)`` mask of voxels the model assigns to ``label``."""
    if logits.shape[1] == 1:
        return logits[0, 0] > 0
    return logits[0].argmax(dim=0) == label


def gradcam_weights(activations: torch.Tensor, gradients: torch.Tensor, plus_plus: bool) -> torch.Tensor:
    """Channel weights ``w_c`` (shape ``(C,)``) from activations ``A`` and gradients ``g = dy/dA``,
    both ``(C, k, j, i)``.

    Grad-CAM: ``w_c = mean_v g_cv``. Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the
    exponential-free approximation where 2nd/3rd derivatives are powers of the 1st):
    ``alpha_cv = g_cv^2 / (2 g_cv^2 + sum_u A_cu * g_cv^3)`` (0 where the denominator is 0),
    ``w_c = sum_v alpha_cv * relu(g_cv)``.
    """
    if not plus_plus:
        return gradients.flatten(1).mean(dim=1)
    grad2 = gradients ** 2
    grad3 = grad2 * gradients
    sum_activations = activations.flatten(1).sum(dim=1).view(-1, *([1] * (activations.dim() - 1)))
    denominator = 2.0 * grad2 + sum_activations * grad3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, grad2 / safe, torch.zeros_like(grad2))
    return (alpha * F.relu(gradients)).flatten(1).sum(dim=1)


def gradcam(model: nn.Module, inputs: torch.Tensor, label: int, region: Optional[torch.Tensor],
            layer: str, plus_plus: bool = False) -> tuple[np.ndarray, dict]:
    """Seg-Grad-CAM (or ++) of ``label`` restricted to ``region`` (bool ``(k, j, i)`` on the input
    grid; ``None`` = the predicted mask of the label, or the whole window if that is empty).

    Returns the ReLU'd map upsampled trilinearly to the input tensor's grid ``(k, j, i)`` and facts
    (``region_voxels``, ``region_kind``)."""
    module = get_submodule(model, layer)
    store: dict = {}
    handle = module.register_forward_hook(lambda _m, _i, output: store.__setitem__("a", output))
    try:
        with torch.enable_grad():
            logits = model(inputs)
            activations = store.get("a")
            if not isinstance(activations, torch.Tensor) or activations.dim() != 5:
                raise ModelError(f"Layer {layer!r} does not output a 5D feature map; pick a convolutional block.")
            mask, kind = _region_mask(logits, label, region)
            score = (label_channel(logits, label) * mask).sum()
            gradients, = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
    a, g = activations[0].detach(), gradients[0].detach()
    weights = gradcam_weights(a, g, plus_plus)
    cam = F.relu((weights.view(-1, 1, 1, 1) * a).sum(dim=0))
    cam = F.interpolate(cam[None, None], size=inputs.shape[2:], mode="trilinear", align_corners=False)[0, 0]
    predicted = predicted_mask(logits.detach(), label).numpy()
    return cam.numpy().astype(np.float32), {"region_voxels": int(mask.sum()), "region_kind": kind, "predicted": predicted}


def _region_mask(logits: torch.Tensor, label: int, region: Optional[torch.Tensor]) -> tuple[torch.Tensor, str]:
    shape = logits.shape[2:]
    if region is not None:
        if tuple(region.shape) != tuple(shape):
            raise ModelError(f"The model's output grid {tuple(shape)} differs from its input grid "
                             f"{tuple(region.shape)}; Seg-Grad-CAM needs a same-size segmentation head.")
        return region.to(logits.dtype), "given"
    mask = predicted_mask(logits.detach(), label)
    if bool(mask.any()):
        return mask.to(logits.dtype), "predicted_mask"
    return torch.ones(shape, dtype=logits.dtype), "whole_window_no_prediction"


def smoothgrad(model: nn.Module, inputs: torch.Tensor, label: int, region: Optional[torch.Tensor],
               n_samples: int = 8, noise_fraction: float = 0.1, seed: int = 0,
               image_channels: int = 1) -> tuple[np.ndarray, dict]:
    """SmoothGrad (Smilkov et al. 2017) of the input gradient: mean over ``n_samples`` noisy copies
    (Gaussian, sigma = ``noise_fraction`` x the input's value range, seeded) of ``|dy/dx|`` summed
    over the first ``image_channels`` channels (prompt channels excluded). Works on TorchScript."""
    generator = torch.Generator().manual_seed(int(seed))
    image_part = inputs[:, :image_channels]
    sigma = float(noise_fraction * (image_part.max() - image_part.min()).clamp(min=1e-6))
    total = torch.zeros(inputs.shape[2:])
    facts: dict = {}
    with torch.no_grad():
        logits = model(inputs)
        mask, kind = _region_mask(logits, label, region)
        facts["predicted"] = predicted_mask(logits, label).numpy()
    for _ in range(int(n_samples)):
        noisy = inputs.clone()
        noisy[:, :image_channels] += sigma * torch.randn(image_part.shape, generator=generator)
        noisy.requires_grad_(True)
        with torch.enable_grad():
            score = (label_channel(model(noisy), label) * mask).sum()
            gradient, = torch.autograd.grad(score, noisy)
        total += gradient[0, :image_channels].abs().sum(dim=0)
    facts.update(region_voxels=int(mask.sum()), region_kind=kind, n_samples=int(n_samples),
                 noise_sigma=sigma, noise_seed=int(seed))
    return (total / max(int(n_samples), 1)).numpy().astype(np.float32), facts


def normalise_map(raw: np.ndarray) -> tuple[np.ndarray, bool]:
    """ReLU then divide by the maximum: values in [0, 1], 1 at the peak. An all-zero (or
    non-finite) map stays zeros and returns ``all_zero=True`` so callers can flag it."""
    cleaned = np.where(np.isfinite(raw), np.maximum(raw, 0.0), 0.0).astype(np.float32)
    peak = float(cleaned.max()) if cleaned.size else 0.0
    if peak <= 0.0:
        return np.zeros_like(cleaned), True
    return np.clip(cleaned / peak, 0.0, 1.0).astype(np.float32), False
