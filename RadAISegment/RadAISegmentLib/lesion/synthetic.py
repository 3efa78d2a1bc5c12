"""Synthetic lesions composited into real CT and MR backgrounds, generated in crop space.

Each sample mimics what the model sees at inference (:mod:`.preprocess`): a cube
around a user's click, resampled to ``grid``³. Realism that matters for real tumours:
* shapes: random ellipsoids, lobulated by a smooth random radius field, some multi-lobed
  (1–4 overlapping satellite blobs), some spiculated
  (tapering radial spikes), 4–80 mm and from a few % up to ~75 % of the box edge; 40 % attached
  to a tissue boundary (crop centred on a strong edge: pleura, bone, vessel, brain surface);
* appearance: CT lesions of soft-tissue density (or relative to the local tissue),
  MR lesions hyper- or hypo-intense relative to the local tissue, with necrotic
  cores and enhancing rims; 40 % heterogeneous (large patches fading towards the background);
* MR: peritumoural oedema halo outside the label (30 %);
* partial volume from 2× supersampled rendering; thick slices (1–7 mm, 60 % of cases): box
  slice profile, one sample per slice, linear interpolation back (mostly along k, the slice axis);
  noise matched to the background's own noise;
* seed offset up to 35 % of the lesion radius (users don't click the exact centre).

Backgrounds (training only, evaluation cases excluded): the TotalSegmentator example
CT, CT DICOM series and MR (``shared/data/totalsegmentator-examples``), and Colin27
T1 and its higher-contrast average ``ch2better`` (Debian ``mricron-data``). Never the PyRadiomics lung1/brain1/breast1 cases.
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
COLIN27_BETTER = Path("/usr/share/mricron/templates/ch2better.nii.gz")   # Colin27, higher-contrast average


@dataclass
class Background:
    image: Image
    ct: bool
    candidates_kji: np.ndarray   # voxels (inside the body) where a crop may be centred
    name: str
    source: Optional[sitk.Image] = None   # float32 SimpleITK copy, made on first use


def load_backgrounds(shared_data: Path) -> list[Background]:
    """The training backgrounds; raises if an evaluation case is ever passed in."""
    examples = Path(shared_data) / "totalsegmentator-examples"
    paths = [examples / "example_ct_sm.nii.gz", examples / "example_ct_dicom", examples / "example_mr_sm.nii.gz"]
    paths += [path for path in (COLIN27, COLIN27_BETTER) if path.exists()]
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
    if background.source is None:   # cast once per background, not per sample
        background.source = sitk.Cast(to_sitk(image), sitk.sitkFloat32)
    # outside the image: nearest-value extrapolation, as at inference (no artificial edges at the borders)
    return sitk.GetArrayFromImage(sitk.Resample(background.source, reference, sitk.Transform(), sitk.sitkLinear,
                                                0.0, sitk.sitkFloat32, True))


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
    distance = distance * np.exp(lobulation * coarse_noise)   # always positive: no islands far away
    inside = (distance < 1.0).astype(np.float32)
    fraction = inside.reshape(grid, supersample, grid, supersample, grid, supersample).mean(axis=(1, 3, 5))
    radius_field = distance.reshape(grid, supersample, grid, supersample, grid, supersample).mean(axis=(1, 3, 5))
    return fraction, radius_field


def add_spicules(fraction: np.ndarray, centre_vox: np.ndarray, radius_vox: float, rng: np.random.Generator,
                 count: int, supersample: int = 2) -> np.ndarray:
    """Union of ``count`` thin radial spikes (reaching 1.5–2.2 radii from the centre, base half-width 0.6–1.2
    crop voxels, tapering to the tip) with the lesion's occupied fraction."""
    grid = fraction.shape[0]
    fine = grid * supersample
    axis = (np.arange(fine) + 0.5) / supersample - 0.5
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1) - centre_vox
    spikes = np.zeros((fine,) * 3, dtype=bool)
    for _ in range(count):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        along = points @ direction
        across = np.linalg.norm(points - along[..., None] * direction, axis=-1)
        length = radius_vox * rng.uniform(1.5, 2.2)
        start = 0.8 * radius_vox                 # tapers from just inside the surface to the tip
        width = rng.uniform(0.6, 1.2) * (1.0 - np.clip((along - start) / (length - start), 0, 1))
        spikes |= (along > 0) & (along < length) & (across < width)
    spike_fraction = spikes.reshape(grid, supersample, grid, supersample, grid, supersample).mean(axis=(1, 3, 5))
    return np.maximum(fraction, spike_fraction.astype(np.float32))


