"""``radai batch COHORT_DIR --out OUT_DIR``: segment, measure (and explain) a whole cohort on Dask."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch", help="process a cohort (one study per sub-folder, or a CSV manifest) on Dask",
        description="Each study: segment -> measure (-> explain), outputs in OUT_DIR/<study>/, and one cohort "
                    "table (cohort.csv + cohort.parquet). Resumable: unchanged studies are skipped.")
    parser.add_argument("cohort", help="cohort folder or CSV manifest (study, image[, segmentation][, seed_ras])")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model", help="model id (default: measure each study's own segmentation file)")
    parser.add_argument("--measure", action="store_true", default=True, help="measure segments (default on)")
    parser.add_argument("--no-measure", dest="measure", action="store_false")
    parser.add_argument("--explain", action="store_true", help="also compute Grad-CAM saliency")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--fast", action="store_true", help="fast (coarser) inference")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per 2 cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from RadAISegmentLib.progress import TerminalProgress
    from ..batch.runner import run_batch
    summary = run_batch(args.cohort, args.out, model_id=args.model, measure=args.measure, explain=args.explain,
                        device=args.device, fast=args.fast, scheduler=args.scheduler, workers=args.workers,
                        progress=TerminalProgress("batch "))
    for result in summary.results:
        if result["status"] == "failed":
            print(f"failed: {result['study']}: {result['error']}")
    print(summary.text())
    print(f"cohort table: {summary.table_csv}")
    return 0 if summary.failed == 0 else 3
