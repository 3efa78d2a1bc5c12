"""What a reader tells the lesion model, and how it becomes network input channels.

A :class:`LesionPrompt` holds one lesion's prompts in **RAS mm** (what Slicer shows and the CLI takes):
a seed, an optional box (a cube edge around the seed, or two opposite corners), include and exclude
clicks, and optionally a previous outline to refine. :class:`CropGeometry` is the cube the network sees:
centred on the box (or seed), axis-aligned with the input image's voxel axes (same direction matrix),
sampled on ``grid``³ voxels of isotropic spacing ``edge_mm / grid``.

The network input has :data:`CHANNELS` = 5 channels on that grid, indexed ``[c, k, j, i]``:

0. ``image``     the crop, normalised per modality (:mod:`.preprocess`);
1. ``include``   the seed (a wide Gaussian, peak :data:`SEED_PEAK`, sigma :data:`SEED_SIGMA_VOXELS`: "around
                 here") and include clicks (unit Gaussians, sigma :data:`POINT_SIGMA_VOXELS` crop voxels);
2. ``exclude``   the same at exclude clicks;
3. ``box``       1 inside the reader's box, 0 outside (all ones for a cube box around the seed);
4. ``previous``  the previous outline (0/1) when refining, else 0.

Training (:mod:`.synthetic`, :mod:`.train`) and inference (:mod:`.predict`) build channels with the same
functions here, so the two cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..image import Image

GRID = 64
POINT_SIGMA_VOXELS = 2.0
SEED_SIGMA_VOXELS = 3.0
SEED_PEAK = 0.6
CHANNELS = ("image", "include", "exclude", "box", "previous")
DEFAULT_BOX_MM = 64.0
#: A box drawn from two corners is enclosed in a cube this much larger than its longest side.
BOX_CORNER_MARGIN = 1.1
MIN_BOX_MM = 2.0


@dataclass
class LesionPrompt:
    """One lesion's prompts, RAS mm.

    seed_ras: the first click inside the lesion (defaults to the box centre when only a box is given).
    box_mm: edge of a cube around the seed (None: :data:`DEFAULT_BOX_MM`), ignored when ``box_corners_ras`` is set.
    box_corners_ras: two opposite corners of a box the reader drew, ``((R1, A1, S1), (R2, A2, S2))``.
    include_ras / exclude_ras: correction clicks (foreground / background).
    """

    seed_ras: Optional[tuple[float, float, float]] = None
    box_mm: Optional[float] = None
    box_corners_ras: Optional[tuple[tuple[float, float, float], tuple[float, float, float]]] = None
    include_ras: list = field(default_factory=list)
    exclude_ras: list = field(default_factory=list)

    def positive_points_ras(self) -> list[np.ndarray]:
        points = [np.asarray(self.seed_ras, float)] if self.seed_ras is not None else []
        return points + [np.asarray(p, float) for p in self.include_ras]


@dataclass(frozen=True)
class CropGeometry:
    """The network's cube: ``grid``³ voxels of ``spacing_mm = edge_mm / grid``, centred at ``centre_lps``,
    axes along the input image's i, j, k directions (``direction_lps`` columns)."""

    centre_lps: np.ndarray
    edge_mm: float
    direction_lps: np.ndarray
    grid: int = GRID

    @property
    def spacing_mm(self) -> float:
        return self.edge_mm / self.grid

    @property
    def origin_lps(self) -> np.ndarray:
        """LPS position of the centre of crop voxel (0, 0, 0)."""
        half = self.spacing_mm * (self.grid - 1) / 2.0
        return np.asarray(self.centre_lps, float) - np.asarray(self.direction_lps) @ np.full(3, half)

    def lps_to_kji(self, points_lps: np.ndarray) -> np.ndarray:
        """Continuous crop voxel indices ``[..., (k, j, i)]`` of LPS points."""
        offsets = np.asarray(points_lps, float) - self.origin_lps
        ijk = offsets @ np.asarray(self.direction_lps) / self.spacing_mm   # direction is orthonormal
        return ijk[..., ::-1]

    def contains_kji(self, kji: np.ndarray) -> bool:
        return bool(np.all(np.asarray(kji) >= -0.5) and np.all(np.asarray(kji) <= self.grid - 0.5))


def _check_inside(image: Image, point_ras, what: str) -> None:
    index = image.ras_to_index(np.asarray(point_ras, float))
    shape = np.asarray(image.shape_ijk, float)
    if np.any(index < -0.5) or np.any(index > shape - 0.5):
        raise InputError(f"{what} {tuple(round(float(v), 1) for v in point_ras)} (RAS mm) lies outside the image; "
                         "place it inside the volume.")


