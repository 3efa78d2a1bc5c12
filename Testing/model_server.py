"""Loopback HTTP servers for the download tests: files served with scripted misbehaviour, a server that
never answers, and a forwarding proxy. Nothing here reaches beyond 127.0.0.1."""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest

from RadAISegmentLib.models.catalogue import SHIPPED_CATALOGUE, load_catalogue
from RadAISegmentLib.models.download import DownloadSettings

ETAG = '"v1"'


class _FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.owner.files[path]`` as ``server.owner.behaviour[path]`` says (see :class:`ModelServer`)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        owner.log.append((self.path, self.headers.get("Range"), self.headers.get("If-Range")))
        count = sum(1 for path, _, _ in owner.log if path == self.path)
        behaviour = owner.behaviour.get(self.path, "normal")
        body = owner.files.get(self.path)
        if behaviour.startswith("redirect:"):
            self.send_response(302)
            self.send_header("Location", behaviour[len("redirect:"):])
            self.end_headers()
            return
        if body is None or behaviour == "404":
            self.send_error(404, "Not Found")
            return
        honour_range = behaviour in ("normal", "drop_once")
        start = 0
        if self.headers.get("Range") and honour_range:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", ETAG)
        self.end_headers()
        chunk = body[start:]
        if behaviour == "drop_always_ignore_range" or (behaviour == "drop_once" and count == 1) or \
                (behaviour == "ignore_range_drop_once" and count == 1):
            chunk = chunk[: len(chunk) // 2]                      # then close: the client sees a short body
        if behaviour == "slow":                                   # 8 KB every 20 ms (a slow line)
            for start in range(0, len(chunk), 8192):
                try:
                    self.wfile.write(chunk[start:start + 8192])
                    self.wfile.flush()
                except OSError:                                   # the client went away (cancelled)
                    return
                time.sleep(0.02)
            return
        self.wfile.write(chunk)


class ModelServer:
    """``files``: URL path → bytes; ``behaviour``: URL path → one of
    ``normal`` (Range honoured with 206), ``404``, ``redirect:<url>``, ``drop_once`` (the first request gets
    half the body, then the connection closes; later ones are normal), ``ignore_range_drop_once`` (like
    ``drop_once`` but Range is ignored: always 200 from byte 0), ``drop_always_ignore_range``, ``slow`` (8 KB
    every 20 ms).
    ``log`` lists (path, Range header, If-Range header) of every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, str] = {}
        self.log: list[tuple] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def requests(self, path: str) -> list[tuple]:
        return [entry for entry in self.log if entry[0] == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def model_server() -> Iterator[ModelServer]:
    server = ModelServer()
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A URL whose server accepts the TCP connection (the kernel's backlog) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/model.zip"
    finally:
        sock.close()


@contextlib.contextmanager
def closed_port_url() -> Iterator[str]:
    """A loopback URL where nothing listens (connection refused, as without a network)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield f"http://127.0.0.1:{port}/model.zip"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """A forward proxy: GET of an absolute URL is fetched directly (no proxy) and relayed."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        headers = {key: value for key, value in self.headers.items()
                   if key.lower() in ("range", "if-range", "user-agent", "accept-encoding")}
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            response = direct.open(urllib.request.Request(self.path, headers=headers), timeout=10)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            body = response.read()
            self.send_response(response.status if hasattr(response, "status") else response.code)
            for key in ("Content-Range", "ETag"):
                if response.headers.get(key):
                    self.send_header(key, response.headers[key])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@contextlib.contextmanager
def forwarding_proxy() -> Iterator[tuple[str, list]]:
    """(proxy URL, list of the absolute URLs it forwarded)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.shutdown()
        server.server_close()


# ---- shared by test_models_download.py and test_models_catalogue.py ----

FAST = DownloadSettings(timeout_s=2.0, retries=2, backoff_s=0.0, chunk_bytes=4096)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                   "NO_PROXY")


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """An empty per-test cache; no proxy and no catalogue override from the surrounding environment."""
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RADAI_RESOURCES", str(tmp_path / "no-resources"))
    monkeypatch.delenv("RADAI_CATALOGUE", raising=False)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


def tree(folder):
    """{relative path: SHA-256 of the file, or 'dir'} for everything under ``folder`` ({} if absent)."""
    if not folder.exists():
        return {}
    return {path.relative_to(folder).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file()
                                                 else "dir") for path in sorted(folder.rglob("*"))}


def shipped_entry(model_id):
    return next(e for e in json.loads(SHIPPED_CATALOGUE.read_text())["models"] if e["id"] == model_id)


def write_catalogue(tmp_path, entries):
    """A catalogue with the shipped terms and ``entries``, validated by load_catalogue."""
    data = json.loads(SHIPPED_CATALOGUE.read_text())
    data["models"] = entries
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(data))
    return load_catalogue(path)


def served(entry, url, sha1=None):
    """``entry`` with its one archive served from ``url`` (and the SHA-1 of the zip served there)."""
    archive = dict(entry["archives"][0], url=url, size_mb=1)
    if sha1 is not None:
        archive["sha1"] = sha1
    return dict(entry, archives=[archive], size_mb=1)          # the disk-space check needs ~2 MB
