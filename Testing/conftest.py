"""Shared pytest fixtures. Everything the suite needs is inside this checkout (or installed by ``.ci/setup``):

* ``test_data``: ``Testing/Data``, compact copies of real data that only the tests need (a cropped real CT
  DICOM series with its labels, MONAI Model Zoo bundle configs, PyRadiomics masks and published shape values);
  sources, processing, licences and SHA-256 in ``Testing/Data/PROVENANCE.md``;
* ``sample_data``: ``Resources/SampleData``, the bundled real cases shared with the demo and the Slicer modules;
* ``shared_data``: the two folders above arranged in the layout of the project's ``shared/data`` folder
  (:data:`SHARED_LAYOUT`), for code that reads that layout (``radai train --shared-data``,
  ``lesion.evaluate``); nothing beside the checkout is read;
* ``upstream_data``: optional. The full-size upstream originals, only when ``RADAI_SHARED_DATA`` names a folder
  holding them; tests that use it add checks against the originals and are skipped without it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "Testing" / "Data"
SAMPLE_DATA = REPO_ROOT / "Resources" / "SampleData"

#: path in the ``shared/data`` layout -> the in-checkout file or folder standing for it. The PyRadiomics cases
#: are the sample crops (every tumour voxel kept, geometry unchanged); the DICOM series is the cropped copy.
SHARED_LAYOUT = {
    "pyradiomics-cases/lung1_image.nrrd": SAMPLE_DATA / "lung-tumour_image.nrrd",
    "pyradiomics-cases/lung1_label.nrrd": SAMPLE_DATA / "lung-tumour_labels.nrrd",
    "pyradiomics-cases/brain1_image.nrrd": SAMPLE_DATA / "brain-tumour_image.nrrd",
    "pyradiomics-cases/brain1_label.nrrd": SAMPLE_DATA / "brain-tumour_labels.nrrd",
    "pyradiomics-cases/breast1_image.nrrd": SAMPLE_DATA / "breast-lesion_image.nrrd",
    "pyradiomics-cases/breast1_label.nrrd": SAMPLE_DATA / "breast-lesion_labels.nrrd",
    "pyradiomics-cases/LICENSE.txt": SAMPLE_DATA / "LICENSE-pyradiomics.txt",
    "totalsegmentator-examples/example_ct_sm.nii.gz": SAMPLE_DATA / "abdomen-ct_image.nii.gz",
    "totalsegmentator-examples/example_seg.nii.gz": SAMPLE_DATA / "abdomen-ct_labels.nii.gz",
    "totalsegmentator-examples/example_mr_sm.nii.gz": SAMPLE_DATA / "abdomen-mr_image.nii.gz",
    "totalsegmentator-examples/example_seg_mr.nii.gz": SAMPLE_DATA / "abdomen-mr_labels.nii.gz",
    "totalsegmentator-examples/example_ct_dicom": TEST_DATA / "ct-dicom",
    "totalsegmentator-examples/example_seg_dicom.nii.gz": TEST_DATA / "ct-dicom_labels.nii.gz",
    "totalsegmentator-examples/LICENSE": SAMPLE_DATA / "LICENSE-totalsegmentator.txt",
    "monai-bundle-configs": TEST_DATA / "monai-bundle-configs",
}


def build_shared_layout(target: Path) -> Path:
    """Arrange the in-checkout copies under ``target`` in the ``shared/data`` layout (symbolic links, or copies
    where links are not allowed). Raises FileNotFoundError naming a missing source."""
    for relative, source in SHARED_LAYOUT.items():
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing from the checkout")
        link = target / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(source, target_is_directory=source.is_dir())
        except OSError:
            (shutil.copytree if source.is_dir() else shutil.copyfile)(source, link)
    return target


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture(scope="session")
def sample_data() -> Path:
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> Path:
    return build_shared_layout(tmp_path_factory.mktemp("shared-data-layout"))


@pytest.fixture(scope="session")
def upstream_data() -> Path:
    """The full-size upstream originals (optional extra checks): ``RADAI_SHARED_DATA``, or skip."""
    folder = os.environ.get("RADAI_SHARED_DATA")
    if not folder or not Path(folder).is_dir():
        pytest.skip("optional: set RADAI_SHARED_DATA to a shared/data folder to also check against the upstream originals")
    return Path(folder)


@pytest.fixture(scope="session")
def colin27() -> tuple[Path, Path]:
    """Colin27 T1 (with skull) and its brain-extracted version, from Debian's mricron-data."""
    folder = Path("/usr/share/mricron/templates")
    image, brain = folder / "ch2.nii.gz", folder / "ch2bet.nii.gz"
    if not image.exists():
        raise FileNotFoundError("Colin27 missing: .ci/setup installs Debian's mricron-data")
    return image, brain


@pytest.fixture(scope="session")
def slicer_scene():
    """The headless Slicer core's scene (``slicer.mrmlScene``) with segmentation/colour/volume-rendering logics."""
    from slicer_harness import start_headless_slicer
    return start_headless_slicer().mrmlScene
