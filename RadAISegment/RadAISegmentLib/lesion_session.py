"""A reader's interactive lesion session: each lesion's prompts, which lesion a click corrects, and a
correction of one lesion on the small part of the image its crop covers.

Slicer-free (engine layer). The Slicer module keeps a :class:`LesionSession` on the segmentation node it
corrects (JSON in a node attribute, so it survives leaving the module and saving the scene); the worker
process runs :func:`correct_lesion`. Points are **RAS mm** (what Slicer shows); arrays ``[k, j, i]``;
a region is ``[k, j, i]`` slices of the input image's grid, ``offset_kji`` the index of its first voxel.

A correction re-runs only the lesion the click belongs to, on the sub-image its crop needs (the crop's
cube on the input grid plus a margin), starting from that lesion's current outline. The result equals
:func:`.lesion.predict.segment_prompts` of that one prompt on the whole image (tested), but reads, resamples
and pastes back only the few thousand voxels around the lesion, whatever the size of the scan.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .errors import InputError
from .image import Image

#: margin (input voxels) around the crop's cube on the input grid kept for a correction: linear
#: interpolation into the crop and the paste-back never read beyond it (``input_region`` uses 1)
REGION_MARGIN = 2


def prompt_as_dict(prompt) -> dict:
    """A :class:`.lesion.prompts.LesionPrompt` as JSON-ready lists (RAS mm)."""
    def point(value):
        return None if value is None else [float(v) for v in value]
    return {"seed_ras": point(prompt.seed_ras), "box_mm": None if prompt.box_mm is None else float(prompt.box_mm),
            "box_corners_ras": None if prompt.box_corners_ras is None else [point(c) for c in prompt.box_corners_ras],
            "include_ras": [point(p) for p in prompt.include_ras], "exclude_ras": [point(p) for p in prompt.exclude_ras]}


def prompt_from_dict(data: dict):
    """Inverse of :func:`prompt_as_dict`."""
    from .lesion.prompts import LesionPrompt

    def point(value):
        return None if value is None else tuple(float(v) for v in value)
    corners = data.get("box_corners_ras")
    return LesionPrompt(seed_ras=point(data.get("seed_ras")),
                        box_mm=None if data.get("box_mm") is None else float(data["box_mm"]),
                        box_corners_ras=None if corners is None else (point(corners[0]), point(corners[1])),
                        include_ras=[point(p) for p in data.get("include_ras") or []],
                        exclude_ras=[point(p) for p in data.get("exclude_ras") or []])


def volume_text(name: str, volume_ml: float, volume_range_ml: Optional[Sequence[float]]) -> str:
    """``"Lesion 1: 1.23 mL (range 1.05–1.41 mL)"`` (no range part when there is none)."""
    text = f"{name}: {volume_ml:.2f} mL"
    if volume_range_ml is not None and len(volume_range_ml) == 2:
        text += f" (range {float(volume_range_ml[0]):.2f}\u2013{float(volume_range_ml[1]):.2f} mL)"
    return text


@dataclass
class LesionRecord:
    """One lesion of a session: its label value, the segment holding it, its prompt (dict, RAS mm) and its
    latest volume (mL) with the stated range."""

    label: int
    name: str
    prompt: dict
    volume_ml: float = 0.0
    volume_range_ml: Optional[list] = None
    segment_id: str = ""

    def line(self) -> str:
        return volume_text(self.name, self.volume_ml, self.volume_range_ml)


@dataclass
class LesionSession:
    """Everything needed to correct a lesion segmentation later: the model and options it was made with,
    the volume it belongs to (a node ID, for the caller) and one :class:`LesionRecord` per lesion."""

    model_id: str
    volume_id: str = ""
    device: str = "auto"
    precision: str = "auto"
    lesions: list = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"model_id": self.model_id, "volume_id": self.volume_id, "device": self.device,
                           "precision": self.precision, "lesions": [vars(r) for r in self.lesions]})

    @staticmethod
    def from_json(text: str) -> "LesionSession":
        try:
            data = json.loads(text)
            return LesionSession(data["model_id"], data.get("volume_id", ""), data.get("device", "auto"),
                                 data.get("precision", "auto"), [LesionRecord(**r) for r in data.get("lesions", [])])
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"The segmentation's RadAI lesion record is unreadable ({error}); segment the "
                             "lesions again with Apply.") from error

    def record(self, label: int) -> LesionRecord:
        for record in self.lesions:
            if record.label == label:
                return record
        raise InputError(f"Lesion {label} is not part of this segmentation's RadAI record; segment it with Apply.")

    def lines(self) -> list[str]:
        return [record.line() for record in self.lesions]


def geometry_image(shape_kji: Sequence[int], spacing_mm, origin_lps, direction_lps) -> Image:
    """An :class:`Image` with a grid but no voxels (a read-only zero-stride array of ``shape_kji``): for
    geometry (index <-> RAS, crop cubes) of a large volume without copying it."""
    return Image(np.broadcast_to(np.zeros((), np.uint8), tuple(int(s) for s in shape_kji)), spacing_mm, origin_lps,
                 direction_lps)


def lesion_for_click(image: Image, prompts: Sequence, point_ras: Sequence[float], include: bool, grid: int,
                     default_box_mm: float) -> int:
    """Index (0-based) of the lesion a correction click belongs to, by the engine's rule
    (:func:`.lesion.prompts.assemble_prompts`): among the lesions whose crop holds the click, the one whose
    crop centre is nearest. ``image`` needs only its grid (:func:`geometry_image`). Raises :class:`InputError`
    for a click outside the image or outside every lesion's box."""
    from .lesion.prompts import crop_geometry
    what = "Include click" if include else "Exclude click"
    point = np.asarray(point_ras, float)
    index = image.ras_to_index(point)
    if np.any(index < -0.5) or np.any(index > np.asarray(image.shape_ijk, float) - 0.5):
        raise InputError(f"{what} {tuple(round(float(v), 1) for v in point)} (RAS mm) lies outside the image; "
                         "place it inside the volume.")
    lps = image.index_to_lps(index)
    geometries = [crop_geometry(image, prompt, grid, default_box_mm) for prompt in prompts]
    holders = [n for n, g in enumerate(geometries) if g.contains_kji(g.lps_to_kji(lps))]
    if not holders:
        raise InputError(f"{what} {tuple(round(float(v), 1) for v in point)} (RAS mm) lies outside every lesion's "
                         "box; click inside the lesion's box, or add a seed there and press Apply for a new lesion.")
    return min(holders, key=lambda n: float(np.linalg.norm(geometries[n].centre_lps - lps)))


