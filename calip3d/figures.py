"""Pictures of what CALIP does (from an `Explanation`) and of results beside the published numbers.

Drawn with matplotlib's object API on the Agg canvas: no pyplot, no global state. Every figure is at least 1000 px
wide at its own DPI (100) whatever the backbone's resolution; `save_figure` writes a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .atomic import atomic_write
from .explain import TERM_NAMES, Explanation

if TYPE_CHECKING:
    from .tables import ChartRow

DPI = 100
MIN_WIDTH_IN = 12.0  # 1200 px at DPI
HEAT_CMAP = "turbo"
HEAT_ALPHA = 0.5
MAP_LABEL = "attention per position\n(% of the map)"


def _class_colours(count: int) -> list[str]:
    return [f"C{i % 10}" for i in range(count)]


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(max(width, MIN_WIDTH_IN), height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Maps `[..., H, W]` -> `[..., size, size]`, bilinear (pixel centres aligned, as the tokens tile the image)."""
    tensor = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    lead = tensor.shape[:-2]
    flat = tensor.reshape(-1, 1, *tensor.shape[-2:])
    out = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return out.reshape(*lead, size, size).numpy()


def _heat_grids(result: Explanation) -> np.ndarray:
    """`[V, K, S, S]` attention in percent, upsampled from the token grid to the view size."""
    grid = result.grid
    maps = result.positions.reshape(*result.positions.shape[:2], grid.height, grid.width) * 100.0
    return upsample(maps, result.views.shape[-1])


def _colour_bar(fig, mappable, axes, label: str) -> None:
    """A colour bar beside `axes` with plain tick labels (no "+2.5e1" offset) and at most 5 ticks."""
    bar = fig.colorbar(mappable, ax=axes, shrink=0.8, aspect=15)
    bar.set_label(label, fontsize=9)
    bar.ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    bar.ax.ticklabel_format(axis="y", style="plain", useOffset=False)


def _show_view(ax, view: np.ndarray, kind: str) -> object:
    """A view `[S, S]` (depth, grey) or `[3, S, S]` (RGB in [0, 1])."""
    ax.set_xticks([])
    ax.set_yticks([])
    if kind == "image":
        return ax.imshow(np.transpose(view, (1, 2, 0)), interpolation="bilinear")
    return ax.imshow(view, cmap="gray", interpolation="nearest")


def _overlay(ax, view: np.ndarray, heat: np.ndarray, kind: str, vmin: float, vmax: float) -> object:
    _show_view(ax, view, kind)
    return ax.imshow(heat, cmap=HEAT_CMAP, alpha=HEAT_ALPHA, vmin=vmin, vmax=vmax, interpolation="bilinear")


def _class_label(result: Explanation, rank: int) -> str:
    index = result.top[rank]
    return f"#{rank + 1} {result.classnames[index]}\nCALIP {result.probabilities[index]:.1%}"


def _shown_classes(result: Explanation) -> list[int]:
    """The top classes by CALIP, then CLIP's own top classes not already among them (as many as shown)."""
    extra = [int(i) for i in np.argsort(-result.clip_probabilities)[: len(result.top)] if i not in result.top]
    return [int(i) for i in result.top] + extra


def _probability_panel(ax, result: Explanation, clip_name: str) -> None:
    """Horizontal bars: CALIP vs CLIP probability of the shown classes, best CALIP first."""
    shown = _shown_classes(result)
    y = np.arange(len(shown))
    height = 0.38
    calip = result.probabilities[shown] * 100
    clip = result.clip_probabilities[shown] * 100
    ax.barh(y - height / 2, calip, height, color="C3")
    ax.barh(y + height / 2, clip, height, color="0.6")
    for row, (a, b) in enumerate(zip(calip, clip)):
        ax.text(a, row - height / 2, f" {a:.1f}", va="center", fontsize=8)
        ax.text(b, row + height / 2, f" {b:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, [result.classnames[i] for i in shown])
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(calip.max()), float(clip.max())) * 1.3 + 1e-9)
    ax.set_xlabel("probability (%)")
    ax.set_title(f"probabilities: CALIP (red) vs {clip_name} (grey)", fontsize=10)


