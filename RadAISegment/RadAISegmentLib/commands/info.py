"""``radai info PATH [--json]``: geometry and value range of a volume or DICOM folder."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="show a volume's geometry (file or DICOM folder)",
                                   description="Print shape, spacing, origin, direction (LPS), modality and "
                                               "value range of an image file or DICOM folder.")
    parser.add_argument("path", help="NIfTI/NRRD/MHA file, DICOM file or folder")
    parser.add_argument("--series", help="SeriesInstanceUID to read from a folder with several series")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def describe(path: Path, series_uid: str | None = None) -> dict:
    """The facts ``radai info`` prints, as a JSON-ready dict (geometry in LPS)."""
    from ..io import is_dicom_path, read_image
    series = []
    if path.is_dir():
        from ..dicom import list_series
        series = [s.as_dict() for s in list_series(path)]
    image = read_image(path, series_uid=series_uid)
    finite = image.array[np.isfinite(image.array)] if np.issubdtype(image.array.dtype, np.floating) else image.array
    return {
        "path": str(path),
        "format": "DICOM" if is_dicom_path(path) else path.name.split(".", 1)[-1],
        "shape": list(image.shape_ijk),
        "axis_order": "i,j,k (columns, rows, slices)",
        "dtype": str(image.array.dtype),
        "spacing_mm": list(image.spacing_mm),
        "origin": list(image.origin_lps),
        "direction": np.asarray(image.direction_lps).tolist(),
        "coordinate_system": "LPS",
        "modality": image.metadata.get("modality", "unknown"),
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "series": series,
        "warnings": list(image.metadata.get("warnings", [])),
    }


def run(args: argparse.Namespace) -> int:
    facts = describe(Path(args.path), args.series)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"{facts['path']}  ({facts['format']}, modality {facts['modality']})")
    print(f"  shape (i,j,k)     {facts['shape']}  {facts['dtype']}")
    print(f"  spacing (mm)      {[round(s, 4) for s in facts['spacing_mm']]}")
    print(f"  origin (LPS mm)   {[round(o, 3) for o in facts['origin']]}")
    print(f"  direction (LPS)   {[[round(v, 4) for v in row] for row in facts['direction']]}")
    print(f"  value range       {facts['min']} .. {facts['max']}")
    for entry in facts["series"]:
        print(f"  series {entry['series_instance_uid']}  {entry.get('modality', '')}  "
              f"{entry.get('number_of_files', '?')} files  {entry.get('description', '')}")
    for warning in facts["warnings"]:
        print(f"  warning: {warning}")
    return 0
