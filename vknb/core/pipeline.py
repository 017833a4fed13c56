"""Compute pipelines: shader module, layouts from reflection, descriptor sets, dispatch.

A :class:`ComputePipeline` owns its shader module, descriptor-set layouts, pipeline layout (with
the push-constant range), the pipeline (built through the device's persisted pipeline cache), a
descriptor pool whose sets are cached per set of bound buffers, a timestamp query pool and a small
ring of command buffers.  A repeated call with the same buffers, push constants and group counts
resubmits the already-recorded command buffer.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _vk
from .. import errors as E

if TYPE_CHECKING:  # pragma: no cover
    from .device import Device
    from .buffer import Buffer
    from ..shader.spirv import Reflection

log = logging.getLogger("vknb")

DESCRIPTOR_CACHE = 64  # cached descriptor-set tuples per pipeline
_STAGE_COMPUTE = 0x20


def timestamps_enabled() -> bool:
    """Whether dispatches are timed with timestamp queries (``VKNB_TIMESTAMPS``, default on)."""
    return os.environ.get("VKNB_TIMESTAMPS", "1").strip().lower() not in ("0", "false", "off", "no")


def end_timestamp_stage(device: Device) -> int:
    """The pipeline stage of the timestamp written after a dispatch on ``device``.

    BOTTOM_OF_PIPE everywhere but on llvmpipe (lavapipe), whose queue runs commands one after
    another and returns from a dispatch only when it is complete: a TOP_OF_PIPE timestamp after
    it marks the same instant without the flush a later stage forces there (measured: the sync
    dispatch of a tiny kernel fell from 0.75-0.89x to 0.55-0.62x of the raw baseline).
    ``tests/test_kernel.py`` checks on every device that GPU times grow with the work.
    """
    if device.info.driver == "llvmpipe":
        return 0x1  # VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT
    return 0x2000  # VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT


def timestamp_readout(device: Device) -> str:
    """How a dispatch's two timestamps reach the host on ``device``: ``"host"`` or ``"copy"``.

    ``"host"``: the queries are reset from the host before each submission and read with
    ``vkGetQueryPoolResults`` once the fence has signalled; the command buffer holds only the two
    timestamp writes.  On an H200 this timed a tiny dispatch at 22 µs against 31 µs for
    ``"copy"`` (a reset command plus ``vkCmdCopyQueryPoolResults`` with WAIT into mapped memory).
    ``"copy"`` is kept for CPU drivers, where ``vkGetQueryPoolResults`` itself costs about 20 µs
    (lavapipe), and for devices without ``hostQueryReset``.  ``VKNB_TS_READOUT`` overrides the
    choice (for measurements).
    """
    forced = os.environ.get("VKNB_TS_READOUT", "").strip().lower()
    if forced == "copy" or (forced == "host" and device.host_query_reset):
        return forced
    if device.host_query_reset and device.info.type != "cpu":
        return "host"
    return "copy"


def pack_spec_values(
    reflection: Reflection, values: dict[int, Any]
) -> tuple[bytes, list[tuple[int, int, int]]]:
    """Pack specialization values (by id) into bytes + (id, offset, size) map entries."""
    by_id = {s.id: s for s in reflection.spec_constants}
    data = bytearray()
    entries = []
    for sid in sorted(values):
        spec = by_id.get(sid)
        v = values[sid]
        if spec is None:
            # LocalSizeId / WorkgroupSize ids always take uint32.
            raw = struct.pack("<I", int(v))
        elif spec.dtype == np.bool_:
            raw = struct.pack("<I", 1 if v else 0)
        else:
            raw = np.asarray(v, dtype=spec.dtype).tobytes()
        entries.append((sid, len(data), len(raw)))
        data += raw
    return bytes(data), entries


def timestamp_buffer(device: Device, queries: int, label: str) -> Buffer:
    """Mapped memory that a command buffer copies ``queries`` timestamps into ("copy" readout).

    Owned (and closed) by the caller, not by the device's list of children.
    """
    from .buffer import USAGE_TRANSFER_DST, Buffer

    tsb = Buffer(
        8 * queries,
        device=device,
        memory="readback",
        usage=USAGE_TRANSFER_DST,
        label=f"{label}.timestamps",
    )
    device._children.discard(tsb)
    return tsb


class _TsReader:
    """Reads two timestamps: from mapped memory ("copy" readout) or from the query pool."""

    __slots__ = ("buf", "dh", "mapped", "mask", "period", "pool", "tsb")

    def __init__(self, device: Device, pool: Any, tsb: Buffer | None) -> None:
        self.dh = device.handle
        self.pool = pool
        alloc = tsb._alloc if tsb is not None else None
        self.mapped = _vk.ffi.cast("uint64_t*", alloc.mapped) if alloc and alloc.mapped else None
        self.tsb = tsb if self.mapped is not None else None
        bits = device.timestamp_bits
        self.mask = (1 << bits) - 1 if bits < 64 else (1 << 64) - 1
        self.period = device.info.limits["timestamp_period_ns"]
        self.buf = _vk.ffi.new("uint64_t[2]")

    def read(self, q: int) -> float | None:
        mask = self.mask
        m = self.mapped
        if m is not None:
            tsb = self.tsb
            if not tsb._coherent and tsb._alloc is not None:
                tsb._invalidate(tsb._alloc)
            t0, t1 = m[q] & mask, m[q + 1] & mask
        else:
            b = self.buf
            res = _vk.lib.vkGetQueryPoolResults(self.dh, self.pool, q, 2, 16, b, 8, 0x1)
            if res != 0:  # VK_QUERY_RESULT_64_BIT; not ready would mean never written
                return None
            t0, t1 = b[0] & mask, b[1] & mask
        return ((t1 - t0) & mask) * self.period * 1e-6


class _Slot:
    """One command buffer + fence + two timestamp queries, reused across calls.

    ``dirty``: submitted since its fence and queries were last reset, so they must be reset
    before the next submission.  ``pending``: the record whose GPU time this slot's queries
    still hold (read by :meth:`resolve` before the queries are reset or rewritten).
    """

    __slots__ = (
        "busy",
        "cmd",
        "dh",
        "dirty",
        "fence",
        "key",
        "lock",
        "pcmd",
        "pending",
        "pfence",
        "query",
        "reader",
        "submit_info",
    )

    def __init__(
        self, device: Device, cmd: Any, fence: Any, query: int, reader: _TsReader | None
    ) -> None:
        ffi, vk = _vk.ffi, _vk.vk
        self.dh = device.handle
        self.lock = device._lock
        self.cmd = cmd
        self.fence = fence
        self.query = query
        self.reader = reader
        self.key: Any = None
        self.busy = False
        self.dirty = True  # queries start in an undefined state: reset before the first use
        self.pending: Any = None
        self.pcmd = ffi.new("VkCommandBuffer*", cmd)
        self.pfence = ffi.new("VkFence*", fence)
        self.submit_info = _vk.new(
            "VkSubmitInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                "commandBufferCount": 1,
                "pCommandBuffers": self.pcmd,
            },
        )

    def resolve(self) -> None:
        """Give the pending record its GPU time (the slot's queries hold it until reused).

        Under the device's lock: another thread may read a record while the dispatching
        thread readies this slot for its next call.
        """
        with self.lock:
            rec = self.pending
            if rec is not None:
                rec._gpu = self.reader.read(self.query) if self.reader is not None else None
                rec._pending = None
                self.pending = None

    def clean(self, host_reset: bool, label: str) -> None:
        """Make the slot ready for a submission: read what it holds, reset fence and queries."""
        if self.pending is not None:
            self.resolve()
        lib = _vk.lib
        _vk.check(lib.vkResetFences(self.dh, 1, self.pfence), "vkResetFences", label)
        if host_reset:
            lib.vkResetQueryPool(self.dh, self.reader.pool, self.query, 2)
        self.dirty = False


class ComputePipeline:
    """A compute pipeline built from SPIR-V and its reflection.

    Parameters
    ----------
    device : Device
    spirv : bytes
    reflection : Reflection
    spec_values : dict of id -> value
        Specialization constants (including workgroup-size ids).
    label : str

    Example
    -------
    >>> p = vknb.Kernel  # pipelines are built by vknb.compile; use the Kernel they belong to
    """

    MAX_SLOTS = 8

    def __init__(
        self,
        device: Device,
        spirv: bytes,
        reflection: Reflection,
        spec_values: dict[int, Any] | None = None,
        label: str = "kernel",
    ) -> None:
        device._check_open()
        self.device = device
        self.reflection = reflection
        self.label = label
        self._closed = False
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        dh = device.handle
        keep = _vk.Keep()
        self._handles: dict[str, Any] = {}
        self._ts_mapped: Any = None
        self._ts_host = False
        t0 = time.perf_counter()
        try:
            # Shader module
            if len(spirv) % 4:
                raise E.PipelineCreationFailed(
                    f"{label}: SPIR-V size {len(spirv)} is not a multiple of 4"
                )
            code = keep(ffi.from_buffer("uint32_t[]", bytearray(spirv)))
            info = _vk.new(
                "VkShaderModuleCreateInfo",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                    "codeSize": len(spirv),
                    "pCode": code,
                },
            )
            p = ffi.new("VkShaderModule*")
            # Each handle is stored before the result is checked: a validation error raised for
            # a call that did create the object must not leak it.
            res = lib.vkCreateShaderModule(dh, info, ffi.NULL, p)
            if res == 0:
                self._handles["module"] = p[0]
            _vk.check(res, "vkCreateShaderModule", label)

            # Set layouts: one per set number up to the highest used (gaps get empty ones).
            bindings = reflection.bindings
            nsets = max((b.set for b in bindings), default=-1) + 1
            layouts = []
            self._type_counts: dict[int, int] = {}
            for s in range(nsets):
                mine = [b for b in bindings if b.set == s]
                arr = (
                    keep(
                        ffi.new(
                            "VkDescriptorSetLayoutBinding[]",
                            [
                                {
                                    "binding": b.binding,
                                    "descriptorType": b.descriptor_type,
                                    "descriptorCount": max(1, b.count),
                                    "stageFlags": _STAGE_COMPUTE,
                                }
                                for b in mine
                            ],
                        )
                    )
                    if mine
                    else ffi.NULL
                )
                for b in mine:
                    self._type_counts[b.descriptor_type] = self._type_counts.get(
                        b.descriptor_type, 0
                    ) + max(1, b.count)
                linfo = _vk.new(
                    "VkDescriptorSetLayoutCreateInfo",
                    {
                        "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                        "bindingCount": len(mine),
                        "pBindings": arr,
                    },
                )
                pl = ffi.new("VkDescriptorSetLayout*")
                res = lib.vkCreateDescriptorSetLayout(dh, linfo, ffi.NULL, pl)
                if res == 0:
                    self._handles.setdefault("set_layouts", []).append(pl[0])
                _vk.check(res, "vkCreateDescriptorSetLayout", label)
                layouts.append(pl[0])
            self.nsets = nsets
            self._layout_array = (
                ffi.new("VkDescriptorSetLayout[]", layouts) if layouts else ffi.NULL
            )

            # Pipeline layout with the push-constant range.
            pc = reflection.push_constants
            self.push_size = pc.size if pc is not None else 0
            prange = keep(
                _vk.new(
                    "VkPushConstantRange",
                    {"stageFlags": _STAGE_COMPUTE, "offset": 0, "size": self.push_size},
                )
            )
            plinfo = _vk.new(
                "VkPipelineLayoutCreateInfo",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                    "setLayoutCount": nsets,
                    "pSetLayouts": self._layout_array,
                    "pushConstantRangeCount": 1 if self.push_size else 0,
                    "pPushConstantRanges": prange if self.push_size else ffi.NULL,
                },
            )
            ppl = ffi.new("VkPipelineLayout*")
            res = lib.vkCreatePipelineLayout(dh, plinfo, ffi.NULL, ppl)
            if res == 0:
                self._handles["layout"] = ppl[0]
            _vk.check(res, "vkCreatePipelineLayout", label)
            self.layout = ppl[0]

            # Specialization.
            spec_values = dict(spec_values or {})
            data, entries = pack_spec_values(reflection, spec_values)
            spec_info = ffi.NULL
            if entries:
                ents = keep(
                    ffi.new(
                        "VkSpecializationMapEntry[]",
                        [{"constantID": i, "offset": o, "size": n} for i, o, n in entries],
                    )
                )
                dbuf = keep(ffi.from_buffer(bytearray(data)))
                spec_info = keep(
                    _vk.new(
                        "VkSpecializationInfo",
                        {
                            "mapEntryCount": len(entries),
                            "pMapEntries": ents,
                            "dataSize": len(data),
                            "pData": dbuf,
                        },
                    )
                )
            name = keep(_vk.cstr(reflection.entry_point))
            cinfo = _vk.new(
                "VkComputePipelineCreateInfo",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                    "stage": {
                        "sType": vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                        "stage": _STAGE_COMPUTE,
                        "module": self._handles["module"],
                        "pName": name,
                        "pSpecializationInfo": spec_info,
                    },
                    "layout": self.layout,
                    "basePipelineIndex": -1,
                },
            )
            pp = ffi.new("VkPipeline*")
            res = lib.vkCreateComputePipelines(dh, device.pipeline_cache, 1, cinfo, ffi.NULL, pp)
            if res == 0:
                self._handles["pipeline"] = pp[0]
            _vk.check(res, "vkCreateComputePipelines", label)
            self.handle = pp[0]
            _vk.set_name(dh, _vk.OBJECT_PIPELINE, pp[0], label)

            # Descriptor pool (sets are cached per tuple of bound buffers).
            self._make_pool()
            # Timestamp queries: two per slot.
            # VKNB_TIMESTAMPS=0 trades the per-dispatch GPU time (gpu_ms becomes None) for
            # latency: on CPU drivers the timestamp queries cost about half of a tiny dispatch.
            self.timestamps = device.timestamp_bits > 0 and timestamps_enabled()
            if self.timestamps:
                qinfo = _vk.new(
                    "VkQueryPoolCreateInfo",
                    {
                        "sType": vk.VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                        "queryType": vk.VK_QUERY_TYPE_TIMESTAMP,
                        "queryCount": 2 * self.MAX_SLOTS,
                    },
                )
                pq = ffi.new("VkQueryPool*")
                res = lib.vkCreateQueryPool(dh, qinfo, ffi.NULL, pq)
                if res == 0:
                    self._handles["query_pool"] = pq[0]
                _vk.check(res, "vkCreateQueryPool", label)
                self.query_pool = pq[0]
                self._ts_host = timestamp_readout(device) == "host"
                self._ts_end = end_timestamp_stage(device)
            if self.timestamps and not self._ts_host:
                # The command buffer copies its two timestamps into mapped memory, so reading
                # them costs no driver call (vkGetQueryPoolResults costs ~20 µs on lavapipe).
                tsb = timestamp_buffer(device, 2 * self.MAX_SLOTS, label)
                self._handles["ts_buffer"] = tsb
                self._ts_buffer = tsb
            self._reader = (
                _TsReader(device, self.query_pool, self._handles.get("ts_buffer"))
                if self.timestamps
                else None
            )
            self._ts_mapped = self._reader.mapped if self._reader is not None else None
        except BaseException:
            _destroy_pipeline(device, self._handles, [])
            raise
        self.create_ms = (time.perf_counter() - t0) * 1e3
        self._slots: list[_Slot] = []
        self._flip = 0  # which of the first two slots the next repeated sync call takes
        self._sets: OrderedDict[Any, Any] = OrderedDict()
        self._sets_epoch = 0
        self._pool_pins: dict[Any, int] = {}
        self._begin = _vk.new(
            "VkCommandBufferBeginInfo", {"sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO}
        )
        self._barrier = _vk.new(
            "VkMemoryBarrier",
            {
                "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                "srcAccessMask": vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_TRANSFER_WRITE_BIT,
                "dstAccessMask": vk.VK_ACCESS_HOST_READ_BIT
                | vk.VK_ACCESS_TRANSFER_READ_BIT
                | vk.VK_ACCESS_SHADER_READ_BIT
                | vk.VK_ACCESS_SHADER_WRITE_BIT
                | vk.VK_ACCESS_TRANSFER_WRITE_BIT,
            },
        )
        self._push = ffi.new("char[]", max(4, self.push_size))
        device._adopt(self)
        self._finalizer = weakref.finalize(
            self, _destroy_pipeline, device, self._handles, self._slots
        )

    # -- descriptors ---------------------------------------------------------------------

    def _make_pool(self) -> None:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        n = max(1, self.nsets) * DESCRIPTOR_CACHE
        sizes = [
            {"type": t, "descriptorCount": c * DESCRIPTOR_CACHE}
            for t, c in self._type_counts.items()
        ] or [{"type": 7, "descriptorCount": 1}]
        arr = ffi.new("VkDescriptorPoolSize[]", sizes)
        info = _vk.new(
            "VkDescriptorPoolCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                "maxSets": n,
                "poolSizeCount": len(sizes),
                "pPoolSizes": arr,
            },
        )
        p = ffi.new("VkDescriptorPool*")
        res = lib.vkCreateDescriptorPool(self.device.handle, info, ffi.NULL, p)
        if res == 0:
            self._handles["descriptor_pool"] = p[0]
        _vk.check(res, "vkCreateDescriptorPool", self.label)

    def descriptor_sets(self, resources: list[tuple[Any, Buffer, int]]) -> Any:
        """``VkDescriptorSet[nsets]`` for ``[(binding, buffer, range), ...]``, cached by buffers.

        ``range`` is the byte range to bind (clamped to the device's limits by the caller).
        """
        key = tuple((b.binding, buf._serial, rng) for b, buf, rng in resources)
        sets = self._sets.get(key)
        if sets is not None:
            self._sets.move_to_end(key)
            return sets
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        dh = self.device.handle
        if len(self._sets) >= DESCRIPTOR_CACHE:
            pool = self._handles["descriptor_pool"]
            if self._pool_pins.get(pool):
                # A batch has recorded sets from this pool (and may replay them): keep the pool
                # until the last such batch goes, and continue in a fresh one.
                self._handles.setdefault("retired_pools", []).append(pool)
                self._make_pool()
            else:
                # Free every cached set at once; wait first, since pending work may use them.
                self.device.synchronize()
                self._wait_slots(release=False)  # calls of other threads still own theirs
                lib.vkResetDescriptorPool(dh, pool, 0)
            self._sets.clear()
            self._sets_epoch += 1
            for s in self._slots:
                s.key = None
        sets = ffi.new("VkDescriptorSet[]", max(1, self.nsets))
        if self.nsets:
            ainfo = _vk.new(
                "VkDescriptorSetAllocateInfo",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                    "descriptorPool": self._handles["descriptor_pool"],
                    "descriptorSetCount": self.nsets,
                    "pSetLayouts": self._layout_array,
                },
            )
            _vk.check(
                lib.vkAllocateDescriptorSets(dh, ainfo, sets),
                "vkAllocateDescriptorSets",
                self.label,
            )
        keep = []
        writes = []
        for b, buf, rng in resources:
            bi = ffi.new(
                "VkDescriptorBufferInfo*", {"buffer": buf.handle, "offset": 0, "range": rng}
            )
            keep.append(bi)
            writes.append(
                {
                    "sType": vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                    "dstSet": sets[b.set],
                    "dstBinding": b.binding,
                    "dstArrayElement": 0,
                    "descriptorCount": 1,
                    "descriptorType": b.descriptor_type,
                    "pBufferInfo": bi,
                }
            )
        if writes:
            warr = ffi.new("VkWriteDescriptorSet[]", writes)
            lib.vkUpdateDescriptorSets(dh, len(writes), warr, 0, ffi.NULL)
            _vk.after_void("vkUpdateDescriptorSets", self.label)
        self._sets[key] = sets
        return sets

    def pin_pool(self) -> Any:
        """A batch recorded sets from the current pool: keep it until :meth:`unpin_pool`."""
        pool = self._handles["descriptor_pool"]
        self._pool_pins[pool] = self._pool_pins.get(pool, 0) + 1
        return pool

    def unpin_pool(self, pool: Any) -> None:
        """Release a pin; a retired pool with no pins left is destroyed."""
        n = self._pool_pins.get(pool, 0) - 1
        if n > 0:
            self._pool_pins[pool] = n
            return
        self._pool_pins.pop(pool, None)
        retired = self._handles.get("retired_pools", [])
        if pool in retired and not self._closed and not self.device._closed:
            retired.remove(pool)
            _vk.lib.vkDestroyDescriptorPool(self.device.handle, pool, _vk.ffi.NULL)

    # -- dispatch ------------------------------------------------------------------------

    def _slot(self) -> _Slot:
        for s in self._slots:
            if not s.busy:
                return s
        if len(self._slots) >= self.MAX_SLOTS:
            self.device.synchronize()
            self._wait_slots()
            return self._slots[0]
        return self._new_slot()

    def _new_slot(self) -> _Slot:
        dev = self.device
        cmd, fence = dev._new_cmd(dev.compute_pool)
        s = _Slot(dev, cmd, fence, 2 * len(self._slots), self._reader)
        self._slots.append(s)
        return s

    def _wait_slots(self, release: bool = True) -> None:
        """Wait for every slot's submission; ``release=False`` leaves them to their callers
        (who still read their timestamps and then free them)."""
        for s in self._slots:
            if s.busy:
                self.device._wait_fence(s.fence, self.label)
                if release:
                    s.busy = False

    def record(
        self, cmd: Any, sets: Any, push: bytes, groups: tuple[int, int, int], query: int | None
    ) -> None:
        """Record bind + push + dispatch (+ timestamps around it when ``query`` is given)."""
        lib, ffi, vk = _vk.lib, _vk.ffi, _vk.vk
        if query is not None:
            if not self._ts_host:  # else reset from the host before each submission
                lib.vkCmdResetQueryPool(cmd, self.query_pool, query, 2)
            lib.vkCmdWriteTimestamp(
                cmd, vk.VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, self.query_pool, query
            )
        lib.vkCmdBindPipeline(cmd, 1, self.handle)  # VK_PIPELINE_BIND_POINT_COMPUTE
        if self.nsets:
            lib.vkCmdBindDescriptorSets(cmd, 1, self.layout, 0, self.nsets, sets, 0, ffi.NULL)
        if self.push_size:
            ffi.memmove(self._push, push, self.push_size)
            lib.vkCmdPushConstants(cmd, self.layout, _STAGE_COMPUTE, 0, self.push_size, self._push)
        lib.vkCmdDispatch(cmd, groups[0], groups[1], groups[2])
        if query is not None:
            lib.vkCmdWriteTimestamp(cmd, self._ts_end, self.query_pool, query + 1)
            if self._ts_mapped is not None:
                lib.vkCmdCopyQueryPoolResults(
                    cmd, self.query_pool, query, 2, self._ts_buffer.handle, query * 8, 8, 0x3
                )  # 64_BIT | WAIT

    def _submit(self, slot: _Slot, sets: Any, push: bytes, groups: tuple[int, int, int]) -> None:
        """Record the slot's command buffer unless it holds this call already, then submit.

        Call with the device lock held and ``slot`` not busy.
        """
        lib, vk = _vk.lib, _vk.vk
        if slot.dirty:
            slot.clean(self._ts_host, self.label)
        key = (id(sets), push, groups)
        if slot.key != key:
            slot.key = None
            cmd = slot.cmd
            _vk.check(
                lib.vkBeginCommandBuffer(cmd, self._begin), "vkBeginCommandBuffer", self.label
            )
            self.record(cmd, sets, push, groups, slot.query if self.timestamps else None)
            lib.vkCmdPipelineBarrier(
                cmd,
                vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
                vk.VK_PIPELINE_STAGE_HOST_BIT
                | vk.VK_PIPELINE_STAGE_TRANSFER_BIT
                | vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                0,
                1,
                self._barrier,
                0,
                _vk.ffi.NULL,
                0,
                _vk.ffi.NULL,
            )
            _vk.check(lib.vkEndCommandBuffer(cmd), "vkEndCommandBuffer", self.label)
            slot.key = key
        slot.dirty = True
        _vk.check(
            lib.vkQueueSubmit(self.device.compute_queue, 1, slot.submit_info, slot.fence),
            "vkQueueSubmit",
            self.label,
        )
        slot.busy = True

    def dispatch(
        self, sets: Any, push: bytes, groups: tuple[int, int, int], keep: Any, wait: bool = True
    ) -> _Slot:
        """Submit one dispatch; with ``wait`` block until done. Returns the slot used."""
        if self._closed:
            raise E.ObjectClosed(f"{self.label}: pipeline is closed")
        dev = self.device
        dev._check_open()
        with dev._lock:
            slot = self._slot()
            self._submit(slot, sets, push, groups)
        if wait:
            self.wait(slot)
        return slot

    def submit_repeated(self, sets: Any, push: bytes, groups: tuple[int, int, int]) -> _Slot:
        """Submit a repeated synchronous call; the caller waits with :meth:`wait`.

        Such calls alternate between the first two slots, each keeping its own recording of
        the call, and while the GPU runs one, the other is readied for the next call: its
        timestamps are read into the record waiting for them, its fence and queries reset.
        That takes the query read and both resets (about 4 µs on an H100 host) out of the
        call's critical path.
        """
        if self._closed:
            raise E.ObjectClosed(f"{self.label}: pipeline is closed")
        dev = self.device
        dev._check_open()
        with dev._lock:
            slots = self._slots
            while len(slots) < 2:
                self._new_slot()
            self._flip ^= 1
            slot, other = slots[self._flip], slots[self._flip ^ 1]
            if slot.busy:  # taken by an asynchronous call: use any free slot
                slot = self._slot()
            self._submit(slot, sets, push, groups)
            if other.dirty and not other.busy:
                other.clean(self._ts_host, self.label)
        return slot

    def finish_repeated(self, slot: _Slot, rec: Any) -> None:
        """Wait for :meth:`submit_repeated`'s slot; ``rec`` reads its GPU time from it later.

        The slot stays busy until the record is attached, so no other thread can take it in
        between (its queries hold the record's timestamps until it is next readied).
        """
        if slot.busy:
            self.device._wait_fence(slot.fence, self.label, pfence=slot.pfence)
        if self.timestamps:
            if slot.pending is not None:  # (readied before the submission; kept as a guard)
                slot.resolve()
            slot.pending = rec
            rec._pending = slot
        else:
            rec._gpu = None
        slot.busy = False

    def wait(self, slot: _Slot) -> None:
        """Wait for a slot's submission."""
        if slot.busy:
            self.device._wait_fence(slot.fence, self.label, pfence=slot.pfence)
            slot.busy = False

    def wait_and_read(self, slot: _Slot) -> float | None:
        """Wait for a slot's submission and read its GPU time before the slot is free again."""
        if slot.busy:
            self.device._wait_fence(slot.fence, self.label, pfence=slot.pfence)
        try:
            return self.gpu_ms(slot)
        finally:
            slot.busy = False

    def gpu_ms(self, slot: _Slot) -> float | None:
        """GPU time of the slot's last dispatch from its timestamps (None without timestamps)."""
        if self._reader is None:
            return None
        return self._reader.read(slot.query)

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Destroy the pipeline and everything it owns (waits for its pending work)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __repr__(self) -> str:
        return f"<vknb.ComputePipeline {self.label}{' closed' if self._closed else ''}>"


def _destroy_pipeline(device: Device, handles: dict[str, Any], slots: list[_Slot]) -> None:
    """Finalizer: wait for the slots, then destroy handles in reverse order of creation."""
    if device._closed:  # the device closes its pipelines first; this is only a guard
        for s in slots:  # the queries are gone: a waiting record gets no GPU time
            if s.pending is not None:
                s.pending._pending = None
                s.pending = None
        return
    ffi, lib = _vk.ffi, _vk.lib
    try:
        dh = device.handle
        for s in slots:
            if s.busy:
                lib.vkWaitForFences(dh, 1, s.pfence, 1, _vk.UINT64_MAX)
                s.busy = False
            s.resolve()  # a record still waiting for its GPU time reads it now
        with device._lock:
            for s in slots:
                lib.vkFreeCommandBuffers(dh, device.compute_pool, 1, s.pcmd)
                lib.vkDestroyFence(dh, s.fence, ffi.NULL)
            slots.clear()
        if "query_pool" in handles:
            lib.vkDestroyQueryPool(dh, handles.pop("query_pool"), ffi.NULL)
        if "ts_buffer" in handles:
            handles.pop("ts_buffer").close()
        if "descriptor_pool" in handles:
            lib.vkDestroyDescriptorPool(dh, handles.pop("descriptor_pool"), ffi.NULL)
        for pool in handles.pop("retired_pools", []):
            lib.vkDestroyDescriptorPool(dh, pool, ffi.NULL)
        if "pipeline" in handles:
            lib.vkDestroyPipeline(dh, handles.pop("pipeline"), ffi.NULL)
        if "layout" in handles:
            lib.vkDestroyPipelineLayout(dh, handles.pop("layout"), ffi.NULL)
        for sl in handles.pop("set_layouts", []):
            lib.vkDestroyDescriptorSetLayout(dh, sl, ffi.NULL)
        if "module" in handles:
            lib.vkDestroyShaderModule(dh, handles.pop("module"), ffi.NULL)
    except Exception:  # pragma: no cover - never raise from cleanup
        log.exception("destroying a pipeline failed")
