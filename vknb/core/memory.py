"""Device memory: memory-type choice, sub-allocation from blocks, dedicated large allocations.

Small allocations (up to a quarter of the block size) are carved out of 64 MiB blocks (smaller on
small heaps) with a first-fit free list that coalesces on free; larger ones get a dedicated
``VkDeviceMemory``.  Host-visible memory is mapped once, persistently, per block.

Freed dedicated allocations, and shared blocks whose last sub-allocation is freed, are kept in a
small recycle cache (``VKNB_RECYCLE_MB``, default the
smaller of 1 GiB and an eighth of the largest heap; 0 turns it off) and handed to the next request
of the same memory type and about the same size: allocating and freeing large device memory costs
milliseconds, a large share of an upload's time (docs/performance.md).  The cache is
counted in ``allocated`` and shown as ``cached``; it is emptied by :meth:`Device.trim`, before an
allocation that would not fit otherwise, and when the device closes.  So with the cache empty
(``trim()``), vknb's ``allocated`` bytes return to their baseline when everything is freed.

Statistics (``Device.memory_stats()``) come from the counters kept here plus, where the device
has ``VK_EXT_memory_budget``, the driver's own budget and usage per heap.
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _vk, config
from .. import errors as E
from .instance import DEVICE_LOCAL, HOST_CACHED, HOST_COHERENT, HOST_VISIBLE

if TYPE_CHECKING:  # pragma: no cover
    from .instance import DeviceInfo

log = logging.getLogger("vknb")

MiB = 1 << 20
DEFAULT_BLOCK = 64 * MiB


@dataclass
class HeapStats:
    """One heap: its size, the driver's budget and usage, and what vknb holds in it."""

    index: int
    size: int
    device_local: bool
    budget: int | None  # the driver's budget for this process (VK_EXT_memory_budget), else None
    usage: int | None  # the driver's count of this process's usage, else None
    allocated: int  # bytes vknb holds from the driver in this heap
    used: int  # bytes of live buffers in this heap


@dataclass
class MemoryStats:
    """Snapshot returned by ``Device.memory_stats()``."""

    heaps: list[HeapStats]
    allocated: int  # bytes vknb holds from the driver (all heaps)
    used: int  # bytes in live buffers
    blocks: int  # VkDeviceMemory objects vknb holds (shared blocks + dedicated + cached)
    buffers: int  # live vknb buffers
    allocations: int = 0  # live sub-allocations + dedicated allocations
    images: int = 0  # live vknb images
    by_type: dict[int, int] = field(default_factory=dict)
    cached: int = 0  # bytes of freed allocations and empty blocks kept for reuse (in allocated)
    imported: int = 0  # bytes of host (numpy) memory imported for transfers, not in allocated
    imports: int = 0  # imports of host memory alive
    staging: int = 0  # bytes of vknb's own transfer staging buffers (part of used)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for display and JSON."""
        return {
            "heaps": [vars(h).copy() for h in self.heaps],
            "allocated": self.allocated,
            "used": self.used,
            "blocks": self.blocks,
            "buffers": self.buffers,
            "allocations": self.allocations,
            "images": self.images,
            "cached": self.cached,
            "imported": self.imported,
            "imports": self.imports,
            "staging": self.staging,
        }


class _Block:
    """One VkDeviceMemory with a free list (offset -> size, sorted)."""

    __slots__ = ("dedicated", "free", "handle", "mapped", "memory_type", "optimal", "size", "used")

    def __init__(
        self,
        handle: Any,
        size: int,
        memory_type: int,
        mapped: Any,
        dedicated: bool,
        optimal: bool = False,
    ):
        self.optimal = optimal  # holds optimal-tiling images (kept apart from buffers)
        self.handle = handle
        self.size = size
        self.memory_type = memory_type
        self.mapped = mapped  # void* of the whole block, or None
        self.dedicated = dedicated
        self.free: list[list[int]] = [] if dedicated else [[0, size]]  # sorted [offset, size]
        self.used = size if dedicated else 0

    def carve(self, size: int, align: int) -> int | None:
        for i, (off, sz) in enumerate(self.free):
            start = (off + align - 1) // align * align
            end = start + size
            if end <= off + sz:
                pieces = []
                if start > off:
                    pieces.append([off, start - off])
                if off + sz > end:
                    pieces.append([end, off + sz - end])
                self.free[i : i + 1] = pieces
                self.used += size
                return start
        return None

    def release(self, offset: int, size: int) -> None:
        self.used -= size
        i = bisect.bisect_left(self.free, [offset, 0])
        self.free.insert(i, [offset, size])
        # Coalesce with the neighbours.
        if i + 1 < len(self.free) and self.free[i][0] + self.free[i][1] == self.free[i + 1][0]:
            self.free[i][1] += self.free[i + 1][1]
            del self.free[i + 1]
        if i > 0 and self.free[i - 1][0] + self.free[i - 1][1] == self.free[i][0]:
            self.free[i - 1][1] += self.free[i][1]
            del self.free[i]


