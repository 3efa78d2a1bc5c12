"""Per-user model cache: list, install (folder / local zip, offline), download (URL), verify, remove.

Cache folder: ``$RADAI_MODELS_DIR``, else ``$XDG_CACHE_HOME/radai/models``, else ``~/.cache/radai/models``.
Shipped models in ``Resources/Models/<id>/`` are listed too (installed copies take precedence).
Downloads in progress live in ``<cache>/.downloads/`` (:func:`downloads_dir`); catalogue installs:
``catalogue_install.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.parse
import zipfile
import zlib
from pathlib import Path
from typing import Optional

from ..atomic import atomic_directory
from ..errors import ChecksumError, ModelError, UnsafeArchiveError
from ..progress import CancelToken, ProgressCallback
from .card import ModelCard, load_card

SHIPPED_DIR = Path(__file__).resolve().parents[3] / "Resources" / "Models"


def models_dir() -> Path:
    """The per-user cache folder (not created)."""
    if os.environ.get("RADAI_MODELS_DIR"):
        return Path(os.environ["RADAI_MODELS_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "radai" / "models"


def downloads_dir() -> Path:
    """Where downloads are assembled (``.part`` files) and where files fetched by hand are picked up."""
    return models_dir() / ".downloads"


def shipped_dir() -> Path:
    if os.environ.get("RADAI_RESOURCES"):
        return Path(os.environ["RADAI_RESOURCES"]) / "Models"
    return SHIPPED_DIR


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_folders() -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for root in (shipped_dir(), models_dir()):          # installed overrides shipped
        if root.is_dir():
            for child in sorted(root.iterdir()):
                if not child.name.startswith(".") and (child / "card.json").is_file():   # not staging folders
                    folders[child.name] = child
    return folders


def list_models() -> list[ModelCard]:
    """Cards of every shipped and installed model (invalid cards are skipped)."""
    cards = []
    for folder in _model_folders().values():
        try:
            cards.append(load_card(folder))
        except ModelError:
            continue
    return cards


def find_model(model_id: str) -> ModelCard:
    """The card of an installed or shipped model; :class:`ModelError` if unknown."""
    folder = _model_folders().get(model_id)
    if folder is None:
        known = ", ".join(sorted(_model_folders())) or "none"
        raise ModelError(f"Unknown model '{model_id}' (known: {known}); install it with "
                         "`radai models install PATH_OR_ZIP`.")
    return load_card(folder)


def weights_path(card: ModelCard) -> Path:
    """Absolute path of a card's weights file (in the model folder or an installed Python package)."""
    weights = card.weights
    if weights.get("package"):
        from importlib.metadata import PackageNotFoundError, files
        try:
            for entry in files(weights["package"]) or []:
                if str(entry).replace("\\", "/").endswith(weights["file"]):
                    return Path(entry.locate()).resolve()
        except PackageNotFoundError:
            pass
        raise ModelError(f"Model '{card.id}': weights come from the Python package '{weights['package']}' "
                         f"(file {weights['file']}), which is not installed; `pip install {weights['package']}`.")
    if card.folder is None:
        raise ModelError(f"Model '{card.id}' has no folder; load it from its card.json.")
    return card.folder / weights["file"]


def _check_sha256(card: ModelCard, path: Path, expected: str) -> None:
    if not path.is_file():
        raise ModelError(f"Model '{card.id}': weights file {path} is missing; reinstall the model.")
    if expected:
        actual = sha256_file(path)
        if actual != expected.lower():
            raise ChecksumError(f"Model '{card.id}': weights {path.name} have SHA-256 {actual[:12]}..., card says "
                                f"{expected[:12]}...; the file is corrupted or tampered with — reinstall it.")


def verify_weights(card: ModelCard, path: Optional[Path] = None) -> Path:
    """Check the weights' SHA-256 against the card; raises :class:`ChecksumError` on mismatch.

    Models made of several files (nnU-Net parts) list them all in ``weights.files``
    (``[{"file": relative path, "sha256": hex}]``); each is checked too.
    """
    path = path or weights_path(card)
    _check_sha256(card, path, str(card.weights.get("sha256", "")))
    for entry in card.weights.get("files", []):
        relative = str(entry.get("file", ""))
        if not relative or relative.startswith("/") or ".." in relative.replace("\\", "/").split("/"):
            raise ModelError(f"Model '{card.id}': weights.files entry {relative!r} is not a path inside the model.")
        if card.folder is None:
            raise ModelError(f"Model '{card.id}' has no folder; load it from its card.json.")
        _check_sha256(card, card.folder / relative, str(entry.get("sha256", "")))
    return path


