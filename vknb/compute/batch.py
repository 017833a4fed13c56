"""Batches: record many kernel calls into one submission, and replay them like a CUDA graph.

Inside ``with vknb.batch() as b:``, calling a kernel records the dispatch instead of submitting
it (the call returns the dispatch's index in the batch).  Barriers are inserted only where a
dispatch reads or writes a buffer that an earlier dispatch since the last barrier wrote, or writes
one that it read, using the reflected ``readonly`` / ``writeonly`` access of each binding.  On
leaving the block the batch is submitted once and waited for (``wait=False`` leaves it running;
``vknb.synchronize()`` or ``b.wait()`` waits), and numpy arrays bound to writable bindings are
written back.

``b.replay()`` submits the recorded command buffer again as is; ``b.replay({i: {"a": 2.0}})``
first re-records it with new push-constant values for dispatch ``i`` (by member name).

Example
-------
>>> with vknb.batch() as b:                                  # doctest: +SKIP
...     for _ in range(100):
...         saxpy(X, Y, a=1.0, grid=n)
>>> b.gpu_ms                                                 # doctest: +SKIP
0.41
>>> b.replay({0: {"a": 3.0}})                                # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _vk
from ..core.device import Device, Submission
from .timing import DispatchRecord, record

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import BoundCall, Kernel
    from ..core.pipeline import ComputePipeline

_local = threading.local()


def current() -> Batch | None:
    """The batch being recorded on this thread, if any."""
    return getattr(_local, "batch", None)


# A recorded dispatch: (kernel, pipeline, sets, push-constant cdata, groups, barrier before it,
# what it keeps alive).  Plain tuples: one is built per recorded call.
_KERNEL, _PIPE, _SETS, _CPUSH, _GROUPS, _BARRIER, _KEEP = range(7)


_cpush_cache: dict[bytes, Any] = {}


def _recorded(
    kernel: Kernel,
    pipe: ComputePipeline,
    sets: Any,
    cpush: Any,
    groups: tuple[int, int, int],
    rmask: int,
    wmask: int,
    keep: Any,
    writeback: Any,
) -> tuple[Any, ...]:
    """What :meth:`Batch._record` takes for one dispatch, with its two possible entries (after
    a barrier or not) built ahead, so that a call repeated in ``Batch.extend`` builds nothing."""
    gx, gy, gz = groups
    return (
        pipe,
        sets,
        cpush,
        gx,
        gy,
        gz,
        rmask,
        wmask,
        (kernel, pipe, sets, cpush, groups, True, keep),
        (kernel, pipe, sets, cpush, groups, False, keep),
        writeback,
    )


def _cpush(push: bytes) -> Any:
    """A cdata view of push-constant bytes, shared between identical values."""
    c = _cpush_cache.get(push)
    if c is None:
        if len(_cpush_cache) > 4096:
            _cpush_cache.clear()
        c = _cpush_cache[push] = _vk.ffi.from_buffer(push) if push else _vk.ffi.NULL
    return c


class Batch:
    """A recorded sequence of dispatches on one device (create with :func:`batch`).

    Attributes
    ----------
    gpu_ms : float or None
        GPU time of the last submission (timestamps around the whole batch).
    host_ms : float
        Wall time of the last submission (submit + wait + write-back).
    record_ms : float
        Time spent recording (the Python side of the kernel calls).

    Example
    -------
    >>> b = vknb.batch()                                     # doctest: +SKIP
    >>> with b:
    ...     k(X, Y, a=1.0, grid=n); k(Y, X, a=2.0, grid=n)
    >>> len(b), b.barriers                                   # doctest: +SKIP
    (2, 1)
    """

    def __init__(self, device: Device | None = None, *, wait: bool = True) -> None:
        from ..core.session import device as session_device

        self.device = device if device is not None else session_device()
        self.device._check_open()
        self.wait_on_exit = wait
        self.entries: list[tuple[Any, ...]] = []  # see _KERNEL.._KEEP
        self.barriers = 0
        self.gpu_ms: float | None = None
        self.host_ms = 0.0
        self.record_ms = 0.0
        self._writeback: list[tuple[np.ndarray, Any]] = []
        # Hazard tracking: each buffer recorded gets a bit; what was written and read since the
        # last barrier are two masks of those bits.
        self._bits: dict[int, int] = {}  # buffer serial -> its bit
        self._masks: dict[int, tuple[list[int], int]] = {}  # id(serials) -> (serials, mask)
        self._wmask = 0
        self._rmask = 0
        self._recording = False
        self._recorded = False
        self._sub: Submission | None = None
        self._t_record = 0.0
        self._pins: list[tuple[Any, Any]] = []  # (pipeline, descriptor pool) pinned
        self._pinned: set[tuple[Any, Any]] = set()
        self._last_pipe: Any = None
        self._last_sets: Any = None
        self._last_push: Any = None
        self._add_pipe: Any = None  # the pipeline and pool of the last add() (pinned)
        self._add_pool: Any = None
        self._name: str | None = None  # the record's kernel name, once known
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        dev = self.device
        self._handles: dict[str, Any] = {}
        pinfo = _vk.new(
            "VkCommandPoolCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                "flags": vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                "queueFamilyIndex": dev.compute_family,
            },
        )
        pp = ffi.new("VkCommandPool*")
        _vk.check(
            lib.vkCreateCommandPool(dev.handle, pinfo, ffi.NULL, pp), "vkCreateCommandPool", "batch"
        )
        self._handles["pool"] = pp[0]
        ainfo = _vk.new(
            "VkCommandBufferAllocateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                "commandPool": pp[0],
                "level": 0,
                "commandBufferCount": 1,
            },
        )
        self._pcmd = ffi.new("VkCommandBuffer*")
        _vk.check(
            lib.vkAllocateCommandBuffers(dev.handle, ainfo, self._pcmd),
            "vkAllocateCommandBuffers",
            "batch",
        )
        self._cmd = self._pcmd[0]
        self._fence = dev.new_fence()
        self._handles["fence"] = self._fence
        self._pfence = ffi.new("VkFence*", self._fence)
        from ..core.pipeline import (
            _TsReader,
            end_timestamp_stage,
            timestamp_buffer,
            timestamp_readout,
            timestamps_enabled,
        )

        self.timestamps = dev.timestamp_bits > 0 and timestamps_enabled()
        self._ts_end = end_timestamp_stage(dev)
        self._ts_host = self.timestamps and timestamp_readout(dev) == "host"
        self._reader: _TsReader | None = None
        if self.timestamps:
            qinfo = _vk.new(
                "VkQueryPoolCreateInfo",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                    "queryType": vk.VK_QUERY_TYPE_TIMESTAMP,
                    "queryCount": 2,
                },
            )
            pq = ffi.new("VkQueryPool*")
            _vk.check(
                lib.vkCreateQueryPool(dev.handle, qinfo, ffi.NULL, pq), "vkCreateQueryPool", "batch"
            )
            self._handles["query"] = pq[0]
            if not self._ts_host:  # copied into mapped memory by the command buffer
                self._handles["ts_buffer"] = timestamp_buffer(dev, 2, "batch")
            self._reader = _TsReader(dev, pq[0], self._handles.get("ts_buffer"))
        self._submit_info = _vk.new(
            "VkSubmitInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                "commandBufferCount": 1,
                "pCommandBuffers": self._pcmd,
            },
        )
        self._barrier = _vk.new(
            "VkMemoryBarrier",
            {
                "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                "srcAccessMask": vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_SHADER_READ_BIT,
                "dstAccessMask": vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT,
            },
        )
        # Vulkan 1.3 (synchronization2, core there): the same barrier in one struct, so that a
        # dependent dispatch's barrier costs one 2-argument call (0.7 against 1.4 µs through
        # cffi on the lavapipe host).
        self._dep: Any = None
        if dev.api_version >= _vk.make_version(1, 3):
            self._barrier2 = _vk.new(
                "VkMemoryBarrier2",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER_2,
                    "srcStageMask": vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    "srcAccessMask": vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_SHADER_READ_BIT,
                    "dstStageMask": vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    "dstAccessMask": vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT,
                },
            )
            self._dep = _vk.new(
                "VkDependencyInfo",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_DEPENDENCY_INFO,
                    "memoryBarrierCount": 1,
                    "pMemoryBarriers": self._barrier2,
                },
            )
        self._end_barrier = _vk.new(
            "VkMemoryBarrier",
            {
                "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                "srcAccessMask": vk.VK_ACCESS_SHADER_WRITE_BIT,
                "dstAccessMask": vk.VK_ACCESS_HOST_READ_BIT
                | vk.VK_ACCESS_TRANSFER_READ_BIT
                | vk.VK_ACCESS_SHADER_READ_BIT
                | vk.VK_ACCESS_SHADER_WRITE_BIT,
            },
        )
        self._begin_info = _vk.new(
            "VkCommandBufferBeginInfo", {"sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO}
        )
        dev._adopt(self)
        self._finalizer = weakref.finalize(
            self, _destroy_batch, dev, self._handles, self._pcmd, self._pins
        )

    # -- recording -----------------------------------------------------------------------

    def __enter__(self) -> Batch:
        if current() is not None:
            raise RuntimeError("vknb.batch blocks do not nest")
        if self._sub is not None and not self._sub._done:
            self._sub.wait()
        self._reset_recording()
        self._begin()
        _local.batch = self
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        _local.batch = None
        if exc_type is not None:
            self._end()
            self.entries.clear()
            self._writeback.clear()
            return
        self._end()
        self.record_ms = (time.perf_counter() - self._t_record) * 1e3
        self.submit(wait=self.wait_on_exit)

    def _unpin(self) -> None:
        pins, self._pins[:] = list(self._pins), []
        self._pinned.clear()
        for pipe, pool in pins:
            pipe.unpin_pool(pool)

    def _reset_recording(self) -> None:
        self._unpin()
        self.entries = []
        self._writeback = []
        self._bits = {}
        self._masks = {}
        self._wmask = self._rmask = 0
        self.barriers = 0
        self._add_pipe = self._add_pool = None
        self._name = None

    def _begin(self) -> None:
        lib = _vk.lib
        self._t_record = time.perf_counter()
        _vk.check(
            lib.vkBeginCommandBuffer(self._cmd, self._begin_info), "vkBeginCommandBuffer", "batch"
        )
        if self.timestamps:
            if not self._ts_host:  # else reset from the host at each submit
                lib.vkCmdResetQueryPool(self._cmd, self._handles["query"], 0, 2)
            lib.vkCmdWriteTimestamp(self._cmd, 0x1, self._handles["query"], 0)  # TOP_OF_PIPE
        self._last_pipe = None
        self._last_sets = None
        self._last_push = None
        self._recording = True

    def _end(self) -> None:
        lib, vk = _vk.lib, _vk.vk
        cmd = self._cmd
        lib.vkCmdPipelineBarrier(
            cmd,
            vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            vk.VK_PIPELINE_STAGE_HOST_BIT
            | vk.VK_PIPELINE_STAGE_TRANSFER_BIT
            | vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            0,
            1,
            self._end_barrier,
            0,
            _vk.ffi.NULL,
            0,
            _vk.ffi.NULL,
        )
        if self.timestamps:
            q = self._handles["query"]
            lib.vkCmdWriteTimestamp(cmd, self._ts_end, q, 1)
            if self._reader is not None and self._reader.mapped is not None:
                tsb = self._handles["ts_buffer"]
                lib.vkCmdCopyQueryPoolResults(cmd, q, 0, 2, tsb.handle, 0, 8, 0x3)  # 64-bit, WAIT
        _vk.check(lib.vkEndCommandBuffer(cmd), "vkEndCommandBuffer", "batch")
        self._recording = False
        self._recorded = True

    def add(
        self,
        kernel: Kernel,
        pipe: ComputePipeline,
        sets: Any,
        cpush: Any,
        groups: tuple[int, int, int],
        reads: list[int],
        writes: list[int],
        keep: Any,
        writeback: Any,
    ) -> int:
        """Record one dispatch (called by Kernel.__call__ inside a batch block).

        ``cpush`` is the push-constant data as cdata (see :func:`_cpush`); ``keep`` is held
        alive as long as the batch.
        """
        pool = pipe._handles["descriptor_pool"]
        if pipe is not self._add_pipe or pool is not self._add_pool:
            self._pin(kernel, pipe, pool)  # (a pipeline's pool changes on a reset)
        mask = self._mask
        return self._record(
            (
                _recorded(
                    kernel, pipe, sets, cpush, groups, mask(reads), mask(writes), keep, writeback
                ),
            )
        )

    def extend(self, calls: Iterable[BoundCall]) -> range:
        """Record bound calls (:meth:`Kernel.bind`) in order; return their indices in the batch.

        The same as calling each inside the block, with the same barriers, but each distinct
        call is checked once, and the loop runs inside vknb: the cheapest way to record many
        dispatches, such as the steps of an iteration.

        Example
        -------
        >>> step = k.bind(X, Y, a=0.5, grid=X.size)
        >>> with vknb.batch() as b:
        ...     b.extend([step] * 1000)
        range(0, 1000)
        """
        from .kernel import BoundCall as _BoundCall

        if not self._recording:
            raise RuntimeError("this batch is not recording (use `with vknb.batch() as b:`)")
        seq = calls if isinstance(calls, (list, tuple)) else list(calls)
        distinct = dict(zip(map(id, seq), seq, strict=True))  # (the calls stay alive in seq)
        mask = self._mask
        prepared: dict[int, tuple[Any, ...]] = {}
        for key, c in distinct.items():  # each distinct call checked and prepared once
            if type(c) is not _BoundCall:
                raise TypeError(
                    f"Batch.extend takes bound calls (kernel.bind(...)), got {type(c).__name__}"
                )
            k, pipe, sets, cpush, groups, reads, writes, bufs, wb = c._item()
            pool = pipe._handles["descriptor_pool"]
            if pipe is not self._add_pipe or pool is not self._add_pool:
                self._pin(k, pipe, pool)  # before the next call's sets may rotate the pool
            prepared[key] = _recorded(
                k, pipe, sets, cpush, groups, mask(reads), mask(writes), bufs, wb
            )
        start = len(self.entries)
        end = self._record(map(prepared.__getitem__, map(id, seq)))  # no Python per item here
        return range(start, end + 1)

    def _mask(self, serials: list[int]) -> int:
        """The bits of these buffers (by serial); a list seen before is looked up by identity
        (a repeated call brings the same lists: see ``Kernel._Fast``)."""
        hit = self._masks.get(id(serials))
        if hit is not None and hit[0] is serials:
            return hit[1]
        bits = self._bits
        m = 0
        for serial in serials:
            bit = bits.get(serial)
            if bit is None:
                bit = bits[serial] = 1 << len(bits)
            m |= bit
        self._masks[id(serials)] = (serials, m)  # (the list kept: its id stays its own)
        return m

    def _record(self, items: Iterable[tuple[Any, ...]]) -> int:
        """Record dispatches (items made by :func:`_recorded`, their pools pinned); return the index
        of the last one.

        A barrier goes before a dispatch that reads or writes what was written since the last
        barrier, or writes what was read since then.
        """
        if not self._recording:
            raise RuntimeError("this batch is not recording (use `with vknb.batch() as b:`)")
        lib = _vk.lib
        cmd = self._cmd
        entries = self.entries
        append = entries.append
        dep = self._dep
        barrier2 = lib.vkCmdPipelineBarrier2 if dep is not None else None
        dispatch = lib.vkCmdDispatch
        bind_sets = lib.vkCmdBindDescriptorSets
        null = _vk.ffi.NULL
        last_pipe, last_sets, last_push = self._last_pipe, self._last_sets, self._last_push
        wm_all, rm_all, barriers = self._wmask, self._rmask, self.barriers
        try:
            for pipe, sets, cpush, gx, gy, gz, rm, wm, after_barrier, plain, writeback in items:
                if pipe is not last_pipe:
                    lib.vkCmdBindPipeline(cmd, 1, pipe.handle)
                    last_pipe, last_sets, last_push = pipe, None, None
                if wm_all & (rm | wm) or rm_all & wm:
                    wm_all = rm_all = 0
                    barriers += 1
                    if barrier2 is not None:  # the hot case, inline
                        barrier2(cmd, dep)
                    else:
                        self._compute_barrier(cmd)
                    append(after_barrier)
                else:
                    append(plain)
                wm_all |= wm
                rm_all |= rm
                if sets is not last_sets and pipe.nsets:
                    bind_sets(cmd, 1, pipe.layout, 0, pipe.nsets, sets, 0, null)
                    last_sets = sets
                if cpush is not last_push and pipe.push_size:
                    lib.vkCmdPushConstants(cmd, pipe.layout, 0x20, 0, pipe.push_size, cpush)
                    last_push = cpush
                dispatch(cmd, gx, gy, gz)
                if writeback:
                    self._writeback.extend(writeback)
        finally:
            self._last_pipe, self._last_sets, self._last_push = last_pipe, last_sets, last_push
            self._wmask, self._rmask, self.barriers = wm_all, rm_all, barriers
        return len(entries) - 1

    def _pin(self, kernel: Kernel, pipe: ComputePipeline, pool: Any) -> None:
        """Keep the sets recorded from ``pool`` alive past a pool reset (once per pipeline)."""
        if pipe.device is not self.device:
            raise ValueError(
                f"{kernel.name} runs on {pipe.device.label} but the batch records for "
                f"{self.device.label}"
            )
        pin = (pipe, pool)
        if pin not in self._pinned:  # the sets recorded here must outlive a pool reset
            pipe.pin_pool()
            self._pinned.add(pin)
            self._pins.append(pin)
        self._add_pipe, self._add_pool = pipe, pool

    def _compute_barrier(self, cmd: Any) -> None:
        """COMPUTE_SHADER -> COMPUTE_SHADER, shader reads and writes on both sides."""
        dep = self._dep
        if dep is not None:
            _vk.lib.vkCmdPipelineBarrier2(cmd, dep)
        else:
            null = _vk.ffi.NULL
            _vk.lib.vkCmdPipelineBarrier(cmd, 0x800, 0x800, 0, 1, self._barrier, 0, null, 0, null)

    def _emit(
        self,
        cmd: Any,
        pipe: ComputePipeline,
        sets: Any,
        push: Any,
        groups: tuple[int, int, int],
        barrier: bool,
    ) -> None:
        lib = _vk.lib
        if barrier:
            self._compute_barrier(cmd)
        if pipe is not self._last_pipe:
            lib.vkCmdBindPipeline(cmd, 1, pipe.handle)
            self._last_pipe = pipe
            self._last_sets = None
            self._last_push = None
        if pipe.nsets and sets is not self._last_sets:
            lib.vkCmdBindDescriptorSets(cmd, 1, pipe.layout, 0, pipe.nsets, sets, 0, _vk.ffi.NULL)
            self._last_sets = sets
        # Push-constant values persist across dispatches with the same layout: push on change.
        if pipe.push_size and push is not self._last_push:
            lib.vkCmdPushConstants(cmd, pipe.layout, 0x20, 0, pipe.push_size, push)
            self._last_push = push
        lib.vkCmdDispatch(cmd, groups[0], groups[1], groups[2])

    # -- submission ----------------------------------------------------------------------

    def submit(self, wait: bool = True) -> Submission | None:
        """Submit the recorded command buffer once more (``replay`` without changes)."""
        if self._recording:
            raise RuntimeError("the batch is still recording; leave the `with` block first")
        if not self._recorded:
            raise RuntimeError("nothing recorded: use `with b:` and call kernels inside")
        dev = self.device
        dev._check_open()
        if self._sub is not None and not self._sub._done:
            self._sub.wait()
        lib = _vk.lib
        t0 = time.perf_counter()
        with dev._lock:
            _vk.check(lib.vkResetFences(dev.handle, 1, self._pfence), "vkResetFences", "batch")
            if self._ts_host:
                lib.vkResetQueryPool(dev.handle, self._handles["query"], 0, 2)
            _vk.check(
                lib.vkQueueSubmit(dev.compute_queue, 1, self._submit_info, self._fence),
                "vkQueueSubmit",
                "batch",
            )
            self._handles["submitted"] = True
        sub = Submission(
            dev,
            None,
            self._fence,
            self.entries,
            f"batch of {len(self.entries)}",
            on_done=lambda: self._finish(t0),
        )
        self._sub = sub
        if wait:
            sub.wait()
            return None
        dev._pending.append(sub)
        return sub

    def _finish(self, t0: float) -> DispatchRecord:
        for arr, buf in self._writeback:
            buf.read(out=arr)
        gpu = self._reader.read(0) if self._reader is not None else None
        self.gpu_ms = gpu
        self.host_ms = (time.perf_counter() - t0) * 1e3
        name = self._name
        if name is None:
            names = sorted({e[_KERNEL].name for e in self.entries})
            name = self._name = f"batch[{', '.join(names)}]"
        rec = DispatchRecord(
            kernel=name,
            groups=(0, 0, 0),
            local_size=(0, 0, 0),
            gpu_ms=gpu,
            host_ms=self.host_ms,
            device=self.device.info.name,
            dispatches=len(self.entries),
        )
        record(rec)
        return rec

    def wait(self) -> None:
        """Wait for the last submission (and write numpy arrays back)."""
        if self._sub is not None and not self._sub._done:
            self._sub.wait()

    def replay(
        self, updates: Mapping[int, Mapping[str, Any]] | None = None, *, wait: bool = True
    ) -> Submission | None:
        """Submit the batch again; ``updates`` gives new push-constant values per dispatch index.

        Example
        -------
        >>> b.replay({0: {"a": 2.0}, 5: {"a": 0.5}})          # doctest: +SKIP
        """
        if updates:
            self.wait()
            for i, values in updates.items():
                if not 0 <= i < len(self.entries):
                    raise IndexError(f"batch has {len(self.entries)} dispatches; no dispatch {i}")
                e = self.entries[i]
                kernel = e[_KERNEL]
                pc = kernel.reflection.push_constants
                if pc is None:
                    raise TypeError(f"dispatch {i} ({kernel.name}) has no push constants")
                old = np.frombuffer(_vk.ffi.buffer(e[_CPUSH], pc.size), dtype=pc.dtype)[0]
                merged = {m.name: _item(old[m.name]) for m in pc.members if m.array_length != 0}
                merged.update(values)
                cpush = _cpush(kernel._push_bytes(merged))
                self.entries[i] = (*e[:_CPUSH], cpush, *e[_CPUSH + 1 :])
            self._rerecord()
        return self.submit(wait=wait)

    def _rerecord(self) -> None:
        self._begin()
        for e in self.entries:
            self._emit(self._cmd, e[_PIPE], e[_SETS], e[_CPUSH], e[_GROUPS], e[_BARRIER])
        self._end()

    def __len__(self) -> int:
        return len(self.entries)

    def close(self) -> None:
        """Free the batch's command buffer and what it keeps alive (idempotent)."""
        self._writeback = []
        self.entries = []
        self._finalizer()

    def __repr__(self) -> str:
        return (
            f"<vknb.Batch {len(self.entries)} dispatches, {self.barriers} barriers"
            + (f", gpu {self.gpu_ms:.3f} ms" if self.gpu_ms is not None else "")
            + ">"
        )