def box_in_index_space(image: Image, corners_ras) -> tuple[np.ndarray, np.ndarray]:
    """A drawn box as lower/upper continuous voxel indices (i, j, k) of the input image (axis-aligned with it)."""
    corners = np.asarray(corners_ras, float).reshape(2, 3)
    indices = np.stack([image.ras_to_index(c) for c in corners])
    return indices.min(axis=0), indices.max(axis=0)


def crop_geometry(image: Image, prompt: LesionPrompt, grid: int = GRID,
                  default_box_mm: float = DEFAULT_BOX_MM) -> CropGeometry:
    """The crop for one lesion: the box's enclosing cube (× :data:`BOX_CORNER_MARGIN`) for a drawn box,
    else a cube of ``box_mm`` centred at the seed. Raises :class:`InputError` for a zero-size box or a
    seed/box outside the image."""
    direction = np.asarray(image.direction_lps, float)
    if prompt.box_corners_ras is not None:
        low, high = box_in_index_space(image, prompt.box_corners_ras)
        sides_mm = (high - low) * np.asarray(image.spacing_mm)
        if np.any(sides_mm < MIN_BOX_MM) or not np.all(np.isfinite(sides_mm)):
            raise InputError(f"The box has a side of {float(sides_mm.min()):.2f} mm; draw a box at least "
                             f"{MIN_BOX_MM:g} mm wide in every direction around the lesion.")
        centre_index = (low + high) / 2.0
        shape = np.asarray(image.shape_ijk, float)
        if np.any(high < -0.5) or np.any(low > shape - 0.5):
            raise InputError("The box lies entirely outside the image; draw it around the lesion.")
        _check_inside(image, image.index_to_ras(np.clip(centre_index, 0, shape - 1)), "Box centre")
        return CropGeometry(image.index_to_lps(centre_index), float(sides_mm.max() * BOX_CORNER_MARGIN), direction,
                            grid)
    if prompt.seed_ras is None:
        raise InputError("Give a seed point inside the lesion (R,A,S mm) or a box around it.")
    _check_inside(image, prompt.seed_ras, "Seed")
    edge = float(prompt.box_mm) if prompt.box_mm is not None else float(default_box_mm)
    if not np.isfinite(edge) or edge < MIN_BOX_MM:
        raise InputError(f"Box size must be at least {MIN_BOX_MM:g} mm, got {edge}.")
    return CropGeometry(image.index_to_lps(image.ras_to_index(np.asarray(prompt.seed_ras, float))), edge, direction,
                        grid)


def point_channel(points_kji: Sequence[Sequence[float]], grid: int, sigma_voxels: float = POINT_SIGMA_VOXELS
                  ) -> np.ndarray:
    """float32 ``grid``³: the maximum of unit-peak Gaussians at the given crop voxel positions (k, j, i)."""
    channel = np.zeros((grid,) * 3, np.float32)
    axis = np.arange(grid, dtype=np.float32)
    reach = int(np.ceil(4 * sigma_voxels))
    for point in points_kji:
        point = np.asarray(point, np.float32)
        low = np.clip(np.floor(point).astype(int) - reach, 0, grid)
        high = np.clip(np.floor(point).astype(int) + reach + 2, 0, grid)
        if np.any(high <= low):
            continue
        k, j, i = (np.exp(-((axis[low[d]:high[d]] - point[d]) ** 2) / (2 * sigma_voxels ** 2)) for d in range(3))
        window = k[:, None, None] * j[None, :, None] * i[None, None, :]
        region = channel[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        np.maximum(region, window, out=region)
    return channel


def box_channel(low_kji: Optional[np.ndarray], high_kji: Optional[np.ndarray], grid: int) -> np.ndarray:
    """float32 ``grid``³: 1 where the voxel centre lies inside the box (continuous crop indices, k, j, i),
    all ones without a box."""
    if low_kji is None:
        return np.ones((grid,) * 3, np.float32)
    axis = np.arange(grid)
    inside = [(axis >= low_kji[d] - 1e-6) & (axis <= high_kji[d] + 1e-6) for d in range(3)]
    return (inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]).astype(np.float32)


def positive_channel(seed_kji, include_kji, grid: int) -> np.ndarray:
    """Channel 1: the seed as a wide, half-height Gaussian ("the lesion is around here": a reader's first click
    in the middle of a lesion, which for an irregular or multifocal lesion may even miss it) and include
    clicks as narrow unit Gaussians ("this voxel is lesion")."""
    channel = point_channel(include_kji, grid)
    if seed_kji is not None:
        np.maximum(channel, SEED_PEAK * point_channel([seed_kji], grid, SEED_SIGMA_VOXELS), out=channel)
    return channel


