"""Ejection-fraction-style measures from blood-pool labelmaps.

Definitions: EDV / ESV = blood-pool volume (voxel count × voxel volume, mL) at
end-diastole / end-systole; SV = EDV − ESV; EF = SV / EDV × 100 %; LV myocardial
mass = myocardium volume at ED (mL) × 1.05 g/mL; cardiac output = SV × heart
rate / 1000 (L/min). ED/ES default to the phases of maximum / minimum blood-pool
volume. ESV > EDV is reported honestly as a negative EF with a warning, never clamped.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from RadAISegmentLib.errors import InputError, LabelError
from RadAISegmentLib.image import Image, as_label_array

MYOCARDIUM_DENSITY_G_PER_ML = 1.05


def label_volume_ml(labelmap: Image, label: int | str) -> float:
    """Volume (mL) of one label given by id or segment name."""
    from .measurements import resolve_labels
    (value,) = resolve_labels(labelmap, [label])
    return float(np.count_nonzero(as_label_array(labelmap) == value)) * labelmap.voxel_volume_mm3 / 1000.0


def fractional_change(volume_a: float, volume_b: float) -> float:
    """Fractional change from state a to state b, in %: (b − a) / a × 100 (e.g. bladder filling, lung expiration)."""
    if volume_a == 0:
        raise InputError("The first state's volume is 0; a fractional change is undefined.")
    return 100.0 * (volume_b - volume_a) / volume_a


def _result(edv: float, esv: float, ed_phase: int, es_phase: int, myocardium_ml: Optional[float],
            heart_rate_bpm: Optional[float]) -> dict:
    if edv <= 0:
        raise LabelError("The blood pool is empty at end-diastole; check the label name or id.")
    stroke = edv - esv
    result = {"edv_ml": edv, "esv_ml": esv, "stroke_volume_ml": stroke, "ejection_fraction_percent": 100.0 * stroke / edv,
              "ed_phase": ed_phase, "es_phase": es_phase, "warnings": []}
    if esv > edv:
        result["warnings"].append("ESV is larger than EDV: the phases may be swapped or the labels wrong; "
                                  "EF is reported as computed (negative).")
    if myocardium_ml is not None:
        result["myocardial_mass_g"] = myocardium_ml * MYOCARDIUM_DENSITY_G_PER_ML
    if heart_rate_bpm:
        result["cardiac_output_l_min"] = stroke * heart_rate_bpm / 1000.0
    return result


def ejection_fraction_from_pair(ed_labelmap: Image, es_labelmap: Image, label: int | str = "LV blood pool",
                                myocardium: Optional[int | str] = None, heart_rate_bpm: Optional[float] = None) -> dict:
    """EDV, ESV, SV, EF (and mass, cardiac output) from an ED and an ES labelmap."""
    edv, esv = label_volume_ml(ed_labelmap, label), label_volume_ml(es_labelmap, label)
    myocardium_ml = label_volume_ml(ed_labelmap, myocardium) if myocardium is not None else None
    return _result(edv, esv, 0, 1, myocardium_ml, heart_rate_bpm)


def ejection_fraction_from_sequence(labelmaps: Sequence[Image], label: int | str = "LV blood pool",
                                    myocardium: Optional[int | str] = None, heart_rate_bpm: Optional[float] = None,
                                    ed_phase: Optional[int] = None, es_phase: Optional[int] = None,
                                    times_ms: Optional[Sequence[float]] = None) -> dict:
    """EF over a cardiac cycle: ED/ES = max/min blood-pool volume unless given; adds the volume curve
    (``volumes_ml``; ``times_ms``: the phases' trigger times when given, else evenly spread over one R-R
    interval of ``heart_rate_bpm``)."""
    if len(labelmaps) < 2:
        raise InputError("A sequence needs at least two phases.")
    volumes = [label_volume_ml(labelmap, label) for labelmap in labelmaps]
    ed = int(np.argmax(volumes)) if ed_phase is None else int(ed_phase)
    es = int(np.argmin(volumes)) if es_phase is None else int(es_phase)
    myocardium_ml = label_volume_ml(labelmaps[ed], myocardium) if myocardium is not None else None
    result = _result(volumes[ed], volumes[es], ed, es, myocardium_ml, heart_rate_bpm)
    result["volumes_ml"] = volumes
    if times_ms is not None:
        result["times_ms"] = [float(t) for t in times_ms]
    elif heart_rate_bpm:
        result["times_ms"] = [phase * 60000.0 / heart_rate_bpm / len(volumes) for phase in range(len(volumes))]
    return result


def read_labelmap_sequence(path: str | os.PathLike) -> list[Image]:
    """Phases from a 4D labelmap file (last axis = time) or a folder of 3D labelmaps sorted by name."""
    import SimpleITK as sitk
    from RadAISegmentLib.io import IMAGE_SUFFIXES, from_sitk, read_labelmap
    from RadAISegmentLib.atomic import output_suffix
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if output_suffix(p) in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"No labelmap files in {path}.")
        return [read_labelmap(file) for file in files]
    volume = sitk.ReadImage(str(path))
    if volume.GetDimension() != 4:
        raise InputError(f"{path.name} is {volume.GetDimension()}D; a sequence is a 4D file or a folder of 3D files.")
    size = list(volume.GetSize())
    phases = []
    for phase in range(size[3]):
        extractor = sitk.ExtractImageFilter()
        extractor.SetSize(size[:3] + [0])
        extractor.SetIndex([0, 0, 0, phase])
        phases.append(from_sitk(extractor.Execute(volume)))
    return phases


def write_volume_curve_csv(result: dict, path: str | os.PathLike) -> Path:
    from RadAISegmentLib.atomic import write_text_atomic
    lines = ["phase,volume_ml"] + [f"{i},{v:.4f}" for i, v in enumerate(result["volumes_ml"])]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def plot_volume_curve(result: dict, png_path: str | os.PathLike) -> Path:
    """PNG of blood-pool volume over the phases with ED and ES marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    volumes = result["volumes_ml"]
    x = result.get("times_ms") or list(range(len(volumes)))
    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    axes.plot(x, volumes, "-o", color="#c0392b", markersize=3)
    for phase, text in ((result["ed_phase"], "ED"), (result["es_phase"], "ES")):
        axes.annotate(text, (x[phase], volumes[phase]), textcoords="offset points", xytext=(0, 8), ha="center")
    axes.set_xlabel("Time in cycle (ms)" if result.get("times_ms") else "Phase")
    axes.set_ylabel("Blood-pool volume (mL)")
    axes.set_title(f"EF {result['ejection_fraction_percent']:.1f} %")
    from .report import save_figure
    return save_figure(figure, png_path)
