"""Synthetic lesions composited into real CT and MR backgrounds, generated in crop space.

Each sample mimics what the model sees at inference (:mod:`.preprocess`): a cube
around a user's click, resampled to ``grid``³. Realism that matters for real tumours:
* shapes: random ellipsoids, lobulated by a smooth random radius field, 4 mm up to
  ~80 % of the box; optionally attached to a tissue boundary (centre on a strong edge);
* appearance: CT lesions of soft-tissue density (or relative to the local tissue),
  MR lesions hyper- or hypo-intense relative to the local tissue, with necrotic
  cores and enhancing rims;
* partial volume from 2× supersampled rendering, slice-profile blur along one axis,
  noise matched to the background's own noise;
* seed offset up to 35 % of the lesion radius (users don't click the exact centre).

Backgrounds (training only, evaluation cases excluded): the TotalSegmentator example
CT, CT DICOM series and MR (``shared/data/totalsegmentator-examples``), and Colin27
T1 (Debian ``mricron-data``). Never the PyRadiomics lung1/brain1/breast1 cases.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..image import Image
from ..io import read_image, to_sitk
from .preprocess import is_ct_like, normalise_crop, seed_channel

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")


@dataclass
class Background:
    image: Image
    ct: bool
    candidates_kji: np.ndarray   # voxels (inside the body) where a crop may be centred
    name: str


def load_backgrounds(shared_data: Path) -> list[Background]:
    """The training backgrounds; raises if an evaluation case is ever passed in."""
    examples = Path(shared_data) / "totalsegmentator-examples"
    paths = [examples / "example_ct_sm.nii.gz", examples / "example_ct_dicom", examples / "example_mr_sm.nii.gz"]
    if COLIN27.exists():
        paths.append(COLIN27)
    backgrounds = []
    for path in paths:
        assert "pyradiomics" not in str(path), "evaluation cases must never be training backgrounds"
        try:
            image = read_image(path)
        except ImportError:   # a DICOM reader is not available in this checkout
            continue
        ct = is_ct_like(image)
        values = image.array
        if ct:
            inside = (values > -950) & (values < 300)
        else:
            inside = values > np.percentile(values, 40)
        inside = ndimage.binary_erosion(inside, iterations=2)
        candidates = np.argwhere(inside)
        backgrounds.append(Background(image, ct, candidates, path.name))
    return backgrounds


def _background_crop(background: Background, centre_kji: np.ndarray, box_mm: float, grid: int) -> np.ndarray:
    image = background.image
    spacing = box_mm / grid
    centre_lps = image.index_to_lps(centre_kji[::-1].astype(float))
    direction = np.asarray(image.direction_lps)
    reference = sitk.Image([grid] * 3, sitk.sitkFloat32)
    reference.SetSpacing([spacing] * 3)
    reference.SetOrigin(tuple(centre_lps - direction @ np.full(3, spacing * (grid - 1) / 2.0)))
    reference.SetDirection(tuple(direction.ravel()))
    source = sitk.Cast(to_sitk(image), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear,
                                                -1024.0 if background.ct else 0.0))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def lesion_fraction(grid: int, centre_vox: np.ndarray, radii_vox: np.ndarray, rng: np.random.Generator,
                    lobulation: float, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Occupied fraction per voxel (partial volume) and the normalised radius field of a lobulated ellipsoid."""
    fine = grid * supersample
    axis = (np.arange(fine) + 0.5) / supersample - 0.5
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    offsets = np.stack([zz, yy, xx], axis=-1) - centre_vox
    rotated = offsets @ _random_rotation(rng)
    distance = np.sqrt(((rotated / radii_vox) ** 2).sum(axis=-1))
    coarse_noise = ndimage.gaussian_filter(rng.normal(size=(fine,) * 3), sigma=max(radii_vox.mean() * supersample / 2.5, 1.0))
    coarse_noise /= coarse_noise.std() + 1e-6
    distance = distance * (1.0 + lobulation * coarse_noise)
    inside = (distance < 1.0).astype(np.float32)
    fraction = inside.reshape(grid, supersample, grid, supersample, grid, supersample).mean(axis=(1, 3, 5))
    radius_field = distance.reshape(grid, supersample, grid, supersample, grid, supersample).mean(axis=(1, 3, 5))
    return fraction, radius_field


