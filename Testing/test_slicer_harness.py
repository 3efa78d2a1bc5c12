"""The headless Slicer harness: shims make the module files importable and their Logic drivable."""
from __future__ import annotations

import sys

import numpy as np

from slicer_harness import load_module_file


def test_module_files_import_with_shims_and_parameter_defaults(slicer_scene):
    import slicer
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic  # the test-only shim
    assert "Testing" in sys.modules["slicer.ScriptedLoadableModule"].__file__
    # Loaded under a private name so the ``RadAISegment`` package (engine imports) is not shadowed.
    RadAISegment = load_module_file("RadAISegment/RadAISegment.py", "_radai_module_under_test")
    node = slicer_scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    parameters = RadAISegment.RadAISegmentParameterNode(node)
    assert parameters.modelId == "lesion-roi" and parameters.saliencyOpacity == 0.6
    assert isinstance(RadAISegment.RadAISegmentLogic(), ScriptedLoadableModuleLogic)


def test_segmentations_logic_available_to_slicer_util(slicer_scene):
    import slicer
    import slicer.util
    from RadAISegmentLib import mrml
    from RadAISegmentLib.image import Image
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 2:4, 1:5] = 3
    image = Image(labels, (1.5, 1.0, 2.0))
    volume = mrml.volume_node_from_image(image, "util-ref", slicer_scene)
    node = mrml.segmentation_node_from_labelmap(image, "util", volume)
    segment_id = node.GetSegmentation().GetNthSegmentID(0)
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume)
    assert np.array_equal(mask != 0, labels != 0)
