"""The views against the real device, through a real IPython shell: the live HTML outputs (what
they show equals what Python reports, and their in-place updates after dispatches,
``clear_timings``, frees and device changes, throttled, stopping when a view is closed or
collected), the interactive widgets, and the plots (exact bin edges, integer and log ticks,
versions, warm-ups, ``last``, a real timeline, theme colours)."""

from __future__ import annotations

import gc
import html
import math
import re
import statistics
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import vknb
from vknb import display, timing
from vknb import widgets as vw
from vknb.ui import plots

SAXPY = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < x.length()) y[i] += a * x[i]; }
"""

SCALE = """
layout(local_size_x = 32) in;
layout(set = 0, binding = 0) buffer Y { float y[]; };
layout(push_constant) uniform P { float s; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < y.length()) y[i] *= s; }
"""

PNG = b"\x89PNG\r\n\x1a\n"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# What no vknb HTML may contain: it must read on dark themes and render without scripts or
# anything fetched from elsewhere.
LIGHT_ONLY = re.compile(
    r"background(-color)?\s*:\s*(white|#fff\b|#ffffff\b)|color\s*:\s*(black|#000\b|#000000\b)",
    re.I,
)


@pytest.fixture(scope="module")
def saxpy(dev: vknb.Device) -> Any:
    return vknb.compile(SAXPY, name="wt_saxpy")


@pytest.fixture(scope="module")
def scale(dev: vknb.Device) -> Any:
    return vknb.compile(SCALE, name="wt_scale")


def run_saxpy(k: Any, rng: np.random.Generator, n: int = 1000) -> Any:
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    want = y + np.float32(2.0) * x
    rec = k(x, y, a=2.0, grid=n)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    return rec


def run_scale(k: Any, rng: np.random.Generator, n: int = 640) -> Any:
    y = rng.random(n, dtype=np.float32)
    want = y * np.float32(0.5)
    rec = k(y, s=0.5, grid=n)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    return rec


def _plain(html_: str) -> str:
    """Table HTML without the inline cell style (JupyterLab would right-align cells)."""
    return html_.replace(" style='text-align:left;white-space:nowrap'", "")


def settle() -> None:
    for _ in range(3):
        gc.collect()


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def assert_robust_html(page: str) -> None:
    """No script, no external resource, nothing that disappears on a dark theme."""
    assert "<script" not in page.lower() and "javascript:" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "external resource"
    assert not LIGHT_ONLY.search(page), LIGHT_ONLY.search(page)


class Outputs:
    """What a shell published: the first display of each display id, then its updates."""

    def __init__(self, pub: Any) -> None:
        self.pub = pub

    def of(self, view: Any) -> list[dict[str, Any]]:
        return [
            o
            for o in self.pub.outputs
            if (o.get("transient") or {}).get("display_id") == view.display_id
        ]

    def shown(self, view: Any) -> dict[str, Any]:
        first = self.of(view)[0]
        assert first["update"] is False
        return first["data"]

    def updates(self, view: Any) -> list[dict[str, Any]]:
        return [o["data"] for o in self.of(view) if o["update"]]

    def last(self, view: Any) -> dict[str, Any]:
        return self.of(view)[-1]["data"]


@pytest.fixture
def shell() -> Iterator[Outputs]:
    """A real IPython shell whose display publisher keeps what is published (display ids and
    updates included), as a Jupyter kernel's would send it."""
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    old = ip.display_pub
    ip.display_pub = CapturingDisplayPublisher()
    try:
        yield Outputs(ip.display_pub)
    finally:
        vw.close_all()
        ip.display_pub = old


def show(view: Any) -> None:
    from IPython.display import display as ipy_display

    ipy_display(view)


