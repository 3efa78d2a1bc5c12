"""Compare two or more timepoints: register, match lesions, measure each on its own grid, classify response.

Measurements (volume, RECIST axes) are always taken on each timepoint's own
grid; follow-up masks are resampled onto the baseline grid only to match lesions.
"""
from __future__ import annotations

import csv
import io as text_io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from RadAISegmentLib.errors import InputError
from RadAISegmentLib.lesion.uncertainty import change_within_uncertainty, labelmap_volume_range
from RadAISegmentLib.progress import CancelToken, ProgressCallback

from ..measurements import measure_segments
from .matching import Track, match_timepoint, status_of
from .registration import Registration, move_labels_to_baseline, register
from .response import doubling_time_days, recist_category, select_targets, volumetric_category
from .timepoint import Timepoint, order_timepoints


@dataclass
class ComparisonResult:
    timepoints: list[dict]
    lesions: list[dict]
    sum_of_diameters_mm: list[float]
    total_volume_ml: list[float]
    target_volume_ml: list[float]
    recist_by_timepoint: list[Optional[str]]
    volumetric_by_timepoint: list[Optional[str]]
    registrations: list[dict]
    target_ids: list[int]
    warnings: list[str] = field(default_factory=list)
    target_volume_range_ml: list = field(default_factory=list)
    volume_change_within_uncertainty: list = field(default_factory=list)

    def uncertainty_note(self, index: int = -1) -> str:
        """'within measurement uncertainty' when the target volume's change from baseline is smaller than the
        two timepoints' combined volume range, else ''."""
        flags = self.volume_change_within_uncertainty
        return "within measurement uncertainty" if flags and flags[index] else ""

    def to_json(self) -> dict:
        return {"timepoints": self.timepoints, "lesions": self.lesions,
                "sum_of_diameters_mm": self.sum_of_diameters_mm, "total_volume_ml": self.total_volume_ml,
                "target_volume_ml": self.target_volume_ml, "target_lesion_ids": self.target_ids,
                "recist_response": self.recist_by_timepoint[-1], "volumetric_response": self.volumetric_by_timepoint[-1],
                "recist_by_timepoint": self.recist_by_timepoint, "volumetric_by_timepoint": self.volumetric_by_timepoint,
                "nadir_sum_of_diameters_mm": min(self.sum_of_diameters_mm),
                "target_volume_range_ml": self.target_volume_range_ml,
                "volume_change_within_uncertainty": self.volume_change_within_uncertainty,
                "volumetric_note": self.uncertainty_note() or None,
                "registration": self.registrations, "warnings": self.warnings}

    def to_csv(self) -> str:
        buffer = text_io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["lesion_id", "status", "timepoint", "date", "volume_ml", "volume_change_percent",
                         "recist_long_axis_mm", "doubling_time_days"])
        for lesion in self.lesions:
            for index, point in enumerate(self.timepoints):
                writer.writerow([lesion["id"], lesion["status"], point["name"], point["date"], lesion["volumes_ml"][index],
                                 lesion["volume_change_percent"][index], lesion["recist_long_axis_mm"][index],
                                 lesion["doubling_time_days"]])
        return buffer.getvalue()

    def track_table(self) -> tuple[list[dict], list[tuple[str, str]]]:
        """``(rows, columns)`` of the per-lesion table the Slicer module shows: one row per lesion track
        (status, volume per timepoint, last volume change, last RECIST long axis, doubling time); columns as
        ``(name, unit)``."""
        names = [point["name"] for point in self.timepoints]
        columns = [("lesion", ""), ("status", "")] + [(f"volume {name}", "mL") for name in names]
        columns += [("volume change", "%"), (f"RECIST long axis {names[-1]}", "mm"), ("doubling time", "days")]
        rows = []
        for lesion in self.lesions:
            row = {"lesion": f"Lesion {lesion['id']}", "status": lesion["status"],
                   "volume change": lesion["volume_change_percent"][-1],
                   f"RECIST long axis {names[-1]}": lesion["recist_long_axis_mm"][-1],
                   "doubling time": lesion["doubling_time_days"]}
            row.update({f"volume {name}": lesion["volumes_ml"][i] for i, name in enumerate(names)})
            rows.append(row)
        return rows, columns

    def summary_text(self) -> str:
        lines = [f"{len(self.timepoints)} timepoints, {len(self.lesions)} lesion tracks, targets {self.target_ids}."]
        for lesion in self.lesions:
            volumes = ", ".join("—" if v is None else f"{v:.2f}" for v in lesion["volumes_ml"])
            vdt = lesion["doubling_time_days"]
            lines.append(f"Lesion {lesion['id']} ({lesion['status']}): {volumes} mL"
                         + (f", doubling time {vdt:.0f} days" if vdt else ""))
        note = self.uncertainty_note()
        lines.append(f"Sum of diameters: {', '.join(f'{s:.1f}' for s in self.sum_of_diameters_mm)} mm; "
                     f"RECIST 1.1: {self.recist_by_timepoint[-1]}; volumetric: {self.volumetric_by_timepoint[-1]}"
                     + (f" (target volume change {note})." if note else "."))
        return "\n".join(lines + [f"Warning: {w}" for w in self.warnings])

    def plot(self, png_path: str | os.PathLike) -> Path:
        """Per-lesion volume over time (PNG)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        figure, axes = plt.subplots(figsize=(5.8, 3.8))
        x = [point["days_from_baseline"] if point["days_from_baseline"] is not None else i
             for i, point in enumerate(self.timepoints)]
        for lesion in self.lesions:
            points = [(xi, v) for xi, v in zip(x, lesion["volumes_ml"]) if v is not None]
            axes.plot([p[0] for p in points], [p[1] for p in points], "-o", label=f"lesion {lesion['id']} ({lesion['status']})")
        axes.set_xlabel("Days from baseline")
        axes.set_ylabel("Volume (mL)")
        axes.set_title(f"RECIST {self.recist_by_timepoint[-1]}, volumetric {self.volumetric_by_timepoint[-1]}")
        axes.legend(fontsize=8)
        from ..report import save_figure
        return save_figure(figure, png_path)


def compare_timepoints(timepoints: Sequence[Timepoint], transform: str = "rigid", organs: Optional[dict] = None,
                       progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> ComparisonResult:
    """Track lesions over ``timepoints`` (the earliest is the baseline) and classify response."""
    if len(timepoints) < 2:
        raise InputError("A comparison needs a baseline and at least one follow-up.")
    ordered, warnings = order_timepoints(timepoints)
    baseline = ordered[0]
    measures = []
    for index, point in enumerate(ordered):
        if cancel is not None:
            cancel.raise_if_cancelled()
        measures.append({row["label"]: row for row in measure_segments(point.lesions)})
        stated = point.lesions.metadata.get("volume_range_ml") or {}
        for label, row in measures[-1].items():
            row["volume_range_ml"] = (tuple(stated[label]) if label in stated else
                                      labelmap_volume_range(point.lesions.array == label,
                                                            point.lesions.spacing_mm)[1:])
        if progress:
            progress((index + 0.5) / len(ordered) / 2, f"measured {point.name or index}")
    tracks: list[Track] = []
    registrations: list[Registration] = []
    for index, point in enumerate(ordered):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if index == 0:
            moved = baseline.lesions.array
        else:
            registration = register(baseline.image, point.image, kind=transform)
            registrations.append(registration)
            warnings += [f"{point.name or f't{index}'}: {w}" for w in registration.warnings]
            moved = move_labels_to_baseline(point.lesions, baseline.image, registration).array
        diameters = {label: row["max_3d_diameter_mm"] for label, row in measures[index].items()}
        match_timepoint(tracks, index, moved, baseline.image.spacing_mm, diameters)
        if progress:
            progress(0.5 + (index + 1) / len(ordered) / 2, f"matched {point.name or index}")
    return _assemble(ordered, measures, tracks, registrations, organs, warnings)


def _assemble(ordered, measures, tracks, registrations, organs, warnings) -> ComparisonResult:
    n = len(ordered)
    lesions, long_axes_by_track = [], {}
    for track in tracks:
        volumes, axes, ranges = [], [], []
        for index in range(n):
            labels = track.members.get(index)
            if index < track.first_timepoint:
                volumes.append(None)
                axes.append(None)
                ranges.append(None)
            else:
                volumes.append(sum(measures[index][l]["volume_ml"] for l in labels or []))
                axes.append(sum(measures[index][l]["recist_long_axis_mm"] for l in labels or []))
                ranges.append([sum(measures[index][l]["volume_range_ml"][side] for l in labels or [])
                               for side in (0, 1)])
        first = volumes[track.first_timepoint]
        changes = [None if v is None or not first else 100.0 * (v - first) / first for v in volumes]
        present = [i for i, v in enumerate(volumes) if v]
        vdt = None
        if len(present) >= 2 and all(ordered[i].date for i in (present[0], present[-1])):
            days = (ordered[present[-1]].date - ordered[present[0]].date).days
            vdt = doubling_time_days(volumes[present[0]], volumes[present[-1]], days)
        growth = None
        if len(present) >= 2 and ordered[present[0]].date and ordered[present[-1]].date:
            days = (ordered[present[-1]].date - ordered[present[0]].date).days
            growth = (volumes[present[-1]] - volumes[present[0]]) / days if days > 0 else None
        lesions.append({"id": track.id, "status": status_of(track, n), "volumes_ml": volumes,
                        "volume_range_ml": ranges,
                        "change_within_uncertainty": [None if r is None or ranges[track.first_timepoint] is None
                                                      else change_within_uncertainty(ranges[track.first_timepoint], r)
                                                      for r in ranges],
                        "volume_change_percent": changes, "recist_long_axis_mm": axes,
                        "doubling_time_days": vdt, "growth_rate_ml_per_day": growth,
                        "doubling_time_note": None if vdt else "undefined: lesion not growing, or dates missing",
                        "events": track.events,
                        "labels_by_timepoint": [sorted(int(l) for l in track.members.get(i, [])) for i in range(n)]})
        long_axes_by_track[track.id] = axes[0] if axes[0] is not None else 0.0
    baseline_tracks = {t.id: long_axes_by_track[t.id] for t in tracks if t.first_timepoint == 0}
    targets = select_targets(baseline_tracks, organs)
    by_id = {lesion["id"]: lesion for lesion in lesions}
    sums = [sum(by_id[t]["recist_long_axis_mm"][i] or 0.0 for t in targets) for i in range(n)]
    target_volumes = [sum(by_id[t]["volumes_ml"][i] or 0.0 for t in targets) for i in range(n)]
    target_ranges = [[sum((by_id[t]["volume_range_ml"][i] or [0.0, 0.0])[side] for t in targets) for side in (0, 1)]
                     for i in range(n)]
    within = [change_within_uncertainty(target_ranges[0], target_ranges[i]) if targets else None for i in range(n)]
    totals = [sum(lesion["volumes_ml"][i] or 0.0 for lesion in lesions) for i in range(n)]
    if not targets:
        warnings.append("no measurable target lesion (long axis >= 10 mm) at baseline: RECIST is not evaluable")
    recist, volumetric = [None], [None]
    for index in range(1, n):
        new = any(t.first_timepoint == index for t in tracks)
        recist.append(recist_category(sums, index, new) if targets else ("PD" if new else "NE"))
        volumetric.append(volumetric_category(target_volumes, index, new) if targets else ("PD" if new else "NE"))
    base_date = ordered[0].date
    points = [{"name": p.name or f"t{i}", "date": p.date.isoformat() if p.date else None,
               "days_from_baseline": (p.date - base_date).days if p.date and base_date else None}
              for i, p in enumerate(ordered)]
    return ComparisonResult(points, lesions, sums, totals, target_volumes, recist, volumetric,
                            [r.as_dict() for r in registrations], targets, warnings, target_ranges, within)
