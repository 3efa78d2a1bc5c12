"""The viewer's static files: the vendored NiiVue build (checked against its recorded SHA-256), RadAI's own
viewer script and style, and the Content-Security-Policy that keeps a page offline.

See ``vendor/PROVENANCE.txt`` (version, source, checksums) and ``vendor/LICENSE-niivue.txt`` (BSD-2-Clause,
with the licences of the code NiiVue's build bundles).
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

from RadAISegmentLib.errors import InputError

HERE = Path(__file__).resolve().parent
NIIVUE_VERSION = "0.69.0"
NIIVUE_FILE = HERE / "vendor" / "niivue.umd.js"
NIIVUE_SHA256 = "47b896b77ec4a5be3ef1949c33ad393b6f45629921f326c279000bcf51bdb4af"
NIIVUE_LICENCE = HERE / "vendor" / "LICENSE-niivue.txt"


@lru_cache(maxsize=None)
def niivue_script() -> str:
    """The NiiVue UMD build's text, after checking its SHA-256 (a changed file is refused, not embedded)."""
    if not NIIVUE_FILE.is_file():
        raise InputError(f"The vendored viewer library {NIIVUE_FILE} is missing; restore it from the repository.")
    data = NIIVUE_FILE.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != NIIVUE_SHA256:
        raise InputError(f"{NIIVUE_FILE.name} has SHA-256 {digest}, not the recorded {NIIVUE_SHA256}; "
                         "restore it from the repository (see vendor/PROVENANCE.txt).")
    return data.decode("utf-8")


@lru_cache(maxsize=None)
def viewer_script() -> str:
    """RadAI's viewer code (viewer.js): builds the controls, legend and read-out around NiiVue."""
    return (HERE / "viewer.js").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def viewer_style() -> str:
    return (HERE / "viewer.css").read_text(encoding="utf-8")


def script_hash(text: str) -> str:
    """CSP source expression allowing exactly this inline script: ``'sha256-<base64>'``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(script_texts=()) -> str:
    """A policy under which the page can load nothing from anywhere: no requests at all (``default-src 'none'``),
    only the listed inline scripts run, styles and images only inline or from ``data:``/``blob:`` URLs."""
    scripts = " ".join(script_hash(text) for text in script_texts) or "'none'"
    return ("default-src 'none'; script-src " + scripts + "; style-src 'unsafe-inline'; img-src data: blob:; "
            "base-uri 'none'; form-action 'none'")
