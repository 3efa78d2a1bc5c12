"""Hosts RadAI's Slicer module panels on real Qt (PySide6, offscreen) as Slicer does.

:func:`start_qt_slicer` starts the headless Slicer core (``slicer_harness``), a ``QApplication`` on Qt's
offscreen platform, and the stand-ins Slicer's Python would have: ``qt`` and ``ctk`` (PythonQt's idioms,
``Testing/standins``), ``slicer.qMRMLWidget`` / ``slicer.qMRMLNodeComboBox``, ``slicer.app`` (testing
mode: error displays are logged, not shown; a module manager announcing unloads). The real
``slicer.util`` of the headless core (``loadUI``, ``childWidgetVariables``, ``tryWithErrorDisplay`` ...)
runs unchanged on top of them.

:func:`host_module` loads a module file the way Slicer loads a scripted module: the module class gets
a ``parent`` (title, categories, ``path``), the module is registered in ``slicer.modules``, the Widget
class is constructed with a module panel (``isEntered``, a vertical layout, the scene) and set up; then
``enter()`` / ``exit()`` / ``unload()`` as Slicer calls them.
"""
from __future__ import annotations

import os
import time
import types
from pathlib import Path
from typing import Callable

from slicer_harness import load_module_file, start_headless_slicer

REPO_ROOT = Path(__file__).resolve().parents[1]
qt_messages: list[str] = []


def start_qt_slicer():
    """The ``slicer`` package with the headless scene, a QApplication, the Qt stand-ins and ``slicer.app``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    slicer = start_headless_slicer()
    from PySide6 import QtCore, QtWidgets
    import ctk  # noqa: F401 - registers the CTK stand-ins with the loader
    import mrml_widgets
    if QtWidgets.QApplication.instance() is None:
        QtCore.qInstallMessageHandler(lambda kind, context, message: qt_messages.append(message))
        QtWidgets.QApplication(["RadAI-tests"])
    slicer.qMRMLWidget = mrml_widgets.qMRMLWidget
    slicer.qMRMLNodeComboBox = mrml_widgets.qMRMLNodeComboBox
    if not getattr(getattr(slicer, "app", None), "radai_standin", False):
        slicer.app = _application()
    return slicer


def stop_qt_slicer() -> None:
    """Remove ``slicer.app`` again (other tests run the modules as without the application)."""
    import slicer
    if getattr(getattr(slicer, "app", None), "radai_standin", False):
        del slicer.app


def _application():
    """``slicer.app`` in testing mode: error displays are logged, not shown."""
    import qt
    from PySide6 import QtCore, QtWidgets

    class ModuleManager(qt.QObject):
        moduleAboutToBeUnloaded = QtCore.Signal(str)

    class Application(qt.QObject):
        startupCompleted = QtCore.Signal()
        radai_standin = True

        def __init__(self) -> None:
            super().__init__()
            self._manager = ModuleManager()
            self.applicationName = "3D Slicer"

        def testingEnabled(self) -> bool:  # noqa: N802 - Slicer's name
            return True

        def moduleManager(self):  # noqa: N802 - Slicer's name
            return self._manager

        def setOverrideCursor(self, cursor) -> None:  # noqa: N802 - Qt's name
            QtWidgets.QApplication.setOverrideCursor(cursor)

        def restoreOverrideCursor(self) -> None:  # noqa: N802 - Qt's name
            QtWidgets.QApplication.restoreOverrideCursor()

        def processEvents(self) -> None:  # noqa: N802 - Qt's name
            QtWidgets.QApplication.processEvents()

    return Application()


def process_events_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Run Qt's event loop (timers fire, slots run) until ``predicate()`` or ``timeout_s``."""
    from PySide6 import QtCore, QtWidgets
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)
    return True


class HostedModule:
    """A module loaded as Slicer loads it: ``module``, ``panel`` (its widget representation), ``widget``."""

    def __init__(self, relative_path: str, private_name: str) -> None:
        import qt
        slicer = start_qt_slicer()
        self.file = REPO_ROOT / relative_path
        self.name = self.file.stem
        self.code = load_module_file(relative_path, private_name)
        self.parent = types.SimpleNamespace(path=str(self.file), name=self.name)
        self.module = getattr(self.code, self.name)(self.parent)
        if not hasattr(slicer, "modules"):
            slicer.modules = types.SimpleNamespace()
        setattr(slicer.modules, self.name.lower(), self.parent)
        self.panel = _module_panel()
        self.panel.setLayout(qt.QVBoxLayout())
        self.panel.setMRMLScene(slicer.mrmlScene)
        self.widget = getattr(self.code, f"{self.name}Widget")(self.panel)
        self.widget.setup()

    def enter(self) -> None:
        self.panel._entered = True
        if hasattr(self.widget, "enter"):     # Slicer calls the Python enter() only when the Widget has one
            self.widget.enter()

    def exit(self) -> None:
        if hasattr(self.widget, "exit"):
            self.widget.exit()
        self.panel._entered = False

    def unload(self) -> None:
        import slicer
        slicer.app.moduleManager().moduleAboutToBeUnloaded.emit(self.name)


def _module_panel():
    """A qSlicerScriptedLoadableModuleWidget stand-in: a qMRMLWidget with ``isEntered``."""
    import mrml_widgets
    from PySide6 import QtCore

    class ModulePanel(mrml_widgets.qMRMLWidget):
        def __init__(self) -> None:
            super().__init__()
            self._entered = False

        isEntered = QtCore.Property(bool, lambda self: self._entered)

    return ModulePanel()


def host_module(relative_path: str, private_name: str) -> HostedModule:
    return HostedModule(relative_path, private_name)


class TimerLag:
    """Largest delay of a 10 ms Qt timer on the main thread while ``running()`` holds: how long the GUI
    thread was blocked. The interval in which ``running()`` turns false is not counted (it holds the
    work that ends the job, e.g. adding the result to the scene)."""

    def __init__(self, running: Callable[[], bool], interval_ms: int = 10) -> None:
        from PySide6 import QtCore
        self.running = running
        self.interval_s = interval_ms / 1000.0
        self.worst_s = 0.0
        self.ticks = 0
        self._last = None
        self._timer = QtCore.QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        if not self.running():
            self._timer.stop()
            return
        if self._last is not None:
            self.worst_s = max(self.worst_s, now - self._last - self.interval_s)
        self._last = now
        self.ticks += 1

    def start(self) -> None:
        self._last = None
        self._timer.start()
