"""ipywidgets that show what the GPU is and what it is doing: devices, memory, dispatch timings.

Each widget is a thin view over the public API (:func:`vknb.devices`,
:meth:`Device.memory_stats`, :func:`vknb.timings`).  The object you get wraps an ipywidgets
container (its ``.widget``); displaying it shows the live widget in JupyterLab, Notebook 7 and
VS Code, and a readable HTML table (``text/html``) or text table (``text/plain``) where widgets
cannot render (nbconvert, plain IPython).  The content is computed by plain methods (``rows()``,
``details()``, ``html()``, ``text()``) so scripts and tests can read it without a browser.

Widgets hold only weak references to devices: showing a memory monitor never keeps a device
alive, and a closed device shows as "device closed".

The tables are :mod:`vknb.display`'s renderers and the plots :mod:`vknb.ui.plots`'s;
``summary_rows``, ``dispatch_rows``, ``plot_timings`` and ``figure_bytes`` here are those
functions, under the names this module has always offered them.

``import vknb.widgets`` is cheap: ipywidgets and matplotlib are imported by the constructors.

Example
-------
>>> from vknb.ui.widgets import DeviceExplorer, MemoryMonitor, TimingsView, plot_timings
>>> DeviceExplorer()                                         # doctest: +SKIP
>>> MemoryMonitor()                                          # doctest: +SKIP
>>> TimingsView()                                            # doctest: +SKIP
>>> plot_timings(kind="all")                                 # doctest: +SKIP
"""

from __future__ import annotations

import html as _html
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..compute import timing as _timing
from . import display as _display
from .display import dispatch_rows
from .display import timings_summary as summary_rows
from .plots import PLOT_KINDS as PLOT_KINDS  # the kinds plot_timings takes
from .plots import figure_bytes, figure_image, plot_timings

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..compute.timing import DispatchRecord
    from ..core.device import Device
    from ..core.instance import DeviceInfo
    from ..core.memory import MemoryStats

__all__ = [
    "DeviceExplorer",
    "MemoryMonitor",
    "TimingsView",
    "dispatch_rows",
    "figure_bytes",
    "plot_timings",
    "summary_rows",
]

log = logging.getLogger("vknb")


def _esc(s: Any) -> str:
    return _html.escape(str(s))


# Widget HTML panes are not styled like notebook outputs: give vknb's tables some air.
_CSS = (
    "<style>.vknb-w table.vknb{border-collapse:collapse;margin:2px 0 6px 0}"
    ".vknb-w table.vknb th,.vknb-w table.vknb td{padding:1px 12px 1px 0;text-align:left;"
    "vertical-align:top;white-space:nowrap}"
    ".vknb-w table.vknb thead th{border-bottom:1px solid #aaa}</style>"
)


def _pane(html: str) -> str:
    """HTML for a widget pane or a fallback: vknb's table style around ``html``."""
    return f"{_CSS}<div class='vknb-w'>{html}</div>"


