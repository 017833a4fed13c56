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
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_RECORDS = 10_000


@dataclass(slots=True)
class DispatchRecord:
    """One dispatch: what ran, how big, how long.

    ``gpu_ms`` is measured with timestamp queries around the dispatch (None only where the queue
    has no timestamps, or with ``VKNB_TIMESTAMPS=0``); ``host_ms`` is the wall time of the whole
    call (argument checks,
    transfers, submit, wait, write-back).
    """

    kernel: str
    groups: tuple[int, int, int]
    local_size: tuple[int, int, int]
    gpu_ms: float | None
    host_ms: float
    bytes_in: int = 0
    bytes_out: int = 0
    device: str = ""
    time: float = field(default_factory=time.time)
    batch: int | None = None
    kernel_bytes: int | None = None  # bytes the kernel reads + writes, where known
    dispatches: int = 1  # > 1 for a batch submission (groups and local_size are then 0)

    @property
    def invocations(self) -> int:
        """Total invocations (groups x workgroup size)."""
        g, l_ = self.groups, self.local_size
        return g[0] * g[1] * g[2] * l_[0] * l_[1] * l_[2]

    @property
    def bandwidth_gbs(self) -> float | None:
        """Achieved bandwidth in GB/s where the bytes the kernel touches are known."""
        if not self.kernel_bytes or not self.gpu_ms:
            return None
        return self.kernel_bytes / (self.gpu_ms * 1e-3) / 1e9

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


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
