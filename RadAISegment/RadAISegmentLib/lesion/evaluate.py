"""Evaluate the lesion model and the classical baseline on the real tumours it never trained on.

Cases: PyRadiomics lung1 (CT), brain1 (MR), breast1 (MR), read from ``shared/data``.
The seed is the centroid of the reference mask (RAS mm), as a reader clicks the middle
of a lesion; the box edge is the mask's largest physical extent × 1.5 + 10 mm, as a
user would drag a box around it. Robustness: the same with the seed moved by 25 %
of the extent in each of six directions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..io import read_image, read_labelmap
from .baseline import segment_lesion_baseline

CASES = ("lung1", "brain1", "breast1")


def case_prompt(reference) -> tuple[np.ndarray, float, np.ndarray]:
    """Seed (centroid, RAS), box edge (mm) and physical extent (mm per i, j, k) from a reference mask."""
    indices = np.argwhere(reference.array > 0)
    seed_ras = reference.index_to_ras(indices.mean(axis=0)[::-1])
    extent_mm = (indices.max(axis=0) - indices.min(axis=0) + 1)[::-1] * np.asarray(reference.spacing_mm)
    return seed_ras, float(extent_mm.max() * 1.5 + 10.0), extent_mm


def case_metrics(predicted: np.ndarray, reference: np.ndarray, spacing_mm) -> dict:
    from RadAIVolumetricsLib.validation.metrics import overlap_metrics
    metrics = overlap_metrics(predicted > 0, reference > 0, spacing_mm)
    return {"dice": metrics.dice, "volume_error_percent": metrics.volume_error_percent, "hd95_mm": metrics.hd95_mm}


def evaluate_real_cases(shared_data: Path, segment: Callable, cases=CASES, jitter: bool = False) -> dict:
    """``segment(image, seed_ras, box_mm) -> labelmap``; returns per-case Dice / volume error / HD95."""
    results = {}
    for case in cases:
        image = read_image(Path(shared_data) / "pyradiomics-cases" / f"{case}_image.nrrd")
        reference = read_labelmap(Path(shared_data) / "pyradiomics-cases" / f"{case}_label.nrrd", reference=image)
        reference = reference.with_array((reference.array == 1).astype(np.uint8))
        seed_ras, box_mm, extent_mm = case_prompt(reference)
        results[case] = case_metrics(segment(image, seed_ras, box_mm).array, reference.array, image.spacing_mm)
        if jitter:
            dices = []
            for axis in range(3):
                for sign in (-1, 1):
                    offset = np.zeros(3)
                    offset[axis] = sign * 0.25 * extent_mm[axis]
                    moved = reference.index_to_ras(reference.ras_to_index(seed_ras) + offset / np.asarray(reference.spacing_mm))
                    if reference.array[tuple(np.round(reference.ras_to_index(moved)).astype(int)[::-1])] == 0:
                        continue   # a click outside the lesion is not a fair prompt
                    dices.append(case_metrics(segment(image, moved, box_mm).array, reference.array,
                                              image.spacing_mm)["dice"])
            results[case]["dice_with_seed_offsets_mean"] = float(np.mean(dices)) if dices else None
    return results


def evaluate_model_and_baseline(shared_data: Path, model, jitter: bool = True) -> dict:
    """Model and baseline on the same prompts (centroid seed, and the seed offsets when ``jitter``), plus the
    model's wall time per lesion on CPU (crop, network, paste back, component; the model already loaded)."""
    import time
    from .predict import segment_lesion
    seconds = []

    def timed_model(image, seed_ras, box_mm):
        started = time.perf_counter()
        result = segment_lesion(image, seed_ras, box_mm, model)
        seconds.append(time.perf_counter() - started)
        return result

    evaluation = {"model": evaluate_real_cases(shared_data, timed_model, jitter=jitter),
                  "baseline_confidence_connected": evaluate_real_cases(shared_data, segment_lesion_baseline,
                                                                       jitter=jitter)}
    evaluation["model_seconds_per_lesion_median"] = float(np.median(seconds[1:] or seconds))
    return evaluation


def metrics_table(evaluation: dict) -> str:
    """Markdown table: per case, Dice / volume error % / HD95 mm / mean Dice with seed offsets, model vs baseline."""
    rows = ["| case | method | Dice | volume error % | HD95 mm | Dice, seed offsets (mean) |",
            "|---|---|---|---|---|---|"]
    for case in CASES:
        for method, key in (("lesion-roi model", "model"), ("baseline (confidence-connected)",
                                                            "baseline_confidence_connected")):
            result = evaluation.get(key, {}).get(case)
            if result is None:
                continue
            jitter = result.get("dice_with_seed_offsets_mean")
            rows.append(f"| {case} | {method} | {result['dice']:.3f} | {result['volume_error_percent']:+.1f} | "
                        f"{result['hd95_mm']:.1f} | {'—' if jitter is None else f'{jitter:.3f}'} |")
    return "\n".join(rows)
