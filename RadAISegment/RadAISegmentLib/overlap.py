"""Voxel agreement metrics between a predicted and a reference mask (Dice, IoU, HD95, ASSD, NSD, volume).

All metrics are computed on the reference's voxel grid with its exact physical
spacing (mm, anisotropic allowed). Arrays are boolean masks indexed ``[k, j, i]``
and ``spacing_mm`` is ``(i, j, k)`` as everywhere in RadAI.

Surfaces follow MONAI's convention so results can be cross-checked against
``monai.metrics``: a surface voxel is a mask voxel with at least one
face-neighbour (6-connectivity) outside the mask; the distance from a surface
voxel to the other mask's surface is the Euclidean distance between voxel
centres in mm.

Empty masks are defined explicitly, never as a silent NaN:

==================  ==========  ==============================================
reference / pred    Dice, IoU   HD95, ASSD, NSD
==================  ==========  ==============================================
both empty          1.0         0.0 mm, 0.0 mm, 1.0 (``status = "both_empty"``)
one empty           0.0         ``None`` (undefined), NSD 0.0 (``status`` says which)
==================  ==========  ==============================================
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from .errors import GeometryMismatchError


@dataclass
class OverlapMetrics:
    """Agreement of one label in one study. Distances in mm, volumes in mL."""

    dice: float
    iou: float
    hd95_mm: Optional[float]
    assd_mm: Optional[float]
    nsd: float
    tolerance_mm: float
    reference_volume_ml: float
    predicted_volume_ml: float
    volume_difference_ml: float
    volume_error_percent: Optional[float]
    status: str

    def as_dict(self) -> dict:
        return asdict(self)


def _spacing_kji(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """Spacing reordered to the ``[k, j, i]`` array axes."""
    i, j, k = (float(s) for s in spacing_mm)
    return (k, j, i)


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face-neighbour outside it (the image border counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return mask & ~eroded


def _crop_to_union(*masks: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    union = np.zeros_like(masks[0], dtype=bool)
    for mask in masks:
        union |= mask
    if not union.any():
        return tuple(slice(0, 0) for _ in union.shape)
    slices = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        nonzero = np.nonzero(union.any(axis=other))[0]
        slices.append(slice(max(int(nonzero[0]) - margin, 0), min(int(nonzero[-1]) + margin + 1, union.shape[axis])))
    return tuple(slices)


def surface_distances_mm(from_mask: np.ndarray, to_mask: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """Distances (mm) from each surface voxel of ``from_mask`` to the nearest surface voxel of ``to_mask``.

    Both masks must be non-empty. Computed on the bounding box of both masks
    plus one voxel, which gives identical distances to the full grid because the
    nearest surface voxel always lies inside that box.
    """
    window = _crop_to_union(from_mask, to_mask)
    from_surface = surface_mask(from_mask[window])
    to_surface = surface_mask(to_mask[window])
    distance_to_surface = ndimage.distance_transform_edt(~to_surface, sampling=_spacing_kji(spacing_mm))
    return distance_to_surface[from_surface]


def overlap_metrics(predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float],
                    tolerance_mm: float = 1.0) -> OverlapMetrics:
    """Dice, IoU, HD95, ASSD, normalised surface Dice at ``tolerance_mm`` and volume difference.

    HD95 is the larger of the two directed 95th percentiles (MONAI's
    ``compute_hausdorff_distance(percentile=95)``); ASSD is the mean of all
    surface distances in both directions; NSD counts surface voxels within the
    tolerance (Nikolov et al., as MONAI's ``compute_surface_dice`` on voxel surfaces).
    """
    predicted = np.asarray(predicted, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if predicted.shape != reference.shape:
        raise GeometryMismatchError(f"Prediction shape {predicted.shape} differs from reference {reference.shape}.")
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    n_pred, n_ref = int(predicted.sum()), int(reference.sum())
    n_both = int(np.count_nonzero(predicted & reference))
    ref_ml, pred_ml = n_ref * voxel_ml, n_pred * voxel_ml
    volume_error = 100.0 * (pred_ml - ref_ml) / ref_ml if n_ref else None
    common = dict(tolerance_mm=float(tolerance_mm), reference_volume_ml=ref_ml, predicted_volume_ml=pred_ml,
                  volume_difference_ml=pred_ml - ref_ml, volume_error_percent=volume_error)
    if n_pred == 0 and n_ref == 0:
        return OverlapMetrics(1.0, 1.0, 0.0, 0.0, 1.0, status="both_empty", **common)
    if n_pred == 0 or n_ref == 0:
        status = "reference_empty" if n_ref == 0 else "prediction_empty"
        return OverlapMetrics(0.0, 0.0, None, None, 0.0, status=status, **common)
    dice = 2.0 * n_both / (n_pred + n_ref)
    iou = n_both / (n_pred + n_ref - n_both)
    pred_to_ref = surface_distances_mm(predicted, reference, spacing_mm)
    ref_to_pred = surface_distances_mm(reference, predicted, spacing_mm)
    hd95 = max(float(np.percentile(pred_to_ref, 95)), float(np.percentile(ref_to_pred, 95)))
    assd = float((pred_to_ref.sum() + ref_to_pred.sum()) / (pred_to_ref.size + ref_to_pred.size))
    within = np.count_nonzero(pred_to_ref <= tolerance_mm) + np.count_nonzero(ref_to_pred <= tolerance_mm)
    nsd = float(within / (pred_to_ref.size + ref_to_pred.size))
    return OverlapMetrics(dice, iou, hd95, assd, nsd, status="ok", **common)
