"""Per-dispatch records: GPU time from timestamp queries, host time, bytes moved.

Every kernel call appends a :class:`DispatchRecord` to the session's list, which
:func:`timings` returns (the last 10 000).  Views subscribe with :func:`add_listener` (every
record) and :func:`add_clear_listener` (:func:`clear_timings`).

Plain-data helpers for views: :func:`summarize` (per kernel version), :func:`compare_versions`,
:func:`is_warmup` (the first dispatch of a kernel version on a device) and
:func:`version_label` (``'saxpy'``, or ``'saxpy (v2)'`` once the name has several versions).

Example
-------
>>> rec = k(x, y, a=2.0, grid=n)                             # doctest: +SKIP
>>> rec.gpu_ms, rec.host_ms                                  # doctest: +SKIP
(0.012, 0.09)
>>> vknb.timings()[-1] is rec                                # doctest: +SKIP
True
"""

from __future__ import annotations

import statistics
import threading
import time as _time
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_RECORDS = 10_000


_FIELDS = (
    "kernel",
    "groups",
    "local_size",
    "gpu_ms",
    "host_ms",
    "bytes_in",
    "bytes_out",
    "device",
    "time",
    "batch",
    "kernel_bytes",
    "dispatches",
    "version",
    "gpu_start",
    "gpu_end",
)


