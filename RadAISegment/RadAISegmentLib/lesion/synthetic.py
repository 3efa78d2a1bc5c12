"""Synthetic lesions composited into real CT and MR backgrounds, in crop space (training data).

Each case mimics what the model sees at inference (:mod:`.prompts`, :mod:`.preprocess`): a cube around the
reader's prompt, resampled to ``grid``³, with the prompt channels. What is drawn, and why:

* **size and box**: diameters 4–100 mm (log-uniform); the box as readers set it — a cube of about
  1.5 × extent + 10 mm around the seed, the 64 mm default, or two corners drawn around the lesion (then the
  crop is the box's enclosing cube and the seed is optional);
* **the seed**: at the lesion's centroid (± 10 % of its radius), where a reader clicks "the middle of the
  lesion"; for an irregular or multifocal lesion that point can lie outside it, so the seed means "around
  here", not "this voxel" (include clicks mean that);
* **shape**: lobulated ellipsoids, satellite lobes, spicules, and multifocal lesions whose separate parts are
  all labelled (readers add them with include clicks); partial volume from a signed-distance level set;
* **where**: soft tissue, lung parenchyma (CT), or on a strong tissue boundary (pleura, bone, vessel wall,
  brain surface). Lesions centred in a compartment (lung, the head) usually stay inside it: a lung tumour
  touching the pleura flattens against the chest wall and its label stops there, although tumour and wall
  have the same density — the hard case a reader's outline follows;
* **appearance**: CT solid or ground-glass nodules and hypo/hyper-dense tissue lesions; MR hyper/hypo-intense
  lesions, necrotic cores with enhancing rims, heterogeneity, oedema halos, bias fields; unlabelled vessels
  crossing or touching the lesion with the lesion's own intensity, and in the head enhancing meninges (a
  patchy sheet just outside the brain, as bright as an enhancing lesion): what a reader leaves out;
* **acquisition**: the lesion is rendered at the simulated scan's resolution (in-plane 0.5–1.2 mm, slices up
  to 7 mm; mostly at most half the lesion's diameter, as a lesion is measured on two slices or more, and
  sometimes up to its whole diameter, as a small metastasis on thick MR slices: box slice profile, one sample
  per slice, linear interpolation back), with the background's noise; slices clearly thicker than the
  background's own are applied to the background too (the whole scan is acquired at them).

The label is the lesion's true extent at crop resolution (occupancy ≥ 0.5), the soft target its occupancy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from .backgrounds import Background, background_crop, compartment_crop, edge_centre_near
from .preprocess import normalise_crop
from .prompts import DEFAULT_BOX_MM, GRID, stack_channels
from .shapes import (ellipsoid_level_set, grid_points, keep_component_near, occupancy, random_rotation,
                     smooth_noise, tube_level_set)


@dataclass
class SyntheticCase:
    """One training example: network input, soft target and what was drawn."""

    x: np.ndarray              # float32 [5, g, g, g]: image, include, exclude, box, previous (empty)
    target: np.ndarray         # float32 [g, g, g]: lesion occupancy 0..1
    info: dict

    @property
    def label(self) -> np.ndarray:
        return self.target >= 0.5


def thick_slice(volume: np.ndarray, axis: int, thickness_vox: float, phase: float = 0.0) -> np.ndarray:
    """A thick-slice acquisition along ``axis``: average over a box slice profile of ``thickness_vox`` crop
    voxels, one sample per slice, then linear interpolation back onto the crop grid."""
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
    weight = ((positions - centres[upper - 1]) / (centres[upper] - centres[upper - 1])).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = n
    weight = weight.reshape(shape)
    return (np.take(sampled, upper - 1, axis=axis) * (1 - weight) + np.take(sampled, upper, axis=axis) * weight
            ).astype(np.float32)


def _choose_box(diameter_mm: float, rng: np.random.Generator) -> tuple[str, float]:
    """('cube' | 'default' | 'corners', crop edge mm)."""
    draw = rng.random()
    if draw < 0.15 and diameter_mm < 42.0:
        return "default", DEFAULT_BOX_MM
    if draw < 0.65:
        return "cube", float(np.clip(diameter_mm * rng.uniform(1.2, 2.0) + rng.uniform(0.0, 15.0), 10.0, 220.0))
    return "corners", float(np.clip(diameter_mm * rng.uniform(1.25, 1.9), 8.0, 220.0))


def _lesion_level_set(points, grid: int, centre, radius_vox: float, rng, info: dict) -> np.ndarray:
    radii = radius_vox * rng.uniform(0.6, 1.35, size=3).astype(np.float32)
    lobulation = float(rng.uniform(0.0, 0.35))
    noise = smooth_noise(grid, max(radius_vox / 2.0, 2.0), rng) if lobulation > 0.02 else None
    level = ellipsoid_level_set(points, centre, radii, random_rotation(rng), lobulation, noise)
    info.update(lobulation=lobulation, satellites=0, multifocal=0, spicules=0)
    if radius_vox > 3.0 and rng.random() < 0.3:          # satellite lobes overlapping the main body
        for _ in range(int(rng.integers(1, 4))):
            direction = rng.normal(size=3)
            where = centre + direction / np.linalg.norm(direction) * radius_vox * rng.uniform(0.6, 1.0)
            level = np.minimum(level, ellipsoid_level_set(points, where, radii * rng.uniform(0.35, 0.7, size=3),
                                                          random_rotation(rng)))
            info["satellites"] += 1
    if radius_vox > 3.0 and rng.random() < 0.15:         # multifocal: separate parts, all labelled
        for _ in range(int(rng.integers(1, 3))):
            direction = rng.normal(size=3)
            part_radius = radius_vox * rng.uniform(0.25, 0.5)
            where = centre + direction / np.linalg.norm(direction) * (radius_vox * 1.1 + part_radius
                                                                      + rng.uniform(1.0, 4.0))
            level = np.minimum(level, ellipsoid_level_set(points, where, np.full(3, part_radius, np.float32)
                                                          * rng.uniform(0.7, 1.3, size=3), random_rotation(rng)))
            info["multifocal"] += 1
    if radius_vox > 2.0 and rng.random() < 0.15:         # spicules tapering to a tip
        for _ in range(int(rng.integers(4, 12))):
            direction = rng.normal(size=3).astype(np.float32)
            direction /= np.linalg.norm(direction)
            level = np.minimum(level, tube_level_set(points, centre, direction, radius_vox * rng.uniform(1.4, 2.2),
                                                     rng.uniform(0.6, 1.3), 0.0))
            info["spicules"] += 1
    return level


def _compartment(crop: np.ndarray, centre: np.ndarray, ct: bool) -> Optional[np.ndarray]:
    """Level set (voxels) of the compartment around the lesion centre: CT lung, or (MR) the inside of the
    body/head; None when the centre is not in such a compartment."""
    smooth = ndimage.gaussian_filter(crop, 1.0)
    at = tuple(np.clip(np.round(centre).astype(int), 0, crop.shape[0] - 1))
    if ct:
        if smooth[at] > -400:
            return None
        inside = ndimage.binary_closing(smooth < -350, iterations=2)
    else:
        inside = ndimage.binary_fill_holes(smooth > np.percentile(smooth, 15))
    components, _ = ndimage.label(inside)
    if components[at] == 0:
        return None
    return _signed_distance(components == components[at])


def _organ_level_set(organ: np.ndarray) -> Optional[np.ndarray]:
    """Level set of a resampled organ mask (0..1) on the crop; None when the organ is not in the crop."""
    inside = organ >= 0.5
    return _signed_distance(inside) if inside.any() else None


def _signed_distance(inside: np.ndarray) -> np.ndarray:
    """Signed distance (crop voxels, < 0 inside) to the surface of a boolean region: a compartment's level set."""
    return (ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)).astype(np.float32)


