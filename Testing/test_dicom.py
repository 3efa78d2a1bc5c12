"""DICOM reading: real series geometry vs its NIfTI labels, sorting by position, rescale, laziness,
multiple series, enhanced multi-frame (built from the real slices).

The series is ``Testing/Data/ct-dicom``: the TotalSegmentator example CT (20 slices, JPEG 2000 lossless) cropped
in-plane to 256 x 208 pixels, with its reference labels cropped alike (``Testing/Data/PROVENANCE.md``)."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from RadAISegmentLib import dicom, io


@pytest.fixture(scope="module")
def ct_dir(test_data) -> Path:
    return test_data / "ct-dicom"


@pytest.fixture(scope="module")
def ct_labels(test_data):
    return io.read_image(test_data / "ct-dicom_labels.nii.gz")


def corner_indices(ct) -> np.ndarray:
    """The eight corner voxels of ``ct`` as (i, j, k) indices."""
    return np.array([[i, j, k] for i in (0, ct.shape_ijk[0] - 1) for j in (0, ct.shape_ijk[1] - 1)
                     for k in (0, ct.shape_ijk[2] - 1)], dtype=float)


@pytest.fixture(scope="module")
def ct(ct_dir):
    return io.read_image(ct_dir)


def test_real_series_matches_nifti_labels(ct, ct_labels, tmp_path):
    seg = ct_labels
    assert ct.shape_ijk == seg.shape_ijk == (256, 208, 20)
    assert np.allclose(ct.spacing_mm, seg.spacing_mm, atol=1e-3)
    # the NIfTI stores rows flipped: compare the physical position of every corner voxel
    corners = corner_indices(ct)
    seg_index = np.rint(seg.lps_to_index(ct.index_to_lps(corners)))
    assert np.all(seg_index >= 0) and np.all(seg_index <= np.array(ct.shape_ijk) - 1)
    assert np.allclose(seg.index_to_lps(seg_index), ct.index_to_lps(corners), atol=1e-3)
    flip = seg_index[:, 1] != corners[:, 1]
    labels = seg.array[:, ::-1, :] if flip.any() else seg.array
    liver, lung = labels == 5, np.isin(labels, [10, 11, 12, 13, 14])
    assert 40 < ct.array[liver].mean() < 200          # contrast-enhanced liver HU
    if lung.any():
        assert ct.array[lung].mean() < -500
    assert ct.array[labels == 0].mean() < ct.array[liver].mean()
    assert ct.metadata["modality"] == "CT" and len(ct.metadata["source_files"]) == 20


def test_nifti_export_is_voxel_identical(ct, tmp_path):
    out = io.write_image(ct, tmp_path / "ct.nii.gz")
    back = io.read_image(out)
    assert np.array_equal(back.array, ct.array) and back.same_grid(ct)


def test_sorting_ignores_file_names_and_instance_numbers(ct, ct_dir, tmp_path):
    files = sorted(ct_dir.iterdir())
    names = [f"img{n:03d}.dcm" for n in range(len(files))]
    random.Random(3).shuffle(names)
    for number, (source, name) in enumerate(zip(files, names)):
        data = pydicom.dcmread(source)
        data.InstanceNumber = (number * 7) % 13
        data.save_as(tmp_path / name)
    shuffled = io.read_image(tmp_path)
    assert np.array_equal(shuffled.array, ct.array)
    assert np.allclose(shuffled.origin_lps, ct.origin_lps)


def test_rescale_float_when_non_integer(ct, ct_dir, tmp_path):
    original = pydicom.dcmread(sorted(ct_dir.iterdir())[0], stop_before_pixels=True)
    slope, intercept = float(original.RescaleSlope), float(original.RescaleIntercept)
    for source in sorted(ct_dir.iterdir()):
        data = pydicom.dcmread(source)
        data.RescaleSlope, data.RescaleIntercept = 0.5, -10.25
        data.save_as(tmp_path / source.name)
    image = io.read_image(tmp_path)
    stored = (ct.array.astype(np.float64) - intercept) / slope
    assert image.array.dtype == np.float32
    assert np.allclose(image.array, stored * 0.5 - 10.25, atol=1e-3)


def test_listing_reads_headers_only(ct_dir, tmp_path, monkeypatch):
    sources = sorted(ct_dir.iterdir())
    for copy in range(50):                                   # 1,000 files (symlinks), in subfolders
        folder = tmp_path / f"c{copy}"
        folder.mkdir()
        for source in sources:
            (folder / source.name).symlink_to(source)
    (tmp_path / "notes.txt").write_text("not dicom")
    monkeypatch.setattr(pydicom.Dataset, "pixel_array",
                        property(lambda self: pytest.fail("pixel data decoded while listing")))
    real_read = pydicom.dcmread
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_read(*args, **kwargs)
    monkeypatch.setattr(dicom.pydicom, "dcmread", spy)
    series = dicom.list_series(tmp_path)
    assert len(series) == 1 and series[0].number_of_files == 1000
    assert all(c.get("stop_before_pixels") for c in calls) and len(calls) == 1000
    assert set(series[0].as_dict()) >= {"series_instance_uid", "modality", "description", "number_of_files"}


def test_two_series_choose_largest_or_by_uid(ct_dir, tmp_path):
    files = sorted(ct_dir.iterdir())
    for source in files:
        shutil.copy(source, tmp_path / source.name)
    other_uid = pydicom.uid.generate_uid()
    by_position = sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    for source in by_position[:5]:                            # five contiguous slices: a complete second series
        data = pydicom.dcmread(source)
        data.SeriesInstanceUID = other_uid
        data.SOPInstanceUID = pydicom.uid.generate_uid()
        data.save_as(tmp_path / ("b_" + source.name))
    series = dicom.list_series(tmp_path)
    assert [s.number_of_files for s in series] == [20, 5]
    assert io.read_image(tmp_path).shape_ijk[2] == 20
    assert io.read_image(tmp_path, series_uid=other_uid).shape_ijk[2] == 5


def test_enhanced_multiframe_from_real_slices(ct, ct_dir, tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    files = sorted(ct_dir.iterdir())
    slices = [pydicom.dcmread(f) for f in files]
    random.Random(1).shuffle(slices)                      # frames stored out of order
    first = slices[0]
    data = pydicom.dcmread(files[0])
    del data.ImagePositionPatient, data.ImageOrientationPatient, data.PixelSpacing
    data.NumberOfFrames = len(slices)
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = first.ImageOrientationPatient
    measures.PixelSpacing, measures.SliceThickness = first.PixelSpacing, first.SliceThickness
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = Sequence([orient]), Sequence([measures])
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = first.RescaleSlope, first.RescaleIntercept
    shared.PixelValueTransformationSequence = Sequence([transform])
    data.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for item in slices:
        frame, position = Dataset(), Dataset()
        position.ImagePositionPatient = item.ImagePositionPatient
        frame.PlanePositionSequence = Sequence([position])
        frames.append(frame)
    data.PerFrameFunctionalGroupsSequence = Sequence(frames)
    raw = np.stack([s.pixel_array for s in slices])
    data.PixelData = raw.tobytes()
    data.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    data.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    image = io.read_image(tmp_path / "enhanced.dcm")
    assert np.array_equal(image.array, ct.array) and image.same_grid(ct)


def test_dicom_seg_frames_land_on_source_slices(ct, ct_dir, ct_labels, tmp_path):
    from RadAISegmentLib.dicom_seg import write_dicom_seg
    from RadAISegmentLib.image import SegmentInfo, TerminologyCode
    seg = ct_labels
    labels = np.where(np.isin(seg.array, [5, 6]), seg.array, 0).astype(np.uint8)
    liver = SegmentInfo(5, "Liver", (0.8, 0.4, 0.3), TerminologyCode("123037004", "SCT", "Anatomical Structure"),
                        TerminologyCode("10200004", "SCT", "Liver"))
    labelmap = seg.with_array(labels, segments=[liver])
    files = [Path(p) for p in ct.metadata["source_files"]]
    out = write_dicom_seg(labelmap, files, tmp_path / "seg.dcm", {"id": "test-model", "version": "2.0"})
    written = pydicom.dcmread(out)
    assert written.Modality == "SEG"
    assert [s.SegmentLabel for s in written.SegmentSequence] == ["Liver", "Segment_6"]
    assert written.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    referenced = {item.ReferencedSOPInstanceUID for series in written.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    uids = [str(h.get("SOPInstanceUID", "") or h.file_meta.MediaStorageSOPInstanceUID) for h in headers]
    assert referenced == set(uids) and len(referenced) == 20
    # expected masks on the CT grid: the NIfTI grid maps to the CT grid through LPS
    flip = np.rint(seg.lps_to_index(ct.index_to_lps(corner_indices(ct)[:1])))[0, 1] != 0
    on_ct = labels[:, ::-1, :] if flip else labels
    sop_to_k = {}
    positions = {uid: ct.lps_to_index(np.array([[float(v) for v in h.ImagePositionPatient]]))[0, 2]
                 for uid, h in zip(uids, headers)}
    pixels = written.pixel_array
    for frame, item in zip(pixels, written.PerFrameFunctionalGroupsSequence):
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = int(round(positions[uid]))
        sop_to_k[uid] = k
        assert np.array_equal(frame.astype(bool), on_ct[k] == (5 if number == 1 else 6)), (number, k)
    assert len(set(sop_to_k.values())) == 20


def test_bare_datasets_without_preamble_or_suffix_are_read(ct, ct_dir, tmp_path):
    """Files written without the 128-byte preamble and "DICM" and named like ``IM0001`` (older scanners,
    PACS exports) are DICOM; a README beside them is not."""
    for number, source in enumerate(sorted(ct_dir.iterdir())):
        data = pydicom.dcmread(source)
        if data.file_meta.TransferSyntaxUID.is_compressed:
            data.decompress()
        data.file_meta = pydicom.dataset.FileMetaDataset()
        data.preamble = None
        pydicom.dcmwrite(tmp_path / f"IM{number:04d}", data, implicit_vr=True, little_endian=True,
                         enforce_file_format=False)
    (tmp_path / "README").write_text("Exported from PACS\n")
    assert (tmp_path / "IM0000").read_bytes()[128:132] != b"DICM"
    bare = io.read_image(tmp_path)
    assert np.array_equal(bare.array, ct.array) and bare.same_grid(ct)
