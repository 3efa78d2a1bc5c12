"""Interactive lesion segmentation on CPU: seconds per lesion and per correction click, against the peer.

Case: the bundled real lung CT around lung1's tumour (``Resources/SampleData/lung-tumour_context.nrrd``, the
whole 512×512×48 chest when present, else the 128×128×48 crop), prompt as documented (seed at the reference's
centroid, box 1.5 × extent + 10 mm). Timed end to end, pre- and post-processing included, the model loaded and
warm (as in Slicer's persistent worker):

* ``lesion_seconds_per_lesion``: first prediction from seed and box (``segment_prompts``);
* ``lesion_seconds_per_click``: one more include/exclude click with the previous outline (what each click in
  Slicer or ``radai segment --include/--exclude --refine`` costs);
* the peer in the same run: classical confidence-connected region growing in the same box
  (``lesion.baseline``), the non-learned tool a workstation offers; ratios printed.

Median of ``--repeats`` runs after one warm-up. Target: < 1 s per interaction on 2 CPU cores.

    python benchmarks/lesion.py [--repeats 7] [--model DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "RadAISegment"))


def load_case():
    from RadAISegmentLib.io import read_image, read_labelmap
    from RadAISegmentLib.sample_data import sample_case, sample_data_dir
    paths = sample_case("lung-tumour")
    labels = read_labelmap(paths["labels"])
    context = sample_data_dir() / "lung-tumour_context.nrrd"
    image = read_image(context if context.exists() else paths["image"])
    truth = np.argwhere(labels.array == 1)
    seed = labels.index_to_ras(truth.mean(axis=0)[::-1])
    extent = (truth.max(axis=0) - truth.min(axis=0) + 1)[::-1] * np.asarray(labels.spacing_mm)
    name = "lung1 chest CT 512x512x48" if context.exists() else "lung1 crop 128x128x48"
    return image, tuple(float(v) for v in seed), float(extent.max() * 1.5 + 10.0), name


def median_seconds(work, repeats: int) -> float:
    work()                                                  # warm-up (model load, allocator)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def lesion_timings(model_dir=None, repeats: int = 7) -> dict:
    """The benchmark's figures (seconds, ratios, what ran)."""
    import torch
    from RadAISegmentLib.device import choose_device
    from RadAISegmentLib.lesion.baseline import segment_lesion_baseline
    from RadAISegmentLib.lesion.predict import prompt_settings, segment_prompts
    from RadAISegmentLib.lesion.prompts import LesionPrompt
    from RadAISegmentLib.models.cache import find_model
    from RadAISegmentLib.models.loaders import load_model_folder
    torch.set_num_threads(2)
    model = load_model_folder(Path(model_dir) if model_dir else find_model("lesion-roi").folder)
    image, seed, box_mm, name = load_case()
    prompt = LesionPrompt(seed_ras=seed, box_mm=box_mm)
    first, _ = segment_prompts(image, [prompt], model, "cpu")
    per_lesion = median_seconds(lambda: segment_prompts(image, [prompt], model, "cpu"), repeats)
    result = {"case": name, "model_version": model.card.version, "threads": torch.get_num_threads(),
              "precision": choose_device("cpu", "auto").precision if prompt_settings(model).interactive else "fp32",
              "lesion_seconds_per_lesion": per_lesion, "lesion_seconds_per_click": None}
    if prompt_settings(model).interactive:
        mask = np.argwhere(first.array > 0)
        edge = mask[np.argmax(mask[:, 2])] if len(mask) else np.round(image.ras_to_index(np.asarray(seed))[::-1])
        click = tuple(float(v) for v in image.index_to_ras(np.asarray(edge, float)[::-1] + np.array([1.0, 0, 0])))
        corrected = LesionPrompt(seed_ras=seed, box_mm=box_mm, include_ras=[click])
        result["lesion_seconds_per_click"] = median_seconds(
            lambda: segment_prompts(image, [corrected], model, "cpu", previous=first), repeats)
    baseline = median_seconds(lambda: segment_lesion_baseline(image, seed, box_mm), repeats)
    result["baseline_seconds_per_lesion"] = baseline
    result["ratio_lesion_vs_baseline"] = per_lesion / baseline
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model", help="model folder (default: the installed or shipped lesion-roi)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = lesion_timings(args.model, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['case']}, lesion-roi {result['model_version']}, {result['threads']} threads, "
          f"{result['precision']}")
    print(f"  per lesion (seed + box):  {result['lesion_seconds_per_lesion']:.3f} s")
    if result["lesion_seconds_per_click"] is not None:
        print(f"  per correction click:    {result['lesion_seconds_per_click']:.3f} s")
    print(f"  peer, region growing:    {result['baseline_seconds_per_lesion']:.3f} s "
          f"(model / peer = {result['ratio_lesion_vs_baseline']:.2f}x)")


if __name__ == "__main__":
    main()