class DispatchRecord:
    """One dispatch: what ran, how big, how long.

    ``gpu_ms`` is measured with timestamp queries around the dispatch (None only where the queue
    has no timestamps, or with ``VKNB_TIMESTAMPS=0``); ``host_ms`` is the wall time of the whole
    call (argument checks, transfers, submit, wait, write-back).  A repeated synchronous call
    reads its timestamps later, while the GPU runs the next call (or when ``gpu_ms`` is first
    read), so the read costs the call nothing.

    Attributes
    ----------
    kernel : str
        The kernel's name (``batch[...]`` for a batch submission).
    groups, local_size : tuple of 3 ints
        Workgroups dispatched and the workgroup size (0s for a batch).
    gpu_ms : float or None
        Time between the two timestamps around the dispatch.
    host_ms : float
        Wall time of the whole call.
    bytes_in, bytes_out : int
        Bytes uploaded before and downloaded after the dispatch (numpy arguments).
    device : str
        The device's name.
    time : float
        When the call was made (``time.time()``).
    batch : int or None
        Reserved for the index of the dispatch in a batch.
    kernel_bytes : int or None
        Bytes of the bound buffers the kernel may read plus those it may write.
    dispatches : int
        1, or the number of dispatches of a batch submission.

    Example
    -------
    >>> rec = vknb.DispatchRecord("saxpy", (4, 1, 1), (64, 1, 1), 0.01, 0.05, kernel_bytes=3072)
    >>> rec.invocations, round(rec.bandwidth_gbs, 1)
    (256, 0.3)
    """

    __slots__ = (
        "_end",
        "_gpu",
        "_raw",
        "_start",
        "batch",
        "bytes_in",
        "bytes_out",
        "device",
        "dispatches",
        "groups",
        "host_ms",
        "kernel",
        "kernel_bytes",
        "local_size",
        "pending",
        "time",
        "version",
    )

    def __init__(
        self,
        kernel: str,
        groups: tuple[int, int, int],
        local_size: tuple[int, int, int],
        gpu_ms: float | None,
        host_ms: float,
        bytes_in: int = 0,
        bytes_out: int = 0,
        device: str = "",
        time: float | None = None,
        batch: int | None = None,
        kernel_bytes: int | None = None,  # bytes the kernel reads + writes, where known
        dispatches: int = 1,  # > 1 for a batch submission (groups and local_size are then 0)
        version: str = "",
    ) -> None:
        self.kernel = kernel
        self.version = version
        self._start: float | None = None
        self._end: float | None = None
        self.groups = groups
        self.local_size = local_size
        self._gpu = gpu_ms
        # An object whose resolve() fills in the GPU time later (a pipeline slot whose queries
        # hold it): reading the timestamps costs the dispatching call nothing.
        self.pending: Any = None
        # (t0, t1, timestamps): raw ticks read from the slot, converted when first asked for.
        self._raw: tuple[int, int, Any] | None = None
        self.host_ms = host_ms
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.device = device
        self.time = _time.time() if time is None else time
        self.batch = batch
        self.kernel_bytes = kernel_bytes
        self.dispatches = dispatches

    def _settle(self) -> None:
        """Fill in the GPU time from a pending slot or from raw ticks (once)."""
        if self.pending is not None:
            self.pending.resolve()
        raw = self._raw
        if raw is not None:  # (two threads may both convert: the same values, then cleared)
            self._gpu, self._start, self._end = raw[2].convert(raw[0], raw[1])
            self._raw = None

    @property
    def gpu_ms(self) -> float | None:
        """GPU time in milliseconds (None where the queue has no timestamps)."""
        if self.pending is not None or self._raw is not None:
            self._settle()
        return self._gpu

    @gpu_ms.setter
    def gpu_ms(self, value: float | None) -> None:
        self.set_gpu_ms(value)

    def set_gpu_ms(self, value: float | None) -> None:
        """Fill in the GPU time (what a pending record's ``resolve`` calls)."""
        self.pending = None
        self._raw = None
        self._gpu = value

    def set_ticks(self, ticks: tuple[int, int] | None, timestamps: Any) -> None:
        """Fill in the GPU time as two raw timestamps, which ``timestamps.convert`` turns into
        ms and host times when first asked for (None: no GPU time)."""
        self.pending = None
        if ticks is None:
            self._raw = None
            self._gpu = None
        else:
            self._raw = (ticks[0], ticks[1], timestamps)

    def set_gpu(self, ms: float | None, start: float | None, end: float | None) -> None:
        """Fill in the GPU time and, where known, when the GPU ran it (``time.time()`` clock)."""
        self.pending = None
        self._raw = None
        self._gpu, self._start, self._end = ms, start, end

    @property
    def gpu_start(self) -> float | None:
        """When the GPU started the work, on the ``time.time()`` clock: from calibrated
        timestamps where the device has them, else estimated as the end of the call minus the
        GPU time; None without a GPU time."""
        if self.pending is not None or self._raw is not None:
            self._settle()
        if self._start is not None:
            return self._start
        end = self.gpu_end
        return None if end is None or self._gpu is None else end - self._gpu * 1e-3

    @property
    def gpu_end(self) -> float | None:
        """When the GPU finished the work (see :attr:`gpu_start`)."""
        if self.pending is not None or self._raw is not None:
            self._settle()
        if self._end is not None:
            return self._end
        return None if self._gpu is None else self.time + self.host_ms * 1e-3

    @property
    def calibrated(self) -> bool:
        """Whether :attr:`gpu_start`/:attr:`gpu_end` come from calibrated timestamps."""
        if self.pending is not None or self._raw is not None:
            self._settle()
        return self._start is not None

    @property
    def invocations(self) -> int:
        """Total invocations (groups x workgroup size)."""
        g, l_ = self.groups, self.local_size
        return g[0] * g[1] * g[2] * l_[0] * l_[1] * l_[2]

    @property
    def bandwidth_gbs(self) -> float | None:
        """Achieved bandwidth in GB/s where the bytes the kernel touches are known."""
        gpu = self.gpu_ms
        if not self.kernel_bytes or not gpu:
            return None
        return self.kernel_bytes / (gpu * 1e-3) / 1e9

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (what ``json.dumps`` and pandas take)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DispatchRecord):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with its GPU time filled in (never the slot or timestamps it came from)."""
        self._settle()
        state = {name: getattr(self, name) for name in self.__slots__}
        state["pending"] = state["_raw"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"DispatchRecord({inner})"


_records: deque[DispatchRecord] = deque(maxlen=MAX_RECORDS)
_lock = threading.Lock()
_listeners: list[Callable[[DispatchRecord], None]] = []
_clear_listeners: list[Callable[[], None]] = []
# The first record of each (kernel, version, device): the cold dispatch (warm-up).  Kept across
# clear_timings: a kernel called again after a clear is not cold.
_first: dict[tuple[str, str, str], DispatchRecord] = {}
# Each kernel name's versions, in the order they first ran (numbers them v1, v2, ...).
_versions: dict[str, list[str]] = {}


def record(rec: DispatchRecord) -> None:
    """Append a record and tell the listeners (errors in listeners are ignored)."""
    _records.append(rec)  # deque.append is atomic
    key = (rec.kernel, rec.version, rec.device)
    if key not in _first:
        with _lock:
            _first.setdefault(key, rec)
            seen = _versions.setdefault(rec.kernel, [])
            if rec.version not in seen:
                seen.append(rec.version)
    if not _listeners:
        return
    with _lock:
        listeners = list(_listeners)
    for fn in listeners:
        try:
            fn(rec)
        except Exception:  # a broken widget must not break a dispatch
            pass


def is_warmup(rec: DispatchRecord) -> bool:
    """Whether ``rec`` is the first dispatch of its kernel version on its device (the cold one:
    descriptor sets, scratch buffers and driver caches are made on it).

    Example
    -------
    >>> [vknb.timing.is_warmup(r) for r in vknb.timings(kernel="saxpy")][:2]  # doctest: +SKIP
    [True, False]
    """
    return _first.get((rec.kernel, rec.version, rec.device)) is rec


def versions(kernel: str) -> list[str]:
    """The versions (short hashes, ``Kernel.version``) of kernel ``kernel`` that have run in
    this session, oldest first.

    Example
    -------
    >>> vknb.timing.versions("saxpy")                         # doctest: +SKIP
    ['1a9c2ee2', 'fa60ef17']
    """
    with _lock:
        return list(_versions.get(kernel, ()))


def version_label(kernel: str, version: str) -> str:
    """How views name a kernel version: the kernel's name while it has one version, else
    ``'name (vN)'``, N counting the versions in the order they first ran.

    Example
    -------
    >>> vknb.timing.version_label("saxpy", vknb.timings()[-1].version)  # doctest: +SKIP
    'saxpy (v2)'
    """
    seen = versions(kernel)
    if len(seen) <= 1 or version not in seen:
        return kernel
    return f"{kernel} (v{seen.index(version) + 1})"


def timings(kernel: str | None = None, last: int | None = None) -> list[DispatchRecord]:
    """This session's dispatch records, oldest first (optionally one kernel's, the last K).

    Example
    -------
    >>> recs = vknb.timings(last=5)
    >>> all(r.host_ms >= 0 for r in recs)
    True
    """
    with _lock:
        out = list(_records)
    if kernel is not None:
        out = [r for r in out if r.kernel == kernel]
    if last is not None:
        out = out[-last:] if last > 0 else []
    return out


def clear_timings() -> None:
    """Forget every record (and tell the clear listeners: views empty their tables).

    Example
    -------
    >>> vknb.clear_timings(); vknb.timings()
    []
    """
    with _lock:
        _records.clear()
        listeners = list(_clear_listeners)
    for fn in listeners:
        try:
            fn()
        except Exception:  # a broken view must not break clear_timings
            pass


def add_listener(fn: Callable[[DispatchRecord], None]) -> None:
    """Call ``fn(record)`` after every dispatch (from the dispatching thread)."""
    with _lock:
        _listeners.append(fn)


def remove_listener(fn: Callable[[DispatchRecord], None]) -> None:
    """Stop calling ``fn``."""
    with _lock:
        if fn in _listeners:
            _listeners.remove(fn)


def add_clear_listener(fn: Callable[[], None]) -> None:
    """Call ``fn()`` after :func:`clear_timings` (from the clearing thread).

    Example
    -------
    >>> vknb.timing.add_clear_listener(lambda: print("cleared"))  # doctest: +SKIP
    """
    with _lock:
        _clear_listeners.append(fn)


def remove_clear_listener(fn: Callable[[], None]) -> None:
    """Stop calling ``fn`` on :func:`clear_timings`."""
    with _lock:
        if fn in _clear_listeners:
            _clear_listeners.remove(fn)


def to_dataframe(records: list[DispatchRecord] | None = None) -> Any:
    """The records as a pandas DataFrame (pandas is optional: ImportError names it).

    Example
    -------
    >>> df = vknb.timing.to_dataframe()                      # doctest: +SKIP
    """
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("to_dataframe needs pandas: `pip install pandas`") from e
    recs = timings() if records is None else records
    return pd.DataFrame([r.to_dict() for r in recs])


def _stats(recs: list[DispatchRecord]) -> dict[str, Any]:
    gpu = [g for g in (r.gpu_ms for r in recs) if g is not None]
    bw = [b for b in (r.bandwidth_gbs for r in recs) if b is not None]
    return {
        "count": len(recs),
        "warmups": sum(1 for r in recs if is_warmup(r)),
        "gpu_ms_total": sum(gpu) if gpu else None,
        "gpu_ms_mean": sum(gpu) / len(gpu) if gpu else None,
        "gpu_ms_median": statistics.median(gpu) if gpu else None,
        "gpu_ms_min": min(gpu) if gpu else None,
        "gpu_ms_max": max(gpu) if gpu else None,
        "host_ms_mean": sum(r.host_ms for r in recs) / len(recs),
        "host_ms_median": statistics.median(r.host_ms for r in recs),
        "bandwidth_gbs": sum(bw) / len(bw) if bw else None,
    }


def summarize(records: list[DispatchRecord]) -> list[dict[str, Any]]:
    """Per-kernel-version aggregates of dispatch records, as plain data (first-seen order).

    One entry per kernel name and version (an edited kernel of the same name is another
    version), with the keys ``kernel`` (the name), ``version`` (``Kernel.version``), ``label``
    (:func:`version_label`), ``count``, ``warmups`` (how many are the first dispatch of their
    version: :func:`is_warmup`), ``gpu_ms_total``, ``gpu_ms_mean``, ``gpu_ms_median``,
    ``gpu_ms_min``, ``gpu_ms_max``, ``host_ms_mean``, ``host_ms_median`` and ``bandwidth_gbs``.
    The GPU figures are over the records that have a GPU time (None where none has);
    ``bandwidth_gbs`` is the mean achieved bandwidth where known.

    Example
    -------
    >>> [s["label"] for s in summarize(vknb.timings())]         # doctest: +SKIP
    ['saxpy (v1)', 'saxpy (v2)']
    """
    groups: dict[tuple[str, str], list[DispatchRecord]] = {}
    for r in records:
        groups.setdefault((r.kernel, r.version), []).append(r)
    return [
        {"kernel": name, "version": version, "label": version_label(name, version), **_stats(recs)}
        for (name, version), recs in groups.items()
    ]


def compare_versions(
    kernel: str, records: list[DispatchRecord] | None = None
) -> list[dict[str, Any]]:
    """The versions of one kernel side by side, oldest first, as plain data.

    Like :func:`summarize` (of ``records``, default all of the session's), over the steady
    dispatches only (warm-ups left out where a version has more than one dispatch), with
    ``number`` (1 for v1) and ``speedup``: the first listed version's median GPU time over
    this one's (host times where there are no GPU times).

    Example
    -------
    >>> [(v["label"], round(v["speedup"], 2)) for v in compare_versions("saxpy")]  # doctest: +SKIP
    [('saxpy (v1)', 1.0), ('saxpy (v2)', 1.37)]
    """
    recs = [r for r in (timings() if records is None else records) if r.kernel == kernel]
    order = versions(kernel)
    by: dict[str, list[DispatchRecord]] = {}
    for r in recs:
        by.setdefault(r.version, []).append(r)
    out = []
    for version in sorted(by, key=lambda v: order.index(v) if v in order else len(order)):
        group = by[version]
        steady = [r for r in group if not is_warmup(r)] or group
        row = {
            "kernel": kernel,
            "version": version,
            "label": version_label(kernel, version),
            "number": order.index(version) + 1 if version in order else None,
            **_stats(steady),
        }
        row["warmups"] = len(group) - len(steady)
        out.append(row)
    key = "gpu_ms_median" if out and all(o["gpu_ms_median"] for o in out) else "host_ms_median"
    for o in out:
        base, mine = out[0][key], o[key]
        o["speedup"] = base / mine if base and mine else None
    return out
