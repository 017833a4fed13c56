"""Buffers: a ``VkBuffer`` with its memory, and moving bytes between numpy and the device.

Data moves by one of three paths (``Device.transfer_stats()`` counts them):

* **import**: for a contiguous array of ``HOST_IMPORT_MIN_BYTES`` (8 MiB) or more, where
  ``VKNB_HOST_IMPORT`` asks for it (see :mod:`.hostimport`), the array's own pages are imported
  as device memory and the copy engine reads or writes them directly (``vkCmdCopyBuffer``);
* **direct**: through mapped memory where the buffer's memory is host-visible (lavapipe,
  integrated GPUs, resizable BAR);
* **staging**: otherwise, through a per-device pair of staging buffers used in turn, so that the
  host copies chunk *i+1* while the GPU copies chunk *i*.

Large host copies are split across threads (numpy releases the GIL while copying).  Where an
import is not possible (no extension, the driver refuses it, the alignment does not allow it)
the transfer takes one of the other two paths.

Lifetimes: ``close()`` (or the garbage collector) never frees memory the GPU may still use: the
release is retired by the device until every submission made before it has finished.  A host
copy in progress pins the buffer (closing it from another thread waits for the copy to end
before the memory goes), and an interrupted copy (Ctrl-C) lets its copy threads finish before
anything is freed.  An imported array is held until its copy's fence has signalled (for good on a
lost device); Ctrl-C during such a copy lets it finish for up to :data:`IMPORT_GRACE_S` before
KeyboardInterrupt propagates, so that the GPU normally writes nothing into ``out`` after it.

Example
-------
>>> import numpy as np, vknb
>>> b = vknb.Buffer(16)
>>> b.write(np.arange(4, dtype=np.float32)); b.read(np.float32)
array([0., 1., 2., 3.], dtype=float32)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _vk, config
from .. import errors as E
from .._vk import constants as C
from .._vk.finalizer import Finalizer
from .device import OPEN, sharing_fields
from .hostimport import HOST_IMPORT_MIN_BYTES, host_imports_for, policy

if TYPE_CHECKING:  # pragma: no cover
    from .device import Device, Submission
    from .memory import Allocation

log = logging.getLogger("vknb")

USAGE_TRANSFER_SRC = C.BUFFER_USAGE_TRANSFER_SRC_BIT
USAGE_TRANSFER_DST = C.BUFFER_USAGE_TRANSFER_DST_BIT
USAGE_UNIFORM = C.BUFFER_USAGE_UNIFORM_BUFFER_BIT
USAGE_STORAGE = C.BUFFER_USAGE_STORAGE_BUFFER_BIT
USAGE_TEXEL = C.BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT | C.BUFFER_USAGE_STORAGE_TEXEL_BUFFER_BIT
USAGE_ALL = USAGE_TRANSFER_SRC | USAGE_TRANSFER_DST | USAGE_UNIFORM | USAGE_STORAGE | USAGE_TEXEL

_PARALLEL_COPY_MIN = 4 << 20  # host copies above this are split across threads
#: How long Ctrl-C during a copy from or into imported numpy memory waits for the copy to end
#: before KeyboardInterrupt propagates (the copy engine moves 256 MiB in about 5 ms).
IMPORT_GRACE_S = 0.2
_COPY_CHUNK = 16 << 20
_ids = itertools.count(1)
_tokens = itertools.count(1)


def next_serial() -> int:
    """A new serial number for a resource (buffer or image): descriptor-set and hazard caches
    tell resources apart by it."""
    return next(_ids)


_pool: tuple[ThreadPoolExecutor, int] | None = None  # the copy threads and their count
_pool_lock = threading.Lock()


def _copy_pool() -> tuple[ThreadPoolExecutor, int]:
    global _pool
    if _pool is None:
        n = int(config.get("VKNB_COPY_THREADS"))  # a bad value raises here, naming it
        with _pool_lock:
            if _pool is None:
                _pool = (ThreadPoolExecutor(n, thread_name_prefix="vknb-copy"), n)
    return _pool


def host_copy(dst: np.ndarray, src: np.ndarray) -> None:
    """Copy bytes between two flat uint8 arrays of equal size, in parallel when large.

    Interrupt-safe: on Ctrl-C the chunks not started are cancelled and the running ones are
    let finish before KeyboardInterrupt propagates, so that no copy thread writes into memory
    that the caller frees next.
    """
    n = dst.nbytes
    if n < _PARALLEL_COPY_MIN:
        np.copyto(dst, src, casting="no")
        return
    pool, workers = _copy_pool()
    if workers < 2:
        np.copyto(dst, src, casting="no")
        return
    # Chunks of at most 16 MiB, more than the threads: Ctrl-C then waits only for the chunks
    # already running (a few ms), and the threads share the work evenly.
    parts = max(workers, -(-n // _COPY_CHUNK))
    step = -(-n // parts)
    step = (step + 63) // 64 * 64
    # Ctrl-C may land anywhere, even inside pool.submit after a chunk was queued: the gate, not
    # the list of futures, tells which chunks run, and closed it lets none start.
    gate = _CopyGate()
    futs: list[concurrent.futures.Future[None]] = []
    try:
        for i in range(0, n, step):
            futs.append(pool.submit(gate.copy, dst[i : i + step], src[i : i + step]))
        for f in futs:
            f.result()
    except BaseException:
        while True:  # a second Ctrl-C must not let the caller free memory under a copy
            try:
                gate.close()
                break
            except KeyboardInterrupt:
                continue
        for f in futs:
            f.cancel()
        raise


class _CopyGate:
    """The chunks of one host copy: which are running, and whether more may start."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.running = 0
        self.closed = False

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        with self.cond:
            if self.closed:
                return
            self.running += 1
        try:
            np.copyto(dst, src, casting="no")
        finally:
            with self.cond:
                self.running -= 1
                self.cond.notify_all()

    def close(self) -> None:
        """Let no chunk start; wait for those running to finish."""
        with self.cond:
            self.closed = True
            self.cond.wait_for(lambda: self.running == 0)


