"""Buffers and device arrays.

:class:`Buffer` is a ``VkBuffer`` with its memory.  Data moves between numpy and a buffer
directly through mapped memory when the buffer's memory is host-visible (lavapipe, integrated
GPUs, resizable BAR), and otherwise through a per-device pair of staging buffers used in turn, so
that the host copies chunk *i+1* while the GPU copies chunk *i*; large host copies are split
across threads (numpy releases the GIL while copying).

:class:`Array` adds a shape and a dtype: it is what users hold.

Example
-------
>>> import numpy as np, vknb
>>> a = vknb.asarray(np.arange(8, dtype=np.float32))
>>> a.shape, a.dtype, a.nbytes
((8,), dtype('float32'), 32)
>>> a.numpy()[:3]
array([0., 1., 2.], dtype=float32)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _vk
from .. import errors as E
from .instance import HOST_CACHED, HOST_COHERENT, HOST_VISIBLE

if TYPE_CHECKING:  # pragma: no cover
    from .device import Device
    from .memory import Allocation

log = logging.getLogger("vknb")

USAGE_TRANSFER_SRC = 0x1
USAGE_TRANSFER_DST = 0x2
USAGE_UNIFORM = 0x10
USAGE_STORAGE = 0x20
USAGE_ALL = USAGE_TRANSFER_SRC | USAGE_TRANSFER_DST | USAGE_UNIFORM | USAGE_STORAGE


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


STAGING_CHUNK = _env_int("VKNB_STAGING_MB", 64) << 20  # bytes per staging buffer
_PARALLEL_COPY_MIN = 4 << 20  # host copies above this are split across threads
# Tests set VKNB_FORCE_STAGING=1 to drive the staging path (what discrete GPUs use) on drivers
# whose memory is all host-visible, such as lavapipe.
_FORCE_STAGING = os.environ.get("VKNB_FORCE_STAGING") == "1"
_ids = itertools.count(1)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _copy_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                n = _env_int("VKNB_COPY_THREADS", max(2, min(16, os.cpu_count() or 2)))
                _pool = ThreadPoolExecutor(n, thread_name_prefix="vknb-copy")
    return _pool


def host_copy(dst: np.ndarray, src: np.ndarray) -> None:
    """Copy bytes between two flat uint8 arrays of equal size, in parallel when large."""
    n = dst.nbytes
    if n < _PARALLEL_COPY_MIN or (os.cpu_count() or 1) < 2:
        np.copyto(dst, src, casting="no")
        return
    pool = _copy_pool()
    parts = min(pool._max_workers, max(2, n // (2 << 20)))
    step = -(-n // parts)
    step = (step + 63) // 64 * 64
    futs = [
        pool.submit(np.copyto, dst[i : i + step], src[i : i + step], casting="no")
        for i in range(0, n, step)
    ]
    for f in futs:
        f.result()


def _bytes_view(ptr: Any, nbytes: int) -> np.ndarray:
    """A transient uint8 view of mapped memory (never handed to users)."""
    return np.frombuffer(_vk.ffi.buffer(ptr, nbytes), dtype=np.uint8)


def _flat_bytes(a: np.ndarray) -> np.ndarray:
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

        if not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
            raise ValueError(f"buffer size must be a non-negative int, got {nbytes!r}")
        dev = device if device is not None else session_device()
        dev._check_open()
        self.device = dev
        self.nbytes = int(nbytes)
        self._serial = next(_ids)
        self.label = label or f"Buffer#{self._serial}"
        self.memory_kind = memory
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        size = max(16, (self.nbytes + 3) // 4 * 4)
        max_alloc = dev.info.heaps and max(h.size for h in dev.info.heaps)
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
                "sharingMode": 1 if len(fams) > 1 else 0,  # CONCURRENT across our two families
                "queueFamilyIndexCount": len(fams) if len(fams) > 1 else 0,
                "pQueueFamilyIndices": keep(ffi.new("uint32_t[]", fams))
                if len(fams) > 1
                else ffi.NULL,
            },
        )
        p = ffi.new("VkBuffer*")
        res = lib.vkCreateBuffer(dev.handle, info, ffi.NULL, p)
        if res == 0 and _vk._validation_pending:  # created, but validation objected: undo
            lib.vkDestroyBuffer(dev.handle, p[0], ffi.NULL)
        _vk.check(res, "vkCreateBuffer", self.label)
        handle = p[0]
        req = ffi.new("VkMemoryRequirements*")
        lib.vkGetBufferMemoryRequirements(dev.handle, handle, req)
        try:
            alloc = dev.allocator.allocate(
                int(req.size), int(req.alignment), int(req.memoryTypeBits), memory, self.label
            )
        except BaseException:
            lib.vkDestroyBuffer(dev.handle, handle, ffi.NULL)
            raise
        res = lib.vkBindBufferMemory(dev.handle, handle, alloc.memory, alloc.offset)
        if res < 0:
            lib.vkDestroyBuffer(dev.handle, handle, ffi.NULL)
            dev.allocator.free(alloc)
            _vk.check(res, "vkBindBufferMemory", self.label)
        self.handle = handle
        self.size = size
        self._alloc: Allocation | None = alloc
        _vk.set_name(dev.handle, _vk.OBJECT_BUFFER, handle, self.label)
        flags = dev.info.memory_types[alloc.memory_type].flags
        self.host_visible = bool(flags & HOST_VISIBLE)
        self._coherent = bool(flags & HOST_COHERENT)
        # Reading through a mapping is fast only from cached memory or memory that is host RAM
        # anyway (CPU drivers, integrated GPUs); uncached device memory (BAR) reads crawl.
        self._fast_read = bool(flags & HOST_CACHED) or dev.info.type in ("cpu", "integrated")
        self._holders: weakref.WeakSet[_MappedView] = weakref.WeakSet()
        dev._buffers += 1
        dev._adopt(self)
        self._finalizer = weakref.finalize(self, _release_buffer, dev, handle, alloc)

    # -- lifetime --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the buffer has been released."""
        return self._alloc is None

    def close(self) -> None:
        """Release the buffer and its memory now (idempotent).

        A zero-copy view from :meth:`mapped` that is still referenced delays the release of the
        memory (not the close) until the view is gone, so that reading it cannot crash.
        """
        if self._alloc is None:
            return
        self._alloc = None
        holders = list(self._holders)
        if not holders:
            self._finalizer()
            return
        remaining = [len(holders)]
        fin = self._finalizer

        def one_gone() -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                fin()

        for h in holders:
            weakref.finalize(h, one_gone)

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release_now(self) -> None:
        """Destroy now even if mapped views are kept (the device is closing)."""
        self._alloc = None
        self._finalizer()

    def _check(self) -> Allocation:
        a = self._alloc
        if a is None:
            raise E.ObjectClosed(f"{self.label} is closed")
        if self.device._closed:
            raise E.ObjectClosed(f"{self.label}: its device {self.device.label} is closed")
        return a

    def __repr__(self) -> str:
        state = " closed" if self._alloc is None else ""
        return f"<vknb.Buffer {self.label} {self.nbytes} B ({self.memory_kind}){state}>"

    # -- host access -----------------------------------------------------------------------

    @contextlib.contextmanager
    def mapped(self, dtype: Any = np.uint8) -> Iterator[np.ndarray]:
        """Zero-copy numpy view of host-visible memory, valid only inside the ``with`` block.

        Raises NotMapped for device-only memory.  Do not keep the view: after the block it is
        detached (its data pointer is no longer valid to use).

        Example
        -------
        >>> b = vknb.Buffer(16, memory="upload")
        >>> with b.mapped(np.float32) as v:
        ...     v[:] = 1.0
        """
        a = self._check()
        if a.mapped is None:
            raise E.NotMapped(
                f"{self.label} lives in device-only memory; use .read()/.write() instead"
            )
        self.device.synchronize()
        dt = np.dtype(dtype)
        n = self.nbytes // dt.itemsize
        holder = _MappedView(self, int(_vk.ffi.cast("uintptr_t", a.mapped)), n, dt)
        self._holders.add(holder)
        view = np.asarray(holder)
        del holder
        self._invalidate(a)
        try:
            yield view
        finally:
            self._flush(a)
            # Detach: the view can no longer write (and it keeps the Buffer object alive).
            view.flags.writeable = False

    def _flush(self, a: Allocation) -> None:
        if not self._coherent:
            self._mapped_range_op(a, "vkFlushMappedMemoryRanges")

    def _invalidate(self, a: Allocation) -> None:
        if not self._coherent:
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

    def write(self, data: np.ndarray | bytes, offset: int = 0) -> None:
        """Copy ``data`` (any C-contiguous array or bytes) into the buffer at byte ``offset``.

        Example
        -------
        >>> b = vknb.Buffer(8); b.write(np.array([1, 2], np.int32))
        """
        a = self._check()
        src = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
        if not isinstance(src, np.ndarray):
            raise TypeError(
                f"{self.label}.write expects a numpy array or bytes, got {type(data).__name__}"
            )
        if not src.flags.c_contiguous:
            src = np.ascontiguousarray(src)
        flat = _flat_bytes(src)
        n = flat.nbytes
        if offset < 0 or offset + n > self.nbytes:
            raise E.BufferTooSmall(
                f"{self.label} holds {self.nbytes} bytes; cannot write {n} bytes at offset {offset}"
            )
        if n == 0:
            return
        if a.mapped is not None and not _FORCE_STAGING:
            self.device.synchronize()
            host_copy(_bytes_view(a.mapped + offset, n), flat)
            self._flush(a)
            return
        _staging(self.device).upload(self, flat, offset)

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
        a = self._check()
        if out is None:
            dt = np.dtype(dtype)
            n = (self.nbytes - offset) if nbytes is None else nbytes
            out = np.empty(n // dt.itemsize, dtype=dt)
        elif not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"{self.label}.read: `out` must be a writeable C-contiguous array")
        flat = _flat_bytes(out)
        n = flat.nbytes
        if offset < 0 or offset + n > self.nbytes:
            raise E.BufferTooSmall(
                f"{self.label} holds {self.nbytes} bytes; cannot read {n} bytes at offset {offset}"
            )
        if n == 0:
            return out
        if a.mapped is not None and self._fast_read and not _FORCE_STAGING:
            self.device.synchronize()
            self._invalidate(a)
            host_copy(flat, _bytes_view(a.mapped + offset, n))
            return out
        _staging(self.device).download(self, flat, offset)
        return out

    def fill(self, value: int = 0) -> None:
        """Set every 32-bit word of the buffer to ``value`` (``vkCmdFillBuffer``)."""
        self._check()
        lib = _vk.lib
        size = self.size
        self.device.submit(
            lambda cmd: lib.vkCmdFillBuffer(cmd, self.handle, 0, size, value & 0xFFFFFFFF),
            label=f"fill {self.label}",
            keep=self,
        )


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


