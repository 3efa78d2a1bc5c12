"""``@parameterNodeWrapper`` of the test stand-in, with Slicer's semantics (written from its documented
rules, not its code):

- each annotated attribute becomes a property stored in the wrapped ``vtkMRMLScriptedModuleNode``
  (``serializers``); values live in the node, so a second wrapper of the same node sees them and a
  node referenced by a parameter reads back ``None`` once it is removed from the scene;
- a wrapper writes each parameter's default into a node that lacks it (validators run on that write
  too, so a default outside ``Choice``/``WithinRange`` fails at construction);
- every write runs the validators (``ValueError`` / ``TypeError``) before anything is stored;
- ``connectGui(gui)`` binds each widget whose ``SlicerParameterName`` property names a parameter
  (``gui`` is a widget, or an object such as ``self.ui`` whose attributes are all Qt objects); an
  unknown name is a ``ValueError``, a widget/type pair without a Slicer connector a ``RuntimeError``;
- names the wrapper itself uses (``allParameters``, ``connectGui``, ``Modified`` ...) cannot be
  parameters; a type without a serializer fails when the class is decorated.
"""
from __future__ import annotations

import logging
import typing
import weakref

import vtk

from .guiConnectors import create_connector
from .serializers import create_serializer
from .types import Default, split_annotations
from .validators import split_validators

__all__ = ["parameterNodeWrapper", "isParameterNodeWrapper", "SlicerParameterNamePropertyName"]

SlicerParameterNamePropertyName = "SlicerParameterName"
_RESERVED = ("allParameters", "default", "isCached", "dataType", "getValue", "setValue", "connectGui",
             "connectParametersToGui", "disconnectGui", "StartModify", "EndModify", "AddObserver", "RemoveObserver",
             "Modified", "_is_parameter_node_wrapper")


class _Parameter:
    def __init__(self, name: str, datatype, serializer, default: Default) -> None:
        self.name, self.datatype, self.serializer, self.default = name, datatype, serializer, default


class _Value:
    """One parameter of one wrapped node, cached and refreshed whenever the node is modified."""

    def __init__(self, parameter: _Parameter, node) -> None:
        self.parameter, self.node = parameter, node
        self.value = parameter.serializer.read(node, parameter.name)
        self._writing = False
        me = weakref.ref(self)
        self._tag = node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: me() and me()._refresh())

    def __del__(self) -> None:
        self.node.RemoveObserver(self._tag)

    def _refresh(self) -> None:
        if not self._writing:
            serializer, name = self.parameter.serializer, self.parameter.name
            if not serializer.is_in(self.node, name):    # e.g. the scene was closed: the default again
                serializer.write(self.node, name, self.parameter.default.value)
            self.value = serializer.read(self.node, name)

    def write(self, value) -> None:
        self._writing = True
        try:
            was_modified = self.node.StartModify()
            try:
                self.parameter.serializer.write(self.node, self.parameter.name, value)
                self.value = self.parameter.serializer.read(self.node, self.parameter.name)
            finally:
                self.node.EndModify(was_modified)
        finally:
            self._writing = False


def _init(self, parameterNode, prefix: str | None = None) -> None:
    if parameterNode is None:
        raise AttributeError("'NoneType' object has no attribute 'HasParameter' (a wrapper needs a parameter node)")
    self.parameterNode = parameterNode
    self._guis, self._gui_observers, self._next_tag, self._updating_gui = {}, {}, 0, False
    for parameter in self.allParameters.values():
        if not parameter.serializer.is_in(parameterNode, parameter.name):
            parameter.serializer.write(parameterNode, parameter.name, parameter.default.value)
        setattr(self, f"_{parameter.name}_value", _Value(parameter, parameterNode))


def _check_name(self, name: str) -> None:
    if name not in self.allParameters:
        raise ValueError(f"Cannot find a param with the given name: {name}\n  Found parameters "
                         f"{sorted(self.allParameters)}")


def _get(self, name: str):
    _check_name(self, name)
    return getattr(self, f"_{name}_value").value


