"""``radai evaluate``: validate a model's segmentations against reference segmentations."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="compare predictions with reference segmentations (Dice, HD95, lesion-wise, agreement)",
        description="Per-study metrics on the reference grid, bootstrap CIs, Bland-Altman/ICC of volumes, "
                    "subgroups and drift. Writes per_study.csv, summary.json and report.html to --out.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV with study, image, reference[, prediction][, group][, date]")
    source.add_argument("--pred", help="folder of predicted segmentations (paired with --ref by file name)")
    parser.add_argument("--ref", help="folder of reference segmentations (with --pred)")
    parser.add_argument("--pred-b", help="folder of a second model's or reader's segmentations, paired by file "
                                         "name, compared with --pred (manifest: column prediction_b)")
    parser.add_argument("--model", help="model id: segment studies that have an image but no prediction")
    parser.add_argument("--labels", help="comma-separated label names or ids (default: all in the reference)")
    parser.add_argument("--tolerance-mm", type=float, default=1.0, help="normalised surface Dice tolerance (mm)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95 %% CIs")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    parser.add_argument("--resample", action="store_true",
                        help="resample predictions onto the reference grid when grids differ (default: refuse)")
    parser.add_argument("--drift-window-days", type=int, default=90)
    parser.add_argument("--drift-threshold", type=float, default=0.7, help="flag windows whose mean Dice is below")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--json", action="store_true", help="print the summary JSON")
    parser.set_defaults(func=run)


def _predict_missing(rows, model_id: str, out_dir: Path) -> None:
    """Run the model on studies with an image but no prediction file (predictions saved under out/predictions)."""
    from RadAISegmentLib.inference import run_model
    from RadAISegmentLib.io import read_image, write_image
    for row in rows:
        if (row.prediction is None or not row.prediction.exists()) and row.image is not None and row.image.exists():
            target = out_dir / "predictions" / f"{row.study}.nii.gz"
            if not target.exists():
                write_image(run_model(read_image(row.image), model_id), target)
            row.prediction = target


def run(args: argparse.Namespace) -> int:
    from RadAISegmentLib.errors import InputError
    from ..validation.evaluate import evaluate_study, read_manifest, rows_from_folders, summarise
    from ..validation.outputs import write_outputs
    if args.pred and not args.ref:
        raise InputError("--pred needs --ref (the folder of reference segmentations).")
    if args.pred_b and not args.pred:
        raise InputError("--pred-b goes with --pred and --ref; in a manifest, use the column prediction_b.")
    rows = read_manifest(args.manifest) if args.manifest else rows_from_folders(args.pred, args.ref, args.pred_b)
    if not rows:
        raise InputError("No studies found to evaluate.")
    out_dir = Path(args.out)
    if args.model:
        _predict_missing(rows, args.model, out_dir)
    labels = [item.strip() for item in args.labels.split(",")] if args.labels else None
    results = [evaluate_study(row, labels, args.tolerance_mm, args.resample) for row in rows]
    summary = summarise(results, args.bootstrap, args.seed, args.drift_window_days, args.drift_threshold)
    paths = write_outputs(results, summary, out_dir, args.model or "")
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for label, values in summary["labels"].items():
            print(f"{label}: Dice {values['dice_mean']:.3f} over {values['studies']} studies")
        for label, values in summary["comparison"].items():
            if values["studies"]:
                print(f"{label}: A − B Dice {values['dice_difference_mean']:+.3f}, A vs B Dice "
                      f"{values['dice_a_vs_b_mean']:.3f} over {values['studies']} studies")
        for failure in summary["studies_failed"]:
            print(f"not evaluated: {failure['study']}: {failure['error']}")
        print(f"report: {paths['report_html']}")
    return 0 if summary["studies_evaluated"] else 2
