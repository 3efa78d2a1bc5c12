"""2D annotations drawn over a rendered 3D picture (matplotlib, Agg): what a newcomer needs to read it.

* edge letters — which side of the patient each edge of the picture faces (R/L/A/P/S/I);
* a scale bar — exact, because RadAI's 3D pictures use a parallel projection (``mm_per_pixel`` is the
  same everywhere in the picture);
* a legend — one coloured square per structure;
* a title; and, for atlas plates, call-outs: names in the margins with leader lines to the structures.

Pixels are ``uint8`` RGB, row 0 at the top; positions are ``(column, row)`` pixels.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .render_parts import EDGE_LETTERS

NICE_LENGTHS_MM = (1, 2, 5, 10, 20, 25, 50, 100, 200, 500)


def scale_bar_length_mm(mm_per_pixel: float, width_px: int, fraction: float = 0.22) -> float:
    """The longest 'nice' length (1, 2, 5, 10, 20, 25, 50 ... mm) no longer than ``fraction`` of the picture's width."""
    limit = mm_per_pixel * width_px * fraction
    fitting = [length for length in NICE_LENGTHS_MM if length <= limit]
    return float(fitting[-1] if fitting else NICE_LENGTHS_MM[0])


def _outlined(text_artist, dark_text: bool) -> None:
    from matplotlib import patheffects
    text_artist.set_path_effects([patheffects.withStroke(linewidth=3, foreground="white" if dark_text else "black")])


def _label_box(rgb) -> dict:
    return {"boxstyle": "round,pad=0.25", "facecolor": tuple(rgb), "alpha": 0.45, "linewidth": 0}


def _keep_inside(ax, text, column: float, width: int, pad: float = 6.0) -> float:
    """Shift ``text`` horizontally so that it lies inside the picture; returns its new anchor column."""
    extent = text.get_window_extent(renderer=ax.figure.canvas.get_renderer())
    shift = max(pad - extent.x0, 0.0) - max(extent.x1 - (width - pad), 0.0)
    if shift:
        column += shift
        text.set_x(column)
    return column


def _callouts(ax, callouts: Sequence[tuple[str, tuple[float, float], tuple]], width: int, height: int,
              text_colour: str) -> None:
    """Names with leader lines to their points: one or two beside their point (towards the emptier side),
    more in the left/right margins by the point's side, spread evenly from top to bottom."""
    if len(callouts) <= 2:
        for index, (name, (column, row), rgb) in enumerate(callouts):
            step = -1 if column < width / 2 else 1      # outwards, away from the middle
            label_column = float(np.clip(column + step * 0.22 * width, 0.12 * width, 0.88 * width))
            label_row = float(np.clip(row - 0.12 * height + index * 0.06 * height, 0.1 * height, 0.7 * height))
            text = ax.text(label_column, label_row, name, fontsize=9, color=text_colour, va="center",
                           ha="left" if step > 0 else "right", bbox=_label_box(rgb))
            label_column = _keep_inside(ax, text, label_column, width)
            ax.plot([column, label_column], [row, label_row], color=text_colour, linewidth=0.9)
        return
    sides = {"left": [], "right": []}
    for name, (column, row), rgb in callouts:
        sides["left" if column < width / 2 else "right"].append((row, column, name, rgb))
    for side, items in sides.items():
        items.sort()
        for index, (row, column, name, rgb) in enumerate(items):
            label_row = height * (0.1 + 0.78 * (index + 0.5) / len(items))
            label_column = 0.17 * width if side == "left" else 0.83 * width   # the text runs outwards from here
            ax.plot([column, label_column], [row, label_row], color=text_colour, linewidth=0.7, alpha=0.85)
            ax.plot([column], [row], marker="o", markersize=2.5, color=text_colour)
            ax.text(label_column, label_row, name, fontsize=8, color=text_colour, va="center",
                    ha="right" if side == "left" else "left", bbox=_label_box(rgb))


def annotate(pixels: np.ndarray, camera: str, mm_per_pixel: float, legend: Sequence[tuple[str, tuple]] = (),
             title: str = "", dark_background: bool = True,
             callouts: Optional[Sequence[tuple[str, tuple[float, float], tuple]]] = None) -> np.ndarray:
    """``pixels`` with edge letters, a scale bar, a legend (``(name, rgb)`` pairs), a title and optional call-outs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    height, width = pixels.shape[:2]
    figure = Figure(figsize=(width / 100.0, height / 100.0), dpi=100)
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_axes([0, 0, 1, 1])
    ax.imshow(pixels, interpolation="nearest")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    text_colour = "white" if dark_background else "black"
    left, right, top, bottom = EDGE_LETTERS[camera]
    places = ((8, height / 2, "left", "center"), (width - 8, height / 2, "right", "center"),
              (width / 2, 6, "center", "top"), (width / 2, height - 6, "center", "bottom"))
    for letter, (column, row, ha, va) in zip((left, right, top, bottom), places):
        _outlined(ax.text(column, row, letter, color=text_colour, fontsize=15, fontweight="bold", ha=ha, va=va),
                  not dark_background)
    length_mm = scale_bar_length_mm(mm_per_pixel, width)
    bar_px = length_mm / mm_per_pixel
    x1, y = width - 0.04 * width, height - 0.06 * height
    ax.plot([x1 - bar_px, x1], [y, y], color=text_colour, linewidth=3, solid_capstyle="butt")
    for x in (x1 - bar_px, x1):
        ax.plot([x, x], [y - 5, y + 5], color=text_colour, linewidth=1.5)
    _outlined(ax.text(x1 - bar_px / 2, y - 7, f"{length_mm:g} mm", color=text_colour, fontsize=9, ha="center",
                      va="bottom"), not dark_background)
    if title:
        _outlined(ax.text(10, 8, title, color=text_colour, fontsize=10, ha="left", va="top", fontweight="bold"),
                  not dark_background)
    if callouts:
        _callouts(ax, callouts, width, height, text_colour)
    if legend:
        handles = [Patch(facecolor=tuple(rgb), edgecolor="none", label=name) for name, rgb in legend]
        box = ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.55, borderpad=0.5,
                        facecolor="black" if dark_background else "white", edgecolor="none",
                        bbox_to_anchor=(0.99, 0.13))
        for text in box.get_texts():
            text.set_color(text_colour)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
