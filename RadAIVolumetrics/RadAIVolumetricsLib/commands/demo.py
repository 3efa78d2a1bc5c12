"""``radai demo [--out DIR]``: the whole pipeline on the bundled cases; the last line is the report's path."""
from __future__ import annotations

import argparse
import sys
import time


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run everything on the bundled sample data and write an HTML report",
                                   description="Lesion segmentation from a seed with Grad-CAM, organ measurements, "
                                               "ejection fraction, lesion tracking; offline, CPU.")
    parser.add_argument("--out", default="radai-demo", help="output folder (default: radai-demo)")
    parser.add_argument("--steps", help="comma-separated subset: lesion,organs,cardiac,longitudinal")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    steps = [s.strip() for s in args.steps.split(",")] if args.steps else None
    report, failures = run_demo(args.out, say=say, steps=steps)
    for step, message in failures.items():
        print(f"step {step} failed: {message}", file=sys.stderr)
    say(f"done ({len(failures)} step(s) failed)")
    print(report.resolve())
    return 0 if not failures else 4
