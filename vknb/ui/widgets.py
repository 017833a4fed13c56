"""Views of what the GPU is and what it is doing: devices, memory, dispatch timings.

Each view is a thin layer over the public API (:func:`vknb.devices`,
:meth:`Device.memory_stats`, :func:`vknb.timings`) and shows itself as a **live HTML output**:
an ordinary ``text/html`` output (with ``text/plain`` beside it) that carries a display id.
While the view lives, vknb updates that output in place (``update_display_data``) when its data
changes: a dispatch, :func:`vknb.clear_timings`, memory allocated or freed, :func:`vknb.use` /
:func:`vknb.reset`.  So it is live in a running session, and a saved notebook, nbconvert's HTML,
GitHub or any static renderer shows its last table: no widget model is needed to see it.

Updates come from one daemon thread (``vknb-live``) for all views, at most every
``min_interval`` seconds per view (0.25 s, 0.5 s for timings), plus a light poll (``interval``,
1 s for memory and devices) for what sends no event (frees, device changes); an output is
re-sent only when its HTML changed.  A view that is garbage-collected or closed stops
updating.  A displayed view is kept alive by vknb while it is among the last
:data:`KEEP_LIVE` views displayed (or while you hold it), so ``%vknb memory`` stays live
without a variable.

The ipywidgets controls (device selection and "use", refresh and pause, kernel filter, plots
with a zoomable timeline) are there on request: ``view.interactive()`` returns them, and
``interactive=True`` displays them instead of the HTML.  Widget models do not survive a
reopened notebook (JupyterLab then shows "model not found"), which is why they are not the
default; vknb closes every widget it made when the kernel shuts down.

The content is computed by plain methods (``rows()``, ``details()``, ``html()``, ``text()``,
``records()``, ``summary()``) so scripts and tests can read it without a browser.  Views hold
only weak references to devices.

The tables are :mod:`vknb.display`'s renderers and the plots :mod:`vknb.ui.plots`'s;
``summary_rows``, ``dispatch_rows``, ``plot_timings`` and ``figure_bytes`` here are those
functions, under the names this module has always offered them.

``import vknb.widgets`` is cheap: IPython, ipywidgets and matplotlib are imported when needed.

Example
-------
>>> from vknb.ui.widgets import DeviceExplorer, MemoryMonitor, TimingsView, plot_timings
>>> DeviceExplorer()                                         # doctest: +SKIP
>>> MemoryMonitor()                                          # doctest: +SKIP
>>> TimingsView()                                            # doctest: +SKIP
>>> TimingsView().interactive()                              # doctest: +SKIP
>>> plot_timings(kind="all")                                 # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import html as _html
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..compute import timing as _timing
from . import display as _display
from .display import dispatch_rows
from .display import timings_summary as summary_rows
from .plots import PLOT_KINDS as PLOT_KINDS  # the kinds plot_timings takes
from .plots import figure_bytes, figure_html, figure_image, plot_timings

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..compute.timing import DispatchRecord
    from ..core.device import Device
    from ..core.instance import DeviceInfo
    from ..core.memory import MemoryStats

__all__ = [
    "KEEP_LIVE",
    "ClusterView",
    "DeviceExplorer",
    "MemoryMonitor",
    "TimingsView",
    "close_all",
    "compare",
    "dispatch_rows",
    "figure_bytes",
    "live_views",
    "plot_timings",
    "summary_rows",
]

log = logging.getLogger("vknb")

#: How many of the most recently displayed views vknb keeps alive (and live) on its own.
KEEP_LIVE = 8

_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _esc(s: Any) -> str:
    return _html.escape(str(s))


def _pane(html: str) -> str:
    """HTML of a view: its content in a ``vknb-view`` block (inline styles only: no ``<style>``,
    no script, no external resource, so sanitizers and static renderers keep it)."""
    return f"<div class='vknb-view'>{html}</div>"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


# --- the live-update thread ----------------------------------------------------------------------


class _Scheduler:
    """One daemon thread that refreshes every live view: when an event pokes it (a dispatch, a
    clear), at most every ``min_interval`` seconds per view, and every ``interval`` seconds for
    views that poll.  It holds the views weakly (only during a tick), and ends when none is
    left (the next view displayed starts it again)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._views: weakref.WeakSet[_View] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._poked = False
        self._stopped = False

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def add(self, view: _View) -> None:
        with self._cond:
            self._views.add(view)
            self._stopped = False
            if self._thread is None or not self._thread.is_alive():
                t = threading.Thread(target=self._run, name="vknb-live", daemon=True)
                self._thread = t
                t.start()
            self._cond.notify()

    def discard(self, view: _View) -> None:
        with self._cond:
            self._views.discard(view)
            self._cond.notify()

    def views(self) -> list[_View]:
        with self._cond:
            return list(self._views)

    def poke(self) -> None:
        """Something changed (called from any thread, on every dispatch: cheap)."""
        if self._poked or self._thread is None:
            return
        with self._cond:
            self._poked = True
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._views.clear()
            t = self._thread
            self._cond.notify()
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                if self._stopped or not self._views:
                    if self._thread is me:
                        self._thread = None
                    return
                poked, self._poked = self._poked, False
            wait = self._tick_all(poked)
            with self._cond:
                if not self._poked and not self._stopped:
                    self._cond.wait(timeout=min(max(wait, 0.02), 5.0))

    def _tick_all(self, poked: bool) -> float:
        """Update the views that are due; return the seconds until the next one is.  (A
        function of its own: no local keeps a view alive while the thread waits.)"""
        wait = 5.0
        now = time.monotonic()
        for view in self.views():
            try:
                if poked:
                    view._dirty = True
                due = view._due(now)
                if due <= 0:
                    view._tick()
                    due = view._due(time.monotonic())
                wait = min(wait, due)
            except Exception:  # a broken view must not stop the others
                log.debug("vknb live view %r failed to update", view, exc_info=True)
        return wait


