"""Matplotlib figures of dispatch timings, and the one place that renders a figure to an image.

Every plot vknb draws is here: :func:`plot_timings` (what ``vknb.widgets.plot_timings``,
``TimingsView.plot`` and ``%vknb timings --plot`` show), :func:`figure_bytes` (PNG / SVG bytes,
with the Agg backend; pyplot is never used, so no global figure state and no GUI backend) and
:func:`figure_html` (the figure as inline SVG for a notebook output).

Colours follow the notebook's theme: the figures are drawn with a sentinel ink colour
(:data:`INK`) on a transparent background; the SVG replaces the ink with ``currentColor`` (so
inline in HTML it takes the text colour of JupyterLab's light or dark theme, of VS Code, of
nbconvert's page), and the PNG replaces it with a neutral grey (:data:`NEUTRAL`) that reads on
light and dark backgrounds alike.

``import vknb.ui.plots`` is cheap: matplotlib is imported by the functions.

Example
-------
>>> fig = plot_timings(vknb.timings(), kind="timeline")      # doctest: +SKIP
>>> figure_bytes(fig)[:4]                                   # doctest: +SKIP
b'\\x89PNG'
"""

from __future__ import annotations

import base64
import io
import math
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..compute.timing import DispatchRecord

__all__ = [
    "INK",
    "NEUTRAL",
    "PLOT_KINDS",
    "figure_bytes",
    "figure_html",
    "figure_image",
    "histogram_edges",
    "plot_timings",
    "timeline_rows",
]

#: The ``kind`` values :func:`plot_timings` takes.
PLOT_KINDS = ("timeline", "dispatches", "histogram", "overhead", "all")

#: The sentinel colour of text, axes and ticks: ``currentColor`` in SVG, :data:`NEUTRAL` in PNG.
INK = "#010203"
#: Text and axes in PNG output: a grey that reads on white and on a dark theme.
NEUTRAL = "#8a8a8a"

_STYLE: Any = {
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.edgecolor": INK,
    "axes.titlecolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "grid.color": INK,
    "grid.alpha": 0.18,
    "legend.edgecolor": INK,
    "legend.facecolor": "none",
    "legend.framealpha": 0.0,
    "axes.facecolor": "none",
    "figure.facecolor": "none",
    "savefig.facecolor": "none",
    "svg.fonttype": "path",
    "font.size": 9.0,
}

_FIGURE_CLASS: type | None = None


def _figure_class() -> type:
    """``TimingsFigure``, created on first use so that importing this module stays cheap."""
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        from matplotlib.figure import Figure

        class TimingsFigure(Figure):
            """A matplotlib Figure that displays itself in any front end, whether or not a
            matplotlib backend is active in the kernel: inline SVG in the theme's colours
            (``text/html``, with the PNG inside for renderers that strip SVG) and a PNG."""

            def _repr_png_(self) -> bytes:
                return figure_bytes(self, "png")

            def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
                png = figure_bytes(self, "png")
                return {
                    "text/html": figure_html(self, png=png),
                    "image/png": png,
                    "text/plain": repr(self),
                }

        TimingsFigure.__module__ = __name__
        TimingsFigure.__qualname__ = "TimingsFigure"
        _FIGURE_CLASS = TimingsFigure
    return _FIGURE_CLASS


def __getattr__(name: str) -> Any:
    if name == "TimingsFigure":
        return _figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- rendering ---------------------------------------------------------------------------------


def _ink_rgb() -> tuple[int, int, int]:
    return int(INK[1:3], 16), int(INK[3:5], 16), int(INK[5:7], 16)


