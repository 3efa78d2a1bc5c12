"""Rebuild the test-only data in ``Testing/Data`` from the upstream copies (run once by a maintainer, never by
the tests).

Usage: ``python Testing/Data/build_test_data.py SHARED_DATA_DIR``, where ``SHARED_DATA_DIR`` holds the
unmodified upstream test data (``totalsegmentator-examples/``, ``pyradiomics-cases/``,
``monai-bundle-configs/``). Afterwards paste the printed SHA-256 table into PROVENANCE.md.

* ``ct-dicom/``: the TotalSegmentator example CT series (20 slices, 512 x 512, JPEG 2000 lossless) cropped
  in-plane to columns 96-351 and rows 176-383 (256 x 208 pixels: the whole liver and spleen). Every kept pixel
  is the original stored value, re-encoded JPEG 2000 lossless (Pillow/OpenJPEG, reversible 5/3 wavelet);
  ``Rows``/``Columns`` and ``ImagePositionPatient`` (moved by the crop offset along the row and column
  directions) are updated, so each pixel keeps its patient position. The header is otherwise kept as
  published, including its empty dataset-level UIDs (the anonymiser blanked them; the readers fall back to
  the file meta UIDs). ``ImageType`` says DERIVED\\SECONDARY, ``DerivationDescription`` says how, and each file
  gets a new MediaStorageSOPInstanceUID derived deterministically from the original one.
* ``ct-dicom_labels.nii.gz``: the series' TotalSegmentator labels (``example_seg_dicom.nii.gz``), the same crop
  (that NIfTI stores rows flipped: its j runs against the DICOM row index), same label ids.
* ``lung1_label.nrrd``, ``brain1_label.nrrd``: byte-for-byte copies of the PyRadiomics masks the bundled
  sample crops were made from (the sample-data test checks the crops against them).
* ``monai-bundle-configs/<bundle>/configs/{inference,metadata}.json``: byte-for-byte copies of four MONAI
  Model Zoo bundle configs (no weights).
"""
from __future__ import annotations

import hashlib
import io as bytes_io
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PilImage
from pydicom.encaps import encapsulate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "RadAISegment"))

from RadAISegmentLib import io  # noqa: E402
from RadAISegmentLib.image import Image  # noqa: E402

COLUMNS, ROWS = (96, 352), (176, 384)          # crop [start, stop) in DICOM column (i) and row (j) indices
BUNDLES = ("spleen_ct_segmentation", "wholeBody_ct_segmentation", "ventricular_short_axis_3label",
           "brats_mri_segmentation")
COPIES = {  # output path -> source path under SHARED_DATA_DIR
    "lung1_label.nrrd": "pyradiomics-cases/lung1_label.nrrd",
    "brain1_label.nrrd": "pyradiomics-cases/brain1_label.nrrd",
    "LICENSE-pyradiomics.txt": "pyradiomics-cases/LICENSE.txt",
    "LICENSE-totalsegmentator.txt": "totalsegmentator-examples/LICENSE",
    "LICENSE-monai-model-zoo.txt": "monai-bundle-configs/LICENSE",
    **{f"monai-bundle-configs/{name}/configs/{file}": f"monai-bundle-configs/{name}/configs/{file}"
       for name in BUNDLES for file in ("inference.json", "metadata.json")},
}


def j2k_lossless(pixels: np.ndarray) -> bytes:
    """JPEG 2000 lossless codestream (no JP2 wrapper, as DICOM encapsulates it) of a uint16 frame."""
    buffer = bytes_io.BytesIO()
    PilImage.fromarray(pixels.astype(np.uint16)).save(buffer, format="JPEG2000", irreversible=False, no_jp2=True)
    data = buffer.getvalue()
    decoded = np.array(PilImage.open(bytes_io.BytesIO(data)))
    if not np.array_equal(decoded, pixels):
        raise RuntimeError("JPEG 2000 round trip is not lossless")
    return data


def crop_slice(source: Path, target_folder: Path) -> None:
    data = pydicom.dcmread(source)
    pixels = data.pixel_array[ROWS[0]:ROWS[1], COLUMNS[0]:COLUMNS[1]].copy()
    row_direction = np.array([float(v) for v in data.ImageOrientationPatient[:3]])     # increasing column index
    column_direction = np.array([float(v) for v in data.ImageOrientationPatient[3:]])  # increasing row index
    row_spacing, column_spacing = (float(v) for v in data.PixelSpacing)
    position = np.array([float(v) for v in data.ImagePositionPatient])
    position += COLUMNS[0] * column_spacing * row_direction + ROWS[0] * row_spacing * column_direction
    data.ImagePositionPatient = [f"{value:.12g}" for value in position]   # exact for these values (≤ 16 chars)
    data.Rows, data.Columns = pixels.shape
    data.PixelData = encapsulate([j2k_lossless(pixels)])
    data["PixelData"].VR = "OB"
    data.ImageType = ["DERIVED", "SECONDARY"] + list(data.ImageType)[2:]
    data.DerivationDescription = (f"Cropped to columns {COLUMNS[0]}-{COLUMNS[1] - 1}, rows {ROWS[0]}-{ROWS[1] - 1} "
                                  "for RadAI's tests; pixels unchanged, JPEG 2000 lossless")
    for tag in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if tag in data:
            delattr(data, tag)
    old_uid = str(data.file_meta.MediaStorageSOPInstanceUID)
    new_uid = f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, old_uid + '/RadAI Testing/Data').int}"   # deterministic
    data.file_meta.MediaStorageSOPInstanceUID = new_uid
    data.save_as(target_folder / f"CT.{new_uid}", enforce_file_format=True)     # named like the originals


def crop_labels(labels: Image, reference: Image) -> Image:
    """The labels' voxels at the physical positions of the cropped series' voxels (same crop, no resampling)."""
    corners = np.array([[COLUMNS[0], ROWS[0], 0], [COLUMNS[1] - 1, ROWS[1] - 1, reference.shape_ijk[2] - 1]], float)
    ijk = np.rint(labels.lps_to_index(reference.index_to_lps(corners))).astype(int)
    low, high = ijk.min(axis=0), ijk.max(axis=0) + 1
    origin = labels.index_to_lps(low.astype(float))
    array = labels.array[low[2]:high[2], low[1]:high[1], low[0]:high[0]].copy()
    return Image(array, labels.spacing_mm, tuple(origin), labels.direction_lps)


def main(shared: Path) -> None:
    for name, source in COPIES.items():
        (HERE / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / source, HERE / name)
    series = shared / "totalsegmentator-examples" / "example_ct_dicom"
    target = HERE / "ct-dicom"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    full = io.read_image(series)
    for source in sorted(series.iterdir()):
        crop_slice(source, target)
    labels = crop_labels(io.read_image(shared / "totalsegmentator-examples" / "example_seg_dicom.nii.gz"), full)
    io.write_image(labels, HERE / "ct-dicom_labels.nii.gz")
    for path in sorted(p for p in HERE.rglob("*") if p.is_file() and p.suffix != ".py" and p.name != "PROVENANCE.md"):
        print(f"{path.relative_to(HERE)}  {hashlib.sha256(path.read_bytes()).hexdigest()}  {path.stat().st_size}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.splitlines()[2])
    main(Path(sys.argv[1]))
