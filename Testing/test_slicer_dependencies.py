"""Installing the modules' requirements in Slicer, with recording stand-ins as strict as Slicer's signatures:
``slicer.packaging`` (5.12+: ``load_requirements(path)`` -> Requirements, ``pip_ensure(requirements, ...)``
refusing a file path), ``slicer.util.pip_install(requirements)`` (5.10: a str or a list, else ValueError),
and SlicerPyTorch's ``PyTorchUtilsLogic().installTorch(...)`` only when torch itself is missing."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement

from RadAISegmentLib import dependencies
from RadAISegmentLib.dependencies import DependencyError, ensure_requirements

REPO_ROOT = Path(__file__).resolve().parents[1]
SEGMENT = REPO_ROOT / "RadAISegment" / "Resources" / "RadAISegment-requirements.txt"


def _packaging(calls):
    module = types.ModuleType("slicer.packaging")

    def load_requirements(path):
        return [Requirement(line) for line in Path(path).read_text().splitlines()
                if line.strip() and not line.strip().startswith(("#", "-"))]

    def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
                   requester=None, skip_in_testing=True, show_progress=True):
        if isinstance(requirements, str):           # Slicer parses a string as requirement specifiers
            try:
                requirements = [Requirement(requirements)]
            except InvalidRequirement:
                requirements = [Requirement(part) for part in requirements.split()]
        calls.append(("pip_ensure", [str(r) for r in requirements], requester))

    module.load_requirements, module.pip_ensure = load_requirements, pip_ensure
    return module


@pytest.fixture
def recorded(monkeypatch):
    import slicer.util
    calls = []

    def pip_install(requirements):                   # Slicer 5.10's signature
        if not isinstance(requirements, (str, list)):
            raise ValueError("pip_install requirement input must be string or list")
        calls.append(("pip_install", requirements))
    monkeypatch.setattr(slicer.util, "pip_install", pip_install)
    monkeypatch.delitem(sys.modules, "slicer.packaging", raising=False)
    return calls


def test_slicer_5_12_uses_pip_ensure_with_loaded_requirements(recorded, monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer.packaging", _packaging(recorded))
    ensure_requirements(SEGMENT, "RadAI Segment", needs_torch=True)          # torch is installed here
    assert recorded == [("pip_ensure", dependencies.requirement_lines(SEGMENT), "RadAI Segment")]
    assert recorded[0][1] == ["monai==1.6.1", "scipy>=1.11", "dynamic-network-architectures==0.3.1",
                              "openvino==2026.4.1"]
    with pytest.raises(InvalidRequirement):                                # what passing the path did before
        sys.modules["slicer.packaging"].pip_ensure(str(SEGMENT))


def test_slicer_5_10_installs_only_missing_requirements(recorded, tmp_path):
    requirements = tmp_path / "X-requirements.txt"
    requirements.write_text("# comment\nnumpy>=1.0\nscipy>=999\nno-such-radai-package==1.0\n")
    ensure_requirements(requirements, "RadAI Volumetrics")
    assert recorded == [("pip_install", ["scipy>=999", "no-such-radai-package==1.0"])]
    recorded.clear()
    ensure_requirements(SEGMENT, "RadAI Segment")                           # all present: nothing to install
    assert recorded == []


def test_pytorch_comes_from_slicer_pytorch_only_when_torch_is_missing(recorded, monkeypatch):
    installs = []

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):
            installs.append(torchVersionRequirement)
            return types.SimpleNamespace(__version__="2.9.0") if askConfirmation else None

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    dependencies.ensure_torch("RadAI Segment")
    assert installs == []                                                   # torch present: SlicerPyTorch untouched
    monkeypatch.setattr(dependencies.importlib.util, "find_spec", lambda name: None if name == "torch" else True)
    dependencies.ensure_torch("RadAI Segment")
    assert installs == [">=2.8"]
    monkeypatch.setattr(PyTorchUtilsLogic, "installTorch", lambda self, **kwargs: None)   # user declined
    with pytest.raises(DependencyError, match="declined"):
        dependencies.ensure_torch("RadAI Segment")
    monkeypatch.delitem(sys.modules, "PyTorchUtils")
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)                  # extension not installed
    with pytest.raises(DependencyError, match="Extensions Manager"):
        dependencies.ensure_torch("RadAI Segment")
