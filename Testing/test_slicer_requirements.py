"""Every requirement of both modules' requirement files has a wheel for the Python of the declared minimum
Slicer (CMakeLists.txt: RadAI_MINIMUM_SLICER_VERSION, RadAI_SLICER_PYTHON_VERSION), checked with pip against
PyPI, package by package (torch comes from SlicerPyTorch and is never downloaded). Needs PyPI: without it
this test fails, it does not skip. Slicer 5.8's Python 3.9 has no release of the pinned monai."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Slicer release -> the Python it ships (Slicer's CMakeLists.txt, Slicer_REQUIRED_PYTHON_VERSION)
SLICER_PYTHON = {"5.6": "3.9", "5.8": "3.9", "5.10": "3.12", "5.12": "3.12"}


def _declared() -> tuple[str, str]:
    text = (REPO_ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    return (re.search(r'set\(RadAI_MINIMUM_SLICER_VERSION "([\d.]+)"\)', text).group(1),
            re.search(r'set\(RadAI_SLICER_PYTHON_VERSION "([\d.]+)"\)', text).group(1))


def _requirements() -> list[str]:
    from RadAISegmentLib.dependencies import requirement_lines
    lines = []
    for module in ("RadAISegment", "RadAIVolumetrics"):
        lines += requirement_lines(REPO_ROOT / module / "Resources" / f"{module}-requirements.txt")
    return sorted(set(lines))


def _download(requirement: str, python: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "--python-version", python, "--dest", str(folder), "--disable-pip-version-check",
                           "--quiet", requirement], capture_output=True, text=True, timeout=600)


def test_declared_minimum_is_the_first_slicer_whose_python_has_the_wheels(tmp_path):
    minimum, python = _declared()
    assert SLICER_PYTHON[minimum] == python
    requirements = _requirements()
    assert requirements and not any(r.split("=")[0].split(">")[0].strip().lower() == "torch" for r in requirements)
    for requirement in requirements:
        done = _download(requirement, python, tmp_path / "wheels")
        assert done.returncode == 0, f"{requirement}: no wheel for Python {python} (or PyPI unreachable)\n{done.stderr}"
    older = _download("monai==1.6.1", SLICER_PYTHON["5.8"], tmp_path / "older")
    assert older.returncode != 0 and "Requires-Python" in older.stderr        # why not 5.8