_scheduler = _Scheduler()
# Views displayed most recently: kept alive (and so live) even when no variable holds them.
_shown: deque[_View] = deque(maxlen=KEEP_LIVE)
_listening = False
_listen_lock = threading.Lock()


def _on_record(_rec: DispatchRecord) -> None:
    _scheduler.poke()


def _on_clear() -> None:
    _scheduler.poke()


def _listen() -> None:
    """Register vknb's one timing listener and one clear listener (once per process)."""
    global _listening
    with _listen_lock:
        if not _listening:
            _timing.add_listener(_on_record)
            _timing.add_clear_listener(_on_clear)
            _listening = True


def live_views() -> list[Any]:
    """The views being kept up to date now (displayed, not closed, not collected).

    Example
    -------
    >>> [type(v).__name__ for v in vknb.widgets.live_views()]    # doctest: +SKIP
    ['MemoryMonitor', 'TimingsView']
    """
    return [v for v in _scheduler.views() if not v.closed]


# --- widgets vknb made, closed at shutdown -------------------------------------------------

_made: weakref.WeakSet[Any] = weakref.WeakSet()
_atexit_registered = False


def _track(widgets: list[Any]) -> None:
    """Remember widgets vknb created, so that :func:`close_all` (and kernel shutdown) closes
    them.  The exit hook is registered after ipykernel's (so it runs before IOPub stops)."""
    global _atexit_registered
    _made.update(widgets)
    if not _atexit_registered:
        atexit.register(close_all)
        _atexit_registered = True


def close_all() -> None:
    """Stop every live view and close every ipywidget vknb created (their comms included).

    Runs at interpreter exit (kernel shutdown or restart), so that the front end is told each
    comm is closed instead of finding them gone.

    Example
    -------
    >>> vknb.widgets.close_all()                               # doctest: +SKIP
    """
    for view in list(_shown) + _scheduler.views():
        try:
            view._stop(publish=False)  # at exit: nothing more to send
        except Exception:  # pragma: no cover - never raise from cleanup
            log.debug("closing %r failed", view, exc_info=True)
    _shown.clear()
    _scheduler.stop()
    _close_widgets(tuple(_made))


def _close_widgets(widgets: tuple[Any, ...]) -> None:
    for w in widgets:
        try:
            w.close()
        except Exception:  # pragma: no cover - never raise from cleanup
            log.debug("closing %r failed", w, exc_info=True)


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


def _publishes_updates(shell: Any) -> bool:
    """Whether ``shell`` can update an output in place: a Jupyter kernel, or any display
    publisher but the terminal's (which would print the table again on every update)."""
    from IPython.core.displaypub import DisplayPublisher

    pub = getattr(shell, "display_pub", None)
    return pub is not None and type(pub) is not DisplayPublisher


def _can_update() -> bool:
    """Whether the running shell (if any) can update outputs in place now (a shell may swap
    its display publisher, as ``capture_output`` does)."""
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.initialized() and _publishes_updates(InteractiveShell.instance())


