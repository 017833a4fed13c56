"""Workers with a Vulkan device each: :class:`VulkanPlugin`, :class:`LocalVulkanCluster`.

This module imports ``distributed`` (``vknb.dask`` loads it on first use of either name).

Example
-------
>>> from distributed import Client
>>> cluster = vknb.dask.LocalVulkanCluster(n_workers=2)     # doctest: +SKIP
>>> client = Client(cluster)                                 # doctest: +SKIP
>>> client.run(vknb.dask.worker_device)                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import dask
from distributed import LocalCluster, WorkerPlugin

from ..core.instance import devices as vulkan_devices
from ..core.session import device as session_device
from ..core.session import use
from .workers import worker_device

__all__ = ["LocalVulkanCluster", "VulkanPlugin"]

log = logging.getLogger("vknb.dask")

DeviceChoice = int | str | Callable[[Any], int | str] | None


class VulkanPlugin(WorkerPlugin):
    """Give a ``distributed`` worker its Vulkan device, and bring it up before the first task.

    Register it on any cluster (``client.register_plugin(VulkanPlugin())``, also for workers
    that join later), or pass it to workers (``plugins={VulkanPlugin(0)}``).  On set-up the
    worker's session device becomes ``device`` (``VKNB_DEVICE`` is set to it in the worker's
    environment too), and is created at once; :attr:`info` then holds :func:`worker_device`'s
    dict.  Kernels sent to the worker run there.

    Parameters
    ----------
    device : int, str, callable or None
        A device index or name substring (as for :func:`vknb.use`); a callable of the
        ``distributed.Worker`` that returns one (``lambda w: int(w.name) % 2`` spreads workers
        named 0, 1, 2... over two devices); None keeps the worker's own choice
        (``VKNB_DEVICE``, else the best-scored device).

    Example
    -------
    >>> client.register_plugin(vknb.dask.VulkanPlugin(device=0))  # doctest: +SKIP
    >>> client.run(lambda: vknb.dask.worker_device()["index"])   # doctest: +SKIP
    {'tcp://127.0.0.1:35011': 0, 'tcp://127.0.0.1:40373': 0}
    """

    name = "vknb-device"

    def __init__(self, device: DeviceChoice = None) -> None:
        if not (device is None or callable(device) or isinstance(device, (int, str))) or (
            isinstance(device, bool)
        ):
            raise TypeError(
                f"VulkanPlugin(device=): an index, a name, a callable or None, got {device!r}"
            )
        self.device = device
        self.info: dict[str, Any] | None = None

    def setup(self, worker: Any) -> None:
        """Called by ``distributed`` on each worker: choose its device and bring it up.

        Example
        -------
        >>> VulkanPlugin(0).setup(worker)                     # doctest: +SKIP
        """
        choice = self.device(worker) if callable(self.device) else self.device
        if choice is not None:
            os.environ["VKNB_DEVICE"] = str(choice)
            use(choice)
        else:
            session_device()
        self.info = worker_device()
        log.info(
            "worker %s runs on Vulkan device %s: %s",
            getattr(worker, "name", "?"),
            self.info["index"],
            self.info["name"],
        )

    def __repr__(self) -> str:
        return f"VulkanPlugin(device={self.device!r})"


class LocalVulkanCluster(LocalCluster):
    """A ``distributed.LocalCluster`` with one worker process per Vulkan device of this host.

    Like ``dask_cuda.LocalCUDACluster``: worker ``i`` is pinned to device
    ``devices[i % len(devices)]`` (``VKNB_DEVICE=<index>`` in its environment, and a
    :class:`VulkanPlugin` that brings the device up when the worker starts).  Workers are
    processes started with the ``spawn`` method (a forked child cannot use its parent's
    Vulkan objects), with one thread each by default: a device runs one submission at a time
    anyway.  On a host with one device, ``n_workers`` workers share it.  A worker that dies is
    restarted by its nanny on the same device, and Dask reruns its tasks.

    Parameters
    ----------
    n_workers : int, optional
        Default: one per device in ``devices``.
    devices : sequence of int, optional
        The device indices to use (like ``CUDA_VISIBLE_DEVICES``); default: every device
        :func:`vknb.devices` lists.
    threads_per_worker : int
        Threads per worker process (default 1).
    memory_limit : str or int
        Host memory per worker, as for ``LocalCluster``; ``"auto"`` splits the machine's
        memory between the workers.
    **kwargs
        Passed to ``distributed.LocalCluster`` (``dashboard_address``, ``silence_logs``...).

    Example
    -------
    >>> from distributed import Client
    >>> with vknb.dask.LocalVulkanCluster() as cluster, Client(cluster) as client:
    ...     y = vknb.dask.map_blocks(saxpy, x, y0, a=2.0).compute()   # doctest: +SKIP
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        devices: Sequence[int] | None = None,
        threads_per_worker: int = 1,
        memory_limit: str | int | float | None = "auto",
        **kwargs: Any,
    ) -> None:
        from distributed.worker_memory import parse_memory_limit

        infos = vulkan_devices()
        indices = [d.index for d in infos] if devices is None else [int(i) for i in devices]
        bad = [i for i in indices if not 0 <= i < len(infos)]
        if not indices or bad:
            raise ValueError(
                f"LocalVulkanCluster: no device {bad or indices}; this host has "
                f"{', '.join(f'{d.index}: {d.name}' for d in infos) or 'none'}"
            )
        if n_workers is None:
            n_workers = len(indices)
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0:
            raise ValueError(
                f"LocalVulkanCluster: n_workers must be an int >= 0, got {n_workers!r}"
            )
        if kwargs.pop("processes", True) is not True:
            raise ValueError("LocalVulkanCluster runs each worker in its own process")
        method = dask.config.get("distributed.worker.multiprocessing-method")
        if method == "fork":
            raise ValueError(
                "LocalVulkanCluster: distributed.worker.multiprocessing-method is 'fork'; Vulkan "
                "workers must be spawned: dask.config.set({'distributed.worker."
                "multiprocessing-method': 'spawn'})"
            )
        self.vulkan_devices = indices
        if memory_limit == "auto":
            memory_limit = parse_memory_limit("auto", 1, max(n_workers, 1), logger=log)
        super().__init__(
            n_workers=0,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit,
            **kwargs,
        )
        self.scale(n_workers)
        if not self.asynchronous:
            self.sync(self._correct_state)

    def new_worker_spec(self) -> dict[Any, dict[str, Any]]:
        """The next worker's spec: LocalCluster's, pinned to the next device in turn.

        Called by ``scale()``; worker ``i`` gets ``devices[i % len(devices)]``.

        Example
        -------
        >>> cluster.scale(3)                                      # doctest: +SKIP
        >>> [cluster.device_of(n) for n in cluster.worker_spec]  # doctest: +SKIP
        [0, 1, 0]
        """
        ((name, spec),) = super().new_worker_spec().items()
        i = name if isinstance(name, int) else len(self.worker_spec)
        index = self.vulkan_devices[i % len(self.vulkan_devices)]
        options = dict(spec["options"])
        options["env"] = {**(options.get("env") or {}), "VKNB_DEVICE": str(index)}
        plugins = [p for p in options.get("plugins") or () if not isinstance(p, VulkanPlugin)]
        options["plugins"] = {*plugins, VulkanPlugin(index)}
        return {name: {**spec, "options": options}}

    def device_of(self, name: Any) -> int:
        """The device index of worker ``name`` (as LocalCluster names them: 0, 1, ...).

        Example
        -------
        >>> cluster.device_of(1)                                  # doctest: +SKIP
        1
        """
        env = self.worker_spec[name]["options"].get("env") or {}
        return int(env["VKNB_DEVICE"])