def verify_model(model_id: str) -> ModelCard:
    card = find_model(model_id)
    verify_weights(card)
    return card


def safe_extract(archive: Path, destination: Path, cancel: Optional[CancelToken] = None) -> None:
    """Extract a zip, refusing absolute paths, drive letters, ``..`` components and symlinks before writing
    anything; ``cancel`` is checked between members."""
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelError(f"{archive.name} is not a readable zip file ({error}); fetch it again.") from error
    with zipped:
        members = zipped.infolist()
        root = destination.resolve()
        for member in members:
            name = member.filename.replace("\\", "/")
            target = (root / name).resolve()
            is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/") or is_link or \
                    (target != root and root not in target.parents):
                raise UnsafeArchiveError(f"{archive.name}: entry '{member.filename}' would be written outside "
                                         "the model folder (path traversal or link); refusing the whole archive.")
        try:
            for member in members:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                zipped.extract(member, destination)
        except (zipfile.BadZipFile, zlib.error) as error:
            raise ModelError(f"{archive.name} is damaged ({error}); fetch it again.") from error


def is_nnunet_result(folder: Path) -> bool:
    """True for an nnU-Net v2 result folder (``dataset.json`` + ``plans.json`` + ``fold_N/``)."""
    return (folder / "dataset.json").is_file() and (folder / "plans.json").is_file()


def _model_root(folder: Path) -> Path:
    """The folder holding card.json, configs/ (MONAI bundle) or an nnU-Net result (zips often wrap
    everything in one top folder)."""
    if (folder / "card.json").is_file() or (folder / "configs").is_dir() or is_nnunet_result(folder):
        return folder
    children = [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith("__")]
    if len(children) == 1:
        return _model_root(children[0])
    raise ModelError(f"{folder} holds neither card.json, a MONAI bundle (configs/inference.json) nor an nnU-Net "
                     "result folder (dataset.json, plans.json, fold_N/).")


def _bundle_card(root: Path, trusted: bool) -> dict:
    """A card for a MONAI bundle folder (labels etc. come from the bundle at load time)."""
    metadata = {}
    if (root / "configs" / "metadata.json").is_file():
        metadata = json.loads((root / "configs" / "metadata.json").read_text())
    for name in ("models/model.ts", "models/model.pt"):
        if (root / name).is_file():
            weights = name
            break
    else:
        raise ModelError(f"MONAI bundle {root.name} has no models/model.pt or models/model.ts.")
    model_id = root.name if root.name not in ("staged", "unzipped") else \
        str(metadata.get("name", "bundle")).strip().lower().replace(" ", "_").replace("/", "_")
    inputs = metadata.get("network_data_format", {}).get("inputs", {})
    modality = sorted({str(v.get("modality")) for v in inputs.values() if isinstance(v, dict) and v.get("modality")})
    return {"id": model_id, "title": metadata.get("name", root.name), "version": metadata.get("version", "0"),
            "task": "segmentation", "modality": modality, "network": {"format": "monai_bundle"},
            "weights": {"file": weights, "sha256": sha256_file(root / weights)}, "trusted": trusted,
            "licence": metadata.get("copyright", ""), "provenance": "MONAI bundle " + root.name,
            "metrics": metadata.get("eval_metrics", {})}


