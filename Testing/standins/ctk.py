"""Stand-ins for the CTK widgets RadAI's .ui files use, on PySide6 (test-only; never shipped).

Each has the Qt properties and signals of the CTK class that the .ui files and Slicer's GUI
connectors use (checked by the loader: a .ui property a stand-in lacks is an error):

- ``ctkCollapsibleButton``: a button-like header (``text``, ``collapsed``) over its layout; collapsing
  hides the contents.
- ``ctkSliderWidget``: slider + spin box for a double (``value``, ``minimum``, ``maximum``,
  ``singleStep``, ``decimals``; ``valueChanged(double)``), clamping like CTK.
- ``ctkCheckBox`` / ``ctkComboBox``: the Qt widgets under CTK's names (distinct classes, since
  Slicer's connectors match the exact class).
"""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

import pythonqt
import qt

_HEADER_MARGIN = 4


class ctkCollapsibleButton(pythonqt.PythonQtObject, QtWidgets.QAbstractButton):  # noqa: N801 - CTK's name
    contentsCollapsed = QtCore.Signal(bool)
    _pythonqt_signals = {"contentsCollapsed(bool)": "contentsCollapsed(bool)"}

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._collapsed = False
        QtWidgets.QAbstractButton.setCheckable(self, True)
        QtWidgets.QAbstractButton.setChecked(self, True)
        self.toggled.connect(lambda checked: self._set_collapsed(not checked))
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Preferred, QtWidgets.QSizePolicy.Policy.Preferred)
        self._apply_margins()

    def _header_height(self) -> int:
        return QtGui.QFontMetrics(QtWidgets.QWidget.font(self)).height() + 10

    def _apply_margins(self) -> None:
        QtWidgets.QWidget.setContentsMargins(self, _HEADER_MARGIN, self._header_height() + _HEADER_MARGIN,
                                             _HEADER_MARGIN, _HEADER_MARGIN)

    def _is_collapsed(self) -> bool:
        return self._collapsed

    def _set_collapsed(self, collapsed: bool) -> None:
        if collapsed == self._collapsed:
            return
        self._collapsed = bool(collapsed)
        QtWidgets.QAbstractButton.setChecked(self, not self._collapsed)
        for child in QtCore.QObject.children(self):
            if isinstance(child, QtWidgets.QWidget):
                child.setVisible(not self._collapsed)
        QtWidgets.QWidget.setMaximumHeight(self, self._header_height() + 2 * _HEADER_MARGIN if self._collapsed
                                           else 16777215)
        QtWidgets.QWidget.updateGeometry(self)
        self.contentsCollapsed.emit(self._collapsed)

    collapsed = QtCore.Property(bool, _is_collapsed, _set_collapsed)

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt override
        hint = super().sizeHint() if QtWidgets.QWidget.layout(self) else QtCore.QSize(100, 0)
        layout = QtWidgets.QWidget.layout(self)
        inner = layout.sizeHint() if layout is not None and not self._collapsed else QtCore.QSize(0, 0)
        text_width = QtGui.QFontMetrics(QtWidgets.QWidget.font(self)).horizontalAdvance(
            QtWidgets.QAbstractButton.text(self)) + 40
        margins = QtWidgets.QWidget.contentsMargins(self)
        return QtCore.QSize(max(hint.width(), inner.width() + margins.left() + margins.right(), text_width),
                            inner.height() + margins.top() + margins.bottom())

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt override
        return self.sizeHint() if self._collapsed else QtCore.QSize(0, self._header_height())

    def hitButton(self, position: QtCore.QPoint) -> bool:  # noqa: N802 - Qt override
        return 0 <= position.y() < self._header_height()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QtWidgets.QStylePainter(self)
        option = QtWidgets.QStyleOptionButton()
        option.initFrom(self)
        option.rect = QtCore.QRect(0, 0, QtWidgets.QWidget.width(self), self._header_height())
        option.text = ""
        painter.drawControl(QtWidgets.QStyle.ControlElement.CE_PushButton, option)
        arrow = QtWidgets.QStyleOption()
        arrow.initFrom(self)
        size = self._header_height() // 2
        arrow.rect = QtCore.QRect(6, (self._header_height() - size) // 2, size, size)
        element = (QtWidgets.QStyle.PrimitiveElement.PE_IndicatorArrowRight if self._collapsed
                   else QtWidgets.QStyle.PrimitiveElement.PE_IndicatorArrowDown)
        painter.drawPrimitive(element, arrow)
        text_rect = QtCore.QRect(12 + size, 0, QtWidgets.QWidget.width(self) - 16 - size, self._header_height())
        painter.drawText(text_rect, int(QtCore.Qt.AlignmentFlag.AlignVCenter | QtCore.Qt.AlignmentFlag.AlignLeft),
                         QtWidgets.QAbstractButton.text(self))
        if not self._collapsed:
            frame = QtCore.QRect(0, self._header_height(), QtWidgets.QWidget.width(self) - 1,
                                 QtWidgets.QWidget.height(self) - self._header_height() - 1)
            painter.setPen(QtWidgets.QWidget.palette(self).color(QtGui.QPalette.ColorRole.Mid))
            painter.drawRect(frame)


class ctkSliderWidget(pythonqt.PythonQtObject, QtWidgets.QWidget):  # noqa: N801 - CTK's name
    """A double value with a slider and a spin box; the slider works in ``singleStep`` units."""

    valueChanged = QtCore.Signal(float)
    _pythonqt_signals = {"valueChanged(double)": "valueChanged(double)"}

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._minimum, self._maximum, self._step, self._value, self._decimals = 0.0, 99.0, 1.0, 0.0, 2
        self._slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self._spin = QtWidgets.QDoubleSpinBox(self)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._slider, 1)
        layout.addWidget(self._spin)
        self._slider.valueChanged.connect(lambda steps: self._set_value(self._minimum + steps * self._step))
        self._spin.valueChanged.connect(self._set_value)
        self._sync()

    def _sync(self) -> None:
        for widget in (self._slider, self._spin):
            widget.blockSignals(True)
        self._spin.setDecimals(self._decimals)
        self._spin.setRange(self._minimum, self._maximum)
        self._spin.setSingleStep(self._step)
        self._spin.setValue(self._value)
        steps = int(round((self._maximum - self._minimum) / self._step)) if self._step > 0 else 0
        self._slider.setRange(0, max(steps, 0))
        self._slider.setValue(int(round((self._value - self._minimum) / self._step)) if self._step > 0 else 0)
        for widget in (self._slider, self._spin):
            widget.blockSignals(False)

    def _get_value(self) -> float:
        return self._value

    def _set_value(self, value: float) -> None:
        value = min(max(float(value), self._minimum), self._maximum)
        value = round(value, self._decimals)
        changed = value != self._value
        self._value = value
        self._sync()
        if changed:
            self.valueChanged.emit(value)

    def _set_minimum(self, minimum: float) -> None:
        self._minimum = float(minimum)
        self._maximum = max(self._maximum, self._minimum)
        self._set_value(self._value)
        self._sync()

    def _set_maximum(self, maximum: float) -> None:
        self._maximum = float(maximum)
        self._minimum = min(self._minimum, self._maximum)
        self._set_value(self._value)
        self._sync()

    def _set_step(self, step: float) -> None:
        self._step = float(step)
        self._sync()

    def _set_decimals(self, decimals: int) -> None:
        self._decimals = int(decimals)
        self._set_value(self._value)
        self._sync()

    value = QtCore.Property(float, _get_value, _set_value, notify=valueChanged)
    minimum = QtCore.Property(float, lambda self: self._minimum, _set_minimum)
    maximum = QtCore.Property(float, lambda self: self._maximum, _set_maximum)
    singleStep = QtCore.Property(float, lambda self: self._step, _set_step)
    decimals = QtCore.Property(int, lambda self: self._decimals, _set_decimals)

    def setValue(self, value: float) -> None:  # noqa: N802 - CTK slot
        self._set_value(value)


ctkCheckBox = pythonqt.pythonqt_class(QtWidgets.QCheckBox, "ctkCheckBox", "ctk")
ctkComboBox = pythonqt.pythonqt_class(QtWidgets.QComboBox, "ctkComboBox", "ctk")

for _cls in (ctkCollapsibleButton, ctkSliderWidget, ctkCheckBox, ctkComboBox):
    qt.CUSTOM_WIDGETS[_cls.__name__] = _cls