def thick_slice(volume: np.ndarray, axis: int, thickness_vox: float, phase: float = 0.0) -> np.ndarray:
    """Simulate a thick-slice acquisition along ``axis``: average over a box slice profile of
    ``thickness_vox`` crop voxels, sample one slice per thickness, then linear interpolation back onto the
    crop grid (what reading a thick-slice series and resampling it does)."""
    if thickness_vox <= 1.0:
        return volume
    profiled = ndimage.uniform_filter1d(volume, size=max(int(round(thickness_vox)), 1), axis=axis, mode="nearest")
    n = volume.shape[axis]
    centres = np.arange(phase * thickness_vox, n, thickness_vox)
    if len(centres) < 2:
        return profiled
    sampled = np.take(profiled, np.round(centres).astype(int).clip(0, n - 1), axis=axis)
    positions = np.clip(np.arange(n), centres[0], centres[-1])
    upper = np.searchsorted(centres, positions, side="left").clip(1, len(centres) - 1)
    weight = (positions - centres[upper - 1]) / (centres[upper] - centres[upper - 1])
    shape = [1, 1, 1]
    shape[axis] = n
    weight = weight.reshape(shape)
    return (np.take(sampled, upper - 1, axis=axis) * (1 - weight) + np.take(sampled, upper, axis=axis) * weight
            ).astype(np.float32)


def boundary_point(crop: np.ndarray, rng: np.random.Generator, margin: int) -> np.ndarray:
    """A voxel (k, j, i) of the crop on a strong tissue boundary (top 3 % gradient magnitude) in its central part."""
    edges = ndimage.gaussian_gradient_magnitude(crop.astype(np.float32), 1.5)
    inner = edges[margin:-margin, margin:-margin, margin:-margin]
    strongest = np.argwhere(inner >= np.percentile(inner, 97))
    return strongest[rng.integers(len(strongest))] + margin


@dataclass
class SyntheticCase:
    """One training pair plus what was drawn (for tests and statistics)."""

    x: np.ndarray            # float32 [2, grid, grid, grid]: normalised image, seed Gaussian
    y: np.ndarray            # float32 [grid, grid, grid]: lesion label (fraction >= 0.5)
    info: dict