def _release_buffer(dev: Device, handle: Any, alloc: Allocation) -> None:
    """Finalizer: destroy the buffer and free its memory (never raises)."""
    try:
        dev._buffers -= 1
        if dev._closed:
            return  # the device freed its memory wholesale
        _vk.lib.vkDestroyBuffer(dev.handle, handle, _vk.ffi.NULL)
        dev.allocator.free(alloc)
    except Exception:  # pragma: no cover
        log.exception("releasing a buffer failed")


class _Staging:
    """Two host-visible staging halves per direction, used in turn for chunked transfers."""

    def __init__(self, device: Device) -> None:
        self.device = device

        def halves(memory: str, name: str, usage: int) -> list[Buffer]:
            return [
                Buffer(STAGING_CHUNK, device=device, memory=memory, label=f"{name}{i}", usage=usage)
                for i in range(2)
            ]

        self.up = halves("upload", "staging-up", USAGE_TRANSFER_SRC)
        self.down = halves("readback", "staging-down", USAGE_TRANSFER_DST)
        for b in self.up + self.down:
            device._children.discard(b)  # owned by the device directly, closed last
        self.lock = threading.Lock()

    def close(self) -> None:
        for b in self.up + self.down:
            b.close()

    def upload(self, dst: Buffer, flat: np.ndarray, offset: int) -> None:
        dev = self.device
        lib, ffi = _vk.lib, _vk.ffi
        dev.synchronize()  # a pending kernel may still read or write dst
        with self.lock:
            pending: list[Any] = [None, None]
            for k, start in enumerate(range(0, flat.nbytes, STAGING_CHUNK)):
                half = k % 2
                if pending[half] is not None:
                    pending[half].wait()
                st = self.up[half]
                a = st._check()
                n = min(STAGING_CHUNK, flat.nbytes - start)
                host_copy(_bytes_view(a.mapped, n), flat[start : start + n])
                st._flush(a)
                region = ffi.new(
                    "VkBufferCopy*", {"srcOffset": 0, "dstOffset": offset + start, "size": n}
                )
                src_h, dst_h = st.handle, dst.handle
                pending[half] = dev.submit(
                    lambda cmd, s=src_h, d=dst_h, r=region: lib.vkCmdCopyBuffer(cmd, s, d, 1, r),
                    label=f"transfer upload {dst.label}",
                    keep=(st, dst, region),
                    wait=False,
                    transfer=True,
                )
            for p in pending:
                if p is not None:
                    p.wait()

    def download(self, src: Buffer, flat: np.ndarray, offset: int) -> None:
        dev = self.device
        lib, ffi = _vk.lib, _vk.ffi
        dev.synchronize()
        with self.lock:
            chunks = list(range(0, flat.nbytes, STAGING_CHUNK))
            pending: dict[int, Any] = {}

            def issue(k: int) -> None:
                start = chunks[k]
                n = min(STAGING_CHUNK, flat.nbytes - start)
                st = self.down[k % 2]
                region = ffi.new(
                    "VkBufferCopy*", {"srcOffset": offset + start, "dstOffset": 0, "size": n}
                )
                s_h, d_h = src.handle, st.handle
                pending[k] = dev.submit(
                    lambda cmd, s=s_h, d=d_h, r=region: (
                        lib.vkCmdCopyBuffer(cmd, s, d, 1, r),
                        _host_read_barrier(cmd, transfer_only=True),
                    ),
                    label=f"transfer download {src.label}",
                    keep=(st, src, region),
                    wait=False,
                    transfer=True,
                )

            issue(0)
            for k, start in enumerate(chunks):
                if k + 1 < len(chunks):
                    issue(k + 1)
                pending.pop(k).wait()
                st = self.down[k % 2]
                a = st._check()
                st._invalidate(a)
                n = min(STAGING_CHUNK, flat.nbytes - start)
                host_copy(flat[start : start + n], _bytes_view(a.mapped, n))


def _host_read_barrier(cmd: Any, transfer_only: bool = False) -> None:
    """Make transfer (and, on a compute queue, shader) writes visible to the host."""
    vk = _vk.vk
    src_access = vk.VK_ACCESS_TRANSFER_WRITE_BIT
    src_stage = vk.VK_PIPELINE_STAGE_TRANSFER_BIT
    if not transfer_only:  # a transfer-only queue may not name compute stages
        src_access |= vk.VK_ACCESS_SHADER_WRITE_BIT
        src_stage |= vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
    b = _vk.new(
        "VkMemoryBarrier",
        {
            "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            "srcAccessMask": src_access,
            "dstAccessMask": vk.VK_ACCESS_HOST_READ_BIT,
        },
    )
    _vk.lib.vkCmdPipelineBarrier(
        cmd,
        src_stage,
        vk.VK_PIPELINE_STAGE_HOST_BIT,
        0,
        1,
        b,
        0,
        _vk.ffi.NULL,
        0,
        _vk.ffi.NULL,
    )


def _staging(device: Device) -> _Staging:
    if device._staging is None:
        device._staging = _Staging(device)
    return device._staging
