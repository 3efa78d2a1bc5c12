"""The Slicer extension layout: top-level CMake, module CMake lists complete, wizard resources present.

No CMake or Slicer needed: the CMakeLists.txt files are parsed as text.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import sync_cmake_lists as sync

REPO_ROOT = Path(__file__).resolve().parents[1]


def _modules() -> list[Path]:
    """Top-level folders shaped like a scripted module: <Name>/<Name>.py and <Name>/<Name>Lib/."""
    return sorted(path for path in REPO_ROOT.iterdir()
                  if (path / f"{path.name}.py").is_file() and (path / f"{path.name}Lib").is_dir())


def test_modules_found():
    assert [module.name for module in _modules()] == list(sync.MODULES)


def test_top_level_cmake_follows_extension_template():
    text = (REPO_ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for variable in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{variable}\s+"[^"]+"\)', text), f"EXTENSION_{variable} missing or empty"
    steps = ["find_package(Slicer ${RadAI_MINIMUM_SLICER_VERSION} REQUIRED)", "include(${Slicer_USE_FILE})"]
    steps += [f"add_subdirectory({module.name})" for module in _modules()]
    steps += ["include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]
    positions = [text.find(step) for step in steps]
    assert -1 not in positions, [step for step, at in zip(steps, positions) if at == -1]
    assert positions == sorted(positions), "template order: find_package, include, modules, config, CPack"
    assert re.search(r"project\(\w+\)", text) and "cmake_minimum_required" in text


@pytest.mark.parametrize("module", sync.MODULES)
def test_module_cmake_lists_every_lib_file(module):
    module_dir = REPO_ROOT / module
    text = (module_dir / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(rf"set\(MODULE_NAME {module}\)", text)
    scripts, resources = sync.listed(text, "MODULE_PYTHON_SCRIPTS"), sync.listed(text, "MODULE_PYTHON_RESOURCES")
    hint = f"\nRun `python Testing/sync_cmake_lists.py --write`, or paste:\n{sync.expected_blocks(module_dir)}"
    missing = sorted(set(sync.expected_scripts(module_dir)) - set(scripts))
    assert not missing, f"{module}/CMakeLists.txt does not list {missing}{hint}"
    missing = sorted(set(sync.expected_resources(module_dir)) - set(resources))
    assert not missing, f"{module}/CMakeLists.txt does not list resources {missing}{hint}"
    absent = [entry for entry in scripts + resources if not (module_dir / entry).is_file()]
    assert not absent, f"{module}/CMakeLists.txt lists files that do not exist: {absent}{hint}"
    assert all(entry.endswith(".py") for entry in scripts)
    assert len(scripts) == len(set(scripts)) and len(resources) == len(set(resources))


@pytest.mark.parametrize("module", sync.MODULES)
def test_module_cmake_has_wizard_build_and_testing_blocks(module):
    module_dir = REPO_ROOT / module
    text = (module_dir / "CMakeLists.txt").read_text(encoding="utf-8")
    build = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", text, flags=re.S)
    assert build, "slicerMacroBuildScriptedModule missing"
    for argument in ("NAME ${MODULE_NAME}", "SCRIPTS ${MODULE_PYTHON_SCRIPTS}", "RESOURCES ${MODULE_PYTHON_RESOURCES}"):
        assert argument in build.group(1)
    testing = text[text.find("if(BUILD_TESTING)"):]
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in testing
    assert "add_subdirectory(Testing)" in testing and (module_dir / "Testing" / "CMakeLists.txt").is_file()


@pytest.mark.parametrize("module", sync.MODULES)
def test_module_wizard_resources(module):
    resources = REPO_ROOT / module / "Resources"
    ui = (resources / "UI" / f"{module}.ui").read_text(encoding="utf-8")
    assert "<ui " in ui and "</ui>" in ui
    icon = mpimg.imread(resources / "Icons" / f"{module}.png")
    assert icon.shape[:2] == (128, 128)
    colours = np.unique((icon[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 16, "icon looks blank"


@pytest.mark.parametrize("module", sync.MODULES)
def test_requirements_are_valid_and_match_the_package(module):
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    dependencies = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", pyproject, flags=re.S | re.M).group(1)
    declared = {canonicalize_name(Requirement(item).name): Requirement(item)
                for item in re.findall(r'"([^"]+)"', dependencies)}
    lines = [line.split("#", 1)[0].strip() for line in
             (REPO_ROOT / module / "Resources" / f"{module}-requirements.txt").read_text(encoding="utf-8").splitlines()]
    requirements = [Requirement(line) for line in lines if line]
    assert requirements, "requirements.txt lists no package"
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in declared, f"{requirement.name} is not a dependency in pyproject.toml"
        assert str(requirement.specifier) == str(declared[name].specifier), (
            f"{requirement.name}: '{requirement.specifier}' differs from pyproject.toml's '{declared[name].specifier}'")


def test_sync_helper_lists_nested_scripts_and_data(tmp_path):
    module_dir = tmp_path / "Fake"
    (module_dir / "FakeLib" / "sub").mkdir(parents=True)
    (module_dir / "FakeLib" / "__pycache__").mkdir()
    for name in ("Fake.py", "FakeLib/__init__.py", "FakeLib/sub/deep.py", "FakeLib/card.json",
                 "FakeLib/__pycache__/x.py"):
        (module_dir / name).write_text("", encoding="utf-8")
    shutil.copyfile(REPO_ROOT / "RadAISegment" / "CMakeLists.txt", module_dir / "CMakeLists.txt")
    text = (module_dir / "CMakeLists.txt").read_text(encoding="utf-8").replace("RadAISegment", "Fake")
    (module_dir / "CMakeLists.txt").write_text(text, encoding="utf-8")
    assert sync.sync(module_dir)
    synced = (module_dir / "CMakeLists.txt").read_text(encoding="utf-8")
    assert sync.listed(synced, "MODULE_PYTHON_SCRIPTS") == ["Fake.py", "FakeLib/__init__.py", "FakeLib/sub/deep.py"]
    assert "FakeLib/card.json" in sync.listed(synced, "MODULE_PYTHON_RESOURCES")
    assert "slicerMacroBuildScriptedModule" in synced and not sync.sync(module_dir)


_STAND_IN_SLICER = {
    # A minimal stand-in for Slicer's CMake package: the same variables and macro signatures, a version
    # file (find_package(Slicer X.Y) is checked against it), and scripted modules copied as CTK's
    # ctkMacroCompilePythonScript does: one custom command per file, per module target, into one shared
    # folder (so two modules generating the same file is an error Ninja reports, as with real Slicer).
    "SlicerConfig.cmake": """
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/GenerateConfig.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/CPack.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-@VERSION@/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-@VERSION@/qt-scripted-modules)
""",
    "SlicerConfigVersion.cmake": """
