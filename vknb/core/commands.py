"""Recording commands: dispatches with their bindings and barriers, and timestamp queries.

One :class:`Recorder` writes every dispatch vknb records, whether a kernel call's own command
buffer or a batch: it binds the pipeline, descriptor sets and push constants only when they
change, and puts a compute barrier before a dispatch only where it reads or writes what an
earlier dispatch since the last barrier wrote, or writes what one read (hazards tracked as bit
masks, one bit per buffer).  :class:`Timestamps` owns a query pool and reads its results.

Example
-------
>>> rec = Recorder(vknb.device())                            # doctest: +SKIP
>>> rec.emit(cmd, pipeline, sets, push, (4, 1, 1))           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import _vk, config
from .._vk import constants as C
from .buffer import USAGE_TRANSFER_DST, Buffer

if TYPE_CHECKING:  # pragma: no cover
    from .device import Device

# One dispatch as :meth:`Recorder.emit_many` takes it (see :func:`dispatch_item`):
# (pipeline, sets, push cdata, gx, gy, gz, read mask, write mask, entry after a barrier,
#  entry without one, extra)
DispatchItem = tuple[Any, ...]

_cpush_cache: dict[bytes, Any] = {}


def push_cdata(push: bytes) -> Any:
    """A cdata view of push-constant bytes, shared between identical values."""
    c = _cpush_cache.get(push)
    if c is None:
        if len(_cpush_cache) > 4096:
            _cpush_cache.clear()
        c = _cpush_cache[push] = _vk.ffi.from_buffer(push) if push else _vk.ffi.NULL
    return c


def dispatch_item(
    pipe: Any,
    sets: Any,
    cpush: Any,
    groups: tuple[int, int, int],
    rmask: int,
    wmask: int,
    entry_barrier: Any,
    entry_plain: Any,
    extra: Any = None,
) -> DispatchItem:
    """One dispatch for :meth:`Recorder.emit_many`, with the two entries its caller keeps
    (one for each case: recorded after a barrier or not) built ahead, so that a call repeated
    many times builds nothing while recording."""
    gx, gy, gz = groups
    return (pipe, sets, cpush, gx, gy, gz, rmask, wmask, entry_barrier, entry_plain, extra)


class Recorder:
    """Records dispatches into command buffers of ``device`` (binding only what changed).

    ``pipe`` arguments are :class:`~vknb.core.pipeline.ComputePipeline` objects (anything with
    ``handle``, ``layout``, ``nsets`` and ``push_size``).
    """

    def __init__(self, device: Device) -> None:
        vk = _vk.vk
        self.device = device
        self.reset_state()
        self.barriers = 0
        self.wmask = 0  # buffers written since the last barrier
        self.rmask = 0  # buffers read since the last barrier
        self._barrier = _vk.new(
            "VkMemoryBarrier",
            {
                "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                "srcAccessMask": C.ACCESS_SHADER_WRITE_BIT | C.ACCESS_SHADER_READ_BIT,
                "dstAccessMask": C.ACCESS_SHADER_READ_BIT | C.ACCESS_SHADER_WRITE_BIT,
            },
        )
        # Vulkan 1.3 (synchronization2, core there): the same barrier in one struct, so that a
        # dependent dispatch's barrier costs one 2-argument call.
        self._dep: Any = None
        if device.api_version >= _vk.make_version(1, 3):
            self._barrier2 = _vk.new(
                "VkMemoryBarrier2",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER_2,
                    "srcStageMask": C.PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    "srcAccessMask": C.ACCESS_SHADER_WRITE_BIT | C.ACCESS_SHADER_READ_BIT,
                    "dstStageMask": C.PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    "dstAccessMask": C.ACCESS_SHADER_READ_BIT | C.ACCESS_SHADER_WRITE_BIT,
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
                "srcAccessMask": C.ACCESS_SHADER_WRITE_BIT | C.ACCESS_TRANSFER_WRITE_BIT,
                "dstAccessMask": C.ACCESS_HOST_READ_BIT
                | C.ACCESS_TRANSFER_READ_BIT
                | C.ACCESS_SHADER_READ_BIT
                | C.ACCESS_SHADER_WRITE_BIT
                | C.ACCESS_TRANSFER_WRITE_BIT,
            },
        )
        self._begin_info = _vk.new(
            "VkCommandBufferBeginInfo", {"sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO}
        )

    def reset_state(self) -> None:
        """Forget what is bound (a new command buffer starts with nothing bound)."""
        self.last_pipe: Any = None
        self.last_sets: Any = None
        self.last_push: Any = None

    def reset_hazards(self) -> None:
        """Forget what was read and written (a new recording)."""
        self.barriers = 0
        self.wmask = self.rmask = 0

    def begin(self, cmd: Any, label: str) -> None:
        """``vkBeginCommandBuffer``, bindings forgotten."""
        _vk.check(
            _vk.lib.vkBeginCommandBuffer(cmd, self._begin_info), "vkBeginCommandBuffer", label
        )
        self.reset_state()

    def end(self, cmd: Any, label: str) -> None:
        """The final barrier (shader writes visible to the host, transfers and later
        dispatches), then ``vkEndCommandBuffer``."""
        null = _vk.ffi.NULL
        _vk.lib.vkCmdPipelineBarrier(
            cmd,
            C.PIPELINE_STAGE_COMPUTE_SHADER_BIT | C.PIPELINE_STAGE_TRANSFER_BIT,
            C.PIPELINE_STAGE_HOST_BIT
            | C.PIPELINE_STAGE_TRANSFER_BIT
            | C.PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            0,
            1,
            self._end_barrier,
            0,
            null,
            0,
            null,
        )
        _vk.check(_vk.lib.vkEndCommandBuffer(cmd), "vkEndCommandBuffer", label)

    def compute_barrier(self, cmd: Any) -> None:
        """COMPUTE_SHADER -> COMPUTE_SHADER, shader reads and writes on both sides."""
        dep = self._dep
        if dep is not None:
            _vk.lib.vkCmdPipelineBarrier2(cmd, dep)
        else:
            null = _vk.ffi.NULL
            stage = C.PIPELINE_STAGE_COMPUTE_SHADER_BIT
            _vk.lib.vkCmdPipelineBarrier(cmd, stage, stage, 0, 1, self._barrier, 0, null, 0, null)

    def emit(
        self,
        cmd: Any,
        pipe: Any,
        sets: Any,
        cpush: Any,
        groups: tuple[int, int, int],
        barrier: bool = False,
    ) -> None:
        """Record one dispatch (and a barrier before it when ``barrier``)."""
        lib = _vk.lib
        if barrier:
            self.compute_barrier(cmd)
        if pipe is not self.last_pipe:
            lib.vkCmdBindPipeline(cmd, C.PIPELINE_BIND_POINT_COMPUTE, pipe.handle)
            self.last_pipe = pipe
            self.last_sets = None
            self.last_push = None
        if pipe.nsets and sets is not self.last_sets:
            lib.vkCmdBindDescriptorSets(
                cmd,
                C.PIPELINE_BIND_POINT_COMPUTE,
                pipe.layout,
                0,
                pipe.nsets,
                sets,
                0,
                _vk.ffi.NULL,
            )
            self.last_sets = sets
        # Push-constant values persist across dispatches with the same layout: push on change.
        if pipe.push_size and cpush is not self.last_push:
            lib.vkCmdPushConstants(
                cmd, pipe.layout, C.SHADER_STAGE_COMPUTE_BIT, 0, pipe.push_size, cpush
            )
            self.last_push = cpush
        lib.vkCmdDispatch(cmd, groups[0], groups[1], groups[2])

    def emit_checked(
        self,
        cmd: Any,
        pipe: Any,
        sets: Any,
        cpush: Any,
        groups: tuple[int, int, int],
        rmask: int,
        wmask: int,
    ) -> bool:
        """Record one dispatch that reads the buffers of ``rmask`` and writes those of
        ``wmask``, with a barrier before it where a hazard needs one; return whether it got one
        (the single-dispatch form of :meth:`emit_many`)."""
        wm_all, rm_all = self.wmask, self.rmask
        barrier = bool(wm_all & (rmask | wmask) or rm_all & wmask)
        if barrier:
            self.barriers += 1
            self.compute_barrier(cmd)
            self.wmask, self.rmask = wmask, rmask
        else:
            self.wmask, self.rmask = wm_all | wmask, rm_all | rmask
        self.emit(cmd, pipe, sets, cpush, groups)
        return barrier

    def emit_many(self, cmd: Any, items: Iterable[DispatchItem], entries: list[Any]) -> list[Any]:
        """Record dispatches with barriers where hazards need them; append each one's entry
        (after a barrier or not) to ``entries``; return the extras of the items that have one.

        The loop is the hot path of recording a batch: everything it calls is bound to a local
        name first, and an item brings what it needs precomputed (:func:`dispatch_item`).
        """
        lib = _vk.lib
        append = entries.append
        dep = self._dep
        barrier2 = lib.vkCmdPipelineBarrier2 if dep is not None else None
        dispatch = lib.vkCmdDispatch
        bind_sets = lib.vkCmdBindDescriptorSets
        bind_pipe = lib.vkCmdBindPipeline
        push = lib.vkCmdPushConstants
        compute = C.PIPELINE_BIND_POINT_COMPUTE
        stage = C.SHADER_STAGE_COMPUTE_BIT
        null = _vk.ffi.NULL
        extras: list[Any] = []
        last_pipe, last_sets, last_push = self.last_pipe, self.last_sets, self.last_push
        wm_all, rm_all, barriers = self.wmask, self.rmask, self.barriers
        try:
            for pipe, sets, cpush, gx, gy, gz, rm, wm, after_barrier, plain, extra in items:
                if pipe is not last_pipe:
                    bind_pipe(cmd, compute, pipe.handle)
                    last_pipe, last_sets, last_push = pipe, None, None
                if wm_all & (rm | wm) or rm_all & wm:
                    wm_all = rm_all = 0
                    barriers += 1
                    if barrier2 is not None:  # the hot case, inline
                        barrier2(cmd, dep)
                    else:
                        self.compute_barrier(cmd)
                    append(after_barrier)
                else:
                    append(plain)
                wm_all |= wm
                rm_all |= rm
                if sets is not last_sets and pipe.nsets:
                    bind_sets(cmd, compute, pipe.layout, 0, pipe.nsets, sets, 0, null)
                    last_sets = sets
                if cpush is not last_push and pipe.push_size:
                    push(cmd, pipe.layout, stage, 0, pipe.push_size, cpush)
                    last_push = cpush
                dispatch(cmd, gx, gy, gz)
                if extra:
                    extras.append(extra)
        finally:
            self.last_pipe, self.last_sets, self.last_push = last_pipe, last_sets, last_push
            self.wmask, self.rmask, self.barriers = wm_all, rm_all, barriers
        return extras


def timestamps_enabled() -> bool:
    """Whether dispatches are timed with timestamp queries (``VKNB_TIMESTAMPS``, default on)."""
    return bool(config.get("VKNB_TIMESTAMPS"))


def end_timestamp_stage(device: Device) -> int:
    """The pipeline stage of the timestamp written after a dispatch on ``device``.

    BOTTOM_OF_PIPE everywhere but on llvmpipe (lavapipe), whose queue runs commands one after
    another and returns from a dispatch only when it is complete: a TOP_OF_PIPE timestamp after
    it marks the same instant without the flush a later stage forces there (a large share of a
    tiny dispatch's time; docs/performance.md).  The tests check on every device that GPU times
    grow with the work.
    """
    if device.info.driver == "llvmpipe":
        return C.PIPELINE_STAGE_TOP_OF_PIPE_BIT
    return C.PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT


def timestamp_readout(device: Device) -> str:
    """How a dispatch's two timestamps reach the host on ``device``: ``"host"`` or ``"copy"``.

    ``"host"``: the queries are reset from the host before each submission and read with
    ``vkGetQueryPoolResults`` once the fence has signalled; the command buffer holds only the two
    timestamp writes, the fastest way on GPUs.  ``"copy"``: a reset command plus
    ``vkCmdCopyQueryPoolResults`` with WAIT into mapped memory; for CPU drivers, where
    ``vkGetQueryPoolResults`` itself is slow, and devices without ``hostQueryReset``.
    ``VKNB_TS_READOUT`` overrides the choice.  docs/performance.md has the numbers.
    """
    forced = config.get("VKNB_TS_READOUT")
    if forced == "copy" or (forced == "host" and device.host_query_reset):
        return str(forced)
    if device.host_query_reset and device.info.type != "cpu":
        return "host"
    return "copy"


class Timestamps:
    """A pool of ``2 * pairs`` timestamp queries (a begin and an end per pair), read as ms.

    Made only where the queue has timestamps and ``VKNB_TIMESTAMPS`` is on (see
    :func:`create`).  Closed by its owner (after the GPU is done with it).
    """

    def __init__(self, device: Device, pairs: int, label: str) -> None:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        self.device = device
        self.label = label
        self.count = 2 * pairs
        qinfo = _vk.new(
            "VkQueryPoolCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                "queryType": C.QUERY_TYPE_TIMESTAMP,
                "queryCount": self.count,
            },
        )
        pq = ffi.new("VkQueryPool*")
        try:
            _vk.check(
                lib.vkCreateQueryPool(device.handle, qinfo, ffi.NULL, pq),
                "vkCreateQueryPool",
                label,
            )
        except BaseException:  # (Ctrl-C raised as the call returned: the pool exists)
            if pq[0]:
                lib.vkDestroyQueryPool(device.handle, pq[0], ffi.NULL)
            raise
        self.pool = pq[0]
        self.host_reset = timestamp_readout(device) == "host"
        self.end_stage = end_timestamp_stage(device)
        bits = device.timestamp_bits
        self.mask = (1 << bits) - 1 if bits < 64 else (1 << 64) - 1
        self.period = device.info.limits["timestamp_period_ns"]
        self._buf = ffi.new("uint64_t[2]")
        self.buffer: Buffer | None = None
        self._mapped: Any = None
        if not self.host_reset:
            # The command buffer copies its timestamps into mapped memory, so reading them
            # costs no driver call (vkGetQueryPoolResults is slow on CPU drivers).
            try:
                b = Buffer(
                    8 * self.count,
                    device=device,
                    memory="readback",
                    usage=USAGE_TRANSFER_DST,
                    label=f"{label}.timestamps",
                )
            except BaseException:
                lib.vkDestroyQueryPool(device.handle, self.pool, ffi.NULL)
                raise
            device.disown(b)
            self.buffer = b
            alloc = b.allocation
            assert alloc is not None and alloc.mapped is not None
            self._mapped = ffi.cast("uint64_t*", alloc.mapped)

    @staticmethod
    def create(device: Device, pairs: int, label: str) -> Timestamps | None:
        """Timestamps for ``pairs`` begin/end pairs, or None where dispatches are not timed."""
        if device.timestamp_bits > 0 and timestamps_enabled():
            return Timestamps(device, pairs, label)
        return None

    def reset(self, first: int, count: int = 2) -> None:
        """Reset queries from the host before a submission that writes them (host readout)."""
        _vk.lib.vkResetQueryPool(self.device.handle, self.pool, first, count)

    def write_begin(self, cmd: Any, q: int) -> None:
        """Record the start of pair ``q`` (and, with the copy readout, its reset first)."""
        if not self.host_reset:
            _vk.lib.vkCmdResetQueryPool(cmd, self.pool, q, 2)
        _vk.lib.vkCmdWriteTimestamp(cmd, C.PIPELINE_STAGE_TOP_OF_PIPE_BIT, self.pool, q)

    def write_end(self, cmd: Any, q: int) -> None:
        """Record the end of pair ``q`` (and, with the copy readout, its copy to the host)."""
        lib = _vk.lib
        lib.vkCmdWriteTimestamp(cmd, self.end_stage, self.pool, q + 1)
        if self.buffer is not None:
            flags = C.QUERY_RESULT_64_BIT | C.QUERY_RESULT_WAIT_BIT
            lib.vkCmdCopyQueryPoolResults(cmd, self.pool, q, 2, self.buffer.handle, q * 8, 8, flags)

    def read_ms(self, q: int) -> float | None:
        """The time between the two timestamps of pair ``q`` in ms (None if not available)."""
        return self.interval(q)[0]

    def interval(self, q: int) -> tuple[float | None, float | None, float | None]:
        """``(ms, start, end)`` of pair ``q``: its duration, and when it ran on the host's
        ``time.time()`` clock where the device has calibrated timestamps (else None)."""
        ticks = self.ticks(q)
        if ticks is None:
            return None, None, None
        return self.convert(*ticks)

    def convert(self, t0: int, t1: int) -> tuple[float, float | None, float | None]:
        """``(ms, start, end)`` of two ticks read by :meth:`ticks` (see :meth:`interval`)."""
        ms = ((t1 - t0) & self.mask) * self.period * 1e-6
        start = self.device.host_time(t0)
        return ms, start, None if start is None else start + ms * 1e-3

    def ticks(self, q: int) -> tuple[int, int] | None:
        """The two raw timestamps of pair ``q`` (None if they were never written)."""
        mask = self.mask
        m = self._mapped
        if m is not None:
            b = self.buffer
            if b is not None and not b.coherent:
                b.invalidate()
            t0, t1 = m[q] & mask, m[q + 1] & mask
        else:
            buf = self._buf
            res = _vk.lib.vkGetQueryPoolResults(
                self.device.handle, self.pool, q, 2, 16, buf, 8, C.QUERY_RESULT_64_BIT
            )
            if res != 0:  # not ready would mean never written
                return None
            t0, t1 = buf[0] & mask, buf[1] & mask
        return int(t0), int(t1)

    def destroy(self) -> None:
        """Destroy the query pool and buffer now (the caller knows the GPU is done)."""
        dev = self.device
        if self.pool is not None and dev.handle_alive():
            _vk.lib.vkDestroyQueryPool(dev.handle, self.pool, _vk.ffi.NULL)
        self.pool = None
        self._mapped = None
        if self.buffer is not None:
            self.buffer.close()
            self.buffer = None


__all__ = [
    "DispatchItem",
    "Recorder",
    "Timestamps",
    "dispatch_item",
    "end_timestamp_stage",
    "push_cdata",
    "timestamp_readout",
    "timestamps_enabled",
]
