"""The modules' own ScriptedLoadableModuleTest classes (what Slicer's "Reload and Test" runs), run here
on the headless Slicer core with the bundled sample data. They clear the scene, so they live in
their own file (no other file's fixtures hold nodes while they run)."""
from __future__ import annotations

import unittest

import pytest

from slicer_harness import load_module_file

pytestmark = pytest.mark.slicer


@pytest.mark.parametrize("module_file,test_class", [
    ("RadAISegment/RadAISegment.py", "RadAISegmentTest"),
    ("RadAIVolumetrics/RadAIVolumetrics.py", "RadAIVolumetricsTest"),
])
def test_module_self_test_passes_headless(slicer_scene, module_file, test_class):
    module = load_module_file(module_file, f"_radai_self_test_{test_class}")
    result = unittest.TestResult()
    getattr(module, test_class)("runTest").run(result)
    assert result.testsRun == 1
    assert not result.errors and not result.failures, (result.errors + result.failures)[0][1]
