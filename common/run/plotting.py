"""The few plot helpers every day uses: lines, heatmaps, histograms, bars.

All figures: headless backend, labelled axes with units, 8 inches wide at 120 dpi (readable at
GitHub width), saved atomically as PNG. Each helper returns the path it wrote.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.run import atomic  # noqa: E402

WIDTH, DPI = 8.0, 120


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


def lines(path, series: dict, xlabel: str, ylabel: str, title: str = "", logx=False, logy=False,
          markers: bool = False, hline: tuple[float, str] | None = None, logx_base: int = 2,
          vline: tuple[float, str] | list[tuple[float, str]] | None = None, styles: dict | None = None,
          xticks: tuple[list, list] | None = None) -> Path:
    """`series` maps a label to (x, y) or (x, y, yerr); `logx` uses base `logx_base` (2 suits sizes);
    `hline` = (position, label) draws a dashed reference line, `vline` one or a list of dotted ones.
    `styles` maps a label to extra matplotlib keywords (e.g. `dict(lw=6, alpha=0.3)` for a wide pale
    band under a curve that lies on top of it); `xticks` = (positions, labels) replaces the x ticks."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5))
    for label, xy in series.items():
        x, y = xy[0], xy[1]
        style = "o-" if markers else "-"
        extra = (styles or {}).get(label, {})
        if len(xy) > 2 and xy[2] is not None:
            ax.errorbar(x, y, yerr=xy[2], fmt=style, capsize=3, label=label, **extra)
        else:
            ax.plot(x, y, style, label=label, **extra)
    if hline is not None:
        ax.axhline(hline[0], color="gray", ls="--", lw=1, label=hline[1])
    vlines = [vline] if isinstance(vline, tuple) else list(vline or [])
    for (pos, label), color in zip(vlines, itertools.cycle(["gray", "tab:red", "tab:purple", "tab:brown"])):
        ax.axvline(pos, color=color, ls=":", lw=1.2, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log", base=logx_base)
    if logy:
        ax.set_yscale("log")
        _plain_ticks(ax.yaxis)
    if xticks is not None:
        ax.set_xticks(list(xticks[0]), [str(t) for t in xticks[1]])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.grid(alpha=0.3)
    if len(series) > 1 or hline is not None or vlines:
        ax.legend()
    return _save(fig, path)


def _plain_ticks(axis) -> None:
    """Log-axis ticks as plain numbers (2.5, 3, 4 rather than 2.5x10^0) when the axis spans less than two
    decades, as a loss axis does; wider axes keep one label per decade."""
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo < 100:
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    else:
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def heatmap(path, matrix, xlabel: str, ylabel: str, title: str = "", cbar: str = "",
            xticks=None, yticks=None, vmin=None, vmax=None, cmap="viridis") -> Path:
    """A matrix as an image with a colour bar (e.g. attention weights)."""
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(WIDTH * 0.75, WIDTH * 0.65))
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(im, ax=ax, label=cbar)
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks, rotation=90 if len(xticks) > 12 else 0)
    if yticks is not None:
        ax.set_yticks(range(len(yticks)), yticks)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return _save(fig, path)


