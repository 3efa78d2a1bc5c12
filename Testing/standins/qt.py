"""Stand-in for Slicer's ``qt`` module (PythonQt) on PySide6, for tests that host the panels.

``qt.<QObject class>`` is the PySide6 class with PythonQt's idioms (:mod:`pythonqt`), so the
exact-class rules of Slicer's GUI connectors see the same classes the .ui loader creates; every
other name (``qt.QDate``, ``qt.Qt``, ``qt.QFileDialog`` statics ...) is PySide6's own.
``qt.QUiLoader`` builds .ui files from these classes and the CTK / MRML stand-ins, wires the .ui's
``<connections>`` by their C++ signatures, and refuses a .ui that sets a property the class lacks.
Test-only; never shipped.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

import pythonqt

_MODULES = (QtWidgets, QtCore, QtGui)
_NOT_WRAPPED = {"QApplication", "QCoreApplication", "QGuiApplication"}
_CLASSES: dict[str, type] = {}
#: class name -> stand-in class for widgets that are not Qt's (ctk.*, slicer.qMRML*); filled by ctk / slicer stand-ins
CUSTOM_WIDGETS: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return _CLASSES[name]
    for module in _MODULES:
        value = getattr(module, name, None)
        if value is None:
            continue
        if isinstance(value, type) and issubclass(value, QtCore.QObject) and name not in _NOT_WRAPPED:
            _CLASSES[name] = pythonqt.pythonqt_class(value)
            return _CLASSES[name]
        return value
    raise AttributeError(f"module 'qt' has no attribute {name!r}")


def widget_class(name: str) -> type:
    """The class the loader instantiates for a .ui class name (stand-ins first, then Qt's)."""
    if name in CUSTOM_WIDGETS:
        return CUSTOM_WIDGETS[name]
    cls = __getattr__(name)
    if not (isinstance(cls, type) and issubclass(cls, QtWidgets.QWidget)):
        raise LookupError(f"{name} is neither a Qt widget nor a CTK/MRML widget with a test stand-in")
    return cls


class QUiLoader(QtUiTools.QUiLoader):
    """``qt.QUiLoader`` as ``slicer.util.loadUI`` uses it: ``QUiLoader().load(qfile)``."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.errors: list[BaseException] = []

    def createWidget(self, className: str, parent=None, name: str = ""):  # noqa: N802 - Qt override
        try:
            widget = widget_class(className)(parent)
        except Exception as error:  # noqa: BLE001 - re-raised by load()
            self.errors.append(error)
            return None
        widget.setObjectName(name)
        return widget

    def load(self, device, parentWidget=None):  # noqa: N803 - Qt signature
        if isinstance(device, str):
            device = QtCore.QFile(device)
            device.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
        text = bytes(device.readAll().data())
        root = ET.fromstring(text)
        connections = root.find("connections")
        if connections is not None:
            root.remove(connections)
        buffer = QtCore.QBuffer()
        buffer.setData(ET.tostring(root))
        buffer.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
        widget = super().load(buffer, parentWidget)
        if self.errors:
            raise RuntimeError(f"Could not create widgets: {self.errors}")
        if widget is None:
            raise RuntimeError(f"QUiLoader failed: {self.errorString()}")
        _check_properties(root, widget)
        _connect(connections, widget)
        return widget


def _named(widget, name: str):
    if QtCore.QObject.objectName(widget) == name:
        return widget
    found = widget.findChild(QtCore.QObject, name)
    if found is None:
        raise RuntimeError(f"The .ui connects {name}, which does not exist")
    return found


def _check_properties(root: ET.Element, top) -> None:
    """Every property the .ui sets (except ``stdset="0"`` dynamic ones) is a property of the class."""
    for element in root.iter("widget"):
        widget = _named(top, element.get("name"))
        meta = widget.metaObject()
        for prop in element.findall("property"):
            if prop.get("stdset") == "0":
                continue
            if meta.indexOfProperty(prop.get("name")) < 0:
                raise RuntimeError(f"{element.get('class')} {element.get('name')}: the .ui sets property "
                                   f"{prop.get('name')!r}, which the class does not have")


def _connect(connections: ET.Element | None, top) -> None:
    """The .ui's ``<connections>``, by C++ signature; an unknown signal or slot raises."""
    for connection in [] if connections is None else connections.findall("connection"):
        sender = _named(top, connection.findtext("sender"))
        receiver = _named(top, connection.findtext("receiver"))
        signal, slot = connection.findtext("signal"), connection.findtext("slot")
        slot_name = slot.split("(")[0]
        declared = getattr(type(receiver), "_pythonqt_slots", set())
        if pythonqt.normalized(slot) not in declared:
            raise RuntimeError(f"{type(receiver).__name__} has no slot {slot}")
        sender.connect(signal, getattr(receiver, slot_name))