def _destroy_batch(dev: Device, handles: dict[str, Any], pcmd: Any, pins: list[Any]) -> None:
    if dev._closed:
        return
    ffi, lib = _vk.ffi, _vk.lib
    try:
        if handles.get("submitted"):  # a fence never submitted would never signal
            lib.vkWaitForFences(
                dev.handle, 1, ffi.new("VkFence*", handles["fence"]), 1, _vk.UINT64_MAX
            )
        lib.vkFreeCommandBuffers(dev.handle, handles["pool"], 1, pcmd)
        lib.vkDestroyCommandPool(dev.handle, handles.pop("pool"), ffi.NULL)
        lib.vkDestroyFence(dev.handle, handles.pop("fence"), ffi.NULL)
        if "query" in handles:
            lib.vkDestroyQueryPool(dev.handle, handles.pop("query"), ffi.NULL)
        if "ts_buffer" in handles:
            handles.pop("ts_buffer").close()
        for pipe, pool in pins:  # the recorded sets are no longer needed
            pipe.unpin_pool(pool)
        pins.clear()
    except Exception:  # pragma: no cover
        import logging

        logging.getLogger("vknb").exception("destroying a batch failed")


def _item(v: Any) -> Any:
    """A numpy field value as a Python value the Kernel's packer accepts."""
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, np.void):  # a nested struct
        return {n: _item(v[n]) for n in v.dtype.names or ()}
    return v.item() if hasattr(v, "item") else v


def batch(device: Device | None = None, *, wait: bool = True) -> Batch:
    """Record kernel calls into one submission: ``with vknb.batch() as b: ...``.

    Parameters
    ----------
    device : Device, optional
        Default: the session device.
    wait : bool
        Wait for the GPU when the block ends (default); else leave it running.

    Example
    -------
    >>> with vknb.batch() as b:                              # doctest: +SKIP
    ...     k(X, Y, a=1.0, grid=n)
    ...     k(Y, Z, a=2.0, grid=n)
    """
    return Batch(device, wait=wait)
