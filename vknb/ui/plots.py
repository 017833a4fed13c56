"""Matplotlib figures of dispatch timings, and the one place that renders a figure to an image.

Every plot vknb draws is here: :func:`plot_timings` (what ``vknb.widgets.plot_timings``,
``TimingsView.plot`` and ``%vknb timings --plot`` show) and :func:`figure_bytes` (PNG / SVG bytes,
with the Agg backend; pyplot is never used, so no global figure state and no GUI backend).

``import vknb.ui.plots`` is cheap: matplotlib is imported by the functions.

Example
-------
>>> fig = plot_timings(vknb.timings(), kind="timeline")      # doctest: +SKIP
>>> figure_bytes(fig)[:4]                                   # doctest: +SKIP
b'\\x89PNG'
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..compute.timing import DispatchRecord

__all__ = ["PLOT_KINDS", "figure_bytes", "figure_image", "plot_timings"]

#: The ``kind`` values :func:`plot_timings` takes.
PLOT_KINDS = ("timeline", "histogram", "overhead", "all")

_FIGURE_CLASS: type | None = None


def _figure_class() -> type:
    """``TimingsFigure``, created on first use so that importing this module stays cheap."""
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        from matplotlib.figure import Figure

        class TimingsFigure(Figure):
            """A matplotlib Figure that displays itself as a static PNG in any front end,
            whether or not a matplotlib backend is active in the kernel."""

            def _repr_png_(self) -> bytes:
                return figure_bytes(self, "png")

        TimingsFigure.__module__ = __name__
        TimingsFigure.__qualname__ = "TimingsFigure"
        _FIGURE_CLASS = TimingsFigure
    return _FIGURE_CLASS


def __getattr__(name: str) -> Any:
    if name == "TimingsFigure":
        return _figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """Render a matplotlib figure to PNG or SVG bytes with the Agg backend (no pyplot).

    Example
    -------
    >>> png = figure_bytes(plot_timings(kind="timeline"))        # doctest: +SKIP
    >>> png[:4]                                                 # doctest: +SKIP
    b'\\x89PNG'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def figure_image(fig: Figure, fmt: str = "png") -> Any:
    """A static ``IPython.display.Image`` (``fmt="png"``) or ``SVG`` of a figure: it survives
    nbconvert and nbval, where a live matplotlib backend's output would not.

    Example
    -------
    >>> figure_image(plot_timings(kind="histogram"), "svg")     # doctest: +SKIP
    """
    from IPython.display import SVG, Image

    if fmt == "svg":
        return SVG(figure_bytes(fig, "svg"))
    if fmt != "png":
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    return Image(figure_bytes(fig, "png"), format="png")


def _colors(names: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _wide(values: list[float]) -> bool:
    pos = [v for v in values if v > 0]
    return len(pos) > 1 and max(pos) / min(pos) > 50


def _ms(r: DispatchRecord, gpu: bool) -> float | None:
    return r.gpu_ms if gpu else r.host_ms


def _plot_timeline(ax: Any, recs: list[DispatchRecord], colors: dict[str, Any], gpu: bool) -> None:
    what = "GPU" if gpu else "host"
    ax.set_title(f"{what} time per dispatch")
    ax.set_xlabel("dispatch #")
    ax.set_ylabel(f"{what} ms")
    for name, color in colors.items():
        pts = [(i, _ms(r, gpu)) for i, r in enumerate(recs) if r.kernel == name]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, ".-", color=color, label=name, markersize=4, linewidth=0.8)
    if _wide([v for v in (_ms(r, gpu) for r in recs) if v is not None]):
        ax.set_yscale("log")
    if colors:
        ax.legend(fontsize="small")


