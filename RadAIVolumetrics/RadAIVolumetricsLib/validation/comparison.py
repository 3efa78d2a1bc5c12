"""Comparing two segmenters on the same cohort: two models, or two readers.

Each study may carry a second segmentation ``B`` next to the prediction ``A`` (manifest column
``prediction_b``, or ``radai evaluate --pred-b DIR``). Per study and label this adds B's metrics against
the reference and the overlap of A with B (inter-method / inter-reader agreement); the summary reports,
per label:

* ``dice_a_mean``, ``dice_b_mean`` and the paired difference ``dice_difference_mean`` (A − B) with a
  study-level bootstrap 95 % CI ``dice_difference_ci95`` (resampling studies keeps the pairing);
* ``dice_a_vs_b_mean``: Dice between A and B themselves;
* ``volume_bland_altman_a_vs_b_ml`` (A − B) and ``volume_icc_a_b`` (ICC(2,1) of the two volumes).

Only studies where both A and B were evaluated enter the comparison.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .agreement import bland_altman, bootstrap_ci, icc_2_1, mean_defined


def _paired_rows(results: Sequence, label: str) -> list[tuple[dict, dict, dict]]:
    return [(r.per_label[label], r.per_label_b[label], r.a_vs_b[label]) for r in results
            if r.error is None and label in r.per_label and label in r.per_label_b and label in r.a_vs_b]


def _dice_difference(sample: Sequence[tuple[dict, dict, dict]]):
    differences = [a["dice"] - b["dice"] for a, b, _ in sample if a["dice"] is not None and b["dice"] is not None]
    return mean_defined(differences)


def comparison_summary(results: Sequence, label: str, n_bootstrap: int, seed: int) -> dict:
    """A-vs-B figures for one label (see the module docstring); ``{"studies": 0}`` without pairs."""
    rows = _paired_rows(results, label)
    if not rows:
        return {"studies": 0}
    summary = {
        "studies": len(rows),
        "dice_a_mean": mean_defined([a["dice"] for a, _, _ in rows]),
        "dice_b_mean": mean_defined([b["dice"] for _, b, _ in rows]),
        "dice_difference_mean": _dice_difference(rows),
        "dice_difference_ci95": bootstrap_ci(rows, _dice_difference, n_bootstrap, seed),
        "dice_a_vs_b_mean": mean_defined([ab["dice"] for _, _, ab in rows]),
        "hd95_mm_a_vs_b_mean": mean_defined([ab["hd95_mm"] for _, _, ab in rows]),
    }
    if len(rows) >= 2:
        volumes = np.array([(a["predicted_volume_ml"], b["predicted_volume_ml"]) for a, b, _ in rows], float)
        summary["volume_bland_altman_a_vs_b_ml"] = bland_altman(volumes[:, 0], volumes[:, 1]).as_dict()
        summary["volume_icc_a_b"] = icc_2_1(volumes)
    return summary


def summarise_comparison(results: Sequence, labels: Sequence[str], n_bootstrap: int, seed: int) -> dict:
    """``{label: comparison_summary}`` when any study has a B segmentation, else ``{}``."""
    if not any(getattr(r, "per_label_b", None) for r in results):
        return {}
    return {label: comparison_summary(results, label, n_bootstrap, seed) for label in labels}
