"""DICOM SEG writing (highdicom 0.28) referencing the source CT/MR series.

The labelmap may lie on any grid covering the source series (e.g. a NIfTI with flipped rows):
each source slice's pixel centres are mapped to the labelmap through LPS (nearest voxel), so the
SEG frames always follow the source slices. Label values become consecutive segment numbers
1..N in increasing label order; names, and SNOMED category/type from :class:`SegmentInfo`
(default: Tissue / Tissue).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pydicom

from .atomic import atomic_path
from .errors import DicomError, GeometryMismatchError
from .image import Image, as_label_array

DEFAULT_CATEGORY = ("85756007", "SCT", "Tissue")
DEFAULT_TYPE = ("85756007", "SCT", "Tissue")


def _code(term, default):
    from pydicom.sr.coding import Code
    if term is None:
        return Code(*default)
    return Code(str(term.value), str(term.scheme), str(term.meaning))


def _source_labels(labelmap: Image, labels: np.ndarray, dataset) -> np.ndarray:
    """Labels at the pixel centres of one source slice (rows x columns), nearest voxel."""
    rows, cols = int(dataset.Rows), int(dataset.Columns)
    orientation = np.asarray([float(v) for v in dataset.ImageOrientationPatient]).reshape(2, 3)
    row_mm, col_mm = (float(v) for v in dataset.PixelSpacing)
    origin = np.asarray([float(v) for v in dataset.ImagePositionPatient])
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    points = origin + c.reshape(-1, 1) * col_mm * orientation[0] + r.reshape(-1, 1) * row_mm * orientation[1]
    ijk = np.rint(labelmap.lps_to_index(points)).astype(np.int64)
    shape = np.array(labelmap.shape_ijk)
    inside = np.all((ijk >= 0) & (ijk < shape), axis=1)
    if not inside.any():
        raise GeometryMismatchError("The labelmap does not overlap a source DICOM slice; it was not made on "
                                    "this series — pass the series the segmentation was computed on.")
    out = np.zeros(rows * cols, dtype=labels.dtype)
    out[inside] = labels[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]]
    return out.reshape(rows, cols)


def _read_source(path: Path):
    """A source header (in memory only); empty SOP class/instance UIDs are filled from the file meta."""
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    for tag, meta in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if not str(dataset.get(tag, "")) and meta in dataset.file_meta:
            setattr(dataset, tag, dataset.file_meta[meta].value)
    if not str(dataset.get("SOPClassUID", "")):
        raise DicomError(f"{path} has no SOPClassUID; it cannot be referenced by a DICOM SEG.")
    return dataset


def write_dicom_seg(labelmap: Image, source_series_files: Sequence[Path], path: str | os.PathLike,
                    model_info: Optional[dict] = None) -> Path:
    """Write ``labelmap`` as a binary DICOM SEG referencing ``source_series_files`` (atomic).

    Args:
        labelmap: integer labelmap; its ``segments`` give names and codes.
        source_series_files: the DICOM files of the image series it segments.
        path: output ``.dcm`` file.
        model_info: optional ``{"id", "version", "title"}`` for the algorithm identification.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    labels = as_label_array(labelmap)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise DicomError("The labelmap is empty; a DICOM SEG needs at least one segment.")
    if not source_series_files:
        raise DicomError("No source DICOM files given; a DICOM SEG must reference its image series.")
    sources = [_read_source(p) for p in source_series_files]
    info = dict(model_info or {})
    algorithm = hd.AlgorithmIdentificationSequence(
        name=str(info.get("id", "RadAI")), version=str(info.get("version", "1.0")),
        family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    remap = np.zeros(int(labels.max()) + 1, dtype=np.uint16)
    for number, value in enumerate(values, start=1):
        segment = labelmap.segment_for(value)
        remap[value] = number
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=segment.name or f"Label {value}",
            segmented_property_category=_code(segment.category, DEFAULT_CATEGORY),
            segmented_property_type=_code(segment.type, DEFAULT_TYPE),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm))
    frames = np.stack([remap[_source_labels(labelmap, labels, d)] for d in sources])
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="RadAI",
        manufacturer_model_name=str(info.get("title", info.get("id", "RadAI"))),
        software_versions=str(info.get("version", "1.0")), device_serial_number="0",
        omit_empty_frames=False)
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path
