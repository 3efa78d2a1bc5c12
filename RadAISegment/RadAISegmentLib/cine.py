"""Cine MRI: one cardiac cycle as a sequence of 3D volumes (phases) on one voxel grid.

Sources (:func:`read_cine`):

* a 4D image file (NIfTI, NRRD, MHA; the 4th axis is time) — NIfTI time steps are converted to ms from the
  header's ``xyzt_units``; a 3D file with several components per voxel (Slicer's ``.seq.nrrd``) is read as one
  phase per component;
* a DICOM folder whose series holds every slice at every phase (a short-axis cine stack). Images are grouped
  by slice position (along the slice normal) and, at each position, ordered by ``TemporalPositionIdentifier``
  when every image has one, else by ``TriggerTime``: the n-th image at each position belongs to phase n
  (trigger times differ slightly from slice to slice, so ranks, not raw times, define the phases).

Policy for incomplete series (one :class:`CineError` naming what is missing and what to do, nothing guessed):
a slice position with fewer phases than the others, two images of one slice at the same phase, phases missing
from the whole series (the header's ``CardiacNumberOfImages`` / ``NumberOfTemporalPositions`` larger than
found, a gap in ``TemporalPositionIdentifier``, or a trigger-time step over 1.5× the usual one), missing slices
(a gap along the normal, as :mod:`.dicom` refuses them for one volume), and phases on different grids.

Phase volumes are :class:`Image` (``array[k, j, i]``, LPS); ``times_ms`` are trigger times (ms after the R wave)
or None when the source does not say.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import DicomError, InputError
from .image import Image

#: A trigger-time step larger than this multiple of the median step means phases are missing.
PHASE_GAP_FACTOR = 1.5
#: A cardiac cycle (n phases × time step) outside this range (ms) means the file's time axis is not trigger time.
PLAUSIBLE_RR_MS = (250.0, 3000.0)


class CineError(InputError):
    """A cine series is incomplete or inconsistent (missing phases or slices, phases on different grids)."""


@dataclass(frozen=True)
class CineSeries:
    """Phases of one cardiac cycle on one grid, with trigger times (ms) and heart rate (bpm) when known."""

    phases: tuple[Image, ...]
    times_ms: Optional[tuple[float, ...]] = None
    heart_rate_bpm: Optional[float] = None
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.phases) < 2:
            raise CineError(f"A cine needs at least two phases, got {len(self.phases)}; give a 4D file or a DICOM "
                            "series holding every cardiac phase.")
        for index, phase in enumerate(self.phases[1:], start=1):
            difference = self.phases[0].grid_difference(phase)
            if difference:
                raise CineError(f"Phase {index} lies on a different voxel grid than phase 0 ({difference}); "
                                "a cine's phases must share one grid.")
        if self.times_ms is not None and len(self.times_ms) != len(self.phases):
            raise CineError(f"{len(self.times_ms)} trigger times for {len(self.phases)} phases.")


def read_cine(path: str | os.PathLike, series_uid: Optional[str] = None) -> CineSeries:
    """A :class:`CineSeries` from a 4D image file or a multi-phase DICOM folder (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"No such cine file or folder: {path}")
    from .io import is_dicom_path
    if path.is_dir() or is_dicom_path(path):
        return _read_dicom_cine(path, series_uid)
    return _read_4d_file(path)


# -- 4D files -----------------------------------------------------------------------------------------------
def _time_step_ms(reader_image, size_t: int) -> tuple[Optional[float], list[str]]:
    """The time step in ms from a 4D image's 4th spacing and (NIfTI) ``xyzt_units``; None when implausible."""
    step = float(reader_image.GetSpacing()[3])
    units = int(reader_image.GetMetaData("xyzt_units")) if reader_image.HasMetaDataKey("xyzt_units") else None
    factor = {8: 1000.0, 16: 1.0, 24: 0.001}.get((units or 0) & 0x38, 1.0)
    step_ms = step * factor
    if not PLAUSIBLE_RR_MS[0] <= step_ms * size_t <= PLAUSIBLE_RR_MS[1]:
        return None, [f"The file's time axis ({size_t} × {step_ms:g} ms) is not a cardiac cycle; phase times unknown."]
    return step_ms, []