def _weak(method: Callable[..., Any]) -> Callable[..., Any]:
    """A callback that holds its object weakly: registering it on an ipywidget (which lives in
    ipywidgets' registry until closed) does not keep the vknb view alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        m = ref()
        return None if m is None else m(*args, **kwargs)

    return call


def _walk(w: Any) -> list[Any]:
    out = [w]
    for c in getattr(w, "children", ()):
        out.extend(_walk(c))
    return out


def _close_widgets(widgets: tuple[Any, ...]) -> None:
    for w in widgets:
        try:
            w.close()
        except Exception:  # pragma: no cover - never raise from cleanup
            log.debug("closing %r failed", w, exc_info=True)


class _View:
    """Common plumbing: the live widget, its HTML and text fallbacks, and its lifetime.

    Controls call back through weak references, so an undisplayed view is freed like any Python
    object (closing its widgets).  Once displayed, the view lives as long as its widget model
    (ipywidgets keeps models until they are closed): :meth:`close` ends it.
    """

    widget: Any

    def _setup(self, widget: Any) -> None:
        self.widget = widget
        self._widgets = tuple(_walk(widget))
        self._closer = weakref.finalize(self, _close_widgets, self._widgets)

    def html(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # The widget view where a front end renders widgets; the HTML table where it does not
        # (nbconvert drops a widget view whose state was not saved); the text table in a terminal.
        data: dict[str, Any] = {"text/plain": self.text(), "text/html": _pane(self.html())}
        if self._closer.alive:
            self.widget._vknb_view = self  # displayed: live as long as the widget model
            for mime, value in self.widget._repr_mimebundle_().items():
                if mime != "text/plain":
                    data[mime] = value
        return data

    def _repr_html_(self) -> str:
        return _pane(self.html())

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return not self._closer.alive

    def close(self) -> None:
        """Close the widget and every control in it (the front end removes their views)."""
        self.widget._vknb_view = None
        self._closer()


# --- device explorer -------------------------------------------------------------------------


def _session_index() -> int | None:
    """The session device's index, without creating one."""
    from ..core.session import current_device

    d = current_device()
    return d.index if d is not None else None


