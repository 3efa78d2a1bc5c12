"""Test-only stand-in for ``slicer.parameterNodeWrapper`` (absent from the headless core).

``@parameterNodeWrapper`` turns an annotated class into one constructed from a parameter node;
annotated attributes start at their class defaults (or ``None``) and are plain Python attributes.
Annotated[...] helpers (``WithinRange``, ``Default``, ``Choice``, ``Minimum``, ``Maximum``) are accepted
and ignored apart from ``Default``.
"""
from __future__ import annotations

import typing

__all__ = ["parameterNodeWrapper", "WithinRange", "Default", "Choice", "Minimum", "Maximum", "Decimals",
           "SingleStep", "parameterPack"]


class _Marker:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class WithinRange(_Marker): pass
class Choice(_Marker): pass
class Minimum(_Marker): pass
class Maximum(_Marker): pass
class Decimals(_Marker): pass
class SingleStep(_Marker): pass


class Default(_Marker):
    @property
    def value(self):
        return self.args[0] if self.args else None


def _default_for(cls, name, annotation):
    if name in cls.__dict__:
        return cls.__dict__[name]
    for extra in getattr(annotation, "__metadata__", ()):
        if isinstance(extra, Default):
            return extra.value
    return None


def parameterNodeWrapper(cls):
    annotations = typing.get_type_hints(cls, include_extras=True) if hasattr(cls, "__annotations__") else {}

    def __init__(self, parameterNode=None):
        self.parameterNode = parameterNode
        for name, annotation in annotations.items():
            setattr(self, name, _default_for(cls, name, annotation))

    cls.__init__ = __init__
    cls.allParameters = annotations
    return cls


parameterPack = parameterNodeWrapper