def _plot_histogram(ax: Any, recs: list[DispatchRecord], colors: dict[str, Any], gpu: bool) -> None:
    import numpy as np

    what = "GPU" if gpu else "host"
    ax.set_title(f"{what} time histogram per kernel")
    ax.set_xlabel(f"{what} ms")
    ax.set_ylabel("dispatches")
    per = {n: [v for r in recs if r.kernel == n and (v := _ms(r, gpu)) and v > 0] for n in colors}
    allv = [v for vs in per.values() for v in vs]
    if not allv:
        return
    lo, hi = min(allv), max(allv)
    if _wide(allv):
        bins: Any = np.logspace(np.log10(lo), np.log10(hi), 30)
        ax.set_xscale("log")
    else:
        bins = np.linspace(lo * 0.95, hi * 1.05 if hi > lo else lo * 1.05 + 1e-6, 30)
    for name, color in colors.items():
        if per[name]:
            ax.hist(per[name], bins=bins, color=color, alpha=0.6, label=name)
    ax.legend(fontsize="small")


def _plot_overhead(ax: Any, recs: list[DispatchRecord], colors: dict[str, Any], gpu: bool) -> None:
    from ..compute.timing import summarize

    ax.set_title("GPU time vs host overhead (mean per dispatch)")
    ax.set_xlabel("ms")
    rows = summarize(recs)
    names = [s["kernel"] for s in rows]
    g = [s["gpu_ms_mean"] or 0.0 for s in rows]
    over = [max(s["host_ms_mean"] - gm, 0.0) for s, gm in zip(rows, g, strict=True)]
    y = list(range(len(names)))
    ax.barh(y, g, color="#1f5fa0", label="GPU")
    ax.barh(y, over, left=g, color="#f0a050", label="host overhead")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.legend(fontsize="small")


def plot_timings(
    records: list[DispatchRecord] | None = None, kind: str = "all", kernel: str | None = None
) -> Any:
    """Plot dispatch timings: a matplotlib Figure (Agg; pyplot is not used, nothing is shown).

    Parameters
    ----------
    records : list of DispatchRecord, optional
        Default: :func:`vknb.timings` (of ``kernel`` if given).
    kind : {'timeline', 'histogram', 'overhead', 'all'}
        ``timeline``: GPU time of each dispatch in order, one line per kernel;
        ``histogram``: distribution of GPU times per kernel; ``overhead``: mean GPU time versus
        host overhead (host time minus GPU time) per kernel; ``all``: the three side by side.
        Where no record has a GPU time (a queue without timestamps), the timeline and the
        histogram show host times instead, and say so.
    kernel : str, optional
        Only this kernel's records.

    Returns
    -------
    Figure
        A ``matplotlib.figure.Figure`` (of class ``TimingsFigure``) that displays itself as a
        static PNG in a notebook (so it survives nbconvert and nbval); :func:`figure_bytes`
        gives PNG/SVG bytes.

    Example
    -------
    >>> fig = vknb.widgets.plot_timings(kind="timeline")
    >>> len(fig.axes)
    1
    """
    from ..compute.timing import timings

    if kind not in PLOT_KINDS:
        raise ValueError(f"kind must be one of {PLOT_KINDS}, got {kind!r}")
    recs = timings(kernel=kernel) if records is None else list(records)
    if kernel is not None and records is not None:
        recs = [r for r in recs if r.kernel == kernel]
    kinds = ["timeline", "histogram", "overhead"] if kind == "all" else [kind]
    fig = _figure_class()(figsize=(5.0 * len(kinds), 3.6), layout="constrained")
    colors = _colors(list(dict.fromkeys(r.kernel for r in recs)))
    gpu = any(r.gpu_ms is not None for r in recs)
    draw = {"timeline": _plot_timeline, "histogram": _plot_histogram, "overhead": _plot_overhead}
    for i, k in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), i + 1)
        if not recs:
            ax.set_title(k)
            ax.text(0.5, 0.5, "no dispatches yet", ha="center", va="center", transform=ax.transAxes)
            continue
        draw[k](ax, recs, colors, gpu)
    return fig
