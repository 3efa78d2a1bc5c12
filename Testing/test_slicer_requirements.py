"""Every requirement of both modules' requirement files has a wheel for the Python of the declared minimum
Slicer (CMakeLists.txt: RadAI_MINIMUM_SLICER_VERSION, RadAI_SLICER_PYTHON_VERSION), checked with pip against
PyPI, package by package (torch comes from SlicerPyTorch and is never downloaded). Needs PyPI: without it
this test fails, it does not skip. Slicer 5.8's Python 3.9 has no release of the pinned monai.

The only exceptions are the pure-Python packages in :data:`SOURCE_ONLY`, published as a source archive alone:
for those the archive is downloaded and built, and the result must be a ``py3-none-any`` wheel for any Python 3
(including Slicer's) whose dependencies are only the ones named there (nothing compiled that could lack a wheel),
and PyPI must still have no wheel of that version (else the exception is no longer needed)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Slicer release -> the Python it ships (Slicer's CMakeLists.txt, Slicer_REQUIRED_PYTHON_VERSION)
SLICER_PYTHON = {"5.6": "3.9", "5.8": "3.9", "5.10": "3.12", "5.12": "3.12"}
#: pure-Python packages published only as an sdist -> the distributions their wheel may depend on
SOURCE_ONLY = {"dynamic-network-architectures": {"torch", "numpy"}}


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


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement
    return Requirement(requirement).name.lower().replace("_", "-")


def _download(requirement: str, python: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "--python-version", python, "--dest", str(folder), "--disable-pip-version-check",
                           "--quiet", requirement], capture_output=True, text=True, timeout=600)


def test_declared_minimum_is_the_first_slicer_whose_python_has_the_wheels(tmp_path):
    minimum, python = _declared()
    assert SLICER_PYTHON[minimum] == python
    requirements = _requirements()
    assert requirements and not any(_name(r) == "torch" for r in requirements)
    for requirement in requirements:
        done = _download(requirement, python, tmp_path / "wheels")
        if _name(requirement) in SOURCE_ONLY:
            assert done.returncode != 0, f"{requirement} now has a wheel: remove it from SOURCE_ONLY"
            _check_pure_python_build(requirement, python, SOURCE_ONLY[_name(requirement)], tmp_path / _name(requirement))
            continue
        assert done.returncode == 0, f"{requirement}: no wheel for Python {python} (or PyPI unreachable)\n{done.stderr}"
    older = _download("monai==1.6.1", SLICER_PYTHON["5.8"], tmp_path / "older")
    assert older.returncode != 0 and "Requires-Python" in older.stderr        # why not 5.8


def _check_pure_python_build(requirement: str, python: str, allowed: set, folder: Path) -> None:
    """The sdist of ``requirement`` builds into a ``py3-none-any`` wheel that ``python`` may install and that
    depends on ``allowed`` distributions only."""
    import email.parser
    import zipfile
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-binary=:all:", "--wheel-dir",
                           str(folder), "--disable-pip-version-check", "--quiet", requirement],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{requirement}: its source archive does not build (or PyPI unreachable)\n{done.stderr}"
    wheels = list(folder.glob("*.whl"))
    assert len(wheels) == 1 and wheels[0].name.endswith("-py3-none-any.whl"), wheels
    with zipfile.ZipFile(wheels[0]) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    assert python in SpecifierSet(metadata.get("Requires-Python") or ""), metadata.get("Requires-Python")
    needs = {Requirement(line).name.lower() for line in metadata.get_all("Requires-Dist") or []}
    assert needs <= allowed, f"{requirement} depends on {needs - allowed}, which may need wheels of their own"
