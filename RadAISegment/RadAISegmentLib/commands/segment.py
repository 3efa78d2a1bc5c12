"""``radai segment IMAGE --model ID [--seed R,A,S] [--box-mm SIZE] [--device auto|cpu|cuda] [--fast] --out SEG``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("segment", help="segment an image with a model (labelmap on the input grid)",
                                   description="Run a model on an image file or DICOM folder and write a labelmap "
                                               "on exactly the input grid (NRRD, NIfTI or .seg.nrrd by extension).")
    parser.add_argument("image", help="image file or DICOM folder")
    parser.add_argument("--model", required=True, help="model id (see `radai models list`)")
    parser.add_argument("--seed", action="append", help="lesion seed R,A,S in mm (repeatable)")
    parser.add_argument("--box-mm", type=float, help="edge of the lesion search box in mm")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--fast", action="store_true", help="coarser spacing (faster, less detail)")
    parser.add_argument("--largest-component", action="store_true", help="keep the largest component per label")
    parser.add_argument("--no-crop", action="store_true",
                        help="run windows over the whole volume at MONAI's positions instead of cropping to the "
                             "body first: output identical to the model's own MONAI inferer (slower)")
    parser.add_argument("--out", required=True, help="output labelmap (.nrrd, .nii.gz, .seg.nrrd)")
    parser.add_argument("--json", action="store_true", help="print labels written and timings as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..device import describe_device
    from ..geometry import parse_ras_point
    from ..inference import load_model, run_lesion_model, segment_image
    from ..io import read_image, write_image
    from ..progress import TerminalProgress

    timings = {}
    start = time.perf_counter()
    image = read_image(Path(args.image))
    timings["read_s"] = time.perf_counter() - start
    start = time.perf_counter()
    model = load_model(args.model, args.device)
    timings["load_model_s"] = time.perf_counter() - start
    progress = TerminalProgress(f"segment {args.model}") if sys.stderr.isatty() else None
    start = time.perf_counter()
    if model.card.task == "promptable-lesion":
        seeds = [parse_ras_point(text) for text in args.seed or []]
        labelmap = run_lesion_model(image, model, seeds or None, args.box_mm, args.device, progress)
    else:
        labelmap = segment_image(image, model, device=args.device, fast=args.fast,
                                 largest_component=args.largest_component, progress=progress,
                                 crop_foreground=not args.no_crop)
    timings["inference_s"] = time.perf_counter() - start
    start = time.perf_counter()
    out = Path(args.out)
    write_image(labelmap, out)   # .seg.nrrd, .nrrd or .nii.gz by extension
    timings["write_s"] = time.perf_counter() - start
    present = set(np.unique(labelmap.array).tolist())
    labels = [{"label": s.label, "name": s.name, "voxels": int(np.count_nonzero(labelmap.array == s.label))}
              for s in labelmap.segments if s.label in present]
    if args.json:
        print(json.dumps({"model": args.model, "output": str(out), "labels": labels,
                          "timings": {k: round(v, 3) for k, v in timings.items()},
                          "device": describe_device(args.device)["device"], "fast": bool(args.fast),
                          "body_crop": not args.no_crop}, indent=2))
    else:
        print(f"wrote {out} ({len(labels)} labels) in {sum(timings.values()):.1f} s")
    return 0
