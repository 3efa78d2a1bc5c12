"""``radai ef``: EDV, ESV, stroke volume, EF, myocardial mass and cardiac output."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("ef", help="ejection fraction from ED/ES labelmaps or a sequence",
                                   description="EF = (EDV - ESV) / EDV; ED/ES = max/min blood-pool volume phases.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ed", help="end-diastolic labelmap (with --es)")
    source.add_argument("--sequence", help="4D labelmap or folder of 3D labelmaps, one per phase")
    parser.add_argument("--es", help="end-systolic labelmap")
    parser.add_argument("--label", default="1", help="blood-pool label name or id (default 1)")
    parser.add_argument("--myocardium", help="myocardium label name or id (adds myocardial_mass_g)")
    parser.add_argument("--heart-rate", type=float, help="beats per minute (adds cardiac_output_l_min)")
    parser.add_argument("--ed-phase", type=int, help="override the ED phase index (sequence)")
    parser.add_argument("--es-phase", type=int, help="override the ES phase index (sequence)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", help="PNG of the volume-time curve (sequence)")
    parser.add_argument("--csv", help="CSV of the volume-time curve (sequence)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from RadAISegmentLib.errors import InputError
    from RadAISegmentLib.io import read_labelmap
    from .. import cardiac
    if args.ed:
        if not args.es:
            raise InputError("--ed needs --es.")
        result = cardiac.ejection_fraction_from_pair(read_labelmap(args.ed), read_labelmap(args.es), args.label,
                                                     args.myocardium, args.heart_rate)
    else:
        result = cardiac.ejection_fraction_from_sequence(cardiac.read_labelmap_sequence(args.sequence), args.label,
                                                         args.myocardium, args.heart_rate, args.ed_phase, args.es_phase)
        if args.plot:
            cardiac.plot_volume_curve(result, args.plot)
        if args.csv:
            cardiac.write_volume_curve_csv(result, args.csv)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"EDV {result['edv_ml']:.1f} mL  ESV {result['esv_ml']:.1f} mL  SV {result['stroke_volume_ml']:.1f} mL  "
              f"EF {result['ejection_fraction_percent']:.1f} %")
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    return 0