def _term_panels(axes, result: Explanation) -> list:
    """One panel per CALIP term: for each view (a row), one horizontal bar per top class. The value axis is zoomed
    to the values, so that the differences between classes, which decide the ranking, are visible. Returns the
    bar handles (one per class)."""
    views, classes = result.terms.shape[:2]
    y = np.arange(views)
    height = 0.8 / classes
    colours = _class_colours(classes)
    handles = []
    for t, ax in enumerate(axes):
        values = result.terms[:, :, t]
        handles = [ax.barh(y + (k - (classes - 1) / 2) * height, values[:, k], height, color=colours[k])
                   for k in range(classes)]
        _zoom_to_values(ax, float(values.min()), float(values.max()))
        ax.set_title(f"{TERM_NAMES[t]} (β{t + 1} = {result.betas[t]:g})", fontsize=10)
    axes[1].set_xlabel("term value (×100 in the logits; axes zoomed to the values)")
    return handles


def _zoom_to_values(ax, low: float, high: float) -> None:
    """Value axis from a little below `low` to a little above `high`, with two ticks: the lowest and highest value
    (as many decimals as tell them apart, up to 4), or one tick when the values are too close to label both, so
    neighbouring panels' tick labels never meet."""
    span = high - low
    pad = max(0.3 * span, 1e-3 * max(abs(low), abs(high), 1e-6))
    ax.set_xlim(low - pad, high + pad)
    decimals = int(min(4, max(2, np.ceil(-np.log10(span)) + 1))) if span > 0 else 2
    labels = dict.fromkeys(f"{t:.{decimals}f}" for t in (low, high))
    if len(labels) == 2 and span / (span + 2 * pad) >= 0.4:
        ax.set_xticks([low, high], list(labels))
    else:
        ax.set_xticks([(low + high) / 2], [f"{(low + high) / 2:.{decimals}f}"])


def cloud_figure(result: Explanation, title: str = "", note: str = "", clip_name: str = "PointCLIP") -> Figure:
    """A point cloud's picture.

    Top: the projected views as the backbone sees them (titled with view name and view weight); under each view,
    one row per top class with CALIP's attention over the spatial positions (softmax over positions, upsampled from
    the token grid) as a heat map over the view, one shared colour bar. Bottom: per view, the CLIP, visual-guided and
    textual-blended terms of each top class and the view weight, and the final CALIP vs `clip_name` probabilities.
    """
    views, classes = result.terms.shape[:2]
    cell = max(1.55, min(2.1, 12.5 / views))
    width = cell * views + 2.6
    heat_height = cell * (1 + classes) + 0.5
    bars_height = max(3.6, 0.07 * views * classes + 1.8)
    fig = _new_figure(width, heat_height + bars_height + (0.4 if title else 0) + (0.3 if note else 0))
    top, bottom = fig.subfigures(2, 1, height_ratios=[heat_height, bars_height])
    axes = top.subplots(1 + classes, views, squeeze=False)
    heat = _heat_grids(result)
    vmin, vmax = float(heat.min()), float(heat.max())
    depth = heat_image = None
    colours = _class_colours(classes)
    for v in range(views):
        depth = _show_view(axes[0, v], result.views[v], result.kind)
        axes[0, v].set_title(f"{result.view_names[v]}\nweight {result.view_weights[v]:g}", fontsize=10)
        for k in range(classes):
            heat_image = _overlay(axes[k + 1, v], result.views[v], heat[v, k], result.kind, vmin, vmax)
    axes[0, 0].set_ylabel("what CLIP sees", fontsize=9)
    for k in range(classes):
        axes[k + 1, 0].set_ylabel(_class_label(result, k), fontsize=9, color=colours[k])
    _colour_bar(top, depth, axes[0, :], "pixel value\n(CLIP's input)")
    _colour_bar(top, heat_image, axes[1:, :], MAP_LABEL)

    panels = bottom.subplots(1, 5, gridspec_kw={"width_ratios": [1.2, 1.2, 1.2, 0.7, 1.6]})
    handles = _term_panels(panels[:3], result)
    panels[3].barh(np.arange(views), result.view_weights, 0.6, color="0.45")
    panels[3].set_title("view weight", fontsize=10)
    panels[3].xaxis.set_major_locator(MaxNLocator(nbins=3))
    for i, ax in enumerate(panels[:4]):
        ax.set_ylim(views - 0.5, -0.5)  # first view on top
        ax.set_yticks(np.arange(views), result.view_names if i == 0 else [])
    panels[0].set_ylabel("view")
    bottom.legend(handles, result.top_classes, loc="outside upper left", ncols=classes, fontsize=9,
                  title="bar colours: top classes", title_fontsize=9, frameon=False)
    _probability_panel(panels[4], result, clip_name)
    _titles(fig, title, note)
    return fig


