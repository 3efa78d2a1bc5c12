"""Lesion models with analytically known behaviour and a scan with two lesions, for the interactive-lesion tests.

:func:`make_click_model_folder` writes a lesion model folder (card + TorchScript weights, SHA-256 in the card)
whose network is one formula per voxel of the prompt channels (:mod:`RadAISegmentLib.lesion.prompts`):

    lesion-roi 2.x layout (5 channels):  logit = 10 · include + 6 · previous − 20 · exclude − 4
    lesion-roi 1.x layout (2 channels):  logit = 10 · seed − 4

so the lesion is where the seed / include Gaussians exceed 0.4 (a ball of 1.35 σ around each positive point),
a previous outline is kept unless an exclude click is near, and the voxel of an exclude click is never lesion
(its logit is at most 10 + 6 − 20 − 4 < 0). The network is voxel-wise, so the engine's left-right flip averaging changes nothing. Plumbing
tests can therefore state what a click must do (the clicked voxel joins or leaves the lesion) without
depending on any trained model's accuracy.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from RadAISegmentLib.image import Image


class ClickFollower(torch.nn.Module):
    """``10·include + 6·previous − 20·exclude − 4`` on ``[n, 5, g, g, g]`` (seed and clicks; see module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * x[:, 1:2] + 6.0 * x[:, 4:5] - 20.0 * x[:, 2:3] - 4.0


class SeedFollower(torch.nn.Module):
    """lesion-roi 1.x layout: ``10·seed − 4`` on ``[n, 2, g, g, g]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * x[:, 1:2] - 4.0


def make_click_model_folder(folder, model_id: str = "click-lesion", channels: int = 5, grid: int = 16,
                            default_box_mm: float = 24.0):
    """A promptable-lesion model folder (TorchScript) whose output follows its prompts (module docstring)."""
    folder.mkdir(parents=True)
    network = torch.jit.script(ClickFollower() if channels >= 5 else SeedFollower())
    network.save(str(folder / "model.pt"))
    sha = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    card = {"id": model_id, "title": f"Click-following lesion model ({channels} channels)", "version": "2.0.0"
            if channels >= 5 else "1.1.0", "task": "promptable-lesion", "modality": ["CT", "MR"],
            "labels": [{"label": 1, "name": "Lesion", "color_rgb": [0.95, 0.35, 0.2],
                        "category": {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically Altered Structure"},
                        "type": {"value": "108369006", "scheme": "SCT", "meaning": "Neoplasm"}}],
            "input": {"channels": channels, "patch_size": [grid] * 3,
                      "normalisation": {"kind": "ct_window", "a_min": -1000.0, "a_max": 500.0},
                      "prompt": {"grid": grid, "default_box_mm": default_box_mm, "ct_normalisation": "piecewise"}},
            "network": {"format": "torchscript"}, "weights": {"file": "model.pt", "sha256": sha},
            "licence": "CC0 (test)", "provenance": "test: an analytic network", "metrics": {}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


#: RAS positions (mm) of the two lesions' centres in :func:`two_lesion_ct`
LESION_CENTRES_RAS = ((-20.0, 10.0, 30.0), (22.0, 4.0, 34.0))


def two_lesion_ct() -> Image:
    """A CT-like volume (1.2 × 1.0 × 2.0 mm voxels, 30 × 60 × 72) with two soft-tissue spheres (radius 6 mm) in
    air-filled lung at :data:`LESION_CENTRES_RAS`; its modality is left unset (CT-like by its values)."""
    shape = (30, 60, 72)
    spacing = (1.2, 1.0, 2.0)
    origin_lps = (-45.0, -34.0, 0.0)            # voxel (0, 0, 0) at R 45, A 34, S 0; R and A fall along i and j
    image = Image(np.full(shape, -850.0, np.float32), spacing, origin_lps, np.eye(3))
    k, j, i = np.indices(shape)
    points_ras = image.index_to_ras(np.stack([i.ravel(), j.ravel(), k.ravel()], 1)).reshape(*shape, 3)
    array = image.array.copy()
    for centre in LESION_CENTRES_RAS:
        array[np.linalg.norm(points_ras - np.asarray(centre), axis=-1) <= 6.0] = 40.0
    return image.with_array(array)
