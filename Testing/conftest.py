"""Shared pytest fixtures: where the real data lives, and temporary outputs.

Real cases come from ``../shared/data`` beside the checkout (CI clones the
repository with ``shared/`` beside it); ``RADAI_SHARED_DATA`` overrides the path.
Bundled sample cases come from ``Resources/SampleData``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    override = os.environ.get("RADAI_SHARED_DATA")
    if override:
        return Path(override)
    for candidate in (REPO_ROOT.parent / "shared" / "data", REPO_ROOT.parent.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("shared/data not found beside the checkout; set RADAI_SHARED_DATA")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_dir()


@pytest.fixture(scope="session")
def sample_data() -> Path:
    return REPO_ROOT / "Resources" / "SampleData"


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
