"""DICOM series listing and reading (pydicom), geometry in LPS.

Policy for irregular series (one policy, enforced by :func:`read_dicom_volume`):

- Slices are sorted by their position along the slice normal
  (``n = row_cosine x column_cosine``; position = ``n . ImagePositionPatient``), never by file
  name or InstanceNumber.
- Mixed series (different ImageOrientationPatient, Rows/Columns or PixelSpacing within one
  SeriesInstanceUID), duplicate slice positions -> :class:`DicomError`.
- Missing slices (a gap larger than 1.5 x the median slice step) -> :class:`DicomError` naming
  the gap position in mm along the normal.
- Non-uniform spacing within that tolerance (any step differing from the median by more than
  1 % but no gap) -> the median step is used and a warning is added to ``metadata["warnings"]``.
- Gantry tilt (the line through the slice positions is not parallel to the slice normal,
  > 0.1 degree) -> :class:`DicomError`: RadAI refuses rather than silently shearing; resample
  the series in the scanner software or with a DICOM tool first.

Array axes are ``[k, j, i]`` = (slice, row, column); spacing is (column, row, slice) in mm.
Rescale slope/intercept are applied: float32 when non-integer, else int16/int32 as fits.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from .errors import DicomError
from .image import Image

HEADER_TAGS = ["SeriesInstanceUID", "StudyInstanceUID", "Modality", "SeriesDescription", "PatientID",
               "StudyDate", "AcquisitionDate", "SOPClassUID", "Rows", "Columns", "NumberOfFrames"]
GAP_FACTOR = 1.5
NONUNIFORM_TOLERANCE = 0.01
TILT_TOLERANCE_DEG = 0.1


def has_dicom_preamble(path: Path) -> bool:
    """True when the file has DICOM's 128-byte preamble followed by ``DICM`` (Part 10 file format)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


@dataclass
class SeriesInfo:
    """One DICOM series found in a folder (from headers only)."""

    series_instance_uid: str
    study_instance_uid: str = ""
    modality: str = ""
    description: str = ""
    patient_id: str = ""
    study_date: str = ""
    acquisition_date: str = ""
    number_of_files: int = 0
    files: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready dict (file paths as strings)."""
        return {"series_instance_uid": self.series_instance_uid, "study_instance_uid": self.study_instance_uid,
                "modality": self.modality, "description": self.description, "patient_id": self.patient_id,
                "study_date": self.study_date, "acquisition_date": self.acquisition_date,
                "number_of_files": self.number_of_files}


def _candidate_files(folder: Path) -> list[Path]:
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _bare_dataset_header(path: Path) -> Optional[pydicom.Dataset]:
    """Header of a DICOM file written without the 128-byte preamble and "DICM" (older scanners and
    PACS exports, often with bare names like ``IM0001``): read only if it parses as an image with a
    series UID, else None (a README or any other file is not DICOM)."""
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS, force=True)
        return dataset if "SeriesInstanceUID" in dataset and "SOPClassUID" in dataset else None
    except Exception:  # noqa: BLE001 - whatever the parser makes of a non-DICOM file, it is not DICOM
        return None


def _read_header(path: Path) -> Optional[pydicom.Dataset]:
    """Header of a DICOM file; None for non-DICOM files; DicomError for corrupt DICOM."""
    if not has_dicom_preamble(path) and path.suffix.lower() not in (".dcm", ".ima"):
        return _bare_dataset_header(path) if not path.suffix else None
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError) as error:
        raise DicomError(f"Corrupt DICOM file {path}: {str(error).splitlines()[0] if str(error) else type(error).__name__}; "
                         "remove or replace it and try again.") from None
    if "SeriesInstanceUID" not in dataset:
        raise DicomError(f"Corrupt DICOM file {path}: no SeriesInstanceUID (truncated header?); "
                         "remove or replace it and try again.")
    return dataset


def list_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """Series in a folder (recursive), from headers only (pixel data is never read).

    Non-DICOM files are skipped; corrupt DICOM files raise :class:`DicomError` naming the file.
    Sorted by number of files, largest first.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DicomError(f"No such DICOM file or folder: {folder}")
    found: dict[str, SeriesInfo] = {}
    for path in _candidate_files(folder):
        header = _read_header(path)
        if header is None:
            continue
        uid = str(header.SeriesInstanceUID)
        info = found.get(uid)
        if info is None:
            info = found[uid] = SeriesInfo(
                series_instance_uid=uid, study_instance_uid=str(header.get("StudyInstanceUID", "")),
                modality=str(header.get("Modality", "")), description=str(header.get("SeriesDescription", "")),
                patient_id=str(header.get("PatientID", "")), study_date=str(header.get("StudyDate", "")),
                acquisition_date=str(header.get("AcquisitionDate", "")))
        info.files.append(path)
        info.number_of_files += 1
    return sorted(found.values(), key=lambda s: (-s.number_of_files, s.series_instance_uid))


