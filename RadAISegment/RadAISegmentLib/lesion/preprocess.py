"""Network input for one lesion (a crop with its prompt channels) and the way back onto the input grid.

The crop (:class:`.prompts.CropGeometry`) is axis-aligned with the input image's voxel axes and sampled
with linear interpolation; outside the image the nearest voxel's value is repeated (as in training).
Tensor axes are ``[k, j, i]`` like every RadAI array.

Normalisation (per modality):
* CT (an image whose minimum is below −500, i.e. Hounsfield units), by the card's
  ``input.prompt.ct_normalisation``: ``"window"`` clips to [−1000, 500] HU and scales to [0, 1];
  ``"piecewise"`` maps −1000 → 0, −200 → 0.3, 300 → 1 linearly in between and clips to [0, 1]
  (lung nodules and soft-tissue contrast both visible in one channel);
* MR and other: robust scaling of the crop, 1st percentile → 0, 99th → 1, clipped to [−0.5, 1.5].

Back onto the input grid, each input voxel takes the mean probability over its own footprint (a box filter
of the input voxel's size in crop voxels, then linear interpolation at its centre): the fraction of the
voxel the model assigns to the lesion. A voxel is lesion when that fraction is ≥ 0.5 — the partial-volume
convention behind labelmap volumes (voxel count × voxel volume), also on thick slices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..image import Image
from ..io import from_sitk, to_sitk
from .prompts import (DEFAULT_BOX_MM, GRID, CropGeometry, LesionPrompt, box_in_index_space, crop_geometry,
                      stack_channels)

CT_WINDOW_HU = (-1000.0, 500.0)
CT_PIECEWISE_HU = (-1000.0, -200.0, 300.0)
CT_PIECEWISE_VALUES = (0.0, 0.3, 1.0)
DEFAULT_CT_NORMALISATION = "window"      # what a card without ``prompt.ct_normalisation`` was trained with
LEGACY_GRID = 48                         # lesion-roi 1.x: 2 channels (image, seed Gaussian) on 48³
LEGACY_SEED_SIGMA_VOXELS = 3.0
DEFAULT_GRID = LEGACY_GRID


@dataclass(frozen=True)
class PromptSettings:
    """How a lesion model wants its input (``card.input.prompt``)."""

    grid: int = GRID
    channels: int = 5
    default_box_mm: float = DEFAULT_BOX_MM
    ct_normalisation: str = "piecewise"
    mirror_axes: tuple[int, ...] = (2,)     # test-time mirroring, crop axes (0 k, 1 j, 2 i): all their flips

    @property
    def interactive(self) -> bool:
        return self.channels >= 5

    @staticmethod
    def from_card(card_input: dict) -> "PromptSettings":
        prompt = card_input.get("prompt", {})
        channels = int(card_input.get("channels", 2))
        mirror_axes = tuple(int(axis) for axis in prompt.get("mirror_axes", [2]))
        if any(axis not in (0, 1, 2) for axis in mirror_axes):
            raise ValueError(f"lesion model card: mirror_axes {list(mirror_axes)} must be crop axes 0, 1, 2")
        return PromptSettings(int(prompt.get("grid", GRID if channels >= 5 else LEGACY_GRID)), channels,
                              float(prompt.get("default_box_mm", DEFAULT_BOX_MM)),
                              prompt.get("ct_normalisation", DEFAULT_CT_NORMALISATION), mirror_axes)


@dataclass
class Crop:
    """The model input for one lesion and the geometry needed to paste its output back."""

    tensor: np.ndarray        # float32 [channels, grid, grid, grid]
    geometry: CropGeometry
    box_low_kji: Optional[np.ndarray] = None    # a drawn box in crop voxels (None: the whole crop)
    box_high_kji: Optional[np.ndarray] = None

    @property
    def box_mm(self) -> float:
        return self.geometry.edge_mm

    @property
    def reference(self) -> sitk.Image:
        return crop_reference(self.geometry)


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


def crop_reference(geometry: CropGeometry) -> sitk.Image:
    """Empty SimpleITK image on the crop grid (geometry only)."""
    reference = sitk.Image([geometry.grid] * 3, sitk.sitkFloat32)
    reference.SetSpacing([geometry.spacing_mm] * 3)
    reference.SetOrigin(tuple(float(v) for v in geometry.origin_lps))
    reference.SetDirection(tuple(float(v) for v in np.asarray(geometry.direction_lps).ravel()))
    return reference


def resample_into_crop(image: Image, geometry: CropGeometry, nearest: bool = False) -> np.ndarray:
    """``[k, j, i]`` float32 values of ``image`` on the crop grid (linear or nearest; nearest-value outside)."""
    source = sitk.Cast(to_sitk(image), sitk.sitkFloat32)
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.GetArrayFromImage(sitk.Resample(source, crop_reference(geometry), sitk.Transform(), interpolator,
                                                0.0, sitk.sitkFloat32, True))


def _points_in_crop(image: Image, geometry: CropGeometry, points_ras, what: str) -> list[np.ndarray]:
    result = []
    for point in points_ras:
        kji = geometry.lps_to_kji(image.index_to_lps(image.ras_to_index(np.asarray(point, float))))
        if not geometry.contains_kji(kji):
            raise InputError(f"{what} {tuple(round(float(v), 1) for v in point)} (RAS mm) lies outside this lesion's "
                             f"box ({geometry.edge_mm:.0f} mm around it); click inside the box or enlarge it.")
        result.append(kji)
    return result


def build_crop(image: Image, prompt: LesionPrompt, settings: PromptSettings = PromptSettings(),
               previous: Optional[np.ndarray] = None) -> Crop:
    """The network input for one lesion. ``previous``: a boolean ``[k, j, i]`` outline of this lesion on the
    input grid to refine (interactive models only). Raises :class:`InputError` for clicks outside the box or
    an exclude click on the seed."""
    geometry = crop_geometry(image, prompt, settings.grid, settings.default_box_mm)
    image_channel = normalise_crop(resample_into_crop(image, geometry), is_ct_like(image), settings.ct_normalisation)
    if not settings.interactive:
        seed_kji = [np.full(3, (settings.grid - 1) / 2.0)] if prompt.seed_ras is not None else []
        from .prompts import point_channel
        return Crop(np.stack([image_channel, point_channel(seed_kji, settings.grid, LEGACY_SEED_SIGMA_VOXELS)]),
                    geometry)
    seed = _points_in_crop(image, geometry, [prompt.seed_ras], "Seed")[0] if prompt.seed_ras is not None else None
    include = _points_in_crop(image, geometry, prompt.include_ras, "Include click")
    exclude = _points_in_crop(image, geometry, prompt.exclude_ras, "Exclude click")
    if prompt.seed_ras is not None:
        seed_ras = np.asarray(prompt.seed_ras, float)
        for point in prompt.exclude_ras:
            if np.linalg.norm(np.asarray(point, float) - seed_ras) < 0.5 * max(image.spacing_mm):
                raise InputError("An exclude click lies on the seed of the same lesion; the seed marks lesion. "
                                 "Move the seed or the exclude click.")
    low = high = None
    if prompt.box_corners_ras is not None:
        low_ijk, high_ijk = box_in_index_space(image, prompt.box_corners_ras)
        corners = np.stack([geometry.lps_to_kji(image.index_to_lps(c)) for c in (low_ijk, high_ijk)])
        low, high = corners.min(axis=0), corners.max(axis=0)
    previous_channel = None
    if previous is not None:
        previous_channel = resample_into_crop(image.with_array(np.asarray(previous, np.float32)), geometry,
                                              nearest=True)
    return Crop(stack_channels(image_channel, seed, include, exclude, low, high, previous_channel), geometry, low,
                high)


def crop_around_seed(image: Image, seed_ras, box_mm: float | None = None, grid: int = LEGACY_GRID,
                     ct_normalisation: str = DEFAULT_CT_NORMALISATION) -> Crop:
    """lesion-roi 1.x input: a cube of ``box_mm`` at the seed, channels (image, seed Gaussian)."""
    settings = PromptSettings(grid, 2, DEFAULT_BOX_MM, ct_normalisation)
    return build_crop(image, LesionPrompt(seed_ras=tuple(seed_ras), box_mm=box_mm), settings)


def input_region(crop: Crop, image: Image, margin: int = 1) -> tuple[slice, slice, slice]:
    """``[k, j, i]`` slices of the input grid covering the crop cube (plus ``margin`` voxels)."""
    geometry = crop.geometry
    extent = (geometry.grid - 1) / 2.0 * geometry.spacing_mm + geometry.spacing_mm
    corners = [geometry.centre_lps + np.asarray(geometry.direction_lps) @ (np.array(s) * extent)
               for s in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3)]
    indices = np.stack([image.lps_to_index(c) for c in corners])
    low = np.clip(np.floor(indices.min(axis=0)).astype(int) - margin, 0, np.asarray(image.shape_ijk))
    high = np.clip(np.ceil(indices.max(axis=0)).astype(int) + margin + 1, 0, np.asarray(image.shape_ijk))
    return tuple(slice(int(low[a]), int(high[a])) for a in (2, 1, 0))


def box_weights(width_vox: float) -> np.ndarray:
    """Taps of a centred box of ``width_vox`` crop voxels: each tap's weight is the overlap of its voxel
    ``[t - 1/2, t + 1/2]`` with ``[-w/2, w/2]``, normalised (a non-integer or even width stays centred)."""
    half = max(width_vox, 1.0) / 2.0
    reach = int(np.ceil(half - 0.5))
    taps = np.arange(-reach, reach + 1, dtype=float)
    weights = np.clip(np.minimum(taps + 0.5, half) - np.maximum(taps - 0.5, -half), 0.0, None)
    return (weights / weights.sum()).astype(np.float32)


def box_average(values: np.ndarray, widths_vox) -> np.ndarray:
    """Mean of ``values`` ``[k, j, i]`` over a centred box of ``widths_vox`` (k, j, i) voxels; zero outside."""
    for axis, width in enumerate(widths_vox):
        if width > 1.0 + 1e-6:
            values = ndimage.correlate1d(values, box_weights(float(width)), axis=axis, mode="constant")
    return values


def paste_back_probability(probability: np.ndarray, crop: Crop, image: Image, footprint: bool = True
                           ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """The lesion probability on the input grid, over the region the crop covers: ``(region, values)``
    with ``values[k, j, i]`` for ``image.array[region]`` (0 outside the crop). Each value is the mean
    crop probability over the input voxel's footprint (module docstring); ``footprint=False`` samples the
    probability at the voxel centre (lesion-roi 1.x)."""
    region = input_region(crop, image)
    footprint_vox = np.asarray(image.spacing_mm, float)[::-1] / crop.geometry.spacing_mm
    averaged = probability.astype(np.float32)
    if footprint:
        averaged = box_average(averaged, footprint_vox)
    probability_image = sitk.GetImageFromArray(averaged)
    probability_image.CopyInformation(crop_reference(crop.geometry))
    origin_index = np.array([region[2].start, region[1].start, region[0].start], float)
    sub_grid = Image(np.zeros(image.array[region].shape, np.float32), image.spacing_mm,
                     tuple(image.index_to_lps(origin_index)), image.direction_lps)
    values = sitk.Resample(probability_image, to_sitk(sub_grid), sitk.Transform(), sitk.sitkLinear, 0.0)
    return region, from_sitk(values).array.astype(np.float32)


def paste_back(probability: np.ndarray, crop: Crop, image: Image, threshold: float = 0.5,
               footprint: bool = True) -> np.ndarray:
    """Boolean ``[k, j, i]`` mask on the whole input grid: footprint probability ≥ ``threshold``."""
    region, values = paste_back_probability(probability, crop, image, footprint)
    mask = np.zeros(image.array.shape, bool)
    mask[region] = values >= threshold
    return mask
