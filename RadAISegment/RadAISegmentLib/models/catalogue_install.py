"""Install a catalogue model: download its archive(s), verify them, unpack into the cache atomically.

:func:`install_from_catalogue` is the one entry point (CLI ``radai models install ID``, Slicer's Models
section through a background job). Archives are fetched into :func:`cache.downloads_dir` (resumable, see
:mod:`download`); a file a user fetched by hand and put there under the URL's file name is used instead of
downloading. Each archive is checked against the publisher's hash (MONAI zoo: SHA-1 of the zip); where the
publisher gives none (TotalSegmentator), the SHA-256 of the first download is recorded in the card
(``source.archives``) and later downloads must match it. The model folder is assembled in a staging folder
beside its final place and renamed into place only when complete and verified, so a failed or cancelled
install leaves the cache as it was. nnU-Net layout: /work/notes/catalogue-nnunet-layout.md (one result
folder per part at ``<dataset>/<trainer>__<plans>__<configuration>/``).
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..atomic import atomic_directory
from ..errors import ChecksumError, DownloadError, ModelError
from ..progress import CancelToken, ProgressCallback, no_progress
from .cache import (_model_root, downloads_dir, is_nnunet_result, models_dir, remove_if_empty, safe_extract,
                    sha256_file, verify_weights)
from .card import load_card
from .catalogue import Archive, Catalogue, CatalogueEntry, load_catalogue
from .download import DownloadSettings, discard_partial, download_file, file_hashes

#: Disk space needed per MB of download: the archive plus the unpacked model, with some slack.
SPACE_FACTOR = 2.2


@dataclass
class InstallReport:
    """The installed model's card and what the user should be told (hashes recorded, files reused...)."""

    card: Any
    notes: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0


def _scaled(progress: ProgressCallback, start: float, span: float) -> ProgressCallback:
    return lambda fraction, message: progress(start + span * min(max(fraction, 0.0), 1.0), message)


def _installed_source(model_id: str) -> dict:
    """``source`` of the installed card of ``model_id`` in the cache ({} when not installed)."""
    path = models_dir() / model_id / "card.json"
    try:
        return dict(json.loads(path.read_text()).get("source", {})) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _check_space(entry: CatalogueEntry) -> None:
    folder = models_dir()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free_mb = shutil.disk_usage(folder).free / 1e6
    needed_mb = entry.size_mb * SPACE_FACTOR
    if free_mb < needed_mb:
        raise ModelError(f"Installing {entry.id} needs about {needed_mb / 1e3:.1f} GB free in {models_dir()} "
                         f"(download and unpacked model); only {free_mb / 1e3:.1f} GB are free. Free some space or "
                         "set RADAI_MODELS_DIR to a folder on a larger disk.")


def manual_hint(entry: CatalogueEntry, missing: list[Archive]) -> str:
    """How to install ``entry`` without RadAI downloading: which URLs to fetch and the command that takes them."""
    urls = " and ".join(archive.url for archive in missing)
    command = (f"radai models install {missing[0].file_name}" if len(entry.archives) == 1 else
               f"radai models install {entry.id} " + " ".join(f"--file {a.file_name}" for a in entry.archives))
    return (f"To install without RadAI downloading: fetch {urls} by hand (a browser, or `curl -L -O URL`), then run "
            f"`{command}` where you saved {'it' if len(missing) == 1 else 'them'} (or put "
            f"{'it' if len(missing) == 1 else 'them'} into {downloads_dir()} and run `radai models install {entry.id}` "
            "again); RadAI checks the files and installs them offline.")


def entries_for_file(path: Path, catalogue: Optional[Catalogue] = None) -> list[CatalogueEntry]:
    """Single-archive catalogue entries whose published file has ``path``'s name (a zip fetched by hand)."""
    return [entry for entry in (catalogue or load_catalogue()).entries
            if len(entry.archives) == 1 and entry.archives[0].file_name == Path(path).name]


