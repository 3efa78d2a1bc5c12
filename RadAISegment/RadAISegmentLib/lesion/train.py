"""``radai train lesion-roi``: train the promptable lesion model on synthetic lesions (CPU, seeded).

A small MONAI 3D U-Net (2 input channels: image crop + seed Gaussian; 1 output
logit) on ``48³`` crops, Dice + BCE loss, Adam with cosine decay, samples made on
the fly by :mod:`.synthetic` in a DataLoader worker. The checkpoint kept is the
best on held-aside synthetic validation cases (never on real cases). Writes
``card.json`` and ``model.pt`` (a state dict) atomically into the output folder.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..atomic import atomic_path, write_text_atomic
from .preprocess import CT_WINDOW_HU, DEFAULT_BOX_MM, DEFAULT_GRID, SEED_SIGMA_VOXELS

CT_NORMALISATION = "piecewise"   # lesion.preprocess.normalise_crop scheme the synthetic data are made with

NETWORK = {"name": "monai.networks.nets.UNet",
           "parameters": {"spatial_dims": 3, "in_channels": 2, "out_channels": 1, "channels": [16, 32, 64, 128],
                          "strides": [2, 2, 2], "num_res_units": 1}}


class SyntheticStream(torch.utils.data.IterableDataset):
    def __init__(self, shared_data: Path, seed: int, grid: int) -> None:
        self.shared_data, self.seed, self.grid = Path(shared_data), seed, grid

    def __iter__(self):
        from .synthetic import load_backgrounds, make_sample
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        backgrounds = load_backgrounds(self.shared_data)
        while True:
            x, y = make_sample(backgrounds, rng, self.grid)
            if rng.random() < 0.5:     # flips keep the crop's physical meaning (isotropic cube)
                axis = int(rng.integers(1, 4))
                x, y = np.flip(x, axis).copy(), np.flip(y, axis - 1).copy()
            yield torch.from_numpy(x), torch.from_numpy(y[None])


def build_network() -> torch.nn.Module:
    from monai.networks.nets import UNet
    return UNet(**NETWORK["parameters"])


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    intersection = (probability * target).sum(dim=(1, 2, 3, 4))
    dice = 1.0 - (2.0 * intersection + 1.0) / (probability.sum(dim=(1, 2, 3, 4)) + target.sum(dim=(1, 2, 3, 4)) + 1.0)
    return dice.mean() + torch.nn.functional.binary_cross_entropy_with_logits(logits, target)


def validation_dice(network: torch.nn.Module, cases: list[tuple[np.ndarray, np.ndarray]]) -> float:
    network.eval()
    scores = []
    with torch.no_grad():
        for x, y in cases:
            prediction = (network(torch.from_numpy(x)[None]) > 0).numpy()[0, 0]
            scores.append(2.0 * (prediction & (y > 0)).sum() / (prediction.sum() + (y > 0).sum() + 1e-6))
    network.train()
    return float(np.mean(scores))


def write_model(network: torch.nn.Module, out_dir: Path, metrics: dict, provenance: str) -> Path:
    """``model.pt`` (state dict) + ``card.json`` with its SHA-256, both written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(network.state_dict(), tmp)
    sha = hashlib.sha256((out_dir / "model.pt").read_bytes()).hexdigest()
    card = {
        "id": "lesion-roi", "title": "Promptable lesion segmentation (seed point + box), CT and MR", "version": "1.1.0",
        "task": "promptable-lesion", "modality": ["CT", "MR"],
        "labels": [{"label": 1, "name": "Lesion", "color_rgb": [0.95, 0.35, 0.2],
                    "category": {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically Altered Structure"},
                    "type": {"value": "108369006", "scheme": "SCT", "meaning": "Neoplasm"}}],
        "input": {"channels": 2, "patch_size": [DEFAULT_GRID] * 3,
                  "normalisation": {"kind": "ct_window", "a_min": CT_WINDOW_HU[0], "a_max": CT_WINDOW_HU[1]},
                  "normalisation_ct": "piecewise linear: -1000 HU -> 0, -200 -> 0.3, 300 -> 1, clipped (lesion.preprocess)",
                  "normalisation_mr": "1st-99th percentile of the crop -> 0..1",
                  "prompt": {"grid": DEFAULT_GRID, "default_box_mm": DEFAULT_BOX_MM,
                             "seed_sigma_voxels": SEED_SIGMA_VOXELS, "ct_normalisation": CT_NORMALISATION}},
        "network": {"format": "state_dict", **NETWORK},
        "weights": {"file": "model.pt", "sha256": sha},
        "licence": "Apache-2.0 (RadAI); trained only on synthetic lesions in Apache-2.0 / Debian-packaged backgrounds",
        "provenance": provenance, "metrics": metrics,
        "saliency": {"method": "gradcampp",
                     "note": "Grad-CAM++ at the bottleneck: on the evaluation tumours it puts more of the map near the "
                             "lesion than plain Grad-CAM for this network (docs/lesion-model.md)"},
    }
    write_text_atomic(out_dir / "card.json", json.dumps(card, indent=2))
    return out_dir


def train(shared_data: Path, out_dir: Path, minutes: float = 25.0, seed: int = 0, threads: int = 1,
          batch_size: int = 4, grid: int = DEFAULT_GRID, validate_every: int = 100,
          log: Callable[[str], None] = print, max_steps: Optional[int] = None) -> dict:
    """Train until ``minutes`` (or ``max_steps``) elapse; keeps the best validation checkpoint."""
    from .synthetic import load_backgrounds, make_sample
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    network = build_network()
    backgrounds = load_backgrounds(shared_data)
    validation_rng = np.random.default_rng(10_000 + seed)
    validation = [make_sample(backgrounds, validation_rng, grid) for _ in range(24)]
    loader = torch.utils.data.DataLoader(SyntheticStream(shared_data, seed, grid), batch_size=batch_size,
                                         num_workers=1, persistent_workers=True)
    optimiser = torch.optim.Adam(network.parameters(), lr=2e-3)
    started = time.monotonic()
    budget = minutes * 60.0
    best = {"validation_dice": -1.0, "step": 0}
    best_state = None
    step = 0
    for x, y in loader:
        elapsed = time.monotonic() - started
        if elapsed > budget or (max_steps is not None and step >= max_steps):
            break
        for group in optimiser.param_groups:   # cosine decay over the time budget
            group["lr"] = 2e-3 * 0.5 * (1.0 + math.cos(math.pi * min(elapsed / budget, 1.0)))
        loss = dice_bce_loss(network(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % validate_every == 0 or (max_steps is not None and step >= max_steps):
            score = validation_dice(network, validation)
            log(f"step {step} {elapsed / 60:.1f} min loss {loss.item():.3f} synthetic validation Dice {score:.3f}")
            if score > best["validation_dice"]:
                best = {"validation_dice": score, "step": step}
                best_state = {k: v.clone() for k, v in network.state_dict().items()}
    if best_state is None:
        best = {"validation_dice": validation_dice(network, validation), "step": step}
    else:
        network.load_state_dict(best_state)
    metrics = {"synthetic_validation_dice": best["validation_dice"], "checkpoint_step": best["step"],
               "training_steps": step, "training_minutes": round((time.monotonic() - started) / 60.0, 1),
               "training_seed": seed, "threads": threads}
    provenance = ("Trained by `radai train lesion-roi` on synthetic lesions composited into the TotalSegmentator "
                  "example CT and MR (Apache-2.0) and Colin27 T1 (Debian mricron-data); checkpoint chosen on "
                  "held-aside synthetic cases. The PyRadiomics lung1/brain1/breast1 tumours were never used for "
                  "training or checkpoint choice; they are evaluation cases (docs/lesion-model.md).")
    write_model(network, out_dir, metrics, provenance)
    return metrics
