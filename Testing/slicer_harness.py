"""Headless Slicer core for tests: one MRML scene with the logics RadAI's bridge needs.

Sets ``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow`` before VTK creates any window, puts
``Testing/slicer`` (test-only stand-ins as strict as Slicer: ``ScriptedLoadableModule``,
``parameterNodeWrapper``) on ``slicer.__path__`` and ``Testing/standins`` (``qt``, ``ctk``: PythonQt's
idioms on PySide6) on ``sys.path``, as Slicer always has them, and provides
``slicer.modules.segmentations.logic()`` so ``slicer.util.arrayFromSegmentBinaryLabelmap`` works without
the application. The Qt application itself is started only by ``slicer_qt_harness``.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parent / "slicer"
STANDINS_DIR = Path(__file__).resolve().parent / "standins"


def start_headless_slicer():
    """Create (once) the scene and logics; return the ``slicer`` package with ``slicer.mrmlScene`` set."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import slicer
    import slicer.util  # noqa: F401
    if getattr(slicer, "_radai_harness", None) is not None:
        return slicer
    if str(SHIM_DIR) not in slicer.__path__:
        slicer.__path__.append(str(SHIM_DIR))
    if str(STANDINS_DIR) not in sys.path:
        sys.path.insert(0, str(STANDINS_DIR))
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    volume_rendering_logic = slicer.vtkSlicerVolumeRenderingLogic()
    volume_rendering_logic.SetMRMLScene(scene)
    volumes_logic = slicer.vtkSlicerVolumesLogic()
    volumes_logic.SetMRMLScene(scene)
    if not hasattr(slicer, "modules"):
        slicer.modules = types.SimpleNamespace()
    for name, logic in (("segmentations", segmentations_logic), ("volumerendering", volume_rendering_logic),
                        ("volumes", volumes_logic), ("colors", color_logic)):
        if not hasattr(slicer.modules, name):
            setattr(slicer.modules, name, types.SimpleNamespace(logic=lambda logic=logic: logic))
    slicer._radai_harness = types.SimpleNamespace(scene=scene, segmentations=segmentations_logic,
                                                  colors=color_logic, volume_rendering=volume_rendering_logic,
                                                  volumes=volumes_logic)
    return slicer


def load_module_file(relative_path: str, private_name: str):
    """Import a module file (e.g. ``RadAISegment/RadAISegment.py``) under a private name.

    The module folder is never put on ``sys.path``, so the ``RadAISegment`` package that holds
    the engine is not shadowed; the module imports the engine exactly as it does inside Slicer.
    """
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location(private_name, SHIM_DIR.parents[1] / relative_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module