class Allocation:
    """A range of device memory owned by one buffer; freed by :meth:`Allocator.free`."""

    __slots__ = ("block", "memory_type", "offset", "size")

    def __init__(self, block: _Block, offset: int, size: int, memory_type: int) -> None:
        self.block = block
        self.offset = offset
        self.size = size
        self.memory_type = memory_type

    @property
    def memory(self) -> Any:
        return self.block.handle

    @property
    def mapped(self) -> Any:
        """``void*`` to the start of this allocation, or None if not host-visible."""
        m = self.block.mapped
        return None if m is None else m + self.offset


class Allocator:
    """Allocates device memory for one logical device and keeps statistics.

    ``handle`` is the ``VkDevice``, ``info`` its physical device, ``label`` names it in errors.
    """

    def __init__(self, handle: Any, info: DeviceInfo, label: str) -> None:
        self.device_label = label
        self.handle = handle
        self.info = info
        self.types = info.memory_types
        self.heaps = info.heaps
        # Never taken by a garbage-collector finalizer: buffers collected without close() are
        # freed at their device's next safe point (Device.retire_later), so no deadlock.
        self._lock = threading.Lock()
        # (memory type, optimal tiling) -> shared blocks: images are kept in blocks of their own,
        # so that no buffer shares a bufferImageGranularity page with one.
        self._blocks: dict[tuple[int, bool], list[_Block]] = {}
        self._dedicated: set[_Block] = set()
        self.allocations = 0
        self.nc_atom = info.limits["non_coherent_atom_size"]
        smallest_heap = min((h.size for h in self.heaps), default=DEFAULT_BLOCK)
        self.block_size = DEFAULT_BLOCK if smallest_heap >= 1 << 30 else 16 * MiB
        # Freed dedicated blocks kept for reuse, oldest first (see the module docstring).
        self._recycle: list[_Block] = []
        self.recycle_limit = recycle_limit(self.heaps)
        self._whole_bar: bool | None = None
        self.abandoned = False  # the device was lost: nothing is freed or reused any more

    # -- memory types ---------------------------------------------------------------------

    def find_type(self, type_bits: int, required: int, preferred: int = 0, avoid: int = 0) -> int:
        """The best memory type allowed by ``type_bits`` with ``required`` flags."""
        best, best_rank = -1, None
        for t in self.types:
            if not (type_bits >> t.index) & 1 or (t.flags & required) != required:
                continue
            rank = (bin(t.flags & preferred).count("1"), -bin(t.flags & avoid).count("1"), -t.index)
            if best_rank is None or rank > best_rank:
                best, best_rank = t.index, rank
        if best < 0:
            raise E.AllocationFailed(
                f"no memory type of {self.device_label} has flags 0x{required:x} "
                f"(allowed types: 0x{type_bits:x})"
            )
        return best

    def type_for(self, type_bits: int, kind: str) -> int:
        """Memory type for a buffer ``kind``: 'device', 'upload', 'readback' or 'host_device'."""
        if kind == "device":
            return self.find_type(type_bits, 0, DEVICE_LOCAL, avoid=HOST_VISIBLE)
        if kind == "upload":
            return self.find_type(type_bits, HOST_VISIBLE, HOST_COHERENT, avoid=DEVICE_LOCAL)
        if kind == "readback":
            return self.find_type(
                type_bits, HOST_VISIBLE, HOST_CACHED | HOST_COHERENT, avoid=DEVICE_LOCAL
            )
        if kind == "host_device":  # device-local and host-visible (BAR / unified memory)
            return self.find_type(type_bits, HOST_VISIBLE | DEVICE_LOCAL, HOST_COHERENT)
        raise ValueError(f"unknown memory kind {kind!r}")

    def has_host_visible_device_memory(self, type_bits: int = 0xFFFFFFFF) -> bool:
        want = HOST_VISIBLE | DEVICE_LOCAL | HOST_COHERENT
        return any((t.flags & want) == want and (type_bits >> t.index) & 1 for t in self.types)

    def whole_bar(self) -> bool:
        """Whether all of the device's memory can be mapped by the host (resizable BAR).

        True when a device-local, host-visible, coherent memory type lives in the largest
        device-local heap, as on an H100 with resizable BAR; false where the host sees only a
        256 MiB window of it (a separate small heap) or none.  Asked for every new Array, so
        worked out once.
        """
        if self._whole_bar is None:
            self._whole_bar = self._find_whole_bar()
        return self._whole_bar

    def _find_whole_bar(self) -> bool:
        want = HOST_VISIBLE | DEVICE_LOCAL | HOST_COHERENT
        local = [h.size for h in self.heaps if h.device_local]
        if not local:
            return False
        biggest = max(local)
        return any(
            (t.flags & want) == want and self.heaps[t.heap].size >= biggest for t in self.types
        )

    # -- allocate / free ------------------------------------------------------------------

    def _allocate_memory(self, size: int, memory_type: int, label: str) -> tuple[Any, Any]:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        heap = self.types[memory_type].heap
        # Some drivers (lavapipe) over-commit: enforce the heap's size (or the driver's budget
        # for this process, where VK_EXT_memory_budget reports one) ourselves.
        budget = self._budget()
        limit = self.heaps[heap].size
        held = self.allocated_in_heap(heap)
        if budget is not None:
            limit = min(limit, held + max(0, budget[0][heap] - budget[1][heap]))
        if held + size > limit and self._recycle:
            self._trim_to(0, heap)  # cached blocks go back first
            held = self.allocated_in_heap(heap)
        if held + size > limit:
            raise E.AllocationFailed(
                f"cannot allocate {_fmt_bytes(size)} for {label} on {self.device_label}: heap "
                f"{heap} holds {_fmt_bytes(self.heaps[heap].size)}, vknb already holds "
                f"{_fmt_bytes(held)} there and about {_fmt_bytes(max(0, limit - held))} is free; "
                "free Arrays you no longer need (del / .close())",
                function="vkAllocateMemory",
                label=label,
                result=-2,
            )
        info = _vk.new(
            "VkMemoryAllocateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                "allocationSize": size,
                "memoryTypeIndex": memory_type,
            },
        )
        p = ffi.new("VkDeviceMemory*")
        res = lib.vkAllocateMemory(self.handle, info, ffi.NULL, p)
        if res < 0 and self._recycle:  # the driver is out: give the cache back and try again
            self._trim_to(0)
            res = lib.vkAllocateMemory(self.handle, info, ffi.NULL, p)
        if res < 0:
            heap = self.types[memory_type].heap
            hs = self.heaps[heap].size
            free = self._heap_free(heap)
            free_s = f", about {_fmt_bytes(free)} free" if free is not None else ""
            raise E.AllocationFailed(
                f"cannot allocate {_fmt_bytes(size)} for {label} on {self.device_label}: "
                f"heap {heap} holds {_fmt_bytes(hs)}{free_s}; vknb holds "
                f"{_fmt_bytes(self.allocated_in_heap(heap))} there ({E.result_name(res)})",
                function="vkAllocateMemory",
                label=label,
                result=res,
            )
        _vk.check(res, "vkAllocateMemory", label)
        mem = p[0]
        mapped = None
        if self.types[memory_type].flags & HOST_VISIBLE:
            pp = ffi.new("void**")
            res = lib.vkMapMemory(self.handle, mem, 0, _vk.WHOLE_SIZE, 0, pp)
            if res < 0:
                lib.vkFreeMemory(self.handle, mem, ffi.NULL)
                _vk.check(res, "vkMapMemory", label)
            mapped = ffi.cast("char*", pp[0])
        return mem, mapped

    def allocate(
        self,
        size: int,
        alignment: int,
        type_bits: int,
        kind: str,
        label: str,
        *,
        optimal: bool = False,
    ) -> Allocation:
        """Allocate ``size`` bytes of ``kind`` (see :meth:`type_for`); ``optimal`` for an
        optimal-tiling image."""
        memory_type = self.type_for(type_bits, kind)
        heap_size = self.heaps[self.types[memory_type].heap].size
        if size > heap_size:
            raise E.AllocationFailed(
                f"cannot allocate {_fmt_bytes(size)} for {label}: heap "
                f"{self.types[memory_type].heap} of {self.device_label} holds only "
                f"{_fmt_bytes(heap_size)}",
                label=label,
            )
        if self.types[memory_type].flags & HOST_VISIBLE and not (
            self.types[memory_type].flags & HOST_COHERENT
        ):
            alignment = max(alignment, self.nc_atom)
        with self._lock:
            if size > self.block_size // 4:
                block = self._reuse(size, memory_type)
                if block is not None:
                    block.dedicated, block.free = True, []
                if block is None:
                    with _vk.deferred_interrupt():  # the memory has its block before Ctrl-C
                        mem, mapped = self._allocate_memory(size, memory_type, label)
                        block = _Block(mem, size, memory_type, mapped, dedicated=True)
                        self._dedicated.add(block)
                else:
                    self._dedicated.add(block)
                block.used = size
                self.allocations += 1
                return Allocation(block, 0, size, memory_type)
            blocks = self._blocks.setdefault((memory_type, optimal), [])
            for block in blocks:
                off = block.carve(size, alignment)
                if off is not None:
                    self.allocations += 1
                    return Allocation(block, off, size, memory_type)
            block = self._reuse_shared(memory_type)
            if block is not None:  # an empty shared block kept in the cache
                block.dedicated, block.optimal = False, optimal
                block.free, block.used = [[0, block.size]], 0
                blocks.append(block)
            else:
                with _vk.deferred_interrupt():  # the memory is in the block list before Ctrl-C
                    mem, mapped = self._allocate_memory(self.block_size, memory_type, label)
                    block = _Block(mem, self.block_size, memory_type, mapped, False, optimal)
                    blocks.append(block)
            off = block.carve(size, alignment)
            assert off is not None
            self.allocations += 1
            return Allocation(block, off, size, memory_type)

    def abandon(self) -> None:
        """The device was lost: from now on nothing is freed or handed out again (the GPU may
        still write any of it)."""
        self.abandoned = True

    def free(self, a: Allocation) -> None:
        """Return an allocation; a block with nothing left in it goes back to the driver."""
        if self.abandoned:
            return
        with self._lock:
            self._free_locked(a)

    def _free_locked(self, a: Allocation) -> None:
        self.allocations -= 1
        block = a.block
        if block.dedicated:
            self._dedicated.discard(block)
            if block.size <= self.recycle_limit:
                block.used = 0
                self._recycle.append(block)
                self._trim_to(self.recycle_limit)
            else:
                self._free_block(block)
            return
        block.release(a.offset, a.size)
        if block.used == 0:
            self._blocks[(block.memory_type, block.optimal)].remove(block)
            if block.size <= self.recycle_limit:  # kept: a loop that makes and frees
                self._recycle.append(block)  # arrays would allocate a block each time
                self._trim_to(self.recycle_limit)
            else:
                self._free_block(block)

    def _reuse(self, size: int, memory_type: int) -> _Block | None:
        """The smallest cached block of ``memory_type`` holding ``size`` with < 1/8 to spare."""
        best = None
        for b in self._recycle:
            if b.memory_type == memory_type and size <= b.size <= size + size // 8:
                if best is None or b.size < best.size:
                    best = b
        if best is not None:
            self._recycle.remove(best)
        return best

    def _reuse_shared(self, memory_type: int) -> _Block | None:
        """A cached block of ``memory_type`` of the shared blocks' size (the newest), or None."""
        for b in reversed(self._recycle):
            if b.memory_type == memory_type and b.size == self.block_size:
                self._recycle.remove(b)
                return b
        return None

    def _trim_to(self, limit: int, heap: int | None = None) -> None:
        """Free cached blocks, oldest first, until the cache holds at most ``limit`` bytes."""
        held = sum(b.size for b in self._recycle)
        for b in list(self._recycle):
            if held <= limit:
                break
            if heap is not None and self.types[b.memory_type].heap != heap:
                continue
            self._recycle.remove(b)
            held -= b.size
            self._free_block(b)

    def trim(self) -> int:
        """Free the recycle cache now; returns the bytes given back to the driver."""
        with self._lock:
            n = sum(b.size for b in self._recycle)
            self._trim_to(0)
            return n

    def _free_block(self, block: _Block) -> None:
        ffi, lib = _vk.ffi, _vk.lib
        if block.mapped is not None:
            lib.vkUnmapMemory(self.handle, block.handle)
            block.mapped = None
        lib.vkFreeMemory(self.handle, block.handle, ffi.NULL)
        block.handle = None

    def close(self) -> None:
        """Free every block (the device is going away)."""
        if self.abandoned:
            return
        with self._lock:
            for blocks in self._blocks.values():
                for b in blocks:
                    self._free_block(b)
            for b in self._dedicated:
                self._free_block(b)
            for b in self._recycle:
                self._free_block(b)
            self._blocks.clear()
            self._dedicated.clear()
            self._recycle.clear()

    # -- statistics ----------------------------------------------------------------------

    def _all_blocks(self) -> list[_Block]:
        out = list(self._dedicated) + self._recycle
        for blocks in self._blocks.values():
            out.extend(blocks)
        return out

    def allocated_in_heap(self, heap: int) -> int:
        return sum(b.size for b in self._all_blocks() if self.types[b.memory_type].heap == heap)

    def _budget(self) -> tuple[list[int], list[int]] | None:
        if "VK_EXT_memory_budget" not in self.info.extensions:
            return None
        lib, vk = _vk.lib, _vk.vk
        budget = _vk.new(
            "VkPhysicalDeviceMemoryBudgetPropertiesEXT",
            {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT},
        )
        props = _vk.new(
            "VkPhysicalDeviceMemoryProperties2",
            {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2, "pNext": budget},
        )
        lib.vkGetPhysicalDeviceMemoryProperties2(self.info.handle, props)
        n = len(self.heaps)
        return [int(budget.heapBudget[i]) for i in range(n)], [
            int(budget.heapUsage[i]) for i in range(n)
        ]

    def _heap_free(self, heap: int) -> int | None:
        b = self._budget()
        if b is None:
            return None
        return max(0, b[0][heap] - b[1][heap])

    def stats(self, buffers: int, images: int = 0) -> MemoryStats:
        with self._lock:
            blocks = self._all_blocks()
            budget = self._budget()
            heaps = []
            for h in self.heaps:
                mine = [b for b in blocks if self.types[b.memory_type].heap == h.index]
                heaps.append(
                    HeapStats(
                        index=h.index,
                        size=h.size,
                        device_local=h.device_local,
                        budget=budget[0][h.index] if budget else None,
                        usage=budget[1][h.index] if budget else None,
                        allocated=sum(b.size for b in mine),
                        used=sum(b.used for b in mine),
                    )
                )
            by_type: dict[int, int] = {}
            for b in blocks:
                by_type[b.memory_type] = by_type.get(b.memory_type, 0) + b.size
            return MemoryStats(
                heaps=heaps,
                allocated=sum(b.size for b in blocks),
                used=sum(b.used for b in blocks),
                blocks=len(blocks),
                buffers=buffers,
                allocations=self.allocations,
                images=images,
                by_type=by_type,
                cached=sum(b.size for b in self._recycle),
            )


def recycle_limit(heaps: Any) -> int:
    """Bytes of freed dedicated allocations kept for reuse (``VKNB_RECYCLE_MB`` overrides)."""
    mib = config.get("VKNB_RECYCLE_MB")
    if mib is not None:
        return int(mib) << 20
    largest = max((h.size for h in heaps), default=0)
    return min(1 << 30, largest // 8)


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