def crop_region(image: Image, prompt, grid: int, default_box_mm: float, margin: int = REGION_MARGIN
                ) -> tuple[slice, slice, slice]:
    """``[k, j, i]`` slices of ``image``'s grid covering the lesion's crop cube plus ``margin`` voxels."""
    from .lesion.preprocess import Crop, input_region
    from .lesion.prompts import crop_geometry
    geometry = crop_geometry(image, prompt, grid, default_box_mm)
    return input_region(Crop(np.empty(0, np.float32), geometry), image, margin=margin)


def sub_image(image: Image, region: tuple[slice, slice, slice]) -> Image:
    """The voxels of ``region`` as an image at the same place in space. The modality is kept explicit
    (CT when the whole image is CT-like), so a soft-tissue-only region is still normalised as CT."""
    from .lesion.preprocess import is_ct_like
    start_ijk = np.array([region[2].start, region[1].start, region[0].start], float)
    metadata = dict(image.metadata, modality="CT" if is_ct_like(image) else image.metadata.get("modality") or "MR")
    return Image(image.array[region], image.spacing_mm, tuple(image.index_to_lps(start_ijk)), image.direction_lps,
                 metadata)


def paste_region(shape_kji: Sequence[int], mask: np.ndarray, offset_kji: Sequence[int],
                 region: tuple[slice, slice, slice]) -> np.ndarray:
    """``mask`` (placed at ``offset_kji`` of a grid of ``shape_kji``) as a uint8 array over ``region``
    (the part of ``mask`` outside ``region`` is dropped)."""
    out = np.zeros(tuple(s.stop - s.start for s in region), np.uint8)
    lows = [max(region[a].start, int(offset_kji[a])) for a in range(3)]
    highs = [min(region[a].stop, int(offset_kji[a]) + mask.shape[a], int(shape_kji[a])) for a in range(3)]
    if all(h > lo for lo, h in zip(lows, highs)):
        out[tuple(slice(lo - region[a].start, h - region[a].start) for a, (lo, h) in enumerate(zip(lows, highs)))] = \
            mask[tuple(slice(lo - int(offset_kji[a]), h - int(offset_kji[a])) for a, (lo, h) in enumerate(zip(lows, highs)))] > 0
    return out


def bounding_box(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The smallest part of ``mask`` holding every non-zero voxel, as (uint8 array, its offset ``[k, j, i]``);
    an empty mask gives a ``(0, 0, 0)`` array at offset 0."""
    where = np.argwhere(mask)
    if not len(where):
        return np.zeros((0, 0, 0), np.uint8), (0, 0, 0)
    low, high = where.min(axis=0), where.max(axis=0) + 1
    return (np.ascontiguousarray(mask[tuple(slice(int(a), int(b)) for a, b in zip(low, high))] > 0).astype(np.uint8),
            tuple(int(v) for v in low))


@dataclass
class LesionCorrection:
    """One lesion's new outline: ``mask`` (uint8 ``[k, j, i]``, its bounding box) at ``offset_kji`` of the
    input grid, and its volume (mL) with the stated range."""

    mask: np.ndarray
    offset_kji: tuple
    volume_ml: float
    volume_range_ml: tuple
    voxels: int


def correct_lesion(image: Image, prompt, model, previous: Optional[tuple] = None, device: str = "auto",
                   precision: str = "auto", progress=None, cancel=None) -> LesionCorrection:
    """Segment one lesion again from its prompt (seed, box, clicks so far), refining ``previous`` — its current
    outline as ``(mask [k, j, i], offset_kji)`` on ``image``'s grid, or None — on the sub-image its crop needs.
    Raises the engine's :class:`InputError` for a bad prompt (a click outside the box, an exclude click on the
    seed) and for a model without clicks (lesion-roi 1.x)."""
    from .lesion.predict import prompt_settings, segment_prompts
    settings = prompt_settings(model)
    region = crop_region(image, prompt, settings.grid, settings.default_box_mm)
    part = sub_image(image, region)
    outline = None
    if previous is not None:
        outline = part.with_array(paste_region(image.array.shape, np.asarray(previous[0]), previous[1], region))
    labelmap, volumes = segment_prompts(part, [prompt], model, device, outline, progress, cancel, precision)
    mask, offset = bounding_box(labelmap.array == 1)
    offset_kji = tuple(int(offset[a] + region[a].start) if mask.size else 0 for a in range(3))
    volume = volumes[0]
    return LesionCorrection(mask, offset_kji, float(volume.volume_ml), tuple(float(v) for v in volume.volume_range_ml),
                            int(volume.voxels))