def _verify(entry: CatalogueEntry, archive: Archive, path: Path, sha256: str, sha1: str, recorded: dict,
            by_hand: bool) -> dict:
    """Check one archive's hashes; returns its record for the card's ``source.archives``."""
    where = f"the file {path}" if by_hand else f"the download of {archive.url}"
    record = {"url": archive.url, "file": archive.file_name, "size_bytes": path.stat().st_size,
              "sha256": sha256, "sha1": sha1}
    expected = [(name, value, got) for name, value, got in (("SHA-1", archive.sha1, sha1),
                                                            ("SHA-256", archive.sha256, sha256)) if value]
    for name, value, got in expected:
        if got != value:
            raise ChecksumError(f"{path.name} ({where}) has {name} {got[:12]}..., the publisher states "
                                f"{value[:12]}...: the file is damaged or not the published one. Nothing was "
                                f"installed{'' if by_hand else '; the file was deleted'}.")
    previous = recorded.get(archive.url)
    if previous and previous.get("sha256") and previous["sha256"] != sha256:
        raise ChecksumError(f"{path.name} ({where}) has SHA-256 {sha256[:12]}..., but the copy installed on "
                            f"{previous.get('recorded', 'first install')} had {previous['sha256'][:12]}...: the file "
                            f"was replaced at the source or altered on the way. Nothing was installed. If "
                            f"{entry.source} has published new weights under the same name, run `radai models "
                            f"remove {entry.id}` and install it again to accept them.")
    if expected:
        record["hash_origin"] = f"publisher {expected[0][0]} (verified)"
    elif previous:
        record.update(hash_origin="first download (verified against the recorded SHA-256)",
                      recorded=previous.get("recorded", ""))
    else:
        record.update(hash_origin="first download (the publisher gives no checksum)",
                      recorded=datetime.date.today().isoformat())
    return record


def _fetch(entry: CatalogueEntry, settings: DownloadSettings, progress: ProgressCallback,
           cancel: Optional[CancelToken], fetched: list[Path], notes: list[str],
           local_files: dict[str, Path]) -> tuple[list[Path], list[dict], int]:
    """Every archive of ``entry`` present and verified in the downloads folder; (paths, records, bytes)."""
    recorded = {a.get("url"): a for a in _installed_source(entry.id).get("archives", [])}
    total_mb = sum(a.size_mb for a in entry.archives)
    paths, records, downloaded, start = [], [], 0, 0.0
    for number, archive in enumerate(entry.archives):
        span = 0.85 * archive.size_mb / total_mb
        local = local_files.get(archive.file_name) or downloads_dir() / archive.file_name
        by_hand = local.is_file()
        if by_hand:
            notes.append(f"Used {local} instead of downloading it" + (" (it was already in the downloads folder)."
                                                                      if local.parent == downloads_dir() else "."))
            progress(start, f"checking {local.name}")
            sha256, sha1 = file_hashes(local)
        else:
            missing = [a for a in entry.archives[number:] if not (downloads_dir() / a.file_name).is_file()]
            label = f"{entry.id} ({number + 1}/{len(entry.archives)})" if len(entry.archives) > 1 else entry.id
            result = download_file(archive.url, local, settings=settings, progress=_scaled(progress, start, span),
                                   cancel=cancel, label=label, manual_hint=manual_hint(entry, missing))
            fetched.append(local)
            downloaded += result.size_bytes
            sha256, sha1 = result.sha256, result.sha1
        records.append(_verify(entry, archive, local, sha256, sha1, recorded, by_hand))
        paths.append(local)
        start += span
    return paths, records, downloaded


def _unpack(archive: Path, into: Path, cancel: Optional[CancelToken]) -> Path:
    """Extract ``archive`` into ``into`` (guarded) and return the model root inside it."""
    safe_extract(archive, into, cancel)
    return _model_root(into)


def _set_config_value(config: dict, key: str, value: Any) -> None:
    """Set ``a#b#c`` in a bundle config to a literal value (the bundle's own variant switch)."""
    node = config
    *path, last = key.split("#")
    for part in path:
        if not isinstance(node.get(part), dict):
            raise ModelError(f"Bundle config has no '{key}'; the catalogue entry does not fit this bundle version.")
        node = node[part]
    node[last] = value


