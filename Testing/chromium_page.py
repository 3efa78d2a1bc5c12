"""Open a page in Debian's headless Chromium, offline, and watch it through the DevTools protocol (test helper).

Chromium runs with software WebGL2 (SwiftShader), a fresh profile, background networking off and every host
name mapped to nothing (``--host-resolver-rules="MAP * ~NOTFOUND"``). It is driven over
``--remote-debugging-pipe`` (file descriptors 3 and 4, NUL-terminated JSON), so the test sees every request the
page starts (``Network.requestWillBeSent``), console messages, exceptions and log entries (CSP violations),
can wait for the page's own readiness flag, read values out of it and take screenshots of parts of it.

    with ChromiumPage(width=1200, height=900) as page:
        page.open(path)
        page.wait_for("document.querySelectorAll('.radai-viewer[data-status=ready]').length == 2", 120)
        png = page.screenshot_element("#radai-viewer-1")
        assert not page.remote_requests()
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")


def chromium_binary() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class ChromiumError(RuntimeError):
    pass


class ChromiumPage:
    """One headless Chromium with one page, watched through the DevTools protocol over a pipe."""

    def __init__(self, width: int = 1200, height: int = 900) -> None:
        self.width, self.height = width, height
        self.events: list[dict] = []
        self._responses: dict[int, dict] = {}
        self._next_id = 0
        self._lock = threading.Condition()
        self.session: Optional[str] = None

    # -- process and pipe --------------------------------------------------------------------------
    def __enter__(self) -> "ChromiumPage":
        binary = chromium_binary()
        if binary is None:
            raise ChromiumError("chromium is not installed (.ci/setup installs Debian's chromium)")
        self._profile = tempfile.mkdtemp(prefix="radai-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def child_fds() -> None:    # in the child, before exec: the pipe ends become fds 3 (commands) and 4 (replies)
            read_end, write_end = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_read, from_browser_write))
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        arguments = [binary, "--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                     "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
                     "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
                     "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run",
                     "--disable-extensions", "--disable-domain-reliability", "--no-default-browser-check",
                     "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
                     f"--window-size={self.width},{self.height}", "about:blank"]
        self._process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=child_fds,
                                         pass_fds=(3, 4))
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()        # the process this helper started, by its own handle
            self._process.wait()
        os.close(self._to_browser)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._lock.notify_all()
                os.close(self._from_browser)
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._responses[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._lock.notify_all()

    def call(self, method: str, session: bool = False, timeout: float = 120.0, **params: Any) -> dict:
        """Send one DevTools command and wait for its result (``session``: to the page, else to the browser)."""
        with self._lock:
            self._next_id += 1
            number = self._next_id
        message = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while number not in self._responses:
                if self._process.poll() is not None:
                    raise ChromiumError(f"chromium exited ({self._process.returncode}) during {method}")
                if not self._lock.wait(timeout=max(0.0, deadline - time.monotonic())) and time.monotonic() > deadline:
                    raise ChromiumError(f"no answer to {method} within {timeout} s")
            response = self._responses.pop(number)
        if "error" in response:
            raise ChromiumError(f"{method}: {response['error']}")
        return response.get("result", {})

    # -- page --------------------------------------------------------------------------------------
    def open(self, path: str | os.PathLike, timeout: float = 300.0) -> None:
        """Navigate to a local file and wait until its document is parsed (scripts may still be running)."""
        url = Path(path).resolve().as_uri()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState !== 'loading'", timeout)

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """Value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", session=True, timeout=timeout, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise ChromiumError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120.0, interval: float = 0.5) -> float:
        """Poll until ``expression`` is truthy; returns the seconds it took."""
        started = time.monotonic()
        while not self.evaluate(expression, timeout=max(5.0, timeout - (time.monotonic() - started))):
            if time.monotonic() - started > timeout:
                raise ChromiumError(f"{expression!r} still false after {timeout} s; console: {self.console()[-5:]}")
            time.sleep(interval)
        return time.monotonic() - started

    def screenshot_element(self, selector: str, timeout: float = 300.0) -> bytes:
        """PNG of the element's box (scrolled into view first)."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                            " const r = e.getBoundingClientRect();"
                            " return [r.x + scrollX, r.y + scrollY, r.width, r.height]; })()")
        x, y, width, height = box
        result = self.call("Page.captureScreenshot", session=True, timeout=timeout, format="png",
                           captureBeyondViewport=True,   # without it, headless Chromium may wait for a frame forever
                           clip={"x": x, "y": y, "width": width, "height": height, "scale": 1})
        return base64.b64decode(result["data"])

    # -- what the page did ---------------------------------------------------------------------------
    def requests(self) -> list[str]:
        """Every URL the page started to load (``Network.requestWillBeSent``)."""
        with self._lock:
            return [e["params"]["request"]["url"] for e in self.events
                    if e.get("method") == "Network.requestWillBeSent"]

    def remote_requests(self) -> list[str]:
        """Requests that would leave the machine: any URL not file:, data:, blob:, about: or chrome:."""
        return [url for url in self.requests() if not url.startswith(LOCAL_SCHEMES)]

    def console(self) -> list[str]:
        """Console messages, log entries and uncaught exceptions, as text."""
        lines = []
        with self._lock:
            events = list(self.events)
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                lines.append(f"console.{params['type']}: " + " ".join(str(a.get("value", a.get("description", "")))
                                                                      for a in params.get("args", [])))
            elif method == "Log.entryAdded":
                entry = params["entry"]
                lines.append(f"log.{entry['level']} ({entry['source']}): {entry['text']} {entry.get('url', '')}")
            elif method == "Runtime.exceptionThrown":
                lines.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
        return lines

    def blocked_by_policy(self) -> list[str]:
        """Log entries or failed loads that the Content-Security-Policy blocked (attempts to reach out)."""
        with self._lock:
            events = list(self.events)
        found = [line for line in self.console() if "Content Security Policy" in line]
        found += [e["params"].get("blockedReason", "") for e in events if e.get("method") == "Network.loadingFailed"
                  and e["params"].get("blockedReason") == "csp"]
        return found