def _read_4d_file(path: Path) -> CineSeries:
    import SimpleITK as sitk
    from .io import first_line, require_complete_gzip
    require_complete_gzip(path)
    try:
        volume = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"Cannot read {path.name} as an image ({first_line(error)}).") from None
    if volume.GetDimension() == 4:
        array = sitk.GetArrayFromImage(volume)                                # [t, k, j, i]
        direction = np.asarray(volume.GetDirection(), dtype=float).reshape(4, 4)[:3, :3]
        spacing, origin = volume.GetSpacing()[:3], volume.GetOrigin()[:3]
        step_ms, warnings = _time_step_ms(volume, array.shape[0])
        phases = [Image(np.ascontiguousarray(frame), spacing, origin, direction, {"source": str(path)})
                  for frame in array]
    elif volume.GetDimension() == 3 and volume.GetNumberOfComponentsPerPixel() > 1:
        array = sitk.GetArrayFromImage(volume)                                # [k, j, i, phase]
        direction = np.asarray(volume.GetDirection(), dtype=float).reshape(3, 3)
        phases = [Image(np.ascontiguousarray(array[..., c]), volume.GetSpacing(), volume.GetOrigin(), direction,
                        {"source": str(path)}) for c in range(array.shape[-1])]
        step_ms, warnings = None, []
    else:
        raise CineError(f"{path.name} is a single {volume.GetDimension()}D volume; a cine is a 4D file (4th axis = "
                        "cardiac phase) or a DICOM series holding every phase.")
    times = tuple(index * step_ms for index in range(len(phases))) if step_ms else None
    return CineSeries(tuple(phases), times, None, tuple(warnings))


def write_cine(phases: Sequence[Image], path: str | os.PathLike, times_ms: Optional[Sequence[float]] = None) -> Path:
    """Write phases (one grid) as a 4D file (NIfTI / NRRD / MHA by extension), atomically; the time step (from
    ``times_ms``, else 1 s) is stored in seconds, NIfTI's unit. Labelmaps stay integer."""
    import SimpleITK as sitk
    from .atomic import atomic_path
    from .io import to_sitk
    series = CineSeries(tuple(phases), tuple(times_ms) if times_ms is not None else None)
    step_s = (series.times_ms[1] - series.times_ms[0]) / 1000.0 if series.times_ms else 1.0
    volume = sitk.JoinSeries([to_sitk(phase) for phase in series.phases], 0.0, step_s)
    with atomic_path(path) as tmp:
        sitk.WriteImage(volume, str(tmp), True)
    return Path(path)


# -- DICOM ----------------------------------------------------------------------------------------------------
def _phase_key(datasets: list, where: str) -> tuple[str, list[float]]:
    """(tag name, value per image) that orders the phases at one slice position."""
    for tag in ("TemporalPositionIdentifier", "TriggerTime"):
        values = [dataset.get(tag) for dataset in datasets]
        if all(value is not None and str(value) != "" for value in values):
            return tag, [float(value) for value in values]
    raise CineError(f"{where}: the images carry neither TemporalPositionIdentifier nor TriggerTime, so the cardiac "
                    "phases cannot be told apart; export the cine with its timing tags.")


def _group_by_position(datasets: list, where: str) -> tuple[np.ndarray, dict[float, list[int]]]:
    """Slice distances along the normal (mm) and, per distinct position, the image indices."""
    orientation = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient]).reshape(2, 3)
    normal = np.cross(orientation[0], orientation[1])
    for dataset in datasets:
        for tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
            if tag not in dataset:
                raise CineError(f"{where}: an image lacks {tag}; cannot place it in patient space.")
        if not np.allclose(np.asarray([float(v) for v in dataset.ImageOrientationPatient]).reshape(2, 3),
                           orientation, atol=1e-4):
            raise CineError(f"{where} mixes slice orientations (e.g. short- and long-axis views); select one stack.")
    distances = np.array([float(np.asarray([float(v) for v in d.ImagePositionPatient]) @ normal) for d in datasets])
    groups: dict[float, list[int]] = {}
    for index, distance in enumerate(np.round(distances, 2)):
        groups.setdefault(float(distance), []).append(index)
    return distances, groups


def _phase_order(datasets: list, groups: dict[float, list[int]], where: str) -> tuple[list[list[int]], str, list]:
    """Per position (sorted), the image indices in phase order; checks every position has every phase."""
    tag, keys = _phase_key(datasets, where)
    ordered = {}
    for position, members in groups.items():
        members = sorted(members, key=lambda i: keys[i])
        values = [keys[i] for i in members]
        repeated = [v for a, v in zip(values, values[1:]) if v == a]
        if repeated:
            raise CineError(f"{where}: two images of the slice at {position:.1f} mm share {tag} {repeated[0]:g} "
                            "(two acquisitions mixed?); select one series.")
        ordered[position] = members
    counts = {position: len(members) for position, members in ordered.items()}
    full = max(counts.values())
    reference = next(p for p, n in counts.items() if n == full)
    for position, count in counts.items():
        if count < full:
            present = [keys[i] for i in ordered[position]]
            expected = [keys[i] for i in ordered[reference]]
            spread = np.median(np.diff(expected)) / 2 if len(expected) > 1 else 0.5
            missing = [v for v in expected if not any(abs(v - p) <= spread for p in present)]
            raise CineError(f"{where}: the slice at {position:.1f} mm has {count} phases, other slices have {full} "
                            f"(missing {tag} {', '.join(f'{v:g}' for v in missing[:6]) or '?'}); "
                            "re-export the complete cine series.")
    positions = sorted(ordered)
    return [ordered[p] for p in positions], tag, keys