def _bytes_view(ptr: Any, nbytes: int) -> np.ndarray:
    """A transient uint8 view of mapped memory (never handed to users)."""
    return np.frombuffer(_vk.ffi.buffer(ptr, nbytes), dtype=np.uint8)


def flat_bytes(a: np.ndarray) -> np.ndarray:
    """A C-contiguous array's bytes as a flat uint8 view."""
    return a.reshape(-1).view(np.uint8) if a.ndim else a.reshape(1).view(np.uint8)


class Buffer:
    """A ``VkBuffer`` and the memory bound to it.

    Parameters
    ----------
    nbytes : int
        Size in bytes (a zero-size request gets a 16-byte buffer; ``nbytes`` stays 0).
    device : Device, optional
        Default: the session device.
    memory : str
        ``'device'`` (device-local; default), ``'upload'``/``'readback'`` (host staging), or
        ``'host_device'`` (device-local and host-visible, where it exists).
    label : str, optional
        Shown in reprs and errors.

    Example
    -------
    >>> b = vknb.Buffer(1024)
    >>> b.write(np.ones(256, np.float32)); b.read(np.float32)[:2]
    array([1., 1.], dtype=float32)
    >>> b.close()
    """

    def __init__(
        self,
        nbytes: int,
        *,
        device: Device | None = None,
        memory: str = "device",
        usage: int = USAGE_ALL,
        label: str | None = None,
    ) -> None:
        from .session import device as session_device

        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
            raise ValueError(f"buffer size must be a non-negative int, got {nbytes!r}")
        dev = device if device is not None else session_device()
        dev.check_usable()
        dev.collect()  # (memory of objects dropped since the last safe point comes back first)
        self.device = dev
        self.nbytes = int(nbytes)
        self.serial = next_serial()
        self.label = label or f"Buffer#{self.serial}"
        self.memory_kind = memory
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        size = max(16, (self.nbytes + 3) // 4 * 4)
        max_alloc = max((h.size for h in dev.info.heaps), default=0)
        if size > max_alloc:
            raise E.AllocationFailed(
                f"cannot create {self.label} of {size} bytes: the largest heap of "
                f"{dev.label} holds {max_alloc} bytes",
                label=self.label,
            )
        keep = _vk.Keep()
        fams = [dev.compute_family]
        if dev.transfer_family is not None:
            fams.append(dev.transfer_family)
        info = _vk.new(
            "VkBufferCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                "size": size,
                "usage": usage,
                **sharing_fields(fams, keep),
            },
        )
        p = ffi.new("VkBuffer*")
        made: dict[str, Any] = {}  # what exists so far: "alloc", "counted", "adopted"
        try:
            self._make(dev, info, p, memory, usage, size, made)
        except BaseException:
            # Anything, Ctrl-C included (it can land as any driver call returns), before the
            # finalizer owns the buffer: give back what was made.
            if not hasattr(self, "_finalizer"):
                if made.get("adopted"):
                    dev.disown(self)
                if made.get("counted"):
                    with dev.lock:
                        dev.buffers -= 1
                if p[0]:
                    lib.vkDestroyBuffer(dev.handle, p[0], ffi.NULL)
                if "alloc" in made:
                    dev.allocator.free(made["alloc"])
            raise

    def _make(
        self,
        dev: Device,
        info: Any,
        p: Any,
        memory: str,
        usage: int,
        size: int,
        made: dict[str, Any],
    ) -> None:
        """Create, back and register the buffer, noting in ``p`` and ``made`` what exists; on
        any exception the caller gives back what the finalizer does not own yet."""
        ffi, lib = _vk.ffi, _vk.lib
        res = lib.vkCreateBuffer(dev.handle, info, ffi.NULL, p)
        _vk.check(res, "vkCreateBuffer", self.label)
        handle = p[0]
        req = ffi.new("VkMemoryRequirements*")
        lib.vkGetBufferMemoryRequirements(dev.handle, handle, req)
        with _vk.deferred_interrupt():  # (the allocation is noted before Ctrl-C can land)
            made["alloc"] = dev.allocator.allocate(
                int(req.size), int(req.alignment), int(req.memoryTypeBits), memory, self.label
            )
        alloc = made["alloc"]
        res = lib.vkBindBufferMemory(dev.handle, handle, alloc.memory, alloc.offset)
        _vk.check(res, "vkBindBufferMemory", self.label)
        self.handle = handle
        self.size = size
        self.allocation: Allocation | None = alloc
        _vk.set_name(dev.handle, _vk.OBJECT_BUFFER, handle, self.label)
        flags = dev.info.memory_types[alloc.memory_type].flags
        self.host_visible = bool(flags & C.MEMORY_PROPERTY_HOST_VISIBLE_BIT)
        self.coherent = bool(flags & C.MEMORY_PROPERTY_HOST_COHERENT_BIT)
        # Reading through a mapping is fast only from cached memory or memory that is host RAM
        # anyway (CPU drivers, integrated GPUs); uncached device memory (BAR) reads crawl.
        self._fast_read = bool(flags & C.MEMORY_PROPERTY_HOST_CACHED_BIT) or dev.info.type in (
            "cpu",
            "integrated",
        )
        self._users = 0  # host copies in progress (under the device lock)
        self._views: set[int] = set()  # zero-copy mapped views alive
        self.usage = usage
        self.texel_views: dict[int, Any] = {}  # VkFormat -> VkBufferView (texel buffers)
        with dev.lock:
            dev.buffers += 1
            made["counted"] = True
        made["adopted"] = True
        dev.adopt(self)
        self._finalizer = Finalizer(self, _collected, dev, handle, alloc, self.texel_views)

    # -- lifetime --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the buffer has been closed (its memory released or about to be)."""
        return self.allocation is None

    def close(self) -> None:
        """Close the buffer now (idempotent).

        The memory goes back once the GPU no longer uses it (submissions already made finish
        first), no host copy is in progress and no zero-copy view from :meth:`mapped` is
        alive.  Using the buffer afterwards raises ObjectClosed.
        """
        dev = self.device
        with dev.lock:
            idle = self._users == 0 and not self._views
            if self.allocation is None:  # closed before: queue again a release Ctrl-C lost
                idle = idle and self._finalizer.alive
            self.allocation = None
        if idle:
            self._retire()

    def _retire(self) -> None:
        # The release is queued first and takes the finalizer's arguments when it runs: Ctrl-C
        # between the two steps can neither lose the release nor make it run twice.
        fin = self._finalizer
        if fin.alive:
            self.device.retire(lambda: _release_once(fin))

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> Allocation:
        """The buffer's allocation; raise ObjectClosed (or the device's error) if unusable."""
        a = self.allocation
        if a is None:
            raise E.ObjectClosed(f"{self.label} is closed", label=self.label)
        dev = self.device
        if dev.state is not OPEN or dev.epoch != _vk.epoch:
            raise dev.unusable_error(self.label)
        return a

    @contextlib.contextmanager
    def _using(self) -> Iterator[Allocation]:
        """Pin the buffer for a host copy: closing it meanwhile waits for the copy to end."""
        dev = self.device
        token = next(_tokens)
        counted = False  # (a Ctrl-C can land at any call below: each step is undone only if done)
        try:
            with dev.lock:
                a = self.check()
                self._users += 1
                counted = True
            dev.busy.add(token)
            yield a
        finally:
            idle = False
            try:
                if counted:
                    with dev.lock:
                        self._users -= 1
                        idle = self.allocation is None and self._users == 0 and not self._views
            finally:
                dev.busy.discard(token)
            if idle:
                self._retire()

    def __repr__(self) -> str:
        state = " closed" if self.allocation is None else ""
        return f"<vknb.Buffer {self.label} {self.nbytes} B ({self.memory_kind}){state}>"

    def texel_view(self, vk_format: int, nbytes: int | None = None) -> Any:
        """A ``VkBufferView`` of the buffer's first ``nbytes`` as texels of ``vk_format`` (for
        texel-buffer bindings); made once per format, destroyed with the buffer."""
        with self.device.lock:
            self.check()
            view = self.texel_views.get(vk_format)
            if view is not None:
                return view
            if not self.usage & USAGE_TEXEL:
                raise E.BufferFailed(f"{self.label} was not made for texel-buffer use")
            info = _vk.new(
                "VkBufferViewCreateInfo",
                {
                    "sType": _vk.vk.VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
                    "buffer": self.handle,
                    "format": vk_format,
                    "offset": 0,
                    "range": self.nbytes if nbytes is None else nbytes,
                },
            )
            return _vk.create(
                "vkCreateBufferView",
                self.device.handle,
                info,
                "VkBufferView",
                self.label,
                lambda v: self.texel_views.__setitem__(vk_format, v),
            )

    # -- host access -----------------------------------------------------------------------

    @contextlib.contextmanager
    def mapped(self, dtype: Any = np.uint8) -> Iterator[np.ndarray]:
        """Zero-copy numpy view of host-visible memory, for use inside the ``with`` block.

        Raises NotMapped for device-only memory.  Waits for the GPU's submitted work first.
        After the block the view is made read-only; a view kept beyond it still keeps the
        memory mapped (even past ``close()`` or ``vknb.reset()``), so reading it can never
        crash, but what it shows is no longer defined.

        Example
        -------
        >>> b = vknb.Buffer(16, memory="upload")
        >>> with b.mapped(np.float32) as v:
        ...     v[:] = 1.0
        """
        a = self.check()
        if a.mapped is None:
            raise E.NotMapped(
                f"{self.label} lives in device-only memory; use .read()/.write() instead"
            )
        dev = self.device
        dev.wait_gpu()
        dt = np.dtype(dtype)
        n = self.nbytes // dt.itemsize
        token = next(_tokens)
        with dev.lock:
            self.check()
            self._views.add(token)
            dev.mapped_views.add(token)
        holder = _MappedView(self, int(_vk.ffi.cast("uintptr_t", a.mapped)), n, dt)
        Finalizer(holder, _view_gone, weakref.ref(self), dev, token)
        view = np.asarray(holder)
        del holder
        self._invalidate(a)
        try:
            yield view
        finally:
            if self.allocation is not None and dev.state is OPEN:
                self._flush(a)
            view.flags.writeable = False

    def _flush(self, a: Allocation) -> None:
        if not self.coherent:
            self._mapped_range_op(a, "vkFlushMappedMemoryRanges")

    def _invalidate(self, a: Allocation) -> None:
        if not self.coherent:
            self._mapped_range_op(a, "vkInvalidateMappedMemoryRanges")

    def invalidate(self) -> None:
        """Make the GPU's writes visible to host reads of mapped memory (non-coherent memory)."""
        a = self.allocation
        if a is not None and not self.coherent:
            self._mapped_range_op(a, "vkInvalidateMappedMemoryRanges")

    def _mapped_range_op(self, a: Allocation, fn: str) -> None:
        atom = self.device.info.limits["non_coherent_atom_size"] or 1
        start = a.offset // atom * atom
        end = min(a.block.size, -(-(a.offset + a.size) // atom) * atom)
        r = _vk.new(
            "VkMappedMemoryRange",
            {
                "sType": _vk.vk.VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE,
                "memory": a.memory,
                "offset": start,
                "size": end - start,
            },
        )
        _vk.check(getattr(_vk.lib, fn)(self.device.handle, 1, r), fn, self.label)

    def _check_range(self, n: int, offset: int, verb: str) -> int:
        """``n`` bytes at ``offset`` fit the buffer, which is open; returns ``n``."""
        if offset < 0 or offset + n > self.nbytes:
            raise E.BufferTooSmall(
                f"{self.label} holds {self.nbytes} bytes; cannot {verb} {n} bytes at offset "
                f"{offset}"
            )
        self.check()
        return n

    def write(self, data: np.ndarray | bytes, offset: int = 0) -> None:
        """Copy ``data`` (any C-contiguous array or bytes) into the buffer at byte ``offset``.

        Example
        -------
        >>> b = vknb.Buffer(8); b.write(np.array([1, 2], np.int32))
        """
        src = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
        if not isinstance(src, np.ndarray):
            raise TypeError(
                f"{self.label}.write expects a numpy array or bytes, got {type(data).__name__}"
            )
        own = src.flags.c_contiguous  # the caller's memory, not a copy made here
        if not own:
            src = np.ascontiguousarray(src)
        flat = flat_bytes(src)
        n = self._check_range(flat.nbytes, offset, "write")
        if n == 0:
            return
        if own and n >= HOST_IMPORT_MIN_BYTES and self._copy_imported(flat, offset, upload=True):
            return
        direct = self.host_visible and not config.get("VKNB_FORCE_STAGING")
        if not direct:
            staging_for(self.device).upload(self, flat, offset)
            self.device.count_transfer("staging")
            return
        with self._using() as a:
            self.device.wait_gpu()  # a pending kernel may still read or write this memory
            host_copy(_bytes_view(a.mapped + offset, n), flat)
            self._flush(a)
        self.device.count_transfer("direct")

    def read(
        self,
        dtype: Any = np.uint8,
        *,
        out: np.ndarray | None = None,
        offset: int = 0,
        nbytes: int | None = None,
    ) -> np.ndarray:
        """Copy the buffer's bytes to a new array of ``dtype`` (or into ``out``, C-contiguous).

        Example
        -------
        >>> b = vknb.Buffer(8); b.write(np.array([1, 2], np.int32)); b.read(np.int32)
        array([1, 2], dtype=int32)
        """
        if out is None:
            dt = np.dtype(dtype)
            n = (self.nbytes - offset) if nbytes is None else nbytes
            out = np.empty(n // dt.itemsize, dtype=dt)
        elif not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"{self.label}.read: `out` must be a writeable C-contiguous array")
        flat = flat_bytes(out)
        n = self._check_range(flat.nbytes, offset, "read")
        if n == 0:
            return out
        if n >= HOST_IMPORT_MIN_BYTES and self._copy_imported(flat, offset, upload=False):
            return out
        direct = self.host_visible and self._fast_read and not config.get("VKNB_FORCE_STAGING")
        if not direct:
            staging_for(self.device).download(self, flat, offset)
            self.device.count_transfer("staging")
            return out
        with self._using() as a:
            self.device.wait_gpu()
            self._invalidate(a)
            host_copy(flat, _bytes_view(a.mapped + offset, n))
        self.device.count_transfer("direct")
        return out

    def _copy_imported(self, flat: np.ndarray, offset: int, *, upload: bool) -> bool:
        """Copy between ``flat`` (a C-contiguous array's bytes) and the buffer at ``offset`` by
        importing ``flat``'s own pages (see :mod:`.hostimport`); False where no import is
        wanted or possible now (the caller then takes another path)."""
        dev = self.device
        mode = policy(dev, self.memory_kind)
        if mode is None:
            return False
        with self._using():
            lease = None
            hi = host_imports_for(dev)
            try:
                lease = hi.acquire(flat, mode=mode)
                if lease is None:
                    return False
                dev.wait_gpu()  # a pending kernel may still read or write this buffer
                region = _vk.ffi.new(
                    "VkBufferCopy*",
                    {
                        "srcOffset": lease.offset if upload else offset,
                        "dstOffset": offset if upload else lease.offset,
                        "size": flat.nbytes,
                    },
                )
                src, dst = (lease.buffer, self.handle) if upload else (self.handle, lease.buffer)
                sub = dev.submit(
                    _copy_commands(src, dst, region, host_read=not upload),
                    label=f"{'upload to' if upload else 'download from'} {self.label} (imported)",
                    keep=(lease, flat, self, region),
                    wait=False,
                    transfer=True,
                )
                try:
                    sub.wait()
                except KeyboardInterrupt:
                    _let_finish(sub, IMPORT_GRACE_S)
                    raise
            except BaseException:
                if lease is not None:
                    _hold_until_done(dev, flat)
                raise
            finally:
                if lease is not None:
                    hi.release(lease, dev.retire)
        dev.count_transfer("import")
        if lease.reused:
            dev.count_transfer("import_reused")
        return True

    def zero(self) -> None:
        """Set every byte to zero (through mapped memory where it is host-visible)."""
        if self.host_visible and not config.get("VKNB_FORCE_STAGING"):
            with self._using() as a:
                self.device.wait_gpu()
                _bytes_view(a.mapped, self.nbytes).fill(0)
                self._flush(a)
            return
        self.fill(0)

    def fill(self, value: int = 0) -> None:
        """Set every 32-bit word of the buffer to ``value`` (``vkCmdFillBuffer``)."""
        self.check()
        lib = _vk.lib
        size = self.size
        handle = self.handle
        self.device.submit(
            lambda cmd: lib.vkCmdFillBuffer(cmd, handle, 0, size, value & 0xFFFFFFFF),
            label=f"fill {self.label}",
            keep=self,
        )


def _let_finish(sub: Submission, seconds: float) -> None:
    """Give an interrupted copy up to ``seconds`` to finish (further Ctrl-C ignored)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sub.done:
                return
            time.sleep(0.001)
        except KeyboardInterrupt:
            continue


# What copies on lost devices may still write into: kept until the process ends.
_held_for_lost: list[Any] = []


def _hold_until_done(dev: Device, obj: Any) -> None:
    """Keep ``obj`` (numpy memory a submitted copy uses) alive until every submission made so
    far has finished; for good where the device is lost."""
    held = [obj]
    if dev.state is OPEN:
        dev.retire(held.clear)  # the release drops it
    if dev.lost:
        _held_for_lost.append(obj)


class _MappedView:
    """Exposes mapped memory to numpy through ``__array_interface__``; holds the Buffer."""

    def __init__(self, owner: Buffer, address: int, n: int, dtype: np.dtype) -> None:
        self.owner = owner
        self.__array_interface__ = {
            "shape": (n,),
            "typestr": dtype.str,
            "descr": dtype.descr,
            "data": (address, False),
            "version": 3,
        }


def _view_gone(buf_ref: weakref.ref[Buffer], dev: Device, token: int) -> None:
    """Finalizer of a mapped view (runs wherever the garbage collector does: no locks)."""
    dev.mapped_views.discard(token)
    buf = buf_ref()
    if buf is None:
        return
    buf._views.discard(token)
    if buf.allocation is None and not buf._views and dev.state is OPEN:
        dev.retire_later(buf._retire)


def _free_buffer(
    dev: Device, handle: Any, alloc: Allocation, texel_views: dict[int, Any] | None = None
) -> None:
    """Destroy the buffer (and its texel views) and free its memory (never raises)."""
    try:
        with dev.lock:
            dev.buffers -= 1
        if not dev.handle_alive():
            return  # a destroyed device freed its memory wholesale; a lost one frees nothing
        for view in (texel_views or {}).values():
            _vk.lib.vkDestroyBufferView(dev.handle, view, _vk.ffi.NULL)
        _vk.lib.vkDestroyBuffer(dev.handle, handle, _vk.ffi.NULL)
        dev.allocator.free(alloc)
    except Exception:  # pragma: no cover
        log.exception("releasing a buffer failed")


def _release_once(fin: Finalizer) -> None:
    """Free what a buffer's finalizer would free, unless it (or this) ran already."""
    info = fin.detach()
    if info is not None:
        _free_buffer(*info[2])


def _collected(dev: Device, handle: Any, alloc: Allocation, texel_views: dict[int, Any]) -> None:
    """Finalizer of a Buffer collected without close() (see Device.retire_collected)."""
    if dev.handle_alive():  # (a device being closed runs its queue before it is destroyed)
        dev.retire_collected(lambda: _free_buffer(dev, handle, alloc, texel_views))
    elif dev.usable_here():
        dev.buffers -= 1


class Staging:
    """Two host-visible staging halves per direction, used in turn for chunked transfers.

    One per device (``device.staging``), made by its first transfer through staging.
    Transfers are serialized by its lock; the submissions of a transfer interrupted by Ctrl-C
    are waited for before the halves are used again.
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.chunk = int(config.get("VKNB_STAGING_MB")) << 20

        def halves(memory: str, name: str, usage: int) -> list[Buffer]:
            return [
                Buffer(self.chunk, device=device, memory=memory, label=f"{name}{i}", usage=usage)
                for i in range(2)
            ]

        self.up = halves("upload", "staging-up", USAGE_TRANSFER_SRC)
        self.down = halves("readback", "staging-down", USAGE_TRANSFER_DST)
        for b in self.up + self.down:
            device.disown(b)  # owned by the device directly, closed last
        self.lock = threading.Lock()
        self.outstanding: list[Submission] = []  # of an interrupted transfer

    def close(self) -> None:
        for b in self.up + self.down:
            b.close()

    def settle(self) -> None:
        """Wait for what an interrupted transfer left running (under the lock)."""
        subs, self.outstanding = self.outstanding, []
        for s in subs:
            try:
                s.wait()
            except E.DeviceLost:
                raise
            except E.VulkanError:
                pass

    def upload(self, dst: Buffer, flat: np.ndarray, offset: int) -> None:
        dev = self.device
        ffi = _vk.ffi
        dev.wait_gpu()  # a pending kernel may still read or write dst
        chunk = self.chunk
        with self.lock, dst._using():
            self.settle()
            pending: list[Any] = [None, None]
            try:
                for k, start in enumerate(range(0, flat.nbytes, chunk)):
                    half = k % 2
                    if pending[half] is not None:
                        pending[half].wait()
                        pending[half] = None
                    st = self.up[half]
                    a = st.check()
                    n = min(chunk, flat.nbytes - start)
                    host_copy(_bytes_view(a.mapped, n), flat[start : start + n])
                    st._flush(a)
                    region = ffi.new(
                        "VkBufferCopy*", {"srcOffset": 0, "dstOffset": offset + start, "size": n}
                    )
                    pending[half] = dev.submit(
                        _copy_commands(st.handle, dst.handle, region, host_read=False),
                        label=f"transfer upload {dst.label}",
                        keep=(st, dst, region),
                        wait=False,
                        transfer=True,
                    )
                for i, p in enumerate(pending):
                    if p is not None:
                        p.wait()
                        pending[i] = None
            except BaseException:
                self.outstanding.extend(p for p in pending if p is not None)
                raise

    def download(self, src: Buffer, flat: np.ndarray, offset: int) -> None:
        dev = self.device
        ffi = _vk.ffi
        dev.wait_gpu()
        chunk = self.chunk
        with self.lock, src._using():
            self.settle()
            chunks = list(range(0, flat.nbytes, chunk))
            pending: dict[int, Any] = {}

            def issue(k: int) -> None:
                start = chunks[k]
                n = min(chunk, flat.nbytes - start)
                st = self.down[k % 2]
                region = ffi.new(
                    "VkBufferCopy*", {"srcOffset": offset + start, "dstOffset": 0, "size": n}
                )
                pending[k] = dev.submit(
                    _copy_commands(src.handle, st.handle, region, host_read=True),
                    label=f"transfer download {src.label}",
                    keep=(st, src, region),
                    wait=False,
                    transfer=True,
                )

            try:
                issue(0)
                for k, start in enumerate(chunks):
                    if k + 1 < len(chunks):
                        issue(k + 1)
                    pending.pop(k).wait()
                    st = self.down[k % 2]
                    a = st.check()
                    st._invalidate(a)
                    n = min(chunk, flat.nbytes - start)
                    host_copy(flat[start : start + n], _bytes_view(a.mapped, n))
            except BaseException:
                self.outstanding.extend(pending.values())
                raise


def _copy_commands(src: Any, dst: Any, region: Any, *, host_read: bool) -> Callable[[Any], None]:
    """What a staging submission records: one copy (and, into readback memory, a barrier that
    makes it visible to the host)."""

    def record(cmd: Any) -> None:
        _vk.lib.vkCmdCopyBuffer(cmd, src, dst, 1, region)
        if host_read:
            host_read_barrier(cmd, transfer_only=True)

    return record


def host_read_barrier(cmd: Any, transfer_only: bool = False) -> None:
    """Make transfer (and, on a compute queue, shader) writes visible to the host."""
    src_access = C.ACCESS_TRANSFER_WRITE_BIT
    src_stage = C.PIPELINE_STAGE_TRANSFER_BIT
    if not transfer_only:  # a transfer-only queue may not name compute stages
        src_access |= C.ACCESS_SHADER_WRITE_BIT
        src_stage |= C.PIPELINE_STAGE_COMPUTE_SHADER_BIT
    b = _vk.new(
        "VkMemoryBarrier",
        {
            "sType": _vk.vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            "srcAccessMask": src_access,
            "dstAccessMask": C.ACCESS_HOST_READ_BIT,
        },
    )
    null = _vk.ffi.NULL
    _vk.lib.vkCmdPipelineBarrier(
        cmd, src_stage, C.PIPELINE_STAGE_HOST_BIT, 0, 1, b, 0, null, 0, null
    )


def staging_for(device: Device) -> Staging:
    """The device's staging buffers, made on first use."""
    with device.lock:
        if device.staging is None:
            device.staging = Staging(device)
        return device.staging
