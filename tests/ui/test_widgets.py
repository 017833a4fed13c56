"""The widgets against the real device: content, every control through its traits, the
auto-refresh thread, live timing updates, weak references, plots and the text/HTML fallbacks."""

from __future__ import annotations

import gc
import html
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

import numpy as np
import pytest

import vknb
from vknb import display, timing
from vknb import widgets as vw

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
    """Table HTML without the inline left-alignment (JupyterLab would right-align cells)."""
    return html_.replace(" style='text-align:left'", "")


def settle() -> None:
    for _ in range(3):
        gc.collect()


def test_import_is_cheap() -> None:
    code = (
        "import sys, vknb.widgets; "
        "print([m for m in ('ipywidgets', 'matplotlib', 'IPython') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- device explorer -------------------------------------------------------------------------


def test_device_explorer_rows_and_table(dev: vknb.Device) -> None:
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
        assert (r["score_type"], r["score_memory"]) == (
            d.score_parts["type"],
            d.score_parts["memory"],
        )
        assert r["total_memory"] == d.total_memory
        assert r["session"] == (d.index == dev.index)
    table = ex.table.value
    assert "score (type+mem)" in table
    for d in infos:
        assert html.escape(d.name) in table
        assert f"{d.score} ({d.score_parts['type']}+{d.score_parts['memory']})" in table
        assert display.fmt_bytes(d.total_memory) in table
    # The session device: bold row, '*' mark, and why it was chosen.
    assert f"<tr style='font-weight:bold'><td>*{dev.index}</td>" in _plain(table)
    assert html.escape(dev.reason) in table
    assert f"*{dev.index}" in ex.text()
    assert ex.select.value == dev.index
    ex.close()


def test_device_explorer_selection_shows_details(dev: vknb.Device) -> None:
    ex = vw.DeviceExplorer()
    for d in vknb.devices():
        ex.select.value = d.index  # what the dropdown does in the browser
        pane = ex.details_pane.value
        lim = d.limits
        assert f"Device {d.index}: {html.escape(d.name)}" in pane
        for section in (
            "compute limits",
            "timestamps",
            "features",
            "memory heaps",
            "memory types",
            "queue families",
            "extensions",
            "score",
        ):
            assert f"<b>{section}</b>" in pane
        assert " x ".join(map(str, lim["max_workgroup_size"])) in pane
        assert " x ".join(map(str, lim["max_workgroup_count"])) in pane
        assert f"<td style='padding:0'>{lim['max_workgroup_invocations']}</td>" in pane
        assert display.fmt_bytes(lim["max_shared_memory"]) in pane
        assert f"<td style='padding:0'>{lim['subgroup_size']}</td>" in pane
        assert ", ".join(lim["subgroup_operations"]) in pane
        assert f"{lim['timestamp_period_ns']:g} ns" in pane
        for h in d.heaps:
            assert f"heap {h.index}" in pane and display.fmt_bytes(h.size) in pane
        for t in d.memory_types:
            assert f"heap {t.heap}: {', '.join(t.flag_names) or '(no flags)'}" in pane
        for q in d.queue_families:
            assert ", ".join(q.capabilities) in pane
        for e in d.notable_extensions:
            assert e in pane
        feats = dict(ex.details()["features"])
        assert feats["float64"] == ("yes" if d.features["float64"] else "no")
        assert feats["int64"] == ("yes" if d.features["int64"] else "no")
        assert feats["float16"] == ("yes" if d.features["float16"] else "no")
        assert feats["8-bit storage"] == ("yes" if d.features["storage_8bit"] else "no")
        assert feats["16-bit storage"] == ("yes" if d.features["storage_16bit"] else "no")
        assert feats["int64 atomics"] == ("yes" if d.features["atomic_int64"] else "no")
        score = dict(ex.details(d.index)["score"])
        assert score["total"] == str(d.score)
        assert score["type bonus"].startswith(f"+{d.score_parts['type']} ")
        assert score["memory bonus"].startswith(f"+{d.score_parts['memory']} ")
        assert ex.details() == display.device_details(d)
        assert display.device_details_text(d) in ex.text()
    ex.close()


def test_device_explorer_use_button(dev: vknb.Device) -> None:
    # On a one-device machine vknb.use(i) is idempotent: the button keeps the session device.
    ex = vw.DeviceExplorer()
    ex.select.value = dev.index
    ex.use_button.click()
    assert vknb.device() is dev
    assert html.escape(dev.info.name) in ex.status.value
    assert "color:#080" in ex.status.value  # success, not an error
    assert ex.use_button.button_style == "success"
    assert f"<td>*{dev.index}</td>" in _plain(ex.table.value)
    assert [r["index"] for r in ex.rows() if r["session"]] == [dev.index]
    assert ex.use() is dev
    ex.close()


def test_fallbacks_mimebundle_and_ipython_formatter(dev: vknb.Device) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    ex = vw.DeviceExplorer()
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"}
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id
    assert "score (type+mem)" in bundle["text/plain"] and dev.info.name in bundle["text/plain"]
    assert (
        html.escape(dev.info.name) in bundle["text/html"]
        and "compute limits" in bundle["text/html"]
    )
    # The real IPython display machinery picks the same three.
    data, _md = InteractiveShell.instance().display_formatter.format(ex)
    assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(data)
    assert ex._repr_html_() == bundle["text/html"]
    assert repr(ex).startswith("<vknb.widgets.DeviceExplorer:")
    ex.close()
    assert ex.closed
    # A closed view still renders its fallbacks, without the widget view.
    assert "application/vnd.jupyter.widget-view+json" not in ex._repr_mimebundle_()


def test_nbconvert_shows_the_html_table(dev: vknb.Device, saxpy: Any, rng: Any) -> None:
    """Where no widget state is saved (nbconvert, nbval), the HTML fallback is what shows."""
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
    assert "application/vnd.jupyter.widget-view+json" not in body
    for v in views:
        v.close()


# --- memory monitor --------------------------------------------------------------------------


def test_memory_monitor_content_and_refresh(
    dev: vknb.Device, no_leaks: None, rng: np.random.Generator
) -> None:
    mon = vw.MemoryMonitor(dev)
    assert mon.device is dev
    heaps = mon.rows()
    assert [(h["index"], h["size"], h["device_local"]) for h in heaps] == [
        (h.index, h.size, h.device_local) for h in dev.info.heaps
    ]
    for h in dev.info.heaps:
        assert f"<td>{display.fmt_bytes(h.size)}</td>" in _plain(mon.pane.value)
    assert "vknb used" in mon.pane.value and "class='vknb-bar'" in mon.pane.value
    before = dev.memory_stats()
    shown = mon.pane.value

    data = rng.random(1 << 18, dtype=np.float32)  # 1 MiB
    arr = vknb.asarray(data)
    assert mon.pane.value == shown  # nothing changes until a refresh
    n = mon.refreshes
    mon.refresh_button.click()
    assert mon.refreshes == n + 1
    now = dev.memory_stats()
    assert now.used >= before.used + arr.nbytes
    assert now.buffers == before.buffers + 1
    pane = mon.pane.value
    buffers = f"{now.buffers} live buffer" + ("s" if now.buffers != 1 else "")
    blocks = f"{now.blocks} block" + ("s" if now.blocks != 1 else "")
    assert f"{display.fmt_bytes(now.used)} used by {buffers}" in pane
    assert f"{display.fmt_bytes(now.allocated)} allocated in {blocks}" in pane
    heap = next(h for h in now.heaps if h.used)
    assert f"<td>{display.fmt_bytes(heap.used)}</td>" in _plain(pane)
    assert sum(h["used"] for h in mon.rows()) == now.used
    text = mon.text()
    assert "vknb allocated" in text and f"used by {buffers}" in text
    np.testing.assert_array_equal(arr.numpy(), data)

    arr.close()
    mon.refresh()
    after = dev.memory_stats()
    assert after.used == before.used
    assert f"used by {before.buffers} live buffer" in mon.pane.value
    mon.close()


def test_memory_monitor_follows_the_session_device(dev: vknb.Device) -> None:
    mon = vw.MemoryMonitor()
    assert mon.device is vknb.device()
    assert html.escape(vknb.device().info.name) in mon.pane.value
    assert repr(mon).startswith("<vknb.widgets.MemoryMonitor Device(")
    mon.close()


def test_memory_monitor_auto_refresh_while_dispatching(
    dev: vknb.Device, saxpy: Any, rng: np.random.Generator
) -> None:
    mon = vw.MemoryMonitor(dev)
    mon.interval.value = 0.05
    seen: list[str] = []
    mon.pane.observe(lambda c: seen.append(c["new"]), names="value")
    mon.auto.value = True  # the toggle in the browser
    assert mon.running
    n0 = mon.refreshes
    t_min, t_max = time.monotonic() + 0.5, time.monotonic() + 10
    keep = []
    # The kernel keeps working (correctly: run_saxpy checks) while the thread refreshes.
    while time.monotonic() < t_min or (mon.refreshes - n0 < 3 and time.monotonic() < t_max):
        run_saxpy(saxpy, rng, n=4096)
        keep.append(vknb.asarray(rng.random(1024, dtype=np.float32)))
    assert mon.refreshes - n0 >= 3
    assert len(set(seen)) >= 2  # it saw the buffers come
    mon.auto.value = False
    assert not mon.running
    n1 = mon.refreshes
    time.sleep(0.2)
    assert mon.refreshes == n1
    assert not [t for t in threading.enumerate() if t.name == "vknb-memory-monitor"]
    # The same through the methods.
    mon.start(0.05)
    assert mon.running and mon.auto.value
    time.sleep(0.2)
    assert mon.refreshes > n1
    mon.stop()
    assert not mon.running and not mon.auto.value
    with pytest.raises(ValueError, match="interval_s"):
        mon.start(0)
    del keep
    mon.close()


def test_memory_monitor_holds_its_device_weakly(dev: vknb.Device) -> None:
    d = vknb.Device(dev.index)
    mon = vw.MemoryMonitor(d, interval=0.05)
    assert mon.running and html.escape(d.info.name) in mon.pane.value
    d.close()
    time.sleep(0.2)  # the thread refreshes: the device has gone
    assert mon.device is None
    assert "device closed" in mon.pane.value and "device closed" in mon.text()
    assert mon.running
    ref = weakref.ref(d)
    del d
    settle()
    assert ref() is None  # the monitor (and its thread) did not keep it alive
    mon.refresh_button.click()
    assert "device closed" in mon.pane.value
    mon.close()
    assert not mon.running


def test_memory_monitor_collected_stops_its_thread(dev: vknb.Device) -> None:
    mon = vw.MemoryMonitor(dev, interval=0.05)
    thread, pane = mon._thread, mon.pane
    assert thread is not None and thread.is_alive()
    assert not any(isinstance(c, vw._View) for c in dev._children)
    ref = weakref.ref(mon)
    del mon
    settle()
    assert ref() is None  # neither the device, the widgets nor the thread hold it
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert pane.comm is None  # its widgets were closed with it


# --- timings ---------------------------------------------------------------------------------


def test_timings_view_live_table_filter_and_plot(
    saxpy: Any, scale: Any, rng: np.random.Generator
) -> None:
    tv = vw.TimingsView(min_interval=0)
    assert tv.live
    n0 = tv.renders
    recs = [run_saxpy(saxpy, rng) for _ in range(3)] + [run_scale(scale, rng) for _ in range(2)]
    assert tv.renders >= n0 + 5  # one render per dispatch, from the listener
    assert {"all", "wt_saxpy", "wt_scale"} <= set(tv.kernel_filter.options)
    table = tv.table.value
    for r in recs:
        assert f"<td>{r.gpu_ms:.3f}</td>" in _plain(table)
        assert f"<td>{r.host_ms:.3f}</td>" in _plain(table)
    last = recs[-1]
    assert tv.records()[-1] is last
    assert f"<td>{'x'.join(map(str, last.groups))}</td><td>32x1x1</td>" in _plain(table)
    sax = recs[0]
    assert sax.bandwidth_gbs is not None
    assert f"<td>{sax.bandwidth_gbs:.2f}</td>" in _plain(table)  # achieved bandwidth
    assert f"<td>{display.fmt_bytes(sax.bytes_in)}</td>" in _plain(table)

    tv.kernel_filter.value = "wt_saxpy"  # the dropdown
    assert tv.kernel == "wt_saxpy"
    assert {r.kernel for r in tv.records()} == {"wt_saxpy"}
    assert "wt_saxpy" in tv.table.value and "wt_scale" not in tv.table.value
    (summary,) = tv.summary()
    assert summary["count"] == len(vknb.timings(kernel="wt_saxpy"))
    assert f"<td>wt_saxpy</td><td>{summary['count']}</td>" in _plain(tv.summary_pane.value)
    assert "kernel wt_saxpy" in tv.text() and "wt_scale" not in tv.text()

    tv.kernel_filter.value = "wt_scale"
    assert "wt_scale" in tv.table.value and "wt_saxpy" not in tv.table.value
    tv.kernel_filter.value = "all"
    tv.last.value = 2
    assert len(tv.records()) == 2 and _plain(tv.table.value).count("<tr><td>") == 2
    assert "Last 2 dispatches" in tv.table.value

    # A dispatch of the filtered-out kernel still adds to the choices, keeping the selection.
    tv.kernel_filter.value = "wt_scale"
    other = vknb.compile(SCALE, name="wt_other")
    run_scale(other, rng)
    assert "wt_other" in tv.kernel_filter.options and tv.kernel_filter.value == "wt_scale"

    n = tv.renders
    tv.refresh_button.click()
    assert tv.renders == n + 1
    assert tv.image.layout.display == "none"
    tv.plot_button.click()
    assert bytes(tv.image.value).startswith(PNG) and tv.image.layout.display == ""
    tv.close()
    assert not tv.live


def test_timings_view_throttles_and_catches_up(saxpy: Any, rng: np.random.Generator) -> None:
    tv = vw.TimingsView(kernel="wt_saxpy", min_interval=0.3)
    n0 = tv.renders
    for _ in range(15):
        run_saxpy(saxpy, rng, n=256)
    assert tv.renders - n0 < 15  # not one render per dispatch
    time.sleep(0.6)  # the trailing update arrives
    count = len(vknb.timings(kernel="wt_saxpy"))
    assert f"<td>wt_saxpy</td><td>{count}</td>" in _plain(tv.summary_pane.value)
    tv.close()


def test_timings_view_listener_is_weak_and_removed(saxpy: Any, rng: np.random.Generator) -> None:
    tv = vw.TimingsView(min_interval=0)
    listener = tv._listener
    assert listener in timing._listeners
    table = tv.table
    ref = weakref.ref(tv)
    del tv
    settle()
    assert ref() is None  # the listener and the widgets hold the view only weakly
    assert listener not in timing._listeners
    assert table.comm is None
    run_saxpy(saxpy, rng)  # no view left to tell, nothing breaks

    tv = vw.TimingsView(min_interval=0)
    tv.close()
    assert tv._listener is None and not tv.live
    n = tv.renders
    run_saxpy(saxpy, rng)
    assert tv.renders == n  # closed: no more updates


def test_timings_view_fallbacks(saxpy: Any, rng: np.random.Generator) -> None:
    rec = run_saxpy(saxpy, rng)
    tv = vw.TimingsView(kernel="wt_saxpy", last=3, live=False)
    assert not tv.live
    bundle = tv._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    text = bundle["text/plain"]
    assert text.startswith("Dispatch timings (kernel wt_saxpy, last 3")
    assert f"{rec.gpu_ms:.3f}" in text and "GB/s" in text
    assert "Last 3 dispatches" in bundle["text/html"]
    assert "wt_saxpy" in repr(tv)
    tv.close()
    vknb_empty = vw.TimingsView(kernel="wt_never_ran", live=False)
    assert "no dispatches yet" in vknb_empty.text() and "no dispatches yet" in vknb_empty.html()
    vknb_empty.close()


def test_plot_timings(saxpy: Any, scale: Any, rng: np.random.Generator) -> None:
    from IPython.display import SVG, Image

    recs = [run_saxpy(saxpy, rng) for _ in range(4)] + [run_scale(scale, rng) for _ in range(3)]
    for kind, n_axes in (("timeline", 1), ("histogram", 1), ("overhead", 1), ("all", 3)):
        fig = vw.plot_timings(recs, kind=kind)
        assert len(fig.axes) == n_axes
        assert vw.figure_bytes(fig).startswith(PNG)
    fig = vw.plot_timings(recs, kind="timeline")
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in fig.axes[0].lines}
    assert lines["wt_saxpy"] == [r.gpu_ms for r in recs[:4]]
    assert lines["wt_scale"] == [r.gpu_ms for r in recs[4:]]
    assert fig._repr_png_().startswith(PNG)  # shows as a static image in any front end
    assert vw.figure_bytes(fig, "svg").lstrip().startswith(b"<?xml")
    over = vw.plot_timings(recs, kind="overhead").axes[0]
    assert [t.get_text() for t in over.get_yticklabels()] == ["wt_saxpy", "wt_scale"]
    only = vw.plot_timings(recs, kind="timeline", kernel="wt_scale")
    assert [ln.get_label() for ln in only.axes[0].lines] == ["wt_scale"]
    empty = vw.plot_timings([], kind="all")
    assert all("no dispatches yet" in [t.get_text() for t in ax.texts] for ax in empty.axes)
    with pytest.raises(ValueError, match="kind"):
        vw.plot_timings(recs, kind="pie")

    tv = vw.TimingsView(kernel="wt_scale", live=False)
    img = tv.plot("histogram")
    assert isinstance(img, Image) and img.data.startswith(PNG)
    assert isinstance(tv.plot(fmt="svg"), SVG)
    with pytest.raises(ValueError, match="fmt"):
        tv.plot(fmt="gif")
    tv.close()


