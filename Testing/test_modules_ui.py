"""Each module's .ui matches its module file, by Slicer's rules.

Every widget with a ``SlicerParameterName`` names a field of the module's parameter-node class, and the
widget's class / the field's annotated type is a pair Slicer (>= 5.10, the declared minimum) has a GUI
connector for: ``rule_for`` of the strict stand-in refuses exactly what Slicer's ``connectGui`` refuses
(a combo box bound to a str without ``Choice``, an unbounded slider, any other class/type pair).
Sliders are bounded in the .ui as in the parameter class (Slicer replaces the .ui bounds with
``WithinRange``'s). Every ``self.ui.<name>`` the module code uses exists in the .ui. The .ui is parsed
as XML here; ``test_module_panels.py`` binds the same widgets live on real Qt.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from slicer_harness import load_module_file

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["RadAISegment", "RadAIVolumetrics"]
#: files whose code uses a module's ``self.ui`` widgets: the module file and its GUI sections
GUI_SOURCES = {"RadAISegment": ["RadAISegment/RadAISegment.py", "RadAISegment/RadAISegmentLib/models_section.py"],
               "RadAIVolumetrics": ["RadAIVolumetrics/RadAIVolumetrics.py"]}


def _gui_source(module: str) -> str:
    return "\n".join((ROOT / path).read_text(encoding="utf-8") for path in GUI_SOURCES[module])


@pytest.fixture(scope="module")
def parameter_classes(slicer_scene):
    classes = {}
    for module in MODULES:
        code = load_module_file(f"{module}/{module}.py", f"_radai_ui_rules_{module}")
        classes[module] = getattr(code, f"{module}ParameterNode")
    return classes


def _ui_widgets(module: str) -> dict[str, ET.Element]:
    root = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _property(widget: ET.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return next(iter(prop)).text
    return None


def _bindings(module: str) -> list[tuple[str, str, str]]:
    """(widget name, widget class, parameter name) of every bound widget of a module's .ui."""
    return [(name, widget.get("class"), _property(widget, "SlicerParameterName"))
            for name, widget in _ui_widgets(module).items() if _property(widget, "SlicerParameterName")]


@pytest.mark.parametrize("module", MODULES)
def test_every_binding_is_one_slicer_accepts(module, parameter_classes):
    from slicer.parameterNodeWrapper import SLICER_RULES_FROM, rule_for
    assert SLICER_RULES_FROM == "5.10"
    parameters = parameter_classes[module].allParameters
    bindings = _bindings(module)
    assert len(bindings) >= 5
    for widget, cls, parameter in bindings:
        assert parameter in parameters, f"{module}.ui {widget} binds unknown field {parameter!r}"
        rule = rule_for(cls, parameters[parameter].datatype)     # raises where Slicer's connectGui raises
        if rule.name == "qMRMLNodeComboBoxToNode":
            node_types = [s.text for s in _ui_widgets(module)[widget].iter("string") if s.text.startswith("vtkMRML")]
            assert node_types == [parameters[parameter].datatype.__name__], (widget, node_types)


def test_the_rules_refuse_what_slicer_refuses():
    """The pairs issue 17 found RadAISegment.ui binding, and their fixes."""
    from typing import Annotated

    from slicer import vtkMRMLScalarVolumeNode
    from slicer.parameterNodeWrapper import Choice, Maximum, Minimum, WithinRange, rule_for
    with pytest.raises(RuntimeError, match="requires the Choice annotation"):
        rule_for("QComboBox", str)
    with pytest.raises(RuntimeError, match="requires the Choice annotation"):
        rule_for("ctkComboBox", Annotated[int, WithinRange(0, 3)])
    assert rule_for("QComboBox", Annotated[str, Choice(["cpu", "cuda"])]).name == "QComboBoxToStringable"
    for slider in ("ctkSliderWidget", "qMRMLSliderWidget"):
        with pytest.raises(RuntimeError, match="unbounded"):
            rule_for(slider, float)
        with pytest.raises(RuntimeError, match="unbounded"):
            rule_for(slider, Annotated[float, Minimum(0)])
        assert rule_for(slider, Annotated[float, Minimum(0), Maximum(1)]).name.endswith("ToFloatInt")
    with pytest.raises(RuntimeError, match="unbounded"):
        rule_for("QSlider", int)
    assert rule_for("QSpinBox", int).name == "QSliderOrSpinBoxToInt"           # a spin box may be unbounded
    for widget, datatype in (("QSpinBox", float), ("QCheckBox", int), ("QLineEdit", int), ("QDateEdit", str),
                             ("qMRMLNodeComboBox", str), ("QComboBox", vtkMRMLScalarVolumeNode),
                             ("QTableWidget", str), ("ctkSliderWidget", str)):
        with pytest.raises(RuntimeError, match="Unable to create GUI connector"):
            rule_for(widget, datatype)


@pytest.mark.parametrize("module", MODULES)
def test_slider_bounds_in_the_ui_match_within_range(module, parameter_classes):
    from slicer.parameterNodeWrapper import WithinRange
    from slicer.parameterNodeWrapper.types import first_of, split_annotations
    parameters = parameter_classes[module].allParameters
    sliders = [(w, p) for w, cls, p in _bindings(module) if cls in ("ctkSliderWidget", "qMRMLSliderWidget")]
    assert sliders
    for widget, parameter in sliders:
        bounds = first_of(split_annotations(parameters[parameter].datatype)[1], WithinRange)
        element = _ui_widgets(module)[widget]
        ui_bounds = (float(_property(element, "minimum")), float(_property(element, "maximum")))
        assert ui_bounds == (bounds.minimum, bounds.maximum), (widget, ui_bounds, bounds.minimum, bounds.maximum)


@pytest.mark.parametrize("module, filled_box", [("RadAISegment", "modelComboBox"),
                                                ("RadAIVolumetrics", "cineModelComboBox")])
def test_combo_boxes_the_code_fills_are_not_bound(module, filled_box):
    """Model combo boxes are filled from the model cache by the code: Slicer's Choice connector would clear them."""
    filled = set(re.findall(r"self\.ui\.(\w+)\.addItems?\(", _gui_source(module)))
    assert filled_box in filled
    bound = {widget for widget, _, _ in _bindings(module)}
    assert not filled & bound, filled & bound


@pytest.mark.parametrize("module", MODULES)
def test_every_widget_the_code_uses_exists(module: str) -> None:
    source = _gui_source(module)
    used = set(re.findall(r"self\.ui\.([A-Za-z_]\w*)", source))
    assert used, f"{module}.py looks up no widgets"
    missing = used - set(_ui_widgets(module))
    assert not missing, f"{module}.py uses widgets missing from {module}.ui: {sorted(missing)}"


@pytest.mark.parametrize("module", MODULES)
def test_node_selectors_receive_the_scene(module: str) -> None:
    text = (ROOT / module / "Resources" / "UI" / f"{module}.ui").read_text(encoding="utf-8")
    selectors = [n for n, w in _ui_widgets(module).items() if w.get("class") == "qMRMLNodeComboBox"]
    for name in selectors:
        assert re.search(rf"mrmlSceneChanged\(vtkMRMLScene\*\)</signal>\s*<receiver>{name}</receiver>", text), (
            f"{module}.ui: {name} is not connected to mrmlSceneChanged (it would list no nodes in Slicer)"
        )