def _choose_series(path: Path, series_uid: Optional[str]) -> SeriesInfo:
    series = list_series(path)
    if not series:
        raise DicomError(f"No DICOM images found in {path}; point RadAI at a folder holding a DICOM series.")
    if series_uid is None:
        return series[0]
    for info in series:
        if info.series_instance_uid == series_uid:
            return info
    raise DicomError(f"Series {series_uid} is not in {path}; available: "
                     + ", ".join(s.series_instance_uid for s in series))


def _rescale(arrays: list[np.ndarray], slopes: list[float], intercepts: list[float]) -> np.ndarray:
    values = [a.astype(np.float64) * s + b for a, s, b in zip(arrays, slopes, intercepts)]
    volume = np.stack(values)
    integral = all(float(s).is_integer() and float(b).is_integer() for s, b in zip(slopes, intercepts))
    if integral and np.issubdtype(arrays[0].dtype, np.integer):
        low, high = (float(volume.min()), float(volume.max())) if volume.size else (0.0, 0.0)
        dtype = np.int16 if low >= -32768 and high <= 32767 else np.int32
        return volume.astype(dtype)
    return volume.astype(np.float32)


def _orientation(values) -> np.ndarray:
    cosines = np.asarray([float(v) for v in values], dtype=float).reshape(2, 3)
    return cosines


