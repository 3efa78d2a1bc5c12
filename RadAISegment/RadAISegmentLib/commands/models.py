"""``radai models list | install PATH_OR_ZIP_OR_URL [--trusted] | verify ID | remove ID``."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list, install, verify or remove models",
                                   description="Manage the per-user model cache (RADAI_MODELS_DIR overrides it).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list shipped and installed models")
    listing.add_argument("--json", action="store_true")
    install = actions.add_parser("install", help="install a model folder, zip (offline) or URL")
    install.add_argument("source", help="model folder, MONAI bundle folder/zip, or http(s) URL")
    install.add_argument("--trusted", action="store_true",
                         help="allow the bundle's config expressions to run (only for authors you trust)")
    verify = actions.add_parser("verify", help="check a model's weights SHA-256")
    verify.add_argument("model_id")
    remove = actions.add_parser("remove", help="remove an installed model")
    remove.add_argument("model_id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.cache import install_model, list_models, models_dir, remove_model, verify_model
    from ..progress import TerminalProgress

    if args.action == "list":
        cards = list_models()
        rows = [{"id": c.id, "title": c.title, "version": c.version, "task": c.task, "modality": list(c.modality),
                 "format": c.format, "folder": str(c.folder)} for c in cards]
        if getattr(args, "json", False):
            print(json.dumps({"models_dir": str(models_dir()), "models": rows}, indent=2))
        else:
            print(f"models dir: {models_dir()}")
            for row in rows:
                print(f"{row['id']:<32} {row['version']:<8} {row['task']:<18} {row['format']:<13} {row['title']}")
        return 0
    if args.action == "install":
        progress = TerminalProgress("download") if sys.stderr.isatty() else None
        card = install_model(args.source, trusted=args.trusted, progress=progress)
        print(f"installed {card.id} {card.version} into {card.folder}")
        return 0
    if args.action == "verify":
        card = verify_model(args.model_id)
        print(f"{card.id}: weights OK (SHA-256 {card.weights_sha256[:12]}...)")
        return 0
    path = remove_model(args.model_id)
    print(f"removed {path}")
    return 0
