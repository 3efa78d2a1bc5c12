"""``radai ef``: EDV, ESV, stroke volume, EF, myocardial mass and cardiac output."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("ef", help="ejection fraction from cine MRI (with a model), ED/ES labelmaps "
                                              "or a labelmap sequence",
                                   description="EF = (EDV - ESV) / EDV; ED/ES = max/min blood-pool volume phases. "
                                               "With --image CINE --model ID a ventricular model segments every "
                                               "phase first (one step from cine MRI to EF).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="cine MRI: a 4D file or a DICOM folder holding every cardiac phase "
                                        "(with --model)")
    source.add_argument("--ed", help="end-diastolic labelmap (with --es)")
    source.add_argument("--sequence", help="4D labelmap or folder of 3D labelmaps, one per phase")
    parser.add_argument("--model", help="ventricular model (installed id or model folder / MONAI bundle), e.g. "
                                        "ventricular_short_axis_3label; labels and myocardium come from it")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="network arithmetic on the CPU: auto = bf16 where the CPU has bf16 instructions "
                             "(AMX/AVX512-BF16), else fp32")
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "openvino"],
                        help="what runs the network on the CPU: auto = PyTorch for MONAI bundles, OpenVINO for "
                             "nnU-Net models where installed; torch gives the model's own labels exactly")
    parser.add_argument("--out", help="with --image: write the segmentation sequence (4D labelmap, .nii.gz/.nrrd)")
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
    if args.image:
        result = _from_cine(args)
    elif args.ed:
        if not args.es:
            raise InputError("--ed needs --es.")
        result = cardiac.ejection_fraction_from_pair(read_labelmap(args.ed), read_labelmap(args.es), args.label,
                                                     args.myocardium, args.heart_rate)
    else:
        result = cardiac.ejection_fraction_from_sequence(cardiac.read_labelmap_sequence(args.sequence), args.label,
                                                         args.myocardium, args.heart_rate, args.ed_phase, args.es_phase)
    if "volumes_ml" in result:
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


def _from_cine(args: argparse.Namespace) -> dict:
    """Read the cine, load the model, segment every phase, measure; ``--out`` gets the labelmap sequence."""
    import sys
    from RadAISegmentLib.errors import InputError
    from RadAISegmentLib.progress import TerminalProgress
    from ..cardiac_cine import cine_ef_files
    if not args.model:
        raise InputError("--image needs --model (a ventricular model, e.g. ventricular_short_axis_3label).")
    progress = TerminalProgress(f"ef {args.model}") if sys.stderr.isatty() else None
    return cine_ef_files(args.image, args.model, args.out, args.heart_rate, args.device, args.precision, progress,
                         runtime=args.runtime)
