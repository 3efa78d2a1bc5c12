"""How the ``slicer.parameterNodeWrapper`` stand-in stores values in the parameter node, as Slicer does:
numbers and strings as ``str(value)`` parameters, bools as ``"True"``/``"False"``, paths as text, nodes
as node references (a removed node reads back ``None``). Every write runs the type's own validators
(``NotNone``/``IsInstance``) first, then the annotation's. Other types are refused, as a type Slicer
has no serializer for is refused when the class is decorated."""
from __future__ import annotations

import pathlib
import typing
from typing import Any

import slicer

from .validators import IsInstance, NotNone

_PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath,
               pathlib.PureWindowsPath)


def node_types(datatype) -> tuple[type, ...] | None:
    """The MRML node classes of a node type or a Union of node types (and None); None if not one."""
    if isinstance(datatype, type):
        return (datatype,) if issubclass(datatype, slicer.vtkMRMLNode) else None
    if typing.get_origin(datatype) is typing.Union:
        members = [t for t in typing.get_args(datatype) if t is not type(None)]
        if members and all(isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode) for t in members):
            return tuple(members)
    return None


class Serializer:
    """Reads and writes one parameter; ``validators`` run before every write."""

    def __init__(self, datatype, validators: list) -> None:
        self.datatype = datatype
        self.validators = validators

    def default(self) -> Any:
        raise NotImplementedError

    def is_in(self, node, name: str) -> bool:
        return bool(node.HasParameter(name))

    def write(self, node, name: str, value: Any) -> None:
        for validator in self.validators:
            validator.validate(value)
        self._store(node, name, value)

    def _store(self, node, name: str, value: Any) -> None:
        node.SetParameter(name, str(value))

    def read(self, node, name: str) -> Any:
        raise NotImplementedError


class NumberSerializer(Serializer):
    def default(self):
        return 0

    def read(self, node, name):
        return self.datatype(node.GetParameter(name))


class StringSerializer(Serializer):
    def default(self):
        return ""

    def read(self, node, name):
        return node.GetParameter(name)


class BoolSerializer(Serializer):
    def default(self):
        return False

    def _store(self, node, name, value):
        node.SetParameter(name, "True" if value else "False")

    def read(self, node, name):
        return node.GetParameter(name) == "True"


class PathSerializer(Serializer):
    def default(self):
        return self.datatype()

    def read(self, node, name):
        return self.datatype(node.GetParameter(name))


class NodeSerializer(Serializer):
    def default(self):
        return None

    def _store(self, node, name, value):
        node.SetParameter(name, "")   # marks the parameter as present even when the reference is None
        node.SetNodeReferenceID(name, value.GetID() if value is not None else None)

    def read(self, node, name):
        return node.GetNodeReference(name)


def create_serializer(datatype, validators: list) -> Serializer:
    """The serializer for ``datatype`` with its own validators then ``validators``; refuses other types."""
    if datatype in (int, float):
        own = [NotNone(), IsInstance((int, float) if datatype is float else int)]
        return NumberSerializer(datatype, own + validators)
    if datatype is str:
        return StringSerializer(str, [NotNone(), IsInstance(str)] + validators)
    if datatype is bool:
        return BoolSerializer(bool, [NotNone(), IsInstance(bool)] + validators)
    if datatype in _PATH_TYPES:
        return PathSerializer(datatype, [NotNone(), IsInstance(datatype)] + validators)
    nodes = node_types(datatype)
    if nodes is not None:
        return NodeSerializer(datatype, [IsInstance(nodes)] + validators)
    raise TypeError(f"Unable to create serializer for type: {datatype} (the test stand-in supports int, float, str, "
                    "bool, pathlib paths and MRML nodes)")
