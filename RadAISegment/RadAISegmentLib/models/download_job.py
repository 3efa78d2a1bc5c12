"""A catalogue install running in a background thread, for GUIs (Slicer's Models section).

Downloading is network and disk I/O (urllib and zipfile release the GIL while they wait), so a thread in the
GUI process is enough: the GUI starts a :class:`ModelInstallJob`, polls ``fraction`` / ``message`` / ``done``
from a timer on its main thread, and calls :meth:`ModelInstallJob.cancel` for *Cancel*. Cancelling is
cooperative — the install stops within one network read or one zip member — so the cache is left exactly as
it was (no killed process can leave a half-assembled model folder behind).
"""
from __future__ import annotations

import threading
from typing import Optional

from ..progress import CancelToken
from .catalogue import Catalogue
from .catalogue_install import InstallReport, install_from_catalogue
from .download import DownloadSettings


class ModelInstallJob:
    """``install_from_catalogue(model_id, ...)`` in a daemon thread.

    Attributes read by the GUI: ``fraction`` (0..1), ``message`` (e.g. "spleen_ct_segmentation: 12.0 of 36.0
    MB, 2.1 MB/s, about 11 s left"), ``done``.
    """

    def __init__(self, model_id: str, *, catalogue: Optional[Catalogue] = None, reinstall: bool = False,
                 files: tuple = (), settings: Optional[DownloadSettings] = None) -> None:
        self.model_id = model_id
        self.fraction = 0.0
        self.message = f"{model_id}: starting"
        self._cancel = CancelToken()
        self._report: Optional[InstallReport] = None
        self._error: Optional[BaseException] = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"RadAI install {model_id}", daemon=True,
                                        kwargs=dict(catalogue=catalogue, reinstall=reinstall, files=files,
                                                    settings=settings))
        self._thread.start()

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction = float(min(max(fraction, 0.0), 1.0))
        self.message = message

    def _run(self, **kwargs) -> None:
        try:
            self._report = install_from_catalogue(self.model_id, progress=self._progress, cancel=self._cancel,
                                                  **kwargs)
        except BaseException as error:            # handed to the GUI thread by result()
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

    def statusText(self) -> str:  # noqa: N802 - read by the Slicer Widget
        return f"{self.message} ({self.fraction * 100:.0f} %)"

    def result(self) -> InstallReport:
        """The install report; re-raises the install's error (``CancelledError`` after :meth:`cancel`)."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._report