def test_one_summary_one_plot_module(saxpy: Any, scale: Any, rng: np.random.Generator) -> None:
    from vknb.ui import plots

    assert vw.plot_timings is plots.plot_timings and vw.figure_bytes is plots.figure_bytes
    assert vw.summary_rows is display.timings_summary
    assert vw.dispatch_rows is display.dispatch_rows
    recs = [run_saxpy(saxpy, rng) for _ in range(3)] + [run_scale(scale, rng) for _ in range(2)]
    sax, sca = display.timings_summary(recs)
    gpu = [r.gpu_ms for r in recs[:3]]
    bw = [r.bandwidth_gbs for r in recs[:3]]
    assert (sax["kernel"], sax["count"], sca["kernel"], sca["count"]) == (
        "wt_saxpy",
        3,
        "wt_scale",
        2,
    )
    assert sax["gpu_ms_total"] == pytest.approx(sum(gpu))
    assert (sax["gpu_ms_min"], sax["gpu_ms_max"]) == (min(gpu), max(gpu))
    assert sax["host_ms_mean"] == pytest.approx(sum(r.host_ms for r in recs[:3]) / 3)
    assert sax["bandwidth_gbs"] == pytest.approx(sum(bw) / 3)
    # The %vknb report and the widget render the same tables.
    report = display.timings_report_text(recs)
    assert display.timings_summary_text(recs) in report and display.timings_text(recs) in report
    assert report.count("wt_saxpy") == 1 + 3
    fig = vw.plot_timings(recs)
    assert type(fig) is vw.TimingsFigure and len(fig.axes) == 3
    # A queue without timestamps: the timeline shows host times, and says so.
    host_only = [timing.DispatchRecord("h", (1, 1, 1), (1, 1, 1), None, 0.5 + i) for i in range(3)]
    ax = vw.plot_timings(host_only, kind="timeline").axes[0]
    assert ax.get_ylabel() == "host ms" and list(ax.lines[0].get_ydata()) == [0.5, 1.5, 2.5]


