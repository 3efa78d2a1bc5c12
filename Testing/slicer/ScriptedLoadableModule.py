"""Test-only stand-in for Slicer's ``slicer.ScriptedLoadableModule`` (absent from the headless core).

Just enough for module files to import and for their Logic classes to be driven in pytest.
Never shipped: lives under ``Testing/`` and is put on ``slicer.__path__`` by ``slicer_harness``.
"""
from __future__ import annotations

import unittest

__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
           "ScriptedLoadableModuleTest"]


class _Parent:
    """What Slicer hands a module's ``__init__``: a bag of attributes."""

    def __init__(self):
        self.title = ""
        self.categories = []
        self.dependencies = []
        self.contributors = []
        self.helpText = ""
        self.acknowledgementText = ""


class ScriptedLoadableModule:
    def __init__(self, parent=None):
        self.parent = parent if parent is not None else _Parent()
        self.moduleName = type(self).__name__

    def getDefaultModuleDocumentationLink(self, docPage=""):
        return ""


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = type(self).__name__.replace("Widget", "")

    def setup(self):
        pass

    def cleanup(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = type(self).__name__.replace("Logic", "")

    def getParameterNode(self):
        import slicer
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
            node.SetSingletonTag(self.moduleName)
            node.SetName(self.moduleName)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0):
        pass

    def setUp(self):
        import slicer
        slicer.mrmlScene.Clear(0)
