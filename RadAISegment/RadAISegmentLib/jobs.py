"""Background jobs: run engine work in a worker thread with progress and cancellation.

Used by the Slicer modules so Apply never freezes the GUI: the Widget polls
``job.fraction`` / ``job.done`` from a timer on the main thread and only then
touches the MRML scene. PyTorch and SimpleITK release the GIL in their heavy
loops, so a thread is enough (no second process, no second model copy).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from .progress import CancelToken, EtaEstimator


class BackgroundJob:
    """Runs ``work(progress=..., cancel=...)`` in a daemon thread.

    Attributes:
        fraction: last reported fraction done (0..1).
        message: last progress message.
        done: True once the work returned or raised.
    """

    def __init__(self, work: Callable[..., Any], name: str = "RadAI job") -> None:
        self.name = name
        self.fraction = 0.0
        self.message = "starting"
        self.log: list[str] = []
        self._cancel = CancelToken()
        self._result: Any = None
        self._error: Optional[BaseException] = None
        self._eta = EtaEstimator()
        self._done = threading.Event()
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction = float(min(max(fraction, 0.0), 1.0))
        if message and message != self.message:
            self.log.append(f"{time.monotonic() - self.started:6.1f}s {message}")
        self.message = message

    def _run(self, work: Callable[..., Any]) -> None:
        try:
            self._result = work(progress=self._progress, cancel=self._cancel)
            self._progress(1.0, "done")
        except BaseException as error:  # reported to the caller through result()
            self._error = error
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self._cancel.cancel()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    def eta_seconds(self) -> Optional[float]:
        return self._eta.eta_seconds(self.fraction)

    def statusText(self) -> str:
        eta = self.eta_seconds()
        eta_text = f", about {eta:.0f} s left" if eta is not None and not self.done else ""
        return f"{self.message} ({self.fraction * 100:.0f} %{eta_text})"

    def result(self) -> Any:
        """The work's return value; re-raises its exception (CancelledError when cancelled)."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result


def start_segmentation_job(image, model_id: str, seeds_ras=None, box_mm=None, device: str = "auto",
                           fast: bool = False, crop_foreground: bool = True) -> BackgroundJob:
    """Start :func:`.inference.run_model` for one image in the background."""
    from .inference import run_model

    def work(progress, cancel):
        return run_model(image, model_id, seeds_ras=seeds_ras or None, box_mm=box_mm, device=device,
                         fast=fast, progress=progress, cancel=cancel, crop_foreground=crop_foreground)
    return BackgroundJob(work, name=f"segment {model_id}")
