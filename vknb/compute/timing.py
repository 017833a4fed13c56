"""Per-dispatch records: GPU time from timestamp queries, host time, bytes moved.

Every kernel call appends a :class:`DispatchRecord` to the session's list, which
:func:`timings` returns (the last 10 000).  Widgets subscribe with :func:`add_listener`.

Example
-------
>>> rec = k(x, y, a=2.0, grid=n)                             # doctest: +SKIP
>>> rec.gpu_ms, rec.host_ms                                  # doctest: +SKIP
(0.012, 0.09)
>>> vknb.timings()[-1] is rec                                # doctest: +SKIP
True
"""

from __future__ import annotations

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
        self.host_ms = host_ms
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.device = device
        self.time = _time.time() if time is None else time
        self.batch = batch
        self.kernel_bytes = kernel_bytes
        self.dispatches = dispatches

    @property
    def gpu_ms(self) -> float | None:
        """GPU time in milliseconds (None where the queue has no timestamps)."""
        if self.pending is not None:
            self.pending.resolve()
        return self._gpu

    @gpu_ms.setter
    def gpu_ms(self, value: float | None) -> None:
        self.set_gpu_ms(value)

    def set_gpu_ms(self, value: float | None) -> None:
        """Fill in the GPU time (what a pending record's ``resolve`` calls)."""
        self.pending = None
        self._gpu = value

    def set_gpu(self, ms: float | None, start: float | None, end: float | None) -> None:
        """Fill in the GPU time and, where known, when the GPU ran it (``time.time()`` clock)."""
        self.pending = None
        self._gpu, self._start, self._end = ms, start, end

    @property
    def gpu_start(self) -> float | None:
        """When the GPU started the work, on the ``time.time()`` clock: from calibrated
        timestamps where the device has them, else estimated as the end of the call minus the
        GPU time; None without a GPU time."""
        if self.pending is not None:
            self.pending.resolve()
        if self._start is not None:
            return self._start
        end = self.gpu_end
        return None if end is None or self._gpu is None else end - self._gpu * 1e-3

    @property
    def gpu_end(self) -> float | None:
        """When the GPU finished the work (see :attr:`gpu_start`)."""
        if self.pending is not None:
            self.pending.resolve()
        if self._end is not None:
            return self._end
        return None if self._gpu is None else self.time + self.host_ms * 1e-3

    @property
    def calibrated(self) -> bool:
        """Whether :attr:`gpu_start`/:attr:`gpu_end` come from calibrated timestamps."""
        if self.pending is not None:
            self.pending.resolve()
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

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"DispatchRecord({inner})"


_records: deque[DispatchRecord] = deque(maxlen=MAX_RECORDS)
_lock = threading.Lock()
_listeners: list[Callable[[DispatchRecord], None]] = []


def record(rec: DispatchRecord) -> None:
    """Append a record and tell the listeners (errors in listeners are ignored)."""
    _records.append(rec)  # deque.append is atomic
    if not _listeners:
        return
    with _lock:
        listeners = list(_listeners)
    for fn in listeners:
        try:
            fn(rec)
        except Exception:  # a broken widget must not break a dispatch
            pass


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
    """Forget every record.

    Example
    -------
    >>> vknb.clear_timings(); vknb.timings()
    []
    """
    with _lock:
        _records.clear()


def add_listener(fn: Callable[[DispatchRecord], None]) -> None:
    """Call ``fn(record)`` after every dispatch (from the dispatching thread)."""
    with _lock:
        _listeners.append(fn)


def remove_listener(fn: Callable[[DispatchRecord], None]) -> None:
    """Stop calling ``fn``."""
    with _lock:
        if fn in _listeners:
            _listeners.remove(fn)


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


def summarize(records: list[DispatchRecord]) -> list[dict[str, Any]]:
    """Per-kernel aggregates of dispatch records, as plain data (first-seen order).

    Each entry has the keys ``kernel``, ``count``, ``gpu_ms_total``, ``gpu_ms_mean``,
    ``gpu_ms_min``, ``gpu_ms_max``, ``host_ms_mean`` and ``bandwidth_gbs``.  The GPU figures are
    over the records that have a GPU time (None where none has); ``bandwidth_gbs`` is the mean
    achieved bandwidth where known.

    Example
    -------
    >>> [s["kernel"] for s in summarize(vknb.timings())]         # doctest: +SKIP
    ['saxpy']
    """
    groups: dict[str, list[DispatchRecord]] = {}
    for r in records:
        groups.setdefault(r.kernel, []).append(r)
    out = []
    for name, recs in groups.items():
        gpu = [r.gpu_ms for r in recs if r.gpu_ms is not None]
        bw = [b for b in (r.bandwidth_gbs for r in recs) if b is not None]
        out.append(
            {
                "kernel": name,
                "count": len(recs),
                "gpu_ms_total": sum(gpu) if gpu else None,
                "gpu_ms_mean": sum(gpu) / len(gpu) if gpu else None,
                "gpu_ms_min": min(gpu) if gpu else None,
                "gpu_ms_max": max(gpu) if gpu else None,
                "host_ms_mean": sum(r.host_ms for r in recs) / len(recs),
                "bandwidth_gbs": sum(bw) / len(bw) if bw else None,
            }
        )
    return out
