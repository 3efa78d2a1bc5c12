"""The ``lesion-roi`` model card and weights, written atomically by training (:mod:`.train`)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..atomic import atomic_path, write_text_atomic
from .preprocess import CT_WINDOW_HU
from .prompts import BOX_CORNER_MARGIN, CHANNELS, DEFAULT_BOX_MM, GRID, POINT_SIGMA_VOXELS

VERSION = "2.4.0"
CT_NORMALISATION = "piecewise"
MIRROR_AXES = (0, 1, 2)      # trained with random flips along each axis: test-time mirroring along all three
BACKGROUNDS = ("TotalSegmentator example CT and MR (Apache-2.0, bundled in Resources/SampleData), its example "
               "chest CT DICOM series when given, Colin27 T1 and ch2better (Debian mricron-data), and the MNI152 "
               "2009a T1 template (nilearn, BSD-3) when installed")
PROVENANCE = (f"Trained by `radai train lesion-roi` on synthetic lesions composited into real backgrounds: {BACKGROUNDS}. "
              "Checkpoint chosen on held-aside synthetic cases. The PyRadiomics lung1/brain1/breast1 tumours were "
              "never used for training or checkpoint choice; they are evaluation cases (docs/lesion-model.md).")


def card_dict(sha256: str, metrics: dict, network: dict) -> dict:
    return {
        "id": "lesion-roi", "title": "Interactive lesion segmentation (seed, box and correction clicks), CT and MR",
        "version": VERSION, "task": "promptable-lesion", "modality": ["CT", "MR"],
        "labels": [{"label": 1, "name": "Lesion", "color_rgb": [0.95, 0.35, 0.2],
                    "category": {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically Altered Structure"},
                    "type": {"value": "108369006", "scheme": "SCT", "meaning": "Neoplasm"}}],
        "input": {"channels": len(CHANNELS), "patch_size": [GRID] * 3,
                  "normalisation": {"kind": "ct_window", "a_min": CT_WINDOW_HU[0], "a_max": CT_WINDOW_HU[1]},
                  "normalisation_ct": "piecewise linear: -1000 HU -> 0, -200 -> 0.3, 300 -> 1, clipped (lesion.preprocess)",
                  "normalisation_mr": "1st-99th percentile of the crop -> 0..1",
                  "prompt": {"grid": GRID, "default_box_mm": DEFAULT_BOX_MM, "point_sigma_voxels": POINT_SIGMA_VOXELS,
                             "channels": list(CHANNELS), "ct_normalisation": CT_NORMALISATION,
                             "box_corner_margin": BOX_CORNER_MARGIN, "interactive": True,
                             "mirror_axes": list(MIRROR_AXES)}},
        "network": {"format": "state_dict", **network},
        "weights": {"file": "model.pt", "sha256": sha256},
        "licence": "Apache-2.0 (RadAI); trained only on synthetic lesions in Apache-2.0 / BSD / Debian-packaged backgrounds",
        "provenance": PROVENANCE, "metrics": metrics,
        "saliency": {"method": "gradcampp",
                     "note": "Grad-CAM++ at the bottleneck (docs/lesion-model.md: where it localises and where not)"},
    }


def write_model(state_dict: dict, out_dir: Path, metrics: dict, network: dict) -> Path:
    """``model.pt`` (state dict) + ``card.json`` with its SHA-256, both atomic; keeps evaluation results
    already in an existing card (``metrics.real_tumours`` ...) when the weights are unchanged."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(state_dict, tmp)
    sha = hashlib.sha256((out_dir / "model.pt").read_bytes()).hexdigest()
    write_text_atomic(out_dir / "card.json", json.dumps(card_dict(sha, metrics, network), indent=2))
    return out_dir
