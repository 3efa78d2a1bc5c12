"""The heat colour map RadAI uses for saliency everywhere (2D slices, 3D renders, Slicer colour tables, the web viewer).

Black-purple-red-orange-yellow, inferno-like: dark for low values, bright for high ones.
No VTK or Slicer import: the slice renderer, the 3D renderer and the MRML bridge all use it.
"""
from __future__ import annotations

import numpy as np

#: Control points (value in 0..1, RGB 0..1) of the heat colour map.
HEAT_CONTROL_POINTS = ((0.0, (0.0, 0.0, 0.02)), (0.25, (0.34, 0.06, 0.43)), (0.5, (0.73, 0.21, 0.33)),
                       (0.75, (0.98, 0.55, 0.04)), (1.0, (0.99, 1.0, 0.64)))

#: MRML attribute marking a volume node as a saliency map (set by the bridge, read by the renderer).
SALIENCY_ATTRIBUTE = "RadAI.Saliency"


def heat_rgb(fraction) -> np.ndarray:
    """Heat colours (RGB 0..1, shape ``(..., 3)``) for values in 0..1, by linear interpolation of the control points."""
    fraction = np.clip(np.asarray(fraction, dtype=float), 0.0, 1.0)
    xs = [p[0] for p in HEAT_CONTROL_POINTS]
    return np.stack([np.interp(fraction, xs, [p[1][c] for p in HEAT_CONTROL_POINTS]) for c in range(3)], axis=-1)
