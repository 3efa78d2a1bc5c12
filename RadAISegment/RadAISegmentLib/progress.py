"""Progress reporting and cooperative cancellation for long work.

Engine functions that take more than a moment accept ``progress`` (a callable
``(fraction_done, message) -> None``) and ``cancel`` (a :class:`CancelToken`).
They call ``cancel.raise_if_cancelled()`` between units of work, so a
cancellation stops within one unit (a sliding-window batch, one study...).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

from .errors import CancelledError

ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """Thread-safe flag that a GUI or signal handler sets to stop work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("Cancelled by the user; no output was written.")


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that ignores everything."""


class EtaEstimator:
    """Estimates time remaining from fraction done, assuming a constant rate."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def eta_seconds(self, fraction: float) -> Optional[float]:
        elapsed = time.monotonic() - self.start
        if fraction <= 0.0 or elapsed <= 0.0:
            return None
        return max(0.0, elapsed * (1.0 - fraction) / fraction)


class TerminalProgress:
    """Progress callback that draws one updating line on stderr when it is a terminal."""

    def __init__(self, label: str = "", stream=None, force: bool = False) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.eta = EtaEstimator()
        self._last = -1.0

    def __call__(self, fraction: float, message: str) -> None:
        if not self.enabled:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction < 1.0 and fraction - self._last < 0.01:
            return
        self._last = fraction
        remaining = self.eta.eta_seconds(fraction)
        eta_text = f" ETA {remaining:4.0f}s" if remaining is not None and fraction < 1.0 else ""
        bar = "#" * int(fraction * 30)
        self.stream.write(f"\r{self.label}[{bar:<30}] {fraction * 100:5.1f}%{eta_text} {message[:40]:<40}")
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()