def _bundle_model(entry: CatalogueEntry, archive: Path, out: Path, cancel: Optional[CancelToken]) -> dict:
    """Unpack a MONAI bundle into ``out``; returns the card's network/weights/metadata fields."""
    from .bundle import BundleConfig
    root = _unpack(archive, out / ".unpacked", cancel)
    if not (root / "configs").is_dir():
        raise ModelError(f"{archive.name} is not a MONAI bundle (no configs/ folder).")
    for child in root.iterdir():
        os.replace(child, out / child.name)
    shutil.rmtree(out / ".unpacked")
    weights = out / entry.bundle["weights"]
    if not weights.is_file():
        raise ModelError(f"{archive.name} has no {entry.bundle['weights']}: the published bundle differs from "
                         f"what the catalogue expects for {entry.id}.")
    overrides = dict(entry.bundle.get("config", {}))
    if overrides:
        config_path = out / "configs" / "inference.json"
        config = json.loads(config_path.read_text())
        for key, value in overrides.items():
            _set_config_value(config, key, value)
        config_path.write_text(json.dumps(config, indent=4))
    bundle = BundleConfig(out)
    names = [name for name in bundle.label_names().values() if name.lower() != "background"]
    if names and len(names) != len(entry.labels):
        raise ModelError(f"{entry.id}: the bundle names {len(names)} output classes, the catalogue "
                         f"{len(entry.labels)}; the catalogue entry does not fit this bundle version.")
    return {"network": {"format": "monai_bundle"},
            "weights": {"file": entry.bundle["weights"], "sha256": sha256_file(weights)},
            "bundle_overrides": overrides, "metrics": bundle.metadata.get("eval_metrics", {})}


def _result_folder(root: Path, archive: Archive, name: str) -> Path:
    """The nnU-Net result folder of ``archive`` under ``root``, its folds checked."""
    expected = "{trainer}__{plans}__{configuration}".format(**archive.nnunet)
    candidates = sorted(p.parent for p in root.rglob("plans.json") if is_nnunet_result(p.parent))
    chosen = [p for p in candidates if p.name == expected] or candidates
    if len(chosen) != 1:
        raise ModelError(f"{name} should hold one nnU-Net result folder {expected} (dataset.json, plans.json, "
                         f"fold_N/); found {len(candidates)}.")
    for fold in archive.nnunet["folds"]:
        if not (chosen[0] / f"fold_{fold}" / archive.nnunet["checkpoint"]).is_file():
            raise ModelError(f"{name}: fold_{fold}/{archive.nnunet['checkpoint']} is missing in {chosen[0].name}; "
                             "the archive is incomplete.")
    return chosen[0]


def nnunet_label_names(result: Path) -> dict[int, str]:
    """Label value → class name from an nnU-Net result folder's dataset.json (background left out)."""
    labels = json.loads((result / "dataset.json").read_text()).get("labels", {})
    names = {}
    for name, value in labels.items():
        if not isinstance(value, int):
            raise ModelError(f"{result}: dataset.json label '{name}' is region-based ({value}); RadAI reads "
                             "plain integer labels only.")
        if value:
            names[value] = str(name)
    return names


def nnunet_weight_files(model_dir: Path, parts: list[dict]) -> list[dict]:
    """SHA-256 of every file a part's loader reads (checkpoints, plans.json, dataset.json)."""
    files = []
    for part in parts:
        names = ["dataset.json", "plans.json"] + [f"fold_{f}/{part['checkpoint']}" for f in part["folds"]]
        for name in names:
            relative = f"{part['folder']}/{name}"
            files.append({"file": relative, "sha256": sha256_file(model_dir / relative)})
    return files


