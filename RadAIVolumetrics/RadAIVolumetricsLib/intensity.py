"""First-order intensity statistics of the voxels inside a segment (HU for CT).

No texture features: that is PyRadiomics' job. Percentiles use numpy's linear
interpolation (as PyRadiomics' ``firstorder`` percentiles); SD is the population
SD (``ddof=0``), as PyRadiomics' ``StandardDeviation`` and Slicer's Segment Statistics.
"""
from __future__ import annotations

import numpy as np


def intensity_statistics(values: np.ndarray) -> dict:
    """Mean, SD, min, max, median and 5/25/75/95th percentiles of ``values`` (image units)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return {}
    p5, p25, p50, p75, p95 = np.percentile(values, [5, 25, 50, 75, 95])
    return {"mean": float(values.mean()), "sd": float(values.std()), "min": float(values.min()),
            "max": float(values.max()), "median": float(p50), "p5": float(p5), "p25": float(p25),
            "p75": float(p75), "p95": float(p95), "voxel_count": int(values.size)}