def _recolor_png(png: bytes) -> bytes:
    """Replace the ink by :data:`NEUTRAL` in a PNG with a transparent background.

    On a transparent background, antialiased ink pixels keep the ink's RGB and carry their
    coverage in alpha, so swapping the RGB recolours text and lines exactly."""
    import numpy as np
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGBA")
    px = np.array(img)
    ink = np.array(_ink_rgb(), dtype=np.int16)
    near = np.all(np.abs(px[..., :3].astype(np.int16) - ink) <= 2, axis=-1)
    px[near, :3] = [int(NEUTRAL[i : i + 2], 16) for i in (1, 3, 5)]
    out = io.BytesIO()
    Image.fromarray(px, "RGBA").save(out, format="png", optimize=True)
    return out.getvalue()


_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)


def _themed_svg(svg: str) -> str:
    """SVG text for inline use: no XML prolog or metadata (no date: stable output), the ink
    replaced by ``currentColor``."""
    svg = _PROLOG.sub("", svg, count=1)
    svg = _METADATA.sub("", svg)
    return re.sub(re.escape(INK), "currentColor", svg, flags=re.I)


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """Render a matplotlib figure to PNG or SVG bytes with the Agg backend (no pyplot).

    The background is transparent.  In SVG the ink (:data:`INK`) becomes ``currentColor``; in
    PNG it becomes :data:`NEUTRAL` grey, readable on light and dark themes.

    Example
    -------
    >>> png = figure_bytes(plot_timings(kind="timeline"))        # doctest: +SKIP
    >>> png[:4]                                                 # doctest: +SKIP
    b'\\x89PNG'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    import matplotlib

    buf = io.BytesIO()
    rc: Any = {**_STYLE, "svg.hashsalt": "vknb"}
    with matplotlib.rc_context(rc):
        fig.savefig(
            buf, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="none", edgecolor="none"
        )
    data = buf.getvalue()
    if fmt == "png":
        return _recolor_png(data)
    return _themed_svg(data.decode("utf-8")).encode("utf-8")


def figure_html(fig: Figure, png: bytes | None = None) -> str:
    """The figure as an HTML fragment: inline SVG whose text and axes take the page's text
    colour (``currentColor``), on a transparent background.  No script, no external resource.

    The PNG (``png``, default rendered here) rides inside the SVG in a zero-size
    ``foreignObject``: invisible where the SVG renders, and what remains where a sanitizer
    strips SVG (an untrusted notebook in JupyterLab keeps ``<img>`` but drops ``<svg>``).

    Example
    -------
    >>> html = figure_html(plot_timings(kind="histogram"))       # doctest: +SKIP
    """
    svg = figure_bytes(fig, "svg").decode("utf-8")
    png = figure_bytes(fig, "png") if png is None else png
    fallback = (
        '<foreignObject width="0" height="0"><img alt="vknb timings plot" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"/></foreignObject>'
    )
    svg = re.sub(r"</svg>\s*$", fallback + "</svg>", svg.rstrip())
    # Scale down to the output's width, never up.
    svg = re.sub(r"<svg\b", '<svg style="max-width:100%;height:auto"', svg, count=1)
    return f"<div class='vknb-figure' style='color:inherit;line-height:0'>{svg}</div>"


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


# --- plain data behind the plots ---------------------------------------------------------------


def histogram_edges(values: list[float], bins: int = 30, log: bool = False) -> Any:
    """Bin edges for ``values`` whose first edge is exactly the minimum and whose last edge is
    exactly the maximum, so that every value falls in a bin (``numpy.histogram`` closes the
    last bin).  ``log``: log-spaced (positive values only).  One distinct value gets one bin
    around it.

    Example
    -------
    >>> e = histogram_edges([0.1, 0.37, 12.0], log=True)
    >>> float(e[0]), float(e[-1])
    (0.1, 12.0)
    """
    import numpy as np

    lo, hi = float(min(values)), float(max(values))
    if not hi > lo:
        pad = abs(lo) * 0.05 or 0.5
        return np.array([lo - pad, hi + pad])
    if log:
        if lo <= 0:
            raise ValueError("log-spaced bins need positive values")
        edges = np.logspace(math.log10(lo), math.log10(hi), bins + 1)
    else:
        edges = np.linspace(lo, hi, bins + 1)
    # 10**log10(x) and float steps can land a hair inside: pin the ends to the data.
    edges[0], edges[-1] = lo, hi
    return np.maximum.accumulate(edges)


def timeline_rows(records: list[DispatchRecord]) -> list[dict[str, Any]]:
    """Where each record sits on the timeline, as plain data (the order of ``records``).

    Each entry: ``record``, ``label`` (its kernel version's, or the batch's), ``start`` and
    ``end`` (``time.time()`` seconds: ``rec.gpu_start`` / ``rec.gpu_end``, or the host call where
    there is no GPU time), ``calibrated``, ``gpu`` (whether it is GPU time), ``warmup``, and
    ``lane`` / ``row``: the label's lane and the row inside it, so that records that overlap
    (asynchronous calls, batches) sit on different rows of their lane.

    Example
    -------
    >>> [(r["label"], r["row"]) for r in timeline_rows(vknb.timings())]  # doctest: +SKIP
    [('saxpy', 0), ('saxpy', 1), ('scale', 0)]
    """
    from ..compute.timing import is_warmup, version_label

    out: list[dict[str, Any]] = []
    lanes: dict[str, int] = {}
    for r in records:
        start, end = r.gpu_start, r.gpu_end
        gpu = start is not None and end is not None
        if start is None or end is None:
            start, end = r.time, r.time + r.host_ms * 1e-3
        label = version_label(r.kernel, r.version)
        lanes.setdefault(label, len(lanes))
        out.append(
            {
                "record": r,
                "label": label,
                "start": start,
                "end": max(end, start),
                "calibrated": r.calibrated,
                "gpu": gpu,
                "warmup": is_warmup(r),
                "lane": lanes[label],
                "row": 0,
            }
        )
    # Greedy interval packing per lane, in start order: each bar takes the first free row.
    ends: dict[int, list[float]] = {}
    for e in sorted(out, key=lambda e: (e["start"], e["end"])):
        rows = ends.setdefault(e["lane"], [])
        for i, last_end in enumerate(rows):
            if e["start"] >= last_end:
                rows[i] = e["end"]
                e["row"] = i
                break
        else:
            rows.append(e["end"])
            e["row"] = len(rows) - 1
    return out


# --- axes helpers --------------------------------------------------------------------------------


def _colors(labels: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(labels)}


def _wide(values: list[float]) -> bool:
    pos = [v for v in values if v > 0]
    return len(pos) > 1 and max(pos) / min(pos) > 50


def _fmt_number(v: float) -> str:
    if v == 0:
        return "0"
    s = f"{v:.3g}"
    return s if "e" not in s else f"{v:g}"


def _log_axis(axis: Any, lo: float, hi: float) -> None:
    """Readable log ticks: a label at each decade, and at 2 and 5 of each decade where the
    range spans at most three decades; plain numbers (0.05, 2, 100), never 10^-2."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _fmt_number(v)))
    axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    if decades <= 3.0:

        def minor(v: float, _pos: Any) -> str:
            lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6)
            return _fmt_number(v) if lead in (2.0, 5.0) else ""

        axis.set_minor_formatter(FuncFormatter(minor))
    else:
        axis.set_minor_formatter(NullFormatter())