class _View:
    """Common plumbing: the live HTML output, its updates, the optional widget, the lifetime.

    Subclasses give ``_content()`` (HTML and text of the data now) and may give ``_sample()``
    (called on every tick, e.g. to record a history) and ``_build()`` (the ipywidgets)."""

    #: Seconds between two updates of this view's output (throttle).
    min_interval: float = 0.25
    #: Seconds between polls for changes that send no event (None: events only).
    interval: float | None = None
    _kind = "view"
    _stamped = False  # show when the numbers last changed

    def __init__(self, *, interactive: bool = False) -> None:
        self.display_id = f"vknb-{self._kind}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.RLock()
        self._last_html: str | None = None
        self._last_content: str | None = None
        self._changed_at = time.time()
        self._last_publish = 0.0
        self._last_poll = time.monotonic()
        self._dirty = False
        self._closed = False
        self._shown_live = False
        self._interactive = interactive
        self.widget: Any = None
        self.updates = 0  # outputs re-sent (update_display_data)
        self.renders = 0

    # -- content ----------------------------------------------------------------------------

    def _content(self) -> tuple[str, str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _sample(self) -> None:
        """Called on each tick before rendering (views with a history record it here)."""

    def html(self) -> str:
        """Static HTML of the view now (what its output shows)."""
        return self._render()[0]

    def text(self) -> str:
        """Plain text of the view now (its output's ``text/plain``)."""
        return self._render()[1]

    def _render(self) -> tuple[str, str]:
        html, text = self._content()
        self.renders += 1
        if self._stamped:
            if html != self._last_content:
                self._last_content = html
                self._changed_at = time.time()
            # When the numbers last changed: a saved notebook shows its tables as of then.
            note = " (no longer updated)" if self._closed else ""
            html += (
                f"<div class='vknb-stamp' style='{_display.MUTED};font-size:85%'>"
                f"as of {_clock(self._changed_at)}{note}</div>"
            )
        return html, text

    def bundle(self) -> dict[str, str]:
        """The output's MIME bundle: ``text/html`` and ``text/plain``."""
        html, text = self._render()
        return {"text/html": _pane(html), "text/plain": text}

    # -- display ----------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.display import display

        if self._interactive:
            display(self._widget_bundle(), raw=True)
            return
        shell = InteractiveShell.instance() if InteractiveShell.initialized() else None
        self._shown_live = (
            shell is not None
            and _publishes_updates(shell)
            and not self._closed
            and self._follows_data()
        )
        data = self.bundle()
        with self._lock:
            self._last_html = data["text/html"]
        display(data, raw=True, display_id=self.display_id)
        if self._shown_live:
            self._go_live()

    def _follows_data(self) -> bool:
        """Whether a displayed view should be kept up to date."""
        return True

    def _go_live(self) -> None:
        _listen()
        if self in _shown:
            _shown.remove(self)
        _shown.append(self)
        self._last_publish = time.monotonic()
        _scheduler.add(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # For consumers that format without displaying (nbconvert's tests, other tools).
        return self._widget_bundle() if self._interactive else self.bundle()

    def _repr_html_(self) -> str:
        return _pane(self.html())

    def _due(self, now: float) -> float:
        """Seconds until this view should update (<= 0: now)."""
        if self._closed:
            return 3600.0
        due = 3600.0
        if self._dirty:
            due = self._last_publish + self.min_interval - now
        if self.interval is not None:
            due = min(due, self._last_poll + self.interval - now)
        return due

    def _tick(self) -> bool:
        """Sample, render, and re-send the output (and refresh the widget) if it changed."""
        with self._lock:
            self._dirty = False
            self._last_poll = time.monotonic()
            if self._closed:
                return False
            self._sample()
            if self.widget is not None:
                self._refresh_widget()
            if not self._shown_live or not _can_update():
                return False
            data = self.bundle()
            if data["text/html"] == self._last_html:
                return False
            self._last_html = data["text/html"]
            self._last_publish = time.monotonic()
        from IPython.display import update_display

        update_display(data, raw=True, display_id=self.display_id)
        self.updates += 1
        return True

    def update(self) -> bool:
        """Re-render now and re-send the output if it changed (what the live thread does);
        returns whether it was re-sent.

        Example
        -------
        >>> view = vknb.widgets.MemoryMonitor(); view            # doctest: +SKIP
        >>> view.update()                                        # doctest: +SKIP
        False
        """
        return self._tick()

    refresh = update

    @property
    def live(self) -> bool:
        """Whether the view's output is being kept up to date."""
        return (self._shown_live or self.widget is not None) and not self._closed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Stop updating (the output keeps its last table, marked "no longer updated") and close
        the interactive widget if there is one."""
        self._stop(publish=True)

    def _stop(self, publish: bool) -> None:
        if self._closed:
            return
        last = self._shown_live and publish and _can_update()
        with self._lock:
            self._closed = True
        _scheduler.discard(self)
        if self in _shown:
            _shown.remove(self)
        if last:
            try:  # the numbers as of now, and say so in the output
                from IPython.display import update_display

                self._sample()
                update_display(self.bundle(), raw=True, display_id=self.display_id)
            except Exception:  # pragma: no cover - never raise from cleanup
                log.debug("final update of %r failed", self, exc_info=True)
        self._shown_live = False
        closer = getattr(self, "_closer", None)
        if closer is not None:
            closer()

    # -- the interactive widget ---------------------------------------------------------------

    def interactive(self) -> Any:
        """The ipywidgets controls of this view (built once): display the returned widget.

        Widget models live only while the kernel does: a reopened notebook shows "model not
        found" where they were (the HTML view does not have that problem).

        Example
        -------
        >>> vknb.widgets.TimingsView().interactive()              # doctest: +SKIP
        """
        if self.widget is None:
            widget = self._build()
            self.widget = widget
            widgets = _walk(widget)
            _track(widgets)
            self._closer = weakref.finalize(self, _close_widgets, tuple(widgets))
            self._refresh_widget()
            _listen()
            _scheduler.add(self)
        return self.widget

    def _build(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _refresh_widget(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _widget_bundle(self) -> dict[str, Any]:
        widget = self.interactive()
        widget._vknb_view = self  # the view lives as long as its widget model
        data: dict[str, Any] = {"text/html": _pane(self.html()), "text/plain": self.text()}
        data.update({k: v for k, v in widget._repr_mimebundle_().items() if k == _WIDGET_MIME})
        return data


# --- device explorer ---------------------------------------------------------------------------


def _session_index() -> int | None:
    """The session device's index, without creating one."""
    from ..core.session import current_device

    d = current_device()
    return d.index if d is not None else None


class DeviceExplorer(_View):
    """Every Vulkan device with its score, and each one's details.

    The HTML output: a table with one row per physical device (name, type, vendor, driver, API
    version, device-local memory, score = type bonus + memory bonus; the session device marked
    ``*`` and in bold), the session line, then each device's details (compute limits,
    timestamps, memory heaps and types, queue families, features, notable extensions) in a
    ``<details>`` element, the session device's open.  It follows :func:`vknb.use` and
    :func:`vknb.reset` while live.

    :meth:`interactive` gives a device selector (``.select``), the selected device's details
    (``.details_pane``) and a button (``.use_button``) that makes it the session device.

    Parameters
    ----------
    index : int, optional
        The device selected first (default: the session device, or the one vknb would choose).
    interactive : bool
        Display the ipywidgets controls instead of the HTML.

    Example
    -------
    >>> ex = vknb.widgets.DeviceExplorer()
    >>> ex.rows()[0]["score"] == ex.rows()[0]["score_type"] + ex.rows()[0]["score_memory"]
    True
    >>> ex.use(0)                                                # same as vknb.use(0)
    """

    interval = 1.0
    _kind = "devices"

    def __init__(self, index: int | None = None, *, interactive: bool = False) -> None:
        from ..core.instance import devices, select_device_index

        super().__init__(interactive=interactive)
        self.infos: list[DeviceInfo] = devices()
        if index is None:
            index = _session_index()
        if index is None and self.infos:
            try:
                index = select_device_index(self.infos)[0]
            except Exception:  # a bad VKNB_DEVICE: the explorer is where one looks for the fix
                index = 0
        self.selected: int | None = index

    # -- data -------------------------------------------------------------------------------

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
            f"<span style='{_display.MUTED}'>(score = type bonus + memory bonus; the highest "
            f"score becomes the session device unless VKNB_DEVICE says otherwise)</span>"
            f"{_display.devices_html(self.infos, _session_index())}"
            f"<div>{_esc(_display.session_text())}</div></div>"
        )

    def _content(self) -> tuple[str, str]:
        cur = _session_index()
        opened = cur if cur is not None else self.selected
        details = "".join(
            f"<details class='vknb-device'{' open' if d.index == opened else ''}><summary>"
            f"Device {d.index}: {_esc(d.name)} ({_esc(d.type)}, score {d.score})</summary>"
            f"{_display.device_details_html(d)}</details>"
            for d in self.infos
        )
        text = [_display.devices_text(self.infos, cur), _display.session_text()]
        if self.selected is not None:
            text.append(_display.device_details_text(self.infos[self.selected]))
        return self.table_html() + details, "\n".join(text)

    # -- controls ---------------------------------------------------------------------------

    def use(self, index: int | None = None) -> Device:
        """Make device ``index`` (default: the selected one) the session device
        (:func:`vknb.use`) and update the view.

        Example
        -------
        >>> dev = vknb.widgets.DeviceExplorer().use()            # doctest: +SKIP
        """
        from ..core.session import use

        i = self.selected if index is None else index
        if i is None:
            raise ValueError("no device selected")
        self.selected = i
        dev = use(i)
        if self.widget is not None:
            self.status.value = (
                f"<span style='color:{_display.OK_COLOR}'>session device: {dev.index}: "
                f"{_esc(dev.info.name)}</span>"
            )
        self.update()
        return dev

    def _build(self) -> Any:
        import ipywidgets as W

        self.table = W.HTML()
        self.select = W.Dropdown(
            options=[(f"{d.index}: {d.name}", d.index) for d in self.infos],
            value=self.selected,
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
        self.select.observe(_weak(self._on_select), names="value")
        self.use_button.on_click(_weak(self._on_use))
        return W.VBox(
            [self.table, W.HBox([self.select, self.use_button, self.status]), self.details_pane]
        )

    def _refresh_widget(self) -> None:
        table = _pane(self.table_html())
        if self.table.value != table:
            self.table.value = table
        sel = self.selected
        details = "" if sel is None else _pane(_display.device_details_html(self.infos[sel]))
        if self.details_pane.value != details:
            self.details_pane.value = details
        self.use_button.disabled = sel is None
        self.use_button.button_style = (
            "success" if sel is not None and sel == _session_index() else ""
        )

    def _on_select(self, change: dict[str, Any]) -> None:
        self.selected = change["new"]
        self.status.value = ""
        self.update()

    def _on_use(self, _button: Any) -> None:
        try:
            self.use()
        except Exception as e:  # shown in the widget: a callback's exception would be lost
            self.status.value = (
                f"<span style='color:{_display.ERROR_COLOR}'>{_esc(type(e).__name__)}: "
                f"{_esc(e)}</span>"
            )

    def __repr__(self) -> str:
        cur = _session_index()
        n = len(self.infos)
        return (
            f"<vknb.widgets.DeviceExplorer: {n} device{'' if n == 1 else 's'}, "
            f"session {'none' if cur is None else cur}, selected {self.selected}>"
        )


# --- memory monitor ------------------------------------------------------------------------------


class MemoryMonitor(_View):
    """Memory statistics of a device: per heap its size, driver budget and usage, vknb's
    allocated and used bytes, a bar with the percentages printed beside it (readable at a
    fraction of a percent of a large heap), a sparkline of vknb's use over the last ``history``
    seconds; vknb's blocks, live buffers and live images.

    While live it polls ``memory_stats()`` every ``interval`` seconds (and after dispatches),
    so allocations and frees show within a second; the output is re-sent only when it changed.
    :meth:`interactive` adds a Refresh button and a pause toggle.

    Parameters
    ----------
    device : Device, optional
        The device to watch, held by a weak reference.  Default: the session device, whichever
        it is at each refresh (it follows :func:`vknb.use` and :func:`vknb.reset`).
    interval : float
        Seconds between polls while live (default 1).
    history : float
        Seconds of history the sparkline shows (default 60).
    interactive : bool
        Display the ipywidgets controls instead of the HTML.

    Example
    -------
    >>> mon = vknb.widgets.MemoryMonitor()
    >>> mon.stats().allocated >= 0
    True
    >>> mon                                                      # doctest: +SKIP
    """

    _kind = "memory"
    _stamped = True

    def __init__(
        self,
        device: Device | None = None,
        *,
        interval: float = 1.0,
        history: float = 60.0,
        interactive: bool = False,
    ) -> None:
        from ..core.session import device as session_device

        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        super().__init__(interactive=interactive)
        self.interval = float(interval)
        self.history_seconds = float(history)
        self._follow_session = device is None
        if device is None:
            device = session_device()  # create it now: the user asked to see its memory
        self._device_ref: weakref.ReferenceType[Device] = weakref.ref(device)
        self._history: deque[tuple[float, dict[int, tuple[int, int]]]] = deque()
        self._history_of: int | None = None  # id() of the device the history is about
        self.paused = False
        self._sample()

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

    def history(self) -> dict[int, list[tuple[int, int]]]:
        """Per heap index, the ``(used, allocated)`` samples of the last ``history`` seconds,
        oldest first (what the sparkline draws).

        Example
        -------
        >>> MemoryMonitor().history()                            # doctest: +SKIP
        {0: [(1048576, 8388608)]}
        """
        out: dict[int, list[tuple[int, int]]] = {}
        for _t, heaps in list(self._history):
            for i, v in heaps.items():
                out.setdefault(i, []).append(v)
        return out

    def _sample(self) -> None:
        d = self.device
        s = self.stats() if d is not None else None
        now = time.monotonic()
        if s is None:
            return
        if self._history_of != id(d):  # another device (vknb.use, vknb.reset): start over
            self._history.clear()
            self._history_of = id(d)
        self._history.append((now, {h.index: (h.used, h.allocated) for h in s.heaps}))
        while self._history and now - self._history[0][0] > self.history_seconds:
            self._history.popleft()

    # -- rendering --------------------------------------------------------------------------

    def _content(self) -> tuple[str, str]:
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
        return (
            _display.memory_stats_html(s, title, self.history(), self.history_seconds),
            _display.memory_stats_text(s, title),
        )

    def _due(self, now: float) -> float:
        return 3600.0 if self.paused else super()._due(now)

    # -- controls ---------------------------------------------------------------------------

    def _build(self) -> Any:
        import ipywidgets as W

        self.pane = W.HTML()
        self.refresh_button = W.Button(
            description="Refresh", icon="refresh", tooltip="read memory_stats() now"
        )
        self.pause = W.ToggleButton(
            value=self.paused,
            description="Pause",
            icon="pause",
            tooltip="stop (and resume) the updates",
        )
        self.refresh_button.on_click(_weak(self._on_refresh))
        self.pause.observe(_weak(self._on_pause), names="value")
        return W.VBox([self.pane, W.HBox([self.refresh_button, self.pause])])

    def _refresh_widget(self) -> None:
        value = _pane(self._render()[0])
        if self.pane.value != value:
            self.pane.value = value

    def _on_refresh(self, _button: Any) -> None:
        self.update()

    def _on_pause(self, change: dict[str, Any]) -> None:
        self.paused = bool(change["new"])
        _scheduler.poke()

    def __repr__(self) -> str:
        d = self.device
        what = "device closed" if d is None else d.label
        return f"<vknb.widgets.MemoryMonitor {what}{' (live)' if self.live else ''}>"


# --- a Dask cluster's devices ------------------------------------------------------------------


class ClusterView(_View):
    """The devices of a Dask cluster (:mod:`vknb.dask`): per worker its device (index, name,
    score), the device's memory and what vknb allocated there, the dispatches and GPU time it
    ran, and the ``vknb.dask`` blocks it computed and the kernels it built for them.

    While live it asks the workers every ``interval`` seconds
    (``client.run(vknb.dask.worker_device)``, which runs beside their tasks), so the numbers
    move as blocks finish; Dask's own progress bar and dashboard work unchanged beside it.
    :meth:`interactive` adds a Refresh button.

    Parameters
    ----------
    client : distributed.Client
        A synchronous client of the cluster, held by a weak reference.
    interval : float
        Seconds between polls while live (default 2).
    interactive : bool
        Display the ipywidgets controls instead of the HTML.

    Example
    -------
    >>> from vknb.dask import LocalVulkanCluster                 # doctest: +SKIP
    >>> client = LocalVulkanCluster(n_workers=2).get_client()    # doctest: +SKIP
    >>> view = vknb.widgets.ClusterView(client); view           # doctest: +SKIP
    >>> [r["worker"] for r in view.rows()]                       # doctest: +SKIP
    ['0', '1']
    """

    _kind = "cluster"
    _stamped = True
    min_interval = 1.0

    def __init__(self, client: Any, *, interval: float = 2.0, interactive: bool = False) -> None:
        if not hasattr(client, "run") or not hasattr(client, "scheduler_info"):
            raise TypeError(f"ClusterView needs a distributed.Client, got {type(client).__name__}")
        if getattr(client, "asynchronous", False):
            raise ValueError(
                "ClusterView needs a synchronous distributed.Client (this one is asynchronous)"
            )
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        super().__init__(interactive=interactive)
        self.interval = float(interval)
        self._client_ref = weakref.ref(client)
        self._rows: list[dict[str, Any]] = []
        self._problem: str | None = None
        self._sample()

    def rows(self) -> list[dict[str, Any]]:
        """The last poll: :func:`vknb.dask.cluster_report`'s rows (one per worker).

        Example
        -------
        >>> {"worker", "index", "name", "blocks"} <= set(view.rows()[0])  # doctest: +SKIP
        True
        """
        return [dict(r) for r in self._rows]

    def _sample(self) -> None:
        from ..dask.workers import cluster_report

        client = self._client_ref()
        if client is None or getattr(client, "status", "running") in ("closing", "closed"):
            self._problem = "the client is closed"
            return
        try:
            self._rows = cluster_report(client)
            self._problem = None
        except Exception as e:  # a worker gone mid-poll, a scheduler restarting: said, not raised
            self._problem = f"{type(e).__name__}: {e}"[:300]

    def _content(self) -> tuple[str, str]:
        rows, bad = self._rows, self._problem  # one poll's results (another thread may poll)
        problem = f" (last poll failed: {bad})" if bad else ""
        title = _display.cluster_title(rows) + problem
        return (
            f"<div class='vknb-cluster'><b>{_esc(title)}</b>"
            + _display.cluster_table(rows, True)
            + "</div>",
            title + "\n" + _display.cluster_table(rows, False),
        )

    def _build(self) -> Any:
        import ipywidgets as W

        self.pane = W.HTML()
        self.refresh_button = W.Button(
            description="Refresh", icon="refresh", tooltip="ask the workers now"
        )
        self.refresh_button.on_click(_weak(self._on_refresh))
        return W.VBox([self.pane, self.refresh_button])

    def _refresh_widget(self) -> None:
        value = _pane(self._render()[0])
        if self.pane.value != value:
            self.pane.value = value

    def _on_refresh(self, _button: Any) -> None:
        self.update()

    def __repr__(self) -> str:
        live = " (live)" if self.live else ""
        return f"<vknb.widgets.ClusterView {len(self._rows)} workers{live}>"


# --- dispatch timings ----------------------------------------------------------------------------


class TimingsView(_View):
    """Recent dispatches: a per-kernel-version summary and a table of the last ``last`` records.

    Summary columns: kernel (an edited kernel of the same name gets its own row,
    ``'saxpy (v2)'``), version, dispatches (warm-ups counted), GPU ms total, median, mean, min
    and max, host ms mean, GB/s.  Table columns: time, kernel, groups, workgroup size, GPU ms,
    host ms, bytes in/out, and achieved bandwidth where the kernel's byte count is known.  The
    output follows every dispatch and :func:`vknb.clear_timings` (at most every
    ``min_interval`` seconds, with a trailing update).

    :meth:`interactive` adds a kernel filter, the ``last`` count, and plots (a timeline on a
    real time axis with a zoom slider, the GPU time per dispatch, a histogram, the host
    overhead).

    Parameters
    ----------
    kernel : str, optional
        Show only this kernel's dispatches.
    last : int
        How many of the most recent records the table lists.
    live : bool
        Follow dispatches while displayed (False: a snapshot).
    min_interval : float
        Seconds between two updates of the output.
    interactive : bool
        Display the ipywidgets controls instead of the HTML.

    Example
    -------
    >>> tv = vknb.widgets.TimingsView(); tv                      # doctest: +SKIP
    >>> rec = k(x, y, a=2.0, grid=n)                             # doctest: +SKIP
    >>> tv.records()[-1] is rec                                  # doctest: +SKIP
    True
    >>> tv.kernel = "saxpy"; tv.plot("timeline")                 # doctest: +SKIP
    """

    _kind = "timings"
    _stamped = True

    def __init__(
        self,
        kernel: str | None = None,
        *,
        last: int = 50,
        live: bool = True,
        min_interval: float = 0.5,
        interactive: bool = False,
    ) -> None:
        if last < 1:
            raise ValueError(f"last must be >= 1, got {last}")
        super().__init__(interactive=interactive)
        self.kernel = kernel
        self.last = int(last)
        self.min_interval = float(min_interval)
        self._follow = live
        self.plot_kind = "all"
        self.zoom: tuple[float, float] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in ("kernel", "last") and getattr(self, "_shown_live", False):
            self._dirty = True  # the live thread redraws with the new filter
            _scheduler.poke()

    def _follows_data(self) -> bool:
        return self._follow

    # -- data -------------------------------------------------------------------------------

    def records(self) -> list[DispatchRecord]:
        """The records the table shows: the filtered kernel's last ``last``, oldest first.

        Example
        -------
        >>> TimingsView("saxpy", last=5).records()[-1].kernel    # doctest: +SKIP
        'saxpy'
        """
        return _timing.timings(kernel=self.kernel, last=self.last)

    def summary(self) -> list[dict[str, Any]]:
        """Per-kernel-version aggregates (:func:`vknb.timing.summarize`) over every record of
        the filter."""
        return _display.timings_summary(_timing.timings(kernel=self.kernel))

    # -- rendering --------------------------------------------------------------------------

    def _what(self) -> str:
        return "all kernels" if self.kernel is None else f"kernel {self.kernel}"

    def _summary_html(self) -> str:
        allrecs = _timing.timings(kernel=self.kernel)
        if not allrecs:
            return (
                f"<div class='vknb-timings'><b>Dispatch timings</b> ({_esc(self._what())}): "
                f"<i>no dispatches yet</i></div>"
            )
        return (
            f"<div class='vknb-timings'><b>Dispatch timings</b> ({_esc(self._what())}, "
            f"{_display.plural(len(allrecs), 'dispatch')})"
            f"{_display.timings_summary_html(allrecs)}</div>"
        )

    def _table_html(self) -> str:
        recs = self.records()
        if not recs:
            return ""
        table = _display.timings_table_html(recs[::-1])
        head = "Last dispatch" if len(recs) == 1 else f"Last {len(recs)} dispatches"
        return (
            f"<div><b>{head}</b> (newest first)"
            f"<div style='max-height:22em;overflow-y:auto'>{table}</div></div>"
        )

    def _content(self) -> tuple[str, str]:
        html = self._summary_html() + self._table_html()
        recs = self.records()
        if not recs:
            return html, f"Dispatch timings ({self._what()}): no dispatches yet"
        text = (
            f"Dispatch timings ({self._what()}, last {len(recs)}, oldest first):\n"
            + _display.timings_summary_text(_timing.timings(kernel=self.kernel))
            + "\n\n"
            + _display.timings_text(recs)
        )
        return html, text

    # -- plots ------------------------------------------------------------------------------

    def figure(self, kind: str = "all", xlim: tuple[float, float] | None = None) -> Figure:
        """:func:`plot_timings` of the records shown (the filtered kernel's last ``last``)."""
        return plot_timings(_timing.timings(kernel=self.kernel), kind, last=self.last, xlim=xlim)

    def plot(self, kind: str = "all", fmt: str = "png") -> Any:
        """A static image (``IPython.display.Image`` or ``SVG``) of the plots: survives nbconvert.

        Example
        -------
        >>> vknb.widgets.TimingsView().plot("timeline")          # doctest: +SKIP
        """
        return figure_image(self.figure(kind), fmt)

    def show_plot(self, kind: str | None = None) -> None:
        """Draw the plots into the interactive widget (what its Plot button does); the zoom
        slider then sets the timeline's range.

        Example
        -------
        >>> tv = TimingsView(); tv.interactive(); tv.show_plot("timeline")  # doctest: +SKIP
        """
        self.interactive()
        if kind is not None:
            self.plot_kind = kind
            if self.kind_select.value != kind:
                self.kind_select.value = kind
        recs = _timing.timings(kernel=self.kernel, last=self.last)
        span = self._span(recs)
        slider = self.zoom_slider
        if span > 0:
            step = span / 200
            slider.unobserve_all("value")
            slider.max = max(span, slider.min + step)
            slider.step = step
            lo, hi = self.zoom if self.zoom is not None else (0.0, span)
            slider.value = (min(lo, span), min(hi, span))
            slider.observe(_weak(self._on_zoom), names="value")
        slider.layout.display = "" if self.plot_kind in ("timeline", "all") and span > 0 else "none"
        fig = self.figure(self.plot_kind, xlim=self.zoom)
        self.plot_pane.value = figure_html(fig)

    @staticmethod
    def _span(recs: list[DispatchRecord]) -> float:
        """The timeline's extent in its own unit (ms under 2 s, else s)."""
        from .plots import timeline_rows

        if not recs:
            return 0.0
        rows = timeline_rows(recs)
        span = max(e["end"] for e in rows) - min(e["start"] for e in rows)
        return span * 1e3 if span < 2.0 else span

    # -- controls ---------------------------------------------------------------------------

    def _options(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in _timing.timings():
            seen.setdefault(r.kernel)
        if self.kernel and self.kernel not in seen:
            seen[self.kernel] = None
        return ["all", *seen]

    def _build(self) -> Any:
        import ipywidgets as W

        self.kernel_filter = W.Dropdown(
            options=self._options(), value=self.kernel or "all", description="Kernel"
        )
        self.last_box = W.BoundedIntText(
            value=self.last,
            min=1,
            max=_timing.MAX_RECORDS,
            description="last",
            layout=W.Layout(width="150px"),
        )
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.kind_select = W.Dropdown(
            options=list(PLOT_KINDS), value=self.plot_kind, layout=W.Layout(width="120px")
        )
        self.plot_button = W.Button(
            description="Plot",
            icon="bar-chart",
            tooltip="timeline, GPU time per dispatch, histogram, host overhead",
        )
        self.summary_pane = W.HTML()
        self.table = W.HTML()
        self.plot_pane = W.HTML()
        self.zoom_slider = W.FloatRangeSlider(
            value=(0.0, 1.0),
            min=0.0,
            max=1.0,
            step=0.01,
            description="zoom",
            continuous_update=False,
            layout=W.Layout(width="95%", display="none"),
        )
        self._updating = False
        self.kernel_filter.observe(_weak(self._on_filter), names="value")
        self.last_box.observe(_weak(self._on_last), names="value")
        self.refresh_button.on_click(_weak(self._on_refresh))
        self.plot_button.on_click(_weak(self._on_plot))
        self.kind_select.observe(_weak(self._on_kind), names="value")
        self.zoom_slider.observe(_weak(self._on_zoom), names="value")
        return W.VBox(
            [
                W.HBox(
                    [
                        self.kernel_filter,
                        self.last_box,
                        self.refresh_button,
                        self.kind_select,
                        self.plot_button,
                    ]
                ),
                self.summary_pane,
                self.table,
                self.plot_pane,
                self.zoom_slider,
            ]
        )

    def _refresh_widget(self) -> None:
        opts = self._options()
        if list(self.kernel_filter.options) != opts:
            self._updating = True
            try:  # setting options resets the value: put it back without re-rendering twice
                self.kernel_filter.options = opts
                self.kernel_filter.value = self.kernel if self.kernel in opts else "all"
            finally:
                self._updating = False
        summary = _pane(self._summary_html())
        if self.summary_pane.value != summary:
            self.summary_pane.value = summary
        table = _pane(self._table_html())
        if self.table.value != table:
            self.table.value = table

    def _on_filter(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        v = change["new"]
        self.kernel = None if v in (None, "all") else v
        self.update()

    def _on_last(self, change: dict[str, Any]) -> None:
        self.last = int(change["new"])
        self.update()

    def _on_refresh(self, _button: Any) -> None:
        self.update()

    def _on_plot(self, _button: Any) -> None:
        self.show_plot()

    def _on_kind(self, change: dict[str, Any]) -> None:
        self.plot_kind = change["new"]

    def _on_zoom(self, change: dict[str, Any]) -> None:
        lo, hi = change["new"]
        self.zoom = (float(lo), float(hi))
        fig = self.figure(self.plot_kind, xlim=self.zoom)
        self.plot_pane.value = figure_html(fig)

    def __repr__(self) -> str:
        n = len(self.records())
        return (
            f"<vknb.widgets.TimingsView kernel={self.kernel!r} "
            f"{_display.plural(n, 'record')}{' live' if self.live else ''}>"
        )


# --- comparing kernel versions -------------------------------------------------------------------


def compare(kernel: str, records: list[DispatchRecord] | None = None) -> Any:
    """The versions of one kernel side by side: per version (``'saxpy (v1)'``, ``'saxpy (v2)'``,
    an edited kernel of the same name being another version) its steady dispatches (warm-ups
    left out), median, mean, min and max GPU ms, and the speedup of its median over the first
    version's.  Returns a :class:`vknb.display.Rendered` (HTML in a notebook, text in a
    terminal) whose ``.rows`` are :func:`vknb.timing.compare_versions`.

    Example
    -------
    >>> vknb.widgets.compare("saxpy")                            # doctest: +SKIP
    saxpy: 2 versions
    version     hash      dispatches  GPU ms median  ...  speedup
    saxpy (v1)  1a9c2ee2  49          0.412          ...  1.00x
    saxpy (v2)  fa60ef17  50          0.301          ...  1.37x
    """
    rows = _timing.compare_versions(kernel, records)
    return _display.Rendered(
        _display.versions_html(kernel, rows), _display.versions_text(kernel, rows), rows
    )


def __getattr__(name: str) -> Any:
    if name == "TimingsFigure":  # created on first use (matplotlib is imported then)
        from . import plots

        return plots.TimingsFigure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
