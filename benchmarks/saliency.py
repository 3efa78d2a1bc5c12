"""Grad-CAM for one lesion: RadAI's crop-around-the-target Seg-Grad-CAM vs the obvious peer,
``monai.visualize.GradCAM`` on the whole volume (one full back-propagation), on CPU.

Model: the shipped ``lesion-roi`` model when present (Resources/Models/lesion-roi), otherwise an
untrained MONAI UNet of the same size class (timing and memory do not depend on the weights).
Volume: the real lung1 CT from ../shared/data/pyradiomics-cases when present (seed = lesion
centroid), else a synthetic 256x256x128 volume. Prints times, peak memory (tracemalloc of Python
allocations plus torch CPU allocator via resource.getrusage high-water mark deltas) and ratios.

    python benchmarks/saliency.py [--json]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "RadAISegment"))
sys.path.insert(0, str(ROOT / "RadAIVolumetrics"))

from RadAISegmentLib import io, saliency  # noqa: E402
from RadAISegmentLib.image import Image  # noqa: E402


def load_case() -> tuple[Image, np.ndarray, str]:
    folder = ROOT.parent / "shared" / "data" / "pyradiomics-cases"
    if (folder / "lung1_image.nrrd").exists():
        image = io.read_image(folder / "lung1_image.nrrd")
        labels = io.read_labelmap(folder / "lung1_label.nrrd", reference=image)
        centroid_kji = np.argwhere(labels.array > 0).mean(axis=0)
        return image, image.index_to_ras(centroid_kji[::-1]), "lung1 (real CT)"
    rng = np.random.default_rng(0)
    image = Image(rng.normal(-700, 50, (128, 256, 256)).astype(np.float32), spacing_mm=(0.8, 0.8, 2.0))
    return image, image.index_to_ras(np.array([128.0, 128.0, 64.0])), "synthetic 256x256x128"


def load_model() -> tuple[torch.nn.Module, dict]:
    shipped = ROOT / "Resources" / "Models" / "lesion-roi"
    if (shipped / "card.json").exists():
        return saliency.load_for_saliency(str(shipped))
    from monai.networks.nets import UNet
    network = UNet(3, 1, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1).eval()
    card = {"id": "untrained-unet", "labels": [{"label": 1, "name": "Lesion"}],
            "input": {"spacing_mm": [1, 1, 1], "patch_size": [64, 64, 64],
                      "normalisation": {"kind": "ct_window", "a_min": -1000, "a_max": 400}}}
    return network, card


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    image, seed_ras, case = load_case()
    network, card = load_model()
    promptable = card.get("task") == "promptable-lesion"

    rss0 = peak_rss_mb()
    start = time.perf_counter()
    ours = saliency.explain(image, network, card, seed_ras=seed_ras, method="gradcam")
    ours_s = time.perf_counter() - start
    ours_mb = peak_rss_mb() - rss0

    result = {"case": case, "model": card.get("id"), "image_shape_ijk": list(image.shape_ijk),
              "radai_seconds": round(ours_s, 3), "radai_peak_rss_increase_mb": round(ours_mb, 1),
              "radai_layer": ours.metadata["layer"]}
    if promptable:
        result["peer"] = "skipped: the promptable model needs a seed channel monai.visualize cannot build"
    else:
        from monai.visualize import GradCAM
        volume = saliency.explain.__globals__["normalise_intensities"](image.array, card["input"].get("normalisation", {}))
        shape = np.asarray(volume.shape)
        padded = np.pad(volume, [(0, int(-s % 8)) for s in shape])  # UNet needs multiples of 8
        rss1 = peak_rss_mb()
        start = time.perf_counter()
        cam = GradCAM(nn_module=network, target_layers=ours.metadata["layer"])
        cam(torch.from_numpy(padded)[None, None], class_idx=1)
        peer_s = time.perf_counter() - start
        peer_mb = peak_rss_mb() - rss1
        result.update(peer="monai.visualize.GradCAM on the whole volume", peer_seconds=round(peer_s, 3),
                      peer_peak_rss_increase_mb=round(peer_mb, 1), speedup=round(peer_s / max(ours_s, 1e-9), 2),
                      memory_ratio=round(max(peer_mb, 1e-3) / max(ours_mb, 1e-3), 2))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:32s} {value}")
        print(f"target: < ~3 s per lesion on CPU -> {'met' if ours_s < 3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