def _geometry(orientation: np.ndarray, positions: np.ndarray, pixel_spacing, where: str,
              warnings: list[str]) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Sort order, spacing (i, j, k) and direction from per-slice positions (LPS mm)."""
    row, col = orientation[0], orientation[1]
    normal = np.cross(row, col)
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    sorted_d = distances[order]
    row_mm, col_mm = float(pixel_spacing[0]), float(pixel_spacing[1])
    if len(sorted_d) == 1:
        step = 1.0
        warnings.append("Single slice: slice spacing unknown, 1 mm assumed.")
    else:
        steps = np.diff(sorted_d)
        if np.any(steps < 1e-3):
            where_mm = sorted_d[1:][steps < 1e-3][0]
            raise DicomError(f"{where}: two slices share the position {where_mm:.2f} mm along the slice normal "
                             "(duplicate or mixed series); select one series/acquisition.")
        step = float(np.median(steps))
        if np.any(steps > GAP_FACTOR * step):
            index = int(np.argmax(steps > GAP_FACTOR * step))
            raise DicomError(f"{where}: missing slice(s) between {sorted_d[index]:.2f} mm and "
                             f"{sorted_d[index + 1]:.2f} mm along the slice normal (gap {steps[index]:.2f} mm, "
                             f"usual step {step:.2f} mm); re-export the complete series.")
        if np.any(np.abs(steps - step) > NONUNIFORM_TOLERANCE * step):
            warnings.append(f"Non-uniform slice spacing ({steps.min():.3f}..{steps.max():.3f} mm); "
                            f"median {step:.3f} mm used.")
        line = positions[order[-1]] - positions[order[0]]
        cos_angle = abs(float(line @ normal)) / float(np.linalg.norm(line))
        angle = np.degrees(np.arccos(min(1.0, cos_angle)))
        if angle > TILT_TOLERANCE_DEG:
            raise DicomError(f"{where}: gantry tilt / sheared stack ({angle:.2f} degrees between the slice normal "
                             "and the slice positions); RadAI does not shear volumes — resample the series to an "
                             "orthogonal grid first.")
    direction = np.column_stack([row, col, normal])
    spacing = (col_mm, row_mm, step)  # PixelSpacing = [row spacing, column spacing]
    return order, spacing, direction


def _metadata(first, series_files: list[Path], warnings: list[str]) -> dict:
    return {"modality": str(first.get("Modality", "")), "patient_id": str(first.get("PatientID", "")),
            "study_date": str(first.get("StudyDate", "")), "acquisition_date": str(first.get("AcquisitionDate", "")),
            "series_instance_uid": str(first.get("SeriesInstanceUID", "")),
            "study_instance_uid": str(first.get("StudyInstanceUID", "")),
            "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "")),
            "source_files": sorted(str(p) for p in series_files), "warnings": warnings}


def _read_full(path: Path):
    try:
        dataset = pydicom.dcmread(path, force=not has_dicom_preamble(path))   # header already checked
        if "TransferSyntaxUID" not in getattr(dataset, "file_meta", {}):    # bare dataset: as it was read
            dataset.file_meta = pydicom.dataset.FileMetaDataset()
            dataset.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if dataset.original_encoding[0]
                                                   else pydicom.uid.ExplicitVRLittleEndian)
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for corrupt data
        raise DicomError(f"Corrupt DICOM file {path}: cannot decode its pixels "
                         f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
                         "remove or replace it and try again.") from None
    return dataset, pixels


def _read_multiframe(path: Path, dataset, pixels: np.ndarray) -> Image:
    shared = dataset.get("SharedFunctionalGroupsSequence", [None])[0]
    frames = dataset.PerFrameFunctionalGroupsSequence

    def group(frame, name):
        for source in (frame, shared):
            if source is not None and name in source:
                return source[name][0]
        raise DicomError(f"{path}: enhanced multi-frame file lacks {name}; cannot place its frames.")

    orientations = [_orientation(group(f, "PlaneOrientationSequence").ImageOrientationPatient) for f in frames]
    if any(not np.allclose(o, orientations[0], atol=1e-4) for o in orientations):
        raise DicomError(f"{path}: frames have different orientations (mixed stacks); cannot form one volume.")
    positions = np.array([[float(v) for v in group(f, "PlanePositionSequence").ImagePositionPatient]
                          for f in frames])
    pixel_spacing = group(frames[0], "PixelMeasuresSequence").PixelSpacing
    slopes, intercepts = [], []
    for frame in frames:
        try:
            transform = group(frame, "PixelValueTransformationSequence")
            slopes.append(float(transform.get("RescaleSlope", 1)))
            intercepts.append(float(transform.get("RescaleIntercept", 0)))
        except DicomError:
            slopes.append(float(dataset.get("RescaleSlope", 1)))
            intercepts.append(float(dataset.get("RescaleIntercept", 0)))
    warnings: list[str] = []
    order, spacing, direction = _geometry(orientations[0], positions, pixel_spacing, str(path), warnings)
    frames_array = pixels if pixels.ndim == 3 else pixels[None]
    volume = _rescale([frames_array[i] for i in order], [slopes[i] for i in order], [intercepts[i] for i in order])
    return Image(volume, spacing, tuple(positions[order[0]]), direction, _metadata(dataset, [path], warnings))


def read_dicom_volume(path: str | os.PathLike, series_uid: Optional[str] = None) -> Image:
    """Read one DICOM series (folder or single file) as an :class:`Image` in LPS.

    Args:
        path: a folder (searched recursively) or one DICOM file (its whole series is not
            gathered: a single file is read as it is, e.g. an enhanced multi-frame file).
        series_uid: SeriesInstanceUID to read; default the series with the most files.
    """
    path = Path(path)
    info = _choose_series(path, series_uid)
    where = f"Series {info.series_instance_uid} ({info.number_of_files} files)"
    datasets = [_read_full(p) for p in info.files]
    first = datasets[0][0]
    if len(datasets) == 1 and int(first.get("NumberOfFrames", 1) or 1) > 1 \
            and "PerFrameFunctionalGroupsSequence" in first:
        return _read_multiframe(info.files[0], first, datasets[0][1])
    for (dataset, _), file in zip(datasets, info.files):
        for tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
            if tag not in dataset:
                raise DicomError(f"{file} lacks {tag}; cannot place the slice in patient space "
                                 "(is this a secondary capture or localizer?).")
    orientation = _orientation(first.ImageOrientationPatient)
    for (dataset, pixels), file in zip(datasets, info.files):
        if not np.allclose(_orientation(dataset.ImageOrientationPatient), orientation, atol=1e-4):
            raise DicomError(f"{where} mixes slice orientations ({file.name} differs); "
                             "this is a mixed series — select one stack.")
        if pixels.shape != datasets[0][1].shape or pixels.ndim != 2:
            raise DicomError(f"{where} mixes image sizes ({file.name} is {pixels.shape}, first is "
                             f"{datasets[0][1].shape}); this is a mixed series — select one stack.")
        if not np.allclose([float(v) for v in dataset.PixelSpacing], [float(v) for v in first.PixelSpacing]):
            raise DicomError(f"{where} mixes pixel spacings ({file.name}); this is a mixed series.")
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d, _ in datasets])
    warnings: list[str] = []
    order, spacing, direction = _geometry(orientation, positions, first.PixelSpacing, where, warnings)
    volume = _rescale([datasets[i][1] for i in order],
                      [float(datasets[i][0].get("RescaleSlope", 1)) for i in order],
                      [float(datasets[i][0].get("RescaleIntercept", 0)) for i in order])
    return Image(volume, spacing, tuple(positions[order[0]]), direction, _metadata(first, info.files, warnings))
