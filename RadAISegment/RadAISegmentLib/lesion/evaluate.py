"""Evaluate the lesion model, its previous version and the classical baseline on real tumours it never saw.

Cases: PyRadiomics ``lung1`` (CT), ``brain1`` (MR), ``breast1`` (MR), bundled as the sample cases
``lung-tumour``, ``brain-tumour``, ``breast-lesion`` (crops that hold every box used here), or a reader's own
cases: every ``<case>_image.nrrd`` / ``<case>_label.nrrd`` pair (label 1 = the lesion) in a folder. Prompt,
as documented for readers: the seed at the centroid of the reference mask (RAS mm), a cube box of 1.5 × the
mask's largest extent + 10 mm. Then up to three clicks by the simulated reader (:mod:`.interaction`: the
interior point farthest from the boundary of the largest connected error region, include where the model
missed tumour, exclude where it over-segmented), each re-running the model with its previous outline.
Reported after 0, 1, 2, 3 clicks: Dice, volume error, HD95, whether the stated volume range holds the
reference volume, and wall time; without clicks also the best any probability cut-off would give
(:func:`best_cutoff`), which tells whether an error lies in where the boundary is drawn or in what the
network takes for lesion.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..image import Image
from ..io import read_image, read_labelmap
from .interaction import next_click
from .prompts import LesionPrompt

CASES = ("lung1", "brain1", "breast1")
SAMPLE_NAMES = {"lung1": "lung-tumour", "brain1": "brain-tumour", "breast1": "breast-lesion"}
CLICKS = 3
#: the probability cut-offs of :func:`best_cutoff` (the outline itself is always p >= 0.5)
CUTOFFS = tuple(round(0.05 * n, 2) for n in range(1, 20))


def case_names(cases_dir: Optional[Path] = None) -> tuple[str, ...]:
    """The evaluation cases: the bundled three, or every ``<case>_image.nrrd`` in ``cases_dir`` (sorted),
    each of which must have its ``<case>_label.nrrd``."""
    if cases_dir is None:
        return CASES
    from ..errors import InputError
    folder = Path(cases_dir)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder: give a folder of <case>_image.nrrd / <case>_label.nrrd pairs.")
    names = sorted(path.name[: -len("_image.nrrd")] for path in folder.glob("*_image.nrrd"))
    if not names:
        raise InputError(f"No evaluation cases in {folder}: expected pairs <case>_image.nrrd and "
                         "<case>_label.nrrd (label 1 = the lesion).")
    unlabelled = [name for name in names if not (folder / f"{name}_label.nrrd").is_file()]
    if unlabelled:
        raise InputError(f"{folder}: no reference for {', '.join(unlabelled)}: each <case>_image.nrrd needs "
                         "its <case>_label.nrrd (label 1 = the lesion).")
    return tuple(names)


def load_case(case: str, cases_dir: Optional[Path] = None) -> tuple[Image, Image]:
    """(image, reference labelmap 0/1: label 1 of the case's labelmap) of an evaluation case."""
    if cases_dir is not None:
        label_path = Path(cases_dir) / f"{case}_label.nrrd"
        image = read_image(Path(cases_dir) / f"{case}_image.nrrd")
    else:
        from ..sample_data import sample_case
        paths = sample_case(SAMPLE_NAMES[case])
        label_path = paths["labels"]
        image = read_image(paths["image"])
    reference = read_labelmap(label_path, reference=image)
    lesion = reference.array == 1
    if not lesion.any():
        from ..errors import LabelError
        raise LabelError(f"{label_path} has no voxel of label 1 (the lesion): the evaluation needs a reference "
                         "outline to place the prompt and the simulated reader's clicks.")
    return image, reference.with_array(lesion.astype(np.uint8))


def case_prompt(reference: Image) -> tuple[np.ndarray, float, np.ndarray]:
    """Seed (centroid, RAS), box edge (mm) and physical extent (mm per i, j, k) from a reference mask."""
    indices = np.argwhere(reference.array > 0)
    seed_ras = reference.index_to_ras(indices.mean(axis=0)[::-1])
    extent_mm = (indices.max(axis=0) - indices.min(axis=0) + 1)[::-1] * np.asarray(reference.spacing_mm)
    return seed_ras, float(extent_mm.max() * 1.5 + 10.0), extent_mm


def case_metrics(predicted: np.ndarray, reference: np.ndarray, spacing_mm) -> dict:
    from ..overlap import overlap_metrics
    metrics = overlap_metrics(predicted > 0, reference > 0, spacing_mm)
    return {"dice": metrics.dice, "volume_error_percent": metrics.volume_error_percent, "hd95_mm": metrics.hd95_mm}


def best_cutoff(probability: np.ndarray, region: tuple, seed_kji: np.ndarray, reference: np.ndarray,
                spacing_mm) -> dict:
    """The cut-off t of :data:`CUTOFFS` whose outline ``p >= t`` (the parts the product keeps: the one at the
    seed, else the nearest) has the highest Dice against ``reference``: ``{"cutoff", "dice",
    "volume_error_percent"}``.

    ``probability`` covers ``region`` (slices ``[k, j, i]``) of the input grid, ``seed_kji`` is relative to
    the region, ``reference`` is the whole input grid's mask. An upper bound for any re-thresholding or
    recalibration of the model's probabilities: where even the best cut-off misses a target, the network
    ranks the wrong voxels as lesion, and only another model (or the reader's clicks) can fix it.
    """
    from .predict import select_components
    best = None
    for cutoff in CUTOFFS:
        outline = probability >= cutoff
        if outline.any():
            outline = select_components(outline, [seed_kji], seed_kji)
        whole = np.zeros(reference.shape, bool)
        whole[region] = outline
        metrics = case_metrics(whole, reference, spacing_mm)
        if best is None or metrics["dice"] > best["dice"]:
            best = {"cutoff": cutoff, "dice": metrics["dice"], "volume_error_percent": metrics["volume_error_percent"]}
    return best


def interactive_session(image: Image, reference: Image, model, clicks: int = CLICKS) -> list[dict]:
    """The model with the documented prompt and then ``clicks`` simulated-reader clicks; one row per step."""
    from .predict import segment_prompts
    seed_ras, box_mm, _ = case_prompt(reference)
    prompt = LesionPrompt(seed_ras=tuple(float(v) for v in seed_ras), box_mm=box_mm)
    truth = reference.array > 0
    truth_ml = float(truth.sum()) * image.voxel_volume_mm3 / 1000.0
    rows, previous = [], None
    for step in range(clicks + 1):
        started = time.perf_counter()
        maps: list = []                             # the probabilities without clicks, for best_cutoff
        labelmap, volumes = segment_prompts(image, [prompt], model, "cpu", previous,
                                            probability_maps=maps if step == 0 else None)
        seconds = time.perf_counter() - started
        low, high = volumes[0].volume_range_ml
        row = {"clicks": step, **case_metrics(labelmap.array, reference.array, image.spacing_mm),
               "volume_ml": volumes[0].volume_ml, "volume_range_ml": [low, high], "reference_ml": truth_ml,
               "range_holds_reference": bool(low <= truth_ml <= high), "seconds": seconds}
        if step == 0:
            region, probability = maps[0]
            seed_kji = image.ras_to_index(seed_ras)[::-1] - np.array([s.start for s in region], float)
            row["best_cutoff"] = best_cutoff(probability, region, seed_kji, truth, image.spacing_mm)
        rows.append(row)
        if step == clicks:
            break
        click = next_click(labelmap.array > 0, truth, image.spacing_mm[::-1])
        if click is None:
            break
        point = tuple(float(v) for v in image.index_to_ras(np.asarray(click.index_kji, float)[::-1]))
        (prompt.include_ras if click.include else prompt.exclude_ras).append(point)
        row["next_click"] = {"ras": [round(v, 2) for v in point], "include": click.include}
        previous = labelmap
    return rows


def evaluate_models(models: dict, cases_dir: Optional[Path] = None, baseline: bool = True,
                    log: Callable[[str], None] = print) -> dict:
    """``{"models": {name: {case: rows}}, "baseline": {case: metrics}}``; interactive models get clicks,
    others (lesion-roi 1.x) only the initial prompt."""
    from .baseline import segment_lesion_baseline
    from .predict import prompt_settings
    cases = case_names(cases_dir)
    result = {"cases": list(cases), "models": {name: {} for name in models}, "baseline": {}}
    for case in cases:
        image, reference = load_case(case, cases_dir)
        for name, model in models.items():
            clicks = CLICKS if prompt_settings(model).interactive else 0
            result["models"][name][case] = interactive_session(image, reference, model, clicks)
            log(f"{case} {name}: " + ", ".join(f"{r['clicks']} clicks Dice {r['dice']:.3f} "
                                                f"vol {r['volume_error_percent']:+.1f}%"
                                                for r in result["models"][name][case]))
        if baseline:
            seed_ras, box_mm, _ = case_prompt(reference)
            result["baseline"][case] = case_metrics(segment_lesion_baseline(image, seed_ras, box_mm).array,
                                                    reference.array, image.spacing_mm)
    return result


def metrics_table(evaluation: dict) -> str:
    """Markdown: per case and method, Dice / volume error / HD95 / range holds, after 0-3 clicks."""
    rows = ["| case | method | clicks | Dice | volume error % | HD95 mm | stated range (mL) holds reference? |",
            "|---|---|---|---|---|---|---|"]
    for case in evaluation.get("cases", CASES):
        for name, cases in evaluation["models"].items():
            for row in cases.get(case, []):
                low, high = row["volume_range_ml"]
                rows.append(f"| {case} | {name} | {row['clicks']} | {row['dice']:.3f} | "
                            f"{row['volume_error_percent']:+.1f} | {row['hd95_mm']:.1f} | "
                            f"{low:.3g}–{high:.3g} vs {row['reference_ml']:.3g}: "
                            f"{'yes' if row['range_holds_reference'] else 'no'} |")
                best = row.get("best_cutoff")
                if best:
                    rows.append(f"| {case} | {name}, best cut-off p ≥ {best['cutoff']:.2f} | 0 | "
                                f"{best['dice']:.3f} | {best['volume_error_percent']:+.1f} | — | — |")
        base = evaluation.get("baseline", {}).get(case)
        if base:
            rows.append(f"| {case} | baseline (confidence-connected) | 0 | {base['dice']:.3f} | "
                        f"{base['volume_error_percent']:+.1f} | {base['hd95_mm']:.1f} | — |")
    return "\n".join(rows)


def previous_model_dir(model_dir: Path) -> Optional[Path]:
    """The previous version kept beside the model for comparison (``<model>/previous``), if present."""
    folder = Path(model_dir) / "previous"
    return folder if (folder / "card.json").is_file() else None


def evaluate_and_record(model_dir: Path, cases_dir: Optional[Path] = None, json_path: Optional[Path] = None) -> str:
    """Evaluate the model in ``model_dir`` (and its previous version and the baseline) on the real cases and
    return the table. The bundled cases' results are recorded in the card (``metrics.real_tumours``: what the
    card states about the model); a reader's own cases (``cases_dir``) never change the card. ``json_path``:
    the whole evaluation as JSON (written atomically)."""
    from ..atomic import write_text_atomic
    from ..models.loaders import load_model_folder
    from .calibration import calibrate_model, record_calibration
    from .preprocess import PromptSettings
    model_dir = Path(model_dir)
    case_names(cases_dir)                          # a folder without cases fails here, before anything is written
    card = json.loads((model_dir / "card.json").read_text())
    calibrated = card.get("uncertainty", {})
    mirror_axes = list(PromptSettings.from_card(card["input"]).mirror_axes)
    if card["input"].get("channels", 2) >= 5 and (calibrated.get("weights_sha256") != card["weights"]["sha256"]
                                                  or calibrated.get("mirror_axes", [2]) != mirror_axes):
        # a range calibrated for other weights, or for other test-time mirroring, is never used
        calibration = calibrate_model(load_model_folder(model_dir))      # synthetic cases only
        record_calibration(model_dir, {**calibration, "weights_sha256": card["weights"]["sha256"]})
    models = {"lesion-roi " + card["version"]: load_model_folder(model_dir)}
    previous = previous_model_dir(model_dir)
    if previous is not None:
        version = json.loads((previous / "card.json").read_text())["version"]
        models[f"lesion-roi {version} (previous)"] = load_model_folder(previous)
    evaluation = evaluate_models(models, cases_dir)
    if json_path is not None:
        write_text_atomic(Path(json_path), json.dumps(evaluation, indent=2))
    if cases_dir is None:
        card = json.loads((model_dir / "card.json").read_text())
        card.setdefault("metrics", {})["real_tumours"] = evaluation
        card["metrics"]["real_tumours_protocol"] = (
            "lung1 (CT), brain1 (MR), breast1 (MR): never used for training or checkpoint choice; seed = mask "
            "centroid, box = 1.5 x largest extent + 10 mm, then up to 3 simulated-reader clicks")
        write_text_atomic(model_dir / "card.json", json.dumps(card, indent=2))
    return metrics_table(evaluation)