def _set(self, name: str, value) -> None:
    _check_name(self, name)
    getattr(self, f"_{name}_value").write(value)


def _update_gui(self) -> None:
    if self._updating_gui:
        return
    self._updating_gui = True
    try:
        for mapping in list(self._guis.values()):
            for name, connector in mapping.items():
                connector.write(_get(self, name))
    finally:
        self._updating_gui = False


def _connect_parameters_to_gui(self, mapping: dict) -> int:
    for name in mapping:
        _check_name(self, name)
    connectors = {name: create_connector(widget, self.allParameters[name].datatype) for name, widget in mapping.items()}
    tag = self._next_tag
    self._next_tag += 1
    self._guis[tag] = connectors
    for name, connector in connectors.items():
        connector.write(_get(self, name))

        def changed(name=name, connector=connector) -> None:
            if not self._updating_gui:
                _set(self, name, connector.read())
        connector.on_changed(changed)
    self._gui_observers[tag] = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent,
                                                              lambda caller, event: _update_gui(self))
    return tag


def _connect_gui(self, gui) -> int:
    from PySide6 import QtWidgets
    if getattr(gui, "isWidgetType", lambda: False)():
        candidates = gui.findChildren(QtWidgets.QWidget)
    else:
        candidates = list(vars(gui).values())   # Slicer calls .property() on every attribute
    mapping = {}
    for widget in candidates:
        name = widget.property(SlicerParameterNamePropertyName)
        if name:
            mapping[name] = widget
    return _connect_parameters_to_gui(self, mapping)


def _disconnect_gui(self, tag) -> None:
    for connector in self._guis.pop(tag, {}).values():
        connector.on_changed(None)
    if tag in self._gui_observers:
        self.parameterNode.RemoveObserver(self._gui_observers.pop(tag))


def _process(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    parameters = {}
    for name, datatype in hints.items():
        base, annotations = split_annotations(datatype)
        validators, others = split_validators(annotations)
        serializer = create_serializer(base, validators)
        defaults = [a for a in others if isinstance(a, Default)]
        others = [a for a in others if not isinstance(a, Default)]
        if hasattr(cls, name):
            default = Default(getattr(cls, name))
        else:
            default = defaults[0] if defaults else Default(serializer.default())
        if others:
            logging.warning(f"Unused annotations: {others}")
        parameters[name] = _Parameter(name, datatype, serializer, default)
        setattr(cls, name, property(lambda self, n=name: _get(self, n), lambda self, value, n=name: _set(self, n, value)))
    for reserved in _RESERVED:
        if reserved in cls.__dict__ or any(reserved in vars(base) for base in cls.__mro__[1:] if base is not object):
            raise ValueError(f"Cannot use reserved name '{reserved}' in a parameterNodeWrapper")
    cls.allParameters = parameters
    cls._is_parameter_node_wrapper = True
    cls.__init__ = _init
    cls.default = lambda self, name: (_check_name(self, name), self.allParameters[name].default)[1]
    cls.isCached = lambda self, name: (_check_name(self, name), True)[1]
    cls.dataType = staticmethod(lambda name: parameters[name].datatype if name in parameters
                                else _check_name(cls, name))
    cls.getValue, cls.setValue = _get, _set
    cls.connectGui, cls.connectParametersToGui, cls.disconnectGui = _connect_gui, _connect_parameters_to_gui, _disconnect_gui
    cls.StartModify = lambda self: self.parameterNode.StartModify()
    cls.EndModify = lambda self, was_modified: self.parameterNode.EndModify(was_modified)
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    cls.Modified = lambda self: self.parameterNode.Modified()
    return cls


def parameterNodeWrapper(classtype=None):
    """Class decorator, usable as ``@parameterNodeWrapper`` or ``@parameterNodeWrapper()``."""
    if classtype is None:
        return _process
    return _process(classtype)


def isParameterNodeWrapper(obj) -> bool:
    return getattr(obj, "_is_parameter_node_wrapper", False)