def test_a_displayed_view_lives_until_closed(saxpy: Any, rng: np.random.Generator) -> None:
    """``display(TimingsView())`` (as ``%vknb timings`` does) keeps no Python reference: the view
    must live as long as its widget model does, and go once closed."""
    from IPython.core.interactiveshell import InteractiveShell

    tv = vw.TimingsView(min_interval=0)
    InteractiveShell.instance().display_formatter.format(tv)  # what display() does
    ref = weakref.ref(tv)
    del tv
    settle()
    view = ref()
    assert view is not None and view.live
    n = view.renders
    run_saxpy(saxpy, rng)
    assert view.renders == n + 1  # still updating live
    view.close()
    del view
    settle()
    assert ref() is None


def test_memory_views_show_the_recycle_cache(dev):
    from vknb import display

    big = vknb.empty(3 * dev.allocator.block_size // 8, np.float32)  # 1.5 blocks: dedicated
    big.close()
    s = dev.memory_stats()
    assert s.cached > 0
    note = f"{display.fmt_bytes(s.cached)} of it kept for reuse"
    assert note in display.memory_text(dev)
    assert note in display.memory_html(dev)
    assert note in display.memory_stats_html(s)
    mon = vw.MemoryMonitor(dev)
    assert mon.text() == display.memory_text(dev)  # one renderer for the widget and %vknb memory
    mon.close()
    dev.trim()
    assert "kept for reuse" not in display.memory_text(dev)