class DeviceExplorer(_View):
    """Every Vulkan device with its score, and the details of the selected one.

    A table with one row per physical device (name, type, vendor, driver, API version,
    device-local memory, score = type bonus + memory bonus; the session device marked ``*``), a
    device selector (``.select``), the selected device's details (``.details_pane``: compute
    limits, timestamps, memory heaps and types, queue families, features, notable extensions)
    and a button (``.use_button``) that makes the selected device the session device.

    Parameters
    ----------
    index : int, optional
        The device selected first (default: the session device, or the one vknb would choose).

    Example
    -------
    >>> ex = vknb.widgets.DeviceExplorer()
    >>> ex.rows()[0]["score"] == ex.rows()[0]["score_type"] + ex.rows()[0]["score_memory"]
    True
    >>> ex.select.value = 0; ex.use_button.click()               # same as vknb.use(0)
    """

    def __init__(self, index: int | None = None) -> None:
        import ipywidgets as W

        from ..core.instance import devices, select_device_index

        self.infos: list[DeviceInfo] = devices()
        if index is None:
            index = _session_index()
        if index is None and self.infos:
            try:
                index = select_device_index(self.infos)[0]
            except Exception:  # a bad VKNB_DEVICE: the explorer is where one looks for the fix
                index = 0
        self.table = W.HTML()
        self.select = W.Dropdown(
            options=[(f"{d.index}: {d.name}", d.index) for d in self.infos],
            value=index,
            description="Device",
            layout=W.Layout(width="max-content"),
        )
        self.use_button = W.Button(
            description="Use this device",
            tooltip="vknb.use(index): make the selected device the session device",
            icon="check",
        )
        self.status = W.HTML()
        self.details_pane = W.HTML()
        self._setup(
            W.VBox(
                [self.table, W.HBox([self.select, self.use_button, self.status]), self.details_pane]
            )
        )
        self.select.observe(_weak(self._on_select), names="value")
        self.use_button.on_click(_weak(self._on_use))
        self.refresh()

    # -- data -------------------------------------------------------------------------------

    @property
    def selected(self) -> int | None:
        """Index of the selected device."""
        return self.select.value

    def rows(self) -> list[dict[str, Any]]:
        """One dict per device: index, name, type, vendor, driver, api_version, total_memory,
        score, score_type, score_memory, session (whether it is the session device).

        Example
        -------
        >>> [r["name"] for r in DeviceExplorer().rows() if r["session"]]  # doctest: +SKIP
        ['llvmpipe (LLVM 15.0.6, 256 bits)']
        """
        cur = _session_index()
        return [
            {
                "index": d.index,
                "name": d.name,
                "type": d.type,
                "vendor": d.vendor,
                "driver": d.driver,
                "api_version": d.api_version,
                "total_memory": d.total_memory,
                "score": d.score,
                "score_type": d.score_parts["type"],
                "score_memory": d.score_parts["memory"],
                "session": d.index == cur,
            }
            for d in self.infos
        ]

    def details(self, index: int | None = None) -> dict[str, list[tuple[str, str]]]:
        """The details of device ``index`` (default: the selected one), section by section
        (see :func:`vknb.display.device_details`).

        Example
        -------
        >>> dict(DeviceExplorer().details(0)["features"])["float64"]  # doctest: +SKIP
        'yes'
        """
        i = self.selected if index is None else index
        if i is None:
            raise ValueError("no device selected")
        return _display.device_details(self.infos[i])

    # -- rendering --------------------------------------------------------------------------

    def table_html(self) -> str:
        """The device table (session device in bold, marked ``*``) and the session line."""
        return (
            f"<div class='vknb-devices'><b>Vulkan devices</b> "
            f"<span style='color:#666'>(score = type bonus + memory bonus; the highest "
            f"score becomes the session device unless VKNB_DEVICE says otherwise)</span>"
            f"{_display.devices_html(self.infos, _session_index())}"
            f"<div>{_esc(_display.session_text())}</div></div>"
        )

    def html(self) -> str:
        """Static HTML: the table and the selected device's details."""
        details = ""
        if self.selected is not None:
            details = _display.device_details_html(self.infos[self.selected])
        return self.table_html() + details

    def text(self) -> str:
        """Plain text: the table and the selected device's details."""
        out = [_display.devices_text(self.infos, _session_index()), _display.session_text()]
        if self.selected is not None:
            out.append(_display.device_details_text(self.infos[self.selected]))
        return "\n".join(out)

    def refresh(self) -> None:
        """Re-render the table (session marking) and the details of the selected device."""
        self.table.value = _pane(self.table_html())
        sel = self.selected
        self.details_pane.value = (
            "" if sel is None else _pane(_display.device_details_html(self.infos[sel]))
        )
        cur = _session_index()
        self.use_button.disabled = sel is None
        self.use_button.button_style = "success" if sel is not None and sel == cur else ""

    # -- controls ---------------------------------------------------------------------------

    def use(self) -> Device:
        """Make the selected device the session device (:func:`vknb.use`) and re-render.

        Example
        -------
        >>> dev = vknb.widgets.DeviceExplorer().use()            # doctest: +SKIP
        """
        from ..core.session import use

        if self.selected is None:
            raise ValueError("no device selected")
        dev = use(self.selected)
        self.status.value = (
            f"<span style='color:#080'>session device: {dev.index}: {_esc(dev.info.name)}</span>"
        )
        self.refresh()
        return dev

    def _on_select(self, change: dict[str, Any]) -> None:
        self.status.value = ""
        self.refresh()

    def _on_use(self, _button: Any) -> None:
        try:
            self.use()
        except Exception as e:  # shown in the widget: a callback's exception would be lost
            self.status.value = (
                f"<span style='color:#c00'>{_esc(type(e).__name__)}: {_esc(e)}</span>"
            )

    def __repr__(self) -> str:
        cur = _session_index()
        return (
            f"<vknb.widgets.DeviceExplorer: {len(self.infos)} device(s), "
            f"session {'none' if cur is None else cur}, selected {self.selected}>"
        )


# --- memory monitor --------------------------------------------------------------------------


def _auto_refresh(ref: Callable[[], MemoryMonitor | None], stop: threading.Event) -> None:
    """Body of the auto-refresh thread: holds the monitor only weakly, and only during a tick;
    reads ``.interval`` every tick so that editing it takes effect at once."""
    while True:
        mon = ref()
        if mon is None:
            return
        interval = float(mon.interval.value)
        del mon
        if stop.wait(interval):
            return
        mon = ref()
        if mon is None:
            return
        try:
            mon.refresh()
        except Exception:  # pragma: no cover - keep the thread alive, say why
            log.exception("vknb memory monitor refresh failed")
        del mon


