"""Annotation helpers of the ``slicer.parameterNodeWrapper`` stand-in: ``Default``, ``Decimals``,
``SingleStep`` and splitting ``Annotated[...]`` types (Slicer flattens nested ``Annotated``)."""
from __future__ import annotations

import typing
from typing import Annotated, Any

__all__ = ["Default", "Decimals", "SingleStep", "split_annotations", "unannotated", "first_of"]


class Default:
    """Default of a parameter (``Default(value)`` or ``Default(generator=callable)``)."""

    def __init__(self, value: Any = None, *, generator=None) -> None:
        self._value, self._generator = value, generator

    @property
    def value(self) -> Any:
        return self._generator() if self._generator else self._value


class Decimals:
    def __init__(self, value: int) -> None:
        self.value = value


class SingleStep:
    def __init__(self, value: float) -> None:
        self.value = value


def split_annotations(datatype) -> tuple[Any, tuple]:
    """``(type, annotations)`` of a possibly ``Annotated`` type."""
    arguments = typing.get_args(Annotated[datatype, "marker"])
    return arguments[0], tuple(arguments[1:-1])


def unannotated(datatype) -> Any:
    return split_annotations(datatype)[0]


def first_of(annotations, kind: type):
    return next((a for a in annotations if isinstance(a, kind)), None)
