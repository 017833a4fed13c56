"""Compute pipelines: shader module, layouts, descriptor sets, and the slots a call runs in.

A :class:`ComputePipeline` owns its shader module, descriptor-set layouts, pipeline layout (with
the push-constant range), the pipeline (built through the device's persisted pipeline cache),
descriptor pools whose sets are cached per tuple of bound buffers, timestamp queries and a small
set of *slots* (command buffer + fence + two queries) that calls run in.  A repeated call with
the same buffers, push constants and group counts resubmits its slot's recorded command buffer.

The pipeline knows nothing of SPIR-V reflection: it takes a :class:`Layout` (the bindings as
``(set, binding, descriptor type, count)``, the push-constant size) that the compute layer
derives from the reflection.

Thread safety: slots are taken, recorded and submitted under the device's lock and given back
only by the thread that owns them (the caller, or an asynchronous call's waiter), so no fence is
reset while anyone waits on it.  The descriptor-set cache has a lock of its own.  A full cache
moves to a fresh pool; the old one is retired (destroyed once no submission and no batch can
use its sets), never reset under work in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _vk
from .. import errors as E
from .._vk import constants as C
from .._vk.finalizer import Finalizer
from .commands import Recorder, Timestamps, push_cdata

if TYPE_CHECKING:  # pragma: no cover
    from .buffer import Buffer
    from .device import Device

log = logging.getLogger("vknb")

DESCRIPTOR_CACHE = 256  # cached descriptor-set tuples per pool


LAYOUT_GENERAL = 1  # VK_IMAGE_LAYOUT_GENERAL: where vknb keeps every image


class Descriptor(NamedTuple):
    """One descriptor to write: ``kind`` 'buffer' (``a`` the VkBuffer, ``b`` the byte range),
    'image' (``a`` the VkImageView, ``b`` a VkSampler or None), 'sampler' (``b``) or 'texel'
    (``a`` the VkBufferView); ``key`` identifies what is bound, for the descriptor-set cache."""

    kind: str
    a: Any
    b: Any
    key: Any


@dataclass(frozen=True)
class Layout:
    """What a pipeline's layouts are built from.

    Attributes
    ----------
    bindings : tuple of (set, binding, descriptor_type, count)
        One entry per descriptor binding (aliases of one slot merged by the caller).
    push_size : int
        Bytes of the push-constant block (0: none).
    """

    bindings: tuple[tuple[int, int, int, int], ...]
    push_size: int = 0

    @property
    def nsets(self) -> int:
        return max((b[0] for b in self.bindings), default=-1) + 1


class DescriptorPool:
    """A ``VkDescriptorPool`` and its users: batches that recorded its sets pin it.

    ``allocated`` counts the set tuples taken from it (it holds ``DESCRIPTOR_CACHE``): the
    pool is replaced when it is full, whether or not every tuple is still in the cache.
    """

    __slots__ = ("allocated", "handle", "pins", "retired")

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.allocated = 0  # descriptor-set tuples allocated from it
        self.pins = 0  # batches holding recorded sets from this pool
        self.retired = False  # replaced by a fresh pool; destroyed once unpinned and idle


#: ``Slot.finishing`` of a slot that a repeated call submitted and has not waited on yet.
_CLAIMED = object()


class Slot:
    """One command buffer + fence + two timestamp queries, reused across calls.

    ``busy``: taken by a call until its owner gives it back (after waiting).  ``dirty``:
    submitted since its fence and queries were last reset.  ``pending``: the record whose GPU
    time this slot's queries still hold (read before they are reset or rewritten).
    """

    __slots__ = (
        "busy",
        "cmd",
        "dirty",
        "fence",
        "finishing",
        "key",
        "lock",
        "pcmd",
        "pending",
        "pfence",
        "query",
        "serial",
        "submit_info",
        "timestamps",
    )

    def __init__(
        self, device: Device, cmd: Any, fence: Any, query: int, timestamps: Timestamps | None
    ) -> None:
        ffi, vk = _vk.ffi, _vk.vk
        self.lock = device.lock
        self.cmd = cmd
        self.fence = fence
        self.query = query
        self.timestamps = timestamps
        self.key: Any = None
        self.busy = False
        self.serial = 0
        self.dirty = True  # queries start in an undefined state: reset before the first use
        self.pending: Any = None
        self.finishing: Any = None  # the record of the repeated call waiting on the slot
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

    def gpu_ms(self) -> float | None:
        """GPU time of the slot's last dispatch (None without timestamps)."""
        return self.gpu_interval()[0]

    def gpu_interval(self) -> tuple[float | None, float | None, float | None]:
        """``(ms, start, end)`` of the slot's last dispatch (see ``Timestamps.interval``)."""
        ts = self.timestamps
        return ts.interval(self.query) if ts is not None else (None, None, None)

    def resolve(self) -> None:
        """Give the pending record its GPU time (the slot's queries hold it until reused).

        Under the device's lock: another thread may read a record while the dispatching
        thread readies this slot for its next call.
        """
        with self.lock:
            rec = self.pending
            if rec is not None:
                ts = self.timestamps
                if ts is None:
                    rec.set_gpu_ms(None)
                else:  # the raw ticks: the record converts them when first read
                    rec.set_ticks(ts.ticks(self.query), ts)
                self.pending = None

    def finish(self) -> None:
        """A repeated call's fence has signalled (run under the device's lock): the slot's
        queries now hold the GPU time of the waiting record, which reads it when first asked
        (or when the slot is next readied); the slot is free again.

        The slot is given back first, by plain stores that Ctrl-C cannot split (Python delivers
        signals at calls and jumps): an interrupt later in here costs the record its GPU time,
        never the slot.  One before the stores leaves ``finishing`` set, and the caller gives
        the slot back (``give_up``)."""
        rec, self.finishing = self.finishing, None
        self.busy = False
        if self.timestamps is not None:
            if self.pending is not None:  # (readied before the submission; kept as a guard)
                self.resolve()
            self.pending = rec
            rec.pending = self
        else:
            rec.set_gpu_ms(None)

    def clean(self, dh: Any, label: str) -> None:
        """Make the slot ready for a submission: read what it holds, reset fence and queries."""
        if self.pending is not None:
            self.resolve()
        _vk.check(_vk.lib.vkResetFences(dh, 1, self.pfence), "vkResetFences", label)
        ts = self.timestamps
        if ts is not None and ts.host_reset:
            ts.reset(self.query)
        self.dirty = False


