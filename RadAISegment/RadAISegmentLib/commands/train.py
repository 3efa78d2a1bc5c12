"""``radai train lesion-roi``: train the interactive lesion model (resumable) and evaluate it on real tumours."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train the interactive lesion model (seeded, CPU, resumable)",
        description="Synthetic lesions in real CT/MR backgrounds with a simulated reader's correction clicks; "
                    "the checkpoint is chosen on synthetic validation cases, then evaluated on real tumours "
                    "(lung1, brain1, breast1: never used for training) with 0-3 simulated clicks.")
    parser.add_argument("model", choices=["lesion-roi"])
    parser.add_argument("--out", help="output model folder (default: Resources/Models/lesion-roi)")
    parser.add_argument("--steps", type=int, default=40_000, help="total steps of the whole run (cosine schedule)")
    parser.add_argument("--minutes", type=float, default=60.0, help="time budget of this sitting")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in OUT/training/state.pt")
    parser.add_argument("--from-model", metavar="DIR",
                        help="start a new run from a lesion-roi 2.x model folder's weights and step count "
                             "(e.g. Resources/Models/lesion-roi), fresh optimiser; not with --resume")
    parser.add_argument("--background", action="append", default=[],
                        help="extra training background (image file or DICOM folder; never an evaluation case)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="threads for the network (one more runs the data)")
    parser.add_argument("--max-steps", type=int, help="stop this sitting after this many steps (smoke tests)")
    parser.add_argument("--validate-every", type=int, default=500)
    parser.add_argument("--validation-cases", type=int, default=48, help="held-aside synthetic validation cases")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="only evaluate the model in --out on the real tumours (0-3 simulated clicks)")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the real-tumour evaluation")
    parser.add_argument("--cases", help="folder with your own <case>_image.nrrd / <case>_label.nrrd evaluation "
                                        "cases (label 1 = the lesion); their results are printed (and written "
                                        "by --json), never recorded in the model card (default: the bundled "
                                        "lung1, brain1, breast1, recorded in the card)")
    parser.add_argument("--json", metavar="FILE", help="write the whole evaluation (every case, click and "
                                                      "method) to FILE as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..lesion.train import train
    from ..sample_data import resources_dir
    out = Path(args.out) if args.out else resources_dir() / "Models" / "lesion-roi"
    if args.from_model and args.resume:
        from ..errors import InputError
        raise InputError("--from-model starts a new run and --resume continues the one in OUT: give one of them.")
    if not args.evaluate_only:
        metrics = train(out, total_steps=args.steps, minutes=args.minutes, seed=args.seed, threads=args.threads,
                        resume=args.resume, validate_every=args.validate_every,
                        extra_backgrounds=[Path(p) for p in args.background], max_steps=args.max_steps,
                        validation_count=args.validation_cases,
                        from_model=Path(args.from_model) if args.from_model else None)
        print(json.dumps(metrics))
    if args.no_evaluate:
        return 0
    from ..lesion.evaluate import evaluate_and_record
    table = evaluate_and_record(out, Path(args.cases) if args.cases else None,
                                Path(args.json) if args.json else None)
    print(table)
    return 0
