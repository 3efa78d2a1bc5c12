"""Installing a module's Python requirements into Slicer's Python on first use (module layer: only the
two Slicer module files call this; it imports ``slicer`` lazily and never at import time).

- Slicer >= 5.12 has ``slicer.packaging``: ``pip_ensure(load_requirements(path), requester=...)`` checks
  what is missing, asks the user, installs, and offers a restart when an imported package changed.
- Slicer 5.10 has only ``slicer.util.pip_install``: RadAI checks the requirements itself (with the
  ``packaging`` library Slicer ships) and installs only the missing ones, so a first Apply installs
  and later ones cost nothing.
- PyTorch is never installed from a requirement file: only when ``torch`` itself is missing, through
  the SlicerPyTorch extension (a dependency of the RadAI extension), which picks the build matching
  the machine's GPU and driver.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from pathlib import Path

from .errors import RadAIError

#: oldest PyTorch MONAI 1.6.1 (RadAISegment's requirement) runs on
TORCH_REQUIREMENT = ">=2.8"


class DependencyError(RadAIError):
    """A Python package RadAI needs is missing and could not be installed."""


def requirement_lines(path: str | Path) -> list[str]:
    """The requirement specifiers of a requirements file (comments, blank lines and pip options skipped)."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def missing_requirements(path: str | Path) -> list[str]:
    """Requirements of ``path`` not satisfied by the installed distributions (name and version)."""
    from packaging.requirements import Requirement
    missing = []
    for line in requirement_lines(path):
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            missing.append(line)
    return missing


def ensure_torch(requester: str) -> None:
    """Install PyTorch with SlicerPyTorch when ``torch`` is not importable; nothing otherwise."""
    if importlib.util.find_spec("torch") is not None:
        return
    try:
        import PyTorchUtils
    except ImportError as error:
        raise DependencyError(f"{requester} needs PyTorch, which is not installed. Install the PyTorch extension "
                              "(SlicerPyTorch) from the Extensions Manager, restart Slicer and press Apply "
                              "again.") from error
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                          torchVersionRequirement=TORCH_REQUIREMENT)
    if torch is None:
        raise DependencyError(f"{requester} needs PyTorch; its installation was declined or failed, so nothing "
                              "was run.")


def ensure_requirements(path: str | Path, requester: str, needs_torch: bool = False) -> None:
    """Make the module's requirements file (and PyTorch when ``needs_torch``) importable in Slicer's Python."""
    if needs_torch:
        ensure_torch(requester)
    try:
        packaging = importlib.import_module("slicer.packaging")
    except ImportError:
        packaging = None
    if packaging is not None:
        packaging.pip_ensure(packaging.load_requirements(str(path)), requester=requester)
        return
    missing = missing_requirements(path)
    if missing:
        import slicer.util
        slicer.util.pip_install(missing)
        importlib.invalidate_caches()
