"""Reading and writing images: NIfTI, NRRD (incl. Slicer ``.seg.nrrd``), MHA/MHD, DICOM.

File formats go through SimpleITK, which stores geometry in LPS exactly as
:class:`~.image.Image` does, so no coordinate flip happens here (NIfTI's RAS
affine is handled inside ITK). DICOM folders are read by :mod:`.dicom`.
Every writer is atomic; no reader modifies its input.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path, output_suffix
from .dicom import has_dicom_preamble, read_dicom_volume
from .errors import DimensionError, GeometryError, InputError
from .image import Image, SegmentInfo, as_label_array, default_color

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".nhdr", ".mha", ".mhd")


def from_sitk(sitk_image: sitk.Image, metadata: Optional[dict] = None) -> Image:
    """Convert a 3D scalar SimpleITK image (LPS geometry) to :class:`Image`, copying the voxels."""
    if sitk_image.GetDimension() != 3:
        raise DimensionError(f"Expected a 3D image, got a {sitk_image.GetDimension()}D image of size "
                             f"{sitk_image.GetSize()}; RadAI needs a volume.")
    if sitk_image.GetNumberOfComponentsPerPixel() != 1:
        raise DimensionError(f"Expected one value per voxel, got {sitk_image.GetNumberOfComponentsPerPixel()} "
                             "components (a vector or RGB image).")
    spacing = sitk_image.GetSpacing()
    if any(s <= 0 for s in spacing):
        raise GeometryError(f"Voxel spacing {spacing} has zero or negative values; the header is corrupt.")
    return Image(
        array=sitk.GetArrayFromImage(sitk_image),
        spacing_mm=spacing,
        origin_lps=sitk_image.GetOrigin(),
        direction_lps=np.asarray(sitk_image.GetDirection(), dtype=float).reshape(3, 3),
        metadata=metadata or {},
    )


def to_sitk(image: Image) -> sitk.Image:
    """Convert :class:`Image` to a SimpleITK image with identical geometry (LPS)."""
    array = image.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    result = sitk.GetImageFromArray(np.ascontiguousarray(array))
    result.SetSpacing(image.spacing_mm)
    result.SetOrigin(image.origin_lps)
    result.SetDirection(tuple(float(v) for v in np.asarray(image.direction_lps).ravel()))
    return result


def is_dicom_path(path: Path) -> bool:
    if path.is_dir():
        return True
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    if output_suffix(path) in IMAGE_SUFFIXES:
        return False
    return has_dicom_preamble(path)


def read_image(path: str | os.PathLike, series_uid: Optional[str] = None) -> Image:
    """Read a volume from a file or a DICOM folder.

    Args:
        path: NIfTI, NRRD, MHA/MHD file, a DICOM file, or a folder of DICOM files.
        series_uid: for DICOM folders holding several series, which one to read
            (default: the series with the most slices).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"No such file or folder: {path}")
    if is_dicom_path(path):
        return read_dicom_volume(path, series_uid=series_uid)
    if output_suffix(path) == ".seg.nrrd":
        return read_segmentation_nrrd(path)
    require_complete_gzip(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        sitk_image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"Cannot read {path.name}: it is truncated, corrupt or not a supported image "
                         f"({first_line(error)}).") from None
    metadata = {"source": str(path)}
    for key in ("modality",):
        if reader.HasMetaDataKey(key):
            metadata[key] = reader.GetMetaData(key)
    if reader.HasMetaDataKey(VOLUME_RANGE_FIELD):
        ranges = _parse_volume_ranges(reader.GetMetaData(VOLUME_RANGE_FIELD))
        if ranges:
            metadata[VOLUME_RANGE_KEY] = ranges
    return from_sitk(sitk_image, metadata)


#: Image.metadata key (``{label: [low_ml, high_ml]}``) and the file fields that carry each lesion's stated
#: volume range (lesion.uncertainty): a JSON field in plain NRRD/MHA, one field per segment in .seg.nrrd.
VOLUME_RANGE_KEY = "volume_range_ml"
VOLUME_RANGE_FIELD = "RadAI_VolumeRangeML"


def _parse_volume_ranges(text: str) -> dict:
    try:
        return {int(k): [float(v[0]), float(v[1])] for k, v in json.loads(text).items()}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {}