class ComputePipeline:
    """A compute pipeline built from SPIR-V and a :class:`Layout`.

    Parameters
    ----------
    device : Device
    spirv : bytes
    layout : Layout
    spec : tuple of (bytes, list of (id, offset, size)), optional
        Specialization data and its map entries.
    entry_point : str
    label : str

    Example
    -------
    >>> p = vknb.Kernel  # pipelines are built by vknb.compile; use the Kernel they belong to
    """

    MAX_SLOTS = 16

    def __init__(
        self,
        device: Device,
        spirv: bytes,
        layout: Layout,
        spec: tuple[bytes, list[tuple[int, int, int]]] | None = None,
        *,
        entry_point: str = "main",
        label: str = "kernel",
    ) -> None:
        device.check_usable()
        self.device = device
        self.label = label
        self.closed = False
        self._handles: dict[str, Any] = {"set_layouts": []}
        self._pools: list[DescriptorPool] = []
        self.timestamps: Timestamps | None = None
        # Ctrl-C is held back until every handle made here has its owner (the finalizer).
        with _vk.deferred_interrupt():
            t0 = time.perf_counter()
            try:
                self._create_module(spirv)
                self._create_layouts(layout)
                self._create_pipeline(spec, entry_point)
                self._pool = self._new_pool()
                self.timestamps = Timestamps.create(device, self.MAX_SLOTS, label)
            except BaseException:
                _destroy_pipeline(device, self._handles, self._pools, [], self.timestamps)
                raise
            self.create_ms = (time.perf_counter() - t0) * 1e3
            self._slots: list[Slot] = []
            self._flip = 0  # which of the first two slots the next repeated sync call takes
            self._sets: OrderedDict[Any, Any] = OrderedDict()
            self._sets_lock = threading.Lock()
            self.sets_epoch = 0  # bumped when the cached descriptor sets are given up
            self._recorder = Recorder(device)
            device.adopt(self)
            self._finalizer = Finalizer(
                self,
                _collected,
                device,
                self._handles,
                self._pools,
                self._slots,
                self.timestamps,
            )

    # -- creation ------------------------------------------------------------------------

    def _create_module(self, spirv: bytes) -> None:
        ffi, vk = _vk.ffi, _vk.vk
        if len(spirv) % 4:
            raise E.PipelineCreationFailed(
                f"{self.label}: SPIR-V size {len(spirv)} is not a multiple of 4"
            )
        code = ffi.from_buffer("uint32_t[]", bytearray(spirv))
        info = _vk.new(
            "VkShaderModuleCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                "codeSize": len(spirv),
                "pCode": code,
            },
        )
        self._handles["module"] = _vk.create(
            "vkCreateShaderModule",
            self.device.handle,
            info,
            "VkShaderModule",
            self.label,
            lambda h: self._handles.__setitem__("module", h),
        )

    def _create_layouts(self, layout: Layout) -> None:
        """One set layout per set number up to the highest used (gaps get empty ones), and the
        pipeline layout with the push-constant range."""
        ffi, vk = _vk.ffi, _vk.vk
        dh = self.device.handle
        self.nsets = layout.nsets
        self.push_size = layout.push_size
        self._type_counts: dict[int, int] = {}
        set_layouts = self._handles["set_layouts"]
        for s, binding, dtype, _ in layout.bindings:
            # A layout with a descriptor type of an extension the device was not created with
            # is invalid usage, which some drivers answer with a crash: refused here.
            if (
                dtype == C.DESCRIPTOR_TYPE_ACCELERATION_STRUCTURE_KHR
                and "VK_KHR_acceleration_structure" not in self.device.extensions
            ):
                raise E.PipelineCreationFailed(
                    f"{self.label}: binding {binding} (set {s}) is an acceleration structure "
                    "(ray queries); vknb creates devices without VK_KHR_acceleration_structure "
                    "and cannot build or fill it: remove the binding or run the shader elsewhere"
                )
        for s in range(self.nsets):
            mine = [b for b in layout.bindings if b[0] == s]
            arr = (
                ffi.new(
                    "VkDescriptorSetLayoutBinding[]",
                    [
                        {
                            "binding": binding,
                            "descriptorType": dtype,
                            "descriptorCount": max(1, count),
                            "stageFlags": C.SHADER_STAGE_COMPUTE_BIT,
                        }
                        for _, binding, dtype, count in mine
                    ],
                )
                if mine
                else ffi.NULL
            )
            for _, _, dtype, count in mine:
                self._type_counts[dtype] = self._type_counts.get(dtype, 0) + max(1, count)
            info = _vk.new(
                "VkDescriptorSetLayoutCreateInfo",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                    "bindingCount": len(mine),
                    "pBindings": arr,
                },
            )
            _vk.create(
                "vkCreateDescriptorSetLayout",
                dh,
                info,
                "VkDescriptorSetLayout",
                self.label,
                set_layouts.append,
            )
        self._layout_array = (
            ffi.new("VkDescriptorSetLayout[]", set_layouts) if set_layouts else ffi.NULL
        )
        prange = _vk.new(
            "VkPushConstantRange",
            {"stageFlags": C.SHADER_STAGE_COMPUTE_BIT, "offset": 0, "size": self.push_size},
        )
        info = _vk.new(
            "VkPipelineLayoutCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                "setLayoutCount": self.nsets,
                "pSetLayouts": self._layout_array,
                "pushConstantRangeCount": 1 if self.push_size else 0,
                "pPushConstantRanges": prange if self.push_size else ffi.NULL,
            },
        )
        self.layout = _vk.create(
            "vkCreatePipelineLayout",
            dh,
            info,
            "VkPipelineLayout",
            self.label,
            lambda h: self._handles.__setitem__("layout", h),
        )

    def _create_pipeline(
        self, spec: tuple[bytes, list[tuple[int, int, int]]] | None, entry_point: str
    ) -> None:
        ffi, vk = _vk.ffi, _vk.vk
        keep = _vk.Keep()  # everything the create info points to, alive until the call returns
        spec_info = ffi.NULL
        if spec is not None and spec[1]:
            data, entries = spec
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
        name = keep(_vk.cstr(entry_point))
        info = _vk.new(
            "VkComputePipelineCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                "stage": {
                    "sType": vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                    "stage": C.SHADER_STAGE_COMPUTE_BIT,
                    "module": self._handles["module"],
                    "pName": name,
                    "pSpecializationInfo": spec_info,
                },
                "layout": self.layout,
                "basePipelineIndex": -1,
            },
        )
        dev = self.device
        p = ffi.new("VkPipeline*")
        res = _vk.lib.vkCreateComputePipelines(dev.handle, dev.pipeline_cache, 1, info, ffi.NULL, p)
        if res == 0:
            self._handles["pipeline"] = p[0]
        _vk.check(res, "vkCreateComputePipelines", self.label)
        self.handle = p[0]
        _vk.set_name(dev.handle, _vk.OBJECT_PIPELINE, p[0], self.label)

    # -- descriptors ---------------------------------------------------------------------

    def _new_pool(self) -> DescriptorPool:
        ffi, vk = _vk.ffi, _vk.vk
        n = max(1, self.nsets) * DESCRIPTOR_CACHE
        sizes = [
            {"type": t, "descriptorCount": c * DESCRIPTOR_CACHE}
            for t, c in self._type_counts.items()
        ] or [{"type": C.DESCRIPTOR_TYPE_STORAGE_BUFFER, "descriptorCount": 1}]
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
        handle = _vk.create(
            "vkCreateDescriptorPool",
            self.device.handle,
            info,
            "VkDescriptorPool",
            self.label,
            lambda h: self._pools.append(DescriptorPool(h)),
        )
        return next(p for p in self._pools if p.handle == handle)

    def descriptor_sets(self, resources: list[tuple[int, int, int, list[Descriptor]]]) -> Any:
        """``VkDescriptorSet[nsets]`` for ``[(set, binding, descriptor type, descriptors)]``
        (one descriptor per array element, see :class:`Descriptor`), cached by what is bound.

        Returns the sets; :attr:`sets_epoch` changes when cached sets are given up.
        """
        key = tuple((r[0], r[1], tuple(d.key for d in r[3])) for r in resources)
        with self._sets_lock:
            sets = self._sets.get(key)
            if sets is not None:
                self._sets.move_to_end(key)
                return sets
            # Ctrl-C is held back until the new sets are counted and cached: sets allocated
            # and then lost would fill the pool behind the cache's back (NVIDIA then answers
            # VK_ERROR_OUT_OF_POOL_MEMORY; lavapipe never does).
            with _vk.deferred_interrupt():
                if len(self._sets) >= DESCRIPTOR_CACHE or self._pool.allocated >= DESCRIPTOR_CACHE:
                    self._rotate_pool()
                sets = self._allocate_sets()
                self._pool.allocated += 1
                self._write_sets(sets, resources)
                self._sets[key] = sets
            return sets

    def _rotate_pool(self) -> None:
        """The pool is full: continue in a fresh one; retire the old one (its sets may still
        be in flight, or recorded in a batch)."""
        old = self._pool
        self._pool = self._new_pool()
        self._sets.clear()
        self.sets_epoch += 1
        with self.device.lock:
            for s in self._slots:
                s.key = None  # a slot's recording names the old sets
            old.retired = True
            pins = old.pins
        if pins == 0:
            self._retire_pool(old)

    def _retire_pool(self, pool: DescriptorPool) -> None:
        dev = self.device

        def destroy() -> None:
            if pool in self._pools and dev.handle_alive():
                self._pools.remove(pool)
                _vk.lib.vkDestroyDescriptorPool(dev.handle, pool.handle, _vk.ffi.NULL)

        dev.retire(destroy)

    def _allocate_sets(self) -> Any:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        sets = ffi.new("VkDescriptorSet[]", max(1, self.nsets))
        if self.nsets:
            ainfo = _vk.new(
                "VkDescriptorSetAllocateInfo",
                {
                    "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                    "descriptorPool": self._pool.handle,
                    "descriptorSetCount": self.nsets,
                    "pSetLayouts": self._layout_array,
                },
            )
            _vk.check(
                lib.vkAllocateDescriptorSets(self.device.handle, ainfo, sets),
                "vkAllocateDescriptorSets",
                self.label,
            )
        return sets

    def _write_sets(self, sets: Any, resources: list[Any]) -> None:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        keep = _vk.Keep()
        writes = []
        for set_, binding, dtype, descriptors in resources:
            write: dict[str, Any] = {
                "sType": vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                "dstSet": sets[set_],
                "dstBinding": binding,
                "dstArrayElement": 0,
                "descriptorCount": len(descriptors),
                "descriptorType": dtype,
            }
            kind = descriptors[0].kind
            if kind == "buffer":
                write["pBufferInfo"] = keep(
                    ffi.new(
                        "VkDescriptorBufferInfo[]",
                        [{"buffer": d.a, "offset": 0, "range": d.b} for d in descriptors],
                    )
                )
            elif kind == "texel":
                write["pTexelBufferView"] = keep(
                    ffi.new("VkBufferView[]", [d.a for d in descriptors])
                )
            else:  # image, sampled image with its sampler, or sampler alone
                write["pImageInfo"] = keep(
                    ffi.new(
                        "VkDescriptorImageInfo[]",
                        [
                            {
                                "sampler": d.b if d.b is not None else ffi.NULL,
                                "imageView": d.a if d.a is not None else ffi.NULL,
                                "imageLayout": LAYOUT_GENERAL,
                            }
                            for d in descriptors
                        ],
                    )
                )
            writes.append(write)
        if writes:
            warr = ffi.new("VkWriteDescriptorSet[]", writes)
            lib.vkUpdateDescriptorSets(self.device.handle, len(writes), warr, 0, ffi.NULL)
            _vk.after_void("vkUpdateDescriptorSets", self.label)

    def pin_pool(self) -> DescriptorPool:
        """A batch recorded sets from the current pool: keep it until :meth:`unpin_pool`."""
        with self.device.lock:
            pool = self._pool
            pool.pins += 1
            return pool

    def current_pool(self) -> DescriptorPool:
        """The pool new descriptor sets come from."""
        return self._pool

    def unpin_pool(self, pool: DescriptorPool) -> None:
        """Release a pin; a retired pool with no pins left is retired for good."""
        with self.device.lock:
            pool.pins -= 1
            gone = pool.retired and pool.pins == 0
        if gone and not self.closed:
            self._retire_pool(pool)

    # -- slots ---------------------------------------------------------------------------

    def _free_slot(self, taken: list[Slot]) -> bool:
        """Take a free slot, or a new one while there are fewer than MAX_SLOTS, into ``taken``
        (call under the device lock); False if every slot is taken."""
        # Into ``taken`` first, then marked taken: Python may raise a pending Ctrl-C at any
        # call (the append), never between two plain stores, so a slot marked taken is always
        # in the caller's hands (one in ``taken`` but not marked is given back harmlessly).
        for s in self._slots:
            if not s.busy:
                taken.append(s)
                s.busy = True
                return True
        if len(self._slots) < self.MAX_SLOTS:
            s = self._new_slot()
            taken.append(s)
            s.busy = True
            return True
        return False

    def _acquire_slot(self, taken: list[Slot]) -> None:
        """Take a slot for a call into ``taken``; waits while every slot is taken (by calls of
        other threads, or pending asynchronous calls whose waiters have not come back).

        The slot goes into the caller's list in the same step that takes it: a caller that
        Ctrl-C stops anywhere later finds it there and gives it back (:meth:`_give_back`).
        """
        dev = self.device
        deadline = 0.0
        nap = 20e-6
        while True:
            with dev.lock:
                if self.closed:
                    raise E.ObjectClosed(f"{self.label}: pipeline is closed")
                if self._free_slot(taken):
                    return
            dev.poll()
            dev.check_usable()
            now = time.monotonic()
            if not deadline:
                deadline = now + 60.0
            elif now > deadline:
                raise E.ExecutionFailed(
                    f"{self.label}: all of its {self.MAX_SLOTS} slots stayed taken for 60 s; "
                    "wait for (or drop) its pending asynchronous calls"
                )
            time.sleep(nap)
            nap = min(nap * 2, 0.01)

    def _new_slot(self) -> Slot:
        dev = self.device
        with _vk.deferred_interrupt():  # the fence belongs to the slot list before Ctrl-C
            cmd, fence = dev.new_command_buffer()
            s = Slot(dev, cmd, fence, 2 * len(self._slots), self.timestamps)
            self._slots.append(s)
        return s

    def release(self, slot: Slot) -> None:
        """The owner is done with ``slot`` (waited for it, or gave up on it).  Idempotent: a
        caller that a Ctrl-C stopped as this started (CPython runs signal handlers as any
        Python function starts) calls it again."""
        with self.device.lock:
            slot.busy = False
            last = self.closed and not any(s.busy for s in self._slots)
        if last:
            self._retire_all()

    def abandon(self, slot: Slot) -> None:
        """The owner stops waiting (Ctrl-C): the slot is given back once the GPU is done."""
        self.device.set_on_gpu_done(slot.serial, lambda: self.release(slot))

    # -- dispatch ------------------------------------------------------------------------

    def _record(self, slot: Slot, sets: Any, cpush: Any, groups: tuple[int, int, int]) -> None:
        rec = self._recorder
        cmd = slot.cmd
        rec.begin(cmd, self.label)
        ts = self.timestamps
        if ts is not None:
            ts.write_begin(cmd, slot.query)
        rec.emit(cmd, self, sets, cpush, groups)
        if ts is not None:
            ts.write_end(cmd, slot.query)
        rec.end(cmd, self.label)

    def _submit(
        self,
        slot: Slot,
        sets: Any,
        push: bytes,
        groups: tuple[int, int, int],
        buffers: Sequence[Buffer],
    ) -> None:
        """Record the slot's command buffer unless it holds this call already, then submit.

        Call with the device lock held and ``slot`` taken.  The buffers bound are checked open
        here, under the lock: a ``close()`` from another thread then either comes first (and
        this call raises ObjectClosed) or retires the buffer after this submission.
        """
        dev = self.device
        if self.closed:
            raise E.ObjectClosed(f"{self.label}: pipeline is closed")
        for b in buffers:
            if b.allocation is None:
                raise E.ObjectClosed(f"{self.label}: argument {b.label} is closed", label=b.label)
        if slot.dirty:
            slot.clean(dev.handle, self.label)
        key = (id(sets), push, groups)
        if slot.key != key:
            slot.key = None
            # Whole or not at all: Ctrl-C between its calls would leave the command buffer in
            # the recording state, where the next vkBeginCommandBuffer is invalid.
            with _vk.deferred_interrupt():
                self._record(slot, sets, push_cdata(push), groups)
            slot.key = key
        slot.dirty = True
        slot.serial = dev.queue_submit(dev.compute_queue, slot.submit_info, slot.fence, self.label)

    def dispatch(
        self,
        sets: Any,
        push: bytes,
        groups: tuple[int, int, int],
        buffers: Sequence[Buffer],
        claimed: list[Slot] | None = None,
    ) -> Slot:
        """Submit one dispatch; return its slot (taken: give it back with :meth:`wait`,
        :meth:`wait_slot` + :meth:`release`, or :meth:`abandon`).

        ``claimed`` gets the slot as soon as it is submitted: Python raises a pending
        KeyboardInterrupt as a call returns, before the caller has stored the result, so a
        caller that must give the slot up on Ctrl-C finds it there (:meth:`give_up`)."""
        taken: list[Slot] = []
        before = None
        try:
            self._acquire_slot(taken)
            slot = taken[0]
            before = slot.serial
            with self.device.lock:
                self._submit(slot, sets, push, groups, buffers)
            slot.finishing = _CLAIMED  # until waited on (wait_slot) or given up (give_up)
            if claimed is not None:
                claimed.append(slot)  # from here on the caller owns it
        except BaseException as e:
            if taken and not (claimed and claimed[-1] is taken[0]):
                self._give_back(taken[0], before, e)
            raise
        return slot

    def _give_back(self, slot: Slot, before: int | None, e: BaseException) -> None:
        """A slot taken for a call that failed, or that Ctrl-C stopped, before anyone waited on
        it (``before``: its serial when taken, None if the call never got to submit): free
        again now if its submission never reached the queue, else once the GPU is done."""
        late = _vk.submitted_serial(e)
        if late is not None:  # interrupted as it reached the queue
            slot.serial = late
        if before is not None and slot.serial != before:
            self.abandon(slot)
        else:
            self.release(slot)

    def submit_repeated(
        self,
        sets: Any,
        push: bytes,
        groups: tuple[int, int, int],
        buffers: Sequence[Buffer],
        claimed: list[Slot] | None = None,
    ) -> Slot:
        """Submit a repeated synchronous call; the caller waits with :meth:`finish_repeated`
        (or gives the slot up with :meth:`give_up`).

        Such calls alternate between the first two slots, each keeping its own recording of
        the call, and while the GPU runs one, the other is readied for the next call: its
        timestamps are read into the record waiting for them, its fence and queries reset.
        That takes the query read and both resets out of the call's critical path.  A failure
        or Ctrl-C at any point before the submission gives the slot back
        (:meth:`_give_back`); from the submission on, ``claimed`` holds it (see
        :meth:`dispatch`).
        """
        dev = self.device
        taken: list[Slot] = []
        before = 0
        try:
            with dev.lock:
                if self.closed:
                    raise E.ObjectClosed(f"{self.label}: pipeline is closed")
                slots = self._slots
                while len(slots) < 2:
                    self._new_slot()
                self._flip ^= 1
                slot, other = slots[self._flip], slots[self._flip ^ 1]
                if not slot.busy:  # else taken by another call: any free slot below
                    before = slot.serial
                    taken.append(slot)  # (first: see _free_slot)
                    slot.busy = True
                    slot.finishing = _CLAIMED
                    self._submit(slot, sets, push, groups, buffers)
                    if claimed is not None:
                        claimed.append(slot)  # from here on the caller owns it
                    if other.dirty and not other.busy:
                        other.clean(dev.handle, self.label)
        except BaseException as e:
            if taken and not (claimed and claimed[-1] is taken[0]):
                self._give_back(taken[0], before, e)
            raise
        if taken:
            return taken[0]
        return self.dispatch(sets, push, groups, buffers, claimed)

    def finish_repeated(self, slot: Slot, rec: Any) -> None:
        """Wait for :meth:`submit_repeated`'s slot; ``rec`` reads its GPU time from it later.

        The record is attached and the slot given back under the device's lock, in the same
        hold that records the submission finished, so no other thread can take the slot in
        between (its queries hold the record's timestamps until it is next readied).  The
        caller gives the slot up with :meth:`give_up` if this raises, or if anything between
        the submission and this call did.
        """
        slot.finishing = rec
        self.device.wait_fence(slot.serial, slot.fence, self.label, None, slot.pfence, slot.finish)
        if self.closed:  # closed meanwhile: the last slot given back retires the pipeline
            try:
                self.release(slot)
            except KeyboardInterrupt:  # (as it started: give it back all the same)
                self.release(slot)
                raise

    def give_up(self, slot: Slot, serial: int) -> bool:
        """The synchronous call that submitted ``serial`` on ``slot`` stopped (Ctrl-C, a
        failure) anywhere between its submission and the end of its wait: unless the wait
        already took care of the slot, it goes back once the GPU is done (True)."""
        with self.device.lock:
            mine = slot.finishing is not None and slot.serial == serial and slot.busy
            if mine:
                slot.finishing = None
        if mine:
            self.abandon(slot)
        return mine

    def wait_slot(self, slot: Slot) -> None:
        """Wait for the slot's submission (the slot stays taken); on Ctrl-C or failure the slot
        is given back once the GPU is done."""
        try:
            self.device.wait_fence(slot.serial, slot.fence, self.label, pfence=slot.pfence)
        except BaseException:
            slot.finishing = None  # (taken care of here: give_up leaves it alone)
            self.abandon(slot)
            raise
        slot.finishing = None

    def wait(self, slot: Slot) -> None:
        """Wait for a slot's submission and give the slot back."""
        self.wait_slot(slot)
        try:
            self.release(slot)
        except KeyboardInterrupt:  # (as it started: give it back all the same)
            self.release(slot)
            raise

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Destroy the pipeline and everything it owns once nothing can use it any more
        (slots given back, submissions finished).  Idempotent."""
        # Closing again queues a release that Ctrl-C lost (between the last slot's release and
        # its retirement, say).
        with self.device.lock:
            self.closed = True
            idle = not any(s.busy for s in self._slots) and self._finalizer.alive
        if idle:
            self._retire_all()

    def _retire_all(self) -> None:
        # Queued first, the finalizer's arguments taken when it runs (see Buffer._retire).
        fin = self._finalizer
        if fin.alive:
            self.device.retire(lambda: _destroy_once(fin))

    def __repr__(self) -> str:
        return f"<vknb.ComputePipeline {self.label}{' closed' if self.closed else ''}>"


def _destroy_once(fin: Finalizer) -> None:
    """Destroy what a pipeline's finalizer would, unless it (or this) ran already."""
    info = fin.detach()
    if info is not None:
        _destroy_pipeline(*info[2])


