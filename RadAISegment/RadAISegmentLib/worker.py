"""RadAI's worker process: segmentation, corrections, saliency and model downloads out of Slicer's process.

Started by :mod:`.worker_client` with the Python that runs Slicer (``PythonSlicer``) as
``python -m RadAISegmentLib.worker``. It speaks JSON lines: one request per line on stdin, events on
stdout (anything else the libraries print goes to stderr, so stdout carries only the protocol).

Requests (``id`` is the caller's; every request gets exactly one ``result`` or ``error`` event)::

    {"id": 1, "op": "segment", "image_key": "...", "image": "/tmp/x/input.nrrd" (only if the worker does
     not hold image_key), "metadata": {"modality": "CT"}, "model": "lesion-roi", "seeds_ras": [[R, A, S]],
     "box_mm": 40.0, "boxes_ras": [[R1, A1, S1, R2, A2, S2]], "include_ras": [...], "exclude_ras": [...],
     "device": "cpu", "precision": "auto", "fast": false, "crop_foreground": true,
     "output": "/tmp/x/labels.seg.nrrd", "env": {"RADAI_MODELS_DIR": "..."}}
    {"id": 2, "op": "correct", "image_key": ..., "model": ..., "prompt": {"seed_ras": ..., "include_ras": ...},
     "previous": {"file": "/tmp/x/previous.npy", "offset_kji": [k, j, i]} | null, "output": "/tmp/x/lesion.npy"}
    {"id": 3, "op": "explain", "image_key": ..., "model": ..., "seed_ras": [R, A, S] | null, "box_mm": ...,
     "label": null, "output": "/tmp/x/saliency.nrrd"}
    {"id": 4, "op": "install", "model": "spleen_ct_segmentation", "reinstall": false, "files": []}
    {"op": "cancel", "id": 4}        (cooperative: an install stops within one network read)
    {"id": 5, "op": "ping"}          {"op": "shutdown"}

Events::

    {"event": "ready", "pid": 123, "protocol": 2, "python": "3.12.10", "torch": "2.13.0"}
    {"event": "progress", "id": 1, "fraction": 0.42, "message": "window 5/12", "eta_s": 7.5}
    {"event": "result", "id": 1, "output": "...", "image_key": "...", "seconds": 3.2, ...}
    {"event": "error", "id": 1, "type": "InputError", "message": "...", "traceback": "..."}

A lesion model's ``segment`` result lists each lesion (``lesions``: label, volume_ml, volume_range_ml,
voxels, prompt as assembled); ``correct`` re-runs one lesion on the part of the image its crop needs
(:func:`.lesion_session.correct_lesion`) and writes its new outline as a ``.npy`` (uint8 ``[k, j, i]``,
the outline's bounding box at ``offset_kji``).

The process stays alive between requests: models stay loaded (``inference.load_model`` caches them)
and so does the last input image, keyed by the caller's ``image_key`` (an identity of the volume's
voxels and geometry), so a follow-up request on the same image pays neither process start-up, nor the
PyTorch import, nor reading the image again. Outputs are written atomically; the caller owns the
folder they are written to and removes it. :class:`Worker` is extended by other packages' workers
(``RadAIVolumetricsLib.worker`` adds the cine operation) through :meth:`Worker.operations`.
"""
from __future__ import annotations

import collections
import json
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional

PROTOCOL = 2
#: environment variables a request may set for the engine (the caller's current values)
FORWARDED_ENV = ("RADAI_MODELS_DIR", "RADAI_RESOURCES", "RADAI_CATALOGUE")
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


def start_inbox(stream) -> "queue.Queue":
    """Lines of ``stream`` read by a thread into a queue (``None`` at its end), so that a long operation
    can look for a ``cancel`` request without blocking."""
    inbox: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            inbox.put(line)
        inbox.put(None)
    threading.Thread(target=read, name="RadAI worker stdin", daemon=True).start()
    return inbox