def histogram(path, samples: dict, xlabel: str, ylabel: str = "count", title: str = "", bins=40,
              logx=False, vlines: dict | None = None) -> Path:
    """`samples` maps a label to a 1-D array. With `logx`, bins are log-spaced over positive values."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5))
    arrays = {k: np.asarray(v, dtype=float).ravel() for k, v in samples.items()}
    if logx:
        pos = np.concatenate([a[a > 0] for a in arrays.values()]) if arrays else np.array([1.0])
        lo, hi = np.log10(pos.min()), np.log10(pos.max())
        bins = np.logspace(lo - 0.1, hi + 0.1, bins if isinstance(bins, int) else 40)
        ax.set_xscale("log")
    for label, a in arrays.items():
        ax.hist(a[a > 0] if logx else a, bins=bins, alpha=0.6, label=label)
    for label, x in (vlines or {}).items():
        ax.axvline(x, color="k", ls="--", lw=1)
        ax.text(x, ax.get_ylim()[1] * 0.95, " " + label, rotation=90, va="top", fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if len(arrays) > 1:
        ax.legend()
    return _save(fig, path)


def bars(path, labels, values, ylabel: str, title: str = "", errors=None, xlabel: str = "") -> Path:
    """A bar per label, with optional error bars."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5))
    ax.bar(range(len(values)), values, yerr=errors, capsize=3 if errors is not None else 0)
    ax.set_xticks(range(len(labels)), labels, rotation=30 if max(map(len, map(str, labels))) > 8 else 0,
                  ha="right" if max(map(len, map(str, labels))) > 8 else "center")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def loglog(path, points: dict, curves: dict, xlabel: str, title: str) -> Path:
    """Measured points per series with the fitted curve of the same colour; extra curves dashed."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.8))
    colors = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for (label, (x, y)), color in zip(points.items(), colors):
        ax.plot(x, y, "o", color=color, label=label)
        if label in curves:
            ax.plot(*curves[label], "-", color=color, alpha=0.6)
    for label in [k for k in curves if k not in points]:
        ax.plot(*curves[label], "k--", label=label)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="val loss (nats/token)", title=title)
    _plain_ticks(ax.yaxis)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def reliability(path, panels: dict, title: str = "") -> Path:
    """Reliability diagrams side by side: `panels` maps a label to the bins of `calibration.reliability`
    (lo, hi, count, confidence, accuracy). Bars: accuracy per confidence bin; red: the gap to the mean
    confidence of the bin; dashed: the diagonal a calibrated model would follow."""
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 4.2), squeeze=False)
    for ax, (label, bins) in zip(axes[0], panels.items()):
        full = [b for b in bins if b["count"]]
        width = full[0]["hi"] - full[0]["lo"] if full else 0.1
        ax.bar([b["lo"] for b in full], [b["accuracy"] for b in full], width=width, align="edge",
               edgecolor="black", lw=0.5, label="accuracy")
        ax.bar([b["lo"] for b in full], [b["confidence"] - b["accuracy"] for b in full], width=width,
               bottom=[b["accuracy"] for b in full], align="edge", color="tab:red", alpha=0.35, label="gap")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy", title=label)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def grouped_bars(path, groups, series: dict, ylabel: str, title: str = "",
                 hline: tuple[float, str] | None = None) -> Path:
    """Bars for each group (x) and series (colour): `series` maps a label to (values, lower, upper), where lower
    and upper are the interval's ends (drawn as asymmetric error bars); None ends draw no bar error."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5))
    k = len(series)
    width = 0.8 / max(1, k)
    x = np.arange(len(groups))
    for j, (label, (vals, lo, hi)) in enumerate(series.items()):
        vals = np.asarray(vals, dtype=float)
        err = None
        if lo is not None and hi is not None:
            err = np.vstack([vals - np.asarray(lo, dtype=float), np.asarray(hi, dtype=float) - vals])
        ax.bar(x - 0.4 + width * (j + 0.5), vals, width, yerr=err, capsize=2, label=label)
    if hline is not None:
        ax.axhline(hline[0], color="gray", ls="--", lw=1, label=hline[1])
    ax.set_xticks(x, groups, rotation=20 if max(map(len, map(str, groups))) > 10 else 0,
                  ha="right" if max(map(len, map(str, groups))) > 10 else "center")
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(k + (hline is not None), 6), loc="upper center", bbox_to_anchor=(0.5, -0.18),
              frameon=False)
    return _save(fig, path)


def forest(path, rows: list[tuple[str, float, float, float]], xlabel: str, title: str = "", ref: float = 0.0) -> Path:
    """A forest plot: one row per (label, estimate, low, high), the interval as a line, the estimate as a dot,
    and a dashed line at `ref` (no difference)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 0.45 * len(rows) + 1.5))
    y = np.arange(len(rows))[::-1]
    for yi, (_, est, lo, hi) in zip(y, rows):
        color = "tab:blue" if lo > ref or hi < ref else "gray"
        ax.plot([lo, hi], [yi, yi], color=color, lw=2)
        ax.plot([est], [yi], "o", color=color)
    ax.axvline(ref, color="black", ls="--", lw=1)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set(xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