set(PACKAGE_VERSION "@VERSION@.0")
if(PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
""",
    "UseSlicer.cmake": """
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  set(copied)
  foreach(file ${MY_SCRIPTS} ${MY_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${file})
      message(FATAL_ERROR "${MY_NAME}: listed file ${file} does not exist")
    endif()
    set(target_file ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${file})
    add_custom_command(OUTPUT ${target_file} DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${file}
      COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_CURRENT_SOURCE_DIR}/${file} ${target_file})
    list(APPEND copied ${target_file})
  endforeach()
  add_custom_target(Copy${MY_NAME}PythonFiles ALL DEPENDS ${copied})
endfunction()
function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "" ${ARGN})
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT})
    message(FATAL_ERROR "unittest script ${MY_SCRIPT} missing")
  endif()
endfunction()
""",
    "GenerateConfig.cmake": """
foreach(v HOMEPAGE CATEGORY CONTRIBUTORS DESCRIPTION ICONURL SCREENSHOTURLS DEPENDS)
  if("${EXTENSION_${v}}" STREQUAL "")
    message(FATAL_ERROR "EXTENSION_${v} not set")
  endif()
endforeach()
""",
    "CPack.cmake": "",
}


def _stand_in_slicer(folder: Path, version: str) -> Path:
    folder.mkdir()
    for name, text in _STAND_IN_SLICER.items():
        (folder / name).write_text(text.replace("@VERSION@", version), encoding="utf-8")
    return folder


def _configure(source: Path, build: Path, slicer_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["cmake", "-G", "Ninja", "-S", str(source), "-B", str(build), f"-DSlicer_DIR={slicer_dir}",
                           "-DBUILD_TESTING=ON"], capture_output=True, text=True, timeout=120)


def test_cmake_builds_with_ninja_and_build_tree_finds_resources(tmp_path):
    """Configure and build (Ninja) against a stand-in Slicer 5.10; the engine in the build tree finds the sample
    data and each module's requirement file is there under its own name."""
    build = tmp_path / "build"
    result = _configure(REPO_ROOT, build, _stand_in_slicer(tmp_path / "slicer", "5.10"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    built = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]
    modules_dir = build / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    for module in sync.MODULES:
        cmake = (REPO_ROOT / module / "CMakeLists.txt").read_text(encoding="utf-8")
        for entry in sync.listed(cmake, "MODULE_PYTHON_SCRIPTS") + sync.listed(cmake, "MODULE_PYTHON_RESOURCES"):
            assert (modules_dir / entry).is_file(), entry
        assert (modules_dir / "Resources" / f"{module}-requirements.txt").read_bytes() == \
            (REPO_ROOT / module / "Resources" / f"{module}-requirements.txt").read_bytes()
    probe = ("from RadAISegmentLib import sample_data as s; "
             "print(s.sample_case('abdomen-ct')['image']); print(s.__file__)")
    env = {key: value for key, value in os.environ.items() if key != "RADAI_RESOURCES"}
    env["PYTHONPATH"] = str(modules_dir)
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env,
                           timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    image_path, module_path = found.stdout.split()
    assert Path(module_path).is_relative_to(build) and Path(image_path).is_relative_to(build / "lib" / "Slicer-5.10")


def test_ninja_refuses_two_modules_generating_one_file_and_slicer_5_8(tmp_path):
    """What the stand-in catches: the extension as it was (both modules installing Resources/requirements.txt)
    stops Ninja with "multiple rules generate"; Slicer 5.8 is refused at configure time."""
    source = tmp_path / "source"
    top_level_only = {".venv", ".git", "Testing", "docs", "benchmarks", "radai.egg-info"}
    shutil.copytree(REPO_ROOT, source, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or (Path(folder) == REPO_ROOT and n in top_level_only)])
    for module in sync.MODULES:
        (source / module / "Resources" / "requirements.txt").write_text("scipy>=1.11\n", encoding="utf-8")
        cmake = source / module / "CMakeLists.txt"
        cmake.write_text(cmake.read_text(encoding="utf-8").replace("Resources/${MODULE_NAME}-requirements.txt",
                                                                   "Resources/requirements.txt"), encoding="utf-8")
    result = _configure(source, tmp_path / "build", _stand_in_slicer(tmp_path / "slicer", "5.10"))
    built = subprocess.run(["cmake", "--build", str(tmp_path / "build")], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 or built.returncode != 0
    assert "multiple rules generate" in result.stdout + result.stderr + built.stdout + built.stderr
    old = _configure(REPO_ROOT, tmp_path / "build-5.8", _stand_in_slicer(tmp_path / "slicer-5.8", "5.8"))
    assert old.returncode != 0 and "5.10" in old.stdout + old.stderr
