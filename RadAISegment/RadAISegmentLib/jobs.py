"""Segmentation and Grad-CAM jobs run by RadAI's worker process (:mod:`.worker`), polled from the GUI.

A :class:`WorkerJob` captures everything it runs on when it starts (:class:`JobInputs`: the image's
identity key, model, seeds, box, device, options), writes the image once into a private folder as
NRRD (only when the worker does not already hold that image), and sends one request per stage
(``segment``, then ``explain`` when asked). :meth:`WorkerJob.poll` reads the worker's progress
without blocking (the Slicer module calls it from a timer); :meth:`WorkerJob.cancel` kills the worker
and removes the folder, so nothing is left behind; a worker that fails becomes a typed error raised
by :meth:`WorkerJob.result`. Results are read back on the caller's side as engine Images and filed by
the caller under the job's own inputs, whatever the GUI shows when the job ends.
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

STAGES = ("segment", "explain")


@dataclasses.dataclass(frozen=True)
class JobInputs:
    """What a job runs on, fixed when it starts. Points are RAS mm; ``box_mm`` is the box edge (mm, None =
    the model's default); ``context`` is the caller's (e.g. the Slicer node IDs the result is filed under)."""

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


@dataclasses.dataclass
class JobResult:
    inputs: JobInputs
    labelmap: Any = None                 # engine Image (labels on the input grid) for a "segment" stage
    saliency: Any = None                 # engine Image in [0, 1] for an "explain" stage
    saliency_metadata: dict = dataclasses.field(default_factory=dict)


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


class WorkerJob:
    """One job on a worker process. Attributes ``fraction`` (0..1), ``message``, ``done``."""

    def __init__(self, worker: WorkerProcess, inputs: JobInputs, image=None, models_env: Optional[dict] = None) -> None:
        if getattr(worker, "job", None) is not None and not worker.job.done:
            raise WorkerError("The RadAI worker is busy with another job; wait for it or cancel it.")
        if not inputs.stages or any(stage not in STAGES for stage in inputs.stages):
            raise ValueError(f"Job stages must be a non-empty subset of {STAGES}, got {inputs.stages}")
        self.worker, self.inputs = worker, inputs
        self.fraction, self.message, self.done = 0.0, "starting the RadAI worker (loading PyTorch)", False
        self.started = time.monotonic()
        self._eta: Optional[float] = None
        self._error: Optional[Exception] = None
        self._result = JobResult(inputs)
        self._outputs: dict[str, str] = {}
        self._stage_index, self._request_id = 0, None
        self.folder = Path(tempfile.mkdtemp(prefix="radai-job-"))
        self._env = dict(models_env or {})
        worker.job = self
        try:
            worker.start()
            self._image_path = None
            if worker.image_key != inputs.image_key:
                if image is None:
                    raise ValueError("The worker does not hold this image: pass it to the job.")
                from .io import write_image
                self._image_path = str(write_image(image, self.folder / "input.nrrd", compress=False))
                self._metadata = {k: v for k, v in image.metadata.items() if k == "modality"}
            else:
                self._metadata = {}
            self._send_stage()
        except BaseException:
            self._finish_with(None)
            self.cleanup()
            raise

    # -- stages ----------------------------------------------------------------------------------------
    @property
    def stage(self) -> str:
        return self.inputs.stages[min(self._stage_index, len(self.inputs.stages) - 1)]

    def _span(self) -> tuple[float, float]:
        """The part of the overall progress bar the current stage fills (segmentation 80 % when explaining)."""
        if len(self.inputs.stages) == 1:
            return 0.0, 1.0
        return (0.0, 0.8) if self._stage_index == 0 else (0.8, 1.0)

    def _send_stage(self) -> None:
        inputs = self.inputs
        self._request_id = f"{id(self)}-{self._stage_index}"
        request = {"id": self._request_id, "op": self.stage, "image_key": inputs.image_key, "model": inputs.model_id,
                   "box_mm": inputs.box_mm, "env": {name: self._env.get(name, "") for name in FORWARDED_ENV}}
        if self._image_path and self.worker.image_key != inputs.image_key:
            request.update(image=self._image_path, metadata=self._metadata)
        if self.stage == "segment":
            request.update(seeds_ras=[list(s) for s in inputs.seeds_ras], device=inputs.device, fast=inputs.fast,
                           crop_foreground=inputs.crop_foreground, output=str(self.folder / "labels.seg.nrrd"))
        else:
            request.update(seed_ras=list(inputs.seeds_ras[0]) if inputs.seeds_ras else None,
                           label=inputs.saliency_label, output=str(self.folder / "saliency.nrrd"))
        self.worker.send(request)

    # -- polling ------------------------------------------------------------------------------------------
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
            self.message = f"{self.stage}: worker ready (PyTorch {event.get('torch')})"
            return
        if event.get("id") != self._request_id:
            return
        low, high = self._span()
        if kind == "progress":
            self.fraction = low + (high - low) * float(event.get("fraction", 0.0))
            self.message = f"{'Grad-CAM' if self.stage == 'explain' else 'segmentation'}: {event.get('message', '')}"
            stage_eta = event.get("eta_s")
            self._eta = stage_eta if stage_eta is not None else None
        elif kind == "error":
            self._finish_with(typed_error(event))
        elif kind == "result":
            self._take(event)
            self._stage_index += 1
            if self._stage_index < len(self.inputs.stages):
                self.fraction, self._eta = high, None
                self._send_stage()
            else:
                self.fraction, self.message = 1.0, "done"
                self._finish_with(None)

    def _take(self, event: dict) -> None:
        """Note a stage's output file; it is read by :meth:`result` (at the end, not while the job runs)."""
        self._outputs[self.stage] = event["output"]
        if self.stage == "explain":
            self._result.saliency_metadata = dict(event.get("metadata") or {})

    def _finish_with(self, error: Optional[Exception]) -> None:
        self._error, self.done = error, True
        if getattr(self.worker, "job", None) is self:
            self.worker.job = None

    # -- caller API -------------------------------------------------------------------------------------
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Poll until done or ``timeout`` seconds passed (scripts and tests; the GUI uses a timer)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def cancel(self) -> None:
        """Stop at once: kill the worker (the next job starts a new one) and remove the job's files."""
        if not self.done:
            self.worker.kill()
            self._finish_with(CancelledError("Cancelled by the user; nothing was added to the scene."))
        self.cleanup()

    def eta_seconds(self) -> Optional[float]:
        return None if self.done else self._eta

    def statusText(self) -> str:  # noqa: N802 - called from the Slicer Widget
        eta = self.eta_seconds()
        eta_text = f", about {eta:.0f} s left" if eta is not None else ""
        return f"{self.message} ({self.fraction * 100:.0f} %{eta_text})"

    def result(self) -> JobResult:
        """The job's result; raises its error (``CancelledError`` when cancelled). Waits if still running."""
        if not self.done:
            self.wait()
        if self._error is not None:
            raise self._error
        from .io import read_image, read_segmentation_nrrd
        if "segment" in self._outputs and self._result.labelmap is None:
            self._result.labelmap = read_segmentation_nrrd(self._outputs["segment"])
        if "explain" in self._outputs and self._result.saliency is None:
            self._result.saliency = read_image(self._outputs["explain"])
        return self._result

    def cleanup(self) -> None:
        """Remove the job's folder (input copy and outputs)."""
        shutil.rmtree(self.folder, ignore_errors=True)
