"""The test stand-ins refuse what Slicer refuses (Slicer >= 5.10's documented rules), so a module that
passes here does not fail in Slicer for these reasons: parameter values live in the scene node,
validators run on every write, a module needs its ``parent``, and PythonQt's idioms behave as in Slicer."""
# no "from __future__ import annotations": the wrapper classes below resolve their annotations at definition

from typing import Annotated

import pytest

pytestmark = pytest.mark.slicer


@pytest.fixture(scope="module")
def wrapper_class(slicer_scene):
    from slicer import vtkMRMLScalarVolumeNode
    from slicer.parameterNodeWrapper import Choice, Default, WithinRange, parameterNodeWrapper

    @parameterNodeWrapper
    class Parameters:
        volume: vtkMRMLScalarVolumeNode
        device: Annotated[str, Choice(["auto", "cpu"])] = "auto"
        opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
        count: Annotated[int, Default(3)]
        flag: bool
        label: str = "x"

    return Parameters


def test_values_are_stored_in_the_node_and_seen_by_a_second_wrapper(wrapper_class, slicer_scene):
    node = slicer_scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    first = wrapper_class(node)
    assert (first.volume, first.device, first.opacity, first.count, first.flag, first.label) == (None, "auto", 0.5, 3,
                                                                                                  False, "x")
    assert node.GetParameter("opacity") == "0.5" and node.GetParameter("flag") == "False"   # defaults written
    volume = slicer_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "v")
    first.volume, first.device, first.opacity, first.count, first.flag = volume, "cpu", 1, 7, True
    assert [node.GetParameter(n) for n in ("device", "opacity", "count", "flag")] == ["cpu", "1", "7", "True"]
    assert node.GetNodeReference("volume") is volume
    second = wrapper_class(node)
    assert (second.volume, second.device, second.opacity, second.count, second.flag) == (volume, "cpu", 1.0, 7, True)
    assert isinstance(second.opacity, float)
    node.SetParameter("label", "set by hand")        # a change made directly in the node reaches both wrappers
    assert first.label == second.label == "set by hand"
    slicer_scene.RemoveNode(volume)
    assert first.volume is None and second.volume is None


@pytest.mark.parametrize("name,value,error", [
    ("device", "cuda", ValueError), ("opacity", 1.5, ValueError), ("opacity", "0.2", TypeError),
    ("count", 2.5, TypeError), ("flag", 1, TypeError), ("label", None, ValueError), ("volume", "v", TypeError)])
def test_validators_refuse_bad_writes_and_keep_the_old_value(wrapper_class, slicer_scene, name, value, error):
    parameters = wrapper_class(slicer_scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    before = getattr(parameters, name)
    with pytest.raises(error):
        setattr(parameters, name, value)
    assert getattr(parameters, name) == before


def test_class_definitions_slicer_refuses(slicer_scene):
    from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper

    class Unserializable:
        pass

    with pytest.raises(TypeError, match="Unable to create serializer"):
        @parameterNodeWrapper
        class WithObject:
            thing: Unserializable

    with pytest.raises(ValueError, match="reserved name 'Modified'"):
        @parameterNodeWrapper
        class WithReserved:
            Modified: int

    @parameterNodeWrapper
    class BadDefault:
        device: Annotated[str, Choice(["cpu"])] = "auto"

    with pytest.raises(ValueError, match="must be one of"):          # the default is validated on first write
        BadDefault(slicer_scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))


def test_scripted_module_requires_its_parent(slicer_scene, tmp_path):
    import types

    from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic
    with pytest.raises(TypeError):
        ScriptedLoadableModule()
    with pytest.raises(AttributeError):
        ScriptedLoadableModule(None)
    parent = types.SimpleNamespace(path=str(tmp_path / "Mod.py"))
    module = type("Mod", (ScriptedLoadableModule,), {})(parent)
    assert parent.title == "" and module.resourcePath("UI/Mod.ui") == str(tmp_path / "Resources" / "UI" / "Mod.ui")
    logic = type("ModLogic", (ScriptedLoadableModuleLogic,), {})()
    node = logic.getParameterNode()
    assert node.GetAttribute("ModuleName") == "Mod" and logic.getParameterNode() is node


def test_pythonqt_idioms_on_real_qt(slicer_scene):
    from slicer_qt_harness import start_qt_slicer
    start_qt_slicer()
    import pythonqt
    import qt
    label, button = qt.QLabel(), qt.QPushButton()
    label.text = "hello"
    button.enabled = False
    assert label.text == "hello" and button.enabled is False and label.name == ""
    combo = qt.QComboBox()
    with pytest.raises(AttributeError, match="read-only"):
        combo.count = 3
    calls = []
    assert button.connect("clicked(bool)", lambda: calls.append("no argument taken"))
    assert button.connect("clicked(bool)", lambda checked: calls.append(checked))
    with pytest.raises(RuntimeError, match="no signal clicked\\(int\\)"):
        button.connect("clicked(int)", print)
    button.enabled = True
    button.click()
    assert calls == ["no argument taken", False]
    errors_before = len(pythonqt.slot_errors)
    button.connect("clicked(bool)", lambda: 1 / 0)
    button.click()                                   # an exception in a slot is printed and recorded, not raised
    assert isinstance(pythonqt.slot_errors[-1], ZeroDivisionError) and len(pythonqt.slot_errors) == errors_before + 1
    del pythonqt.slot_errors[errors_before:]
