"""Crop around a seed onto a fixed grid, and paste predictions back onto the input grid.

The crop is a cube of ``box_mm`` edge centred at the seed, axis-aligned with the
input image's voxel axes (same direction matrix), sampled on ``grid`` voxels per
edge (isotropic spacing ``box_mm / grid``) with linear interpolation. Channel 0
is the normalised image, channel 1 a Gaussian at the seed (the prompt).
Tensor axes are ``[k, j, i]`` like every RadAI array.

Normalisation (per modality):
* CT (an image whose minimum is below −500, i.e. Hounsfield units), by the card's
  ``input.prompt.ct_normalisation``: ``"window"`` clips to [−1000, 500] HU and scales to [0, 1];
  ``"piecewise"`` maps −1000 → 0, −200 → 0.3, 300 → 1 linearly in between and clips to [0, 1]
  (lung nodules and soft-tissue contrast both visible in one channel);
* MR and other: robust scaling of the crop, 1st percentile → 0, 99th → 1, clipped to [−0.5, 1.5].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..image import Image
from ..io import from_sitk, to_sitk

DEFAULT_GRID = 48
DEFAULT_BOX_MM = 64.0
SEED_SIGMA_VOXELS = 3.0
CT_WINDOW_HU = (-1000.0, 500.0)
CT_PIECEWISE_HU = (-1000.0, -200.0, 300.0)
CT_PIECEWISE_VALUES = (0.0, 0.3, 1.0)
CT_NORMALISATIONS = ("window", "piecewise")
DEFAULT_CT_NORMALISATION = "window"      # what a card without ``prompt.ct_normalisation`` was trained with


@dataclass
class Crop:
    """The model input and the geometry needed to paste its output back."""

    tensor: np.ndarray        # float32 [2, grid, grid, grid]
    reference: sitk.Image     # the crop grid (geometry only)
    box_mm: float


def is_ct_like(image: Image) -> bool:
    modality = str(image.metadata.get("modality", "")).upper()
    return modality == "CT" or (modality not in ("MR", "MRI") and float(np.min(image.array)) < -500)


def normalise_crop(values: np.ndarray, ct: bool, ct_normalisation: str = "window") -> np.ndarray:
    """Scale a crop's intensities to roughly [0, 1] (see module docstring)."""
    values = values.astype(np.float32)
    if ct and ct_normalisation == "piecewise":
        return np.interp(values, CT_PIECEWISE_HU, CT_PIECEWISE_VALUES).astype(np.float32)
    if ct:
        low, high = CT_WINDOW_HU
        return np.clip((values - low) / (high - low), 0.0, 1.0)
    low, high = np.percentile(values, [1, 99])
    return np.clip((values - low) / max(high - low, 1e-6), -0.5, 1.5).astype(np.float32)


def seed_channel(grid: int, sigma_voxels: float = SEED_SIGMA_VOXELS) -> np.ndarray:
    """Gaussian (peak 1) at the centre of a ``grid``³ cube."""
    axis = np.arange(grid, dtype=np.float32) - (grid - 1) / 2.0
    squared = axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2
    return np.exp(-squared / (2.0 * sigma_voxels ** 2)).astype(np.float32)


def crop_reference(image: Image, seed_ras, box_mm: float, grid: int = DEFAULT_GRID) -> sitk.Image:
    """Empty SimpleITK image: the crop grid centred at the seed, with the input's direction."""
    if not np.isfinite(box_mm) or box_mm <= 0:
        raise InputError(f"Box size must be a positive number of mm, got {box_mm}.")
    seed_index = image.ras_to_index(np.asarray(seed_ras, dtype=float))
    shape = np.asarray(image.shape_ijk, dtype=float)
    if np.any(seed_index < -0.5) or np.any(seed_index > shape - 0.5):
        raise InputError(f"Seed {tuple(round(float(v), 1) for v in seed_ras)} (RAS mm) lies outside the image; "
                         "click inside the volume.")
    spacing = box_mm / grid
    centre_lps = image.index_to_lps(seed_index)
    direction = np.asarray(image.direction_lps)
    origin = centre_lps - direction @ np.full(3, spacing * (grid - 1) / 2.0)
    reference = sitk.Image([grid] * 3, sitk.sitkFloat32)
    reference.SetSpacing([spacing] * 3)
    reference.SetOrigin(tuple(origin))
    reference.SetDirection(tuple(direction.ravel()))
    return reference


def crop_around_seed(image: Image, seed_ras, box_mm: float | None = None, grid: int = DEFAULT_GRID,
                     ct_normalisation: str = DEFAULT_CT_NORMALISATION) -> Crop:
    """Model input for one seed (RAS mm). Outside the image the nearest voxel's value is repeated (as in training)."""
    box_mm = float(box_mm or DEFAULT_BOX_MM)
    reference = crop_reference(image, seed_ras, box_mm, grid)
    ct = is_ct_like(image)
    source = sitk.Cast(to_sitk(image), sitk.sitkFloat32)
    resampled = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32, True)
    values = sitk.GetArrayFromImage(resampled)
    tensor = np.stack([normalise_crop(values, ct, ct_normalisation), seed_channel(grid)])
    return Crop(tensor, reference, box_mm)


def paste_back(probability: np.ndarray, crop: Crop, image: Image) -> np.ndarray:
    """Boolean ``[k, j, i]`` mask on the input grid: the crop's probability resampled linearly onto
    the input voxels (0 outside the box) and thresholded at 0.5."""
    probability_image = sitk.GetImageFromArray(probability.astype(np.float32))
    probability_image.CopyInformation(crop.reference)
    on_input = sitk.Resample(probability_image, to_sitk(image.with_array(np.zeros(image.array.shape, np.float32))),
                             sitk.Transform(), sitk.sitkLinear, 0.0)
    return from_sitk(on_input).array >= 0.5
