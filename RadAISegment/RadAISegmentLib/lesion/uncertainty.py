"""How far to trust a lesion volume: a range from the model's probabilities, calibrated, with a grid floor.

For one lesion with probability ``p`` on the input grid (each voxel's mean probability over its footprint,
:mod:`.preprocess`) and its reported outline ``p ≥ 0.5`` (volume ``V``):

* the model's spread: ``V_sure`` = volume of ``p ≥ 0.7`` inside the outline, ``V_possible`` = volume of
  ``p ≥ 0.3`` connected to it;
* calibrated: low = ``V − s_low · (V − V_sure)``, high = ``V + s_high · (V_possible − V)``, with the scales
  ``s_low``, ``s_high`` chosen on held-aside synthetic cases (:func:`calibrate_scales`) so that the stated
  range holds the true volume in the card's ``uncertainty.coverage`` share of them (90 %);
* never narrower than the grid allows: a half-voxel shell on each side (exposed voxel faces × voxel volume / 2).
  A voxel is in the outline when the lesion holds (about) half of it, so a boundary drawn on that grid leaves
  the true surface anywhere within half a voxel of each exposed face, and a reader's or a threshold's
  systematic shift of that size cannot be seen on the grid: the range must contain it (to first order in
  the shift: the shell's area times half a voxel's depth). (Until 2026-12-05 this
  was a quarter-voxel shell, the mean of that half-voxel uncertainty rather than its bound; on breast1, a
  0.13 mL tumour on 2.1 mm slices, the range then missed the reference. That case therefore no longer checks
  this term independently.) On thick slices the term is large (lung1: 5 mm slices, ±0.8 mL on 1.4 mL), as
  volumetry on such slices is.

:func:`labelmap_volume_range` gives the grid term alone, for outlines without probabilities (a reader's
segmentation, a file from another tool). Volumes in mL.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

LOW_PROBABILITY = 0.3
HIGH_PROBABILITY = 0.7
GRID_SHELL_FRACTION = 0.5        # of a voxel, on each side of the outline (module docstring)


def exposed_faces(mask: np.ndarray) -> tuple[int, int]:
    """(voxel faces between the mask and a non-mask 6-neighbour or the array edge, the same without the
    faces on the array edge)."""
    padded = np.pad(np.asarray(mask, bool), 1)
    total = 0
    for axis in range(3):
        for shift in (1, -1):
            total += int((padded & ~np.roll(padded, shift, axis=axis)).sum())
    edge = sum(int(np.take(mask, 0, axis=a).sum() + np.take(mask, -1, axis=a).sum()) for a in range(3))
    return total, total - edge


def labelmap_volume_range(mask: np.ndarray, spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """(volume, low, high) in mL of a boolean outline from the grid term alone (module docstring)."""
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    volume = float(np.count_nonzero(mask)) * voxel_ml
    inside_faces, outside_faces = exposed_faces(mask)
    return (volume, max(volume - GRID_SHELL_FRACTION * inside_faces * voxel_ml, 0.0),
            volume + GRID_SHELL_FRACTION * outside_faces * voxel_ml)


def model_spread(probability: np.ndarray, outline: np.ndarray, voxel_ml: float) -> tuple[float, float, float]:
    """(V, V_sure, V_possible) in mL (module docstring)."""
    volume = float(np.count_nonzero(outline)) * voxel_ml
    sure = float(np.count_nonzero((probability >= HIGH_PROBABILITY) & outline)) * voxel_ml
    possible_mask = probability >= LOW_PROBABILITY
    components, _ = ndimage.label(possible_mask)
    touching = np.unique(components[outline & possible_mask])
    connected = np.isin(components, touching[touching > 0]) | outline
    return volume, sure, float(np.count_nonzero(connected)) * voxel_ml


def probability_volume_range(probability: np.ndarray, outline: np.ndarray, spacing_mm: Sequence[float],
                             scale_low: float = 1.0, scale_high: float = 1.0) -> tuple[float, float, float]:
    """(volume, low, high) in mL for one lesion: ``outline`` is the reported mask, ``probability`` the
    footprint probability on the same ``[k, j, i]`` region, the scales from the model card."""
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    volume, sure, possible = model_spread(probability, outline, voxel_ml)
    _, grid_low, grid_high = labelmap_volume_range(outline, spacing_mm)
    low = volume - scale_low * (volume - sure)
    high = volume + scale_high * (possible - volume)
    return volume, max(min(low, grid_low), 0.0), max(high, grid_high)


def calibrate_scales(spreads: Sequence[tuple[float, float, float]], true_volumes: Sequence[float],
                     coverage: float = 0.9) -> tuple[float, float]:
    """Smallest ``(s_low, s_high)`` such that ``coverage`` of the cases below / above their reported volume
    have their true volume inside the range: per side, the ``coverage`` quantile of the ratio of the
    error to the model's spread on that side (a split-conformal calibration, one side at a time)."""
    ratios_low, ratios_high = [], []
    for (volume, sure, possible), truth in zip(spreads, true_volumes):
        if truth < volume:
            ratios_low.append((volume - truth) / max(volume - sure, 1e-9))
        else:
            ratios_high.append((truth - volume) / max(possible - volume, 1e-9))

    def quantile(values: list) -> float:
        if not values:
            return 1.0
        ordered = np.sort(np.asarray(values))
        index = min(int(np.ceil(coverage * (len(ordered) + 1))) - 1, len(ordered) - 1)
        return float(max(ordered[index], 1.0))
    return quantile(ratios_low), quantile(ratios_high)


def change_within_uncertainty(range_a: Sequence[float], range_b: Sequence[float]) -> bool:
    """True when two volumes' ranges (mL) overlap: the change between them is smaller than the
    combined range (the two half-ranges that face each other)."""
    return max(range_a[0], range_b[0]) <= min(range_a[1], range_b[1])


def optional_range(value) -> Optional[tuple[float, float]]:
    if value is None:
        return None
    low, high = (float(v) for v in value)
    return low, high
