"""Batches: record many kernel calls into one submission, and replay them like a CUDA graph.

Inside ``with vknb.batch() as b:``, calling a kernel records the dispatch instead of submitting
it (the call returns the dispatch's index in the batch).  Barriers are inserted only where a
dispatch reads or writes a buffer that an earlier dispatch since the last barrier wrote, or writes
one that it read, using the reflected ``readonly`` / ``writeonly`` access of each binding.  On
leaving the block the batch is submitted once and waited for (``wait=False`` leaves it running;
``vknb.synchronize()`` or ``b.wait()`` waits), and numpy arrays bound to writable bindings are
written back.

``b.replay()`` submits the recorded command buffer again as is; ``b.replay({i: {"a": 2.0}})``
first re-records it with new push-constant values for dispatch ``i`` (by member name).  A batch
whose Arrays or Kernels were closed since it was recorded refuses to replay (ObjectClosed naming
the object) instead of running on freed memory.

A batch owns a command pool of its own: Vulkan requires a pool to be externally synchronized
while a command buffer of it records, and a batch records across many calls of one thread, so
sharing the device's pool would serialize every other thread's dispatches behind it.

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

import contextlib
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _vk
from .. import errors as E
from .._vk.finalizer import Finalizer
from ..core.commands import Recorder, Timestamps, dispatch_item, push_cdata
from ..core.device import Device, Submission
from .bind import read_back
from .timing import DispatchRecord, record

if TYPE_CHECKING:  # pragma: no cover
    from ..core.buffer import Buffer
    from ..core.pipeline import ComputePipeline, DescriptorPool

_local = threading.local()


def current() -> Batch | None:
    """The batch being recorded on this thread, if any (called by the functions that record:
    the with statement of the batch is then their caller or one of its callers)."""
    # (getattr with a default raises and catches AttributeError outside a batch: 0.4-0.8 µs
    # of every call; the thread's own dict answers in a tenth of that)
    b: Batch | None = _local.__dict__.get("batch")
    if b is None:
        return None
    # A Ctrl-C can land as __exit__ starts, before its first line: the with statement is over,
    # and nothing cleared the batch.  It is recording only while its with statement's frame is
    # still running, which is checked here (one or two frames up: well under a microsecond).
    target = b._frame
    f: Any = sys._getframe(2)
    while f is not None:
        if f is target:
            return b
        f = f.f_back
    b._abandon_block()
    return None


# A recorded dispatch: (kernel, pipeline, sets, push-constant cdata, groups, barrier before it,
# what it keeps alive).  Plain tuples: one is built per recorded call.
_KERNEL, _PIPE, _SETS, _CPUSH, _GROUPS, _BARRIER, _KEEP = range(7)


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

        dev = device if device is not None else session_device()
        dev.check_usable()
        self.device = dev
        self.wait_on_exit = wait
        self.entries: list[tuple[Any, ...]] = []  # see _KERNEL.._KEEP
        self._last: DispatchRecord | None = None  # the record of the last submission
        self.host_ms = 0.0
        self.record_ms = 0.0
        self.closed = False
        self._lock = threading.RLock()  # recording and submitting this batch
        self._writeback: list[tuple[np.ndarray, Buffer]] = []
        # Hazard tracking: each buffer recorded gets a bit (see core.commands.Recorder).
        self._bits: dict[int, int] = {}  # buffer serial -> its bit
        self._masks: dict[int, tuple[list[int], int]] = {}  # id(serials) -> (serials, mask)
        self._buffers: dict[int, Buffer] = {}  # every buffer recorded, by serial
        self._last_keep: list[Buffer] | None = None  # the buffers of the last add()
        self._frame: Any = None  # the frame of the with statement recording (see current())
        self._recording = False
        self._recorded = False
        self._sub: Submission | None = None
        self._idle = True  # no submission of this batch running, nor waited for
        self._t_record = 0.0
        self._pins: list[tuple[ComputePipeline, DescriptorPool]] = []
        self._pinned: set[tuple[int, int]] = set()
        self._add_pipe: Any = None  # the pipeline and pool of the last add() (pinned)
        self._add_pool: Any = None
        self._name: str | None = None  # the record's kernel name, once known
        self._rec = Recorder(dev)
        self._handles: dict[str, Any] = {}
        # Ctrl-C is held back until the handles made here are in self._handles, whose
        # finalizer is registered first: a batch cut short in here is freed when collected.
        with dev.lock, _vk.deferred_interrupt():
            self._finalizer = Finalizer(self, _collected, dev, self._handles, self._pins)
            pool = dev.create_command_pool()
            self._handles["pool"] = pool
            try:
                self._cmd = dev.allocate_command_buffer(pool)
                self._fence = dev.new_fence()
                self._handles["fence"] = self._fence
                self._ts = Timestamps.create(dev, 1, "batch")
                self._handles["timestamps"] = self._ts
            except BaseException:
                _destroy_batch(dev, self._handles, [])
                raise
        self._pfence = _vk.ffi.new("VkFence*", self._fence)
        self._pcmd = _vk.ffi.new("VkCommandBuffer*", self._cmd)
        self._submit_info = _vk.new(
            "VkSubmitInfo",
            {
                "sType": _vk.vk.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                "commandBufferCount": 1,
                "pCommandBuffers": self._pcmd,
            },
        )
        dev.adopt(self)

    @property
    def barriers(self) -> int:
        """Barriers recorded (where a dispatch depends on an earlier one)."""
        return self._rec.barriers

    # -- recording -----------------------------------------------------------------------

    def __enter__(self) -> Batch:
        if current() is not None:
            raise RuntimeError("vknb.batch blocks do not nest")
        # The frame of the with statement (past contextlib's helpers, such as ExitStack)
        frame: Any = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == contextlib.__file__:
            frame = frame.f_back
        self._check_open()
        self._lock.acquire()
        try:
            self._wait_previous()
            self._reset_recording()
            self._begin()
        except BaseException:
            self._lock.release()
            raise
        self._frame = frame
        _local.batch = self
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        _local.batch = None
        self._frame = None
        if self.closed or self.device.state != "open":
            # Closed (or its device closed, reset or lost) while it was recording: nothing of
            # what it recorded can run.
            self._recording = False
            self._recorded = False
            self.entries.clear()
            self._writeback.clear()
            self._lock.release()
            if exc_type is None:
                if self.closed and self.device.state == "open":
                    raise E.ObjectClosed("the batch was closed while it was recording")
                raise self.device.unusable_error("the batch being recorded")
            return
        try:
            if exc_type is not None:
                # Dropped unended: a buffer it binds may be gone already (a library call's
                # temporaries, closed as the exception left it), and a command buffer that
                # binds a destroyed buffer takes no more commands; a reset takes it back.
                _vk.lib.vkResetCommandBuffer(self._cmd, 0)
                self._recording = False
                self.entries.clear()
                self._writeback.clear()
                self._recorded = False
                return
            self._end()
            self.record_ms = (time.perf_counter() - self._t_record) * 1e3
        finally:
            self._lock.release()
        self.submit(wait=self.wait_on_exit)

    def _abandon_block(self) -> None:
        """The with statement ended without running __exit__ (a Ctrl-C as it began): drop
        what was recorded, as for an exception in the block, and give the lock back."""
        with contextlib.suppress(Exception):
            self.__exit__(KeyboardInterrupt, None, None)

    def _check_open(self) -> None:
        if self.closed:
            raise E.ObjectClosed("the batch is closed")
        self.device.check_usable()

    def _wait_previous(self) -> None:
        """Wait for the last submission, and until no other thread waits on its fence (the
        next submission resets it)."""
        sub = self._sub
        if sub is None:
            return
        sub.wait()
        nap = 20e-6
        while not self._idle:
            time.sleep(nap)
            nap = min(2 * nap, 0.005)

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
        self._buffers = {}
        self._last_keep = None
        self._rec.reset_hazards()
        self._add_pipe = self._add_pool = None
        self._name = None

    def _begin(self) -> None:
        self._t_record = time.perf_counter()
        self._rec.begin(self._cmd, "batch")
        if self._ts is not None:
            self._ts.write_begin(self._cmd, 0)
        self._recording = True

    def _end(self) -> None:
        cmd = self._cmd
        if self._ts is not None:
            self._ts.write_end(cmd, 0)
        self._rec.end(cmd, "batch")
        self._recording = False
        self._recorded = True

    def add(
        self,
        kernel: Any,
        pipe: ComputePipeline,
        sets: Any,
        cpush: Any,
        groups: tuple[int, int, int],
        reads: list[int],
        writes: list[int],
        keep: list[Buffer],
        writeback: Any,
    ) -> int:
        """Record one dispatch (called by a kernel call inside a batch block).

        ``cpush`` is the push-constant data as cdata (see ``core.commands.push_cdata``);
        ``keep`` (the buffers bound) is held alive as long as the batch.
        """
        if not self._recording:
            raise RuntimeError("this batch is not recording (use `with vknb.batch() as b:`)")
        pool = pipe.current_pool()
        if pipe is not self._add_pipe or pool is not self._add_pool:
            self._pin(kernel, pipe, pool)  # (a pipeline's pool changes when its cache fills)
        if keep is not self._last_keep:  # (a bound call brings the same list every time)
            registry = self._buffers
            for buf in keep:
                registry[buf.serial] = buf
            self._last_keep = keep
        mask = self._mask
        barrier = self._rec.emit_checked(
            self._cmd, pipe, sets, cpush, groups, mask(reads), mask(writes)
        )
        entries = self.entries
        entries.append((kernel, pipe, sets, cpush, groups, barrier, keep))
        if writeback:
            self._writeback.extend(writeback)
        return len(entries) - 1

    def _item(
        self,
        kernel: Any,
        pipe: ComputePipeline,
        sets: Any,
        cpush: Any,
        groups: tuple[int, int, int],
        rmask: int,
        wmask: int,
        keep: list[Buffer],
        writeback: Any,
    ) -> tuple[Any, ...]:
        for b in keep:
            self._buffers[b.serial] = b
        return dispatch_item(
            pipe,
            sets,
            cpush,
            groups,
            rmask,
            wmask,
            (kernel, pipe, sets, cpush, groups, True, keep),
            (kernel, pipe, sets, cpush, groups, False, keep),
            writeback,
        )

    def extend(self, calls: Iterable[Any]) -> range:
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
        if not self._recording:
            raise RuntimeError("this batch is not recording (use `with vknb.batch() as b:`)")
        seq = calls if isinstance(calls, (list, tuple)) else list(calls)
        distinct = dict(zip(map(id, seq), seq, strict=True))  # (the calls stay alive in seq)
        mask = self._mask
        prepared: dict[int, tuple[Any, ...]] = {}
        for key, c in distinct.items():  # each distinct call checked and prepared once
            item = getattr(c, "batch_item", None)
            if item is None:
                raise TypeError(
                    f"Batch.extend takes bound calls (kernel.bind(...)), got {type(c).__name__}"
                )
            k, pipe, sets, cpush, groups, reads, writes, bufs, wb = item()
            pool = pipe.current_pool()
            if pipe is not self._add_pipe or pool is not self._add_pool:
                self._pin(k, pipe, pool)  # before the next call's sets may rotate the pool
            prepared[key] = self._item(
                k, pipe, sets, cpush, groups, mask(reads), mask(writes), bufs, wb
            )
        start = len(self.entries)
        end = self._record(map(prepared.__getitem__, map(id, seq)))  # no Python per item here
        return range(start, end + 1)

    def _mask(self, serials: list[int]) -> int:
        """The bits of these buffers (by serial); a list seen before is looked up by identity
        (a repeated call brings the same lists: see ``Kernel``'s remembered calls)."""
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
        """Record dispatches (their pools pinned); return the index of the last one."""
        if not self._recording:
            raise RuntimeError("this batch is not recording (use `with vknb.batch() as b:`)")
        for wb in self._rec.emit_many(self._cmd, items, self.entries):
            self._writeback.extend(wb)
        return len(self.entries) - 1

    def _pin(self, kernel: Any, pipe: ComputePipeline, pool: DescriptorPool) -> None:
        """Keep the sets recorded from ``pool`` alive past the pipeline's move to a new pool."""
        if pipe.device is not self.device:
            raise ValueError(
                f"{kernel.name} runs on {pipe.device.label} but the batch records for "
                f"{self.device.label}"
            )
        key = (id(pipe), id(pool))
        if key not in self._pinned:
            pipe.pin_pool()
            self._pinned.add(key)
            self._pins.append((pipe, pool))
        self._add_pipe, self._add_pool = pipe, pool

    # -- submission ----------------------------------------------------------------------

    def _check_recorded_objects(self) -> None:
        """Everything recorded is still open (a closed Array's memory may be reused)."""
        for buf in self._buffers.values():
            if buf.allocation is None:
                raise E.ObjectClosed(
                    f"the batch binds {buf.label}, which was closed since it was recorded; "
                    "record the batch again",
                    label=buf.label,
                )
        for pipe, _pool in self._pins:
            if pipe.closed:
                raise E.ObjectClosed(
                    f"the batch runs kernel {pipe.label!r}, which was closed since it was "
                    "recorded; record the batch again",
                    label=pipe.label,
                )

    def submit(self, wait: bool = True) -> Submission | None:
        """Submit the recorded command buffer once more (``replay`` without changes).

        A synchronous submission (``wait=True``) waits on the fence itself, holding the batch's
        lock, and builds a :class:`Submission` only if the wait does not end normally (Ctrl-C,
        a lost device): the batch then stays in use until the GPU is done, and the next wait
        writes its outputs back."""
        with self._lock:
            if self._recording:
                raise RuntimeError("the batch is still recording; leave the `with` block first")
            if not self._recorded:
                raise RuntimeError("nothing recorded: use `with b:` and call kernels inside")
            self._check_open()
            self._wait_previous()
            dev = self.device
            t0 = time.perf_counter()
            serial: int | None = None  # submitted and not yet owned by a Submission
            try:
                with dev.lock:
                    self._check_recorded_objects()  # under the lock: no close can slip in
                    lib = _vk.lib
                    _vk.check(
                        lib.vkResetFences(dev.handle, 1, self._pfence), "vkResetFences", "batch"
                    )
                    if self._ts is not None and self._ts.host_reset:
                        self._ts.reset(0)
                    try:
                        serial = dev.queue_submit(
                            dev.compute_queue, self._submit_info, self._fence, "batch"
                        )
                    except BaseException as e:
                        serial = _vk.submitted_serial(e)  # running all the same, if not None
                        raise
                    self._idle = False
                    if not wait:
                        sub = self._sub = self._submission(serial, t0)
                        serial = None
                if serial is not None:
                    dev.wait_fence(serial, self._fence, "batch", None, self._pfence, self._ran)
                    serial = None
            except BaseException:
                if serial is not None:  # the GPU may still run it: the next wait finishes it
                    self._idle = False  # (until the Submission sees the fence signalled)
                    self._sub = self._submission(serial, t0)
                    dev.track(self._sub)
                raise
            if wait:
                self._sub = None
                self._finish(t0, self._writeback)
                return None
        dev.track(sub)
        return sub

    def _submission(self, serial: int, t0: float) -> Submission:
        """The Submission that owns the running ``serial`` (its waiters write outputs back,
        those of this submission: a close() meanwhile empties the batch's own list)."""
        writeback = self._writeback
        return self.device.submission(
            serial,
            self._fence,
            f"batch of {len(self.entries)}",
            keep=(self, list(self.entries)),
            on_gpu_done=self._gpu_released,
            on_done=lambda: self._finish(t0, writeback),
        )

    def _ran(self) -> None:
        """A synchronous submission's fence signalled (under the device's lock)."""
        self._idle = True

    def _gpu_released(self) -> None:
        """The GPU is done with the last submission and nobody waits on its fence."""
        self._idle = True
        if self.closed:
            self._destroy()

    def _finish(self, t0: float, writeback: list[tuple[np.ndarray, Buffer]]) -> DispatchRecord:
        for arr, res in writeback:
            read_back(arr, res)
        ts = self._ts
        self.host_ms = host_ms = (time.perf_counter() - t0) * 1e3
        name = self._name
        if name is None:
            names = sorted({e[_KERNEL].name for e in self.entries})
            name = self._name = f"batch[{', '.join(names)}]"
        rec = DispatchRecord(
            kernel=name,
            groups=(0, 0, 0),
            local_size=(0, 0, 0),
            gpu_ms=None,
            host_ms=host_ms,
            device=self.device.info.name,
            dispatches=len(self.entries),
        )
        if ts is not None:
            # Under the device's lock, where a close() meanwhile destroys the queries (see
            # _gpu_released): a closed batch's last record has no GPU time.
            with self.device.lock:
                ticks = ts.ticks(0) if ts.pool is not None else None
            rec.set_ticks(ticks, ts)  # (converted when first read)
        self._last = rec
        record(rec)
        self.device.instance.flush_printf()  # what its kernels printed with debugPrintfEXT
        return rec

    @property
    def gpu_ms(self) -> float | None:
        """GPU time of the last submission in ms (None before one, or without timestamps)."""
        rec = self._last
        return rec.gpu_ms if rec is not None else None

    def wait(self) -> None:
        """Wait for the last submission (and write numpy arrays back)."""
        self._wait_previous()

    def replay(
        self, updates: Mapping[int, Mapping[str, Any]] | None = None, *, wait: bool = True
    ) -> Submission | None:
        """Submit the batch again; ``updates`` gives new push-constant values per dispatch index.

        Example
        -------
        >>> b.replay({0: {"a": 2.0}, 5: {"a": 0.5}})          # doctest: +SKIP
        """
        if updates:
            with self._lock:
                self._check_open()
                self._wait_previous()
                for i, values in updates.items():
                    if not 0 <= i < len(self.entries):
                        raise IndexError(
                            f"batch has {len(self.entries)} dispatches; no dispatch {i}"
                        )
                    e = self.entries[i]
                    kernel = e[_KERNEL]
                    pc = kernel.reflection.push_constants
                    if pc is None:
                        raise TypeError(f"dispatch {i} ({kernel.name}) has no push constants")
                    old = np.frombuffer(_vk.ffi.buffer(e[_CPUSH], pc.size), dtype=pc.dtype)[0]
                    merged = {m.name: _item(old[m.name]) for m in pc.members if m.array_length != 0}
                    merged.update(values)
                    cpush = push_cdata(kernel.push_bytes(merged))
                    self.entries[i] = (*e[:_CPUSH], cpush, *e[_CPUSH + 1 :])
                self._rerecord()
        return self.submit(wait=wait)

    def _rerecord(self) -> None:
        # Whole or not at all (Ctrl-C is held until it is done): cut short, the command buffer
        # would stay in the recording state, and the next replay would submit or begin it.
        with _vk.deferred_interrupt():
            self._begin()
            rec = self._rec
            for e in self.entries:
                rec.emit(self._cmd, e[_PIPE], e[_SETS], e[_CPUSH], e[_GROUPS], e[_BARRIER])
            self._end()

    def __len__(self) -> int:
        return len(self.entries)

    def close(self) -> None:
        """Free the batch's command buffer and what it keeps alive (idempotent).

        A submission still running finishes first (its ``wait()`` still works)."""
        with self._lock:
            if self.closed and not self._finalizer.alive:  # (else: a release Ctrl-C lost)
                return
            self.closed = True
            self._writeback = []
            self.entries = []
            self._buffers = {}
            sub = self._sub
            idle = sub is None or self._idle
        if idle:
            self._destroy()

    def _destroy(self) -> None:
        # Queued first, the finalizer's arguments taken when it runs (see Buffer._retire).
        fin = self._finalizer
        if fin.alive:
            self.device.retire(lambda: _destroy_once(fin))

    def __repr__(self) -> str:
        return (
            f"<vknb.Batch {len(self.entries)} dispatches, {self.barriers} barriers"
            + (f", gpu {self.gpu_ms:.3f} ms" if self.gpu_ms is not None else "")
            + ">"
        )


def _destroy_once(fin: Finalizer) -> None:
    """Destroy what a batch's finalizer would, unless it (or this) ran already."""
    info = fin.detach()
    if info is not None:
        _destroy_batch(*info[2])


def _collected(dev: Device, handles: dict[str, Any], pins: list[Any]) -> None:
    """Finalizer of a batch collected without close() (see Device.retire_collected)."""
    if dev.handle_alive():
        dev.retire_collected(lambda: _destroy_batch(dev, handles, pins))


def _destroy_batch(dev: Device, handles: dict[str, Any], pins: list[Any]) -> None:
    """Destroy what the batch owns (the GPU is done with it)."""
    for pipe, pool in pins:  # the recorded sets are no longer needed
        pipe.unpin_pool(pool)
    pins.clear()
    if not dev.handle_alive():
        return
    try:
        ts = handles.pop("timestamps", None)
        if ts is not None:
            ts.destroy()
        if "fence" in handles:
            dev.destroy_fence(handles.pop("fence"))
        if "pool" in handles:
            dev.destroy_command_pool(handles.pop("pool"))  # its command buffer goes with it
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