def require_complete_gzip(path: Path) -> None:
    """Refuse a truncated ``.gz`` file: ITK silently zero-fills the missing voxels of a cut-off gzip stream."""
    if not path.name.lower().endswith(".gz"):
        return
    import gzip
    import zlib
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(f"{path.name} is truncated or corrupt ({error}); re-export or re-copy the file.") from None


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__


def write_image(image: Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write an image atomically; the format follows the extension.

    ``.seg.nrrd`` writes a Slicer segmentation with segment names and colours;
    ``.nii``/``.nii.gz``/``.nrrd``/``.mha`` write a plain volume (a labelmap keeps
    its integer type).
    """
    path = Path(path)
    suffix = output_suffix(path)
    if suffix == ".seg.nrrd":
        return write_segmentation_nrrd(image, path)
    if suffix not in IMAGE_SUFFIXES or suffix == ".nhdr":
        raise InputError(f"Unsupported output format '{suffix}' for {path.name}; use .nii.gz, .nrrd, .seg.nrrd or .mha.")
    if suffix in (".nii", ".nii.gz") and np.issubdtype(image.array.dtype, np.floating) and np.isnan(image.array).any():
        raise InputError(f"{path.name}: the image holds NaN voxels, which ITK's NIfTI writer turns into 0 "
                         "without warning; write .nrrd or .mha to keep them, or replace them first.")
    sitk_image = to_sitk(image)
    ranges = image.metadata.get(VOLUME_RANGE_KEY)
    if ranges and suffix in (".nrrd", ".mha", ".mhd"):
        sitk_image.SetMetaData(VOLUME_RANGE_FIELD, json.dumps({str(k): list(v) for k, v in ranges.items()}))
    with atomic_path(path) as tmp:
        sitk.WriteImage(sitk_image, str(tmp), useCompression=compress)
    return path


# -- Slicer segmentation (.seg.nrrd) -----------------------------------------------------
def _segment_fields(index: int, info: SegmentInfo, extent: Sequence[int]) -> dict[str, str]:
    """The NRRD key/value pairs Slicer's segmentation storage node reads for one segment."""
    fields = {
        f"Segment{index}_ID": f"Segment_{info.label}",
        f"Segment{index}_Name": info.name,
        f"Segment{index}_NameAutoGenerated": "0",
        f"Segment{index}_Color": " ".join(f"{c:.6g}" for c in info.color_rgb),
        f"Segment{index}_ColorAutoGenerated": "0",
        f"Segment{index}_LabelValue": str(info.label),
        f"Segment{index}_Layer": "0",
        f"Segment{index}_Extent": " ".join(str(int(e)) for e in extent),
    }
    if info.category and info.type:
        # Slicer's terminology entry: context~category~type~modifier~anatomicContext~...
        category = f"{info.category.scheme}^{info.category.value}^{info.category.meaning}"
        seg_type = f"{info.type.scheme}^{info.type.value}^{info.type.meaning}"
        fields[f"Segment{index}_Tags"] = (
            f"TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list~"
            f"{category}~{seg_type}~^^~Anatomic codes - DICOM master list~^^~^^|")
    return fields


def _label_extent(mask: np.ndarray) -> list[int]:
    """Slicer's segment extent: i0 i1 j0 j1 k0 k1 of the mask's bounding box."""
    if not mask.any():
        return [0, -1, 0, -1, 0, -1]
    extent = []
    for axis in (2, 1, 0):  # i, j, k from a [k, j, i] array
        other = tuple(a for a in range(3) if a != axis)
        nonzero = np.nonzero(mask.any(axis=other))[0]
        extent += [int(nonzero[0]), int(nonzero[-1])]
    return extent


def write_segmentation_nrrd(labelmap: Image, path: str | os.PathLike) -> Path:
    """Write a labelmap as a Slicer ``.seg.nrrd`` (one layer; names, colours, terminology)."""
    labels = as_label_array(labelmap)
    present = [int(v) for v in np.unique(labels) if v != 0]
    known = {info.label: info for info in labelmap.segments}
    infos = [known.get(v) or SegmentInfo(v, f"Segment_{v}", default_color(v)) for v in present]
    infos += [info for label, info in sorted(known.items()) if label not in present and label != 0]
    sitk_image = to_sitk(labelmap.with_array(labels))
    sitk_image.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    sitk_image.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|")
    sitk_image.SetMetaData("Segmentation_ReferenceImageExtentOffset", "0 0 0")
    ranges = labelmap.metadata.get(VOLUME_RANGE_KEY) or {}
    for index, info in enumerate(infos):
        for key, value in _segment_fields(index, info, _label_extent(labels == info.label)).items():
            sitk_image.SetMetaData(key, value)
        if info.label in ranges:
            sitk_image.SetMetaData(f"Segment{index}_{VOLUME_RANGE_FIELD}", " ".join(f"{v:.6g}" for v in ranges[info.label]))
    with atomic_path(path) as tmp:
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(tmp))
        writer.SetUseCompression(True)
        writer.SetImageIO("NrrdImageIO")
        writer.Execute(sitk_image)
    return Path(path)


