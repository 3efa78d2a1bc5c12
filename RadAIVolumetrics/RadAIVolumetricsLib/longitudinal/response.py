"""Response categories: RECIST 1.1 and volumetric criteria, with the nadir tracked over all timepoints.

RECIST 1.1 (Eisenhauer et al. 2009), on target lesions chosen at baseline
(measurable: long axis ≥ 10 mm; at most 5, the largest; ≤ 2 per organ when
organ labels are given — lymph-node short-axis rules are not modelled):
* CR: all target lesions gone (and no new lesion);
* PD: sum of diameters ≥ +20 % over the nadir AND ≥ 5 mm absolute increase, or any new lesion;
* PR: sum ≤ −30 % of the baseline sum;
* SD: otherwise.
Volumetric criteria on the total target volume: PR ≤ −65 % vs baseline, PD ≥ +73 % vs the
nadir (or a new lesion), CR all gone. Boundaries are inclusive with a 1e-9 tolerance on
percentages, so exactly −30 % is PR and exactly +20 % (with ≥ 5 mm) is PD.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

EPSILON = 1e-9


def _percent(value: float, reference: float) -> Optional[float]:
    return None if reference == 0 else 100.0 * (value - reference) / reference


def _category(values: Sequence[float], index: int, new_lesion: bool, pr_percent: float, pd_percent: float,
              pd_minimum_increase: float) -> str:
    """Shared rule: new lesion → PD; all gone → CR; ≥ pd_percent over the nadir (and ≥ the minimum
    absolute increase) → PD; ≤ pr_percent vs baseline → PR; otherwise SD."""
    baseline, current = values[0], values[index]
    nadir = min(values[:index])
    if new_lesion:
        return "PD"
    if current <= EPSILON:
        return "CR"
    increase = _percent(current, nadir) if nadir > 0 else math.inf
    if increase is not None and increase >= pd_percent - EPSILON and current - nadir >= pd_minimum_increase - EPSILON:
        return "PD"
    change = _percent(current, baseline)
    if change is not None and change <= pr_percent + EPSILON:
        return "PR"
    return "SD"


def recist_category(sums_mm: Sequence[float], index: int, new_lesion: bool) -> str:
    """RECIST 1.1 category of timepoint ``index`` (> 0) from the target sums of diameters (mm)."""
    return _category(sums_mm, index, new_lesion, pr_percent=-30.0, pd_percent=20.0, pd_minimum_increase=5.0)


def volumetric_category(volumes_ml: Sequence[float], index: int, new_lesion: bool) -> str:
    """Volumetric category of timepoint ``index`` from total target volumes (mL)."""
    return _category(volumes_ml, index, new_lesion, pr_percent=-65.0, pd_percent=73.0, pd_minimum_increase=0.0)


def doubling_time_days(volume_start_ml: float, volume_end_ml: float, days: float) -> Optional[float]:
    """Volume doubling time Δt·ln2 / ln(V2/V1); None (undefined) for shrinking or stable lesions or Δt ≤ 0."""
    if days <= 0 or volume_start_ml <= 0 or volume_end_ml <= volume_start_ml:
        return None
    return days * math.log(2.0) / math.log(volume_end_ml / volume_start_ml)


def select_targets(long_axes_mm: dict[int, float], organs: Optional[dict[int, str]] = None,
                   maximum: int = 5, per_organ: int = 2, measurable_mm: float = 10.0) -> list[int]:
    """Target lesion ids at baseline: measurable, largest first, ≤ maximum, ≤ per_organ per organ."""
    chosen, per = [], {}
    for lesion, axis in sorted(long_axes_mm.items(), key=lambda item: -item[1]):
        if axis < measurable_mm - EPSILON or len(chosen) >= maximum:
            continue
        organ = (organs or {}).get(lesion)
        if organ is not None and per.get(organ, 0) >= per_organ:
            continue
        per[organ] = per.get(organ, 0) + 1
        chosen.append(lesion)
    return chosen
