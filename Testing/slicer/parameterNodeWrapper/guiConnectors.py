"""Which widget may bind which parameter type, by Slicer's rules (test stand-in for Slicer >= 5.10;
the rules are the same in 5.12), and the live connectors that keep widget and parameter in step.

Slicer picks the first connector whose widget classes contain the widget's *exact* class (a subclass
does not count) and whose type matches the parameter's unannotated type. Some connectors demand
annotations: a ``QComboBox``/``ctkComboBox`` bound to ``str``/``int``/``float``/``bool`` needs
``Choice`` (and then clears the combo box and fills it with the choices); a ``QSlider`` needs a
bounded ``int``; a ``ctkSliderWidget``/``qMRMLSliderWidget`` a bounded number (``WithinRange``, or
``Minimum`` and ``Maximum``), whose bounds then replace the widget's. No matching connector is a
``RuntimeError`` from ``connectGui`` (so from the Widget's ``setup()``).
"""
from __future__ import annotations

import dataclasses
import enum
import pathlib
from typing import Any, Callable

from .serializers import node_types
from .types import Decimals, SingleStep, first_of, split_annotations
from .validators import Choice, Maximum, Minimum, WithinRange

__all__ = ["ConnectorRule", "RULES", "rule_for", "create_connector"]

_PATHS = {pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath,
          pathlib.PureWindowsPath}


def _is(*types) -> Callable[[Any], bool]:
    return lambda datatype: datatype in types


def _is_enum(datatype) -> bool:
    return isinstance(datatype, type) and issubclass(datatype, enum.Enum)


def _is_named(name: str) -> Callable[[Any], bool]:
    return lambda datatype: getattr(datatype, "__name__", None) == name


@dataclasses.dataclass(frozen=True)
class ConnectorRule:
    name: str
    widget_classes: frozenset
    accepts: Callable[[Any], bool]
    needs: str = ""                       # "choice" | "bounds" (for bounded_classes) | ""
    bounded_classes: frozenset = frozenset()


#: Slicer's connectors in registration order (the first that can represent the pair is used)
RULES = (
    ConnectorRule("QCheckBoxToBool", frozenset({"QCheckBox", "ctkCheckBox"}), _is(bool)),
    ConnectorRule("QCheckablePushButtonToBool", frozenset({"QPushButton"}), _is(bool)),
    ConnectorRule("ctkCheckablePushButtonToBool", frozenset({"ctkCheckablePushButton"}), _is(bool)),
    ConnectorRule("QSliderOrSpinBoxToInt", frozenset({"QSlider", "QSpinBox"}), _is(int), "bounds",
                  frozenset({"QSlider"})),
    ConnectorRule("QDoubleSpinBoxCtkSliderWidgetToFloatInt",
                  frozenset({"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider",
                             "ctkDoubleSpinBox", "qMRMLSpinBox"}), _is(float, int), "bounds",
                  frozenset({"ctkSliderWidget", "qMRMLSliderWidget"})),
    ConnectorRule("QComboBoxToStringable", frozenset({"QComboBox", "ctkComboBox"}), _is(int, float, str, bool), "choice"),
    ConnectorRule("QComboBoxToEnum", frozenset({"QComboBox", "ctkComboBox"}), _is_enum),
    ConnectorRule("QLineEditToStr", frozenset({"QLineEdit"}), _is(str)),
    ConnectorRule("QLabelToStr", frozenset({"QLabel"}), _is(str)),
    ConnectorRule("QTextEditPlainTextToStr", frozenset({"QTextEdit"}), _is(str)),
    ConnectorRule("ctkRangeWidgetToRange", frozenset({"ctkRangeWidget", "ctkDoubleRangeSlider", "qMRMLRangeWidget"}),
                  _is_named("FloatRange")),
    ConnectorRule("ctkPathLineEditToPath", frozenset({"ctkPathLineEdit"}), lambda t: t in _PATHS),
    ConnectorRule("ctkDirectoryButtonToPath", frozenset({"ctkDirectoryButton"}), lambda t: t in _PATHS),
    ConnectorRule("qMRMLNodeComboBoxToNode", frozenset({"qMRMLNodeComboBox"}), lambda t: node_types(t) is not None),
    ConnectorRule("ctkColorPickerButtonToQColor", frozenset({"ctkColorPickerButton"}), _is_named("QColor")),
)


def _bounds(annotations) -> tuple[Any, Any] | None:
    within = first_of(annotations, WithinRange)
    if within is not None:
        return within.minimum, within.maximum
    low, high = first_of(annotations, Minimum), first_of(annotations, Maximum)
    return (low.minimum, high.maximum) if low is not None and high is not None else None


def rule_for(widget_class: str, datatype) -> ConnectorRule:
    """The connector Slicer would use for a widget of class ``widget_class`` bound to ``datatype``
    (possibly ``Annotated``); ``RuntimeError`` where Slicer's ``connectGui`` raises."""
    base, annotations = split_annotations(datatype)
    for rule in RULES:
        if widget_class in rule.widget_classes and rule.accepts(base):
            if rule.needs == "choice" and first_of(annotations, Choice) is None:
                raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
            if rule.needs == "bounds" and widget_class in rule.bounded_classes and _bounds(annotations) is None:
                raise RuntimeError(f"Cannot have a connection to {widget_class} where the {base.__name__} type is "
                                   "unbounded (annotate it with WithinRange, or Minimum and Maximum).")
            return rule
    raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type '{widget_class}'.")