def _nnunet_model(entry: CatalogueEntry, archives: list[Path], out: Path, cancel: Optional[CancelToken]) -> dict:
    """Place each archive's result folder at ``<dataset>/<trainer>__<plans>__<configuration>``."""
    known = {label["name"] for label in entry.labels}
    parts = []
    for archive, path in zip(entry.archives, archives):
        unpacked = out / ".unpacked"
        safe_extract(path, unpacked, cancel)
        result = _result_folder(unpacked, archive, path.name)
        unknown = sorted(set(nnunet_label_names(result).values()) - known)
        if unknown:
            raise ModelError(f"{path.name}: classes {', '.join(unknown)} are not labels of {entry.id} in the "
                             "catalogue; the archive does not fit this catalogue entry.")
        folder = f"{archive.nnunet['dataset']}/{result.name}"
        (out / archive.nnunet["dataset"]).mkdir(exist_ok=True)
        os.replace(result, out / folder)
        shutil.rmtree(unpacked)
        parts.append({"folder": folder, "configuration": archive.nnunet["configuration"],
                      "folds": list(archive.nnunet["folds"]), "checkpoint": archive.nnunet["checkpoint"]})
    files = nnunet_weight_files(out, parts)
    first = f"{parts[0]['folder']}/fold_{parts[0]['folds'][0]}/{parts[0]['checkpoint']}"
    return {"network": {"format": "nnunet_v2", **entry.network, "parts": parts},
            "weights": {"file": first, "sha256": next(f["sha256"] for f in files if f["file"] == first),
                        "files": files}}


def _card(entry: CatalogueEntry, model: dict, records: list[dict]) -> dict:
    card = {"id": entry.id, "title": entry.title, "version": entry.version, "task": entry.task,
            "modality": list(entry.modality), "labels": [dict(label) for label in entry.labels],
            "licence": entry.licence, "trusted": False,
            "provenance": f"{entry.source}, version {entry.version}, installed by RadAI from its model catalogue"
                          + (f"; {entry.publisher_page}" if entry.publisher_page else ""),
            "source": {"catalogue_id": entry.id, "archives": records}, **model}
    if entry.format == "nnunet_v2":
        card["input"] = {"channels": max(len(entry.channels), 1),
                         **({"spacing_mm": list(entry.spacing_mm)} if entry.spacing_mm else {})}
    if entry.citation:
        card["citation"] = entry.citation
    return card


def install_from_catalogue(model_id: str, *, catalogue: Optional[Catalogue] = None, reinstall: bool = False,
                           settings: Optional[DownloadSettings] = None, progress: Optional[ProgressCallback] = None,
                           cancel: Optional[CancelToken] = None, files: tuple = ()) -> InstallReport:
    """Download, verify and install catalogue model ``model_id`` into the cache (see the module docstring).

    ``files``: archives the user fetched by hand, used (by file name) instead of downloading and left where
    they are. An installed copy of the same version is kept unless ``reinstall``. Raises :class:`ModelError` for an
    unknown id, :class:`DownloadError` (network; bytes received so far stay for the next attempt),
    :class:`ChecksumError`, :class:`CancelledError`; in every case the cache is as it was.
    """
    progress = progress or no_progress
    entry = (catalogue or load_catalogue()).get(model_id)
    target = models_dir() / entry.id
    if (target / "card.json").is_file() and not reinstall:
        card = load_card(target)
        if card.version == entry.version and card.raw.get("source", {}).get("catalogue_id") == entry.id:
            return InstallReport(card, [f"{entry.id} {entry.version} is already installed in {target}; "
                                        "`radai models verify` checks its files, --reinstall downloads it again."])
    _check_space(entry)
    notes: list[str] = []
    fetched: list[Path] = []
    try:
        local_files = {Path(f).name: Path(f) for f in files}
        names = [archive.file_name for archive in entry.archives]
        for name, path in local_files.items():
            if name not in names or not path.is_file():
                raise ModelError(f"{path} is {'not a file' if not path.is_file() else 'not a file of ' + entry.id}; "
                                 f"{entry.id} is made of {', '.join(names)}.")
        paths, records, downloaded = _fetch(entry, settings or DownloadSettings(), progress, cancel, fetched, notes,
                                            local_files)
        progress(0.87, f"unpacking {entry.id}")
        with atomic_directory(target) as out:
            if entry.format == "monai_bundle":
                model = _bundle_model(entry, paths[0], out, cancel)
            else:
                model = _nnunet_model(entry, paths, out, cancel)
            progress(0.97, f"checking {entry.id}")
            (out / "card.json").write_text(json.dumps(_card(entry, model, records), indent=2))
            verify_weights(load_card(out))
            if cancel is not None:
                cancel.raise_if_cancelled()
    except DownloadError:                       # completed archives and the .part stay for the next attempt
        remove_if_empty(downloads_dir())
        raise
    except BaseException:
        for path in fetched:
            path.unlink(missing_ok=True)
            discard_partial(path)
        remove_if_empty(downloads_dir())
        raise
    for path in paths:
        if path.parent == downloads_dir():          # downloaded, or put there by hand: no longer needed
            path.unlink(missing_ok=True)
    remove_if_empty(downloads_dir())
    for record in records:
        if record["hash_origin"].startswith("first download (the publisher"):
            notes.append(f"{entry.source} publishes no checksum for {record['file']}; its SHA-256 "
                         f"{record['sha256']} is now recorded in {target / 'card.json'}, and later downloads and "
                         "every load are checked against it.")
    progress(1.0, f"installed {entry.id}")
    return InstallReport(load_card(target), notes, downloaded)