def make_case(backgrounds: list[Background], rng: np.random.Generator, grid: int = 48,
              attached: Optional[bool] = None, ct_normalisation: str = "piecewise") -> SyntheticCase:
    """One synthetic lesion in a random background crop (see the module docstring for what is drawn).

    ``attached`` forces (True) or forbids (False) centring the lesion on a tissue boundary; None draws it
    (40 %). The seed is the crop centre; the lesion centre is offset from it by up to 35 % of its radius.
    """
    background = backgrounds[rng.integers(len(backgrounds))]
    lesion_diameter_mm = float(np.exp(rng.uniform(np.log(4.0), np.log(80.0))))
    box_mm = float(np.clip(lesion_diameter_mm * rng.uniform(1.3, 3.0), 20.0, 160.0))
    spacing = box_mm / grid
    centre = background.candidates_kji[rng.integers(len(background.candidates_kji))]
    crop = _background_crop(background, centre, box_mm, grid)
    radius_vox = lesion_diameter_mm / 2.0 / spacing
    radii = radius_vox * rng.uniform(0.65, 1.3, size=3)
    attached = bool(rng.random() < 0.4) if attached is None else attached
    image = background.image
    centre_lps = image.index_to_lps(centre[::-1].astype(float))
    if attached:   # re-centre the crop on a strong tissue edge (pleura, bone, vessel, brain surface) nearby
        search_mm = max(3.0 * box_mm, 150.0)
        search = _background_crop(background, centre.astype(float), search_mm, grid)
        edge_vox = boundary_point(search, rng, grid // 4)
        centre_lps = centre_lps + np.asarray(image.direction_lps) @ ((edge_vox[::-1] - (grid - 1) / 2.0)
                                                                      * search_mm / grid)
        crop = _background_crop(background, image.lps_to_index(centre_lps)[::-1], box_mm, grid)
    seed_offset = np.clip(rng.normal(size=3) * 0.2, -0.35, 0.35) * radius_vox
    centre_vox = np.full(3, (grid - 1) / 2.0) + seed_offset
    fraction, radius_field = lesion_fraction(grid, centre_vox, radii, rng, lobulation=rng.uniform(0.0, 0.35))
    blobs = int(rng.integers(1, 5)) if (rng.random() < 0.3 and radius_vox > 4.0) else 0
    for _ in range(blobs):   # multi-lobed: satellite blobs overlapping the main body
        direction = rng.normal(size=3)
        blob_centre = centre_vox + direction / np.linalg.norm(direction) * radius_vox * rng.uniform(0.6, 1.0)
        blob_fraction, blob_field = lesion_fraction(grid, blob_centre, radii * rng.uniform(0.4, 0.7, size=3), rng,
                                                    lobulation=rng.uniform(0.0, 0.3))
        fraction, radius_field = np.maximum(fraction, blob_fraction), np.minimum(radius_field, blob_field)
    spiculated = bool(rng.random() < 0.2 and radius_vox > 2.0)
    if spiculated:
        fraction = add_spicules(fraction, centre_vox, float(radii.mean()), rng, int(rng.integers(4, 12)))
    slice_thickness_mm = float(rng.uniform(1.0, 7.0)) if rng.random() < 0.6 else 0.0
    slice_axis = 0 if rng.random() < 0.8 else int(rng.integers(1, 3))
    label = fraction >= 0.5
    if label.sum() < 4:
        return make_case(backgrounds, rng, grid, attached, ct_normalisation)
    components, count = ndimage.label(label)
    if count > 1:   # one lesion: keep the component nearest the lesion centre (with its partial-volume rim)
        centres = np.asarray(ndimage.center_of_mass(label, components, range(1, count + 1)))
        keep = components == 1 + int(np.argmin(np.linalg.norm(centres - centre_vox, axis=1)))
        fraction = fraction * ndimage.binary_dilation(keep, iterations=1)
        label = fraction >= 0.5
    local = crop[ndimage.binary_dilation(label, iterations=3) & ~label]
    local_level = float(np.median(local)) if local.size else float(np.median(crop))
    tissue_spread = float(np.percentile(crop, 90) - np.percentile(crop, 10)) + 1e-3
    noise_sd = float(np.std(crop - ndimage.gaussian_filter(crop, 1.0)))
    pattern = "solid"
    if background.ct:
        if local_level < -400:   # lung: soft-tissue nodule
            lesion_level = rng.uniform(-80.0, 80.0)
        else:                    # solid organ / soft tissue: hypo- or hyper-dense
            lesion_level = local_level + rng.choice([-1.0, 1.0]) * rng.uniform(25.0, 120.0)
    else:
        lesion_level = local_level + rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0) * tissue_spread
    appearance = np.full(crop.shape, lesion_level, dtype=np.float32)
    if rng.random() < (0.3 if background.ct else 0.45):      # necrotic core with an (enhancing) rim
        pattern = "rim"
        core = radius_field < rng.uniform(0.4, 0.8)
        if background.ct:
            appearance[core] = lesion_level - rng.uniform(20.0, 60.0)
        else:   # MR: bright enhancing rim, dark necrotic core
            rim_level = local_level + rng.uniform(0.5, 1.3) * tissue_spread
            appearance[:] = rim_level
            appearance[core] = local_level - rng.uniform(0.1, 0.7) * tissue_spread
    texture = ndimage.gaussian_filter(rng.normal(size=crop.shape), 1.0) * rng.uniform(0.0, 0.15) * (abs(lesion_level) + 30.0)
    if rng.random() < 0.4:   # heterogeneous: patches (a third of the radius) partly fading towards the background
        patches = ndimage.gaussian_filter(rng.normal(size=crop.shape), max(radius_vox / 3.0, 1.0))
        patches /= patches.std() + 1e-6
        texture = texture + np.clip(patches, -2, 2) * rng.uniform(0.1, 0.3) * (appearance - local_level)
    appearance = appearance + texture + rng.normal(size=crop.shape) * noise_sd * rng.uniform(0.5, 1.2)
    background_part = crop
    if not background.ct and rng.random() < 0.3:   # MR: peritumoural oedema halo (not part of the lesion)
        halo = np.clip(1.0 - (radius_field - 1.0) / rng.uniform(0.3, 1.0), 0.0, 1.0) * (radius_field >= 1.0)
        background_part = crop + halo * rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.4) * tissue_spread
    composite = background_part * (1.0 - fraction) + appearance * fraction
    if slice_thickness_mm > spacing:
        composite = thick_slice(composite, slice_axis, slice_thickness_mm / spacing, rng.uniform(0.0, 1.0))
    image_channel = normalise_crop(composite, background.ct, ct_normalisation)
    if rng.random() < 0.5:       # contrast augmentation
        image_channel = np.clip(image_channel * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1), -0.5, 1.5)
    info = {"background": background.name, "box_mm": box_mm, "diameter_mm": lesion_diameter_mm,
            "attached": attached, "spiculated": spiculated, "blobs": blobs, "pattern": pattern,
            "slice_thickness_mm": slice_thickness_mm, "seed_offset_vox": seed_offset, "centre_vox": centre_vox,
            "crop_centre_lps": centre_lps}
    return SyntheticCase(np.stack([image_channel.astype(np.float32), seed_channel(grid)]), label.astype(np.float32), info)


def make_sample(backgrounds: list[Background], rng: np.random.Generator, grid: int = 48,
                ct_normalisation: str = "piecewise") -> tuple[np.ndarray, np.ndarray]:
    """One training pair: input ``[2, grid, grid, grid]`` (normalised image, seed Gaussian) and label ``[grid]*3``."""
    case = make_case(backgrounds, rng, grid, ct_normalisation=ct_normalisation)
    return case.x, case.y