class Worker:
    """Serves requests one at a time; ``emit`` writes one event, ``inbox`` (optional) holds further lines."""

    def __init__(self, emit: Callable[[dict], None], inbox: Optional["queue.Queue"] = None) -> None:
        self.emit = emit
        self.inbox = inbox
        self.pending: collections.deque = collections.deque()
        self.image_key: Optional[str] = None
        self.image = None

    def operations(self) -> dict:
        """op name -> handler(request) -> reply dict; subclasses add theirs."""
        return {"segment": self.segment, "correct": self.correct, "explain": self.explain, "install": self.install,
                "ping": self.ping}

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

    def cancel_requested(self, request_id: Any) -> bool:
        """True when a ``cancel`` for ``request_id`` has arrived; other lines wait in ``pending``."""
        found = False
        while self.inbox is not None:
            try:
                line = self.inbox.get_nowait()
            except queue.Empty:
                break
            try:
                request = json.loads(line) if line else None
            except ValueError:
                request = None
            if request and request.get("op") == "cancel" and request.get("id") == request_id:
                found = True
            elif not (request and request.get("op") == "cancel"):
                self.pending.append(line)
        return found

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
        from .inference import load_model, run_model
        from .io import write_segmentation_nrrd
        image, cached = self._load_image(request)
        progress, device = self._progress(request.get("id")), request.get("device", "auto")
        precision = request.get("precision") or "auto"
        model = load_model(request["model"], device)
        reply: dict = {"image_cached": cached, "model_version": model.card.version}
        if model.card.task == "promptable-lesion":
            labelmap, reply["lesions"] = self._segment_lesions(image, model, request, progress, precision)
        else:
            labelmap = run_model(image, request["model"], device=device, fast=bool(request.get("fast", False)),
                                 progress=progress, crop_foreground=bool(request.get("crop_foreground", True)),
                                 precision=precision, runtime=request.get("runtime") or "auto")
        write_segmentation_nrrd(labelmap, request["output"])
        return dict(reply, output=request["output"], labels=[int(v) for v in labelmap.label_values()],
                    inference_precision=str(labelmap.metadata.get("inference_precision", "")))

    @staticmethod
    def _segment_lesions(image, model, request: dict, progress, precision: str):
        """Seeds, drawn boxes and clicks assembled into one prompt per lesion (the CLI's rule), all segmented."""
        from .lesion.predict import prompt_settings, segment_prompts
        from .lesion.prompts import assemble_prompts
        from .lesion_session import prompt_as_dict
        settings = prompt_settings(model)
        prompts = assemble_prompts(image, request.get("seeds_ras") or [], request.get("boxes_ras") or [],
                                   request.get("include_ras") or [], request.get("exclude_ras") or [],
                                   request.get("box_mm"), None, settings.grid, settings.default_box_mm)
        labelmap, volumes = segment_prompts(image, prompts, model, request.get("device", "auto"), None, progress,
                                            None, precision)
        lesions = [dict(volume.as_dict(), name=labelmap.segment_for(volume.label).name, prompt=prompt_as_dict(prompt))
                   for prompt, volume in zip(prompts, volumes)]
        return labelmap, lesions

    def correct(self, request: dict) -> dict:
        """One lesion again from its prompt and its current outline; only that lesion's voxels come back."""
        import numpy as np
        from .atomic import atomic_path
        from .inference import load_model
        from .lesion_session import correct_lesion, prompt_from_dict
        image, cached = self._load_image(request)
        device = request.get("device", "auto")
        previous = request.get("previous")
        outline = None
        if previous:
            outline = (np.load(previous["file"], allow_pickle=False), tuple(int(v) for v in previous["offset_kji"]))
        correction = correct_lesion(image, prompt_from_dict(request["prompt"]), load_model(request["model"], device),
                                    outline, device, request.get("precision") or "auto",
                                    self._progress(request.get("id")))
        with atomic_path(request["output"]) as path:
            with open(path, "wb") as stream:
                np.save(stream, correction.mask, allow_pickle=False)
        return {"output": request["output"], "image_cached": cached, "offset_kji": list(correction.offset_kji),
                "volume_ml": correction.volume_ml, "volume_range_ml": list(correction.volume_range_ml),
                "voxels": correction.voxels, "prompt": request["prompt"]}

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

    def install(self, request: dict) -> dict:
        """A catalogue model downloaded, verified and installed (``models.download_job``); a ``cancel`` request
        stops it cooperatively, so the cache and the downloads folder stay as they were."""
        from .models.download_job import ModelInstallJob
        job = ModelInstallJob(request["model"], reinstall=bool(request.get("reinstall", False)),
                              files=tuple(request.get("files") or ()))
        progress = self._progress(request.get("id"))
        while not job.wait(0.1):
            progress(job.fraction, job.message)
            if self.cancel_requested(request.get("id")):
                job.cancel()
        report = job.result()
        return {"model_id": report.card.id, "version": report.card.version, "notes": list(report.notes),
                "downloaded_bytes": int(report.downloaded_bytes)}

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
        operations = self.operations()
        operation = operations.get(request.get("op"))
        try:
            if operation is None:
                raise ValueError(f"Unknown operation {request.get('op')!r}; expected one of {', '.join(operations)}.")
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

    def serve(self) -> None:
        """Handle requests until ``shutdown`` or the end of the input (``cancel`` lines for finished requests
        are dropped)."""
        while True:
            line = self.pending.popleft() if self.pending else self.inbox.get()
            if line is None:
                return
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError as error:
                self.emit({"event": "error", "id": None, "type": "ValueError", "message": f"Not a JSON request: {error}"})
                continue
            if request.get("op") == "shutdown":
                return
            if request.get("op") != "cancel":
                self.handle(request)


def main(worker_class: type = Worker) -> int:
    protocol = protocol_stream()

    def emit(event: dict) -> None:
        protocol.write(json.dumps(event) + "\n")
        protocol.flush()

    from .cpu_memory import tune_cpu_memory
    tune_cpu_memory()        # before PyTorch's first allocation
    import torch  # the slow import happens before "ready", not inside the first request
    from . import inference  # noqa: F401
    emit({"event": "ready", "pid": os.getpid(), "protocol": PROTOCOL, "python": sys.version.split()[0],
          "torch": torch.__version__})
    worker_class(emit, start_inbox(sys.stdin)).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
