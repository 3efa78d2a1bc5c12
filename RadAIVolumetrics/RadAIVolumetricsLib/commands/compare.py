"""``radai compare``: register timepoints, match lesions, report change, RECIST 1.1 and volumetric response."""
from __future__ import annotations

import argparse
import datetime as dt
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("compare", help="track lesions across timepoints (RECIST 1.1 + volumetric)",
                                   description="Rigid registration of each follow-up to the baseline, lesion matching, "
                                               "per-lesion change and doubling time, response categories.")
    parser.add_argument("--baseline", nargs=2, metavar=("IMAGE", "SEG"), required=True)
    parser.add_argument("--followup", nargs=2, metavar=("IMAGE", "SEG"), action="append", required=True)
    parser.add_argument("--date", action="append", default=[], help="YYYY-MM-DD, one per timepoint in order given")
    parser.add_argument("--transform", choices=("rigid", "affine"), default="rigid")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", help="PNG of lesion volume over time")
    parser.add_argument("--csv", help="CSV table, one row per lesion and timepoint")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from RadAISegmentLib.atomic import write_text_atomic
    from RadAISegmentLib.errors import InputError
    from RadAISegmentLib.io import read_image, read_labelmap
    from ..longitudinal.compare import compare_timepoints
    from ..longitudinal.timepoint import Timepoint
    pairs = [args.baseline] + args.followup
    if args.date and len(args.date) != len(pairs):
        raise InputError(f"Give one --date per timepoint ({len(pairs)}), or none to use the DICOM dates.")
    timepoints = []
    for index, (image_path, seg_path) in enumerate(pairs):
        image = read_image(image_path)
        try:
            date = dt.date.fromisoformat(args.date[index]) if args.date else None
        except ValueError:
            raise InputError(f"Date '{args.date[index]}' is not YYYY-MM-DD.") from None
        timepoints.append(Timepoint(image, read_labelmap(seg_path, reference=image), date,
                                    "baseline" if index == 0 else f"follow-up {index}"))
    result = compare_timepoints(timepoints, transform=args.transform)
    if args.plot:
        result.plot(args.plot)
    if args.csv:
        write_text_atomic(args.csv, result.to_csv())
    print(json.dumps(result.to_json(), indent=2, default=str) if args.json else result.summary_text())
    return 0