def _collected(
    device: Device,
    handles: dict[str, Any],
    pools: list[DescriptorPool],
    slots: list[Slot],
    timestamps: Timestamps | None,
) -> None:
    """Finalizer of a pipeline collected without close() (see Device.retire_collected)."""
    if device.handle_alive():
        device.retire_collected(
            lambda: _destroy_pipeline(device, handles, pools, slots, timestamps)
        )


def _destroy_pipeline(
    device: Device,
    handles: dict[str, Any],
    pools: list[DescriptorPool],
    slots: list[Slot],
    timestamps: Timestamps | None,
) -> None:
    """Destroy handles in reverse order of creation (the GPU is done with them)."""
    for s in slots:  # a record still waiting for its GPU time reads it now
        if s.pending is not None and device.handle_alive():
            s.resolve()
        elif s.pending is not None:
            s.pending.set_gpu_ms(None)
            s.pending = None
    if not device.handle_alive():
        return
    ffi, lib = _vk.ffi, _vk.lib
    dh = device.handle
    try:
        with device.lock:
            for s in slots:
                device.free_command_buffer((s.cmd, s.fence))
            slots.clear()
        if timestamps is not None:
            timestamps.destroy()
        for pool in pools:
            lib.vkDestroyDescriptorPool(dh, pool.handle, ffi.NULL)
        pools.clear()
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