def _appearance(crop, label, radius_vox, level, ct: bool, rng, info: dict):
    local = crop[ndimage.binary_dilation(label, iterations=3) & ~label]
    local_level = float(np.median(local)) if local.size else float(np.median(crop))
    spread = float(np.percentile(crop, 90) - np.percentile(crop, 10)) + 1e-3
    noise_sd = float(np.std(crop - ndimage.gaussian_filter(crop, 1.0)))
    if ct:
        if local_level < -400:
            lesion_level = rng.uniform(-650.0, -300.0) if rng.random() < 0.1 else rng.uniform(-60.0, 80.0)
        else:
            lesion_level = local_level + rng.choice([-1.0, 1.0]) * rng.uniform(25.0, 120.0)
    else:
        lesion_level = local_level + rng.choice([-1.0, 1.0], p=[0.3, 0.7]) * rng.uniform(0.35, 1.0) * spread
    appearance = np.full(crop.shape, lesion_level, np.float32)
    info["pattern"] = "solid"
    if rng.random() < (0.25 if ct else 0.45) and radius_vox > 3:     # necrotic core, (enhancing) rim
        info["pattern"] = "rim"
        core = level < -rng.uniform(1.0, 0.55 * radius_vox)
        if ct:
            appearance[core] = lesion_level - rng.uniform(20.0, 60.0)
        else:
            appearance[:] = local_level + rng.uniform(0.4, 1.2) * spread
            appearance[core] = local_level - rng.uniform(0.0, 0.6) * spread
    texture = smooth_noise(crop.shape[0], 1.5, rng) * rng.uniform(0.0, 0.15) * (abs(lesion_level - local_level) + 20.0)
    if rng.random() < 0.4:
        texture += np.clip(smooth_noise(crop.shape[0], max(radius_vox / 3.0, 1.5), rng), -2, 2) \
            * rng.uniform(0.1, 0.35) * (appearance - local_level)
    appearance += texture + rng.normal(size=crop.shape).astype(np.float32) * noise_sd * rng.uniform(0.6, 1.1)
    return appearance, lesion_level, local_level, spread