def _integer_axis(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _legend(ax: Axes, **kw: Any) -> None:
    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize="small", **kw)


def _what(gpu: bool) -> str:
    return "GPU" if gpu else "host"


def _ms(r: DispatchRecord, gpu: bool) -> float | None:
    return r.gpu_ms if gpu else r.host_ms


# --- the plots ---------------------------------------------------------------------------------


def _plot_timeline(ax: Axes, recs: list[DispatchRecord], colors: dict[str, Any], gpu: bool) -> None:
    rows = timeline_rows(recs)
    t0 = min(e["start"] for e in rows)
    span = max(e["end"] for e in rows) - t0
    scale, unit = (1e3, "ms") if span < 2.0 else (1.0, "s")
    clock = time.strftime("%H:%M:%S", time.localtime(t0)) + f".{int(t0 * 1000) % 1000:03d}"
    ax.set_title(f"{_what(gpu)} timeline (from {clock})")
    ax.set_xlabel(f"time since the first dispatch ({unit})")
    nrows: dict[int, int] = {}
    for e in rows:
        nrows[e["lane"]] = max(nrows.get(e["lane"], 0), e["row"] + 1)
    labels = list(dict.fromkeys(e["label"] for e in rows))
    estimated = False
    seen: set[str] = set()
    for e in rows:
        n = nrows[e["lane"]]
        height = 0.8 / n
        y = e["lane"] - 0.4 + e["row"] * height
        color = colors[e["label"]]
        est = e["gpu"] and not e["calibrated"]
        estimated |= est
        ax.barh(
            y,
            (e["end"] - e["start"]) * scale,
            left=(e["start"] - t0) * scale,
            height=height * 0.9,
            align="edge",
            color=color,
            alpha=0.5 if est else 0.9,
            edgecolor=color,  # a bar narrower than a pixel still shows as its edge
            linewidth=0.8,
            hatch="////" if e["warmup"] else None,
            hatchcolor=INK,
            label=None if e["label"] in seen else e["label"],
        )
        seen.add(e["label"])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(left=0)
    ax.grid(True, axis="x", color=INK, alpha=0.18)
    from matplotlib.patches import Patch

    handles: list[Any] = []
    if any(e["warmup"] for e in rows):
        handles.append(Patch(facecolor="none", edgecolor=INK, hatch="////", label="warm-up"))
    if estimated:
        handles.append(Patch(facecolor=INK, alpha=0.35, label="estimated (not calibrated)"))
    if not gpu:
        handles.append(Patch(facecolor="none", edgecolor="none", label="host calls: no GPU time"))
    if handles:
        ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _warm_split(recs: list[DispatchRecord]) -> tuple[list[DispatchRecord], list[DispatchRecord]]:
    from ..compute.timing import is_warmup

    warm = [r for r in recs if is_warmup(r)]
    return [r for r in recs if not is_warmup(r)], warm


