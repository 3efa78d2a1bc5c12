"""RadAI Volumetrics' worker process: RadAI Segment's worker (:mod:`RadAISegmentLib.worker`) plus the cine
operation, run as ``python -m RadAIVolumetricsLib.worker`` (the Volumetrics package may use the Segment
engine, never the reverse, so the cine operation lives here)::

    {"id": 1, "op": "cine-ef", "cine": "/tmp/x/cine.nii.gz", "model": "ventricular_short_axis_3label",
     "heart_rate": 60.0 | null, "device": "auto", "precision": "auto", "output": "/tmp/x/labels.nii.gz"}

Its result carries the ``radai ef`` keys (``edv_ml``, ``esv_ml``, ``ejection_fraction_percent``, ``volumes_ml``,
``times_ms`` ...; :func:`.cardiac_cine.ejection_fraction_from_cine`), ``output``, the labelmap sequence written
atomically as a 4D file (one labelmap per phase, on the cine's grid), and ``segments``, the model's labels
(names, colours, codes) that a 4D file cannot carry.
"""
from __future__ import annotations

import json
import sys

from RadAISegmentLib.worker import Worker, main


class VolumetricsWorker(Worker):
    def operations(self) -> dict:
        return dict(super().operations(), **{"cine-ef": self.cine_ef})

    def cine_ef(self, request: dict) -> dict:
        from .cardiac_cine import cine_ef_files, load_model_by_id_or_path
        result = cine_ef_files(request["cine"], request["model"], request["output"], request.get("heart_rate") or None,
                               request.get("device", "auto"), request.get("precision") or "auto",
                               self._progress(request.get("id")))
        segments = [info.as_dict() for info in load_model_by_id_or_path(request["model"]).segments]   # cached
        return {"result": json.loads(json.dumps(result, default=float)), "output": result["output"],
                "segments": segments}


if __name__ == "__main__":
    sys.exit(main(VolumetricsWorker))
