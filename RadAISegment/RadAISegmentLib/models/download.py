"""Resumable HTTP(S) downloads of model archives (standard library only).

:func:`download_file` streams a URL into ``<target>.part`` beside the target and renames it onto the target
only when every byte has arrived, so nothing half-downloaded ever has the target's name. It

- reports progress (fraction of the file, and a message with MB done, rate and time left) and stops within one
  network read when the :class:`~RadAISegmentLib.progress.CancelToken` is set;
- resumes after an interrupted transfer with an HTTP ``Range`` request (``If-Range`` with the server's
  validator, so a file that changed on the server is fetched again from the start); a server that ignores
  ``Range`` (status 200) is handled by starting over;
- honours the proxy settings of the environment (``https_proxy``, ``http_proxy``, ``no_proxy``: urllib's
  ``ProxyHandler``, read when each download starts);
- gives up on a silent server after ``timeout_s`` per network operation, and retries transient failures
  (timeouts, dropped connections, HTTP 5xx/429) a bounded number of times with exponential back-off;
- refuses plain ``http://`` except to this machine (loopback), also when a server redirects.

A failure raises one :class:`DownloadError` naming the URL, the reason and what to do. After a network
failure the bytes received so far stay in ``<target>.part`` (the next call resumes them); after a
permanent failure (HTTP 404, a refused redirect) or a cancel, nothing is left behind.
"""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import CancelledError, DownloadError
from ..progress import CancelToken, ProgressCallback, no_progress

