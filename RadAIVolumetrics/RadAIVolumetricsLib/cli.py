"""The ``radai`` command line: one entry point over both engine packages.

Each sub-command lives in its own module exposing ``register(subparsers)``
(adds its parser and sets ``func``). Modules are imported only when the
command table is built, never at package import. Errors the user can fix
(:class:`RadAISegmentLib.errors.RadAIError`) print one line on stderr and exit
with code 2; unexpected errors exit 1 with one line (``RADAI_DEBUG=1`` shows
the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Optional, Sequence

#: a value that starts with a minus sign but is data: a number or comma-separated numbers (R,A,S points)
_NEGATIVE_VALUE = re.compile(r"^-\d*\.?\d+(?:[eE][-+]?\d+)?(?:\s*,\s*-?\d*\.?\d+(?:[eE][-+]?\d+)?)*$")

#: command name -> module providing ``register(subparsers)``
COMMANDS: dict[str, str] = {
    "info": "RadAISegmentLib.commands.info",
    "explain": "RadAISegmentLib.commands.explain",
    "segment": "RadAISegmentLib.commands.segment",
    "models": "RadAISegmentLib.commands.models",
    "measure": "RadAIVolumetricsLib.commands.measure",
    "ef": "RadAIVolumetricsLib.commands.ef",
    "compare": "RadAIVolumetricsLib.commands.compare",
    "train": "RadAISegmentLib.commands.train",
    "evaluate": "RadAIVolumetricsLib.commands.evaluate",
    "batch": "RadAIVolumetricsLib.commands.batch",
    "demo": "RadAIVolumetricsLib.commands.demo",
    "view": "RadAIVolumetricsLib.commands.view",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radai", description="RadAI: AI-assisted 3D volumetric analysis of CT and MRI.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--seed -21.9,120.5,-611.5`` -> ``--seed=-21.9,120.5,-611.5``: argparse would read a value that starts
    with a minus sign as an option; RAS coordinates in Slicer very often do. Applies to every option of
    every command, so a user types points exactly as Slicer shows them."""
    joined: list[str] = []
    for token in argv:
        previous = joined[-1] if joined else ""
        if (_NEGATIVE_VALUE.match(token) and previous.startswith("--") and "=" not in previous
                and len(previous) > 2):
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined


def main(argv: Optional[Sequence[str]] = None) -> int:
    from RadAISegmentLib.cpu_memory import tune_cpu_memory
    from RadAISegmentLib.errors import RadAIError

    tune_cpu_memory()        # huge pages for PyTorch: before its first allocation

    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    try:
        result = args.func(args)
        return int(result or 0)
    except RadAIError as error:
        print(f"radai {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"radai {args.command}: interrupted; nothing half-written was left.", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - last line of defence for a CLI
        if os.environ.get("RADAI_DEBUG"):
            raise
        print(f"radai {args.command}: unexpected error: {type(error).__name__}: {error} "
              "(set RADAI_DEBUG=1 for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
