"""``radai segment IMAGE --model ID [lesion prompts] [--device auto|cpu|cuda] [--fast] --out SEG``.

Lesion prompts (RAS mm, negative numbers as typed): ``--seed R,A,S`` (one lesion each), ``--box-mm SIZE``
(cube around each seed), ``--box R1,A1,S1,R2,A2,S2`` (a drawn box, one lesion each), ``--include R,A,S`` /
``--exclude R,A,S`` (correction clicks, each added to the lesion it is nearest to), ``--refine SEG`` (start
from an existing outline).
"""
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
    parser.add_argument("--seed", action="append", default=[], help="lesion seed R,A,S in mm (repeatable)")
    parser.add_argument("--box-mm", type=float, help="edge of the cube around each seed, mm")
    parser.add_argument("--box", action="append", default=[],
                        help="a box drawn around a lesion: two opposite corners R1,A1,S1,R2,A2,S2 in mm (repeatable)")
    parser.add_argument("--include", action="append", default=[],
                        help="correction click R,A,S on lesion the model missed (repeatable)")
    parser.add_argument("--exclude", action="append", default=[],
                        help="correction click R,A,S on background the model included (repeatable)")
    parser.add_argument("--refine", help="start from this outline (labelmap on the image's grid; label n = lesion n)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--fast", action="store_true", help="coarser spacing (faster, less detail)")
    parser.add_argument("--largest-component", action="store_true", help="keep the largest component per label")
    parser.add_argument("--no-crop", action="store_true",
                        help="run windows over the whole volume at MONAI's positions instead of cropping to the "
                             "body first: output identical to the model's own MONAI inferer (slower)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="network arithmetic on the CPU: auto (default) = bf16 autocast where the CPU has bf16 "
                             "instructions (AMX/AVX512-BF16) unless the model card pins fp32, else fp32; fp32 forces "
                             "float32 (the --json report says which ran)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "openvino"],
                        help="what runs an organ model's network on the CPU: auto (default) = OpenVINO for nnU-Net "
                             "models where installed (faster; labels differ from PyTorch's at near-ties only), "
                             "PyTorch for MONAI bundles; openvino for any; torch gives MONAI's / nnU-Net's own "
                             "labels exactly")
    parser.add_argument("--out", required=True, help="output labelmap (.nrrd, .nii.gz, .seg.nrrd)")
    parser.add_argument("--json", action="store_true",
                        help="print labels written (with each lesion's volume and volume range) and timings as JSON")
    parser.set_defaults(func=run)


def lesion_prompts(args: argparse.Namespace, image, model):
    """The lesion prompts the user typed, checked before any work (typed errors name what to fix)."""
    from ..geometry import parse_ras_numbers, parse_ras_point
    from ..io import read_labelmap
    from ..lesion.predict import prompt_settings
    from ..lesion.prompts import assemble_prompts
    outline = read_labelmap(Path(args.refine), reference=image) if args.refine else None
    settings = prompt_settings(model)
    prompts = assemble_prompts(image, [parse_ras_point(t) for t in args.seed],
                               [parse_ras_numbers(t, 6, "Box") for t in args.box],
                               [parse_ras_point(t) for t in args.include], [parse_ras_point(t) for t in args.exclude],
                               args.box_mm, outline, settings.grid, settings.default_box_mm)
    return prompts, outline


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..device import describe_device
    from ..errors import InputError
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
    lesion = model.card.task == "promptable-lesion"
    if not lesion and (args.seed or args.box or args.include or args.exclude or args.refine):
        raise InputError(f"Model '{args.model}' is not promptable: --seed, --box, --include, --exclude and --refine "
                         "apply to lesion models such as lesion-roi.")
    start = time.perf_counter()
    if lesion:
        prompts, outline = lesion_prompts(args, image, model)
        labelmap = run_lesion_model(image, model, None, args.box_mm, args.device, progress, prompts=prompts,
                                    previous=outline)
    else:
        labelmap = segment_image(image, model, device=args.device, fast=args.fast,
                                 largest_component=args.largest_component, progress=progress,
                                 crop_foreground=not args.no_crop, precision=args.precision,
                                 runtime=args.runtime)
    timings["inference_s"] = time.perf_counter() - start
    start = time.perf_counter()
    out = Path(args.out)
    write_image(labelmap, out)   # .seg.nrrd, .nrrd or .nii.gz by extension
    timings["write_s"] = time.perf_counter() - start
    present = set(np.unique(labelmap.array).tolist())
    ranges = labelmap.metadata.get("volume_range_ml", {})
    voxel_ml = labelmap.voxel_volume_mm3 / 1000.0
    labels = []
    for segment in labelmap.segments:
        if segment.label not in present:
            continue
        voxels = int(np.count_nonzero(labelmap.array == segment.label))
        entry = {"label": segment.label, "name": segment.name, "voxels": voxels,
                 "volume_ml": round(voxels * voxel_ml, 4)}
        if segment.label in ranges:
            entry["volume_range_ml"] = [round(float(v), 4) for v in ranges[segment.label]]
        labels.append(entry)
    if args.json:
        print(json.dumps({"model": args.model, "output": str(out), "labels": labels,
                          "timings": {k: round(v, 3) for k, v in timings.items()},
                          "device": describe_device(args.device)["device"], "fast": bool(args.fast),
                          "body_crop": not args.no_crop,
                          "precision": labelmap.metadata.get("inference_precision")}, indent=2))
    else:
        print(f"wrote {out} ({len(labels)} labels) in {sum(timings.values()):.1f} s")
        for entry in labels:
            if "volume_range_ml" in entry:
                low, high = entry["volume_range_ml"]
                print(f"  {entry['name']}: {entry['volume_ml']:.3g} mL (range {low:.3g}-{high:.3g} mL)")
    return 0
