"""Copies straight between numpy's memory and the device (``VK_EXT_external_memory_host``).

A large transfer between a numpy array and a device buffer can skip the staging buffers: the
host pages that hold the array's bytes are imported as device memory
(``VkImportMemoryHostPointerInfoEXT``), a ``VkBuffer`` is bound to them, and the copy engine
reads (or writes) the array itself with ``vkCmdCopyBuffer``: one pass over the bytes, at the
speed of the bus, instead of a host copy into staging memory plus a DMA.  :mod:`.buffer` decides
per transfer; this module owns the imports (:class:`HostImports`, one per device).

When an import pays off
    The driver pins every page it imports, and unpins it when the import is freed (on an H100,
    256 MiB took 11-14 ms to pin and 7-8 ms to unpin, several times the copy itself).  So an
    import of numpy-owned memory is kept after its transfer (at most
    ``VKNB_HOST_IMPORT_CACHE_MB``), and the next transfer of the same memory finds it.  With
    ``VKNB_HOST_IMPORT=auto`` (the default) vknb imports, on a discrete GPU, only memory that has
    moved before: a one-off ``vknb.asarray(x)`` goes through staging as it always did, a loop that
    moves the same arrays runs near the bus from its second pass.  ``VKNB_HOST_IMPORT=1`` imports
    every large contiguous array on any device with the extension (CPU drivers included: tests);
    ``0`` never.  Only transfers of :data:`HOST_IMPORT_MIN_BYTES` or more are considered.

Which bytes are imported
    The import starts and ends on multiples of the device's ``minImportedHostPointerAlignment``.
    Where that alignment is at most the page size (4 KiB on NVIDIA, AMD, Intel and lavapipe), the
    rounded range lies within the pages that hold the array's bytes, which are mapped while the
    array lives.  Where it is larger, the rounded range must lie within the pages of the
    allocation that owns the array (a numpy array owning its data), else the transfer goes
    through staging: importing memory that is not mapped can crash some drivers.  The GPU only
    ever reads or writes the array's own bytes (the copy's offset and size say so); read-only
    arrays are imported for uploads.

Why keeping an import is safe
    Only memory that a numpy array allocated itself (``OWNDATA``) is kept, keyed by that array
    and watched through a weak reference: numpy refuses to resize (move) an array that has weak
    references, so its memory stays where it is until the array is freed; the array's
    finalizer then drops the import (freed at the device's next safe point; no copy uses it
    any more, and the driver's pin keeps the pages until then).  A kept import is used
    only for a range it contains, and never after a ``fork()`` (the pages of a forked parent may
    be copied on write, leaving the import pointing at the child's copy).

Lifetimes
    A transfer holds its import (and the array) until its copy's fence has signalled; the memory
    is freed through the device's retirement (:meth:`Device.retire`), never while the GPU may use
    it; on a lost device never.  An import that fails (any ``VkResult`` error) sends the transfer
    through staging; an array whose import failed is not tried again, and after
    :data:`MAX_FAILURES` failures in a row the device stops importing.

Example
-------
>>> import os, numpy as np, vknb
>>> os.environ["VKNB_HOST_IMPORT"] = "1"
>>> a = vknb.asarray(np.ones(4 << 20, np.float32))   # 16 MiB: copied from numpy's own pages
>>> vknb.device().transfer_stats()["import"] >= 1   # where the device has the extension
True
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _vk, config
from .. import errors as E
from .._vk import constants as C
from .._vk.finalizer import Finalizer
from .device import OPEN, sharing_fields
from .instance import HOST_CACHED, HOST_COHERENT

if TYPE_CHECKING:  # pragma: no cover
    from .device import Device

log = logging.getLogger("vknb")

#: Transfers of fewer bytes never import: below this, staging (or a mapped copy) costs little
#: and the fixed cost of a submission and an import weighs more.
HOST_IMPORT_MIN_BYTES = 8 << 20
#: Imports that fail in a row before a device stops trying (a driver that refuses them all).
MAX_FAILURES = 4
#: Arrays remembered as seen once (``auto`` imports on the second transfer), least recent dropped.
_MAX_SEEN = 1024
_EXTENSION = "VK_EXT_external_memory_host"
_HANDLE = C.EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
_USAGE = C.BUFFER_USAGE_TRANSFER_SRC_BIT | C.BUFFER_USAGE_TRANSFER_DST_BIT

# Bumped in a parent process after each fork(): kept imports of an earlier generation are not
# used again (copy-on-write may have given the parent new pages).
_generation = 0


def _after_fork_in_parent() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_parent=_after_fork_in_parent)


def policy(device: Device, memory_kind: str) -> str | None:
    """How a transfer of numpy memory to or from a buffer of ``memory_kind`` may import it now:
    ``"always"``, ``"reused"`` (only memory seen moving before) or None (never).

    Reads ``VKNB_HOST_IMPORT`` and ``VKNB_FORCE_STAGING`` (which wins: staging for everything).

    Example
    -------
    >>> policy(vknb.device(), "device")                      # doctest: +SKIP
    'reused'
    """
    if memory_kind not in ("device", "host_device"):  # staging buffers are host memory already
        return None
    mode = config.get("VKNB_HOST_IMPORT")
    if mode == "0" or config.get("VKNB_FORCE_STAGING") or _EXTENSION not in device.extensions:
        return None
    if mode == "1":
        return "always"
    # On CPU drivers and integrated GPUs device memory is host memory: a threaded memcpy into it
    # is as fast as it gets.
    return None if device.info.type in ("cpu", "integrated") else "reused"


def memory_owner(a: np.ndarray) -> np.ndarray | None:
    """The numpy array that allocated ``a``'s memory (``OWNDATA``), or None when the memory
    belongs to something else (a ``bytes`` object, an ``mmap``, another library).

    Example
    -------
    >>> x = np.zeros(8); memory_owner(x[2:].view(np.uint8)) is x
    True
    """
    o: Any = a
    while isinstance(o, np.ndarray):
        if o.flags.owndata:
            return o
        o = o.base
    return None


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


class HostImport:
    """One imported range of host memory: a ``VkDeviceMemory`` and a ``VkBuffer`` bound to it.

    ``start`` and ``size`` are the host range (aligned); ``users`` counts the transfers using it;
    ``kept`` says whether it stays imported after them; ``evicted`` that it is no longer found.
    """

    __slots__ = (
        "__weakref__",
        "buffer",
        "evicted",
        "generation",
        "kept",
        "memory",
        "size",
        "start",
        "users",
    )

    def __init__(self, buffer: Any, memory: Any, start: int, size: int) -> None:
        self.buffer = buffer
        self.memory = memory
        self.start = start
        self.size = size
        self.users = 0
        self.kept = False
        self.evicted = False
        self.generation = _generation

    @property
    def end(self) -> int:
        return self.start + self.size


class Lease:
    """A transfer's use of an import: the ``VkBuffer`` and where the array's bytes start in it
    (``offset``); ``reused`` when the import was already there."""

    __slots__ = ("offset", "record", "reused")

    def __init__(self, record: HostImport, offset: int, reused: bool) -> None:
        self.record = record
        self.offset = offset
        self.reused = reused

    @property
    def buffer(self) -> Any:
        return self.record.buffer


class _Owner:
    """What is known of one numpy array: its weak reference, its kept imports, and whether an
    import of its memory failed."""

    __slots__ = ("failed", "records", "ref")

    def __init__(self, ref: weakref.ref[np.ndarray] | None) -> None:
        self.ref: Any = ref
        self.records: list[HostImport] = []
        self.failed = False


class HostImports:
    """A device's imports of host memory: the capability, the kept imports and their release.

    Made by :func:`host_imports_for` on a device's first large transfer; closed with the device.
    ``available`` says whether the device can import at all (``reason`` why not), ``alignment``
    is its ``minImportedHostPointerAlignment``.

    Example
    -------
    >>> hi = host_imports_for(vknb.device())
    >>> hi.available, hi.alignment                           # doctest: +SKIP
    (True, 4096)
    """

    def __init__(self, device: Device) -> None:
        self.device_ref = weakref.ref(device)
        self.handle = device.handle
        self.label = device.label
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.alignment = 0
        self.available = False
        self.reason = ""
        self.dedicated = False  # the driver wants a dedicated allocation per import
        self.families = [device.compute_family]
        if device.transfer_family is not None:
            self.families.append(device.transfer_family)
        # Never taken by an array's finalizer (it runs at any device's safe point, maybe under
        # this lock, maybe amid an iteration of these dicts): it only queues the array's key in
        # _gone and its imports for retirement; _sweep forgets the entry.
        self._lock = threading.Lock()
        self._owners: collections.OrderedDict[int, _Owner] = collections.OrderedDict()
        self._gone: collections.deque[int] = collections.deque()
        self._live: dict[int, HostImport] = {}  # every import not freed yet, by id
        self._failures = 0
        self._get_properties: Any = None
        self._properties: Any = None
        self._probe(device)

    # -- capability ------------------------------------------------------------------------

    def _probe(self, device: Device) -> None:
        if _EXTENSION not in device.extensions:
            self.reason = f"{device.label} does not have {_EXTENSION} enabled"
            return
        lib = _vk.lib
        fn = _vk.device_proc(self.handle, "vkGetMemoryHostPointerPropertiesEXT")
        if fn is None:
            self.reason = "the loader has no vkGetMemoryHostPointerPropertiesEXT"
            return
        props = _vk.new(
            "VkPhysicalDeviceExternalMemoryHostPropertiesEXT",
            {"sType": C.STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT},
        )
        p2 = _vk.new(
            "VkPhysicalDeviceProperties2",
            {"sType": C.STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, "pNext": props},
        )
        lib.vkGetPhysicalDeviceProperties2(device.info.handle, p2)
        align = int(props.minImportedHostPointerAlignment)
        if align <= 0 or align & (align - 1):
            self.reason = f"minImportedHostPointerAlignment {align} is not a power of two"
            return
        binfo = _vk.new(
            "VkPhysicalDeviceExternalBufferInfo",
            {
                "sType": C.STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_BUFFER_INFO,
                "usage": _USAGE,
                "handleType": _HANDLE,
            },
        )
        bprops = _vk.new(
            "VkExternalBufferProperties", {"sType": C.STRUCTURE_TYPE_EXTERNAL_BUFFER_PROPERTIES}
        )
        lib.vkGetPhysicalDeviceExternalBufferProperties(device.info.handle, binfo, bprops)
        features = int(bprops.externalMemoryProperties.externalMemoryFeatures)
        if not features & C.EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT:
            self.reason = "the driver cannot import host memory for transfer buffers"
            return
        self.dedicated = bool(features & C.EXTERNAL_MEMORY_FEATURE_DEDICATED_ONLY_BIT)
        self._get_properties = fn
        self._properties = _vk.new(  # reused under the lock
            "VkMemoryHostPointerPropertiesEXT",
            {"sType": C.STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT},
        )
        self.alignment = align
        self.available = True

    # -- the range of a transfer ----------------------------------------------------------

    def import_range(self, flat: np.ndarray, owner: np.ndarray | None) -> tuple[int, int] | None:
        """The aligned host range ``(start, end)`` to import for ``flat``'s bytes, or None where
        it would reach beyond memory known to be mapped (see the module's docstring)."""
        align = self.alignment
        addr = _address(flat)
        start = addr // align * align
        end = -(-(addr + flat.nbytes) // align) * align
        if align <= self.page:
            return start, end  # within the pages that hold the bytes
        page = self.page
        lo, hi = addr, addr + flat.nbytes
        if owner is not None:
            lo, hi = min(lo, _address(owner)), max(hi, _address(owner) + owner.nbytes)
        if start >= lo // page * page and end <= -(-hi // page) * page:
            return start, end
        return None

    # -- leases ---------------------------------------------------------------------------

    def acquire(self, flat: np.ndarray, *, mode: str) -> Lease | None:
        """An import holding ``flat``'s bytes (kept, or made now), or None: transfer otherwise.

        ``mode`` is :func:`policy`'s answer.  Give the lease back with :meth:`release`.
        """
        if not self.available or flat.nbytes < HOST_IMPORT_MIN_BYTES:
            return None
        owner = memory_owner(flat)
        rng = self.import_range(flat, owner)
        if rng is None:
            return None
        start, end = rng
        addr = _address(flat)
        limit = int(config.get("VKNB_HOST_IMPORT_CACHE_MB")) << 20
        keep = owner is not None and end - start <= limit
        if mode == "reused" and not keep:
            return None  # a one-off import costs more than staging
        dev = self.device_ref()
        if dev is None or dev.state is not OPEN:
            return None
        with self._lock:
            self._sweep()
            entry = self._entry(owner) if owner is not None else None
            if entry is not None:
                if entry.failed:
                    return None
                for rec in entry.records:
                    if rec.start <= start and end <= rec.end and rec.generation == _generation:
                        rec.users += 1
                        return Lease(rec, addr - rec.start, reused=True)
            if mode == "reused" and entry is None:
                assert owner is not None
                self._remember(owner)  # moves again: import then
                return None
            if self._failures >= MAX_FAILURES:
                return None
            try:
                rec = self._import(start, end - start)
            except E.ValidationError:
                raise
            except E.VulkanError as e:
                self._failures += 1
                if owner is not None:
                    (entry or self._remember(owner)).failed = True
                log.info("importing host memory on %s failed: %s (staging instead)", self.label, e)
                if self._failures == MAX_FAILURES:
                    log.warning(
                        "%s: %d imports of host memory failed in a row; transfers go through "
                        "staging from now on",
                        self.label,
                        MAX_FAILURES,
                    )
                dev.count_transfer("import_failed")
                return None
            self._failures = 0
            rec.users = 1
            if keep:
                assert owner is not None
                entry = entry or self._remember(owner)
                for old in [r for r in entry.records if r.start < end and start < r.end]:
                    self._evict(entry, old, dev)  # one import per byte of an array
                entry.records.append(rec)
                rec.kept = True
                self._fit(limit - rec.size, dev, spare=rec)
            return Lease(rec, addr - start, reused=False)

    def release(self, lease: Lease, retire: Callable[[Callable[[], None]], None]) -> None:
        """A transfer is done with ``lease`` (its copy submitted, finished or not): an import
        that is not kept is freed through ``retire`` (the device's retirement)."""
        rec = lease.record
        with self._lock:
            rec.users -= 1
            free = rec.users == 0 and (not rec.kept or rec.evicted)
        if free:
            retire(lambda: self._free(rec))

    def _sweep(self) -> None:
        """Forget the entries of arrays that were freed (under the lock)."""
        while self._gone:
            key = self._gone.popleft()
            entry = self._owners.get(key)
            if entry is not None and entry.ref() is None:
                del self._owners[key]

    def _entry(self, owner: np.ndarray) -> _Owner | None:
        """The entry of ``owner`` (most recently used now), or None (under the lock)."""
        key = id(owner)
        entry = self._owners.get(key)
        if entry is None or entry.ref() is not owner:
            return None
        self._owners.move_to_end(key)
        return entry

    def _remember(self, owner: np.ndarray) -> _Owner:
        """A new entry for ``owner``, watched through a weak reference (under the lock)."""
        key = id(owner)
        me = weakref.ref(self)
        stale = self._owners.get(key)
        dev = self.device_ref()
        if stale is not None and dev is not None:  # an array gone unnoticed: drop its imports
            for rec in list(stale.records):
                self._evict(stale, rec, dev)
        entry = _Owner(None)
        # (a finalizer, not a weak-reference callback in Python: see vknb._vk.finalizer)
        entry.ref = Finalizer(owner, _owner_gone, me, key, entry).ref
        self._owners[key] = entry
        # Bound the arrays remembered without imports (least recently used first).
        bare = [k for k, e in list(self._owners.items()) if not e.records and k != key]
        for k in bare[: max(0, len(bare) + 1 - _MAX_SEEN)]:
            self._owners.pop(k, None)
        return entry

    def _evict(self, entry: _Owner, rec: HostImport, dev: Device) -> None:
        """Stop keeping ``rec``; free it once no transfer uses it (under the lock)."""
        if rec in entry.records:
            entry.records.remove(rec)
        rec.evicted = True
        if rec.users == 0:
            dev.retire_later(lambda: self._free(rec))

    def _fit(self, budget: int, dev: Device, spare: HostImport | None = None) -> None:
        """Evict kept imports, least recently used first, until they hold at most ``budget``
        bytes (not counting ``spare``); also those from before a fork (under the lock)."""
        held = 0
        order: list[tuple[_Owner, HostImport]] = []
        for entry in list(self._owners.values()):
            if entry.ref() is None:  # freed: its imports are on their way out
                continue
            for rec in list(entry.records):
                if rec.generation != _generation:
                    self._evict(entry, rec, dev)
                elif rec is not spare:
                    order.append((entry, rec))
                    held += rec.size
        for entry, rec in order:
            if held <= budget:
                break
            self._evict(entry, rec, dev)
            held -= rec.size

    def trim(self) -> int:
        """Stop keeping every import (each is freed once no transfer uses it); returns the
        bytes they held.

        Example
        -------
        >>> host_imports_for(vknb.device()).trim() >= 0
        True
        """
        dev = self.device_ref()
        if dev is None:
            return 0
        with self._lock:
            self._sweep()
            n = sum(r.size for e in list(self._owners.values()) for r in e.records)
            self._fit(-1, dev)
        dev.collect()
        return n

    def usage(self) -> tuple[int, int]:
        """``(bytes, count)`` of host memory imported now (kept, in use, or awaiting release)."""
        live = list(self._live.values())
        return sum(r.size for r in live), len(live)

    # -- Vulkan ---------------------------------------------------------------------------

    def _import(self, start: int, size: int) -> HostImport:
        """Import ``size`` bytes of host memory at ``start`` and bind a buffer to them."""
        ffi, lib = _vk.ffi, _vk.lib
        label = f"host import 0x{start:x}+{size}"
        ptr = ffi.cast("void*", start)
        props = self._properties
        props.memoryTypeBits = 0
        _vk.check(
            self._get_properties(self.handle, _HANDLE, ptr, props),
            "vkGetMemoryHostPointerPropertiesEXT",
            label,
        )
        host_bits = int(props.memoryTypeBits)
        keep = _vk.Keep()
        fams = self.families
        info = _vk.new(
            "VkBufferCreateInfo",
            {
                "sType": _vk.vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                "pNext": keep(
                    _vk.new(
                        "VkExternalMemoryBufferCreateInfo",
                        {
                            "sType": C.STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO,
                            "handleTypes": _HANDLE,
                        },
                    )
                ),
                "size": size,
                "usage": _USAGE,
                **sharing_fields(fams, keep),
            },
        )
        made: list[Any] = []  # what the driver created, even where validation then objected
        # Ctrl-C is held back until the buffer and memory made here are in self._live.
        with _vk.deferred_interrupt():
            try:
                buf = _vk.create(
                    "vkCreateBuffer", self.handle, info, "VkBuffer", label, made.append
                )
            except BaseException:
                if made:
                    lib.vkDestroyBuffer(self.handle, made[0], ffi.NULL)
                raise
            mem = None
            try:
                req = ffi.new("VkMemoryRequirements*")
                lib.vkGetBufferMemoryRequirements(self.handle, buf, req)
                if int(req.size) > size:
                    raise E.BufferFailed(
                        f"{label}: a buffer over it needs {int(req.size)} bytes", label=label
                    )
                mtype = self._memory_type(host_bits & int(req.memoryTypeBits), label)
                ainfo = _vk.new(
                    "VkMemoryAllocateInfo",
                    {
                        "sType": _vk.vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                        "allocationSize": size,
                        "memoryTypeIndex": mtype,
                    },
                )
                imp = keep(
                    _vk.new(
                        "VkImportMemoryHostPointerInfoEXT",
                        {
                            "sType": C.STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT,
                            "handleType": _HANDLE,
                            "pHostPointer": ptr,
                        },
                    )
                )
                if self.dedicated:
                    imp.pNext = keep(
                        _vk.new(
                            "VkMemoryDedicatedAllocateInfo",
                            {
                                "sType": C.STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO,
                                "buffer": buf,
                            },
                        )
                    )
                ainfo.pNext = imp
                mem = _vk.create(
                    "vkAllocateMemory", self.handle, ainfo, "VkDeviceMemory", label, made.append
                )
                _vk.check(
                    lib.vkBindBufferMemory(self.handle, buf, mem, 0), "vkBindBufferMemory", label
                )
            except BaseException:
                lib.vkDestroyBuffer(self.handle, buf, ffi.NULL)
                if mem is not None:
                    lib.vkFreeMemory(self.handle, mem, ffi.NULL)
                elif len(made) > 1:  # created, then refused by the validation layer
                    lib.vkFreeMemory(self.handle, made[1], ffi.NULL)
                raise
            _vk.set_name(self.handle, _vk.OBJECT_BUFFER, buf, label)
            rec = HostImport(buf, mem, start, size)
            self._live[id(rec)] = rec
        return rec

    def _memory_type(self, bits: int, label: str) -> int:
        """A host-coherent memory type among ``bits`` (cached preferred): the host reaches the
        memory through its own pointer, never through a mapping that could be flushed."""
        dev = self.device_ref()
        types = dev.info.memory_types if dev is not None else ()
        best, rank = -1, -1
        for t in types:
            if (bits >> t.index) & 1 and t.flags & HOST_COHERENT:
                r = 1 if t.flags & HOST_CACHED else 0
                if r > rank:
                    best, rank = t.index, r
        if best < 0:
            raise E.AllocationFailed(
                f"{label}: no host-coherent memory type can import it (allowed: 0x{bits:x})",
                label=label,
            )
        return best

    def _free(self, rec: HostImport) -> None:
        """Destroy an import's buffer and memory, once (never raises)."""
        if self._live.pop(id(rec), None) is None:
            return
        dev = self.device_ref()
        if dev is None or not dev.handle_alive():
            return  # a destroyed device freed it; a lost one frees nothing
        try:
            _vk.lib.vkDestroyBuffer(self.handle, rec.buffer, _vk.ffi.NULL)
            _vk.lib.vkFreeMemory(self.handle, rec.memory, _vk.ffi.NULL)
        except Exception:  # pragma: no cover - never raise from cleanup
            log.exception("releasing a host import failed")

    def free_all(self) -> None:
        """Destroy every import now: the device is being destroyed and idle (never raises)."""
        ffi, lib = _vk.ffi, _vk.lib
        self._owners.clear()
        while self._live:
            _, rec = self._live.popitem()
            try:
                lib.vkDestroyBuffer(self.handle, rec.buffer, ffi.NULL)
                lib.vkFreeMemory(self.handle, rec.memory, ffi.NULL)
            except Exception:  # pragma: no cover - never raise from cleanup
                log.exception("releasing a host import failed")

    def close(self) -> None:
        """Free every import (the device closes, its work finished)."""
        self.free_all()


def _owner_gone(me: weakref.ref[HostImports], key: int, entry: _Owner) -> None:
    """Finalizer of an array whose memory vknb remembers or keeps imported (run at a device's
    safe point, after the array went: no locks)."""
    hi = me()
    if hi is None or hi._owners.get(key) is not entry:
        return
    hi._gone.append(key)
    dev = hi.device_ref()
    for rec in list(entry.records):
        rec.evicted = True
        if rec.users == 0 and dev is not None and dev.state is OPEN:
            dev.retire_later(functools.partial(hi._free, rec))


def host_imports_for(device: Device) -> HostImports:
    """The device's :class:`HostImports`, made on first use.

    Example
    -------
    >>> host_imports_for(vknb.device()).available            # doctest: +SKIP
    True
    """
    with device.lock:
        if device.host_import is None:
            device.host_import = HostImports(device)
            device.release_with_device.append(device.host_import.free_all)
        hi: HostImports = device.host_import
        return hi
