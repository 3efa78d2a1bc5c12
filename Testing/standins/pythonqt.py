"""PythonQt's idioms on real Qt widgets (PySide6), for hosting RadAI's Slicer panels in tests.

Slicer's Python sees Qt through PythonQt, which differs from PySide6 in the few ways the module
code relies on; this file gives PySide6 classes those behaviours, nothing more:

- Qt properties are Python attributes: ``label.text = "..."``, ``button.enabled = False``,
  ``combo.currentText`` (a property shadows a method of the same name, as in PythonQt). Writing a
  read-only or unknown Qt property raises ``AttributeError``.
- ``obj.name`` is the object name (what ``slicer.util.childWidgetVariables`` reads).
- ``obj.connect("signal(args)", callable)`` / ``obj.disconnect(...)`` with C++ signatures; a
  signature the class does not have raises ``RuntimeError`` (PythonQt prints an error and the
  slot never runs, which is how such bugs hide). The callable gets as many arguments as it takes.
- An exception in a slot is printed and recorded in :data:`slot_errors` (PythonQt prints it and
  goes on), so tests can assert that no slot failed.

Test-only; never shipped.
"""
from __future__ import annotations

import inspect
import traceback
import types
from typing import Any, Callable

from PySide6 import QtCore

#: exceptions raised inside slots connected with the PythonQt idiom (tests assert it stays empty)
slot_errors: list[BaseException] = []

_PROPERTY_NAMES: dict[type, frozenset] = {}


def qt_property_names(obj: QtCore.QObject) -> frozenset:
    """Names of the Qt properties of an object's class (its metaobject's), cached per class."""
    names = _PROPERTY_NAMES.get(type(obj))
    if names is None:
        meta = QtCore.QObject.metaObject(obj)
        names = frozenset(meta.property(i).name() for i in range(meta.propertyCount()))
        _PROPERTY_NAMES[type(obj)] = names
    return names


def normalized(signature: str) -> str:
    return QtCore.QMetaObject.normalizedSignature(signature).data().decode()


def signal_signatures(obj: QtCore.QObject) -> set[str]:
    meta = obj.metaObject()
    return {meta.method(i).methodSignature().data().decode() for i in range(meta.methodCount())
            if meta.method(i).methodType() == QtCore.QMetaMethod.MethodType.Signal}


def _positional_capacity(slot: Callable) -> int | None:
    """How many positional arguments ``slot`` takes (None: any number)."""
    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def guarded(slot: Callable) -> Callable:
    """``slot`` called with the arguments it accepts; exceptions printed and recorded, not raised."""
    capacity = _positional_capacity(slot)

    def call(*args: Any) -> None:
        try:
            slot(*(args if capacity is None else args[:capacity]))
        except Exception as error:  # noqa: BLE001 - PythonQt prints and continues; tests read slot_errors
            slot_errors.append(error)
            traceback.print_exc()
    return call


class PythonQtObject:
    """Mixin placed before a PySide6 class: PythonQt's attribute, property and connect idioms.

    ``_pythonqt_signals`` maps C++ signatures a stand-in declares (``currentNodeChanged(vtkMRMLNode*)``)
    to the PySide6 signature that implements them (``currentNodeChanged(PyObject)``).
    """

    _pythonqt_signals: dict[str, str] = {}

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            if name == "name":
                return QtCore.QObject.objectName(self)
            if name in ("connect", "disconnect"):   # PySide6 would hand out its own QObject.connect
                return types.MethodType(getattr(PythonQtObject, name), self)
            if name in qt_property_names(self):
                return QtCore.QObject.property(self, name)
        return super().__getattribute__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            if name == "name":
                QtCore.QObject.setObjectName(self, value)
                return
            if name in qt_property_names(self):
                meta = self.metaObject()
                if not meta.property(meta.indexOfProperty(name)).isWritable():
                    raise AttributeError(f"{type(self).__name__}.{name} is a read-only Qt property")
                if not QtCore.QObject.setProperty(self, name, value):
                    raise AttributeError(f"{type(self).__name__}.{name} = {value!r} was refused by Qt")
                return
        super().__setattr__(name, value)

    def _qt_signature(self, signature: str) -> str:
        wanted = normalized(signature)
        implemented = type(self)._pythonqt_signals.get(wanted, wanted)
        if implemented not in signal_signatures(self):
            raise RuntimeError(f"{type(self).__name__} has no signal {wanted}; PythonQt would print an error "
                               "and the slot would never be called")
        return implemented

    def connect(self, signature: str, slot: Callable) -> bool:
        """PythonQt's ``obj.connect("clicked(bool)", callable)``."""
        implemented = self._qt_signature(signature)
        connections = self.__dict__.setdefault("_pythonqt_connections", {})
        wrapper = guarded(slot)
        connections.setdefault((implemented, slot), []).append(wrapper)
        return bool(QtCore.QObject.connect(self, QtCore.SIGNAL(implemented), wrapper))

    def disconnect(self, signature: str, slot: Callable) -> bool:
        implemented = self._qt_signature(signature)
        wrappers = self.__dict__.get("_pythonqt_connections", {}).get((implemented, slot), [])
        if not wrappers:
            return False
        return bool(QtCore.QObject.disconnect(self, QtCore.SIGNAL(implemented), wrappers.pop()))


def pythonqt_class(base: type, name: str | None = None, module: str = "qt") -> type:
    """A subclass of a PySide6 QObject class with PythonQt's idioms, named like the Qt class."""
    return type(name or base.__name__, (PythonQtObject, base), {"__module__": module})
