"""A ventricular model with analytically known output and the cardiac phantom as a Slicer cine sequence, for the
Cardiac tab's one-button cine EF tests (plumbing: what runs where, what is captured, what comes back).

:func:`make_bright_ventricle_model_folder` writes a segmentation model (card + TorchScript, SHA-256 in the card)
with the labels of ``ventricular_short_axis_3label`` (LV blood pool, LV myocardium, RV blood pool) whose network
labels every voxel brighter than 600 (the phantom's blood pools: 900 and 880; myocardium 120, body 300) as LV
blood pool — voxel-wise, so its labels on the phantom are known without training.
"""
from __future__ import annotations

import hashlib
import json

import torch

VENTRICLE_LABELS = (("LV blood pool", [0.85, 0.2, 0.2]), ("LV myocardium", [0.9, 0.6, 0.4]),
                    ("RV blood pool", [0.2, 0.4, 0.85]))


class BrightIsBloodPool(torch.nn.Module):
    """Logits ``[background 0, LV pool (x − 600)/20, −100, −100]`` on ``[n, 1, ...]`` raw intensities."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = torch.full_like(x, -100.0)
        return torch.cat([torch.zeros_like(x), (x - 600.0) / 20.0, low, low], dim=1)


def make_bright_ventricle_model_folder(folder, model_id: str = "bright-ventricle"):
    folder.mkdir(parents=True)
    torch.jit.script(BrightIsBloodPool()).save(str(folder / "model.pt"))
    sha = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    card = {"id": model_id, "title": "Bright voxels are LV blood pool (test)", "version": "1.0.0",
            "task": "segmentation", "modality": ["MR"],
            "labels": [{"label": n, "name": name, "color_rgb": colour}
                       for n, (name, colour) in enumerate(VENTRICLE_LABELS, start=1)],
            "input": {"channels": 1, "patch_size": [32, 32, 16], "normalisation": {"kind": "none"}},
            "network": {"format": "torchscript"}, "weights": {"file": "model.pt", "sha256": sha},
            "licence": "CC0 (test)", "provenance": "test: an analytic network", "metrics": {}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def small_phantom_cine(n_phases: int = 4):
    """``(images, labelmaps, truth)`` of the cardiac phantom on a small grid (64 × 64 × 40, 2 × 2 × 3 mm)."""
    from RadAISegmentLib.phantoms_cardiac import cardiac_cine_phantom
    return cardiac_cine_phantom(n_phases=n_phases, shape_ijk=(64, 64, 40), spacing_mm=(2.0, 2.0, 3.0))


def cine_sequence_node(scene, images, times_ms, name: str = "cine", unit: str = "ms"):
    """A ``vtkMRMLSequenceNode`` of scalar volumes (one per phase, index values = ``times_ms`` in ``unit``) played
    by a sequence browser, as Slicer loads a 4D file."""
    from RadAISegmentLib.mrml import volume_node_from_image
    from RadAIVolumetricsLib.cine_slicer import new_browser
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit(unit)
    sequence.SetIndexType(sequence.NumericIndex)
    for image, time in zip(images, times_ms):
        volume = volume_node_from_image(image, f"{name} phase", scene)
        sequence.SetDataNodeAtValue(volume, f"{time:g}")
        scene.RemoveNode(volume)
    browser = new_browser(scene, f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    return sequence