class MemoryMonitor(_View):
    """Memory statistics of a device: per heap its size, driver budget and usage, vknb's allocated
    and used bytes, as bars; vknb's blocks, live buffers and live images.

    Refreshes on demand (``.refresh_button`` or :meth:`refresh`) and, while ``.auto`` is on (or
    after :meth:`start`), every ``.interval`` seconds from a daemon thread that only reads
    ``memory_stats()`` (which takes the allocator's lock) and sets the widget's value traits.

    Parameters
    ----------
    device : Device, optional
        The device to watch, held by a weak reference.  Default: the session device, whichever
        it is at each refresh (it follows :func:`vknb.use` and :func:`vknb.reset`).
    interval : float, optional
        Start refreshing every ``interval`` seconds right away.

    Example
    -------
    >>> mon = vknb.widgets.MemoryMonitor()
    >>> mon.stats().allocated >= 0
    True
    >>> mon.start(1.0); mon.stop()
    """

    def __init__(self, device: Device | None = None, *, interval: float | None = None) -> None:
        import ipywidgets as W

        from ..core.session import device as session_device

        self._follow_session = device is None
        if device is None:
            device = session_device()  # create it now: the user asked to see its memory
        self._device_ref: weakref.ReferenceType[Device] = weakref.ref(device)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event: threading.Event | None = None
        self._finalizer: weakref.finalize | None = None
        self.refreshes = 0

        self.pane = W.HTML()
        self.refresh_button = W.Button(
            description="Refresh", icon="refresh", tooltip="read memory_stats() now"
        )
        self.auto = W.ToggleButton(
            value=False,
            description="Auto-refresh",
            icon="clock-o",
            tooltip="refresh every `interval` seconds from a thread",
        )
        self.interval = W.BoundedFloatText(
            value=interval or 1.0,
            min=0.05,
            max=3600.0,
            step=0.5,
            description="every (s)",
            layout=W.Layout(width="150px"),
        )
        self.updated = W.HTML()
        self._setup(
            W.VBox(
                [
                    self.pane,
                    W.HBox([self.refresh_button, self.auto, self.interval, self.updated]),
                ]
            )
        )
        self.refresh_button.on_click(_weak(self._on_refresh))
        self.auto.observe(_weak(self._on_auto), names="value")
        self.refresh()
        if interval is not None:
            self.start(interval)

    # -- data -------------------------------------------------------------------------------

    @property
    def device(self) -> Device | None:
        """The watched device, or None if it has been closed or collected."""
        if self._follow_session:
            from ..core.session import current_device

            d = current_device()
        else:
            d = self._device_ref()
        return d if d is not None and not d.closed else None

    def stats(self) -> MemoryStats | None:
        """``device.memory_stats()``, or None where the device is gone.

        Example
        -------
        >>> MemoryMonitor().stats().blocks >= 0                   # doctest: +SKIP
        True
        """
        from ..errors import ObjectClosed

        d = self.device
        if d is None:
            return None
        try:
            return d.memory_stats()
        except ObjectClosed:  # closed between the check and the read
            return None

    def rows(self) -> list[dict[str, Any]]:
        """Per heap: index, size, device_local, budget, usage, allocated, used (bytes).

        Example
        -------
        >>> [h["size"] for h in MemoryMonitor().rows()]          # doctest: +SKIP
        [2147483648]
        """
        s = self.stats()
        keys = ("index", "size", "device_local", "budget", "usage", "allocated", "used")
        return [] if s is None else [{k: getattr(h, k) for k in keys} for h in s.heaps]

    # -- rendering --------------------------------------------------------------------------

    def _render(self) -> tuple[str, str]:
        d = self.device
        s = self.stats() if d is not None else None
        if d is None or s is None:
            msg = (
                "device closed"
                if not self._follow_session
                else "no session device (vknb.device() creates one)"
            )
            return (
                f"<div class='vknb-memory'><b>Memory:</b> <i>{_esc(msg)}</i></div>",
                f"Memory: {msg}",
            )
        title = _display.memory_title(d)
        return _display.memory_stats_html(s, title), _display.memory_stats_text(s, title)

    def html(self) -> str:
        """Static HTML of the current statistics."""
        return self._render()[0]

    def text(self) -> str:
        """Plain text of the current statistics."""
        return self._render()[1]

    def refresh(self) -> None:
        """Read the statistics now and update the widget (thread-safe)."""
        with self._lock:
            self.pane.value = _pane(self.html())
            self.refreshes += 1
            self.updated.value = (
                f"<span style='color:#666'>updated {time.strftime('%H:%M:%S')}</span>"
            )

    # -- auto refresh -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the auto-refresh thread is running."""
        t = self._thread
        return t is not None and t.is_alive()

    def start(self, interval_s: float | None = None) -> None:
        """Refresh every ``interval_s`` seconds (default ``.interval.value``) from a daemon thread.

        Example
        -------
        >>> mon.start(0.5)                                       # doctest: +SKIP
        """
        if interval_s is not None:
            if interval_s <= 0:
                raise ValueError(f"interval_s must be > 0, got {interval_s}")
            self.interval.value = max(float(interval_s), self.interval.min)
        self._stop_thread()
        stop = threading.Event()
        t = threading.Thread(
            target=_auto_refresh,
            args=(weakref.ref(self), stop),
            name="vknb-memory-monitor",
            daemon=True,
        )
        self._stop_event, self._thread = stop, t
        # Collecting the monitor stops its thread (the thread holds it only weakly).
        self._finalizer = weakref.finalize(self, stop.set)
        t.start()
        if not self.auto.value:
            self.auto.value = True  # _on_auto sees the thread running and does nothing

    def stop(self) -> None:
        """Stop the auto-refresh thread (waits for it to finish its tick)."""
        self._stop_thread()
        if self.auto.value:
            self.auto.value = False

    def _stop_thread(self) -> None:
        stop, t = self._stop_event, self._thread
        self._stop_event = self._thread = None
        if stop is not None:
            stop.set()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)

    def _on_refresh(self, _button: Any) -> None:
        self.refresh()

    def _on_auto(self, change: dict[str, Any]) -> None:
        if change["new"] and not self.running:
            self.start()
        elif not change["new"] and self.running:
            self._stop_thread()

    def close(self) -> None:
        """Stop the thread and close the widget's views."""
        self.stop()
        super().close()

    def __repr__(self) -> str:
        d = self.device
        what = "device closed" if d is None else d.label
        return f"<vknb.widgets.MemoryMonitor {what}{' (auto)' if self.running else ''}>"


