"""The headless Slicer harness: shims make the module files importable and their Logic drivable."""
from __future__ import annotations

import sys

import numpy as np


def test_module_files_import_with_shims_and_parameter_defaults(slicer_scene, repo_root):
    import slicer
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic  # the test-only shim
    assert "Testing" in sys.modules["slicer.ScriptedLoadableModule"].__file__
    for folder in ("RadAISegment", "RadAIVolumetrics"):
        if str(repo_root / folder) not in sys.path:
            sys.path.insert(0, str(repo_root / folder))
    import RadAISegment
    node = slicer_scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    parameters = RadAISegment.RadAISegmentParameterNode(node)
    assert parameters.modelId == "lesion-roi" and parameters.saliencyOpacity == 0.6
    assert isinstance(RadAISegment.RadAISegmentLogic(), ScriptedLoadableModuleLogic)


def test_segmentations_logic_available_to_slicer_util(slicer_scene):
    import slicer
    import slicer.util
    from RadAISegment.RadAISegmentLib import mrml
    from RadAISegment.RadAISegmentLib.image import Image
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 2:4, 1:5] = 3
    node = mrml.segmentation_node_from_labelmap(Image(labels, (1.5, 1.0, 2.0)), "util", scene=slicer_scene)
    segment_id = node.GetSegmentation().GetNthSegmentID(0)
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id)
    assert int(np.count_nonzero(mask)) == int(np.count_nonzero(labels))
