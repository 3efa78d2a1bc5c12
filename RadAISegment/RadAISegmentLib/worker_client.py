"""The caller's side of RadAI's worker process (:mod:`.worker`), without threads.

Inside Slicer a Python thread barely runs while the Qt event loop idles (PythonQt's main thread keeps
the interpreter lock), so nothing here uses one: :meth:`WorkerProcess.poll` reads whatever the worker
has written so far from non-blocking pipes and returns the complete JSON lines as events; the GUI calls
it from a timer, scripts call :meth:`WorkerProcess.wait_events`. A worker that dies (crash, killed by
the out-of-memory killer, non-zero exit) turns into a :class:`WorkerError` naming the exit status and
the worker's last messages.

The process is persistent: start it once, send many requests; models and the last image stay loaded
in it. :func:`shared_worker` keeps one per Python executable for the whole session.
"""
from __future__ import annotations

import atexit
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from .errors import RadAIError

#: how long a worker may take to import PyTorch and report ready (seconds)
READY_TIMEOUT_S = 300.0


class WorkerError(RadAIError):
    """The worker process failed: it could not start, it crashed or ran out of memory, or it broke the protocol."""


def python_for_workers(inside_slicer_app: bool) -> str:
    """The Python that runs the worker: Slicer's ``PythonSlicer`` inside the Slicer application (there
    ``sys.executable`` is the application itself), else this interpreter."""
    if not inside_slicer_app:
        return sys.executable
    found = shutil.which("PythonSlicer") or shutil.which("PythonSlicer.exe")
    if not found:
        candidate = Path(sys.executable).with_name("PythonSlicer" + (".exe" if os.name == "nt" else ""))
        found = str(candidate) if candidate.is_file() else None
    if not found:
        raise WorkerError("PythonSlicer was not found beside Slicer; RadAI runs its models with Slicer's own Python. "
                          "Reinstall Slicer, or start it from its installation folder.")
    return found


def describe_exit(returncode: int) -> str:
    """A person-readable exit status (negative = killed by a signal on POSIX)."""
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == getattr(signal, "SIGKILL", 9):
            return f"it was killed ({name}), most likely by the system running out of memory"
        return f"it was stopped by {name}"
    if returncode in (137, 3221225477, -1073741819):
        return f"it exited with code {returncode} (killed or crashed, often out of memory)"
    return f"it exited with code {returncode}"


class WorkerProcess:
    """One worker process and its pipes. ``poll()`` never blocks; ``send()`` writes one request line.

    ``module`` is the worker's entry point (``RadAISegmentLib.worker``, or a package's worker that extends
    it); ``paths`` are folders put on the worker's ``PYTHONPATH`` after this package's own."""

    def __init__(self, python: str, extra_env: Optional[dict] = None, module: str = "RadAISegmentLib.worker",
                 paths: tuple = ()) -> None:
        self.python = python
        self.extra_env = dict(extra_env or {})
        self.module = module
        self.paths = tuple(str(p) for p in paths)
        self.process: Optional[subprocess.Popen] = None
        self.ready_event: Optional[dict] = None
        self.stderr_tail: collections.deque = collections.deque(maxlen=40)
        self._stdout_buffer = b""
        self._stderr_buffer = b""
        self.image_key: Optional[str] = None     # the image the worker holds (from its last result)
        self.job = None                          # the job using this worker (one at a time)

    # -- life cycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the process (returns at once; the worker reports ``ready`` after importing PyTorch)."""
        if self.running:
            return
        package_parent = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, **self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, *self.paths, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        options = {"start_new_session": True} if os.name != "nt" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
        try:
            self.process = subprocess.Popen([self.python, "-m", self.module], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **options)
        except OSError as error:
            raise WorkerError(f"Could not start the RadAI worker with {self.python}: {error}.") from error
        for stream in (self.process.stdout, self.process.stderr):
            os.set_blocking(stream.fileno(), False)
        self.ready_event, self.image_key = None, None
        self._stdout_buffer = self._stderr_buffer = b""
        self.stderr_tail.clear()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``timeout_s``."""
        if not self.running:
            self._close()
            return
        try:
            self.process.stdin.write(b'{"op": "shutdown"}\n')
            self.process.stdin.flush()
            self.process.wait(timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self._close()

    def kill(self) -> None:
        """Terminate the worker (and anything it started) at once; used by Cancel."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                if os.name != "nt":
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:
                    self.process.kill()
            except (ProcessLookupError, PermissionError, OSError):
                self.process.kill()
        self.process.wait()
        self._close()

    def _close(self) -> None:
        if self.process is None:
            return
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass

    # -- protocol ----------------------------------------------------------------------------------------
    def send(self, request: dict) -> None:
        if not self.running:
            raise WorkerError(self.failure_text("The RadAI worker is not running"))
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            self.process.stdin.flush()
        except OSError as error:
            raise WorkerError(self.failure_text(f"Could not send a request to the RadAI worker ({error})")) from error

    @staticmethod
    def _read_available(stream) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(stream.fileno(), 65536)
            except BlockingIOError:
                break
            except (OSError, ValueError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def poll(self) -> list[dict]:
        """Events the worker has written since the last call (never blocks)."""
        if self.process is None:
            return []
        if not self.process.stderr.closed:
            self._stderr_buffer += self._read_available(self.process.stderr)
            *lines, self._stderr_buffer = self._stderr_buffer.split(b"\n")
            self.stderr_tail.extend(line.decode("utf-8", "replace") for line in lines if line.strip())
        if self.process.stdout.closed:
            return []
        self._stdout_buffer += self._read_available(self.process.stdout)
        *lines, self._stdout_buffer = self._stdout_buffer.split(b"\n")
        events = []
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self.stderr_tail.append(f"(not protocol) {line[:200].decode('utf-8', 'replace')}")
                continue
            if event.get("event") == "ready":
                self.ready_event = event
            if event.get("event") == "result" and "image_key" in event:
                self.image_key = event["image_key"]
            events.append(event)
        return events

    def wait_events(self, timeout_s: float) -> list[dict]:
        """Block up to ``timeout_s`` for at least one event (or the process ending); for scripts and tests."""
        deadline = time.monotonic() + timeout_s
        while True:
            events = self.poll()
            if events or not self.running or time.monotonic() >= deadline:
                return events + (self.poll() if not self.running else [])
            time.sleep(0.02)

    def failure_text(self, what: str) -> str:
        """``what``, the exit status when the worker has died, and its last stderr lines."""
        if self.process is not None:
            self.poll()
            code = self.process.poll()
            if code is not None:
                what += f": {describe_exit(code)}"
        tail = "\n".join(list(self.stderr_tail)[-8:])
        return f"{what}." + (f"\nLast messages of the worker:\n{tail}" if tail else "")


_SHARED: dict[tuple, WorkerProcess] = {}


def shared_worker(python: str, role: str = "inference", module: str = "RadAISegmentLib.worker",
                  paths: tuple = ()) -> WorkerProcess:
    """The session's persistent worker for ``python`` and ``role`` (created on first use, restarted when it
    died): ``inference`` (segmentation, corrections, Grad-CAM), ``install`` (downloads, so that a download
    and a segmentation can run at once), or another package's (e.g. ``cine`` with its own ``module``)."""
    key = (python, role)
    worker = _SHARED.get(key)
    if worker is None:
        worker = _SHARED[key] = WorkerProcess(python, module=module, paths=paths)
    return worker


def stop_shared_workers() -> None:
    """Stop every shared worker (module cleanup, interpreter exit)."""
    for worker in list(_SHARED.values()):
        worker.stop()


atexit.register(stop_shared_workers)
