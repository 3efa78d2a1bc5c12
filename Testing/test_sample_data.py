"""Bundled sample data: licences, provenance, size budget, grids and label names."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from RadAISegmentLib import io
from RadAISegmentLib import sample_data as samples
from RadAISegmentLib.errors import InputError
from RadAISegmentLib.image import Image

SIZE_BUDGET_BYTES = 8 * 1024 * 1024


def _provenance_rows(folder: Path) -> dict[str, str]:
    """file path (relative to ``folder``) -> SHA-256 column ('-' for files without one) from PROVENANCE.md's table."""
    rows = {}
    for line in (folder / "PROVENANCE.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|.*\|\s*`?([0-9a-f]{64}|-)`?\s*\|\s*$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_licences_present(sample_data):
    assert "Apache License" in (sample_data / "LICENSE-totalsegmentator.txt").read_text(encoding="utf-8")
    assert "Redistribution and use" in (sample_data / "LICENSE-pyradiomics.txt").read_text(encoding="utf-8")
    for name in samples.list_sample_cases():
        assert samples.sample_case(name)["licence"].stat().st_size > 1000


def test_provenance_lists_every_file_with_matching_checksums(sample_data):
    rows = _provenance_rows(sample_data)
    on_disk = {path.name for path in sample_data.iterdir() if path.is_file()}
    assert on_disk - set(rows) == set(), "files missing from PROVENANCE.md"
    assert set(rows) - on_disk == set(), "PROVENANCE.md lists files that do not exist"
    for name, digest in rows.items():
        if digest != "-":
            assert hashlib.sha256((sample_data / name).read_bytes()).hexdigest() == digest, name
    text = (sample_data / "PROVENANCE.md").read_text(encoding="utf-8")
    assert "never" in text.lower() and "training" in text.lower()
    for case in ("lung-tumour", "brain-tumour", "breast-lesion"):
        assert samples.sample_case_info(case).evaluation_only
        assert all("EVALUATION ONLY" in line for line in text.splitlines() if line.startswith(f"| `{case}_"))


def test_size_budget(sample_data):
    total = sum(path.stat().st_size for path in sample_data.rglob("*") if path.is_file())
    assert total < SIZE_BUDGET_BYTES, f"SampleData is {total / 1e6:.1f} MB; budget {SIZE_BUDGET_BYTES / 1e6:.1f} MB"


@pytest.mark.parametrize("name", ["abdomen-ct", "abdomen-mr", "lung-tumour", "brain-tumour", "breast-lesion"])
def test_labels_align_and_have_names(name):
    image = samples.load_sample_image(name)
    labelmap = samples.load_sample_labelmap(name)
    assert image.same_grid(labelmap), image.grid_difference(labelmap)
    present = labelmap.label_values()
    assert present and sorted(info.label for info in labelmap.segments) == present
    assert all(not info.name.startswith("Segment_") for info in labelmap.segments)
    assert image.metadata["modality"] in ("CT", "MR")


def test_totalsegmentator_names_match_the_anatomy():
    """Independent check of the id -> name map: HU of named structures in the real CT."""
    image = samples.load_sample_image("abdomen-ct")
    labelmap = samples.load_sample_labelmap("abdomen-ct")
    by_name = {info.name: info for info in labelmap.segments}
    names = samples.totalsegmentator_label_names("total")
    assert len(names) == 117 and names[1] == "spleen" and names[5] == "liver" and names[117] == "costal_cartilages"
    assert len(samples.totalsegmentator_label_names("total_mr")) == 50

    def median_hu(name):
        return float(np.median(image.array[labelmap.array == by_name[name].label]))
    assert by_name["liver"].type.value == "10200004"
    assert 20 < median_hu("liver") < 200
    lungs = [name for name in by_name if name.startswith("lung_")]
    assert lungs and all(median_hu(name) < -500 for name in lungs)
    vertebrae = [name for name in by_name if name.startswith("vertebrae_")]
    assert vertebrae and all(median_hu(name) > 120 for name in vertebrae)
    # right-sided organs lie towards +R (RAS) of left-sided ones
    for right, left in (("kidney_right", "kidney_left"), ("autochthon_right", "autochthon_left")):
        if right in by_name and left in by_name:
            centre = {side: labelmap.index_to_ras(np.argwhere(labelmap.array == by_name[side].label)[:, ::-1].mean(0))
                      for side in (right, left)}
            assert centre[right][0] > centre[left][0]


def test_test_data_is_listed_with_checksums_and_licences(test_data):
    """Testing/Data: every file listed in its PROVENANCE.md with a matching SHA-256, every listed file present,
    each upstream licence present, and the whole folder small (the repository stays lean)."""
    rows = _provenance_rows(test_data)
    on_disk = {path.relative_to(test_data).as_posix() for path in test_data.rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    assert on_disk - set(rows) == set(), "files missing from Testing/Data/PROVENANCE.md"
    assert set(rows) - on_disk == set(), "PROVENANCE.md lists files that do not exist"
    for name, digest in rows.items():
        if digest != "-":
            assert hashlib.sha256((test_data / name).read_bytes()).hexdigest() == digest, name
    assert "Redistribution and use" in (test_data / "LICENSE-pyradiomics.txt").read_text(encoding="utf-8")
    for name in ("LICENSE-totalsegmentator.txt", "LICENSE-monai-model-zoo.txt"):
        assert "Apache License" in (test_data / name).read_text(encoding="utf-8")
    total = sum((test_data / name).stat().st_size for name in on_disk)
    assert total < 2 * 1024 * 1024, f"Testing/Data is {total / 1e6:.1f} MB"


CROP_SOURCES = [("lung-tumour", "lung1"), ("brain-tumour", "brain1")]


def original_index(original: Image, crop: Image, kji: np.ndarray) -> np.ndarray:
    """(i, j, k) of the original voxels at the physical positions of ``crop``'s voxels ``kji``."""
    return np.rint(original.lps_to_index(crop.index_to_lps(kji[:, ::-1].astype(float)))).astype(int)


@pytest.mark.parametrize("name,source", CROP_SOURCES)
def test_crops_keep_tumour_and_geometry(name, source, test_data):
    """Against the full-size original masks (Testing/Data): the crop's mask is exactly the original mask at
    the same physical positions, holds every tumour voxel, and keeps the spacing and direction."""
    original_label = io.read_image(test_data / f"{source}_label.nrrd")
    image = samples.load_sample_image(name)
    labelmap = samples.load_sample_labelmap(name)
    assert image.array.dtype == np.int16 and labelmap.array.dtype == np.uint8
    assert image.same_grid(labelmap)
    assert labelmap.spacing_mm == pytest.approx(original_label.spacing_mm, abs=1e-9)
    np.testing.assert_allclose(labelmap.direction_lps, original_label.direction_lps, atol=1e-12)
    assert np.count_nonzero(labelmap.array) == np.count_nonzero(original_label.array)
    kji = np.argwhere(np.ones(labelmap.array.shape, bool))
    ijk = original_index(original_label, labelmap, kji)
    assert np.all(ijk >= 0) and np.all(ijk < original_label.shape_ijk)
    np.testing.assert_allclose(original_label.index_to_lps(ijk.astype(float)),
                               labelmap.index_to_lps(kji[:, ::-1].astype(float)), atol=1e-6)   # whole voxels
    original_values = original_label.array[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    np.testing.assert_array_equal(labelmap.array.ravel(), (original_values > 0).astype(np.uint8))


@pytest.mark.parametrize("name,source", CROP_SOURCES)
def test_crop_voxels_equal_the_upstream_image(name, source, upstream_data):
    """Optional (needs the upstream images, ``RADAI_SHARED_DATA``): every crop voxel equals the original."""
    original_image = io.read_image(upstream_data / "pyradiomics-cases" / f"{source}_image.nrrd")
    image = samples.load_sample_image(name)
    kji = np.argwhere(np.ones(image.array.shape, bool))
    ijk = original_index(original_image, image, kji)
    np.testing.assert_array_equal(image.array.ravel(), original_image.array[ijk[:, 2], ijk[:, 1], ijk[:, 0]])


def test_unknown_case_and_missing_resources(monkeypatch, tmp_path):
    with pytest.raises(InputError, match="abdomen-ct"):
        samples.sample_case("no-such-case")
    monkeypatch.setenv(samples.RESOURCES_ENV, str(tmp_path))
    with pytest.raises(InputError, match=samples.RESOURCES_ENV):
        samples.sample_case("abdomen-ct")
    monkeypatch.setenv(samples.RESOURCES_ENV, str(Path(samples.__file__).resolve().parents[2] / "Resources"))
    assert samples.sample_case("abdomen-ct")["image"].is_file()
