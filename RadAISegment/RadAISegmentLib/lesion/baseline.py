"""Classical baseline in the same region as the model: SimpleITK confidence-connected region growing
from the seed inside the box, with morphological closing/opening and the component at the seed.

It is the obvious non-learned peer the model must beat on real tumours (docs/lesion-model.md).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..image import Image
from ..io import to_sitk
from .predict import LESION_SEGMENT, component_at_seed
from .preprocess import DEFAULT_BOX_MM


def segment_lesion_baseline(image: Image, seed_ras: Sequence[float], box_mm: Optional[float] = None) -> Image:
    """Confidence-connected region growing (multiplier 2.5, 3 iterations) from the seed, inside the box."""
    box_mm = float(box_mm or DEFAULT_BOX_MM)
    seed_index = image.ras_to_index(np.asarray(seed_ras, float))
    half_extent_vox = box_mm / 2.0 / np.asarray(image.spacing_mm)
    low = np.maximum(np.floor(seed_index - half_extent_vox).astype(int), 0)
    high = np.minimum(np.ceil(seed_index + half_extent_vox).astype(int) + 1, image.shape_ijk)
    region = (slice(low[2], high[2]), slice(low[1], high[1]), slice(low[0], high[0]))
    sub_sitk = sitk.Cast(to_sitk(image), sitk.sitkFloat32)[int(low[0]):int(high[0]), int(low[1]):int(high[1]),
                                                            int(low[2]):int(high[2])]
    seed_local = tuple(int(round(v)) for v in np.clip(seed_index - low, 0, np.array(high - low) - 1))
    grown = sitk.ConfidenceConnected(sitk.CurvatureFlow(sub_sitk, timeStep=0.0625, numberOfIterations=3),
                                     seedList=[seed_local], numberOfIterations=3, multiplier=2.5,
                                     initialNeighborhoodRadius=1, replaceValue=1)
    local = sitk.GetArrayFromImage(grown).astype(bool)
    local = ndimage.binary_opening(ndimage.binary_closing(local, iterations=1), iterations=1)
    mask = np.zeros(image.array.shape, bool)
    mask[region] = local
    if mask.any():
        mask = component_at_seed(mask, seed_index[::-1])
    return image.with_array(mask.astype(np.uint8), segments=[LESION_SEGMENT])