def make_sample(backgrounds: list[Background], rng: np.random.Generator, grid: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """One training pair: input ``[2, grid, grid, grid]`` (normalised image, seed Gaussian) and label ``[grid]*3``."""
    background = backgrounds[rng.integers(len(backgrounds))]
    lesion_diameter_mm = float(np.exp(rng.uniform(np.log(4.0), np.log(70.0))))
    box_mm = float(np.clip(lesion_diameter_mm * rng.uniform(1.4, 3.0), 24.0, 140.0))
    spacing = box_mm / grid
    centre = background.candidates_kji[rng.integers(len(background.candidates_kji))]
    crop = _background_crop(background, centre, box_mm, grid)
    radius_vox = lesion_diameter_mm / 2.0 / spacing
    radii = radius_vox * rng.uniform(0.65, 1.3, size=3)
    if rng.random() < 0.4:   # attached: re-centre the crop on a strong tissue edge near the click
        edges = ndimage.gaussian_gradient_magnitude(crop, 1.5)
        middle = slice(grid // 4, 3 * grid // 4)
        window = edges[middle, middle, middle]
        strongest = np.argwhere(window >= np.percentile(window, 97))
        if len(strongest):
            edge_vox = strongest[rng.integers(len(strongest))] + grid // 4
            image = background.image
            edge_index = image.lps_to_index(image.index_to_lps(centre[::-1].astype(float))
                                            + np.asarray(image.direction_lps) @ ((edge_vox[::-1] - (grid - 1) / 2.0) * spacing))
            crop = _background_crop(background, edge_index[::-1], box_mm, grid)
    centre_vox = np.full(3, (grid - 1) / 2.0) + np.clip(rng.normal(size=3) * 0.2, -0.35, 0.35) * radius_vox
    fraction, radius_field = lesion_fraction(grid, centre_vox, radii, rng, lobulation=rng.uniform(0.0, 0.3))
    if rng.random() < 0.5:   # thick-slice profile along one voxel axis
        fraction = ndimage.gaussian_filter1d(fraction, sigma=rng.uniform(0.3, 1.5), axis=int(rng.integers(3)))
    label = fraction >= 0.5
    if label.sum() < 4:
        return make_sample(backgrounds, rng, grid)
    local = crop[ndimage.binary_dilation(label, iterations=3) & ~label]
    local_level = float(np.median(local)) if local.size else float(np.median(crop))
    tissue_spread = float(np.percentile(crop, 90) - np.percentile(crop, 10)) + 1e-3
    noise_sd = float(np.std(crop - ndimage.gaussian_filter(crop, 1.0)))
    if background.ct:
        if local_level < -400:   # lung: soft-tissue nodule
            lesion_level = rng.uniform(-80.0, 80.0)
        else:                    # solid organ / soft tissue: hypo- or hyper-dense
            lesion_level = local_level + rng.choice([-1.0, 1.0]) * rng.uniform(25.0, 120.0)
    else:
        lesion_level = local_level + rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0) * tissue_spread
    appearance = np.full(crop.shape, lesion_level, dtype=np.float32)
    if rng.random() < 0.35:      # necrotic core / enhancing rim
        core = radius_field < rng.uniform(0.4, 0.75)
        appearance[core] = lesion_level - rng.uniform(0.3, 0.8) * abs(lesion_level - (local_level if not background.ct else -20.0))
        if not background.ct:
            appearance[~core] = lesion_level * rng.uniform(1.0, 1.5)
    texture = ndimage.gaussian_filter(rng.normal(size=crop.shape), 1.0) * rng.uniform(0.0, 0.15) * (abs(lesion_level) + 30.0)
    appearance = appearance + texture + rng.normal(size=crop.shape) * noise_sd * rng.uniform(0.5, 1.2)
    composite = crop * (1.0 - fraction) + appearance * fraction
    image_channel = normalise_crop(composite, background.ct)
    if rng.random() < 0.5:       # contrast augmentation
        image_channel = np.clip(image_channel * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1), -0.5, 1.5)
    return np.stack([image_channel.astype(np.float32), seed_channel(grid)]), label.astype(np.float32)
