"""The catalogue of published models RadAI can download (``catalogue.json`` beside this file).

A catalogue holds ``terms`` (label name → display colour RGB 0..1 and coded concepts: ``category``,
``type`` and optionally ``modifier`` / ``region``, SNOMED CT as Slicer's terminology maps the name) and
``models``: id, title, task, modality, format (``monai_bundle`` | ``nnunet_v2``), source, version, licence,
``archives`` (https URL, publisher's SHA-1 or SHA-256 when one is published, approximate ``size_mb``; for
nnU-Net the result folder each zip holds), ``spacing_mm``, ``speed`` hints and ``labels`` (label value →
term name). :func:`validate_catalogue` is the schema: every label resolves to a coded term, every URL is
https (plain http only to this machine, for tests), hashes are well formed, ids unique, licences
permissive (models with non-commercial or licence-key terms are not offered).

``RADAI_CATALOGUE`` (or the ``path`` argument) names another catalogue file, e.g. one whose URLs point at a
local mirror; it is validated by the same rules.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import DownloadError, ModelError
from .card import TASKS
from .download import check_url

CATALOGUE_ENV = "RADAI_CATALOGUE"
SHIPPED_CATALOGUE = Path(__file__).resolve().with_name("catalogue.json")
FORMATS = ("monai_bundle", "nnunet_v2")
#: Licences a default catalogue may offer (SPDX ids): free for any use, commercial included.
PERMISSIVE_LICENCES = ("Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "CC0-1.0", "CC-BY-4.0")
CODE_SCHEMES = ("SCT", "NCIt", "DCM")
MODALITIES = ("CT", "MR", "PT", "US")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEX = {"sha1": 40, "sha256": 64}
_NNUNET_KEYS = ("dataset", "trainer", "plans", "configuration", "folds", "checkpoint")
#: Extra card ``network`` settings an entry may give (the nnU-Net loader's options), with their allowed values.
NETWORK_OPTIONS = {"orientation": ("RAS",), "use_mirroring": (True, False)}


@dataclass(frozen=True)
class Archive:
    """One file to download: https URL, publisher's hashes (lower-case hex, "" when none is published),
    approximate size in MB, and for nnU-Net the result folder it holds (``dataset``, ``trainer``,
    ``plans``, ``configuration``, ``folds``, ``checkpoint``)."""

    url: str
    size_mb: float
    sha1: str = ""
    sha256: str = ""
    nnunet: Optional[dict] = None

    @property
    def file_name(self) -> str:
        """The file name the URL ends with (where a manual download is expected)."""
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(self.url).path)).name

    @property
    def publisher_hash(self) -> str:
        return "SHA-1" if self.sha1 else "SHA-256" if self.sha256 else ""


@dataclass(frozen=True)
class CatalogueEntry:
    """A model users can get. ``labels`` are card-format dicts (label, name, color_rgb, category, type,
    modifier/region when coded); ``spacing_mm`` the model's voxel size (None: native spacing)."""

    id: str
    title: str
    task: str
    modality: tuple[str, ...]
    format: str
    source: str
    version: str
    licence: str
    archives: tuple[Archive, ...]
    labels: tuple[dict, ...]
    spacing_mm: Optional[tuple[float, float, float]] = None
    speed: dict = field(default_factory=dict)
    size_mb: float = 0.0
    publisher_page: str = ""
    citation: str = ""
    channels: tuple[str, ...] = ()
    bundle: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)

    @property
    def speed_hint(self) -> str:
        return str(self.speed.get("hint", ""))


@dataclass(frozen=True)
class Catalogue:
    path: Path
    entries: tuple[CatalogueEntry, ...]
    about: str = ""

    @property
    def ids(self) -> list[str]:
        return [entry.id for entry in self.entries]

    def get(self, model_id: str) -> CatalogueEntry:
        """The entry ``model_id``; :class:`ModelError` naming close ids and the listing command if unknown."""
        for entry in self.entries:
            if entry.id == model_id:
                return entry
        close = difflib.get_close_matches(model_id, self.ids, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"'{model_id}' is not in the model catalogue ({self.path}).{hint} "
                         "`radai models available` lists the models that can be installed.")


