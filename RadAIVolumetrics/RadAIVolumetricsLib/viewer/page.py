"""HTML for the interactive viewer: one block per case, the scripts once per page, a page of its own.

A page holding viewers carries everything inline: the vendored NiiVue build, RadAI's viewer script, the
style, and each case's volumes (gzip NIfTI, base64) in ``<script type="application/json">`` blocks (data,
never run). Its Content-Security-Policy (``default-src 'none'``, scripts allowed by hash) forbids every
request, so the page works from ``file://`` on a machine without network and can be mailed as one file.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Sequence

from RadAISegmentLib.atomic import write_text_atomic

from .assets import NIIVUE_VERSION, content_security_policy, niivue_script, viewer_script, viewer_style
from .volumes import DEFAULT_MAX_VOXELS, ViewerCase, case_payload


def _json_for_script(data: dict) -> str:
    """JSON safe inside a ``<script>`` element (no ``</`` sequence can close it early)."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def viewer_block(case: ViewerCase, element_id: str, max_voxels: int = DEFAULT_MAX_VOXELS) -> str:
    """The HTML of one viewer (canvas, controls, legend, read-out, notes) with its embedded data."""
    payload = case_payload(case, max_voxels)
    notes = "".join(f"<p class='radai-note'>{html.escape(note)}</p>" for note in payload["notes"])
    return (f"<div class='radai-viewer' id='{element_id}' data-source='{element_id}-data' data-status='waiting'>"
            f"<h3>{html.escape(case.title)}</h3>"
            "<div class='radai-canvas-box'><canvas></canvas></div>"
            "<div class='radai-legend-slot'></div><div class='radai-controls'></div>"
            "<div class='radai-readout'>Click a point to read its position (RAS mm) and values.</div>"
            "<p class='radai-status'>The viewer starts when it comes into view (it needs a browser with WebGL2 "
            "and JavaScript; no network is used).</p>"
            f"{notes}</div>"
            f"<script type='application/json' id='{element_id}-data'>{_json_for_script(payload)}</script>")


def viewer_scripts() -> list[str]:
    """The inline scripts a page with viewers needs, in order: NiiVue, then RadAI's viewer code."""
    return [niivue_script(), viewer_script()]


def head_tags(with_viewers: bool) -> str:
    """``<meta>`` CSP (always: the page may request nothing) and, with viewers, the viewer style."""
    policy = content_security_policy(viewer_scripts() if with_viewers else ())
    style = f"<style>{viewer_style()}</style>" if with_viewers else ""
    return f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">{style}"


def body_scripts() -> str:
    """The inline ``<script>`` elements for the end of ``<body>`` (their text is exactly what the CSP hashes)."""
    return "".join(f"<script>{text}</script>" for text in viewer_scripts())


def viewer_page_html(cases: Sequence[ViewerCase], title: str, max_voxels: int = DEFAULT_MAX_VOXELS) -> str:
    """A standalone page with one viewer per case."""
    blocks = "\n".join(viewer_block(case, f"radai-viewer-{index}", max_voxels) for index, case in enumerate(cases, 1))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>" + head_tags(True)
            + f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;"
            "max-width:1100px;color:#222}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{blocks}"
            f"<p class='radai-note'>Viewer: NiiVue {NIIVUE_VERSION} (BSD-2-Clause), embedded in this file. "
            "Research software, not a medical device.</p>" + body_scripts() + "</body></html>")


def write_viewer_page(path: str | os.PathLike, cases: Sequence[ViewerCase], title: str,
                      max_voxels: int = DEFAULT_MAX_VOXELS) -> Path:
    """Write :func:`viewer_page_html` atomically to ``path``."""
    return write_text_atomic(path, viewer_page_html(cases, title, max_voxels))
