"""Keep each module's CMakeLists.txt in step with the files under its Lib folder.

``slicerMacroBuildScriptedModule`` installs only the files its ``SCRIPTS`` and ``RESOURCES``
lists name, so a Lib file missing from the list silently disappears from the built
extension. ``Testing/test_extension_layout.py`` fails when the lists drift; this script
prints (or, with ``--write``, rewrites) the correct lists:

    python Testing/sync_cmake_lists.py            # print the expected blocks
    python Testing/sync_cmake_lists.py --write    # rewrite both modules' CMakeLists.txt
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULES = ("RadAISegment", "RadAIVolumetrics")
#: Files under a Lib folder that are packaged as resources (data read at run time).
RESOURCE_SUFFIXES = (".json", ".html", ".css", ".js", ".txt", ".yaml", ".yml", ".csv", ".png", ".ui")
_SKIP_PARTS = {"__pycache__", ".pytest_cache"}


def _lib_files(module_dir: Path, suffixes: tuple[str, ...]) -> list[str]:
    lib = module_dir / f"{module_dir.name}Lib"
    files = [path for path in lib.rglob("*") if path.is_file() and path.suffix in suffixes
             and not _SKIP_PARTS.intersection(path.parts)]
    return sorted(path.relative_to(module_dir).as_posix() for path in files)


def expected_scripts(module_dir: Path) -> list[str]:
    """``<Module>.py`` then every ``.py`` under ``<Module>Lib/`` (recursively), POSIX paths, sorted."""
    return [f"{module_dir.name}.py"] + _lib_files(module_dir, (".py",))


def expected_resources(module_dir: Path) -> list[str]:
    """The wizard's icon, UI and requirements, then data files under ``<Module>Lib/``. Each is named after the
    module: both modules copy ``Resources/`` into the same folder of the built extension."""
    name = module_dir.name
    return [f"Resources/Icons/{name}.png", f"Resources/UI/{name}.ui", f"Resources/{name}-requirements.txt"] + \
        _lib_files(module_dir, RESOURCE_SUFFIXES)


def listed(cmake_text: str, variable: str) -> list[str]:
    """Entries of ``set(<variable> ...)`` with ``${MODULE_NAME}`` expanded, comments dropped."""
    match = re.search(r"set\(\s*" + variable + r"\s+(.*?)\)", cmake_text, flags=re.S)
    if not match:
        return []
    name = re.search(r"set\(\s*MODULE_NAME\s+(\w+)\s*\)", cmake_text)
    entries = []
    for line in match.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        entries.extend(line.split())
    return [entry.replace("${MODULE_NAME}", name.group(1) if name else "${MODULE_NAME}") for entry in entries]


def _render(variable: str, entries: list[str], module_name: str) -> str:
    lines = [entry.replace(module_name, "${MODULE_NAME}", 1) if entry.startswith(module_name) or
             entry.endswith(f"/{module_name}.png") or entry.endswith(f"/{module_name}.ui")
             or entry.endswith(f"/{module_name}-requirements.txt") else entry
             for entry in entries]
    return f"set({variable}\n" + "".join(f"  {line}\n" for line in lines) + "  )"


def expected_blocks(module_dir: Path) -> str:
    name = module_dir.name
    return (_render("MODULE_PYTHON_SCRIPTS", expected_scripts(module_dir), name) + "\n\n"
            + _render("MODULE_PYTHON_RESOURCES", expected_resources(module_dir), name))


def sync(module_dir: Path) -> bool:
    """Rewrite the two ``set(...)`` blocks of ``module_dir/CMakeLists.txt``; True if it changed."""
    path = module_dir / "CMakeLists.txt"
    text = path.read_text(encoding="utf-8")
    name = module_dir.name
    updated = text
    for variable, entries in (("MODULE_PYTHON_SCRIPTS", expected_scripts(module_dir)),
                              ("MODULE_PYTHON_RESOURCES", expected_resources(module_dir))):
        updated = re.sub(r"set\(\s*" + variable + r"\s+.*?\)", lambda _: _render(variable, entries, name),
                         updated, count=1, flags=re.S)
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text


def main(argv: list[str]) -> int:
    for module in MODULES:
        module_dir = REPO_ROOT / module
        if "--write" in argv:
            print(f"{module}/CMakeLists.txt: {'updated' if sync(module_dir) else 'already in sync'}")
        else:
            print(f"# {module}/CMakeLists.txt\n{expected_blocks(module_dir)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