def _coded(labels: list[dict]) -> list[dict]:
    """Labels with colour and codes from the catalogue's terms where it knows the name."""
    try:
        terms = {label["name"]: label for entry in load_catalogue().entries for label in entry.labels}
    except ModelError:
        terms = {}
    return [{**label, **{k: v for k, v in terms.get(label["name"], {}).items() if k not in ("label", "name")}}
            for label in labels]


def _fallback_nnunet_card(model_dir: Path, folder: str, dataset: str) -> dict:
    """A card for one nnU-Net result folder (used when the nnU-Net loader module is absent)."""
    result = model_dir / folder
    folds = sorted(int(p.parent.name[5:]) for p in result.glob("fold_*/checkpoint_final.pth")
                   if p.parent.name[5:].isdigit())
    if not folds:
        raise ModelError(f"{result.name} has no fold_N/checkpoint_final.pth; it is not a trained nnU-Net model.")
    parts = [{"folder": folder, "configuration": result.name.split("__")[-1], "folds": folds,
              "checkpoint": "checkpoint_final.pth"}]
    channels = json.loads((result / "dataset.json").read_text()).get("channel_names", {}) or {}
    files = nnunet_weight_files(model_dir, parts)
    first = f"{folder}/fold_{folds[0]}/checkpoint_final.pth"
    return {"id": dataset, "title": f"nnU-Net v2 {dataset}", "version": "0", "task": "segmentation",
            "modality": sorted({"CT" if str(c).upper() == "CT" else "MR" for c in channels.values()}) or ["CT"],
            "labels": [{"label": value, "name": name} for value, name in sorted(nnunet_label_names(result).items())],
            "input": {"channels": max(len(channels), 1)}, "network": {"format": "nnunet_v2", "parts": parts},
            "weights": {"file": first, "sha256": next(f["sha256"] for f in files if f["file"] == first),
                        "files": files},
            "licence": "", "provenance": f"nnU-Net v2 result folder {result.name} installed by the user"}


def stage_nnunet_result(result: Path, staging: Path, trusted: bool = False) -> tuple[Path, dict]:
    """Copy a user's nnU-Net result folder into ``staging/<dataset>/<dataset>/<result name>`` (the layout of
    the notes) and return the staged model folder and its card (the nnU-Net loader's ``nnunet_card`` when
    present), labels coded where the catalogue knows their names."""
    dataset = result.parent.name if result.parent.name.startswith("Dataset") else result.name
    model_dir = staging / dataset
    folder = f"{dataset}/{result.name}"
    shutil.copytree(result, model_dir / folder)
    try:
        from .nnunet import nnunet_card
    except ImportError:
        card = _fallback_nnunet_card(model_dir, folder, dataset)
    else:
        card = nnunet_card(model_dir, [model_dir / folder])
    card["trusted"] = bool(trusted)
    card["labels"] = _coded(card.get("labels", []))
    return model_dir, card