def _plot_dispatches(
    ax: Axes, recs: list[DispatchRecord], colors: dict[str, Any], gpu: bool
) -> None:
    from ..compute.timing import is_warmup, version_label

    what = _what(gpu)
    ax.set_title(f"{what} time per dispatch")
    ax.set_xlabel("dispatch #")
    ax.set_ylabel(f"{what} ms")
    _integer_axis(ax.xaxis)
    pts = [(i, _ms(r, gpu), r) for i, r in enumerate(recs)]
    pts = [p for p in pts if p[1] is not None]
    steady = [v for _i, v, r in pts if not is_warmup(r) and v is not None]
    allv = [v for _i, v, _r in pts if v is not None]
    for label, color in colors.items():
        mine = [(i, v) for i, v, r in pts if version_label(r.kernel, r.version) == label]
        if mine:
            # A line joins consecutive dispatches only: other kernels' calls break it.
            xs: list[float] = []
            ys: list[float] = []
            for i, v in mine:
                if v is None:
                    continue
                if xs and i != xs[-1] + 1:
                    xs.append(math.nan)
                    ys.append(math.nan)
                xs.append(i)
                ys.append(v)
            ax.plot(xs, ys, ".-", color=color, label=label, markersize=4, linewidth=0.8)
    warm = [(i, v) for i, v, r in pts if is_warmup(r)]
    basis = steady or allv
    log = _wide(basis)
    if log:
        ax.set_yscale("log")
        _log_axis(ax.yaxis, min(v for v in basis if v > 0), max(basis))
    if warm and basis:
        top = max(basis) * (1.3 if log else 1.15)
        bottom = min(basis)
        clipped = False
        for i, v in warm:
            if v is not None and v > top:  # a cold call far above the rest: at the top edge
                clipped = True
                ax.annotate(
                    f"{_fmt_number(v)} ms",
                    (i, top),
                    xytext=(3, -2),
                    textcoords="offset points",
                    fontsize="x-small",
                    va="top",
                )
        wx = [i for i, _v in warm]
        wy = [min(v, top) if v is not None else top for _i, v in warm]
        ax.plot(wx, wy, "o", mfc="none", color=INK, markersize=7, label="warm-up")
        if clipped:
            pad = (top - bottom) * 0.05 if not log else 0
            ax.set_ylim(bottom=(bottom / 1.3 if log else max(0.0, bottom - pad)), top=top)
    _legend(ax)


