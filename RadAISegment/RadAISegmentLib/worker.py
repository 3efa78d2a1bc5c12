"""RadAI's worker process: segmentation and saliency out of Slicer's process.

Started by :mod:`.worker_client` with the Python that runs Slicer (``PythonSlicer``) as
``python -m RadAISegmentLib.worker``. It speaks JSON lines: one request per line on stdin, events on
stdout (anything else the libraries print goes to stderr, so stdout carries only the protocol).

Requests (``id`` is the caller's; every request gets exactly one ``result`` or ``error`` event)::

    {"id": 1, "op": "segment", "image_key": "...", "image": "/tmp/x/input.nrrd" (only if the worker does
     not hold image_key), "metadata": {"modality": "CT"}, "model": "lesion-roi", "seeds_ras": [[R, A, S]],
     "box_mm": 40.0, "device": "cpu", "fast": false, "crop_foreground": true, "output": "/tmp/x/labels.seg.nrrd",
     "env": {"RADAI_MODELS_DIR": "..."}}
    {"id": 2, "op": "explain", "image_key": ..., "model": ..., "seed_ras": [R, A, S] | null, "box_mm": ...,
     "label": null, "output": "/tmp/x/saliency.nrrd"}
    {"id": 3, "op": "ping"}          {"op": "shutdown"}

Events::

    {"event": "ready", "pid": 123, "protocol": 1, "python": "3.12.10", "torch": "2.13.0"}
    {"event": "progress", "id": 1, "fraction": 0.42, "message": "window 5/12", "eta_s": 7.5}
    {"event": "result", "id": 1, "output": "...", "image_key": "...", "seconds": 3.2, ...}
    {"event": "error", "id": 1, "type": "InputError", "message": "...", "traceback": "..."}

The process stays alive between requests: models stay loaded (``inference.load_model`` caches them)
and so does the last input image, keyed by the caller's ``image_key`` (an identity of the volume's
voxels and geometry), so a follow-up request on the same image pays neither process start-up, nor the
PyTorch import, nor reading the image again. Outputs are written atomically; the caller owns the
folder they are written to and removes it.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Optional

PROTOCOL = 1
#: environment variables a request may set for the engine (the caller's current values)
FORWARDED_ENV = ("RADAI_MODELS_DIR", "RADAI_RESOURCES")
#: progress events per second at most (the caller polls ~10 times a second)
MAX_PROGRESS_RATE_HZ = 20.0


def protocol_stream():
    """A private duplicate of stdout for the protocol; file descriptor 1 then points at stderr so that
    stray prints (ours, the libraries', C code's) can never corrupt the JSON lines."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


class Worker:
    """Serves requests one at a time; ``emit`` writes one event."""

    def __init__(self, emit: Callable[[dict], None]) -> None:
        self.emit = emit
        self.image_key: Optional[str] = None
        self.image = None

    # -- helpers -----------------------------------------------------------------------------------
    def _progress(self, request_id: Any) -> Callable[[float, str], None]:
        from .progress import EtaEstimator
        eta, last = EtaEstimator(), {"time": 0.0, "message": None}

        def progress(fraction: float, message: str) -> None:
            now = time.monotonic()
            if message == last["message"] and now - last["time"] < 1.0 / MAX_PROGRESS_RATE_HZ and fraction < 1.0:
                return
            last.update(time=now, message=message)
            fraction = float(min(max(fraction, 0.0), 1.0))
            self.emit({"event": "progress", "id": request_id, "fraction": fraction, "message": message,
                       "eta_s": eta.eta_seconds(fraction)})
        return progress

    def _load_image(self, request: dict):
        """The request's image: the one held under ``image_key``, else read from ``image``."""
        from .errors import InputError
        from .io import read_image
        key = request.get("image_key")
        if key and key == self.image_key and self.image is not None:
            return self.image, True
        path = request.get("image")
        if not path:
            raise InputError(f"The worker does not hold image {key!r} and the request names no image file; "
                             "send the image again.")
        image = read_image(path)
        metadata = dict(request.get("metadata") or {})
        if metadata:
            image = image.with_array(image.array, **metadata)
        self.image_key, self.image = key, image
        return image, False

    # -- operations ------------------------------------------------------------------------------------
    def segment(self, request: dict) -> dict:
        from .inference import run_model
        from .io import write_segmentation_nrrd
        image, cached = self._load_image(request)
        labelmap = run_model(image, request["model"], seeds_ras=request.get("seeds_ras") or None,
                             box_mm=request.get("box_mm"), device=request.get("device", "auto"),
                             fast=bool(request.get("fast", False)), progress=self._progress(request.get("id")),
                             crop_foreground=bool(request.get("crop_foreground", True)))
        write_segmentation_nrrd(labelmap, request["output"])
        return {"output": request["output"], "image_cached": cached,
                "labels": [int(v) for v in labelmap.label_values()]}

    def explain(self, request: dict) -> dict:
        from .io import write_image
        from .saliency import explain_image
        image, cached = self._load_image(request)
        seed = request.get("seed_ras")
        result = explain_image(image, request["model"], label=request.get("label") or None,
                               seed_ras=tuple(seed) if seed is not None else None, box_mm=request.get("box_mm"),
                               progress=self._progress(request.get("id")))
        write_image(result.map, request["output"], compress=False)
        metadata = json.loads(json.dumps(result.metadata, default=str))
        return {"output": request["output"], "image_cached": cached, "metadata": metadata}

    def ping(self, request: dict) -> dict:
        return {"pong": True, "image_key": self.image_key}

    def handle(self, request: dict) -> None:
        request_id = request.get("id")
        started = time.monotonic()
        for name in FORWARDED_ENV:
            value = (request.get("env") or {}).get(name)
            if value:
                os.environ[name] = value
            elif name in (request.get("env") or {}):
                os.environ.pop(name, None)
        operation = {"segment": self.segment, "explain": self.explain, "ping": self.ping}.get(request.get("op"))
        try:
            if operation is None:
                raise ValueError(f"Unknown operation {request.get('op')!r}; expected segment, explain or ping.")
            reply = operation(request)
        except MemoryError:
            self.emit({"event": "error", "id": request_id, "type": "MemoryError",
                       "message": "The worker ran out of memory.", "traceback": traceback.format_exc()})
        except Exception as error:  # noqa: BLE001 - every failure is reported to the caller, typed
            self.emit({"event": "error", "id": request_id, "type": type(error).__name__, "message": str(error),
                       "traceback": traceback.format_exc()})
        else:
            self.emit({"event": "result", "id": request_id, "image_key": self.image_key,
                       "seconds": round(time.monotonic() - started, 3), **reply})


def main() -> int:
    protocol = protocol_stream()

    def emit(event: dict) -> None:
        protocol.write(json.dumps(event) + "\n")
        protocol.flush()

    import torch  # the slow import happens before "ready", not inside the first request
    from . import inference  # noqa: F401
    emit({"event": "ready", "pid": os.getpid(), "protocol": PROTOCOL, "python": sys.version.split()[0],
          "torch": torch.__version__})
    worker = Worker(emit)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as error:
            emit({"event": "error", "id": None, "type": "ValueError", "message": f"Not a JSON request: {error}"})
            continue
        if request.get("op") == "shutdown":
            break
        worker.handle(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
