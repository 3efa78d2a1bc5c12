"""``radai train lesion-roi``: re-train the shipped promptable lesion model and evaluate it on real tumours."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def default_shared_data() -> Path:
    if os.environ.get("RADAI_SHARED_DATA"):
        return Path(os.environ["RADAI_SHARED_DATA"])
    from ..sample_data import resources_dir
    return resources_dir().parent.parent / "shared" / "data"


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train the promptable lesion model (seeded, CPU)",
                                   description="Synthetic lesions in real CT/MR backgrounds; the checkpoint is chosen "
                                               "on synthetic validation cases, then evaluated on real tumours.")
    parser.add_argument("model", choices=["lesion-roi"])
    parser.add_argument("--out", help="output model folder (default: Resources/Models/lesion-roi)")
    parser.add_argument("--shared-data", help="folder with totalsegmentator-examples and pyradiomics-cases")
    parser.add_argument("--minutes", type=float, default=27.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (smoke tests)")
    parser.add_argument("--evaluate-only", action="store_true", help="only evaluate the model in --out")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the real-tumour evaluation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_text_atomic
    from ..lesion.evaluate import evaluate_model_and_baseline, metrics_table
    from ..lesion.train import train
    from ..models.loaders import load_model_folder
    from ..sample_data import resources_dir
    out = Path(args.out) if args.out else resources_dir() / "Models" / "lesion-roi"
    shared = Path(args.shared_data) if args.shared_data else default_shared_data()
    if not args.evaluate_only:
        metrics = train(shared, out, minutes=args.minutes, seed=args.seed, threads=args.threads,
                        max_steps=args.max_steps)
        print(json.dumps(metrics))
    if args.no_evaluate:
        return 0
    model = load_model_folder(out)
    evaluation = evaluate_model_and_baseline(shared, model)
    card = json.loads((out / "card.json").read_text())
    card["metrics"]["real_tumours"] = evaluation
    card["metrics"]["real_tumours_note"] = ("lung1 (CT), brain1 (MR), breast1 (MR): never used for training or "
                                            "checkpoint choice; seed = mask centroid, box = 1.5 x extent + 10 mm")
    write_text_atomic(out / "card.json", json.dumps(card, indent=2))
    print(json.dumps(evaluation, indent=2))
    print(metrics_table(evaluation))
    return 0
