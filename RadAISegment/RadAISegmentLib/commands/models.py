"""``radai models list | available | install ID_OR_FILE_OR_FOLDER_OR_URL [--file ZIP] [--reinstall] [--trusted] |
verify ID | remove ID``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list, install, verify or remove models",
                                   description="Manage the per-user model cache (RADAI_MODELS_DIR overrides it) and "
                                               "install published models from RadAI's catalogue.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list shipped and installed models")
    listing.add_argument("--json", action="store_true")
    available = actions.add_parser("available", help="list the catalogue of models that can be installed")
    available.add_argument("--json", action="store_true")
    install = actions.add_parser("install", help="install a catalogue model (by id), a model folder, zip or URL",
                                 description="ID: download, verify and install a catalogue model (`radai models "
                                             "available`); a folder, zip (offline) or https URL: install that.")
    install.add_argument("source", help="catalogue id, model folder, MONAI bundle / nnU-Net folder or zip, or URL")
    install.add_argument("--trusted", action="store_true",
                         help="allow a bundle's config expressions to run (only for authors you trust)")
    install.add_argument("--reinstall", action="store_true", help="download a catalogue model again if installed")
    install.add_argument("--file", action="append", default=[], metavar="ZIP",
                         help="with a catalogue id: a published archive you fetched by hand (repeat for models of "
                              "several files); it is verified like a download")
    install.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                         help="give up on a silent server after this many seconds per attempt (default 30)")
    verify = actions.add_parser("verify", help="check a model's weights SHA-256")
    verify.add_argument("model_id")
    remove = actions.add_parser("remove", help="remove an installed model")
    remove.add_argument("model_id")
    parser.set_defaults(func=run)


class DownloadPrinter:
    """Progress for a terminal (one updating line) or a log (a line every 10 %)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_step, self._last_time = -1, 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self._last_time < 0.2 and fraction < 1.0:
                return
            self._last_time = now
            bar = "#" * int(fraction * 24)
            self.stream.write(f"\r[{bar:<24}] {fraction * 100:5.1f}% {message[:70]:<70}")
            if fraction >= 1.0:
                self.stream.write("\n")
        elif int(fraction * 10) > self._last_step:
            self._last_step = int(fraction * 10)
            self.stream.write(f"{fraction * 100:3.0f}% {message}\n")
        self.stream.flush()


def _available(as_json: bool) -> int:
    from ..models.cache import downloads_dir, models_dir
    from ..models.catalogue_status import available_models
    rows = available_models()
    if as_json:
        print(json.dumps({"models_dir": str(models_dir()), "downloads_dir": str(downloads_dir()),
                          "models": [row.as_dict() for row in rows]}, indent=2))
        return 0
    print(f"{'id':<32} {'installed':<11} {'size':>9}  {'licence':<11} title")
    for row in rows:
        state = (f"{row.installed_version} (new {row.version})" if row.update_available else row.installed_version
                 or (f"partly ({row.partial_mb:.0f} MB)" if row.partial_mb else "no"))
        size = f"{row.size_mb / 1000:.1f} GB" if row.size_mb >= 1000 else f"{row.size_mb:.0f} MB"
        print(f"{row.id:<32} {state:<11} {'~' + size:>9}  {row.licence:<11} {row.title}")
    print(f"install one with `radai models install ID`; models dir: {models_dir()}")
    return 0


def _is_catalogue_id(source: str) -> bool:
    """A bare name that is not an existing file or folder and not a URL."""
    return not Path(source).exists() and "://" not in source and "/" not in source and "\\" not in source \
        and not source.lower().endswith(".zip")


def _install(args: argparse.Namespace) -> int:
    from ..errors import ModelError
    from ..models.cache import install_model
    from ..models.catalogue import load_catalogue
    from ..models.catalogue_install import entries_for_file, install_from_catalogue
    from ..models.download import DownloadSettings
    settings = DownloadSettings(timeout_s=args.timeout)
    progress = DownloadPrinter()
    if _is_catalogue_id(args.source):
        catalogue = load_catalogue()
        if args.source not in catalogue.ids:
            try:
                catalogue.get(args.source)
            except ModelError as error:
                raise ModelError(f"No file or folder '{args.source}' exists, and {error}") from None
        report = install_from_catalogue(args.source, catalogue=catalogue, reinstall=args.reinstall,
                                        settings=settings, progress=progress, files=tuple(args.file))
        for note in report.notes:
            print(f"note: {note}")
        card = report.card
    elif Path(args.source).is_file() and not args.trusted and entries_for_file(Path(args.source)):
        entries = entries_for_file(Path(args.source))          # a published zip fetched by hand: verify as such
        report = install_from_catalogue(entries[0].id, reinstall=args.reinstall, settings=settings,
                                        progress=progress, files=(Path(args.source),))
        others = ", ".join(f"`radai models install {e.id} --file {args.source}`" for e in entries[1:])
        for note in report.notes + ([f"The same file also gives {others}."] if others else []):
            print(f"note: {note}")
        card = report.card
    else:
        card = install_model(args.source, trusted=args.trusted, progress=progress, settings=settings)
    print(f"installed {card.id} {card.version} into {card.folder}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..models.cache import list_models, models_dir, remove_model, verify_model

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
    if args.action == "available":
        return _available(args.json)
    if args.action == "install":
        return _install(args)
    if args.action == "verify":
        card = verify_model(args.model_id)
        print(f"{card.id}: weights OK (SHA-256 {card.weights_sha256[:12]}...)")
        return 0
    path = remove_model(args.model_id)
    print(f"removed {path}")
    return 0
