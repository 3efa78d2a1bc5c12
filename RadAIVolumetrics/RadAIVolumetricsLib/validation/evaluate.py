"""Evaluate predictions against reference segmentations over a cohort.

Input is a manifest (CSV with ``study, image, reference[, prediction][, prediction_b][, group][, date]``)
or two folders matched by file name (a third, ``--pred-b``, for a second model or reader; see
:mod:`.comparison`). Per study and label it computes
:func:`.metrics.overlap_metrics` and :func:`.metrics.lesion_detection` on the
reference grid; the summary adds bootstrap 95 % CIs (study-level resampling),
Bland–Altman and ICC(2,1) of volumes, subgroup tables and drift windows.
A row whose files are missing or unreadable is reported with its error and the
others continue.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from RadAISegmentLib.errors import GeometryMismatchError, InputError, LabelError, RadAIError
from RadAISegmentLib.image import Image
from RadAISegmentLib.io import read_labelmap

from .agreement import bland_altman, bootstrap_ci, drift_windows, icc_2_1, mean_defined
from .comparison import summarise_comparison
from .metrics import lesion_detection, overlap_metrics, sensitivity_by_size


@dataclass
class StudyRow:
    """One manifest row (paths as given, resolved against the manifest's folder)."""

    study: str
    reference: Path
    prediction: Optional[Path] = None
    image: Optional[Path] = None
    group: str = ""
    date: Optional[dt.date] = None
    prediction_b: Optional[Path] = None          # a second model's or reader's segmentation (optional)


@dataclass
class StudyResult:
    study: str
    group: str
    date: Optional[dt.date]
    per_label: dict[str, dict] = field(default_factory=dict)
    detections: dict[str, object] = field(default_factory=dict)
    error: Optional[str] = None
    per_label_b: dict[str, dict] = field(default_factory=dict)     # B against the reference
    a_vs_b: dict[str, dict] = field(default_factory=dict)          # A against B


def read_manifest(path: str | os.PathLike) -> list[StudyRow]:
    """Parse a manifest CSV; relative paths are relative to the manifest's folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Manifest {path} does not exist.")
    base = path.parent
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"study", "reference"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"Manifest {path.name} lacks the column(s) {sorted(missing)}; "
                             "expected study, image, reference[, prediction][, group][, date].")
        for row in reader:
            resolve = lambda key: (base / row[key]) if row.get(key) else None
            date = dt.date.fromisoformat(row["date"]) if row.get("date") else None
            rows.append(StudyRow(row["study"], resolve("reference"), resolve("prediction"), resolve("image"),
                                 row.get("group", "") or "", date, resolve("prediction_b")))
    return rows


def rows_from_folders(prediction_dir: str | os.PathLike, reference_dir: str | os.PathLike,
                      prediction_b_dir: Optional[str | os.PathLike] = None) -> list[StudyRow]:
    """Pair files with the same name in two (or three) folders (a reference without prediction is kept and
    reported)."""
    folders = [Path(prediction_dir), Path(reference_dir)] + ([Path(prediction_b_dir)] if prediction_b_dir else [])
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder.")
    rows = []
    for reference in sorted(p for p in folders[1].iterdir() if p.is_file() and not p.name.startswith(".")):
        study = reference.name.split(".")[0]
        rows.append(StudyRow(study, reference, folders[0] / reference.name,
                             prediction_b=folders[2] / reference.name if prediction_b_dir else None))
    return rows


def resample_labels_onto(labelmap: Image, reference: Image) -> Image:
    """Nearest-neighbour resampling of a labelmap onto the reference grid (only on the user's request)."""
    import SimpleITK as sitk
    from RadAISegmentLib.io import from_sitk, to_sitk
    moved = sitk.Resample(to_sitk(labelmap), to_sitk(reference), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return reference.with_array(from_sitk(moved).array.astype(labelmap.array.dtype), segments=labelmap.segments)


def label_ids(labelmap: Image, wanted: Optional[Sequence[str]]) -> dict[str, int]:
    """Map label names to ids: all labels present (named by their segments), or the ``wanted`` names/ids."""
    names = {info.name.lower(): info.label for info in labelmap.segments}
    if not wanted:
        return {labelmap.segment_for(v).name: v for v in labelmap.label_values()}
    result = {}
    for item in wanted:
        if str(item).isdigit():
            result[labelmap.segment_for(int(item)).name] = int(item)
        elif str(item).lower() in names:
            result[str(item)] = names[str(item).lower()]
        else:
            known = ", ".join(sorted(info.name for info in labelmap.segments)) or "none (unnamed labels: use ids)"
            raise LabelError(f"Label '{item}' is not in the reference segmentation; known names: {known}.")
    return result


def _read_on_reference(path: Optional[Path], reference: Image, resample: bool, what: str) -> Image:
    if path is None or not path.exists():
        raise InputError(f"{what} file missing: {path}")
    labelmap = read_labelmap(path)
    if not reference.same_grid(labelmap):
        if not resample:
            raise GeometryMismatchError(
                f"{what} and reference grids differ ({reference.grid_difference(labelmap)}); "
                f"pass --resample to resample the {what} onto the reference grid")
        labelmap = resample_labels_onto(labelmap, reference)
    return labelmap


def _mask_for(labelmap: Image, name: str, label: int) -> np.ndarray:
    """The voxels of the segment with the same name, else the same label value."""
    names = {info.name.lower(): info.label for info in labelmap.segments}
    return labelmap.array == names.get(name.lower(), label)


def evaluate_labelmaps(result: StudyResult, reference: Image, predicted: Image, second: Optional[Image] = None,
                       labels: Optional[Sequence[str]] = None, tolerance_mm: float = 1.0) -> StudyResult:
    """Fill ``result`` with the metrics of ``predicted`` (and of a second model's or reader's ``second``, and
    of the two against each other) for each reference label; all three labelmaps on the reference grid.
    Segments are matched by name, else by label value. Used by ``radai evaluate`` and the Slicer tab."""
    for name, label in label_ids(reference, labels).items():
        ref_mask = reference.array == label
        pred_mask = _mask_for(predicted, name, label)
        result.per_label[name] = overlap_metrics(pred_mask, ref_mask, reference.spacing_mm, tolerance_mm).as_dict()
        result.detections[name] = lesion_detection(pred_mask, ref_mask, reference.spacing_mm)
        if second is not None:
            second_mask = _mask_for(second, name, label)
            result.per_label_b[name] = overlap_metrics(second_mask, ref_mask, reference.spacing_mm,
                                                       tolerance_mm).as_dict()
            result.a_vs_b[name] = overlap_metrics(pred_mask, second_mask, reference.spacing_mm,
                                                  tolerance_mm).as_dict()
    return result


def evaluate_study(row: StudyRow, labels: Optional[Sequence[str]] = None, tolerance_mm: float = 1.0,
                   resample: bool = False) -> StudyResult:
    """Metrics for one study; errors are captured in ``StudyResult.error`` (the cohort continues)."""
    result = StudyResult(row.study, row.group, row.date)
    try:
        reference = read_labelmap(row.reference)
        predicted = _read_on_reference(row.prediction, reference, resample, "prediction")
        second = (_read_on_reference(row.prediction_b, reference, resample, "prediction B")
                  if row.prediction_b is not None else None)
        evaluate_labelmaps(result, reference, predicted, second, labels, tolerance_mm)
    except (RadAIError, OSError, ValueError) as error:
        result.error = str(error)
    return result


def _summary_for(results: Sequence[StudyResult], label: str, n_bootstrap: int, seed: int) -> dict:
    rows = [r.per_label[label] for r in results if label in r.per_label]
    detections = [r.detections[label] for r in results if label in r.detections]
    dice = [row["dice"] for row in rows]
    stat = lambda key: (lambda sample: mean_defined([s[key] for s in sample]))
    volume_pairs = [(row["predicted_volume_ml"], row["reference_volume_ml"]) for row in rows]
    summary = {
        "studies": len(rows),
        "dice_mean": mean_defined(dice), "dice_ci95": bootstrap_ci(rows, stat("dice"), n_bootstrap, seed),
        "iou_mean": mean_defined([row["iou"] for row in rows]),
        "hd95_mm_mean": mean_defined([row["hd95_mm"] for row in rows]),
        "hd95_mm_ci95": bootstrap_ci(rows, stat("hd95_mm"), n_bootstrap, seed),
        "hd95_undefined_studies": sum(row["hd95_mm"] is None for row in rows),
        "assd_mm_mean": mean_defined([row["assd_mm"] for row in rows]),
        "nsd_mean": mean_defined([row["nsd"] for row in rows]),
        "volume_error_percent_mean": mean_defined([row["volume_error_percent"] for row in rows]),
        "volume_error_percent_ci95": bootstrap_ci(rows, stat("volume_error_percent"), n_bootstrap, seed),
    }
    tp = sum(d.true_positives for d in detections)
    fn = sum(d.false_negatives for d in detections)
    fp = sum(d.false_positives for d in detections)
    summary["lesion_sensitivity"] = tp / (tp + fn) if tp + fn else None
    summary["lesion_precision"] = tp / (tp + fp) if tp + fp else None
    summary["lesion_f1"] = (2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else None
    summary["false_positives_per_case"] = fp / len(detections) if detections else None
    summary["lesion_sensitivity_by_size"] = sensitivity_by_size(detections)
    if len(volume_pairs) >= 2:
        predicted, reference = np.array(volume_pairs).T
        summary["volume_bland_altman_ml"] = bland_altman(predicted, reference).as_dict()
        summary["volume_icc_2_1"] = icc_2_1(np.stack([predicted, reference], axis=1))
    return summary


def summarise(results: Sequence[StudyResult], n_bootstrap: int = 1000, seed: int = 0,
              drift_window_days: int = 90, drift_threshold: float = 0.7) -> dict:
    """Per-label summary, subgroup tables and drift windows (JSON-ready)."""
    ok = [r for r in results if r.error is None]
    labels = sorted({label for r in ok for label in r.per_label})
    summary = {"labels": {label: _summary_for(ok, label, n_bootstrap, seed) for label in labels},
               "comparison": summarise_comparison(ok, labels, n_bootstrap, seed),
               "studies_evaluated": len(ok),
               "studies_failed": [{"study": r.study, "error": r.error} for r in results if r.error],
               "bootstrap": {"resamples": n_bootstrap, "seed": seed, "level": "study"}}
    groups = sorted({r.group for r in ok if r.group})
    summary["subgroups"] = {group: {label: _summary_for([r for r in ok if r.group == group], label, n_bootstrap, seed)
                                    for label in labels} for group in groups}
    dated = [r for r in ok if r.date]
    summary["drift"] = {label: [vars(w) for w in drift_windows([r.date for r in dated if label in r.per_label],
                                                                [r.per_label[label]["dice"] for r in dated if label in r.per_label],
                                                                drift_window_days, drift_threshold)]
                        for label in labels} if dated else {}
    return summary
