"""Each module's .ui matches its module file.

Every widget with a ``SlicerParameterName`` names an existing parameter-node field of a matching
type, and every ``self.ui.<name>`` the module code uses exists in the .ui. Parsed statically
(ast + XML), so it runs without Qt.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["RadAISegment", "RadAIVolumetrics"]

# widget class -> accepted annotation base types
WIDGET_TYPES = {
    "qMRMLNodeComboBox": None,  # any vtkMRML*Node, checked against nodeTypes below
    "qMRMLSubjectHierarchyComboBox": None,
    "QCheckBox": {"bool"},
    "ctkCheckBox": {"bool"},
    "QLineEdit": {"str"},
    "QComboBox": {"str"},
    "ctkComboBox": {"str"},
    "ctkSliderWidget": {"float", "int"},
    "qMRMLSliderWidget": {"float", "int"},
    "QDoubleSpinBox": {"float"},
    "ctkDoubleSpinBox": {"float"},
    "QSpinBox": {"int"},
    "QSlider": {"int"},
}


def _base_type(annotation: ast.expr) -> str:
    if isinstance(annotation, ast.Subscript):  # Annotated[float, ...] / Optional[...]
        inner = annotation.slice
        first = inner.elts[0] if isinstance(inner, ast.Tuple) else inner
        return _base_type(first)
    if isinstance(annotation, ast.Attribute):
        return annotation.attr
    if isinstance(annotation, ast.Name):
        return annotation.id
    return ast.unparse(annotation)


def _parameter_fields(module: str) -> dict[str, str]:
    tree = ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            ast.unparse(d).endswith("parameterNodeWrapper") for d in node.decorator_list
        ):
            return {
                s.target.id: _base_type(s.annotation)
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
    raise AssertionError(f"{module}.py has no @parameterNodeWrapper class")


def _ui_widgets(module: str) -> dict[str, ET.Element]:
    root = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _parameter_name(widget: ET.Element) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == "SlicerParameterName":
            return prop.findtext("string")
    return None


@pytest.mark.parametrize("module", MODULES)
def test_bound_widgets_name_existing_fields_of_matching_type(module: str) -> None:
    fields = _parameter_fields(module)
    bound = 0
    for name, widget in _ui_widgets(module).items():
        parameter = _parameter_name(widget)
        if parameter is None:
            continue
        bound += 1
        assert parameter in fields, f"{module}.ui widget {name} binds unknown field {parameter!r}"
        cls = widget.get("class")
        assert cls in WIDGET_TYPES, f"{module}.ui widget {name}: unexpected bound widget class {cls}"
        field_type = fields[parameter]
        accepted = WIDGET_TYPES[cls]
        if accepted is None:
            node_types = [s.text for s in widget.iter("string") if s.text and s.text.startswith("vtkMRML")]
            assert field_type.startswith("vtkMRML"), f"{name} is a node selector but {parameter} is {field_type}"
            assert field_type in node_types, f"{name} lists {node_types}, field {parameter} is {field_type}"
        else:
            assert field_type in accepted, f"{name} ({cls}) bound to {parameter}: {field_type}"
    assert bound >= 3, f"{module}.ui binds only {bound} widgets"


@pytest.mark.parametrize("module", MODULES)
def test_every_widget_the_code_uses_exists(module: str) -> None:
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
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