def test_import_is_cheap() -> None:
    code = (
        "import sys, vknb.widgets; "
        "print([m for m in ('ipywidgets', 'matplotlib', 'IPython') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- device explorer ---------------------------------------------------------------------------


def test_device_explorer_rows_table_and_details(dev: vknb.Device, shell: Outputs) -> None:
    ex = vw.DeviceExplorer()
    infos = vknb.devices()
    rows = ex.rows()
    assert [r["index"] for r in rows] == [d.index for d in infos]
    for r, d in zip(rows, infos, strict=True):
        assert (r["name"], r["type"], r["driver"], r["api_version"]) == (
            d.name,
            d.type,
            d.driver,
            d.api_version,
        )
        assert r["score"] == d.score == r["score_type"] + r["score_memory"]
        assert r["total_memory"] == d.total_memory
        assert r["session"] == (d.index == dev.index)
    show(ex)
    out = shell.shown(ex)
    assert set(out) == {"text/html", "text/plain"}  # no widget model to lose
    page = out["text/html"]
    assert_robust_html(page)
    assert "score (type+mem)" in page
    for d in infos:
        assert html.escape(d.name) in page
        assert f"{d.score} ({d.score_parts['type']}+{d.score_parts['memory']})" in page
        # every device's details, in a <details>: the session device's open
        opened = " open" if d.index == dev.index else ""
        assert f"<details class='vknb-device'{opened}><summary>Device {d.index}: " in page
        lim = d.limits
        assert " x ".join(map(str, lim["max_workgroup_size"])) in page
        assert display.fmt_bytes(lim["max_shared_memory"]) in page
        for q in d.queue_families:
            assert display.plural(q.count, "queue") in page
    assert f"<tr style='font-weight:bold'><td>*{dev.index}</td>" in _plain(page)
    assert html.escape(dev.reason) in page
    assert f"*{dev.index}" in out["text/plain"] and "compute limits" in out["text/plain"]
    assert ex.details(dev.index) == display.device_details(dev.info)
    assert repr(ex).startswith("<vknb.widgets.DeviceExplorer: ")


def test_device_explorer_interactive(dev: vknb.Device) -> None:
    ex = vw.DeviceExplorer(interactive=True)
    bundle = ex._repr_mimebundle_()
    assert {"text/plain", "text/html", WIDGET_MIME} <= set(bundle)
    assert bundle[WIDGET_MIME]["model_id"] == ex.widget.model_id
    for d in vknb.devices():
        ex.select.value = d.index  # what the dropdown does in the browser
        assert f"Device {d.index}: {html.escape(d.name)}" in ex.details_pane.value
        assert "compute limits" in ex.details_pane.value
    ex.select.value = dev.index
    ex.use_button.click()
    assert vknb.device() is dev  # one device: vknb.use(i) keeps the session device
    assert html.escape(dev.info.name) in ex.status.value
    assert display.OK_COLOR in ex.status.value
    assert ex.use_button.button_style == "success"
    widgets = [ex.widget, ex.select, ex.use_button]
    vw.close_all()  # what runs when the kernel shuts down
    assert all(w.comm is None for w in widgets)


# --- memory ------------------------------------------------------------------------------------


def _heap_with_use(stats: Any) -> Any:
    return max(stats.heaps, key=lambda h: h.allocated)


def test_memory_view_shows_what_python_reports(
    dev: vknb.Device, shell: Outputs, no_leaks: None, rng: np.random.Generator
) -> None:
    mon = vw.MemoryMonitor(dev)
    show(mon)
    assert mon.live and mon in vw.live_views()
    page = shell.shown(mon)["text/html"]
    assert_robust_html(page)
    s = dev.memory_stats()
    for h in s.heaps:
        row = _plain(page)
        assert f"<td>{display.fmt_bytes(h.size)}</td>" in row
        assert (
            f"<td>{display.fmt_bytes(h.allocated)}</td><td>{display.fmt_bytes(h.used)}</td>" in row
        )
        assert html.escape(display.heap_label(h).split(" of ")[0]) in page
    assert f"used by {display.plural(s.buffers, 'live buffer')}" in page
    assert f"and {display.plural(s.images, 'live image')}" in page
    assert "as of " in page

    # An allocation shows without being asked (the live thread polls), then a free.
    arr = vknb.asarray(rng.random(1 << 20, dtype=np.float32))  # 4 MiB
    now = dev.memory_stats()
    want = f"used by {display.plural(now.buffers, 'live buffer')}"
    assert wait_for(lambda: want in shell.last(mon)["text/html"], 5), shell.last(mon)["text/plain"]
    heap = _heap_with_use(now)
    assert f"<td>{display.fmt_bytes(heap.used)}</td>" in _plain(shell.last(mon)["text/html"])
    arr.close()
    after = dev.memory_stats()
    want = f"{display.fmt_bytes(after.used)} used by {display.plural(after.buffers, 'live buffer')}"
    assert wait_for(lambda: want in shell.last(mon)["text/html"], 5)
    # The sparkline: an <img> of SVG (no script), with its range in words.
    last = shell.last(mon)["text/html"]
    assert "<img class='vknb-sparkline' src='data:image/svg+xml;base64," in last
    assert "vknb used over the last 60 s" in last
    history = mon.history()[heap.index]
    assert max(u for u, _a in history) >= now.heaps[heap.index].used
    assert history[-1][0] == after.heaps[heap.index].used
    n = len(shell.updates(mon))
    time.sleep(1.5)  # nothing changes: nothing is re-sent
    assert len(shell.updates(mon)) <= n + 1
    mon.close()
    assert "(no longer updated)" in shell.last(mon)["text/html"]
    assert not mon.live and mon not in vw.live_views()


def test_memory_bar_is_readable_at_a_fraction_of_a_large_heap() -> None:
    from vknb.core.memory import HeapStats, MemoryStats

    big = HeapStats(
        index=0,
        size=24 << 30,
        device_local=True,
        budget=None,
        usage=None,
        allocated=64 << 20,
        used=3 << 20,
    )
    stats = MemoryStats(heaps=[big], allocated=64 << 20, used=3 << 20, blocks=1, buffers=1)
    page = display.memory_stats_html(
        stats, "Memory", {0: [(1 << 20, 64 << 20), (3 << 20, 64 << 20)]}
    )
    assert "vknb used 0.01% · allocated 0.26%" in page  # the numbers are printed
    assert "min-width:3px" in page  # and the bar part never vanishes
    assert display.percent(3 << 20, 24 << 30) == "0.01%"
    assert display.percent(1, 24 << 30) == "<0.01%"
    assert display.percent(0, 10) == "0%" and display.percent(5, 10) == "50%"
    assert "peak 3.0 MiB" in page
    assert_robust_html(page)
    text = display.memory_stats_text(stats)
    assert "vknb used 0.01% · allocated 0.26%" in text
    assert "1 block, 3.0 MiB used by 1 live buffer and 0 live images" in text


def test_memory_view_follows_device_changes() -> None:
    """vknb.reset() replaces the session device: the views say so, without being asked (in a
    process of its own: the test session keeps its device)."""
    script = textwrap.dedent(
        """
        import time
        from IPython.core.displaypub import CapturingDisplayPublisher
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.display import display
        import numpy as np
        import vknb, vknb.widgets as vw

        ip = InteractiveShell.instance()
        pub = ip.display_pub = CapturingDisplayPublisher()
        first = vknb.device()
        held = vknb.asarray(np.ones(1 << 18, np.float32))  # 1 MiB on the first device
        mon = vw.MemoryMonitor()
        display(mon)
        n = len(pub.outputs)
        second = vknb.reset()
        assert second is not first and vknb.current_device() is second

        def updates():
            return [o for o in pub.outputs[n:] if o["update"]
                    and o["transient"]["display_id"] == mon.display_id]

        end = time.monotonic() + 10
        while time.monotonic() < end and not updates():
            time.sleep(0.05)
        used = second.memory_stats().used
        print(bool(updates()) and f"{vknb.display.fmt_bytes(used)} used by" in
              updates()[-1]["data"]["text/html"], mon.device is second, len(mon.history()[0]))
        vw.close_all()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    updated, follows, samples = out.stdout.split()
    assert updated == "True" and follows == "True"
    assert int(samples) >= 1  # the history started over with the new device


# --- timings -----------------------------------------------------------------------------------


def test_timings_view_live_updates_clear_and_plurals(
    saxpy: Any, scale: Any, rng: np.random.Generator, shell: Outputs
) -> None:
    vknb.clear_timings()
    tv = vw.TimingsView(min_interval=0.05)
    show(tv)
    first = shell.shown(tv)
    assert set(first) == {"text/html", "text/plain"}
    assert "no dispatches yet" in first["text/html"]
    rec = run_saxpy(saxpy, rng)
    assert wait_for(lambda: "1 dispatch)" in shell.last(tv)["text/html"])
    page = shell.last(tv)["text/html"]
    assert "Last dispatch</b>" in page and "1 dispatches" not in page
    assert_robust_html(page)
    recs = [rec] + [run_saxpy(saxpy, rng) for _ in range(2)] + [run_scale(scale, rng)]
    n = len(vknb.timings())
    assert n == 4
    assert wait_for(lambda: f"{n} dispatches)" in shell.last(tv)["text/html"])
    page = _plain(shell.last(tv)["text/html"])
    for r in recs:
        assert f"<td>{r.gpu_ms:.3f}</td>" in page
    summary = {s["label"]: s for s in tv.summary()}
    assert summary["wt_saxpy"]["count"] == 3 and summary["wt_scale"]["count"] == 1
    assert f"<td>wt_saxpy</td><td>{saxpy.version}</td><td>3" in page
    assert f"<td>{display._ms(summary['wt_saxpy']['gpu_ms_median'])}</td>" in page
    assert shell.last(tv)["text/plain"].startswith("Dispatch timings (all kernels, last 4")

    vknb.clear_timings()  # the view empties itself
    assert wait_for(lambda: "no dispatches yet" in shell.last(tv)["text/html"])
    assert tv.records() == []
    tv.kernel = "wt_scale"  # a new filter redraws too
    run_saxpy(saxpy, rng)
    run_scale(scale, rng)
    assert wait_for(lambda: "kernel wt_scale, 1 dispatch)" in shell.last(tv)["text/html"])
    assert "wt_saxpy" not in shell.last(tv)["text/html"]
    tv.close()
    n = len(shell.of(tv))
    run_scale(scale, rng)
    time.sleep(0.3)
    assert len(shell.of(tv)) == n  # closed: no more updates


def test_timings_view_throttles(saxpy: Any, rng: np.random.Generator, shell: Outputs) -> None:
    tv = vw.TimingsView(kernel="wt_saxpy", min_interval=0.3)
    show(tv)
    t0 = time.monotonic()
    for _ in range(40):
        run_saxpy(saxpy, rng, n=256)
    elapsed = time.monotonic() - t0
    count = len(vknb.timings(kernel="wt_saxpy"))
    # the trailing update arrives with the final count
    assert wait_for(lambda: f"{count} dispatches)" in shell.last(tv)["text/html"], 3)
    updates = len(shell.updates(tv))
    assert updates <= elapsed / 0.3 + 3, (updates, elapsed)


def test_a_view_stops_when_collected(saxpy: Any, rng: np.random.Generator, shell: Outputs) -> None:
    tv = vw.TimingsView(min_interval=0.01)
    show(tv)
    display_id = tv.display_id
    ref = weakref.ref(tv)
    del tv
    settle()
    assert ref() is not None  # displayed: vknb keeps it (one of the last KEEP_LIVE shown)
    for _ in range(vw.KEEP_LIVE):  # shown after it: it is no longer kept
        show(vw.TimingsView(kernel="wt_none"))
    settle()
    assert ref() is None
    n = len(shell.pub.outputs)
    run_saxpy(saxpy, rng)
    time.sleep(0.3)
    assert not [o for o in shell.pub.outputs[n:] if o["transient"].get("display_id") == display_id]


def test_the_live_thread_ends_with_the_last_view(shell: Outputs) -> None:
    mon = vw.MemoryMonitor()
    show(mon)
    assert wait_for(lambda: any(t.name == "vknb-live" for t in __import__("threading").enumerate()))
    vw.close_all()
    import threading

    assert wait_for(lambda: not any(t.name == "vknb-live" for t in threading.enumerate()))


def test_nbconvert_shows_the_last_tables(dev: vknb.Device, saxpy: Any, rng: Any) -> None:
    """A saved notebook holds ordinary HTML outputs: nbconvert (and GitHub, and a reopened
    notebook) shows them as they last were, with no widget state."""
    import nbformat
    from nbconvert import HTMLExporter

    run_saxpy(saxpy, rng)
    views = [vw.DeviceExplorer(), vw.MemoryMonitor(dev), vw.TimingsView(live=False)]
    nb = nbformat.v4.new_notebook()
    for v in views:
        cell = nbformat.v4.new_code_cell("view")
        cell.outputs = [nbformat.v4.new_output("display_data", data=v._repr_mimebundle_())]
        nb.cells.append(cell)
    body, _ = HTMLExporter().from_notebook_node(nb)
    assert "Vulkan devices" in body and html.escape(dev.info.name) in body
    assert "compute limits" in body
    assert "vknb allocated" in body and "live buffer" in body
    assert "wt_saxpy" in body and "Dispatch timings" in body
    assert WIDGET_MIME not in body


def test_interactive_timings_view(saxpy: Any, scale: Any, rng: np.random.Generator) -> None:
    tv = vw.TimingsView(min_interval=0)
    box = tv.interactive()
    assert tv.interactive() is box and tv.live
    for _ in range(3):
        run_saxpy(saxpy, rng)
    run_scale(scale, rng)
    tv.update()
    assert {"all", "wt_saxpy", "wt_scale"} <= set(tv.kernel_filter.options)
    tv.kernel_filter.value = "wt_saxpy"  # the dropdown
    assert tv.kernel == "wt_saxpy" and {r.kernel for r in tv.records()} == {"wt_saxpy"}
    assert "wt_saxpy" in tv.table.value and "wt_scale" not in tv.table.value
    tv.last_box.value = 2
    assert len(tv.records()) == 2 and _plain(tv.table.value).count("<tr><td>") == 2
    tv.kind_select.value = "timeline"
    tv.plot_button.click()
    assert "<svg" in tv.plot_pane.value and tv.zoom_slider.layout.display == ""
    lo, hi = tv.zoom_slider.min, tv.zoom_slider.max
    tv.zoom_slider.value = (lo, (lo + hi) / 2)  # the slider zooms the timeline
    assert tv.zoom == (lo, pytest.approx((lo + hi) / 2))
    widgets = [tv.widget, tv.plot_pane, tv.zoom_slider]
    tv.close()
    settle()
    vw.close_all()
    assert all(w.comm is None for w in widgets)


# --- versions ------------------------------------------------------------------------------------


def test_versions_are_told_apart_and_compared(dev: vknb.Device, rng: np.random.Generator) -> None:
    v1 = vknb.compile(SAXPY, name="wt_edit")
    v2 = vknb.compile(SAXPY.replace("+= a * x[i]", "+= a * x[i] + 0.0"), name="wt_edit")
    assert v1.version != v2.version
    recs = [run_saxpy(v1, rng) for _ in range(3)] + [run_saxpy(v2, rng) for _ in range(4)]
    assert timing.versions("wt_edit") == [v1.version, v2.version]
    assert timing.is_warmup(recs[0]) and timing.is_warmup(recs[3])
    assert not any(timing.is_warmup(r) for r in recs[1:3] + recs[4:])
    rows = display.timings_summary(recs)
    assert [(s["label"], s["version"], s["count"], s["warmups"]) for s in rows] == [
        ("wt_edit (v1)", v1.version, 3, 1),
        ("wt_edit (v2)", v2.version, 4, 1),
    ]
    assert rows[1]["gpu_ms_median"] == statistics.median(r.gpu_ms for r in recs[3:])
    text = display.timings_summary_text(recs)
    assert "wt_edit (v1)" in text and "wt_edit (v2)" in text
    assert [row[1] for row in display.dispatch_rows(recs)] == ["wt_edit (v1)"] * 3 + [
        "wt_edit (v2)"
    ] * 4
    cmp = vw.compare("wt_edit", recs)
    assert [(r["label"], r["count"], r["warmups"]) for r in cmp.rows] == [
        ("wt_edit (v1)", 2, 1),
        ("wt_edit (v2)", 3, 1),
    ]
    base = statistics.median(r.gpu_ms for r in recs[1:3])
    assert cmp.rows[0]["speedup"] == 1.0
    assert cmp.rows[1]["speedup"] == pytest.approx(
        base / statistics.median(r.gpu_ms for r in recs[4:])
    )
    assert "2 versions" in repr(cmp) and "wt_edit (v2)" in cmp._repr_html_()
    fig = vw.plot_timings(recs, kind="dispatches")
    assert {ln.get_label() for ln in fig.axes[0].lines} >= {"wt_edit (v1)", "wt_edit (v2)"}


# --- plots ---------------------------------------------------------------------------------------


def test_histogram_edges_include_the_extremes() -> None:
    rng = np.random.default_rng(7)
    for trial in range(500):
        n = int(rng.integers(1, 200))
        kind = trial % 4
        if kind == 0:
            v = rng.lognormal(mean=-1.0, sigma=rng.uniform(0.1, 3.0), size=n)
        elif kind == 1:
            v = rng.uniform(1e-3, rng.uniform(1e-3, 100), size=n)
        elif kind == 2:
            v = np.round(rng.lognormal(size=n), 3) + 1e-3  # ties
        else:
            v = np.full(n, rng.uniform(0.01, 10))  # one value
        for log in (False, True):
            edges = plots.histogram_edges(list(v), int(rng.integers(1, 40)), log=log)
            counts, _ = np.histogram(v, edges)
            assert counts.sum() == len(v), (trial, log)
            assert edges[0] <= v.min() and edges[-1] >= v.max()
            assert np.all(np.diff(edges) >= 0)


def _records(gpu: list[float], name: str = "syn", version: str = "a") -> list[Any]:
    t = 1_000_000.0
    out = []
    for g in gpu:
        r = timing.DispatchRecord(
            name, (1, 1, 1), (64, 1, 1), None, g * 1.5, time=t, version=version
        )
        r.set_gpu(g, t, t + g * 1e-3)
        out.append(r)
        t += g * 2e-3
    return out


def test_histogram_counts_every_dispatch_and_shows_median_and_mean() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        gpu = list(rng.lognormal(0, 2.0, size=int(rng.integers(5, 60))))
        recs = _records(gpu)
        ax = vw.plot_timings(recs, kind="histogram").axes[0]
        heights = sum(p.get_height() for p in ax.patches)
        assert heights == len(gpu)  # the slowest dispatch is in a bin too
        xs = {round(float(ln.get_xdata()[0]), 9) for ln in ax.lines if len(ln.get_xdata()) == 2}
        assert round(statistics.median(gpu), 9) in xs and round(statistics.mean(gpu), 9) in xs
        assert {"median", "mean"} <= {t.get_text() for t in ax.get_legend().get_texts()}


def _tick_values(axis: Any) -> list[float]:
    lo, hi = axis.get_view_interval()
    return [t for t in axis.get_majorticklocs() if min(lo, hi) <= t <= max(lo, hi)]


def test_integer_axes_have_integer_ticks() -> None:
    recs = _records([0.5, 0.6, 0.55, 0.7])
    fig = vw.plot_timings(recs, kind="all")
    plots.figure_bytes(fig)  # draw: ticks are placed
    dispatches, histogram = fig.axes[1], fig.axes[2]
    for values in (_tick_values(dispatches.xaxis), _tick_values(histogram.yaxis)):
        assert values and all(float(v).is_integer() for v in values), values


def test_log_axes_are_labelled_readably() -> None:
    # One cold call 200x the rest must not switch the steady dispatches to a log axis.
    cold = _records([40.0, 0.2, 0.21, 0.19, 0.2, 0.22])
    for r in cold:
        timing.record(r)  # the first of this version: the warm-up
    ax = vw.plot_timings(cold, kind="dispatches").axes[0]
    assert ax.get_yscale() == "linear"
    assert "warm-up" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("40 ms" in t.get_text() for t in ax.texts)  # clipped at the top, value printed
    # A spread over two decades: a label at each decade and at 2 and 5 of each.
    wide = _records([0.1, 0.3, 1.0, 2.5, 8.0, 0.15, 0.4], version="b")
    ax = vw.plot_timings(wide, kind="dispatches").axes[0]
    assert ax.get_yscale() == "log"
    plots.figure_bytes(ax.figure)
    labels = [t.get_text() for t in ax.yaxis.get_ticklabels(which="both") if t.get_text()]
    assert {"0.1", "1"} <= set(labels) and {"0.2", "0.5", "2", "5"} <= set(labels), labels
    assert not any("$" in s or "^" in s for s in labels)


def test_last_is_honoured_by_every_kind() -> None:
    recs = _records([0.1 * (i + 1) for i in range(10)], name="last_k")
    for kind in ("timeline", "dispatches", "histogram", "overhead"):
        ax = vw.plot_timings(recs, kind=kind, last=3).axes[0]
        if kind == "timeline":
            assert len(ax.patches) == 3
        elif kind == "dispatches":
            ys = [y for ln in ax.lines for y in ln.get_ydata() if not math.isnan(y)]
            assert sorted(ys) == pytest.approx([0.8, 0.9, 1.0])
        elif kind == "histogram":
            assert sum(p.get_height() for p in ax.patches) == 3
        else:
            (bar, _over) = ax.patches[:2]
            assert bar.get_width() == pytest.approx(0.9)  # the median of the last 3
    fig = vw.plot_timings(recs, kind="all", last=0)
    assert all("no dispatches yet" in [t.get_text() for t in ax.texts] for ax in fig.axes)
    with pytest.raises(ValueError, match="last"):
        vw.plot_timings(recs, last=-1)


def test_timeline_bars_on_a_real_time_axis(saxpy: Any, rng: np.random.Generator) -> None:
    # Overlapping calls (as asynchronous calls and batches run) get rows of their own.
    a, b, c = _records([1.0, 1.0, 1.0], name="lane")
    b.set_gpu(1.0, a.gpu_start + 0.0005, a.gpu_start + 0.0015)  # overlaps a
    c.set_gpu(1.0, a.gpu_end + 0.002, a.gpu_end + 0.003)  # after both
    rows = plots.timeline_rows([a, b, c])
    assert [r["row"] for r in rows] == [0, 1, 0]
    assert all(r["lane"] == 0 and r["gpu"] and r["calibrated"] for r in rows)
    # Real dispatches, synchronous and asynchronous: bars in time order, from gpu_start.
    n = 4096
    x, ys = rng.random(n, dtype=np.float32), [np.zeros(n, np.float32) for _ in range(3)]
    recs = [saxpy(x, ys[0], a=1.0, grid=n)]
    subs = [saxpy(x, y, a=1.0, grid=n, wait=False) for y in ys[1:]]
    recs += [s.wait() for s in subs]
    for r in recs:
        assert r.gpu_start is not None and r.gpu_start <= r.gpu_end
    ax = vw.plot_timings(recs, kind="timeline").axes[0]
    t0 = min(r.gpu_start for r in recs)
    lefts = sorted(p.get_x() for p in ax.patches)
    assert lefts == pytest.approx(sorted((r.gpu_start - t0) * 1e3 for r in recs), abs=1e-6)
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == pytest.approx(sorted((r.gpu_end - r.gpu_start) * 1e3 for r in recs), abs=1e-6)
    assert "time since the first dispatch (ms)" == ax.get_xlabel()


def test_plots_follow_the_theme(saxpy: Any, scale: Any, rng: np.random.Generator) -> None:
    import io

    from PIL import Image

    recs = [run_saxpy(saxpy, rng) for _ in range(4)] + [run_scale(scale, rng) for _ in range(3)]
    fig = vw.plot_timings(recs)
    assert type(fig) is vw.TimingsFigure and len(fig.axes) == 4
    svg = vw.figure_bytes(fig, "svg").decode()
    assert svg.startswith("<svg") and "currentColor" in svg
    assert plots.INK.lower() not in svg.lower() and "<metadata" not in svg
    png = vw.figure_bytes(fig, "png")
    assert png.startswith(PNG)
    img = np.array(Image.open(io.BytesIO(png)).convert("RGBA"))
    assert img[0, 0, 3] == 0 and img[-1, -1, 3] == 0  # transparent background
    ink = np.array([int(plots.INK[i : i + 2], 16) for i in (1, 3, 5)])
    assert not np.any(np.all(img[..., :3] == ink, axis=-1) & (img[..., 3] > 0))  # recoloured
    dark = np.all(img[..., :3] < 40, axis=-1) & (img[..., 3] > 128)
    assert dark.mean() < 0.001  # no black text to vanish on a dark theme (hatching on bars)
    bundle = fig._repr_mimebundle_()
    assert bundle["image/png"].startswith(PNG)
    page = bundle["text/html"]
    assert_robust_html(page)
    assert "<svg" in page and '<foreignObject width="0" height="0"><img' in page
    assert "data:image/png;base64," in page  # what a sanitizer that strips <svg> leaves


def test_plot_kinds_and_fallbacks(saxpy: Any, scale: Any, rng: np.random.Generator) -> None:
    from IPython.display import SVG, Image

    recs = [run_saxpy(saxpy, rng) for _ in range(4)] + [run_scale(scale, rng) for _ in range(3)]
    for kind, n_axes in (
        ("timeline", 1),
        ("dispatches", 1),
        ("histogram", 1),
        ("overhead", 1),
        ("all", 4),
    ):
        fig = vw.plot_timings(recs, kind=kind)
        assert len(fig.axes) == n_axes
        assert vw.figure_bytes(fig).startswith(PNG)
    over = vw.plot_timings(recs, kind="overhead").axes[0]
    assert [t.get_text() for t in over.get_yticklabels()] == ["wt_saxpy", "wt_scale"]
    only = vw.plot_timings(recs, kind="dispatches", kernel="wt_scale")
    labels = [ln.get_label() for ln in only.axes[0].lines]
    assert [x for x in labels if not x.startswith("_")][:1] == ["wt_scale"]
    with pytest.raises(ValueError, match="kind"):
        vw.plot_timings(recs, kind="pie")
    tv = vw.TimingsView(kernel="wt_scale", live=False)
    assert isinstance(tv.plot("histogram"), Image) and tv.plot("histogram").data.startswith(PNG)
    assert isinstance(tv.plot(fmt="svg"), SVG)
    with pytest.raises(ValueError, match="fmt"):
        tv.plot(fmt="gif")
    # A queue without timestamps: host times, and the axes say so.
    host_only = [timing.DispatchRecord("h", (1, 1, 1), (1, 1, 1), None, 0.5 + i) for i in range(3)]
    ax = vw.plot_timings(host_only, kind="dispatches").axes[0]
    assert ax.get_ylabel() == "host ms"
    assert [y for ln in ax.lines for y in ln.get_ydata()][:3] == [0.5, 1.5, 2.5]
    assert vw.plot_timings(host_only, kind="timeline").axes[0].get_title().startswith("host")


def test_one_summary_one_plot_module(saxpy: Any, scale: Any, rng: np.random.Generator) -> None:
    assert vw.plot_timings is plots.plot_timings and vw.figure_bytes is plots.figure_bytes
    assert vw.summary_rows is display.timings_summary
    assert vw.dispatch_rows is display.dispatch_rows
    recs = [run_saxpy(saxpy, rng) for _ in range(3)] + [run_scale(scale, rng) for _ in range(2)]
    sax, sca = display.timings_summary(recs)
    gpu = [r.gpu_ms for r in recs[:3]]
    assert (sax["kernel"], sax["count"], sca["kernel"], sca["count"]) == (
        "wt_saxpy",
        3,
        "wt_scale",
        2,
    )
    assert sax["gpu_ms_total"] == pytest.approx(sum(gpu))
    assert sax["gpu_ms_median"] == statistics.median(gpu)
    assert (sax["gpu_ms_min"], sax["gpu_ms_max"]) == (min(gpu), max(gpu))
    report = display.timings_report_text(recs)
    assert display.timings_summary_text(recs) in report and display.timings_text(recs) in report
    assert display.timings_report_text(recs[:1]).startswith("1 dispatch recorded")


def test_plurals() -> None:
    assert [display.plural(n, "dispatch") for n in (0, 1, 2)] == [
        "0 dispatches",
        "1 dispatch",
        "2 dispatches",
    ]
    assert display.plural(1, "live buffer") == "1 live buffer"
    assert display.plural(3, "entry") == "3 entries" and display.plural(2, "key") == "2 keys"