def _plot_histogram(
    ax: Axes, recs: list[DispatchRecord], colors: dict[str, Any], gpu: bool
) -> None:
    import statistics

    from ..compute.timing import is_warmup, version_label

    what = _what(gpu)
    ax.set_title(f"{what} time histogram per kernel")
    ax.set_xlabel(f"{what} ms")
    ax.set_ylabel("dispatches")
    _integer_axis(ax.yaxis)
    per: dict[str, list[float]] = {n: [] for n in colors}
    warm: dict[str, list[float]] = {n: [] for n in colors}
    for r in recs:
        v = _ms(r, gpu)
        if v is None or v <= 0:
            continue
        label = version_label(r.kernel, r.version)
        per[label].append(v)
        if is_warmup(r):
            warm[label].append(v)
    allv = [v for vs in per.values() for v in vs]
    if not allv:
        return
    log = _wide(allv)
    edges = histogram_edges(allv, 30, log=log)
    if log:
        ax.set_xscale("log")
        _log_axis(ax.xaxis, min(allv), max(allv))
    for label, color in colors.items():
        vs = per[label]
        if not vs:
            continue
        ax.hist(vs, bins=edges, color=color, alpha=0.55, label=label)
        ax.axvline(statistics.median(vs), color=color, linewidth=1.4)
        ax.axvline(sum(vs) / len(vs), color=color, linewidth=1.1, linestyle="--")
        if warm[label]:
            ax.plot(
                warm[label],
                [1.0] * len(warm[label]),
                "v",
                color=color,
                mec=INK,
                markersize=7,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
            )
    # Key for the lines and markers, once (their colours are the kernels').
    ax.plot([], [], color=INK, linewidth=1.4, label="median")
    ax.plot([], [], color=INK, linewidth=1.1, linestyle="--", label="mean")
    if any(warm.values()):
        ax.plot([], [], "v", color="none", mec=INK, label="warm-up")
    _legend(ax)


def _plot_overhead(ax: Axes, recs: list[DispatchRecord], colors: dict[str, Any], gpu: bool) -> None:
    from ..compute.timing import summarize

    ax.set_title("GPU time vs host overhead (median per dispatch)")
    ax.set_xlabel("ms")
    rows = summarize(recs)
    names = [s["label"] for s in rows]
    g = [s["gpu_ms_median"] or 0.0 for s in rows]
    over = [max(s["host_ms_median"] - gm, 0.0) for s, gm in zip(rows, g, strict=True)]
    y = list(range(len(names)))
    ax.barh(y, g, color="#1f77b4", label="GPU")
    ax.barh(y, over, left=g, color="#ff7f0e", alpha=0.8, label="host overhead")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.grid(True, axis="x", color=INK, alpha=0.18)
    _legend(ax)


_DRAW = {
    "timeline": _plot_timeline,
    "dispatches": _plot_dispatches,
    "histogram": _plot_histogram,
    "overhead": _plot_overhead,
}


