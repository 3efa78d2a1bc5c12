"""Agreement statistics: Bland–Altman, intraclass correlation, bootstrap CIs, subgroups, drift.

Formulas:
* Bland–Altman (1986): differences ``d = a − b``; bias = mean(d); limits of
  agreement = bias ± 1.96 · SD(d) (SD with ``ddof=1``).
* ICC(2,1) — two-way random effects, absolute agreement, single measurement
  (Shrout & Fleiss 1979; McGraw & Wong 1996 "ICC(A,1)"), the usual choice for
  comparing a method against a reference on the same subjects.
* Bootstrap: percentile 95 % interval over study-level resamples with a seeded
  ``numpy.random.default_rng``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np


@dataclass
class BlandAltman:
    bias: float
    sd_difference: float
    lower_limit: float
    upper_limit: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def bland_altman(method_a: Sequence[float], method_b: Sequence[float]) -> BlandAltman:
    """Bias and 95 % limits of agreement of ``method_a − method_b``."""
    a, b = np.asarray(method_a, float), np.asarray(method_b, float)
    if a.shape != b.shape or a.size < 2:
        raise ValueError("Bland–Altman needs two equally long series of at least 2 paired values.")
    difference = a - b
    bias = float(difference.mean())
    sd = float(difference.std(ddof=1))
    return BlandAltman(bias, sd, bias - 1.96 * sd, bias + 1.96 * sd, int(a.size))


def icc_2_1(ratings: np.ndarray) -> float:
    """ICC(2,1) for an ``(n_subjects, k_raters)`` array (two-way random, absolute agreement, single)."""
    x = np.asarray(ratings, float)
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError("ICC needs at least 2 subjects and 2 raters/methods.")
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_total = np.sum((x - grand) ** 2)
    ss_error = ss_total - ss_rows - ss_cols
    ms_rows = ss_rows / (n - 1)
    ms_cols = ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    return float((ms_rows - ms_error) / denominator) if denominator > 0 else float("nan")


def bootstrap_ci(values: Sequence, statistic: Callable[[Sequence], Optional[float]], n_resamples: int = 1000,
                 seed: int = 0, confidence: float = 0.95) -> Optional[tuple[float, float]]:
    """Percentile CI of ``statistic`` over study-level resamples (with replacement) of ``values``.

    ``values`` holds one entry per study (a number or any object ``statistic``
    understands). Resamples where the statistic is undefined (``None``/NaN) are
    dropped; returns ``None`` when fewer than 2 studies or no defined resample.
    """
    items = list(values)
    if len(items) < 2 or n_resamples < 1:
        return None
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(n_resamples):
        sample = [items[i] for i in rng.integers(0, len(items), size=len(items))]
        estimate = statistic(sample)
        if estimate is not None and np.isfinite(estimate):
            estimates.append(float(estimate))
    if not estimates:
        return None
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(estimates, alpha)), float(np.quantile(estimates, 1.0 - alpha))


def mean_defined(values: Sequence[Optional[float]]) -> Optional[float]:
    """Mean of the defined (non-None, finite) values; None when there are none."""
    defined = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(defined)) if defined else None


@dataclass
class DriftWindow:
    start: str
    end: str
    studies: int
    dice_mean: Optional[float]
    below_threshold: bool


def drift_windows(dates: Sequence[dt.date], dice_values: Sequence[Optional[float]], window_days: int = 90,
                  threshold: float = 0.7) -> list[DriftWindow]:
    """Mean Dice per consecutive calendar window of ``window_days``, flagged when below ``threshold``."""
    if not dates:
        return []
    pairs = sorted(zip(dates, dice_values), key=lambda pair: pair[0])
    start = pairs[0][0]
    windows: list[DriftWindow] = []
    while start <= pairs[-1][0]:
        end = start + dt.timedelta(days=window_days)
        members = [dice for date, dice in pairs if start <= date < end]
        if members:
            mean = mean_defined(members)
            windows.append(DriftWindow(start.isoformat(), (end - dt.timedelta(days=1)).isoformat(), len(members),
                                       mean, mean is not None and mean < threshold))
        start = end
    return windows