def catalogue_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$RADAI_CATALOGUE``, else the catalogue shipped with RadAI."""
    if path:
        return Path(path)
    if os.environ.get(CATALOGUE_ENV):
        return Path(os.environ[CATALOGUE_ENV]).expanduser()
    return SHIPPED_CATALOGUE


def _code_problems(code: Any, where: str) -> list[str]:
    if not isinstance(code, Mapping):
        return [f"{where}: must be an object with value, scheme and meaning"]
    problems = [f"{where}: '{key}' is empty" for key in ("value", "scheme", "meaning") if not str(code.get(key, ""))]
    if code.get("scheme") not in CODE_SCHEMES:
        problems.append(f"{where}: scheme {code.get('scheme')!r} is not one of {', '.join(CODE_SCHEMES)}")
    elif code["scheme"] == "SCT" and not str(code.get("value", "")).isdigit():
        problems.append(f"{where}: SNOMED CT code {code.get('value')!r} is not a number")
    return problems


def _term_problems(name: str, term: Any) -> list[str]:
    where = f"terms.{name}"
    if not isinstance(term, Mapping):
        return [f"{where}: must be an object"]
    colour = term.get("color_rgb")
    problems = [] if (isinstance(colour, list) and len(colour) == 3 and all(
        isinstance(c, (int, float)) and 0 <= c <= 1 for c in colour)) else [f"{where}.color_rgb: three numbers 0..1"]
    for key in ("category", "type"):
        problems += _code_problems(term.get(key), f"{where}.{key}")
    for key in ("modifier", "region", "region_modifier"):
        if key in term:
            problems += _code_problems(term[key], f"{where}.{key}")
    return problems


def _archive_problems(archive: Any, where: str, fmt: str) -> list[str]:
    if not isinstance(archive, Mapping):
        return [f"{where}: must be an object"]
    problems = []
    try:
        check_url(str(archive.get("url", "")))
    except DownloadError as error:
        problems.append(f"{where}.url: {error}")
    for key, length in _HEX.items():
        value = str(archive.get(key, ""))
        if value and (len(value) != length or any(c not in "0123456789abcdef" for c in value)):
            problems.append(f"{where}.{key}: must be {length} lower-case hex digits, got {value!r}")
    if not isinstance(archive.get("size_mb"), (int, float)) or archive["size_mb"] <= 0:
        problems.append(f"{where}.size_mb: must be a positive number (approximate MB)")
    if fmt == "nnunet_v2":
        nnunet = archive.get("nnunet")
        if not isinstance(nnunet, Mapping) or any(key not in nnunet for key in _NNUNET_KEYS):
            problems.append(f"{where}.nnunet: needs {', '.join(_NNUNET_KEYS)}")
        elif not nnunet["folds"] or not all(isinstance(f, int) and f >= 0 for f in nnunet["folds"]):
            problems.append(f"{where}.nnunet.folds: a non-empty list of fold numbers")
        elif any(not _ID.match(str(nnunet[key])) for key in ("dataset", "trainer", "plans", "configuration",
                                                                  "checkpoint")):
            problems.append(f"{where}.nnunet: folder and file names must be plain names")
    return problems


def _entry_problems(entry: Any, index: int, terms: Mapping[str, Any]) -> list[str]:
    if not isinstance(entry, Mapping):
        return [f"models[{index}]: must be an object"]
    where = f"models[{index}] ({entry.get('id', '?')})"
    problems = [f"{where}: '{key}' is missing" for key in
                ("id", "title", "task", "modality", "format", "source", "version", "licence", "archives", "labels")
                if not entry.get(key)]
    if problems:
        return problems
    if not _ID.match(str(entry["id"])):
        problems.append(f"{where}: id must be a plain name (letters, digits, _ . -)")
    if entry["task"] not in TASKS:
        problems.append(f"{where}: task {entry['task']!r} is not one of {', '.join(TASKS)}")
    if not set(entry["modality"]) <= set(MODALITIES):
        problems.append(f"{where}: modality {entry['modality']} not within {', '.join(MODALITIES)}")
    if entry["format"] not in FORMATS:
        problems.append(f"{where}: format {entry['format']!r} is not one of {', '.join(FORMATS)}")
    if entry["licence"] not in PERMISSIVE_LICENCES:
        problems.append(f"{where}: licence {entry['licence']!r} is not one a default catalogue may offer "
                        f"({', '.join(PERMISSIVE_LICENCES)})")
    archives = entry["archives"] if isinstance(entry["archives"], list) else []
    for number, archive in enumerate(archives):
        problems += _archive_problems(archive, f"{where}.archives[{number}]", entry["format"])
    names = [Path(urllib.parse.urlsplit(str(a.get("url", ""))).path).name for a in archives if isinstance(a, Mapping)]
    if len(set(names)) != len(names) or not all(names):
        problems.append(f"{where}: archive file names must be present and distinct")
    if entry["format"] == "monai_bundle":
        weights = str(entry.get("bundle", {}).get("weights", ""))
        if len(archives) != 1 or not weights or weights.startswith("/") or ".." in weights.split("/"):
            problems.append(f"{where}: a MONAI bundle needs one archive and bundle.weights (a relative path)")
    labels = entry["labels"] if isinstance(entry["labels"], Mapping) else {}
    if not labels:
        problems.append(f"{where}.labels: must map label values to term names")
    for value, name in labels.items():
        if not str(value).isdigit() or not 1 <= int(value) <= 255:
            problems.append(f"{where}.labels: label value {value!r} must be 1..255")
        if name not in terms:
            problems.append(f"{where}.labels.{value}: '{name}' has no entry in terms (colour and codes)")
    for key, value in dict(entry.get("network") or {}).items():
        if key not in NETWORK_OPTIONS or value not in NETWORK_OPTIONS[key]:
            problems.append(f"{where}.network.{key}: {value!r} is not a supported setting")
    spacing = entry.get("spacing_mm")
    if spacing is not None and (not isinstance(spacing, list) or len(spacing) != 3 or
                                not all(isinstance(s, (int, float)) and s > 0 for s in spacing)):
        problems.append(f"{where}.spacing_mm: null or three positive numbers (mm)")
    return problems


def validate_catalogue(data: Any, source: str = "catalogue") -> None:
    """The catalogue schema: raises :class:`ModelError` listing every problem (up to 20) in ``data``."""
    if not isinstance(data, Mapping) or data.get("format_version") != 1:
        raise ModelError(f"{source}: not a RadAI model catalogue (format_version 1 expected).")
    terms = data.get("terms") if isinstance(data.get("terms"), Mapping) else {}
    models = data.get("models") if isinstance(data.get("models"), list) else []
    problems = [] if models else ["'models' must be a non-empty list"]
    for name, term in terms.items():
        problems += _term_problems(name, term)
    for index, entry in enumerate(models):
        problems += _entry_problems(entry, index, terms)
    ids = [entry.get("id") for entry in models if isinstance(entry, Mapping)]
    problems += [f"id '{i}' appears {ids.count(i)} times" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise ModelError(f"{source} is invalid: " + "; ".join(problems[:20]) + more)


def _entry(data: Mapping[str, Any], terms: Mapping[str, Any]) -> CatalogueEntry:
    labels = tuple({"label": int(value), "name": name, **terms[name]}
                   for value, name in sorted(data["labels"].items(), key=lambda item: int(item[0])))
    archives = tuple(Archive(url=a["url"], size_mb=float(a["size_mb"]), sha1=a.get("sha1", ""),
                             sha256=a.get("sha256", ""), nnunet=dict(a["nnunet"]) if a.get("nnunet") else None)
                     for a in data["archives"])
    spacing = data.get("spacing_mm")
    return CatalogueEntry(
        id=data["id"], title=data["title"], task=data["task"], modality=tuple(data["modality"]),
        format=data["format"], source=data["source"], version=str(data["version"]), licence=data["licence"],
        archives=archives, labels=labels, spacing_mm=tuple(float(s) for s in spacing) if spacing else None,
        speed=dict(data.get("speed", {})), size_mb=float(data.get("size_mb") or sum(a.size_mb for a in archives)),
        publisher_page=data.get("publisher_page", ""), citation=data.get("citation", ""),
        channels=tuple(data.get("channels", ())), bundle=dict(data.get("bundle", {})),
        network=dict(data.get("network", {})))


def load_catalogue(path: str | os.PathLike | None = None) -> Catalogue:
    """Read and validate a catalogue (see :func:`catalogue_path` for which file)."""
    path = catalogue_path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"Model catalogue {path} does not exist; unset {CATALOGUE_ENV} or point it at a "
                         "catalogue file.") from None
    except ValueError as error:
        raise ModelError(f"Model catalogue {path} is not valid JSON ({error}).") from error
    validate_catalogue(data, str(path))
    terms = data["terms"]
    return Catalogue(path=path, entries=tuple(_entry(entry, terms) for entry in data["models"]),
                     about=str(data.get("about", "")))
