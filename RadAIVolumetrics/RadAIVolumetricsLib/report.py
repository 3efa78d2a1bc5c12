"""Self-contained HTML reports: tables, plots and pictures embedded, readable offline.

A report is built from sections (:class:`HtmlReport.heading`, ``paragraph``,
``table``, ``image``, ``key_values``, ``viewer``) and written atomically as one file whose
images are base64 data URIs and whose interactive viewers (NiiVue, vendored) carry their volumes
inline, so it can be mailed or archived as is. Its Content-Security-Policy forbids every request:
the page works offline and cannot leak anything when opened.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from RadAISegmentLib.atomic import write_text_atomic

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.45}
h1{border-bottom:3px solid #2a6f97;padding-bottom:.2em}h2{color:#2a6f97;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}th,td{border:1px solid #ccd;padding:.3em .6em;text-align:right}
th{background:#eef3f7}td:first-child,th:first-child{text-align:left}caption{caption-side:top;text-align:left;font-style:italic;color:#555}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figure img{max-width:520px;border:1px solid #ccd}
figcaption{font-size:.88em;color:#444;max-width:520px}.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em}
.kv td{text-align:left}.small{font-size:.85em;color:#555}
"""


def _format(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:,.{digits}f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_format(v, digits) for v in value) + ")"
    return str(value)


def save_figure(figure, png_path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt
    from RadAISegmentLib.atomic import atomic_path
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    with atomic_path(png_path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
    plt.close(figure)
    return Path(png_path)


class HtmlReport:
    """Accumulates sections and writes one self-contained HTML file."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        self.viewer_count = 0
        if subtitle:
            self.parts.append(f"<p class='small'>{html.escape(subtitle)}</p>")

    def heading(self, text: str, anchor: Optional[str] = None) -> None:
        anchor_attr = f" id='{html.escape(anchor)}'" if anchor else ""
        self.parts.append(f"<h2{anchor_attr}>{html.escape(text)}</h2>")

    def paragraph(self, text: str, note: bool = False) -> None:
        css = " class='note'" if note else ""
        self.parts.append(f"<p{css}>{html.escape(text)}</p>")

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]],
              caption: str = "", digits: int = 3) -> None:
        """A table; ``columns`` are ``(key, header)`` pairs, headers should carry units, e.g. ``"Volume (mL)"``."""
        head = "".join(f"<th>{html.escape(header)}</th>" for _, header in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_format(row.get(key), digits))}</td>" for key, _ in columns)
                       + "</tr>" for row in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def key_values(self, items: Iterable[tuple[str, Any]], caption: str = "") -> None:
        body = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(_format(v))}</td></tr>" for k, v in items)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table class='kv'>{cap}{body}</table>")

    def image(self, png_path: str | os.PathLike, caption: str = "") -> None:
        """Embed a PNG as a data URI (no external file needed to view the report)."""
        data = base64.b64encode(Path(png_path).read_bytes()).decode("ascii")
        self.parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def viewer(self, case, max_voxels: Optional[int] = None) -> None:
        """An interactive viewer of a :class:`~RadAIVolumetricsLib.viewer.ViewerCase` (slices + 3D, data inline)."""
        from .viewer import DEFAULT_MAX_VOXELS, viewer_block
        self.viewer_count += 1
        self.parts.append(viewer_block(case, f"radai-viewer-{self.viewer_count}", max_voxels or DEFAULT_MAX_VOXELS))

    def raw_html(self, fragment: str) -> None:
        """Trusted HTML generated by RadAI itself (never user text)."""
        self.parts.append(fragment)

    def to_html(self) -> str:
        from .viewer import body_scripts, head_tags
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        viewers = self.viewer_count > 0
        return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>" + head_tags(viewers)
                + f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>"
                + "\n".join(self.parts)
                + f"<hr><p class='small'>Generated by RadAI on {stamp}. Research software: not a medical device; "
                  "every automated result must be checked by a qualified reader."
                + (" Interactive viewers: NiiVue (BSD-2-Clause), embedded." if viewers else "") + "</p>"
                + (body_scripts() if viewers else "") + "</body></html>")

    def write(self, path: str | os.PathLike) -> Path:
        return write_text_atomic(path, self.to_html())
