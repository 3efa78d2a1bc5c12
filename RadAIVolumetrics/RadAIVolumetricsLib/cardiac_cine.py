"""Cine MRI → ventricles → EF in one step: a ventricular model on every phase, ED/ES from the LV pool curve.

The model (e.g. the MONAI zoo's ``ventricular_short_axis_3label``: a 2D UNet run slice by slice, labels
``lv_pool``, ``myocardium``, ``rv_pool``) runs on each phase of a :class:`RadAISegmentLib.cine.CineSeries` at
its own window positions (no body crop: a slice model's window already spans the slice). ED / ES are the phases
of largest / smallest LV blood-pool volume; EDV, ESV, SV, EF, LV mass (myocardium at ED × 1.05 g/mL) and, with a
heart rate, cardiac output follow :mod:`.cardiac`'s definitions; the RV's own EDV / ESV / EF are added when the
model labels the RV pool.
"""
from __future__ import annotations

from typing import Optional, Sequence

from RadAISegmentLib.errors import ModelError
from RadAISegmentLib.image import Image, SegmentInfo
from RadAISegmentLib.progress import CancelToken, ProgressCallback, no_progress

from .cardiac import ejection_fraction_from_sequence, label_volume_ml

#: Label names (lower case, ``_`` read as a space) by role, as ventricular models and RadAI's phantom name them.
ROLE_NAMES = {"lv": ("lv blood pool", "lv pool", "left ventricle", "left ventricle cavity", "lv cavity", "lv"),
              "myocardium": ("lv myocardium", "myocardium", "left ventricle myocardium", "myo"),
              "rv": ("rv blood pool", "rv pool", "right ventricle", "right ventricle cavity", "rv cavity", "rv")}


def ventricle_labels(segments: Sequence[SegmentInfo], model_id: str = "the model") -> dict[str, int]:
    """Label id per role (``lv``, and ``myocardium`` / ``rv`` when present) from the model's segment names."""
    by_name = {info.name.lower().replace("_", " ").strip(): info.label for info in segments}
    roles = {role: next((by_name[n] for n in names if n in by_name), None) for role, names in ROLE_NAMES.items()}
    if roles["lv"] is None:
        known = ", ".join(sorted(info.name for info in segments)) or "none"
        raise ModelError(f"Model '{model_id}' has no LV blood-pool label (its labels: {known}); EF needs a ventricular "
                         "model such as ventricular_short_axis_3label.")
    return {role: label for role, label in roles.items() if label is not None}


def segment_cine(phases: Sequence[Image], model, device: str = "auto", precision: str = "auto",
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                 runtime: str = "auto") -> list[Image]:
    """One labelmap per phase (each on its phase's grid), the model at its own window positions
    (``precision``, ``runtime``: as :func:`RadAISegmentLib.inference.segment_image`)."""
    from RadAISegmentLib.inference import segment_image
    progress = progress or no_progress
    labelmaps = []
    for index, phase in enumerate(phases):
        def phase_progress(fraction: float, message: str, index: int = index) -> None:
            progress((index + fraction) / len(phases), f"phase {index + 1}/{len(phases)}: {message}")
        labelmaps.append(segment_image(phase, model, device=device, crop_foreground=False, precision=precision,
                                       progress=phase_progress, cancel=cancel, runtime=runtime))
    progress(1.0, "done")
    return labelmaps


def ejection_fraction_from_cine(cine, model, heart_rate_bpm: Optional[float] = None, device: str = "auto",
                                precision: str = "auto", progress: Optional[ProgressCallback] = None,
                                cancel: Optional[CancelToken] = None, runtime: str = "auto") -> tuple[dict, list[Image]]:
    """``(result, labelmaps)`` for a cine and a loaded ventricular model: the ``radai ef`` keys (``edv_ml``,
    ``esv_ml``, ``stroke_volume_ml``, ``ejection_fraction_percent``, ``ed_phase``, ``es_phase``,
    ``myocardial_mass_g``, ``cardiac_output_l_min`` with a heart rate, ``volumes_ml``, ``times_ms``, ``warnings``)
    plus ``model``, ``precision``, ``heart_rate_bpm`` (``--heart-rate``, else the DICOM header's) and the RV's.
    """
    roles = ventricle_labels(model.segments, model.card.id)           # before any inference: fail fast
    rate = heart_rate_bpm or cine.heart_rate_bpm
    labelmaps = segment_cine(cine.phases, model, device, precision, progress, cancel, runtime=runtime)
    result = ejection_fraction_from_sequence(labelmaps, roles["lv"], roles.get("myocardium"), rate,
                                             times_ms=cine.times_ms)
    result.update(model=model.card.id, precision=labelmaps[0].metadata.get("inference_precision"),
                  heart_rate_bpm=rate, heart_rate_source=("--heart-rate" if heart_rate_bpm else
                                                          "DICOM header" if rate else None),
                  phases=len(labelmaps))
    result["warnings"] = list(cine.warnings) + result["warnings"]
    if "rv" in roles:
        rv = [label_volume_ml(labelmap, roles["rv"]) for labelmap in labelmaps]
        result.update(rv_volumes_ml=rv, rv_edv_ml=max(rv), rv_esv_ml=min(rv),
                      rv_ejection_fraction_percent=100.0 * (max(rv) - min(rv)) / max(rv) if max(rv) > 0 else None)
    return result, labelmaps


def load_model_by_id_or_path(model: str):
    """An installed model by id, or a model folder / MONAI bundle (folder or zip) by path."""
    from pathlib import Path
    from RadAISegmentLib.inference import load_model
    from RadAISegmentLib.models.loaders import load_model_folder
    return load_model_folder(model) if Path(model).exists() else load_model(model)


def cine_ef_files(cine_path, model: str, labels_out=None, heart_rate_bpm: Optional[float] = None,
                  device: str = "auto", precision: str = "auto", progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None, runtime: str = "auto") -> dict:
    """File to file, for the CLI and a worker process: read the cine (4D file or DICOM folder), load ``model``
    (id or path), measure (:func:`ejection_fraction_from_cine`), and write the labelmap sequence to
    ``labels_out`` (4D file, atomically) when given. Returns the result dict (``output`` = the file written)."""
    from RadAISegmentLib.cine import read_cine, write_cine
    cine = read_cine(cine_path)
    loaded = load_model_by_id_or_path(model)
    result, labelmaps = ejection_fraction_from_cine(cine, loaded, heart_rate_bpm, device, precision, progress, cancel,
                                                    runtime=runtime)
    if labels_out:
        result["output"] = str(write_cine(labelmaps, labels_out, cine.times_ms))
    return result