def stack_channels(image_channel: np.ndarray, seed_kji, include_kji, exclude_kji, box_low_kji=None,
                   box_high_kji=None, previous: Optional[np.ndarray] = None) -> np.ndarray:
    """The network input ``[5, grid, grid, grid]`` float32 (see the module docstring)."""
    grid = image_channel.shape[0]
    previous_channel = np.zeros((grid,) * 3, np.float32) if previous is None else (previous > 0.5).astype(np.float32)
    return np.stack([image_channel.astype(np.float32), positive_channel(seed_kji, include_kji, grid),
                     point_channel(exclude_kji, grid), box_channel(box_low_kji, box_high_kji, grid),
                     previous_channel])


def prompts_from_outline(labelmap: Image) -> list[LesionPrompt]:
    """One prompt per label of an outline to refine: the seed at the label's interior point farthest from its
    boundary, a cube box of 1.5 × its largest extent + 10 mm (the documented prompt)."""
    from scipy import ndimage
    prompts = []
    for label in labelmap.label_values():
        mask = labelmap.array == label
        distance = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=labelmap.spacing_mm[::-1])[1:-1, 1:-1, 1:-1]
        where = np.argwhere(mask)
        deepest = np.argwhere(distance >= distance.max() - 1e-6)     # ties: the one nearest the centroid
        seed_kji = deepest[int(np.argmin(np.linalg.norm(deepest - where.mean(axis=0), axis=1)))]
        extent_mm = (where.max(axis=0) - where.min(axis=0) + 1)[::-1] * np.asarray(labelmap.spacing_mm)
        prompts.append(LesionPrompt(seed_ras=tuple(float(v) for v in labelmap.index_to_ras(np.asarray(seed_kji)[::-1])),
                                    box_mm=float(extent_mm.max() * 1.5 + 10.0)))
    if not prompts:
        raise InputError("The outline to refine is empty; give a seed point instead.")
    return prompts


def assemble_prompts(image: Image, seeds_ras: Sequence, boxes_ras: Sequence, includes_ras: Sequence,
                     excludes_ras: Sequence, box_mm: Optional[float] = None, outline: Optional[Image] = None,
                     grid: int = GRID, default_box_mm: float = DEFAULT_BOX_MM) -> list[LesionPrompt]:
    """One prompt per lesion from what a user typed (RAS mm): each drawn box (corners ``R1,A1,S1,R2,A2,S2``) is a
    lesion, with the seed that lies in it; each remaining seed is a lesion in a cube of ``box_mm``; without
    seeds and boxes, the labels of ``outline``. Include/exclude clicks go to the lesion whose crop holds them
    and whose centre is nearest; a click outside every lesion's crop raises :class:`InputError`."""
    seeds = [tuple(float(v) for v in s) for s in seeds_ras]
    prompts: list[LesionPrompt] = []
    for box in boxes_ras:
        corners = (tuple(float(v) for v in box[:3]), tuple(float(v) for v in box[3:6]))
        low, high = box_in_index_space(image, corners)
        inside = [s for s in seeds if np.all(image.ras_to_index(np.asarray(s)) >= low - 0.5)
                  and np.all(image.ras_to_index(np.asarray(s)) <= high + 0.5)]
        seed = inside[0] if inside else None
        if seed is not None:
            seeds.remove(seed)
        prompts.append(LesionPrompt(seed_ras=seed, box_corners_ras=corners))
    prompts += [LesionPrompt(seed_ras=s, box_mm=box_mm) for s in seeds]
    if not prompts and outline is not None:
        prompts = prompts_from_outline(outline)
    if not prompts:
        raise InputError("Give a seed point inside each lesion (--seed R,A,S), a box around it "
                         "(--box R1,A1,S1,R2,A2,S2) or an outline to refine (--refine SEG).")
    geometries = [crop_geometry(image, p, grid, default_box_mm) for p in prompts]
    for points, include in ((includes_ras, True), (excludes_ras, False)):
        for point in points:
            point = tuple(float(v) for v in point)
            _check_inside(image, point, "Include click" if include else "Exclude click")
            lps = image.index_to_lps(image.ras_to_index(np.asarray(point)))
            holders = [n for n, g in enumerate(geometries) if g.contains_kji(g.lps_to_kji(lps))]
            if not holders:
                raise InputError(f"{'Include' if include else 'Exclude'} click {tuple(round(v, 1) for v in point)} "
                                 "(RAS mm) lies outside every lesion's box; click inside the lesion's box, or "
                                 "give a seed for a new lesion there.")
            nearest = min(holders, key=lambda n: np.linalg.norm(geometries[n].centre_lps - lps))
            (prompts[nearest].include_ras if include else prompts[nearest].exclude_ras).append(point)
    return prompts
