"""What each worker runs on: :func:`worker_device`, :func:`cluster_report`, :func:`format_report`.

Plain data first: :func:`worker_device` describes this process's session device as a dict (run
it on every worker with ``client.run``), :func:`cluster_report` gathers one row per worker, and
:func:`format_report` lays the rows out as a text table.  Nothing here imports Dask.

Example
-------
>>> row = vknb.dask.worker_device()
>>> {"index", "name", "score", "allocated"} <= set(row)
True
"""

from __future__ import annotations

import os
from typing import Any

from ..compute.timing import timings
from ..core.session import device as session_device
from .blocks import kernel_cache_info

__all__ = ["cluster_report", "format_report", "worker_device"]


def worker_device() -> dict[str, Any]:
    """This process's Vulkan device and what it did, as plain data.

    Creates the session device if there is none yet (``VKNB_DEVICE`` chooses it, as
    :class:`LocalVulkanCluster` sets it for each worker).  Keys: ``pid``, ``index``, ``name``,
    ``type``, ``score``, ``total_memory`` (bytes of device-local memory), ``allocated`` and
    ``used`` (bytes vknb holds from the driver, and in live buffers), ``dispatches`` (kernel
    calls recorded in this process, at most the last 10 000), ``gpu_ms`` (their GPU time),
    ``blocks`` and ``kernel_builds`` (Dask blocks run, and kernels built from the graph: see
    :func:`kernel_cache_info`), ``vknb_device`` (the ``VKNB_DEVICE`` variable, or None).

    Example
    -------
    >>> client.run(vknb.dask.worker_device)                  # doctest: +SKIP
    {'tcp://127.0.0.1:40401': {'index': 0, 'name': 'llvmpipe ...', 'score': 2, ...}, ...}
    >>> vknb.dask.worker_device()["index"] == vknb.device().index
    True
    """
    dev = session_device()
    info = dev.info
    stats = dev.memory_stats()
    recs = timings()
    cache = kernel_cache_info()
    return {
        "pid": os.getpid(),
        "index": dev.index,
        "name": info.name,
        "type": info.type,
        "score": info.score,
        "total_memory": info.total_memory,
        "allocated": stats.allocated,
        "used": stats.used,
        "dispatches": sum(r.dispatches for r in recs),
        "gpu_ms": sum(r.gpu_ms or 0.0 for r in recs),
        "blocks": cache["blocks"],
        "kernel_builds": cache["builds"],
        "vknb_device": os.environ.get("VKNB_DEVICE"),
    }


def cluster_report(client: Any) -> list[dict[str, Any]]:
    """One row per worker of ``client``'s cluster: its address and name, then
    :func:`worker_device`'s keys (sorted by worker name).

    Example
    -------
    >>> rows = vknb.dask.cluster_report(client)              # doctest: +SKIP
    >>> [(r["worker"], r["index"], r["blocks"]) for r in rows]  # doctest: +SKIP
    [('0', 0, 12), ('1', 0, 12)]
    """
    try:  # distributed >= 2025.4 lists only the first 5 workers unless told otherwise
        info = client.scheduler_info(n_workers=-1)
    except TypeError:
        info = client.scheduler_info()
    names = {addr: str(w.get("name", addr)) for addr, w in info["workers"].items()}
    rows = client.run(worker_device)
    out = [{"address": addr, "worker": names.get(addr, addr), **row} for addr, row in rows.items()]
    return sorted(out, key=lambda r: (len(r["worker"]), r["worker"]))


#: The columns of :func:`report_cells` (and of :func:`format_report`).
REPORT_HEAD = [
    "worker",
    "device",
    "score",
    "memory",
    "allocated",
    "dispatches",
    "GPU ms",
    "blocks",
    "kernels built",
]


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def report_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The cells of :func:`cluster_report`'s rows under :data:`REPORT_HEAD`, as text (what
    :func:`format_report` and ``vknb.widgets.ClusterView`` show).

    Example
    -------
    >>> from vknb.dask.workers import report_cells
    >>> report_cells([])
    []
    """
    return [
        [
            str(r.get("worker", "-")),
            f"{r['index']}: {r['name']}",
            str(r["score"]),
            _mib(r["total_memory"]),
            _mib(r["allocated"]),
            str(r["dispatches"]),
            f"{r['gpu_ms']:.2f}",
            str(r["blocks"]),
            str(r["kernel_builds"]),
        ]
        for r in rows
    ]


def format_report(rows: list[dict[str, Any]]) -> str:
    """A text table of :func:`cluster_report`'s rows (or of :func:`worker_device` dicts).

    Example
    -------
    >>> print(vknb.dask.format_report(vknb.dask.cluster_report(client)))  # doctest: +SKIP
    worker  device          score    memory  allocated  dispatches  GPU ms  blocks  kernels built
    0       0: llvmpipe ...     2  2048 MiB     64 MiB          12    3.10      12              1
    1       0: llvmpipe ...     2  2048 MiB     64 MiB          12    3.02      12              1
    """
    table = [REPORT_HEAD, *report_cells(rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(REPORT_HEAD))]
    lines = []
    for row in table:
        cells = [
            c.ljust(w) if i in {0, 1} else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