def install_model(source: str | Path, trusted: bool = False, progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None, settings=None) -> ModelCard:
    """Install a model folder, a local zip, or (URL) a downloaded zip into :func:`models_dir`.

    Accepts a folder with card.json, a MONAI bundle, or an nnU-Net v2 result folder (a card is written from
    its dataset.json), each also as a zip. A URL is fetched with :func:`download.download_file` (resumable,
    ``settings``: :class:`download.DownloadSettings`) into :func:`downloads_dir` and removed afterwards.
    The weights' SHA-256 is verified before the model appears in the cache; on any error nothing is installed.
    """
    source_text = str(source)
    if not source_text.startswith(("http://", "https://")):
        return _install_local(Path(source), trusted, cancel)
    from .download import download_file
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(source_text).path)).name or "download.zip"
    fetched = downloads_dir() / name
    try:
        download_file(source_text, fetched, settings=settings, progress=progress, cancel=cancel,
                      manual_hint=f"Fetch it by hand (a browser, or `curl -L -o {name} '{source_text}'`) and run "
                                  f"`radai models install {name}`.")
        return _install_local(fetched, trusted, cancel)
    finally:
        fetched.unlink(missing_ok=True)
        remove_if_empty(downloads_dir())


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` when it exists and holds nothing."""
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _install_local(source: Path, trusted: bool, cancel: Optional[CancelToken]) -> ModelCard:
    with tempfile.TemporaryDirectory(prefix="radai-install-") as tmp:
        tmp_path = Path(tmp)
        if source.is_file() and zipfile.is_zipfile(source):
            safe_extract(source, tmp_path / "unzipped", cancel)
            root = _model_root(tmp_path / "unzipped")
        elif source.is_dir():
            root = _model_root(source)
        else:
            raise ModelError(f"Cannot install '{source}': not a model folder or zip file.")
        if (root / "card.json").is_file() or (root / "configs").is_dir():
            staged = tmp_path / "staged" / root.name
            shutil.copytree(root, staged)
            if (staged / "card.json").is_file():
                data = json.loads((staged / "card.json").read_text())
                if trusted:
                    data["trusted"] = True
            else:
                data = _bundle_card(staged, trusted)
        else:                                                # an nnU-Net result folder
            from .catalogue_install import stage_nnunet_result
            staged, data = stage_nnunet_result(root, tmp_path / "staged", trusted)
        (staged / "card.json").write_text(json.dumps(data, indent=2))
        card = load_card(staged)
        if not card.weights.get("package"):
            verify_weights(card)
        target = models_dir() / card.id
        with atomic_directory(target) as out:
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(staged, out)
    return load_card(target)


def remove_model(model_id: str) -> Path:
    """Delete an installed model's folder from the cache; shipped models and ids that are not plain
    folder names (``../x``, absolute paths) are refused with :class:`ModelError`, nothing deleted.

    The OpenVINO conversions (``<cache>/.openvino``, keyed by weights, not by model) go with it: converting a
    network that is still installed again costs seconds on its next run, and no conversion outlives its model."""
    if not model_id or Path(model_id).name != model_id or model_id in (".", ".."):
        raise ModelError(f"'{model_id}' is not a model id (a folder name in {models_dir()}); nothing was removed.")
    target = models_dir() / model_id
    if not (target / "card.json").is_file():
        if (shipped_dir() / model_id / "card.json").is_file():
            raise ModelError(f"Model '{model_id}' is shipped with RadAI ({shipped_dir() / model_id}); "
                             "shipped models cannot be removed.")
        raise ModelError(f"Model '{model_id}' is not installed in {models_dir()} (shipped models cannot be removed).")
    shutil.rmtree(target)
    shutil.rmtree(models_dir() / ".openvino", ignore_errors=True)
    return target


def download(url: str, target: Path, sha256: str = "", progress: Optional[ProgressCallback] = None,
             chunk_bytes: int = 1 << 16, timeout_s: float = 60.0, cancel: Optional[CancelToken] = None) -> Path:
    """Stream ``url`` to ``target`` (resumable, see :mod:`download`) with progress; check SHA-256 when given
    (on a mismatch the file is deleted and :class:`ChecksumError` raised)."""
    from .download import DownloadSettings, download_file
    result = download_file(url, target, settings=DownloadSettings(timeout_s=timeout_s, chunk_bytes=chunk_bytes),
                           progress=progress, cancel=cancel)
    if sha256 and result.sha256 != sha256.lower():
        Path(target).unlink(missing_ok=True)
        raise ChecksumError(f"Download {url} has SHA-256 {result.sha256[:12]}..., expected "
                            f"{sha256[:12]}...; the server sent a different file. Nothing was installed.")
    return Path(target)


def download_weights(card: ModelCard, progress: Optional[ProgressCallback] = None) -> Path:
    """Fetch a card's ``weights.url`` into its folder (checksummed)."""
    url = card.weights.get("url")
    if not url:
        raise ModelError(f"Model '{card.id}' has no weights.url to download from.")
    return download(url, weights_path(card), card.weights_sha256, progress)
