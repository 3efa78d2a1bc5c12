"""What one study goes through on a worker: segment → measure (→ explain) → outputs.

:func:`process_study` is a plain function (picklable, no Dask import) so the
same code runs in a plain loop, on a ``LocalCluster`` or on a remote cluster.
Its outputs are built in a temporary folder renamed into place as a whole, the
completion record written last: a killed worker never leaves a study that
looks complete. Failures are returned as data, so one corrupt study never
stops a cohort.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from RadAISegmentLib.atomic import atomic_directory

from .studies import COMPLETION_RECORD, Study, completed_record, study_fingerprint

#: measurement keys copied into the cohort table (nested values are left to measurements.json)
TABLE_KEYS = ("label", "name", "voxel_count", "volume_ml", "mesh_volume_mm3", "surface_area_mm2", "sphericity",
              "max_3d_diameter_mm", "recist_long_axis_mm", "recist_short_axis_mm")


def _segment(study: Study, image, settings: dict):
    from RadAISegmentLib.io import read_labelmap
    if settings.get("model"):
        from RadAISegmentLib.inference import run_model
        return run_model(image, settings["model"], seeds_ras=study.seeds_ras or None,
                         device=settings.get("device", "auto"), fast=bool(settings.get("fast")))
    if study.segmentation is None:
        from RadAISegmentLib.errors import InputError
        raise InputError("no --model given and the study has no segmentation file to measure")
    return read_labelmap(study.segmentation, reference=image)


def _table_rows(study_name: str, measures: list[dict]) -> list[dict]:
    return [{"study": study_name, "status": "done", "error": "", **{key: row.get(key) for key in TABLE_KEYS}}
            for row in measures]


def process_study(study: Study, out_root: str, settings: dict) -> dict[str, Any]:
    """Run one study; returns ``{"study", "status": done|skipped|failed, "rows", "error", "seconds", "worker_pid"}``."""
    started = time.perf_counter()
    out_dir = Path(out_root) / study.name
    base = {"study": study.name, "worker_pid": os.getpid()}
    try:
        fingerprint = study_fingerprint(study, settings)
        record = completed_record(out_dir, fingerprint)
        if record is not None:
            return {**base, "status": "skipped", "rows": record["rows"], "error": "",
                    "seconds": time.perf_counter() - started}
        from RadAISegmentLib.io import read_image, write_image
        image = read_image(study.image)
        image.require_finite()
        labelmap = _segment(study, image, settings)
        measures: list[dict] = []
        with atomic_directory(out_dir) as tmp:
            write_image(labelmap, tmp / "segmentation.seg.nrrd")
            if settings.get("measure", True):
                from RadAIVolumetricsLib.measurements import measure_segments
                measures = measure_segments(labelmap, image)
                (tmp / "measurements.json").write_text(json.dumps({"segments": measures}, indent=2, default=float))
            if settings.get("explain") and settings.get("model"):
                from RadAISegmentLib.saliency import explain_image
                result = explain_image(image, settings["model"], seed_ras=(study.seeds_ras or [None])[0])
                write_image(result.map, tmp / "saliency.nii.gz")
                (tmp / "saliency.json").write_text(json.dumps(result.metadata, indent=2, default=str))
            rows = _table_rows(study.name, measures) or [{"study": study.name, "status": "done", "error": ""}]
            record = {"study": study.name, "status": "done", "fingerprint": fingerprint, "settings": settings,
                      "inputs": {"image": str(study.image), "segmentation": str(study.segmentation or "")},
                      "rows": rows, "seconds": time.perf_counter() - started}
            (tmp / COMPLETION_RECORD).write_text(json.dumps(record, indent=2, default=str))
        return {**base, "status": "done", "rows": rows, "error": "", "seconds": time.perf_counter() - started}
    except Exception as error:  # noqa: BLE001 - failure isolation: reported in the cohort table
        message = f"{type(error).__name__}: {error}"
        if os.environ.get("RADAI_DEBUG"):
            message += "\n" + traceback.format_exc()
        return {**base, "status": "failed", "error": message, "seconds": time.perf_counter() - started,
                "rows": [{"study": study.name, "status": "failed", "error": message}]}


def model_settings(model_id: Optional[str]) -> dict:
    """Settings that identify a model exactly (its weights' SHA-256), for fingerprints."""
    if not model_id:
        return {}
    from RadAISegmentLib.models.cache import find_model
    card = find_model(model_id)
    return {"model": model_id, "model_sha256": card.weights_sha256, "model_version": card.version}