def _parse_color(text: str, label: int) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split()[:3])
        return values if len(values) == 3 else default_color(label)
    except ValueError:
        return default_color(label)


def _parse_tags(tags: str):
    from .image import TerminologyCode
    if "TerminologyEntry:" not in tags:
        return None, None
    entry = tags.split("TerminologyEntry:", 1)[1].split("|", 1)[0].split("~")
    def code(text):
        parts = text.split("^")
        return TerminologyCode(parts[1], parts[0], parts[2]) if len(parts) >= 3 and parts[1] else None
    return (code(entry[1]) if len(entry) > 1 else None), (code(entry[2]) if len(entry) > 2 else None)


def read_segmentation_nrrd(path: str | os.PathLike) -> Image:
    """Read a Slicer ``.seg.nrrd`` into a labelmap with segment names, colours and codes.

    Multi-layer files (overlapping segments) are flattened when their segments do
    not overlap; otherwise an :class:`InputError` explains the overlap.
    """
    path = Path(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        sitk_image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"Cannot read segmentation {path.name}: {first_line(error)}") from None
    keys = set(reader.GetMetaDataKeys())
    def meta(key, default=""):
        return reader.GetMetaData(key) if key in keys else default
    components = sitk_image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(sitk_image)
    if components == 1:
        layers = array[np.newaxis]
    else:
        layers = np.moveaxis(array, -1, 0)
        geometry_image = sitk.VectorIndexSelectionCast(sitk_image, 0)
        sitk_image = geometry_image
    base = from_sitk(sitk_image if components == 1 else sitk_image, {"source": str(path)})
    labels = np.zeros(layers.shape[1:], dtype=np.uint16)
    infos: list[SegmentInfo] = []
    ranges: dict[int, list[float]] = {}
    index = 0
    next_label = 1
    while f"Segment{index}_LabelValue" in keys or f"Segment{index}_Name" in keys:
        value = int(meta(f"Segment{index}_LabelValue", "1"))
        layer = int(meta(f"Segment{index}_Layer", "0"))
        mask = layers[layer] == value
        if np.any(labels[mask] != 0):
            raise InputError(f"{path.name}: segments overlap (segment {meta(f'Segment{index}_Name')}); "
                             "RadAI needs non-overlapping segments. Export them as separate files.")
        out_label = value if components == 1 else next_label
        labels[mask] = out_label
        category, seg_type = _parse_tags(meta(f"Segment{index}_Tags"))
        infos.append(SegmentInfo(out_label, meta(f"Segment{index}_Name", f"Segment_{out_label}"),
                                 _parse_color(meta(f"Segment{index}_Color"), out_label), category, seg_type))
        stated = meta(f"Segment{index}_{VOLUME_RANGE_FIELD}").split()
        if len(stated) == 2:
            try:
                ranges[out_label] = [float(stated[0]), float(stated[1])]
            except ValueError:
                pass
        next_label = max(next_label, out_label) + 1
        index += 1
    if not infos:  # a plain NRRD labelmap named .seg.nrrd
        labels = layers[0]
    result = base.with_array(as_label_array(base.with_array(labels)), segments=infos)
    return result.with_array(result.array, segments=infos, **({VOLUME_RANGE_KEY: ranges} if ranges else {}))


def read_labelmap(path: str | os.PathLike, reference: Optional[Image] = None) -> Image:
    """Read a labelmap (any supported format) and, if given, check it lies on ``reference``'s grid."""
    labelmap = read_image(path)
    labelmap = labelmap.with_array(as_label_array(labelmap), segments=labelmap.segments)
    if reference is not None:
        reference.require_same_grid(labelmap)
    return labelmap