def plot_timings(
    records: list[DispatchRecord] | None = None,
    kind: str = "all",
    kernel: str | None = None,
    last: int | None = None,
    *,
    xlim: tuple[float, float] | None = None,
) -> Any:
    """Plot dispatch timings: a matplotlib Figure (Agg; pyplot is not used, nothing is shown).

    Parameters
    ----------
    records : list of DispatchRecord, optional
        Default: :func:`vknb.timings` (of ``kernel`` if given).
    kind : {'timeline', 'dispatches', 'histogram', 'overhead', 'all'}
        ``timeline``: when each dispatch (and batch) ran, as a bar from ``rec.gpu_start`` to
        ``rec.gpu_end`` on a real time axis, one lane per kernel version; calls that overlapped
        (asynchronous calls, batches) sit on rows of their own; pale bars are estimated (no
        calibrated timestamps).  ``dispatches``: GPU time of each dispatch in order.
        ``histogram``: distribution of GPU times per kernel version, bins from the fastest to
        the slowest dispatch, median (solid) and mean (dashed) lines.  ``overhead``: median
        GPU time and host overhead (host time minus GPU time) per kernel version.  ``all``:
        the timeline above, the three others below.  Warm-up dispatches (the first call of
        each kernel version) are marked on each.  Where no record has a GPU time (a queue
        without timestamps), the plots show host times instead, and say so.
    kernel : str, optional
        Only this kernel's records.
    last : int, optional
        Only the last ``last`` records (after the ``kernel`` filter), in every kind.
    xlim : (float, float), optional
        The timeline's x range, in its unit (ms or s since the first dispatch): a zoom.

    Returns
    -------
    Figure
        A ``matplotlib.figure.Figure`` (of class ``TimingsFigure``) that displays itself as
        inline SVG in the theme's colours, with a PNG beside it (so it survives nbconvert and
        nbval); :func:`figure_bytes` gives PNG/SVG bytes.

    Example
    -------
    >>> fig = vknb.widgets.plot_timings(kind="timeline")
    >>> len(fig.axes)
    1
    """
    import matplotlib

    from ..compute.timing import timings, version_label

    if kind not in PLOT_KINDS:
        raise ValueError(f"kind must be one of {PLOT_KINDS}, got {kind!r}")
    if last is not None and last < 0:
        raise ValueError(f"last must be >= 0, got {last}")
    recs = timings(kernel=kernel) if records is None else list(records)
    if kernel is not None and records is not None:
        recs = [r for r in recs if r.kernel == kernel]
    if last is not None:
        recs = recs[-last:] if last else []
    kinds = ["timeline", "dispatches", "histogram", "overhead"] if kind == "all" else [kind]
    gpu = any(r.gpu_ms is not None for r in recs)
    colors = _colors(list(dict.fromkeys(version_label(r.kernel, r.version) for r in recs)))
    with matplotlib.rc_context(_STYLE):
        if kind == "all":
            fig = _figure_class()(figsize=(15.0, 7.4), layout="constrained")
            grid = fig.add_gridspec(2, 3, height_ratios=(1.0, 1.25))
            axes = [fig.add_subplot(grid[0, :])] + [fig.add_subplot(grid[1, i]) for i in range(3)]
        else:
            width = 10.0 if kind == "timeline" else 5.5
            height = 3.0 + (0.25 * len(colors) if kind == "timeline" else 0.6)
            fig = _figure_class()(figsize=(width, height), layout="constrained")
            axes = [fig.add_subplot(1, 1, 1)]
        for ax, k in zip(axes, kinds, strict=True):
            # Ticks are made lazily, maybe outside this style: give them the ink now.
            ax.tick_params(which="both", colors=INK)
            if not recs:
                ax.set_title(k)
                ax.text(
                    0.5, 0.5, "no dispatches yet", ha="center", va="center", transform=ax.transAxes
                )
                continue
            _DRAW[k](ax, recs, colors, gpu)
            if k == "timeline" and xlim is not None:
                ax.set_xlim(*xlim)
    return fig