def image_figure(result: Explanation, title: str = "", note: str = "") -> Figure:
    """An image's picture. Top: the image as the model sees it (its crop), then one panel per top class with
    CALIP's attention over the spatial positions as a heat map over the image, one colour bar. Bottom: the three
    terms of each top class, and CLIP vs CALIP probabilities."""
    classes = result.terms.shape[1]
    fig = _new_figure(2.6 * (classes + 1) + 1.2, 6.9 + (0.4 if title else 0) + (0.3 if note else 0))
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.3, 3.6])
    axes = top.subplots(1, classes + 1, squeeze=False)[0]
    heat = _heat_grids(result)[0]
    vmin, vmax = float(heat.min()), float(heat.max())
    _show_view(axes[0], result.views[0], result.kind)
    axes[0].set_title("what CLIP sees")
    colours = _class_colours(classes)
    image = None
    for k in range(classes):
        image = _overlay(axes[k + 1], result.views[0], heat[k], result.kind, vmin, vmax)
        axes[k + 1].set_title(_class_label(result, k).replace("\n", ", "), fontsize=10, color=colours[k])
    _colour_bar(top, image, list(axes[1:]), MAP_LABEL)

    left, right = bottom.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1.0]})
    x = np.arange(3)
    width = 0.8 / classes
    for k in range(classes):
        left.bar(x + (k - (classes - 1) / 2) * width, result.terms[0, k], width, color=colours[k],
                 label=result.classnames[result.top[k]])
    left.axhline(0, color="0.3", linewidth=0.6)
    left.set_xticks(x, [f"{name}\n(β{t + 1} = {result.betas[t]:g})" for t, name in enumerate(TERM_NAMES)])
    left.set_ylabel("term value (×100 in the logits)")
    left.set_title("CALIP's three terms for the top classes")
    left.legend(fontsize=8, title="class", title_fontsize=8, loc="best")
    _probability_panel(right, result, "CLIP")
    _titles(fig, title, note)
    return fig


def _titles(fig: Figure, title: str, note: str) -> None:
    if title:
        fig.suptitle(title, fontsize=13)
    if note:
        fig.supxlabel(note, fontsize=9, color="0.3")


def results_bar_chart(rows: Sequence["ChartRow"], path: str | Path, title: str = "") -> Path:
    """Grouped bars per dataset (one per series of `ChartRow.values`, e.g. CLIP and CALIP, value written inside),
    with each series' comparable published number marked by a black line across its bar. Writes a PNG to `path`."""
    if not rows:
        raise ValueError("no rows to plot")
    series = list(dict.fromkeys(name for row in rows for name in row.values))
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    fig = _new_figure(0.55 * len(rows) * len(series) + 2.5, 5.4)
    ax = fig.subplots()
    marked = False
    for s, name in enumerate(series):
        offsets = x + (s - (len(series) - 1) / 2) * width
        bars = ax.bar(offsets, [row.values.get(name, np.nan) for row in rows], width, color=f"C{s}",
                      label=f"{name} (this run)")
        values = [row.values.get(name, np.nan) for row in rows]
        inside = [f"{v:.1f}" if v >= 8 else "" for v in values]  # inside the bar, clear of the published marks
        ax.bar_label(bars, inside, label_type="center", fontsize=8, color="white")
        ax.bar_label(bars, ["" if v >= 8 or np.isnan(v) else f"{v:.1f}" for v in values], padding=2, fontsize=8,
                     color="0.2")
        published = np.array([row.published.get(name, np.nan) for row in rows])
        shown = ~np.isnan(published)
        if shown.any():
            ax.hlines(published[shown], offsets[shown] - width / 2, offsets[shown] + width / 2, colors="black",
                      linewidth=2.5, label=None if marked else "published (same backbone and weights)")
            marked = True
    ax.set_xticks(x, [row.label for row in rows], rotation=30 if len(rows) > 4 else 0,
                  ha="right" if len(rows) > 4 else "center")
    margin = max(0.0, (3 - len(rows)) / 2) + 0.6  # a few datasets keep narrow bars, centred
    ax.set_xlim(-margin, len(rows) - 1 + margin)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "this run vs the published numbers")
    fig.legend(loc="outside lower center", ncols=len(series) + 1, fontsize=9, frameon=False)
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at its own DPI, atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=fig.dpi))