USER_AGENT = "RadAI-model-download/1"
#: HTTP statuses worth retrying (the server or a proxy is temporarily unable to answer)
TRANSIENT_STATUSES = (408, 425, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class DownloadSettings:
    """Network limits. ``timeout_s``: seconds any single connect or read may wait; ``retries``: further
    attempts after the first failed one (an attempt that brought new bytes does not count);
    ``backoff_s``: wait before the first retry, doubled each time up to ``max_backoff_s``."""

    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    chunk_bytes: int = 1 << 20


@dataclass(frozen=True)
class DownloadResult:
    """A complete file: its path, size in bytes, SHA-256 and SHA-1 (lower-case hex), and whether bytes of
    an earlier, interrupted attempt were reused."""

    path: Path
    size_bytes: int
    sha256: str
    sha1: str
    resumed: bool


class _Transient(Exception):
    """A failure worth retrying; ``str()`` is the reason shown to the user."""


class _Permanent(Exception):
    """A failure that retrying cannot fix (HTTP 404, a refused redirect); ``str()`` is the reason."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Raise :class:`DownloadError` unless ``url`` is ``https://``, or ``http://`` to this machine."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return
    raise DownloadError(f"Refusing to download {url}: only https:// URLs are fetched (plain http:// only from this "
                        "machine), so that the file cannot be altered on the way.")


def file_hashes(path: Path, chunk_bytes: int = 1 << 20) -> tuple[str, str]:
    """(SHA-256, SHA-1) of a file, lower-case hex, in one pass."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk_bytes), b""):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


class _CheckedRedirect(urllib.request.HTTPRedirectHandler):
    """Follows redirects (GitHub release assets redirect to a CDN) only to URLs :func:`check_url` accepts."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            check_url(newurl)
        except DownloadError as error:
            raise DownloadError(f"{req.full_url} redirects to {newurl}, which is not https; refusing the "
                                "insecure redirect.") from error
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def part_path(target: Path) -> Path:
    """Where the bytes of an unfinished download of ``target`` are kept."""
    return target.with_name(target.name + ".part")


def _meta_path(target: Path) -> Path:
    return target.with_name(target.name + ".part.json")


def discard_partial(target: Path) -> None:
    """Delete the ``.part`` file of ``target`` and its bookkeeping, if present."""
    for path in (part_path(target), _meta_path(target)):
        path.unlink(missing_ok=True)


def partial_bytes(target: Path) -> int:
    """Bytes of ``target`` already received by an interrupted download (0 if none)."""
    part = part_path(target)
    return part.stat().st_size if part.is_file() else 0


def _read_meta(target: Path, url: str) -> dict:
    """Bookkeeping of an earlier attempt at ``url`` (``validator``, ``total``); a partial file of another
    URL or without bookkeeping is discarded."""
    try:
        meta = json.loads(_meta_path(target).read_text())
    except (OSError, ValueError):
        meta = {}
    if meta.get("url") != url:
        discard_partial(target)
        return {}
    return meta


def _content_range(value: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """(first byte, total size) of a ``Content-Range: bytes a-b/N`` or ``bytes */N`` header."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    first = int(span.split("-")[0]) if span and span != "*" and span.split("-")[0].isdigit() else None
    return first, int(total) if total.isdigit() else None


def _describe(error: BaseException, timeout_s: float) -> str:
    """A short, plain reason for a network failure."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, socket.gaierror):
        return f"the server's name could not be resolved — no network connection? ({reason})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected)):
        return "the server closed the connection"
    return str(reason) or type(reason).__name__


def _wait(seconds: float, cancel: Optional[CancelToken]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if cancel is not None:
            cancel.raise_if_cancelled()
        time.sleep(min(0.05, left))


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class _Meter:
    """Progress of one file: fraction, MB done, rate and time left (rate measured on this call's bytes)."""

    def __init__(self, progress: ProgressCallback, label: str) -> None:
        self.progress, self.label = progress, label
        self.started = time.monotonic()
        self.fresh = 0
        self.fraction = 0.0

    def __call__(self, done: int, total: Optional[int], fresh: int) -> None:
        self.fresh += fresh
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.fresh / elapsed
        text = f"{self.label}: {done / 1e6:.1f}"
        if total:
            text += f" of {total / 1e6:.1f} MB"
            if rate > 0 and self.fresh > 0:
                text += f", {rate / 1e6:.1f} MB/s, about {_fmt_seconds((total - done) / rate)} left"
        else:
            text += " MB"
        self.fraction = min(done / total, 1.0) if total else 0.0
        self.progress(self.fraction, text)


def _attempt(opener, url: str, target: Path, settings: DownloadSettings, meter: _Meter,
             cancel: Optional[CancelToken]) -> None:
    """One request: resume or start ``<target>.part``; returns when it holds the whole file."""
    part = part_path(target)
    meta = _read_meta(target, url)
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if meta.get("validator"):
            headers["If-Range"] = meta["validator"]
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=settings.timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == offset and meta.get("total") in (None, offset):
                return                                           # the .part already holds the whole file
            discard_partial(target)
            raise _Transient("the server refused to resume; starting again") from error
        if error.code in TRANSIENT_STATUSES:
            raise _Transient(f"HTTP {error.code} {error.reason}") from error
        raise _Permanent(f"the server answered HTTP {error.code} {error.reason}") from error
    except DownloadError as error:                               # a redirect that _CheckedRedirect refused
        raise _Permanent(str(error)) from error
    except urllib.error.URLError as error:
        raise _Transient(_describe(error, settings.timeout_s)) from error
    except (OSError, http.client.HTTPException) as error:
        raise _Transient(_describe(error, settings.timeout_s)) from error
    with response:
        if response.status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                discard_partial(target)
                raise _Transient(f"the server resumed at byte {first}, not {offset}; starting again")
            mode = "ab"
        elif response.status == 200:                             # a fresh start, or Range ignored
            length = response.headers.get("Content-Length")
            total, offset, mode = (int(length) if length and length.isdigit() else None), 0, "wb"
        else:
            raise _Transient(f"unexpected HTTP status {response.status}")
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified") or ""
        if validator.startswith("W/"):                           # weak ETags cannot validate a byte range
            validator = response.headers.get("Last-Modified") or ""
        _meta_path(target).write_text(json.dumps({"url": url, "validator": validator, "total": total}))
        done = offset
        with open(part, mode) as out:
            meter(done, total, 0)
            while True:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                try:
                    block = response.read1(settings.chunk_bytes)
                except (OSError, http.client.HTTPException) as error:
                    raise _Transient(_describe(error, settings.timeout_s)) from error
                if not block:
                    break
                out.write(block)
                done += len(block)
                meter(done, total, len(block))
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done != total:
            raise _Transient(f"the connection closed after {done} of {total} bytes")


def download_file(url: str, target: str | os.PathLike, *, settings: Optional[DownloadSettings] = None,
                  progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                  label: str = "", manual_hint: str = "") -> DownloadResult:
    """Download ``url`` to ``target`` (see the module docstring); returns its size and hashes.

    ``manual_hint`` is appended to the :class:`DownloadError` message (how to fetch the file by hand and
    which command takes it). Raises :class:`CancelledError` when cancelled (the partial file is deleted).
    """
    check_url(url)
    settings = settings or DownloadSettings()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    meter = _Meter(progress or no_progress, label or target.name)
    opener = urllib.request.build_opener(_CheckedRedirect)      # ProxyHandler reads the environment now
    resumed_from = partial_bytes(target)
    failures, best, attempts = 0, resumed_from, 0
    while True:
        attempts += 1
        try:
            _attempt(opener, url, target, settings, meter, cancel)
            break
        except _Transient as error:
            received = partial_bytes(target)
            if received > best:                                  # progress made: this attempt does not count
                best = received
            else:
                failures += 1
            if failures > settings.retries:
                kept = (f" The {received / 1e6:.1f} MB received so far are kept in {part_path(target)}; the same "
                        "command resumes from there." if received else "")
                if not received:
                    discard_partial(target)
                raise DownloadError(f"Could not download {url}: {error} ({attempts} attempt"
                                    f"{'s' if attempts > 1 else ''}).{kept}"
                                    + (f" {manual_hint}" if manual_hint else "")) from error
            wait = min(settings.backoff_s * 2 ** max(failures - 1, 0), settings.max_backoff_s)
            meter.progress(meter.fraction, f"{meter.label}: {error}; retrying in {wait:.0f} s")
            _wait(wait, cancel)
        except _Permanent as error:
            discard_partial(target)
            raise DownloadError(f"Could not download {url}: {error}." + (f" {manual_hint}" if manual_hint else "")
                                ) from error
        except (CancelledError, KeyboardInterrupt):
            discard_partial(target)
            raise
    part = part_path(target)
    os.replace(part, target)
    _meta_path(target).unlink(missing_ok=True)
    sha256, sha1 = file_hashes(target)
    return DownloadResult(path=target, size_bytes=target.stat().st_size, sha256=sha256, sha1=sha1,
                          resumed=resumed_from > 0)