def _check_phase_count(datasets: list, per_position: list[list[int]], tag: str, keys: list, where: str) -> None:
    """Phases missing from every slice: header counts, identifier gaps, trigger-time gaps."""
    first_slice = [keys[i] for i in per_position[0]]
    mean_keys = np.mean([[keys[i] for i in images] for images in per_position], axis=0)   # per phase, over slices
    if tag == "TemporalPositionIdentifier":
        missing = sorted(set(range(1, int(max(first_slice)) + 1)) - {int(v) for v in first_slice})
        if missing:
            raise CineError(f"{where}: temporal positions {', '.join(map(str, missing[:6]))} are missing from every "
                            "slice; re-export the complete cine series.")
    else:
        steps = np.diff(mean_keys)
        if len(steps) >= 2 and np.any(steps > PHASE_GAP_FACTOR * np.median(steps)):
            index = int(np.argmax(steps > PHASE_GAP_FACTOR * np.median(steps)))
            raise CineError(f"{where}: no phase between trigger times {mean_keys[index]:.0f} and "
                            f"{mean_keys[index + 1]:.0f} ms (usual step {np.median(steps):.0f} ms): phases are missing; "
                            "re-export the complete cine series.")
    found = len(per_position[0])
    for header in ("CardiacNumberOfImages", "NumberOfTemporalPositions"):
        stated = datasets[0].get(header)
        if stated is not None and str(stated) != "" and int(stated) > found:
            raise CineError(f"{where}: the header says {int(stated)} cardiac phases ({header}) but only {found} are "
                            "in the folder; copy the missing images or re-export the series.")


def _heart_rate(dataset) -> Optional[float]:
    rate = dataset.get("HeartRate")
    if rate is not None and str(rate) != "" and float(rate) > 0:
        return float(rate)
    interval = dataset.get("NominalInterval")
    if interval is not None and str(interval) != "" and float(interval) > 0:
        return 60000.0 / float(interval)
    return None


def _read_dicom_cine(path: Path, series_uid: Optional[str]) -> CineSeries:
    from . import dicom
    info = dicom._choose_series(path, series_uid)
    where = f"Cine series {info.series_instance_uid} ({info.number_of_files} files)"
    read = [dicom._read_full(file) for file in info.files]
    datasets, pixels = [d for d, _ in read], [p for _, p in read]
    if any(p.shape != pixels[0].shape or p.ndim != 2 for p in pixels):
        raise CineError(f"{where} mixes image sizes; select one stack.")
    distances, groups = _group_by_position(datasets, where)
    per_position, tag, keys = _phase_order(datasets, groups, where)
    _check_phase_count(datasets, per_position, tag, keys, where)
    phases, times = [], []
    for phase in range(len(per_position[0])):
        members = [images[phase] for images in per_position]
        warnings: list[str] = []
        try:
            order, spacing, direction = dicom._geometry(
                np.asarray([float(v) for v in datasets[members[0]].ImageOrientationPatient]).reshape(2, 3),
                np.array([[float(v) for v in datasets[i].ImagePositionPatient] for i in members]),
                datasets[members[0]].PixelSpacing, f"{where}, phase {phase}", warnings)
        except DicomError as error:
            raise CineError(str(error)) from None
        members = [members[i] for i in order]
        volume = dicom._rescale([pixels[i] for i in members], [float(datasets[i].get("RescaleSlope", 1)) for i in members],
                                [float(datasets[i].get("RescaleIntercept", 0)) for i in members])
        origin = [float(v) for v in datasets[members[0]].ImagePositionPatient]
        metadata = dicom._metadata(datasets[members[0]], [info.files[i] for i in members], warnings)
        phases.append(Image(volume, spacing, origin, direction, {**metadata, "cardiac_phase_index": phase}))
        trigger = [datasets[i].get("TriggerTime") for i in members]
        times.append(float(np.mean([float(t) for t in trigger])) if all(t not in (None, "") for t in trigger) else None)
    known = all(t is not None for t in times)
    return CineSeries(tuple(phases), tuple(times) if known else None, _heart_rate(datasets[0]))
