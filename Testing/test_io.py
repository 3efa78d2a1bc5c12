"""Image I/O round-trips with exact geometry; geometry.py LPS<->RAS and NIfTI affine checks."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from RadAISegmentLib import geometry, io
from RadAISegmentLib.image import Image, SegmentInfo, TerminologyCode

DIRECTION = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
SPACING = (0.7, 1.3, 4.5)
ORIGIN = (-120.5, 33.25, 410.0)


def oblique(dtype=np.int16) -> Image:
    rng = np.random.default_rng(4)
    array = rng.integers(-1000, 2000, size=(7, 9, 11)).astype(dtype)
    return Image(array, SPACING, ORIGIN, DIRECTION, {"modality": "CT"})


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_round_trip_exact_geometry(tmp_path, suffix, dtype):
    image = oblique(dtype)
    back = io.read_image(io.write_image(image, tmp_path / f"img{suffix}"))
    assert back.array.dtype == image.array.dtype and np.array_equal(back.array, image.array)
    assert np.allclose(back.spacing_mm, SPACING, atol=1e-5) and np.allclose(back.origin_lps, ORIGIN, atol=1e-4)
    assert np.allclose(back.direction_lps, DIRECTION, atol=1e-5)
    corner = np.array([[10.0, 8.0, 6.0]])
    assert np.allclose(back.index_to_ras(corner), image.index_to_ras(corner), atol=1e-3)


def test_seg_nrrd_names_colours_terminology(tmp_path):
    labels = np.zeros((7, 9, 11), np.uint8)
    labels[1:3, 2:5, 3:6], labels[4:6, 1:3, 7:9] = 1, 3
    segments = [SegmentInfo(1, "Liver", (0.8, 0.4, 0.3), TerminologyCode("123037004", "SCT", "Anatomical Structure"),
                            TerminologyCode("10200004", "SCT", "Liver")),
                SegmentInfo(3, "Tumour", (0.1, 0.9, 0.2))]
    labelmap = Image(labels, SPACING, ORIGIN, DIRECTION, segments=segments)
    back = io.read_image(io.write_image(labelmap, tmp_path / "s.seg.nrrd"))
    assert np.array_equal(back.array, labels) and back.same_grid(labelmap)
    assert back.segment_for(1).name == "Liver" and back.segment_for(3).name == "Tumour"
    assert np.allclose(back.segment_for(3).color_rgb, (0.1, 0.9, 0.2), atol=1e-3)
    assert back.segment_for(1).type.value == "10200004"


def test_lps_ras_round_trip():
    points = np.array([[1.0, -2.0, 3.0], [-40.0, 17.5, -9.0]])
    assert np.allclose(geometry.lps_to_ras(points), points * [-1, -1, 1])
    assert np.allclose(geometry.ras_to_lps(geometry.lps_to_ras(points)), points)


def test_ijk_to_ras_decomposes_back():
    matrix = geometry.ijk_to_ras_matrix(SPACING, ORIGIN, DIRECTION)
    spacing, origin, direction = geometry.decompose_ijk_to_ras(matrix)
    assert np.allclose(spacing, SPACING) and np.allclose(origin, ORIGIN) and np.allclose(direction, DIRECTION)
    image = oblique()
    ijk = np.array([[0, 0, 0], [3.5, 2.0, 6.0]])
    assert np.allclose(image.ras_to_index(image.index_to_ras(ijk)), ijk)
    assert np.allclose((matrix @ np.c_[ijk, np.ones(2)].T).T[:, :3], image.index_to_ras(ijk))


def test_nifti_header_affine_matches_ijk_to_ras(tmp_path):
    """Parse the written NIfTI-1 header bytes (no ITK): its sform must be our IJKToRAS matrix."""
    image = oblique()
    path = io.write_image(image, tmp_path / "a.nii.gz")
    header = gzip.decompress(path.read_bytes())[:348]
    assert np.frombuffer(header[:4], "<i4")[0] == 348
    sform_code = np.frombuffer(header[254:256], "<i2")[0]
    srow = np.frombuffer(header[280:328], "<f4").reshape(3, 4)
    assert sform_code > 0
    expected = geometry.ijk_to_ras_matrix(SPACING, ORIGIN, DIRECTION)[:3]
    assert np.allclose(srow, expected, atol=1e-4)
    dims = np.frombuffer(header[40:56], "<i2")
    assert list(dims[1:4]) == list(image.shape_ijk)


def test_sheared_or_singular_matrix_is_a_geometry_error():
    from RadAISegmentLib.errors import GeometryError
    sheared = geometry.ijk_to_ras_matrix(SPACING, ORIGIN, np.eye(3))
    sheared[0, 1] = 0.5
    with pytest.raises(GeometryError, match="sheared"):
        geometry.decompose_ijk_to_ras(sheared)
    singular = np.eye(4)
    singular[2, 2] = 0
    with pytest.raises(GeometryError, match="zero"):
        geometry.decompose_ijk_to_ras(singular)


def test_parse_ras_point_is_the_one_seed_parser():
    from RadAISegmentLib.errors import InputError
    from RadAISegmentLib.geometry import parse_ras_point
    assert parse_ras_point(" -12.5, 40,88 ") == (-12.5, 40.0, 88.0)
    for bad in ("1,2", "a,b,c", "1,2,nan", "1,2,3,4"):
        with pytest.raises(InputError, match="R,A,S"):
            parse_ras_point(bad)


def test_nan_voxels_survive_nrrd_and_are_refused_for_nifti(tmp_path):
    """ITK's NIfTI writer turns NaN into 0 silently: refused with a clear error, nothing written;
    NRRD keeps them."""
    from RadAISegmentLib.errors import InputError
    from RadAISegmentLib.image import Image
    from RadAISegmentLib.io import read_image, write_image
    array = np.zeros((4, 5, 6), np.float32)
    array[1, 2, 3] = np.nan
    image = Image(array, (1.0, 1.0, 2.0))
    with pytest.raises(InputError, match="NaN"):
        write_image(image, tmp_path / "map.nii.gz")
    assert not (tmp_path / "map.nii.gz").exists()
    write_image(image, tmp_path / "map.nrrd")
    assert np.isnan(read_image(tmp_path / "map.nrrd").array).sum() == 1
