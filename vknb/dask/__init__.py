"""Scale out with Dask: kernels over the blocks of Dask arrays, one worker per Vulkan device.

An optional extra: ``pip install 'vknb[dask]'`` (``dask[array]`` and ``distributed``).  Dask is
imported only when a graph is built or a cluster made, so ``import vknb.dask`` is cheap.

- :func:`map_blocks` / :func:`map_overlap`: run a :class:`vknb.Kernel` on every block of Dask
  arrays (with halos for stencils); the result is a Dask array of the kernel's output binding.
  Each worker process builds a kernel once (:func:`kernel_cache_info`).
- :class:`LocalVulkanCluster`: a ``distributed.LocalCluster`` with one worker process per
  device, each pinned to it; :class:`VulkanPlugin` gives any ``distributed`` worker its device.
- :func:`worker_device`, :func:`cluster_report`, :func:`format_report`: which device each worker
  runs on, its memory, the dispatches and blocks it ran (plain data, and a text table).

Progress bars (``distributed.progress``) and the dashboard work as for any Dask graph: tasks
are named ``vknb-<kernel name>``.

Example
-------
>>> import dask.array as da, numpy as np, vknb, vknb.dask
>>> k = vknb.compile('''
... layout(local_size_x = 64) in;
... layout(binding = 0) readonly buffer X { float x[]; };
... layout(binding = 1) writeonly buffer Y { float y[]; };
... layout(push_constant) uniform P { uint n; };
... void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] = 2.0 * x[i]; }
... ''', name="double")
>>> x = da.arange(100, chunks=30, dtype=np.float32)
>>> y = vknb.dask.map_blocks(k, x, n=lambda x: x.size)
>>> bool((y.compute() == 2 * np.arange(100, dtype=np.float32)).all())
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .blocks import (
    KernelHandle,
    auto_grid,
    clear_kernel_cache,
    kernel_cache_info,
    kernel_key,
    map_blocks,
    map_overlap,
)
from .workers import cluster_report, format_report, worker_device

if TYPE_CHECKING:  # pragma: no cover - loaded on first access (they import distributed)
    from .cluster import LocalVulkanCluster, VulkanPlugin

__all__ = [
    "KernelHandle",
    "LocalVulkanCluster",
    "VulkanPlugin",
    "auto_grid",
    "clear_kernel_cache",
    "cluster_report",
    "format_report",
    "kernel_cache_info",
    "kernel_key",
    "map_blocks",
    "map_overlap",
    "worker_device",
]

_LAZY = {"LocalVulkanCluster": "cluster", "VulkanPlugin": "cluster"}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'vknb.dask' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f".{mod}", __name__), name)
    except ImportError as e:
        raise ImportError(
            f"vknb.dask.{name} needs distributed: `pip install 'vknb[dask]'` ({e})"
        ) from e
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
