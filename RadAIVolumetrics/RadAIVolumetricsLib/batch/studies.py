"""Cohort discovery, content fingerprints and per-study completion records.

A cohort is a folder with one study per sub-folder (a DICOM series folder, or a
folder holding one image file and optionally a segmentation), plus plain image
files directly in the folder; or a CSV manifest with ``study, image`` and the
optional columns ``segmentation`` and ``seed_ras`` (``"R,A,S"`` in mm, for the
promptable lesion model).

A study's output folder is complete when its ``study.json`` exists and records
the fingerprint of the current inputs, model and settings; it is written last,
inside a folder that is renamed into place as a whole.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from RadAISegmentLib.atomic import output_suffix
from RadAISegmentLib.errors import InputError
from RadAISegmentLib.geometry import parse_ras_point
from RadAISegmentLib.io import IMAGE_SUFFIXES

COMPLETION_RECORD = "study.json"
SEGMENTATION_HINTS = ("seg", "label", "mask")


@dataclass
class Study:
    """One study: its name (output sub-folder) and input paths."""

    name: str
    image: Path
    segmentation: Optional[Path] = None
    seeds_ras: list[tuple[float, float, float]] = field(default_factory=list)


def _is_segmentation_name(path: Path) -> bool:
    return any(hint in path.name.lower() for hint in SEGMENTATION_HINTS)


def _study_from_folder(folder: Path) -> Study:
    images = sorted(p for p in folder.iterdir() if p.is_file() and output_suffix(p) in IMAGE_SUFFIXES)
    volumes = [p for p in images if not _is_segmentation_name(p)]
    segmentations = [p for p in images if _is_segmentation_name(p)]
    if len(volumes) == 1:
        return Study(folder.name, volumes[0], segmentations[0] if segmentations else None)
    # No single image file: treat the folder as a DICOM series (the reader reports if it is not).
    return Study(folder.name, folder, segmentations[0] if segmentations else None)


def discover_studies(source: str | os.PathLike) -> list[Study]:
    """Studies of a cohort folder or a CSV manifest (relative paths resolve against the manifest's folder)."""
    source = Path(source)
    if not source.exists():
        raise InputError(f"Cohort {source} does not exist.")
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise InputError(f"{source.name} is neither a cohort folder nor a CSV manifest.")
        studies = []
        with open(source, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not {"study", "image"} <= set(reader.fieldnames or []):
                raise InputError(f"Manifest {source.name} needs the columns study and image.")
            for row in reader:
                segmentation = source.parent / row["segmentation"] if row.get("segmentation") else None
                seeds = [parse_ras_point(s) for s in row.get("seed_ras", "").split("|") if s.strip()]
                studies.append(Study(row["study"], source.parent / row["image"], segmentation, seeds))
        return studies
    studies = []
    for entry in sorted(source.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            studies.append(_study_from_folder(entry))
        elif output_suffix(entry) in IMAGE_SUFFIXES and not _is_segmentation_name(entry):
            studies.append(Study(entry.name.split(".")[0], entry))
    names = [study.name for study in studies]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise InputError(f"Several studies share the name(s) {sorted(duplicates)}; rename them so outputs do not collide.")
    return studies


def _hash_path(path: Path, digest) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)


def study_fingerprint(study: Study, settings: dict) -> str:
    """SHA-256 over the study's input bytes, its seeds and the run settings (model id and weights hash...)."""
    digest = hashlib.sha256()
    if study.image.exists():
        _hash_path(study.image, digest)
    if study.segmentation and study.segmentation.exists():
        _hash_path(study.segmentation, digest)
    digest.update(json.dumps({"seeds": study.seeds_ras, "settings": settings}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def completed_record(out_dir: Path, fingerprint: str) -> Optional[dict]:
    """The completion record of a study whose outputs match ``fingerprint``, else None."""
    record_path = out_dir / COMPLETION_RECORD
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("fingerprint") == fingerprint and record.get("status") == "done" else None