class Connector:
    """Keeps one widget and one parameter in step: ``read()`` / ``write(value)`` / ``on_changed(callback)``."""

    signal = ""

    def __init__(self, widget, datatype) -> None:
        self.widget = widget
        self.datatype, self.annotations = split_annotations(datatype)
        self._callback = None

    def on_changed(self, callback) -> None:
        if self.signal:
            if self._callback is not None:
                getattr(self.widget, self.signal).disconnect(self._changed)
            if callback is not None:
                getattr(self.widget, self.signal).connect(self._changed)
        self._callback = callback

    def _changed(self, *args) -> None:
        if self._callback is not None:
            self._callback()

    def read(self) -> Any:
        raise NotImplementedError

    def write(self, value: Any) -> None:
        raise NotImplementedError


class _Bool(Connector):
    signal = "toggled"

    def __init__(self, widget, datatype) -> None:
        super().__init__(widget, datatype)
        if not widget.property("checkable"):
            widget.setProperty("checkable", True)

    def read(self):
        return bool(self.widget.property("checked"))

    def write(self, value):
        self.widget.setProperty("checked", bool(value))


class _Number(Connector):
    signal = "valueChanged"

    def __init__(self, widget, datatype) -> None:
        super().__init__(widget, datatype)
        decimals, step = first_of(self.annotations, Decimals), first_of(self.annotations, SingleStep)
        if self.widget.metaObject().indexOfProperty("decimals") >= 0:
            if self.datatype is int:
                widget.setProperty("decimals", 0)
            elif decimals is not None:
                widget.setProperty("decimals", decimals.value)
        if step is not None:
            widget.setProperty("singleStep", step.value)
        bounds = _bounds(self.annotations)
        low, high = bounds if bounds is not None else (float("-inf"), float("inf"))
        if self.widget.metaObject().indexOfProperty("decimals") < 0 and bounds is None:   # QSpinBox: int range
            low, high = -(2 ** 31), 2 ** 31 - 1
        widget.setProperty("minimum", low)
        widget.setProperty("maximum", high)

    def read(self):
        value = self.widget.property("value")
        return int(value) if self.datatype is int else value

    def write(self, value):
        self.widget.setProperty("value", int(value) if self.datatype is int else value)


class _Choice(Connector):
    signal = "currentIndexChanged"

    def __init__(self, widget, datatype) -> None:
        super().__init__(widget, datatype)
        self.choices = list(first_of(self.annotations, Choice).choices)
        widget.clear()                     # Slicer refills the combo box with the choices
        for choice in self.choices:
            widget.addItem(str(choice))

    def read(self):
        return self.choices[self.widget.property("currentIndex")]

    def write(self, value):
        if value not in self.choices:
            raise ValueError(f"Unable to find value {value!r} in choices {self.choices}")
        self.widget.setProperty("currentIndex", self.choices.index(value))


class _Enum(_Choice):
    def __init__(self, widget, datatype) -> None:
        Connector.__init__(self, widget, datatype)
        self.choices = list(self.datatype)
        widget.clear()
        for member in self.choices:
            widget.addItem(getattr(self.datatype, "label", lambda m: m.name)(member))


class _Text(Connector):
    signal = "textChanged"

    def read(self):
        return self.widget.property("text")

    def write(self, value):
        if value != self.widget.property("text"):
            self.widget.setProperty("text", value)


class _Label(_Text):
    signal = ""


class _PlainText(Connector):
    signal = "textChanged"

    def read(self):
        return self.widget.toPlainText()

    def write(self, value):
        self.widget.setPlainText(value)


class _Node(Connector):
    signal = "currentNodeChanged"

    def __init__(self, widget, datatype) -> None:
        super().__init__(widget, datatype)
        widget.setProperty("nodeTypes", [cls().GetClassName() for cls in node_types(self.datatype)])

    def read(self):
        return self.widget.currentNode()

    def write(self, value):
        self.widget.setCurrentNode(value)


_LIVE = {"QCheckBoxToBool": _Bool, "QCheckablePushButtonToBool": _Bool, "QSliderOrSpinBoxToInt": _Number,
         "QDoubleSpinBoxCtkSliderWidgetToFloatInt": _Number, "QComboBoxToStringable": _Choice,
         "QComboBoxToEnum": _Enum, "QLineEditToStr": _Text, "QLabelToStr": _Label,
         "QTextEditPlainTextToStr": _PlainText, "qMRMLNodeComboBoxToNode": _Node}


def create_connector(widget, datatype) -> Connector:
    """The live connector for a widget, matching its exact class as the .ui loader created it."""
    import qt
    name = widget.metaObject().className()
    if type(widget) is not qt.widget_class(name):
        raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type "
                           f"'{type(widget)}' (not exactly one of Slicer's widget classes).")
    rule = rule_for(name, datatype)
    if rule.name not in _LIVE:
        raise NotImplementedError(f"The test stand-in has no live {rule.name} connector yet")
    return _LIVE[rule.name](widget, datatype)