def enhancing_meninges(organ_level: np.ndarray, spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Occupancy (0..1) of patches of enhancing meninges: a sheet 1-4 mm thick just outside the organ
    (the brain; ``organ_level`` its signed distance in crop voxels, < 0 inside), covering part of its surface.
    On post-contrast T1 the dura enhances as brightly as a metastasis and touches a cortical one; it is not
    lesion (unlabelled), as a reader's outline stops at the brain surface."""
    thickness_vox = max(rng.uniform(1.0, 4.0) / spacing_mm, 0.7)
    sheet = occupancy(np.maximum(-organ_level, organ_level - thickness_vox))
    patches = smooth_noise(organ_level.shape[0], max(10.0 / spacing_mm, 2.0), rng)
    return (sheet * np.clip((patches - rng.uniform(-0.8, 0.4)) * 2.0, 0.0, 1.0)).astype(np.float32)


def acquire(crop: np.ndarray, difference: np.ndarray, background_slice_mm: float, slice_vox: float,
            slice_axis: int, phase: float, spacing_mm: float) -> np.ndarray:
    """The composite scan (crop + rendered lesion) acquired with slices ``slice_vox`` crop voxels thick along
    ``slice_axis`` (crop spacing ``spacing_mm``). A scanner samples everything at its slices, so where the
    slices are clearly thicker than the background's own (``background_slice_mm``) the background is sliced
    with the lesion; otherwise only the lesion is (the background already has its native resolution). Until
    2.3 only the lesion was: a thick-slice lesion then sat in a background that stayed sharp across slices."""
    if slice_vox * spacing_mm > 1.5 * background_slice_mm:
        return thick_slice(crop + difference, slice_axis, slice_vox, phase)
    return crop + thick_slice(difference, slice_axis, slice_vox, phase)


def seed_near_centre(label: np.ndarray, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A reader's seed (k, j, i voxel, float): one of the quarter of the lesion's interior voxels nearest
    ``centre``; a lesion too thin to have an interior (every voxel on its surface) is its own interior."""
    interior = ndimage.binary_erosion(label, iterations=1) if label.sum() > 30 else label
    inside = np.argwhere(interior if interior.any() else label)
    near_centre = inside[np.argsort(np.linalg.norm(inside - centre, axis=1))[: max(len(inside) // 4, 1)]]
    return near_centre[rng.integers(len(near_centre))].astype(float)


def make_case(backgrounds: list[Background], rng: np.random.Generator, grid: int = GRID,
              ct_normalisation: str = "piecewise", attached: Optional[bool] = None) -> SyntheticCase:
    """One synthetic lesion with its prompt channels (see the module docstring for what is drawn)."""
    background = backgrounds[rng.integers(len(backgrounds))]
    diameter_mm = float(np.exp(rng.uniform(np.log(4.0), np.log(100.0))))
    box_kind, edge_mm = _choose_box(diameter_mm, rng)
    spacing = edge_mm / grid
    in_lung = background.ct and len(background.lung_kji) > 0 and rng.random() < 0.4
    pool = background.lung_kji if in_lung else background.tissue_kji
    centre_index = pool[rng.integers(len(pool))].astype(float)
    attached = bool(rng.random() < 0.4) if attached is None else attached
    if attached and background.surface_kji is not None and len(background.surface_kji):
        centre_index = background.surface_kji[rng.integers(len(background.surface_kji))].astype(float)
    elif attached:
        centre_index = edge_centre_near(background, centre_index, edge_mm, grid, rng)
    crop = background_crop(background, centre_index, edge_mm, grid)
    info = {"background": background.name, "diameter_mm": diameter_mm, "box": box_kind, "edge_mm": edge_mm,
            "attached": attached, "in_lung": bool(in_lung),
            "crop_centre_lps": background.image.index_to_lps(np.asarray(centre_index, float)[::-1])}

    points = grid_points(grid)
    radius_vox = diameter_mm / 2.0 / spacing
    middle = np.full(3, (grid - 1) / 2.0, np.float32)
    offset = rng.normal(size=3) * 0.05 * radius_vox
    centre = (middle + offset).astype(np.float32)
    level = _lesion_level_set(points, grid, centre, radius_vox, rng, info)
    if box_kind != "corners":     # the seed (crop centre) lies near the lesion's centroid, where a reader clicks
        inside = np.argwhere(level < 0)
        if len(inside):
            jitter = np.clip(rng.normal(size=3) * 0.1, -0.25, 0.25) * radius_vox
            shift = middle + jitter - inside.mean(axis=0)
            level = ndimage.shift(level, shift, order=1, mode="nearest")
            centre = (centre + shift).astype(np.float32)
    organ_level = None
    if background.compartment is not None:         # the organ is known (the brain): lesions stay in it
        organ_level = _organ_level_set(compartment_crop(background, centre_index, edge_mm, grid))
        compartment = organ_level if rng.random() < 0.9 else None
    else:
        compartment = _compartment(crop, centre, background.ct) if rng.random() < (0.85 if attached else 0.5) \
            else None
    if compartment is not None:
        level = np.maximum(level, compartment)
    info["confined"] = compartment is not None
    fraction = occupancy(level)
    label = fraction >= 0.5
    if label.sum() < 6:
        return make_case(backgrounds, rng, grid, ct_normalisation, attached)
    if not info["multifocal"]:
        keep = keep_component_near(label, centre)
        fraction = fraction * ndimage.binary_dilation(keep, iterations=1)
        label = fraction >= 0.5

    appearance, lesion_level, local_level, spread = _appearance(crop, label, radius_vox, level, background.ct, rng, info)
    vessel_fraction = np.zeros_like(fraction)
    info["vessels"] = 0
    if rng.random() < 0.3:            # unlabelled vessels with the lesion's intensity, touching or crossing it
        for _ in range(int(rng.integers(1, 4))):
            direction = rng.normal(size=3).astype(np.float32)
            direction /= np.linalg.norm(direction)
            side = rng.normal(size=3).astype(np.float32)
            side -= side @ direction * direction
            side /= np.linalg.norm(side) + 1e-6
            through = centre + side * radius_vox * rng.uniform(0.5, 1.3)
            radius = rng.uniform(0.4, 2.0) / spacing
            tube = tube_level_set(points, through - direction * grid, direction, 2.0 * grid, radius, radius)
            vessel_fraction = np.maximum(vessel_fraction, occupancy(tube))
            info["vessels"] += 1
        vessel_fraction *= 1.0 - fraction
    vessel_level = lesion_level * rng.uniform(0.85, 1.15) if background.ct else lesion_level
    difference = fraction * (appearance - crop) + vessel_fraction * (vessel_level - crop)
    if organ_level is not None and not background.ct and rng.random() < 0.5:
        meninges = enhancing_meninges(organ_level, spacing, rng) * (1.0 - fraction) * (1.0 - vessel_fraction)
        brighter = max(lesion_level - local_level, 0.0)
        meninges_level = local_level + (brighter * rng.uniform(0.7, 1.2) if brighter > 0.3 * spread
                                        else rng.uniform(0.4, 1.0) * spread)
        difference += meninges * (meninges_level - crop)
        info["meninges"] = True
    if not background.ct and rng.random() < 0.3:   # oedema halo outside the label
        halo = np.clip(1.0 - np.maximum(level, 0) / (radius_vox * rng.uniform(0.3, 1.0)), 0, 1) * (level > 0)
        difference += halo * rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.35) * spread
    # the scan's own resolution: in-plane box blur of the lesion, thick slices (see acquire)
    native = background.native_spacing_mm
    in_plane_mm = max(float(native[:2].min()), rng.uniform(0.5, 1.2))
    thickest_mm = min(7.0, max((0.5 if rng.random() < 0.75 else 1.0) * diameter_mm, 1.0))
    slice_mm = float(rng.uniform(1.0, thickest_mm)) if rng.random() < 0.6 else in_plane_mm
    slice_axis = 0 if rng.random() < 0.85 else int(rng.integers(1, 3))
    blur = [in_plane_mm / spacing] * 3
    blur[slice_axis] = 1.0
    size = [max(int(round(b)), 1) for b in blur]
    if max(size) > 1:
        difference = ndimage.uniform_filter(difference, size=size, mode="nearest")
    composite = acquire(crop, difference, float(native[2 - slice_axis]), slice_mm / spacing, slice_axis,
                        rng.uniform(0.0, 1.0), spacing)
    if not background.ct and rng.random() < 0.5:   # MR bias field
        composite = composite * np.exp(0.15 * smooth_noise(grid, grid / 1.5, rng))
    image_channel = normalise_crop(composite, background.ct, ct_normalisation)
    if rng.random() < 0.5:
        image_channel = np.clip(image_channel * rng.uniform(0.85, 1.15) + rng.uniform(-0.08, 0.08), -0.5, 1.5)
    info.update(slice_mm=slice_mm, in_plane_mm=in_plane_mm, slice_axis=slice_axis, lesion_level=lesion_level,
                local_level=local_level)

    seed = middle.copy()
    box_low = box_high = None
    if box_kind == "corners":
        where = np.argwhere(label)
        low, high = where.min(axis=0).astype(float), where.max(axis=0).astype(float)
        extent = high - low + 1
        box_low = np.clip(low - extent * rng.uniform(0.0, 0.3, 3) - rng.uniform(0, 3, 3), 0, grid - 1)
        box_high = np.clip(high + extent * rng.uniform(0.0, 0.3, 3) + rng.uniform(0, 3, 3), 0, grid - 1)
        seed = seed_near_centre(label, centre, rng) if rng.random() < 0.8 else None
    info["seed_kji"] = seed
    x = stack_channels(image_channel, seed, [], [], box_low, box_high)
    return SyntheticCase(x, np.clip(fraction, 0, 1).astype(np.float32), info)
