"""Every bad-input case of issue 2: typed error, a message naming the problem, input bytes unchanged."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from RadAISegmentLib import io
from RadAISegmentLib.errors import (DicomError, DimensionError, GeometryError, GeometryMismatchError,
                                    InputError, NonFiniteError)
from RadAISegmentLib.image import Image


def tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def expect(error_type, words, func, path: Path):
    before = tree_hash(path)
    with pytest.raises(error_type) as info:
        func(path)
    message = str(info.value).lower()
    assert all(word in message for word in words), message
    assert tree_hash(path) == before
    return message


@pytest.fixture
def series(test_data, tmp_path) -> Path:
    """A copy of the real 20-slice CT series (Testing/Data/ct-dicom, 256 x 208 pixels)."""
    target = tmp_path / "series"
    shutil.copytree(test_data / "ct-dicom", target)
    return target


def test_truncated_dicom_file(series):
    victim = sorted(series.iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:2000])
    message = expect(DicomError, ["corrupt", victim.name.lower()], io.read_image, series)
    assert "replace" in message


def test_garbage_dicom_file(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x07\xff" * 50)
    expect(DicomError, ["corrupt"], io.read_image, bad)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    expect(DicomError, ["no dicom images"], io.read_image, tmp_path)


def test_mixed_series_different_size(series):
    victim = sorted(series.iterdir())[3]
    data = pydicom.dcmread(victim)
    small = data.pixel_array[:128, :128].copy()
    data.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    data.Rows, data.Columns, data.PixelData = 128, 128, small.tobytes()
    data.save_as(victim)
    expect(DicomError, ["mixed series"], io.read_image, series)


def test_mixed_series_different_orientation(series):
    victim = sorted(series.iterdir())[7]
    data = pydicom.dcmread(victim)
    data.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    data.save_as(victim)
    expect(DicomError, ["mixed", "orientation"], io.read_image, series)


def test_missing_slices(series):
    files = sorted(series.iterdir(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                                          .ImagePositionPatient[2]))
    files[10].unlink()
    message = expect(DicomError, ["missing slice", "gap"], io.read_image, series)
    assert "mm" in message


@pytest.mark.parametrize("new_uid", [True, False], ids=["second-instance", "same-file-twice"])
def test_duplicate_slice_positions_refused(series, new_uid):
    """A slice stored twice (a second instance at the same position, or the same file copied) is refused,
    naming the position; nothing is silently dropped or averaged."""
    by_position = sorted(series.iterdir(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                                                .ImagePositionPatient[2]))
    data = pydicom.dcmread(by_position[7])
    if new_uid:
        data.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        data.InstanceNumber = 999
    data.save_as(series / "copy-of-slice-7.dcm")
    z = float(data.ImagePositionPatient[2])
    message = expect(DicomError, ["share the position", "duplicate"], io.read_image, series)
    assert f"{z:.2f} mm" in message


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
@pytest.mark.parametrize("components", [2, 3])
def test_vector_images_refused(tmp_path, suffix, components):
    """Several values per voxel (RGB, displacement fields, multi-echo stacks) are refused by every reader."""
    import SimpleITK as sitk
    path = tmp_path / f"vector{suffix}"
    vector = sitk.GetImageFromArray(np.zeros((4, 5, 6, components), np.float32), isVector=True)
    sitk.WriteImage(vector, str(path))
    assert sitk.ReadImage(str(path)).GetNumberOfComponentsPerPixel() == components     # really a vector file
    expect(DimensionError, ["one value per voxel", f"got {components} components", "vector"], io.read_image, path)
    expect(DimensionError, ["one value per voxel"], io.read_labelmap, path)


def test_gantry_tilt_refused(series):
    for file in series.iterdir():
        data = pydicom.dcmread(file)
        x, y, z = (float(v) for v in data.ImagePositionPatient)
        data.ImagePositionPatient = [x, y + 0.2 * z, z]        # sheared stack
        data.save_as(file)
    expect(DicomError, ["gantry tilt"], io.read_image, series)


def test_nonuniform_spacing_warns(series):
    files = sorted(series.iterdir(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                                          .ImagePositionPatient[2]))
    data = pydicom.dcmread(files[10])
    x, y, z = (float(v) for v in data.ImagePositionPatient)
    data.ImagePositionPatient = [x, y, z + 0.3]
    data.save_as(files[10])
    image = io.read_image(series)
    assert any("non-uniform" in w.lower() for w in image.metadata["warnings"])


def test_single_2d_image_where_3d_needed(tmp_path):
    import SimpleITK as sitk
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 9), np.int16)), str(path))
    expect(DimensionError, ["3d", "2d"], io.read_image, path)


def test_nan_and_inf_voxels(tmp_path):
    array = np.zeros((4, 5, 6), np.float32)
    array[1, 2, 3], array[2, 2, 2] = np.nan, np.inf
    path = io.write_image(Image(array), tmp_path / "nan.nrrd")
    image = io.read_image(path)
    expect(NonFiniteError, ["2 nan or infinite"], lambda p: io.read_image(p).require_finite(), path)
    assert not np.all(np.isfinite(image.array))
    # models and intensity measurements refuse them too, instead of propagating NaN into results
    from RadAISegmentLib.inference import run_model
    from RadAIVolumetricsLib.measurements import measure_segments
    labels = image.with_array(np.ones(image.array.shape, np.uint8))
    with pytest.raises(NonFiniteError, match="NaN or infinite"):
        measure_segments(labels, image)
    assert measure_segments(labels)[0]["voxel_count"] == 120                # shape alone needs no intensities
    with pytest.raises(NonFiniteError, match="NaN or infinite"):
        run_model(image, "lesion-roi", [tuple(image.index_to_ras(np.array([[3.0, 2.0, 1.0]]))[0])])


@pytest.mark.parametrize("spacing", ["0 1 1", "1 0 1"])
def test_zero_or_negative_spacing(tmp_path, spacing):
    path = tmp_path / "bad_spacing.nhdr"
    raw = tmp_path / "bad_spacing.raw"
    raw.write_bytes(np.zeros(24, np.int16).tobytes())
    path.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 2 3 4\nspacings: " + spacing +
                    "\nencoding: raw\nendian: little\ndata file: bad_spacing.raw\n")
    with pytest.raises(InputError):          # GeometryError from Image, or ITK refusing the header
        io.read_image(path)
    with pytest.raises(GeometryError, match="spacing"):
        Image(np.zeros((2, 2, 2)), spacing_mm=tuple(float(s) for s in spacing.split()))
    with pytest.raises(GeometryError, match="spacing"):
        Image(np.zeros((2, 2, 2)), spacing_mm=(1.0, -2.0, 1.0))


def test_negative_nrrd_spacing_is_a_flipped_axis_with_exact_positions(tmp_path):
    """NRRD and MetaImage allow a negative spacing: samples run against the axis. It is read (as ITK and
    Slicer read it) as a positive spacing with that axis' direction reversed, so every voxel keeps its
    physical position: voxel j lies at y = -2·j mm. Zero spacing stays an error (test above)."""
    raw = tmp_path / "flipped.raw"
    raw.write_bytes(np.arange(24, dtype=np.int16).tobytes())
    header = "type: short\ndimension: 3\nsizes: 2 3 4\nspacings: 1 -2 1\nencoding: raw\nendian: little\n"
    (tmp_path / "flipped.nhdr").write_text("NRRD0004\n" + header + "data file: flipped.raw\n")
    (tmp_path / "flipped.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 3 4\n"
                                          "ElementSpacing = 1 -2 1\nElementType = MET_SHORT\n"
                                          "ElementDataFile = flipped.raw\n")
    for name in ("flipped.nhdr", "flipped.mhd"):
        image = io.read_image(tmp_path / name)
        assert image.spacing_mm == (1.0, 2.0, 1.0)
        positions = image.index_to_lps(np.array([[0, j, 0] for j in range(3)], dtype=float))
        np.testing.assert_allclose(positions[:, 1], [0.0, -2.0, -4.0])
        np.testing.assert_array_equal(image.array.ravel(), np.arange(24))      # voxels unchanged, in order


def test_labelmap_geometry_mismatch(tmp_path):
    reference = Image(np.zeros((4, 5, 6), np.int16), spacing_mm=(1.0, 1.0, 2.0))
    label = Image(np.zeros((4, 5, 6), np.uint8), spacing_mm=(1.0, 1.0, 2.5))
    path = io.write_image(label, tmp_path / "label.nii.gz")
    expect(GeometryMismatchError, ["spacing"], lambda p: io.read_labelmap(p, reference=reference), path)