# --- dispatch timings ------------------------------------------------------------------------


def _make_listener(ref: Callable[[], TimingsView | None]) -> Callable[[DispatchRecord], None]:
    """A timing listener that holds the view weakly and unregisters itself once it is gone."""

    def listener(rec: DispatchRecord) -> None:
        view = ref()
        if view is None:
            _timing.remove_listener(listener)
            return
        view._on_record(rec)

    return listener


def _deferred_render(ref: Callable[[], TimingsView | None]) -> None:
    view = ref()
    if view is not None:
        with view._lock:
            view._timer = None
        view.refresh()


class TimingsView(_View):
    """Recent dispatches: a per-kernel summary and a table of the last ``last`` records.

    Columns: time, kernel, groups, workgroup size, GPU ms, host ms, bytes in/out, and achieved
    bandwidth where the kernel's byte count is known.  ``.kernel_filter`` (a dropdown: "all" and
    every kernel seen) filters both; the view updates live as dispatches happen (at most every
    ``min_interval`` seconds, with a trailing update), through a :func:`vknb.timing.add_listener`
    listener that holds the view weakly.  ``.plot_button`` draws the plots into ``.image``.

    Parameters
    ----------
    kernel : str, optional
        Show only this kernel's dispatches at first.
    last : int
        How many of the most recent records the table lists.
    live : bool
        Update on every dispatch.
    min_interval : float
        Seconds between live updates (0: update on every dispatch).

    Example
    -------
    >>> tv = vknb.widgets.TimingsView()
    >>> rec = k(x, y, a=2.0, grid=n)                             # doctest: +SKIP
    >>> tv.records()[-1] is rec                                  # doctest: +SKIP
    True
    >>> tv.kernel_filter.value = "saxpy"                         # doctest: +SKIP
    >>> tv.plot()                                                # doctest: +SKIP
    """

    def __init__(
        self,
        kernel: str | None = None,
        *,
        last: int = 50,
        live: bool = True,
        min_interval: float = 0.25,
    ) -> None:
        import ipywidgets as W

        self.min_interval = float(min_interval)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._last_render = 0.0
        self._updating_options = False
        self.renders = 0

        self.kernel_filter = W.Dropdown(
            options=self._filter_options(kernel), value=kernel or "all", description="Kernel"
        )
        self.last = W.BoundedIntText(
            value=last,
            min=1,
            max=_timing.MAX_RECORDS,
            description="last",
            layout=W.Layout(width="150px"),
        )
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.plot_button = W.Button(
            description="Plot",
            icon="bar-chart",
            tooltip="timeline, histogram per kernel, GPU vs host time",
        )
        self.summary_pane = W.HTML()
        self.table = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(display="none", max_width="100%"))
        self._setup(
            W.VBox(
                [
                    W.HBox([self.kernel_filter, self.last, self.refresh_button, self.plot_button]),
                    self.summary_pane,
                    self.table,
                    self.image,
                ]
            )
        )
        self.kernel_filter.observe(_weak(self._on_filter), names="value")
        self.last.observe(_weak(self._on_filter), names="value")
        self.refresh_button.on_click(_weak(self._on_refresh))
        self.plot_button.on_click(_weak(self._on_plot))

        self._listener: Callable[[DispatchRecord], None] | None = None
        self._finalizer: weakref.finalize | None = None
        if live:
            self._listener = _make_listener(weakref.ref(self))
            _timing.add_listener(self._listener)
            # Collecting the view unregisters the listener (the listener holds it weakly).
            self._finalizer = weakref.finalize(self, _timing.remove_listener, self._listener)
        self.refresh()

    # -- data -------------------------------------------------------------------------------

    @staticmethod
    def _kernels() -> list[str]:
        seen: dict[str, None] = {}
        for r in _timing.timings():
            seen.setdefault(r.kernel)
        return list(seen)

    def _filter_options(self, extra: str | None = None) -> list[str]:
        names = self._kernels()
        if extra and extra not in names:
            names.append(extra)
        return ["all", *names]

    @property
    def kernel(self) -> str | None:
        """The kernel the filter selects (None: all)."""
        v = self.kernel_filter.value
        return None if v in (None, "all") else v

    def records(self) -> list[DispatchRecord]:
        """The records shown: the filtered kernel's last ``.last.value``, oldest first.

        Example
        -------
        >>> TimingsView("saxpy", last=5).records()[-1].kernel    # doctest: +SKIP
        'saxpy'
        """
        return _timing.timings(kernel=self.kernel, last=int(self.last.value))

    def summary(self) -> list[dict[str, Any]]:
        """Per-kernel aggregates (:func:`vknb.display.timings_summary`) over every record of
        the filter."""
        return _display.timings_summary(_timing.timings(kernel=self.kernel))

    # -- rendering --------------------------------------------------------------------------

    def _summary_html(self) -> str:
        allrecs = _timing.timings(kernel=self.kernel)
        what = "all kernels" if self.kernel is None else f"kernel {self.kernel}"
        if not allrecs:
            return (
                f"<div class='vknb-timings'><b>Dispatch timings</b> ({_esc(what)}): "
                f"<i>no dispatches yet</i></div>"
            )
        return (
            f"<div class='vknb-timings'><b>Dispatch timings</b> ({_esc(what)}, "
            f"{len(allrecs)} dispatches)"
            f"{_display.timings_summary_html(allrecs)}</div>"
        )

    def _table_html(self) -> str:
        recs = self.records()
        if not recs:
            return ""
        table = _display.timings_table_html(recs[::-1])
        return (
            f"<div><b>Last {len(recs)} dispatches</b> (newest first)"
            f"<div style='max-height:22em;overflow-y:auto'>{table}</div></div>"
        )

    def html(self) -> str:
        """Static HTML: the summary and the table."""
        return self._summary_html() + self._table_html()

    def text(self) -> str:
        """Plain text: the table (oldest first)."""
        recs = self.records()
        what = "all kernels" if self.kernel is None else f"kernel {self.kernel}"
        if not recs:
            return f"Dispatch timings ({what}): no dispatches yet"
        return (
            f"Dispatch timings ({what}, last {len(recs)}, oldest first):\n"
            + _display.timings_summary_text(_timing.timings(kernel=self.kernel))
            + "\n\n"
            + _display.timings_text(recs)
        )

    def refresh(self) -> None:
        """Re-read :func:`vknb.timings` and update the filter's choices and the tables."""
        with self._lock:
            self._update_options()
            self.summary_pane.value = _pane(self._summary_html())
            self.table.value = _pane(self._table_html())
            self._last_render = time.monotonic()
            self.renders += 1

    def _update_options(self) -> None:
        opts = self._filter_options(self.kernel)
        if list(self.kernel_filter.options) != opts:
            value = self.kernel_filter.value
            self._updating_options = True
            try:  # setting options resets the value: put it back without re-rendering twice
                self.kernel_filter.options = opts
                self.kernel_filter.value = value if value in opts else "all"
            finally:
                self._updating_options = False

    def _on_filter(self, change: dict[str, Any]) -> None:
        if not self._updating_options:
            self.refresh()

    def _on_refresh(self, _button: Any) -> None:
        self.refresh()

    def _on_plot(self, _button: Any) -> None:
        self.show_plot()

    def _on_record(self, rec: DispatchRecord) -> None:
        """Listener body: re-render now, or once ``min_interval`` has passed (trailing)."""
        now = time.monotonic()
        with self._lock:
            wait = self._last_render + self.min_interval - now
            if wait > 0:
                if self._timer is None:
                    t = threading.Timer(wait, _deferred_render, args=(weakref.ref(self),))
                    t.daemon = True
                    self._timer = t
                    t.start()
                return
        self.refresh()

    # -- plots ------------------------------------------------------------------------------

    def figure(self, kind: str = "all") -> Figure:
        """:func:`plot_timings` of the records shown (all records of the filtered kernel)."""
        return plot_timings(_timing.timings(kernel=self.kernel), kind=kind)

    def plot(self, kind: str = "all", fmt: str = "png") -> Any:
        """A static image (``IPython.display.Image`` or ``SVG``) of the plots: survives nbconvert.

        Example
        -------
        >>> vknb.widgets.TimingsView().plot("timeline")          # doctest: +SKIP
        """
        return figure_image(self.figure(kind), fmt)

    def show_plot(self, kind: str = "all") -> None:
        """Draw the plots into the widget (``.image``): what the Plot button does.

        Example
        -------
        >>> tv = TimingsView(); tv.show_plot("timeline"); tv     # doctest: +SKIP
        """
        self.image.value = figure_bytes(self.figure(kind), "png")
        self.image.layout.display = ""

    # -- lifetime ---------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the view is registered as a timing listener."""
        return self._listener is not None

    def close(self) -> None:
        """Unregister the listener, cancel a pending update and close the widget's views."""
        if self._listener is not None:
            _timing.remove_listener(self._listener)
            self._listener = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        with self._lock:
            t, self._timer = self._timer, None
        if t is not None:
            t.cancel()
        super().close()

    def __repr__(self) -> str:
        return (
            f"<vknb.widgets.TimingsView kernel={self.kernel_filter.value!r} "
            f"{len(self.records())} records{' live' if self.live else ''}>"
        )


def __getattr__(name: str) -> Any:
    if name == "TimingsFigure":  # created on first use (matplotlib is imported then)
        from . import plots

        return plots.TimingsFigure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
