"""Segmentation, correction, Grad-CAM and download jobs run by RadAI's worker process (:mod:`.worker`), polled
from the GUI.

A :class:`WorkerJob` captures everything it runs on when it starts (:class:`JobInputs`: the image's
identity key, model, seeds, box, clicks, device, options), writes the image once into a private folder as
NRRD (only when the worker does not already hold that image), and sends one request per stage
(``segment``, then ``explain`` when asked; or ``correct``: one lesion again from its prompt and its current
outline, which the job writes beside it). :meth:`WorkerJob.poll` reads the worker's progress without
blocking (the Slicer module calls it from a timer); :meth:`WorkerJob.cancel` kills the worker and removes
the folder, so nothing is left behind; a worker that fails becomes a typed error raised by
:meth:`WorkerJob.result`. Results are read back on the caller's side as engine Images and filed by the
caller under the job's own inputs, whatever the GUI shows when the job ends.

An :class:`InstallJob` downloads and installs a catalogue model in a worker of its own; its Cancel is
cooperative (a ``cancel`` request: the install stops within one network read and leaves the cache as it was).
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from . import errors
from .errors import CancelledError
from .worker import FORWARDED_ENV
from .worker_client import READY_TIMEOUT_S, WorkerError, WorkerProcess

STAGES = ("segment", "explain", "correct")
#: how long a cancelled install may take to stop by itself before its worker is killed (seconds)
CANCEL_GRACE_S = 30.0


@dataclasses.dataclass(frozen=True)
class JobInputs:
    """What a job runs on, fixed when it starts. Points are RAS mm; ``box_mm`` is the box edge (mm, None =
    the model's default); ``boxes_ras`` drawn boxes (two opposite corners each, ``R1, A1, S1, R2, A2, S2``);
    ``include_ras`` / ``exclude_ras`` correction clicks; ``prompt`` (stage ``correct``) the one lesion's
    prompt (:func:`.lesion_session.prompt_as_dict`) and ``lesion_label`` its label; ``context`` is the
    caller's (e.g. the Slicer node IDs the result is filed under)."""

    image_key: str
    model_id: str
    seeds_ras: tuple = ()
    box_mm: Optional[float] = None
    device: str = "auto"
    fast: bool = False
    crop_foreground: bool = True
    saliency_label: Optional[str] = None
    stages: tuple = ("segment",)
    context: dict = dataclasses.field(default_factory=dict, compare=False)
    boxes_ras: tuple = ()
    include_ras: tuple = ()
    exclude_ras: tuple = ()
    precision: str = "auto"
    runtime: str = "auto"
    prompt: Optional[dict] = dataclasses.field(default=None, compare=False)
    lesion_label: Optional[int] = None


@dataclasses.dataclass
class JobResult:
    inputs: JobInputs
    labelmap: Any = None                 # engine Image (labels on the input grid) for a "segment" stage
    saliency: Any = None                 # engine Image in [0, 1] for an "explain" stage
    saliency_metadata: dict = dataclasses.field(default_factory=dict)
    lesions: list = dataclasses.field(default_factory=list)   # lesion model: label, volume_ml, range, prompt
    correction: Any = None               # lesion_session.LesionCorrection for a "correct" stage
    inference_precision: str = ""


def typed_error(event: dict) -> Exception:
    """The caller-side exception for a worker ``error`` event: the same RadAIError subclass when the
    worker raised one, a WorkerError otherwise; the worker's traceback is attached as a note."""
    kind, message = event.get("type", "Error"), event.get("message", "")
    cls = getattr(errors, kind, None)
    if kind == "MemoryError":
        error: Exception = WorkerError("The worker ran out of memory. Try Fast mode or a smaller box, close other "
                                       "programs, or use a machine with more memory.")
    elif isinstance(cls, type) and issubclass(cls, errors.RadAIError):
        error = cls(message)
    else:
        error = WorkerError(f"{kind}: {message}")
    if event.get("traceback"):
        error.add_note("Worker traceback:\n" + event["traceback"])
    return error


class PolledJob:
    """What every worker job shares: ``fraction`` (0..1), ``message``, ``done``; :meth:`poll` never blocks.
    Subclasses send their requests and take their results (``_send``, ``_take``)."""

    label = "job"

    def __init__(self, worker: WorkerProcess) -> None:
        if getattr(worker, "job", None) is not None and not worker.job.done:
            raise WorkerError("The RadAI worker is busy with another job; wait for it or cancel it.")
        self.worker = worker
        self.fraction, self.message, self.done = 0.0, "starting the RadAI worker (loading PyTorch)", False
        self.started = time.monotonic()
        self._eta: Optional[float] = None
        self._error: Optional[Exception] = None
        self._request_id: Optional[str] = None
        self.worker_seconds = 0.0            # time the worker spent on this job's requests (its result events)
        self.folder = Path(tempfile.mkdtemp(prefix="radai-job-"))
        worker.job = self

    def _span(self) -> tuple[float, float]:
        return 0.0, 1.0

    def _take(self, event: dict) -> bool:
        """A ``result`` event of the current request; True when the job is complete."""
        raise NotImplementedError

    def poll(self) -> bool:
        """Read the worker's events so far (never blocks); True once the job is done."""
        if self.done:
            return True
        for event in self.worker.poll():
            self._on_event(event)
            if self.done:
                return True
        if not self.worker.running:
            self._finish_with(WorkerError(self.worker.failure_text("The RadAI worker stopped before finishing")))
        elif self.worker.ready_event is None and time.monotonic() - self.started > READY_TIMEOUT_S:
            self.worker.kill()
            self._finish_with(WorkerError(self.worker.failure_text(
                f"The RadAI worker did not start within {READY_TIMEOUT_S:.0f} s")))
        return self.done

    def _on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "ready":
            self.message = f"{self.label}: worker ready (PyTorch {event.get('torch')})"
            return
        if event.get("id") != self._request_id:
            return
        low, high = self._span()
        if kind == "progress":
            self.fraction = low + (high - low) * float(event.get("fraction", 0.0))
            self.message = f"{self.label}: {event.get('message', '')}"
            self._eta = event.get("eta_s")
        elif kind == "error":
            self._finish_with(typed_error(event))
        elif kind == "result":
            self.worker_seconds += float(event.get("seconds") or 0.0)
            if self._take(event):
                self.fraction, self.message = 1.0, "done"
                self._finish_with(None)

    def _finish_with(self, error: Optional[Exception]) -> None:
        self._error, self.done = error, True
        if getattr(self.worker, "job", None) is self:
            self.worker.job = None

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Poll until done or ``timeout`` seconds passed (scripts and tests; the GUI uses a timer)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def eta_seconds(self) -> Optional[float]:
        return None if self.done else self._eta

    def statusText(self) -> str:  # noqa: N802 - called from the Slicer Widget
        eta = self.eta_seconds()
        eta_text = f", about {eta:.0f} s left" if eta is not None else ""
        return f"{self.message} ({self.fraction * 100:.0f} %{eta_text})"

    def seconds(self) -> float:
        """Wall time since the job started (s)."""
        return time.monotonic() - self.started

    def cancel(self) -> None:
        """Stop at once: kill the worker (the next job starts a new one) and remove the job's files."""
        if not self.done:
            self.worker.kill()
            self._finish_with(CancelledError("Cancelled by the user; nothing was added to the scene."))
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the job's folder (input copies and outputs)."""
        shutil.rmtree(self.folder, ignore_errors=True)


class WorkerJob(PolledJob):
    """One segmentation / Grad-CAM / correction job on a worker process.

    ``image``: the engine Image, needed only when the worker does not hold ``inputs.image_key``;
    ``previous`` (stage ``correct``): the lesion's current outline ``(mask [k, j, i], offset_kji)``."""

    def __init__(self, worker: WorkerProcess, inputs: JobInputs, image=None, models_env: Optional[dict] = None,
                 previous: Optional[tuple] = None) -> None:
        if not inputs.stages or any(stage not in STAGES for stage in inputs.stages):
            raise ValueError(f"Job stages must be a non-empty subset of {STAGES}, got {inputs.stages}")
        if "correct" in inputs.stages and (inputs.stages != ("correct",) or inputs.prompt is None):
            raise ValueError("A correction job has the one stage 'correct' and the lesion's prompt.")
        super().__init__(worker)
        self.inputs = inputs
        self._result = JobResult(inputs)
        self._outputs: dict[str, Any] = {}
        self._stage_index = 0
        self._env = dict(models_env or {})
        try:
            worker.start()
            self._image_path, self._metadata, self._previous = None, {}, None
            if worker.image_key != inputs.image_key:
                if image is None:
                    raise ValueError("The worker does not hold this image: pass it to the job.")
                from .io import write_image
                self._image_path = str(write_image(image, self.folder / "input.nrrd", compress=False))
                self._metadata = {k: v for k, v in image.metadata.items() if k == "modality"}
            if previous is not None and previous[0].size:
                import numpy as np
                np.save(self.folder / "previous.npy", np.ascontiguousarray(previous[0], np.uint8), allow_pickle=False)
                self._previous = {"file": str(self.folder / "previous.npy"),
                                  "offset_kji": [int(v) for v in previous[1]]}
            self._send_stage()
        except BaseException:
            self._finish_with(None)
            self.cleanup()
            raise

    # -- stages ----------------------------------------------------------------------------------------
    @property
    def stage(self) -> str:
        return self.inputs.stages[min(self._stage_index, len(self.inputs.stages) - 1)]

    @property
    def label(self) -> str:  # noqa: D401 - progress message prefix
        return {"explain": "Grad-CAM", "correct": "correction"}.get(self.stage, "segmentation")

    def _span(self) -> tuple[float, float]:
        """The part of the overall progress bar the current stage fills (segmentation 80 % when explaining)."""
        if len(self.inputs.stages) == 1:
            return 0.0, 1.0
        return (0.0, 0.8) if self._stage_index == 0 else (0.8, 1.0)

    def _send_stage(self) -> None:
        inputs = self.inputs
        self._request_id = f"{id(self)}-{self._stage_index}"
        request = {"id": self._request_id, "op": self.stage, "image_key": inputs.image_key, "model": inputs.model_id,
                   "box_mm": inputs.box_mm, "device": inputs.device, "precision": inputs.precision,
                   "runtime": inputs.runtime,
                   "env": {name: self._env.get(name, "") for name in FORWARDED_ENV}}
        if self._image_path and self.worker.image_key != inputs.image_key:
            request.update(image=self._image_path, metadata=self._metadata)
        if self.stage == "segment":
            request.update(seeds_ras=[list(s) for s in inputs.seeds_ras], fast=inputs.fast,
                           boxes_ras=[list(b) for b in inputs.boxes_ras], include_ras=[list(p) for p in inputs.include_ras],
                           exclude_ras=[list(p) for p in inputs.exclude_ras], crop_foreground=inputs.crop_foreground,
                           output=str(self.folder / "labels.seg.nrrd"))
        elif self.stage == "correct":
            request.update(prompt=inputs.prompt, previous=self._previous, output=str(self.folder / "lesion.npy"))
        else:
            request.update(seed_ras=list(inputs.seeds_ras[0]) if inputs.seeds_ras else None,
                           label=inputs.saliency_label, output=str(self.folder / "saliency.nrrd"))
        self.worker.send(request)

    def _take(self, event: dict) -> bool:
        """Note a stage's output (files are read by :meth:`result`, at the end); send the next stage."""
        self._outputs[self.stage] = event
        if self.stage == "explain":
            self._result.saliency_metadata = dict(event.get("metadata") or {})
        elif self.stage == "segment":
            self._result.lesions = list(event.get("lesions") or [])
            self._result.inference_precision = str(event.get("inference_precision") or "")
        self._stage_index += 1
        if self._stage_index < len(self.inputs.stages):
            self.fraction, self._eta = self._span()[0], None
            self._send_stage()
            return False
        return True

    # -- caller API -------------------------------------------------------------------------------------
    def result(self) -> JobResult:
        """The job's result; raises its error (``CancelledError`` when cancelled). Waits if still running."""
        if not self.done:
            self.wait()
        if self._error is not None:
            raise self._error
        from .io import read_image, read_segmentation_nrrd
        if "segment" in self._outputs and self._result.labelmap is None:
            self._result.labelmap = read_segmentation_nrrd(self._outputs["segment"]["output"])
        if "explain" in self._outputs and self._result.saliency is None:
            self._result.saliency = read_image(self._outputs["explain"]["output"])
        if "correct" in self._outputs and self._result.correction is None:
            import numpy as np
            from .lesion_session import LesionCorrection
            event = self._outputs["correct"]
            self._result.correction = LesionCorrection(
                np.load(event["output"], allow_pickle=False), tuple(int(v) for v in event["offset_kji"]),
                float(event["volume_ml"]), tuple(float(v) for v in event["volume_range_ml"]), int(event["voxels"]))
        return self._result


class InstallJob(PolledJob):
    """A catalogue model downloaded, verified and installed in a worker (``op: install``); Cancel asks the
    worker to stop (cooperatively: the cache stays as it was) and kills it only if it does not within
    :data:`CANCEL_GRACE_S`."""

    label = "download"

    def __init__(self, worker: WorkerProcess, model_id: str, reinstall: bool = False, files: tuple = (),
                 models_env: Optional[dict] = None) -> None:
        super().__init__(worker)
        self.model_id = model_id
        self.message = f"{model_id}: starting the download worker"
        self._reply: Optional[dict] = None
        self._cancel_sent: Optional[float] = None
        self._request_id = f"install-{id(self)}"
        env = dict(models_env or {})
        try:
            worker.start()
            worker.send({"id": self._request_id, "op": "install", "model": model_id, "reinstall": bool(reinstall),
                         "files": [str(f) for f in files], "env": {name: env.get(name, "") for name in FORWARDED_ENV}})
        except BaseException:
            self._finish_with(None)
            self.cleanup()
            raise

    def _take(self, event: dict) -> bool:
        self._reply = {key: event.get(key) for key in ("model_id", "version", "notes", "downloaded_bytes")}
        return True

    def poll(self) -> bool:
        if (not self.done and self._cancel_sent is not None
                and time.monotonic() - self._cancel_sent > CANCEL_GRACE_S):
            self.worker.kill()
            self._finish_with(CancelledError(f"The download of {self.model_id} was cancelled; nothing was installed."))
        return super().poll()

    def cancel(self) -> None:
        """Ask the worker to stop the install; :meth:`poll` then finishes with ``CancelledError``."""
        if self.done or self._cancel_sent is not None:
            return
        self._cancel_sent = time.monotonic()
        self.message = f"{self.model_id}: cancelling"
        try:
            self.worker.send({"op": "cancel", "id": self._request_id})
        except WorkerError:
            self.worker.kill()
            self._finish_with(CancelledError(f"The download of {self.model_id} was cancelled; nothing was installed."))

    def result(self) -> dict:
        """``model_id``, ``version``, ``notes`` (what the user should be told), ``downloaded_bytes``; raises the
        install's error (``DownloadError``, ``ChecksumError``, ``CancelledError`` ...)."""
        if not self.done:
            self.wait()
        self.cleanup()
        if self._error is not None:
            raise self._error
        return dict(self._reply or {})
