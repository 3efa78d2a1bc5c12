"""Calibrate the stated volume range on held-aside synthetic lesions (never the real evaluation cases).

The model predicts ``N`` synthetic cases drawn with a seed that neither training nor checkpoint validation
uses; for each, the reported volume (``p ≥ 0.5``), the model's spread (``p ≥ 0.7`` inside, ``p ≥ 0.3``
connected) and the true volume (the lesion's occupancy) give one sample, and
:func:`.uncertainty.calibrate_scales` picks the scales that make the range hold the true volume in
``coverage`` of them. The result goes into the card (``uncertainty``), where :mod:`.predict` reads it, with
how often the outline without clicks meets the targets of ``docs/lesion-model.md`` (Dice ≥ 0.85, |volume
error| ≤ 15 %) on these lesions: what the model does on lesions like those it was trained on, beside the three
real tumours."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .uncertainty import calibrate_scales, model_spread

CALIBRATION_SEED = 20_000
CALIBRATION_CASES = 160
COVERAGE = 0.9


def calibrate_model(model, cases: int = CALIBRATION_CASES, coverage: float = COVERAGE,
                    extra_backgrounds: Sequence[Path] = (), batch: int = 8) -> dict:
    """``{"scale_low", "scale_high", "coverage", "cases", "achieved_coverage", ...}`` for a loaded lesion model."""
    from .backgrounds import load_backgrounds
    from .predict import predict_probabilities, prompt_settings, select_components
    from .synthetic import make_case
    from ..device import choose_device
    from ..overlap import overlap_metrics
    settings = prompt_settings(model)
    rng = np.random.default_rng(CALIBRATION_SEED)
    backgrounds = load_backgrounds(extra_backgrounds)
    spreads, truths, dices = [], [], []
    choice = choose_device("cpu", "auto")
    for start in range(0, cases, batch):
        drawn = [make_case(backgrounds, rng, settings.grid) for _ in range(min(batch, cases - start))]
        probability = predict_probabilities(model.network, np.stack([c.x for c in drawn]), "cpu",
                                            settings.mirror_axes, autocast=choice.autocast())
        for case, p in zip(drawn, probability):
            voxel_ml = (case.info["edge_mm"] / settings.grid) ** 3 / 1000.0
            outline = p >= 0.5
            seed = case.info["seed_kji"]
            if outline.any():
                outline = select_components(outline, [seed] if seed is not None else [], seed)
            spreads.append(model_spread(p, outline, voxel_ml))
            dices.append(overlap_metrics(outline, case.label, (1.0, 1.0, 1.0)).dice)
            truths.append(float(case.target.sum()) * voxel_ml)
    scale_low, scale_high = calibrate_scales(spreads, truths, coverage)
    held = [volume - scale_low * (volume - sure) <= truth <= volume + scale_high * (possible - volume)
            for (volume, sure, possible), truth in zip(spreads, truths)]
    errors = np.array([abs(volume / truth - 1) if truth > 0 else np.inf
                       for (volume, _, _), truth in zip(spreads, truths)])
    dices = np.array(dices)
    return {"scale_low": scale_low, "scale_high": scale_high, "coverage": coverage, "cases": len(truths),
            "mirror_axes": list(settings.mirror_axes),
            "achieved_coverage": float(np.mean(held)), "median_abs_volume_error": float(np.median(errors)),
            # how often the no-click targets (docs/lesion-model.md) hold on lesions like the training data
            "median_dice": float(np.median(dices)),
            "share_abs_volume_error_at_most_15_percent": float(np.mean(errors <= 0.15)),
            "share_dice_at_least_0_85": float(np.mean(dices >= 0.85)),
            "share_both": float(np.mean((errors <= 0.15) & (dices >= 0.85))),
            "method": "split-conformal scales of the p>=0.7 / p>=0.3 spread on held-aside synthetic lesions "
                      "(lesion.calibration), floor: a half-voxel shell (lesion.uncertainty)"}


def record_calibration(model_dir: Path, calibration: dict) -> None:
    from ..atomic import write_text_atomic
    card_path = Path(model_dir) / "card.json"
    card = json.loads(card_path.read_text())
    card["uncertainty"] = calibration
    write_text_atomic(card_path, json.dumps(card, indent=2))
