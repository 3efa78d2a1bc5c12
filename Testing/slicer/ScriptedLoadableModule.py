"""Test stand-in for ``slicer.ScriptedLoadableModule`` (absent from the headless core), with Slicer's
contract for what RadAI uses (written from Slicer's documented behaviour; never shipped):

- ``ScriptedLoadableModule(parent)``: ``parent`` is required (Slicer passes its
  ``qSlicerScriptedLoadableModule``); its title, categories ... are reset, ``parent.path`` locates
  ``Resources/``, and the module's self-test is registered in ``slicer.selfTests``.
- ``ScriptedLoadableModuleWidget(parent)``: ``self.layout`` is ``parent.layout()``; without a parent a
  ``qMRMLWidget`` is created, set up and shown; ``resourcePath`` uses ``slicer.util.modulePath``; the
  widget's ``cleanup()`` runs when the module manager announces the module is about to be unloaded.
- ``ScriptedLoadableModuleLogic.getParameterNode()``: the module's singleton
  ``vtkMRMLScriptedModuleNode`` (``ModuleName`` attribute), created when missing.
- ``ScriptedLoadableModuleTest``: a ``unittest.TestCase`` whose ``delayDisplay`` only logs.
"""
from __future__ import annotations

import logging
import os
import unittest

import slicer

__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
           "ScriptedLoadableModuleTest"]


class ScriptedLoadableModule:
    def __init__(self, parent) -> None:
        self.parent = parent
        self.moduleName = type(self).__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        icon = os.path.join(os.path.dirname(parent.path), "Resources", "Icons", f"{self.moduleName}.png")
        if os.path.isfile(icon):
            import qt
            parent.icon = qt.QIcon(icon)
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename: str) -> str:
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

    def getDefaultModuleDocumentationLink(self, docPage=None) -> str:
        return ""

    def runTest(self, msec=100, **kwargs) -> None:
        import importlib
        test_class = getattr(importlib.import_module(type(self).__module__), self.moduleName + "Test")
        test_class().runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.moduleName = type(self).__name__[:-6] if type(self).__name__.endswith("Widget") else type(self).__name__
        self.developerMode = False
        if not parent:
            import qt
            self.parent = slicer.qMRMLWidget()
            self.parent.setLayout(qt.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()
        slicer.app.moduleManager().connect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

    def resourcePath(self, filename: str) -> str:
        return os.path.join(os.path.dirname(slicer.util.modulePath(self.moduleName)), "Resources", filename)

    def _onModuleAboutToBeUnloaded(self, moduleName: str) -> None:
        if moduleName == self.moduleName:
            self.cleanup()
            slicer.app.moduleManager().disconnect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

    def setup(self) -> None:
        pass

    def cleanup(self) -> None:
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None) -> None:
        name = type(self).__name__
        self.moduleName = name[:-5] if name.endswith("Logic") else name
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node:
            if node.GetAttribute("ModuleName") != self.moduleName:
                node.SetAttribute("ModuleName", self.moduleName)
            return node
        return slicer.mrmlScene.AddNode(self.createParameterNode())

    def createParameterNode(self):
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, requestedDelay=None, msec=None) -> None:
        logging.info(message)

    def setUp(self) -> None:
        return

    def tearDown(self) -> None:
        return
