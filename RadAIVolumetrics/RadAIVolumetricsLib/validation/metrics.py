"""Voxel and lesion-wise agreement metrics between a prediction and a reference mask. Voxel overlap (Dice,
IoU, HD95, ASSD, NSD, volume) lives in :mod:`RadAISegmentLib.overlap`, whose docstring states the grid,
axis order, surface convention (MONAI's) and how empty masks are defined; lesion-wise metrics here follow it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

# Voxel overlap metrics live in the segmentation engine (its lesion evaluation uses them too);
# re-exported here so the validation API stays in one place.
from RadAISegmentLib.overlap import (OverlapMetrics, overlap_metrics, surface_distances_mm,  # noqa: F401
                                     surface_mask)


@dataclass
class LesionDetection:
    """Lesion-wise detection counts for one study (components matched by any overlap)."""

    true_positives: int
    false_negatives: int
    false_positives: int
    reference_diameters_mm: list[float]
    detected: list[bool]

    @property
    def sensitivity(self) -> Optional[float]:
        total = self.true_positives + self.false_negatives
        return self.true_positives / total if total else None

    @property
    def precision(self) -> Optional[float]:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else None

    def as_dict(self) -> dict:
        return {"true_positives": self.true_positives, "false_negatives": self.false_negatives,
                "false_positives": self.false_positives, "sensitivity": self.sensitivity,
                "precision": self.precision, "reference_diameters_mm": self.reference_diameters_mm,
                "detected": self.detected}


def equivalent_diameter_mm(voxel_count: int, spacing_mm: Sequence[float]) -> float:
    """Diameter (mm) of the sphere with the component's volume: ``(6 V / pi)^(1/3)``."""
    return float((6.0 * voxel_count * float(np.prod(spacing_mm)) / np.pi) ** (1.0 / 3.0))


def lesion_detection(predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float]) -> LesionDetection:
    """Match 26-connected components: a reference lesion is detected when any predicted voxel overlaps it.

    A predicted component overlapping no reference lesion is a false positive.
    Lesion size is the equivalent-sphere diameter (documented; robust for
    irregular shapes and cheap for many lesions).
    """
    structure = np.ones((3, 3, 3), dtype=bool)
    ref_components, n_ref = ndimage.label(np.asarray(reference, bool), structure=structure)
    pred_components, n_pred = ndimage.label(np.asarray(predicted, bool), structure=structure)
    ref_sizes = np.bincount(ref_components.ravel(), minlength=n_ref + 1)
    overlap_pairs = np.unique(np.stack([ref_components[(ref_components > 0) & (pred_components > 0)],
                                        pred_components[(ref_components > 0) & (pred_components > 0)]]), axis=1)
    detected_refs = set(int(r) for r in overlap_pairs[0]) if overlap_pairs.size else set()
    matched_preds = set(int(p) for p in overlap_pairs[1]) if overlap_pairs.size else set()
    detected = [label in detected_refs for label in range(1, n_ref + 1)]
    diameters = [equivalent_diameter_mm(int(ref_sizes[label]), spacing_mm) for label in range(1, n_ref + 1)]
    return LesionDetection(true_positives=sum(detected), false_negatives=n_ref - sum(detected),
                           false_positives=n_pred - len(matched_preds), reference_diameters_mm=diameters,
                           detected=detected)


SIZE_BINS_MM = ((0.0, 10.0, "<10 mm"), (10.0, 20.0, "10-20 mm"), (20.0, float("inf"), ">20 mm"))


def sensitivity_by_size(detections: Sequence[LesionDetection]) -> dict[str, dict]:
    """Pooled lesion sensitivity per size bin (equivalent diameter) over several studies."""
    result = {}
    for low, high, name in SIZE_BINS_MM:
        hits = [hit for detection in detections
                for hit, diameter in zip(detection.detected, detection.reference_diameters_mm) if low <= diameter < high]
        result[name] = {"lesions": len(hits), "sensitivity": (sum(hits) / len(hits)) if hits else None}
    return result
