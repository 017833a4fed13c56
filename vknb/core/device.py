"""The logical device: queues, submissions, waits, and the retirement of what the GPU uses.

A :class:`Device` owns a ``VkDevice`` with a compute queue (and a dedicated transfer queue where
the hardware has one), a command pool per queue, a pipeline cache persisted on disk and the
memory allocator.

Every submission to a queue gets a serial number and is registered with its fence until the
device learns that it finished (a wait, or a poll of the fences).  Objects that the GPU may still
use are never destroyed on ``close()``: :meth:`Device.retire` holds their release until every
submission made before it has finished.  A wait polls its fence briefly, then blocks in short
slices, so that Ctrl-C interrupts it promptly; one that runs past ``VKNB_TIMEOUT_S`` (or a
``VK_ERROR_DEVICE_LOST``) marks the device lost: every later call on it raises
:class:`~vknb.errors.DeviceLost` at once, nothing it may still write is freed or reused, and
nothing waits for it again (``vknb.reset()`` gives a fresh device).

Example
-------
>>> import vknb
>>> dev = vknb.device()
>>> dev.memory_stats().allocated >= 0
True
"""

from __future__ import annotations

import atexit
import collections
import gc
import itertools
import logging
import os
import struct
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import _vk, config
from .. import errors as E
from .._vk import constants as C
from .._vk.finalizer import Finalizer, WeakSet, collected, reap
from .instance import DeviceInfo, Instance, get_instance, select_device_index
from .memory import Allocator, MemoryStats

log = logging.getLogger("vknb")

OPEN, LOST, CLOSED = "open", "lost", "closed"


def sharing_fields(fams: list[int], keep: Any) -> dict[str, Any]:
    """The sharing fields of a buffer's or an image's create-info for the queue families
    ``fams`` that use it: CONCURRENT across the compute and transfer families where they differ
    (so no ownership transfers), else EXCLUSIVE.  ``keep`` (a ``_vk.Keep``) holds the array."""
    if len(fams) == 1:
        return {
            "sharingMode": C.SHARING_MODE_EXCLUSIVE,
            "queueFamilyIndexCount": 0,
            "pQueueFamilyIndices": _vk.ffi.NULL,
        }
    return {
        "sharingMode": C.SHARING_MODE_CONCURRENT,
        "queueFamilyIndexCount": len(fams),
        "pQueueFamilyIndices": keep(_vk.ffi.new("uint32_t[]", fams)),
    }


# The paths of transfer_stats().
_TRANSFER_PATHS = ("direct", "staging", "import", "import_reused", "import_failed")

# How long one blocking fence wait lasts before Python gets the chance to raise a pending
# KeyboardInterrupt (the wait then goes on).
WAIT_SLICE_S = 0.05

# (extension, its features struct, that struct's sType), enabled where the driver has them.
# Only the NV extension: it is what glslc (shaderc 2023) compiles GL_NV_cooperative_matrix to,
# and the validation layers of that era reject the KHR features struct in the device's chain.
_COOPERATIVE_MATRIX = (
    (
        "VK_NV_cooperative_matrix",
        "VkPhysicalDeviceCooperativeMatrixFeaturesNV",
        C.STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV,
    ),
)


def timeout_s() -> float:
    """The submission timeout in seconds (``VKNB_TIMEOUT_S``, default 60)."""
    return float(config.get("VKNB_TIMEOUT_S"))


class Submission:
    """An asynchronous submission (``kernel(..., wait=False)``, ``batch(wait=False)``).

    ``wait()`` blocks until the GPU is done, then finishes the call on the host (a kernel call
    writes numpy outputs back) and returns its result; any number of threads may wait, and the
    host part runs exactly once, before any ``wait()`` returns.  Interrupting a wait (Ctrl-C)
    leaves the submission pending: wait again later.

    Example
    -------
    >>> s = k(x, y, grid=n, wait=False)                      # doctest: +SKIP
    >>> rec = s.wait()                                       # doctest: +SKIP
    """

    __slots__ = (
        "__weakref__",
        "_claimed",
        "_error",
        "_finished",
        "_gpu_done",
        "_lock",
        "_on_done",
        "_on_gpu_done",
        "_result",
        "_waiters",
        "device",
        "fence",
        "keep",
        "label",
        "serial",
    )

    def __init__(
        self,
        device: Device,
        serial: int,
        fence: Any,
        label: str,
        *,
        keep: Any = None,
        on_gpu_done: Callable[[], None] | None = None,
        on_done: Callable[[], Any] | None = None,
    ) -> None:
        self.device = device
        self.serial = serial
        self.fence = fence
        self.label = label
        self.keep = keep
        self._lock = threading.Lock()
        self._gpu_done = False
        self._waiters = 0
        self._on_gpu_done = on_gpu_done  # frees what only the GPU used (a slot): once
        self._on_done = on_done  # the host part of the call: once, by the first waiter
        self._claimed = False  # the host part has been taken by a waiter (or failed)
        self._finished = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether the call has finished (the GPU is done); never blocks on the GPU."""
        if self._finished.is_set():
            return True
        if not self._gpu_done:
            self.device.poll()
        return self._gpu_done

    def _gpu_finished(self) -> None:
        """The device saw the fence signal (called under the device lock, once)."""
        with self._lock:
            self._gpu_done = True
            release = self._on_gpu_done if self._waiters == 0 else None
            if release is not None:
                self._on_gpu_done = None
        if release is not None:
            release()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the call is done; return its result (a kernel call's DispatchRecord).

        Raises DeviceLost if the device was lost (or timed out) before the call finished, and
        ObjectClosed if the device was closed or reset first.
        """
        if self._finished.is_set():
            return self._finish_result()
        dev = self.device
        # Ctrl-C is held back for the whole wait and delivered only inside the fence wait
        # (every 50 ms at most): the waiter count, the release it guards and the host part are
        # never cut halfway.  A count left too high would keep the slot for good; a host part
        # taken and never finished would leave every other waiter waiting for ever.
        with _vk.deferred_interrupt() as held:
            with self._lock:
                self._waiters += 1
            try:
                if not self._gpu_done:
                    dev.wait_fence(
                        self.serial, self.fence, self.label, timeout, deliver=held.deliver
                    )
            finally:
                with self._lock:
                    self._waiters -= 1
                    release = self._on_gpu_done if self._waiters == 0 and self._gpu_done else None
                    if release is not None:
                        self._on_gpu_done = None
                if release is not None:
                    with dev.lock:
                        release()
            self._run_host_part(held)
        return self._finish_result()

    def _run_host_part(self, held: _vk.deferred_interrupt) -> None:
        """Run the host part once (Ctrl-C held back by the caller: outputs are written back
        whole, which takes milliseconds even for hundreds of MiB)."""
        with self._lock:
            claimed, self._claimed = self._claimed, True
            on_done, self._on_done = self._on_done, None
        if claimed:  # another waiter runs it (or it failed): wait for its outcome
            while not self._finished.wait(WAIT_SLICE_S):
                held.deliver()
            return
        try:
            if on_done is not None:
                self._result = on_done()
        except Exception as e:
            self._error = e
        except BaseException:  # Ctrl-C while outputs were written back
            self._error = E.ExecutionFailed(
                f"{self.label}: interrupted while its outputs were written back; they may be "
                "incomplete"
            )
            raise
        finally:
            self.keep = None
            self.device.forget(self)
            self._finished.set()

    def _fail(self, error: BaseException) -> None:
        """The device went away before the call finished: waiters get ``error``."""
        with self._lock:
            if self._claimed:
                return
            self._claimed = True
            self._on_done = None
            self._on_gpu_done = None
        self._error = error
        self.keep = None
        self._finished.set()

    def _finish_result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result

    def __repr__(self) -> str:
        state = "done" if self._finished.is_set() else "pending"
        return f"<Submission {self.label} {state}>"


class Device:
    """A logical Vulkan device (use :func:`vknb.device` for the shared session device).

    Parameters
    ----------
    index : int, optional
        Physical device index (see :func:`vknb.devices`); default: the best-scored one, or the
        one ``VKNB_DEVICE`` names.

    Attributes
    ----------
    info : DeviceInfo
        What the physical device is and can do.
    extensions : tuple of str
        The device extensions vknb enabled (``VK_EXT_memory_budget``,
        ``VK_EXT_external_memory_host`` for copies straight from and into numpy's memory, and
        ``VK_NV_cooperative_matrix`` for tensor-core kernels, where the driver has them).
    cooperative_matrix : tuple of str
        The cooperative-matrix extensions enabled; empty where there are none (see
        :meth:`cooperative_matrix_shapes`).
    robust : bool
        Whether robust buffer access is on (``VKNB_ROBUST=1``).

    Example
    -------
    >>> with vknb.Device(0) as dev:                          # doctest: +SKIP
    ...     a = vknb.asarray(np.arange(4.0, dtype=np.float32), device=dev)
    """

    def __init__(self, index: int | None = None, *, instance: Instance | None = None) -> None:
        inst = instance if instance is not None else get_instance()
        infos = inst.physical_devices()
        if index is None:
            index, reason = select_device_index(infos)
        else:
            if isinstance(index, bool) or not isinstance(index, int):
                raise TypeError(f"Device(index): index must be an int, got {index!r}")
            if not 0 <= index < len(infos):
                raise E.NoDeviceFound(
                    f"no device {index}: there are {len(infos)} "
                    f"({', '.join(f'{d.index}: {d.name}' for d in infos)})"
                )
            reason = f"chosen by index {index}"
        self.instance = inst
        self.info: DeviceInfo = infos[index]
        self.index = index
        self.reason = reason
        self.number = next(_device_numbers)
        self.label = _device_label(index, self.info.name, self.number)
        self.epoch = _vk.epoch
        self.state = OPEN
        self._closing = False
        self._destroyed = False
        self.lost_reason = ""
        # Queue submission, the registry of submissions and the retirement list.  Reentrant:
        # a release run under it may close other objects.
        self.lock = threading.RLock()
        self._serial = 0  # the last serial handed to a submission
        # serial -> (fence, what runs once the GPU is done with it, or None).  One entry per
        # submission, added and removed by single dict operations, so that a Ctrl-C between
        # two statements never leaves half of a submission's bookkeeping behind.
        self._inflight: dict[int, tuple[Any, Callable[[], None] | None]] = {}
        self._retiring: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()
        self._orphans: collections.deque[Callable[[], None]] = collections.deque()
        self._retiring_now = False  # _run_retired's loop is running (on the lock's thread)
        self._pending: list[Submission] = []  # asynchronous calls not yet finished on the host
        # Threads inside a driver call outside the lock (a fence wait, a copy through mapped
        # memory): close() lets them leave before it destroys anything.  Set operations are
        # atomic, so no lock is needed to enter or leave.
        self.busy: set[int] = set()
        # Zero-copy views of mapped memory alive (Buffer.mapped): the memory stays mapped (and
        # the device alive) while any exists.
        self.mapped_views: set[int] = set()
        self._children = WeakSet()  # (no Python code runs as a child goes: see _vk.finalizer)
        self._free_cmds: list[tuple[Any, Any]] = []  # (command buffer, fence) ready for reuse
        self._transfer_free: list[tuple[Any, Any]] = []
        self.robust = bool(config.get("VKNB_ROBUST"))
        self._calibration: tuple[int, float, float, float] | None = None
        self._calibrate_fn: Any = None  # None: not tried yet; False: not available
        self._calibrate_infos: Any = None
        self.spin_s = float(config.get("VKNB_SPIN_US")) * 1e-6
        self.buffers = 0  # live vknb buffers (for memory_stats)
        self.images = 0  # live vknb images
        self.staging: Any = None  # made by the first transfer through staging (core.buffer)
        self.host_import: Any = None  # made by the first large transfer (core.hostimport)
        # Releases of what higher layers made for this device and keep until it goes (imports of
        # host memory): run before the device's own handles are destroyed, also by the finalizer.
        self.release_with_device: list[Callable[[], None]] = []
        # Transfers between numpy and the device by the path they took (see transfer_stats).
        self.transfer_counts: dict[str, int] = dict.fromkeys(_TRANSFER_PATHS, 0)
        # From the driver's device to the finalizer that owns its handles, Ctrl-C is held back
        # (its KeyboardInterrupt would leave a device that nothing destroys); an error on the
        # way destroys what was made.
        self.handle: Any = None
        try:
            with _vk.deferred_interrupt():
                self._create()
                self.allocator = Allocator(self.handle, self.info, self.label)
                # Collected without close(): by then every child is gone (children hold the
                # device), so only the device's own handles remain; the callback gets them.
                inst.devices_alive.add(id(self))
                self._finalizer = Finalizer(
                    self,
                    _release_device,
                    self.handle,
                    self.allocator,
                    self._free_cmds,
                    self._transfer_free,
                    [p for p in (self.compute_pool, self.transfer_pool) if p],
                    self.pipeline_cache,
                    self.epoch,
                    inst.devices_alive,
                    id(self),
                    self.release_with_device,
                )
        except BaseException:
            if not hasattr(self, "_finalizer"):
                inst.devices_alive.discard(id(self))
                self._destroy_partial()
            raise
        _live_devices.add(self)
        _install_exit_hook()

    # -- creation -------------------------------------------------------------------------

    def _create(self) -> None:
        # A bad VKNB_TIMEOUT_S raises here, naming it: a wait that ends within its spin (every
        # short one on a fast GPU) never reads it.
        timeout_s()
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        info = self.info
        keep = _vk.Keep()
        fams = info.queue_families
        compute = [q for q in fams if q.flags & C.QUEUE_COMPUTE_BIT]
        if not compute:
            raise E.NoComputeQueue(f"{self.label} has no queue family with compute support")
        # Prefer a compute family without graphics (async compute), else the first one.
        self.compute_family = next(
            (q for q in compute if not q.flags & C.QUEUE_GRAPHICS_BIT), compute[0]
        ).index
        dedicated = [
            q
            for q in fams
            if q.flags & C.QUEUE_TRANSFER_BIT
            and not q.flags & (C.QUEUE_COMPUTE_BIT | C.QUEUE_GRAPHICS_BIT)
        ]
        self.transfer_family = dedicated[0].index if dedicated else None
        self.timestamp_bits = fams[self.compute_family].timestamp_valid_bits

        prio = keep(ffi.new("float[]", [1.0]))
        qinfos = [
            {
                "sType": vk.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                "queueFamilyIndex": self.compute_family,
                "queueCount": 1,
                "pQueuePriorities": prio,
            }
        ]
        if self.transfer_family is not None:
            qinfos.append({**qinfos[0], "queueFamilyIndex": self.transfer_family})
        qarr = keep(ffi.new("VkDeviceQueueCreateInfo[]", qinfos))

        exts: list[str] = [
            e
            for e in ("VK_EXT_memory_budget", "VK_EXT_calibrated_timestamps")
            if e in info.extensions
        ]
        # Copies straight from and into numpy's pages (core.hostimport); it needs external
        # memory, core since Vulkan 1.1.
        if "VK_EXT_external_memory_host" in info.extensions and _vk.make_version(
            *map(int, info.api_version.split(".")[:2])
        ) >= _vk.make_version(1, 1):
            exts.append("VK_EXT_external_memory_host")
        if "VK_KHR_shader_non_semantic_info" in info.extensions:  # debugPrintfEXT (core in 1.3)
            exts.append("VK_KHR_shader_non_semantic_info")
        if "VK_KHR_portability_subset" in info.extensions:
            exts.append("VK_KHR_portability_subset")

        # Enable every core feature the device has (compute shaders opt into what they use),
        # except robust access, which costs speed on some GPUs: VKNB_ROBUST=1 asks for it.
        api = min(
            self.instance.api_version, _vk.make_version(*map(int, info.api_version.split(".")[:2]))
        )
        feats2, f11, f12, f13 = _vk.query_features(info.handle, api)
        robust = self.robust and bool(feats2.features.robustBufferAccess)
        feats2.features.robustBufferAccess = int(robust)
        if f12 is not None:
            # Features that need a surface or another extension enabled too.
            f11.protectedMemory = 0
            f12.bufferDeviceAddressCaptureReplay = 0
            f12.bufferDeviceAddressMultiDevice = 0
        if f13 is not None:
            f13.robustImageAccess = 0
        self.robust = robust
        self.robust2 = False
        if robust and api >= _vk.make_version(1, 1) and "VK_EXT_robustness2" in info.extensions:
            r2 = keep(
                _vk.new(
                    "VkPhysicalDeviceRobustness2FeaturesEXT",
                    {"sType": C.STRUCTURE_TYPE_PHYSICAL_DEVICE_ROBUSTNESS_2_FEATURES_EXT},
                )
            )
            self._probe_features(r2, keep)
            if r2.robustBufferAccess2:
                r2.robustImageAccess2 = 0
                r2.nullDescriptor = 0
                r2.pNext = feats2.pNext
                feats2.pNext = r2
                exts.append("VK_EXT_robustness2")
                self.robust2 = True
        # Cooperative matrices (tensor cores), where the driver has them.
        self.cooperative_matrix: tuple[str, ...] = ()
        self._coop_shapes: list[dict[str, Any]] | None = None  # queried on first use
        if api >= _vk.make_version(1, 1):
            for ext, struct_name, stype in _COOPERATIVE_MATRIX:
                if ext not in info.extensions:
                    continue
                f = keep(_vk.new(struct_name, {"sType": stype}))
                self._probe_features(f, keep)
                if not f.cooperativeMatrix:
                    continue
                f.cooperativeMatrixRobustBufferAccess = 0
                f.pNext = feats2.pNext  # joins the chain handed to vkCreateDevice
                feats2.pNext = f
                exts.append(ext)
                self.cooperative_matrix += (ext,)
        ext_c = [keep(_vk.cstr(e)) for e in exts]
        self.extensions: tuple[str, ...] = tuple(exts)  # the device extensions enabled
        self.api_version = api
        dinfo = _vk.new(
            "VkDeviceCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                "pNext": feats2 if api >= _vk.make_version(1, 1) else ffi.NULL,
                "queueCreateInfoCount": len(qinfos),
                "pQueueCreateInfos": qarr,
                "enabledExtensionCount": len(exts),
                "ppEnabledExtensionNames": keep(ffi.new("char*[]", ext_c)) if exts else ffi.NULL,
                "pEnabledFeatures": ffi.NULL
                if api >= _vk.make_version(1, 1)
                else ffi.addressof(feats2.features),
            },
        )
        p = ffi.new("VkDevice*")
        _vk.check(lib.vkCreateDevice(info.handle, dinfo, ffi.NULL, p), "vkCreateDevice", self.label)
        self.handle = p[0]
        self.features = {
            "float64": bool(feats2.features.shaderFloat64),
            "int64": bool(feats2.features.shaderInt64),
            "cooperative_matrix": bool(self.cooperative_matrix),
            "robust_buffer_access": robust,
        }
        # Queries reset from the host (Vulkan 1.2): a timed dispatch then needs no reset command.
        self.host_query_reset = bool(f12 is not None and f12.hostQueryReset)
        q = ffi.new("VkQueue*")
        lib.vkGetDeviceQueue(self.handle, self.compute_family, 0, q)
        self.compute_queue = q[0]
        if self.transfer_family is not None:
            lib.vkGetDeviceQueue(self.handle, self.transfer_family, 0, q)
            self.transfer_queue = q[0]
        else:
            self.transfer_queue = self.compute_queue
        self.compute_pool = self.create_command_pool(self.compute_family)
        self.transfer_pool = (
            self.create_command_pool(self.transfer_family)
            if self.transfer_family is not None
            else None
        )
        self.pipeline_cache = self._load_pipeline_cache()

    def _destroy_partial(self) -> None:
        """Destroy what a Device that failed to be made made (never raises)."""
        if self.handle is None:
            return
        ffi, lib = _vk.ffi, _vk.lib
        try:
            cache = getattr(self, "pipeline_cache", None)
            if cache is not None:
                lib.vkDestroyPipelineCache(self.handle, cache, ffi.NULL)
            for pool in (getattr(self, "compute_pool", None), getattr(self, "transfer_pool", None)):
                if pool is not None:
                    lib.vkDestroyCommandPool(self.handle, pool, ffi.NULL)
            lib.vkDestroyDevice(self.handle, ffi.NULL)
        except Exception:  # pragma: no cover - never raise from cleanup
            log.exception("destroying a device that failed to be made failed")
        self.handle = None

    def _probe_features(self, features: Any, keep: _vk.Keep) -> None:
        """Fill an extension's features struct from the driver."""
        probe = keep(
            _vk.new(
                "VkPhysicalDeviceFeatures2",
                {"sType": C.STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, "pNext": features},
            )
        )
        _vk.lib.vkGetPhysicalDeviceFeatures2(self.info.handle, probe)

    def create_command_pool(self, family: int | None = None) -> Any:
        """A new ``VkCommandPool`` for ``family`` (default: the compute family), owned by the
        caller, who destroys it with :meth:`destroy_command_pool`.

        Vulkan requires a pool to be externally synchronized while any of its command buffers
        records: the device's own pools are used under :attr:`lock`; a batch, which records
        across many calls, has a pool of its own.
        """
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        info = _vk.new(
            "VkCommandPoolCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                "flags": C.COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                "queueFamilyIndex": self.compute_family if family is None else family,
            },
        )
        p = ffi.new("VkCommandPool*")
        _vk.check(
            lib.vkCreateCommandPool(self.handle, info, ffi.NULL, p),
            "vkCreateCommandPool",
            self.label,
        )
        return p[0]

    def destroy_command_pool(self, pool: Any) -> None:
        """Destroy a pool made by :meth:`create_command_pool` (its command buffers with it)."""
        if self.handle_alive():
            _vk.lib.vkDestroyCommandPool(self.handle, pool, _vk.ffi.NULL)

    # -- pipeline cache ------------------------------------------------------------------

    def pipeline_cache_path(self) -> Path:
        """Where this device's pipeline cache is saved (keyed by vendor, device, driver, UUID)."""
        i = self.info
        return (
            config.cache_dir()
            / "pipelines"
            / (
                f"{i.vendor_id:04x}-{i.device_id:04x}-{i.driver_version:x}-"
                f"{i.pipeline_cache_uuid.hex()}.bin"
            )
        )

    def _valid_cache_header(self, data: bytes) -> bool:
        if len(data) < 32:
            return False
        size, version, vendor, dev = struct.unpack_from("<IIII", data, 0)
        uuid = data[16:32]
        i = self.info
        return (
            size >= 32
            and version == 1
            and vendor == i.vendor_id
            and dev == i.device_id
            and uuid == i.pipeline_cache_uuid
        )

    def _load_pipeline_cache(self) -> Any:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        data = b""
        try:
            path = self.pipeline_cache_path()
            if path.exists():
                data = path.read_bytes()
                if not self._valid_cache_header(data):
                    warnings.warn(
                        f"vknb: ignoring pipeline cache {path} (header does not match "
                        f"{self.info.name}); it will be rebuilt",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    data = b""
        except OSError as e:
            log.info("pipeline cache not readable: %s", e)
            data = b""
        self.pipeline_cache_loaded = len(data)
        buf = ffi.from_buffer(data) if data else ffi.NULL
        info = _vk.new(
            "VkPipelineCacheCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                "initialDataSize": len(data),
                "pInitialData": buf,
            },
        )
        p = ffi.new("VkPipelineCache*")
        res = lib.vkCreatePipelineCache(self.handle, info, ffi.NULL, p)
        if res < 0 and data:  # a driver that still rejects the data: start empty
            info.initialDataSize = 0
            info.pInitialData = ffi.NULL
            res = lib.vkCreatePipelineCache(self.handle, info, ffi.NULL, p)
        _vk.check(res, "vkCreatePipelineCache", self.label)
        return p[0]

    def save_pipeline_cache(self) -> Path | None:
        """Write the pipeline cache to disk (atomically); done automatically on close.

        Example
        -------
        >>> vknb.device().save_pipeline_cache()             # doctest: +SKIP
        PosixPath('/root/.cache/vknb/pipelines/10005-0000-1-....bin')
        """
        if self.state != OPEN or not self.usable_here():
            return None
        ffi, lib = _vk.ffi, _vk.lib
        n = ffi.new("size_t*")
        if (
            lib.vkGetPipelineCacheData(self.handle, self.pipeline_cache, n, ffi.NULL) < 0
            or n[0] == 0
        ):
            return None
        buf = ffi.new("char[]", n[0])
        if lib.vkGetPipelineCacheData(self.handle, self.pipeline_cache, n, buf) < 0:
            return None
        data = bytes(ffi.buffer(buf, n[0]))
        try:
            path = self.pipeline_cache_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return path
        except (OSError, ValueError) as e:
            log.info("could not save the pipeline cache: %s", e)
            return None

    # -- state ---------------------------------------------------------------------------

    def handle_alive(self) -> bool:
        """Whether vknb may still call the driver to destroy things of this device: it is not
        destroyed, not lost (abandoned) and not inherited across fork."""
        return not self._destroyed and self.state != LOST and self.epoch == _vk.epoch

    def usable_here(self) -> bool:
        """Whether this process may call the driver for this device (False in a forked child)."""
        return self.epoch == _vk.epoch

    def check_usable(self) -> None:
        """Raise the reason this device cannot be used (lost, closed, inherited across fork).

        Example
        -------
        >>> vknb.device().check_usable()
        """
        if self.state is OPEN and self.epoch == _vk.epoch:
            return
        raise self.unusable_error()

    def unusable_error(self, what: str | None = None) -> E.VulkanError:
        """The error for using this device (or ``what`` on it) now."""
        subject = what or self.label
        if self.epoch != _vk.epoch:
            return _vk.fork_error(subject)
        if self.state == LOST:
            return E.DeviceLost(
                f"{subject}: {self.label} was lost ({self.lost_reason}); nothing more runs on "
                "it. Call vknb.reset() for a fresh device (kernels compiled without device= move "
                "to it; Arrays must be made again)",
                label=self.label,
                result=-4,
            )
        return E.ObjectClosed(f"{subject}: {self.label} is closed", label=self.label)

    @property
    def closed(self) -> bool:
        """Whether the device is closed (or lost): nothing can be done with it any more."""
        return self.state is not OPEN

    @property
    def lost(self) -> bool:
        """Whether the device was lost (a timeout or VK_ERROR_DEVICE_LOST)."""
        return self.state == LOST

    def mark_lost(self, reason: str) -> None:
        """Give up on the device: pending calls fail, nothing is freed, nothing waits for it.

        Memory the GPU may still write is never handed out again, since the allocator of a
        lost device frees nothing.
        """
        with self.lock:
            if self.state is not OPEN:
                return
            self.state = LOST
            self.lost_reason = reason
            pending, self._pending = self._pending, []
            # The releases never run (the GPU may still write what they free), and what they
            # hold stays alive for good: numpy memory that a copy may still be writing into.
            _lost_keep.append([r for _, r in self._retiring] + list(self._orphans))
            self._retiring.clear()
            self._orphans.clear()
            self.allocator.abandon()
        # The driver may wait at exit for what still runs on the device (NVIDIA does, for ever,
        # after a runaway kernel): the process's exit ends before the driver's handlers.
        _vk.exit_past_the_driver()
        log.error("%s was lost: %s", self.label, reason)
        err = self.unusable_error("this call")
        for sub in pending:
            sub._fail(err)

    # -- submissions ---------------------------------------------------------------------

    def queue_submit(self, queue: Any, submit_info: Any, fence: Any, label: str) -> int:
        """``vkQueueSubmit`` of one prepared ``VkSubmitInfo``; returns the submission's serial.

        The serial and its fence are tracked until :meth:`complete` (or device loss) sees the
        submission finished.  Call under :attr:`lock` (queues are externally synchronized).
        """
        if self.state is not OPEN or self.epoch != _vk.epoch:
            raise self.unusable_error(label)
        serial = self._serial + 1
        self._serial = serial
        self._inflight[serial] = (fence, None)
        res = None
        try:
            res = _vk.lib.vkQueueSubmit(queue, 1, submit_info, fence)
            if res == 0:
                _vk.after_void("vkQueueSubmit", label)  # a validation error the call caused
                return serial
        except BaseException as e:
            if res is None or res == 0:
                # Ctrl-C raised as the call returned (res never stored) or after it: the work
                # is on the queue all the same (a failed submission is all but unheard of).
                # The exception says which submission, so that the caller treats its command
                # buffer, fence and slot as in use until the GPU is done (submitted_serial).
                e.vknb_submitted = serial  # type: ignore[attr-defined]
            raise
        self._inflight.pop(serial, None)
        if res == -4:
            self.mark_lost(f"vkQueueSubmit for {label} returned VK_ERROR_DEVICE_LOST")
            raise self.unusable_error(label)
        _vk.check(res, "vkQueueSubmit", label)
        return serial  # (not reached: check raised)

    def set_on_gpu_done(self, serial: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the submission ``serial`` is seen finished (now, if it is)."""
        with self.lock:
            entry = self._inflight.get(serial)
            if entry is not None:
                self._inflight[serial] = (entry[0], fn)
                return
        with self.lock, _vk.deferred_interrupt():
            fn()

    def wait_fence(
        self,
        serial: int,
        fence: Any,
        label: str,
        timeout: float | None = None,
        pfence: Any = None,
        then: Callable[[], None] | None = None,
        deliver: Callable[[], None] | None = None,
    ) -> None:
        """Wait until the submission ``serial`` (guarded by ``fence``) has finished.

        Polls the fence for ``VKNB_SPIN_US`` (tiny dispatches finish within tens of
        microseconds; a blocking wait costs a thread wake-up of similar size), then blocks in
        slices of 50 ms so that Ctrl-C raises KeyboardInterrupt promptly.  Past the timeout
        (``VKNB_TIMEOUT_S``) the device is marked lost and DeviceLost raised.  ``then`` runs
        under the device's lock once the fence is seen signalled (see :meth:`complete`).
        ``deliver`` (a caller that holds Ctrl-C back: ``deferred_interrupt.deliver``) is called
        between the blocking slices, where a KeyboardInterrupt leaves nothing half done.
        """
        if self.state is not OPEN or self.epoch != _vk.epoch:
            raise self.unusable_error(label)
        token = next(_tokens)
        busy = self.busy
        try:
            busy.add(token)  # (close() and reset() wait for the waiters to leave the device)
            if self.spin_s > 0:
                status = _vk.lib.vkGetFenceStatus
                h = self.handle
                clock = time.perf_counter
                end = clock() + self.spin_s
                while True:
                    r = status(h, fence)
                    if r == 0:
                        self.complete(serial, then)
                        _vk.after_void("vkGetFenceStatus", label)
                        return
                    if r != _vk.NOT_READY:
                        self._wait_failed(r, "vkGetFenceStatus", label)
                    if clock() > end:
                        break
            self._block_on_fence(serial, fence, label, timeout, pfence, then, deliver)
        finally:
            busy.discard(token)

    def _block_on_fence(
        self,
        serial: int,
        fence: Any,
        label: str,
        timeout: float | None,
        pfence: Any,
        then: Callable[[], None] | None,
        deliver: Callable[[], None] | None = None,
    ) -> None:
        """The blocking part of :meth:`wait_fence`, once spinning has not seen it finish."""
        lib = _vk.lib
        h = self.handle
        t = timeout_s() if timeout is None else timeout
        pf = pfence if pfence is not None else _vk.ffi.new("VkFence*", fence)
        deadline = time.monotonic() + t
        while True:
            if deliver is not None:
                deliver()
            left = deadline - time.monotonic()
            ns = int(max(0.0, min(left, WAIT_SLICE_S)) * 1e9)
            res = lib.vkWaitForFences(h, 1, pf, 1, ns)
            if res == 0:
                break
            if res != _vk.TIMEOUT:
                self._wait_failed(res, "vkWaitForFences", label)
            if self.state is not OPEN:  # another thread gave up on the device meanwhile
                raise self.unusable_error(label)
            if left <= 0:
                source = "VKNB_TIMEOUT_S" if timeout is None else "timeout="
                self.mark_lost(f"{label} did not finish within {t:g} s")
                raise E.DeviceLost(
                    f"{label} did not finish within {t:g} s on {self.label} ({source}). A "
                    "kernel may loop forever or be far too large; the device is now unusable: "
                    "call vknb.reset() for a fresh device, and raise VKNB_TIMEOUT_S for long "
                    "kernels",
                    function="vkWaitForFences",
                    label=label,
                    result=_vk.TIMEOUT,
                )
        self.complete(serial, then)
        _vk.after_void("vkWaitForFences", label)

    def _wait_failed(self, res: int, function: str, label: str) -> None:
        if res == -4:
            self.mark_lost(f"{function} for {label} returned VK_ERROR_DEVICE_LOST")
            raise self.unusable_error(label)
        _vk.check(res, function, label)

    def complete(self, serial: int, then: Callable[[], None] | None = None) -> None:
        """Record that submission ``serial`` finished; run what waited for it (and ``then``,
        in the same hold of the lock)."""
        with self.lock:
            inflight = self._inflight
            entry = inflight.get(serial)
            if entry is not None:
                if entry[1] is None:
                    inflight.pop(serial, None)  # (one step: a Ctrl-C before it changes nothing)
                else:
                    self._run_callback(serial)
            if then is not None:
                then()
            if self._retiring or self._orphans or collected:
                self._run_retired()

    def _run_callback(self, serial: int) -> None:
        """Forget submission ``serial`` and run what waited for it, with Ctrl-C held back (a
        callback cut short, or forgotten and never run, would keep what it frees for good).
        Under the lock."""
        with _vk.deferred_interrupt():
            entry = self._inflight.pop(serial, None)
            if entry is not None and entry[1] is not None:
                entry[1]()

    def poll(self) -> None:
        """Check every in-flight submission's fence (never blocks) and retire what is done."""
        if self.state is not OPEN or self.epoch != _vk.epoch:
            return
        status = _vk.lib.vkGetFenceStatus
        with self.lock:
            inflight = self._inflight
            for serial, (fence, cb) in list(inflight.items()):
                r = status(self.handle, fence)
                if r == 0:
                    if cb is None:
                        inflight.pop(serial, None)
                    else:
                        self._run_callback(serial)
                elif r == -4:
                    self.mark_lost("a fence reported VK_ERROR_DEVICE_LOST")
                    return
            self._run_retired()

    def idle(self) -> bool:
        """Whether no submission is in flight (after a poll)."""
        self.poll()
        return not self._inflight

    # -- retirement ----------------------------------------------------------------------

    def retire(self, release: Callable[[], None]) -> None:
        """Run ``release`` once every submission made so far has finished (now, if none is in
        flight).  How objects the GPU may still use are freed.  On a lost device (or in a
        forked child) ``release`` never runs: its memory may still be written."""
        if self.state == LOST or self.epoch != _vk.epoch:
            return
        with self.lock:
            if self.state == LOST:
                return
            if self._retiring_now and not self._inflight:
                # Retired by a release that _run_retired's loop is running (SIGINT held back
                # there): run it now, inside that release, which may rely on it being done (a
                # buffer it closes and then drops).  The queue itself is the loop's: each
                # release running the rest of it would nest as deep as the queue is long.
                try:
                    release()
                except Exception:  # pragma: no cover - never raise from cleanup
                    log.exception("releasing an object of %s failed", self.label)
                return
            # Queued, then run at once where nothing is in flight: Ctrl-C can neither lose a
            # release nor stop one halfway (_run_retired holds it back).
            self._retiring.append((self._serial, release))
            if not self._inflight:
                self._run_retired()

    def retire_later(self, release: Callable[[], None]) -> None:
        """:meth:`retire` for finalizers: takes no lock (a finalizer runs at any device's safe
        point, with that device's lock held); the release is queued and run at this device's
        next safe point (a wait, a poll, a submission)."""
        self._orphans.append(release)

    def retire_collected(self, release: Callable[[], None]) -> None:
        """:meth:`retire_later` for the finalizer of an object collected without close(): the
        release is queued, then run at once if this device's lock is free (never waited for:
        the finalizer runs at a safe point of any device, maybe under another's lock).  A
        device that nobody uses any more has no safe point of its own: its children's
        releases would wait for ever, and it would be destroyed with them alive."""
        self._orphans.append(release)
        if self.lock.acquire(blocking=False):
            try:
                if self.state is OPEN:
                    self.poll()
                else:
                    self._run_retired()
            finally:
                self.lock.release()

    def _run_retired(self) -> None:
        """Run the releases whose submissions have all finished (under the lock); first the
        finalizers of objects collected since (see vknb._vk.finalizer), which queue orphans."""
        if self._retiring_now:  # (called from a release of the loop below, which goes on)
            return
        orphans = self._orphans
        retiring = self._retiring
        oldest = min(self._inflight) if self._inflight else self._serial + 1
        if not (collected or orphans or (retiring and retiring[0][0] < oldest)):
            return
        # A release destroys several handles in turn: Ctrl-C waits until it is done (else the
        # handles after the one it interrupted would never be destroyed); an orphan is moved
        # in one step too (taken from one queue and not yet in the other, it would be lost).
        # One loop runs the queue, orphans that releases make included.
        with _vk.deferred_interrupt():
            self._retiring_now = True
            try:
                while True:
                    if collected:  # (objects collected since, and those releases dropped)
                        reap()
                    while orphans:
                        retiring.append((self._serial, orphans.popleft()))
                    oldest = min(self._inflight) if self._inflight else self._serial + 1
                    if not (retiring and retiring[0][0] < oldest):
                        break
                    _, release = retiring.popleft()
                    try:
                        release()
                    except Exception:  # pragma: no cover - never raise from cleanup
                        log.exception("releasing an object of %s failed", self.label)
            finally:
                self._retiring_now = False

    def collect(self) -> None:
        """Poll the fences and run every release that can run now.

        Example
        -------
        >>> vknb.device().collect()
        """
        if self._retiring or self._orphans or collected:
            self.poll()

    # -- one-shot command buffers --------------------------------------------------------

    def new_fence(self) -> Any:
        """A new unsignaled fence owned by the caller (destroy with :meth:`destroy_fence`)."""
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        finfo = _vk.new("VkFenceCreateInfo", {"sType": vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO})
        pf = ffi.new("VkFence*")
        try:
            _vk.check(
                lib.vkCreateFence(self.handle, finfo, ffi.NULL, pf), "vkCreateFence", self.label
            )
        except BaseException:  # (Ctrl-C raised as the call returned: the fence exists)
            if pf[0]:
                lib.vkDestroyFence(self.handle, pf[0], ffi.NULL)
            raise
        return pf[0]

    def destroy_fence(self, fence: Any) -> None:
        """Destroy a fence made by :meth:`new_fence`."""
        if self.handle_alive():
            _vk.lib.vkDestroyFence(self.handle, fence, _vk.ffi.NULL)

    def allocate_command_buffer(self, pool: Any) -> Any:
        """A primary command buffer from ``pool`` (the caller synchronizes the pool)."""
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        info = _vk.new(
            "VkCommandBufferAllocateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                "commandPool": pool,
                "level": C.COMMAND_BUFFER_LEVEL_PRIMARY,
                "commandBufferCount": 1,
            },
        )
        p = ffi.new("VkCommandBuffer*")
        _vk.check(
            lib.vkAllocateCommandBuffers(self.handle, info, p),
            "vkAllocateCommandBuffers",
            self.label,
        )
        return p[0]

    def new_command_buffer(self) -> tuple[Any, Any]:
        """A command buffer from the compute pool and a fence (call under :attr:`lock`)."""
        return self.allocate_command_buffer(self.compute_pool), self.new_fence()

    def free_command_buffer(self, cmd_and_fence: tuple[Any, Any]) -> None:
        """Give back what :meth:`new_command_buffer` made (call under :attr:`lock`)."""
        if not self.handle_alive():
            return
        ffi, lib = _vk.ffi, _vk.lib
        cmd, fence = cmd_and_fence
        lib.vkFreeCommandBuffers(
            self.handle, self.compute_pool, 1, ffi.new("VkCommandBuffer*", cmd)
        )
        lib.vkDestroyFence(self.handle, fence, ffi.NULL)

    def submit(
        self,
        record: Callable[[Any], None],
        *,
        label: str = "commands",
        keep: Any = None,
        wait: bool = True,
        transfer: bool = False,
        on_done: Callable[[], Any] | None = None,
    ) -> Submission:
        """Record a one-shot command buffer with ``record(cmd)``, submit it, and (by default) wait.

        ``keep`` is held alive until the GPU is done.  Returns the :class:`Submission`.

        Example
        -------
        >>> dev = vknb.device()
        >>> dev.submit(lambda cmd: None, label="nothing").done
        True
        """
        self.check_usable()
        lib, vk = _vk.lib, _vk.vk
        use_transfer = transfer and self.transfer_pool is not None
        queue = self.transfer_queue if use_transfer else self.compute_queue
        free = self._transfer_free if use_transfer else self._free_cmds
        with self.lock:
            pair: tuple[Any, Any] | None = None
            submitted = False
            try:
                # Taken from the free list without a call (a call's return is where Ctrl-C
                # lands: the pair would be in neither place), or made whole with Ctrl-C held.
                if free:
                    pair = free[-1]
                    del free[-1]
                else:
                    pool = self.transfer_pool if use_transfer else self.compute_pool
                    with _vk.deferred_interrupt():
                        pair = (self.allocate_command_buffer(pool), self.new_fence())
                cmd, fence = pair

                def recycle() -> None:  # the command buffer and fence go back once GPU is done
                    if self.state is OPEN:
                        free.append((cmd, fence))

                begin = _vk.new(
                    "VkCommandBufferBeginInfo",
                    {
                        "sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                        "flags": C.COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
                    },
                )
                _vk.check(lib.vkBeginCommandBuffer(cmd, begin), "vkBeginCommandBuffer", label)
                record(cmd)
                _vk.check(lib.vkEndCommandBuffer(cmd), "vkEndCommandBuffer", label)
                pf = _vk.ffi.new("VkFence*", fence)
                _vk.check(lib.vkResetFences(self.handle, 1, pf), "vkResetFences", label)
                pc = _vk.ffi.new("VkCommandBuffer*", cmd)
                info = _vk.new(
                    "VkSubmitInfo",
                    {
                        "sType": vk.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                        "commandBufferCount": 1,
                        "pCommandBuffers": pc,
                    },
                )
                # Submitted and handed to its Submission in one step (Ctrl-C held back): an
                # interrupt in between would leave the work running with nobody keeping what
                # it reads and writes alive.
                with _vk.deferred_interrupt():
                    serial = self.queue_submit(queue, info, fence, label)
                    sub = Submission(
                        self, serial, fence, label, keep=keep, on_gpu_done=recycle, on_done=on_done
                    )
                    self._inflight[serial] = (fence, sub._gpu_finished)
                    if not wait:
                        self._pending.append(sub)
                    submitted = True
            except BaseException as e:
                if submitted or pair is None:  # the Submission owns the work, or none was taken
                    raise
                late = _vk.submitted_serial(e)
                if late is not None:  # interrupted as it was submitted: in use until done
                    self._track_interrupted(late, pair[1], label, keep, pair, free)
                elif self.state is OPEN:
                    lib.vkResetCommandBuffer(pair[0], 0)
                    free.append(pair)
                raise
        if wait:
            sub.wait()
        return sub

    def submission(
        self,
        serial: int,
        fence: Any,
        label: str,
        *,
        keep: Any = None,
        on_gpu_done: Callable[[], None] | None = None,
        on_done: Callable[[], Any] | None = None,
    ) -> Submission:
        """The :class:`Submission` of an asynchronous call already submitted as ``serial``:
        its waiters, its host part (``on_done``) and what the GPU frees (``on_gpu_done``)."""
        sub = Submission(
            self, serial, fence, label, keep=keep, on_gpu_done=on_gpu_done, on_done=on_done
        )
        self.set_on_gpu_done(serial, sub._gpu_finished)
        return sub

    def _track_interrupted(
        self,
        serial: int,
        fence: Any,
        label: str,
        keep: Any,
        cmd_fence: tuple[Any, Any],
        free: list[tuple[Any, Any]],
    ) -> None:
        """A one-shot submission whose caller was interrupted as it was submitted: kept (and
        its command buffer and fence given back) until the GPU is done with it."""

        def recycle() -> None:
            if self.state is OPEN:
                free.append(cmd_fence)

        sub = Submission(self, serial, fence, label, keep=keep, on_gpu_done=recycle)
        self._inflight[serial] = (fence, sub._gpu_finished)
        self._pending.append(sub)

    def track(self, sub: Submission) -> None:
        """Keep an asynchronous submission until it finishes (``synchronize`` waits for it)."""
        with self.lock:
            if self.state is OPEN:
                self._pending.append(sub)
                return
        sub._fail(self.unusable_error(sub.label))

    def forget(self, sub: Submission) -> None:
        """An asynchronous submission has finished on the host."""
        with self.lock:
            try:
                self._pending.remove(sub)
            except ValueError:
                pass

    def pending(self) -> list[Submission]:
        """The asynchronous submissions not finished yet."""
        with self.lock:
            return list(self._pending)

    def host_time(self, ticks: int) -> float | None:
        """A timestamp of this device's queue as a ``time.time()`` value, where the device has
        calibrated timestamps (``VK_EXT_calibrated_timestamps`` with the monotonic clock);
        else None.  Recalibrated every few seconds against drift.

        Example
        -------
        >>> vknb.device().host_time(0) is None or True
        True
        """
        cal = self._calibration
        if cal is None or time.monotonic() - cal[3] > 5.0:
            if self._calibrate_fn is False:
                return None
            cal = self._calibrate()
            if cal is None:
                return None
        gpu0, host0, scale, _ = cal
        d = ticks - gpu0
        bits = self.timestamp_bits
        if bits < 64:
            d &= (1 << bits) - 1
            if d >= 1 << (bits - 1):
                d -= 1 << bits
        return host0 + d * scale

    def _calibrate(self) -> tuple[int, float, float, float] | None:
        """(device ticks, that instant on the ``time.time()`` clock, seconds per tick, when
        it was taken on the monotonic clock)."""
        if "VK_EXT_calibrated_timestamps" not in self.extensions or not self.usable_here():
            self._calibrate_fn = False
            return None
        ffi = _vk.ffi
        if self._calibrate_fn is None:
            domains_fn = _vk.instance_proc(
                self.instance.handle, "vkGetPhysicalDeviceCalibrateableTimeDomainsEXT"
            )
            fn = _vk.device_proc(self.handle, "vkGetCalibratedTimestampsEXT")
            n = ffi.new("uint32_t*")
            if domains_fn is None or fn is None or domains_fn(self.info.handle, n, ffi.NULL):
                self._calibrate_fn = False
                return None
            arr = ffi.new("VkTimeDomainEXT[]", n[0])
            domains_fn(self.info.handle, n, arr)
            if not {0, 1} <= {int(arr[i]) for i in range(n[0])}:  # DEVICE, CLOCK_MONOTONIC
                self._calibrate_fn = False
                return None
            self._calibrate_fn = fn
            self._calibrate_infos = ffi.new(
                "VkCalibratedTimestampInfoEXT[]",
                [
                    {"sType": C.STRUCTURE_TYPE_CALIBRATED_TIMESTAMP_INFO_EXT, "timeDomain": d}
                    for d in (0, 1)
                ],
            )
        out = ffi.new("uint64_t[2]")
        deviation = ffi.new("uint64_t*")
        if self._calibrate_fn(self.handle, 2, self._calibrate_infos, out, deviation) != 0:
            return None
        host0 = int(out[1]) * 1e-9 + time.time() - time.monotonic()
        scale = self.info.limits["timestamp_period_ns"] * 1e-9
        self._calibration = (int(out[0]), host0, scale, time.monotonic())
        return self._calibration

    def cooperative_matrix_shapes(self) -> list[dict[str, Any]]:
        """The cooperative-matrix (tensor core) shapes the device runs, one dict per shape.

        Each has ``M``, ``N``, ``K`` (a product of an M x K and a K x N matrix added to an
        M x N one), the component types ``A``, ``B``, ``C``, ``D`` (``"float16"``,
        ``"float32"``, ``"int8"``...) and ``scope``; empty where ``VK_NV_cooperative_matrix``
        is not enabled (see ``Device.cooperative_matrix``).

        Example
        -------
        >>> [s for s in vknb.device().cooperative_matrix_shapes() if s["A"] == "float16"][:1]
        [{'M': 16, 'N': 16, 'K': 16, 'A': 'float16', 'B': 'float16', 'C': 'float32', ...}]
        """
        if self._coop_shapes is None:
            self._coop_shapes = self._query_cooperative_matrix_shapes()
        return [dict(s) for s in self._coop_shapes]

    def _query_cooperative_matrix_shapes(self) -> list[dict[str, Any]]:
        if "VK_NV_cooperative_matrix" not in self.cooperative_matrix:
            return []
        ffi = _vk.ffi
        fn = _vk.instance_proc(
            self.instance.handle, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"
        )
        if fn is None:
            return []
        count = ffi.new("uint32_t*")
        _vk.check(
            fn(self.info.handle, count, ffi.NULL),
            "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV",
        )
        props = ffi.new("VkCooperativeMatrixPropertiesNV[]", count[0])
        for i in range(count[0]):
            props[i].sType = C.STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV
        _vk.check(
            fn(self.info.handle, count, props), "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"
        )
        names = C.COMPONENT_TYPE_NAMES
        return [
            {
                "M": p.MSize,
                "N": p.NSize,
                "K": p.KSize,
                "A": names.get(p.AType, str(p.AType)),
                "B": names.get(p.BType, str(p.BType)),
                "C": names.get(p.CType, str(p.CType)),
                "D": names.get(p.DType, str(p.DType)),
                "scope": C.SCOPE_NAMES.get(p.scope, str(p.scope)),
            }
            for p in props[0 : count[0]]
        ]

    def synchronize(self) -> None:
        """Wait for every pending asynchronous call on this device (and write numpy outputs
        back), then for anything else still running there (work whose caller Ctrl-C stopped:
        what it holds is given back as it finishes).

        Example
        -------
        >>> vknb.device().synchronize()
        """
        self.check_usable()
        for sub in self.pending():
            sub.wait()
        self.wait_gpu()

    def wait_gpu(self, timeout: float | None = None) -> None:
        """Wait until every submission made so far has finished on the GPU (not the host part
        of asynchronous calls): what a host write into memory the GPU may use waits for.

        Polls the fences under the lock (another thread may own and reuse them), sleeping a
        little longer each round, so that Ctrl-C interrupts it.
        """
        self.check_usable()
        if not self._inflight:
            return
        with self.lock:
            last = self._serial
        t = timeout_s() if timeout is None else timeout
        deadline = time.monotonic() + t
        nap = 20e-6
        while True:
            self.poll()
            if self.state is not OPEN:
                raise self.unusable_error(self.label)
            with self.lock:
                if not self._inflight or min(self._inflight) > last:
                    return
            if time.monotonic() > deadline:
                self.mark_lost(f"work submitted to {self.label} did not finish within {t:g} s")
                raise self.unusable_error(self.label)
            time.sleep(nap)
            nap = min(nap * 2, WAIT_SLICE_S)

    def wait_idle(self) -> None:
        """Wait until the device has nothing left to do (bounded by the timeout)."""
        if self.state is OPEN and self.usable_here():
            self.wait_gpu()

    # -- children and statistics ---------------------------------------------------------

    def adopt(self, child: Any) -> None:
        """Register an object to be closed (first) when the device closes."""
        self._children.add(child)

    def disown(self, child: Any) -> None:
        """Undo :meth:`adopt` (an object the device will not close itself)."""
        self._children.discard(child)

    def memory_stats(self) -> MemoryStats:
        """Memory statistics: per-heap size, driver budget/usage, vknb's allocated/used bytes.

        ``used`` counts every live buffer, vknb's own transfer staging buffers (``staging``,
        made by the first transfer that needs them: none on a CPU driver) included.

        Example
        -------
        >>> s = vknb.device().memory_stats()
        >>> s.allocated >= s.used >= 0
        True
        """
        self.check_usable()
        self.collect()
        stats = self.allocator.stats(self.buffers, self.images)
        if self.host_import is not None:
            stats.imported, stats.imports = self.host_import.usage()
        staging = self.staging
        if staging is not None:
            stats.staging = sum(b.size for b in staging.up + staging.down)
        return stats

    def trim(self) -> int:
        """Give the memory of freed large Arrays, kept for reuse, back to the driver now.

        vknb keeps up to ``VKNB_RECYCLE_MB`` (default 1 GiB) of freed dedicated allocations
        and hands them to the next Array of about the same size; they show as ``cached`` in
        :meth:`memory_stats`.  Returns the number of bytes freed.  Numpy memory kept imported
        for transfers (``imported`` in :meth:`memory_stats`) is released too.

        Example
        -------
        >>> dev = vknb.device()
        >>> vknb.empty(1 << 24).close()
        >>> dev.trim() >= 0 and dev.memory_stats().cached == 0
        True
        """
        self.check_usable()
        if self.host_import is not None:
            self.host_import.trim()
        self.collect()
        return self.allocator.trim()

    def count_transfer(self, path: str) -> None:
        """Count one transfer between numpy and this device by its ``path`` (one of
        :meth:`transfer_stats`' keys)."""
        with self.lock:
            self.transfer_counts[path] = self.transfer_counts.get(path, 0) + 1

    def transfer_stats(self) -> dict[str, int]:
        """Transfers between numpy and this device so far, by the path they took.

        ``direct``: copied by host threads through mapped memory; ``staging``: through the
        staging buffers; ``import``: the copy engine read or wrote the numpy array's own pages
        (``VK_EXT_external_memory_host``, see ``VKNB_HOST_IMPORT``), ``import_reused`` of them
        with an import kept from an earlier transfer; ``import_failed``: imports the driver
        refused (those transfers went through staging).

        Example
        -------
        >>> s = vknb.device().transfer_stats()
        >>> sorted(s)
        ['direct', 'import', 'import_failed', 'import_reused', 'staging']
        """
        with self.lock:
            return dict(self.transfer_counts)

    def live_objects(self) -> dict[str, int]:
        """Counts of live vknb objects on this device by class (for leak checks)."""
        out: dict[str, int] = {}
        for c in list(self._children):
            n = type(c).__name__
            out[n] = out.get(n, 0) + 1
        return out

    # -- teardown ------------------------------------------------------------------------

    def close(self, *, wait_s: float | None = None) -> None:
        """Close every child (arrays, kernels, batches), save the pipeline cache, destroy.

        Waits for submitted work first, at most ``wait_s`` seconds (default: the timeout); a
        device still busy then is abandoned like a lost one: its handles are never destroyed
        (the driver may still be using them), and asynchronous calls still pending raise on
        ``wait()``.  Idempotent; never raises (problems are logged).
        """
        reap()  # (the releases of objects collected so far, queued while the device is open)
        claimed = False  # this call closes the device (a Ctrl-C before it does: see below)
        try:
            with self.lock:
                if self._closing:
                    return
                self._closing = True
                claimed = True
            if self.state is not OPEN:
                if self.state == LOST:
                    self._abandon()
                return
            if not self.usable_here():
                self.state = CLOSED
                self._finalizer.detach()
                return
            try:
                budget = timeout_s() if wait_s is None else wait_s
            except ValueError:
                budget = 60.0
            try:
                self._finish_pending(budget)
            except BaseException as e:  # Ctrl-C or a lost device: destroy nothing in use
                if isinstance(e, KeyboardInterrupt) and self.state is OPEN and self.idle():
                    # Nothing runs on the GPU any more: close it all the same, then raise
                    # (abandoned, an idle device would keep its memory for good).
                    with _vk.deferred_interrupt():
                        claimed = False
                        self._teardown(budget)
                    raise
                claimed = False
                with self.lock:
                    if self.state is OPEN:
                        self.state = CLOSED
                self._abandon()
                raise
            if self.state is not OPEN:  # lost while waiting
                self._abandon()
                return
            # From here on, nothing runs on the GPU: the teardown runs whole, with Ctrl-C held
            # back (cut short, the device would stay closed and never destroyed, or be
            # destroyed and still owned by its finalizer, which would destroy it again).
            with _vk.deferred_interrupt():
                claimed = False
                self._teardown(budget)
        except BaseException:
            if claimed and self.state is OPEN:
                # A Ctrl-C before anything was closed or abandoned: the device stays open, and
                # a later close() (at exit, say) starts over instead of returning at once.
                self._closing = False
            raise

    def _teardown(self, budget: float) -> None:
        ffi, lib = _vk.ffi, _vk.lib
        with self.lock:
            self.state = CLOSED
            pending, self._pending = self._pending, []
        if not self._wait_not_busy(budget):
            log.warning("%s closed while other threads still use it: abandoned", self.label)
            self._abandon()
            return
        err = E.ObjectClosed(f"{self.label} was closed before this call finished")
        for sub in pending:
            sub._fail(err)
        try:
            for child in list(self._children):
                try:
                    child.close()
                except Exception:  # pragma: no cover
                    log.exception("closing %r failed", child)
            with self.lock:
                self._run_retired()
            if self.staging is not None:
                self.staging.close()
                self.staging = None
            with self.lock:
                self._run_retired()
            for release in self.release_with_device:
                release()
            self.release_with_device.clear()
            self.host_import = None
            self._save_cache_closed()
            if self.mapped_views:
                # A zero-copy view of mapped memory is still referenced: the memory stays
                # mapped (and the device alive) until the process ends.
                log.info("%s closed with mapped views alive; its memory stays mapped", self.label)
                self._finalizer.detach()
                _zombies.append(self)
                return
            self._finalizer.detach()  # (first: nothing may destroy the device twice)
            self.allocator.close()
            for cmd_fence in self._free_cmds + self._transfer_free:
                lib.vkDestroyFence(self.handle, cmd_fence[1], ffi.NULL)
            self._free_cmds.clear()
            self._transfer_free.clear()
            lib.vkDestroyPipelineCache(self.handle, self.pipeline_cache, ffi.NULL)
            lib.vkDestroyCommandPool(self.handle, self.compute_pool, ffi.NULL)
            if self.transfer_pool is not None:
                lib.vkDestroyCommandPool(self.handle, self.transfer_pool, ffi.NULL)
            self._destroyed = True
            lib.vkDestroyDevice(self.handle, ffi.NULL)
            self.instance.devices_alive.discard(id(self))
        except Exception:  # pragma: no cover - never raise from cleanup
            log.exception("closing %s failed", self.label)
        finally:
            self._finalizer.detach()

    def _finish_pending(self, budget: float) -> None:
        """Wait (at most ``budget`` s) for in-flight work; finish asynchronous calls."""
        deadline = time.monotonic() + budget
        for sub in self.pending():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                sub.wait(timeout=left)
            except E.DeviceLost:
                return
            except E.VulkanError:
                pass  # the call's own error is its waiter's to see
        while self.state is OPEN:
            with self.lock:
                if not self._inflight:
                    return
                serial, (fence, _) = next(iter(self._inflight.items()))
            left = deadline - time.monotonic()
            try:
                self.wait_fence(serial, fence, self.label, max(left, 0.001))
            except E.DeviceLost:
                return

    def _wait_not_busy(self, budget: float) -> bool:
        """Let threads inside a driver call leave (at most ``budget`` s)."""
        deadline = time.monotonic() + budget
        while self.busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def _save_cache_closed(self) -> None:
        state, self.state = self.state, OPEN
        try:
            self.save_pipeline_cache()
        finally:
            self.state = state

    def _abandon(self) -> None:
        """Give up the device's handles for good (lost or stuck): destroy nothing."""
        self._finalizer.detach()
        with self.lock:
            pending, self._pending = self._pending, []
        err = self.unusable_error("this call")
        for sub in pending:
            sub._fail(err)

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self.state is OPEN else f" {self.state}"
        i = self.info
        return f"<vknb.Device {self.index}: {i.name} ({i.type}, score {i.score}){state}>"


def _release_device(
    handle: Any,
    allocator: Allocator,
    free_cmds: list[Any],
    transfer_free: list[Any],
    pools: list[Any],
    pipeline_cache: Any,
    epoch: int,
    devices_alive: set[int],
    ident: int,
    release_first: list[Callable[[], None]],
) -> None:
    """Finalizer of a Device collected without close(): destroy its own handles."""
    if epoch != _vk.epoch or allocator.abandoned:
        return
    ffi, lib = _vk.ffi, _vk.lib
    try:
        lib.vkDeviceWaitIdle(handle)
        for release in release_first:
            release()
        allocator.close()
        for _cmd, fence in free_cmds + transfer_free:
            lib.vkDestroyFence(handle, fence, ffi.NULL)
        lib.vkDestroyPipelineCache(handle, pipeline_cache, ffi.NULL)
        for pool in pools:
            lib.vkDestroyCommandPool(handle, pool, ffi.NULL)
        lib.vkDestroyDevice(handle, ffi.NULL)
        devices_alive.discard(ident)
    except Exception:  # pragma: no cover - never raise from cleanup
        log.exception("releasing a collected device failed")


_tokens = itertools.count(1)
_device_numbers = itertools.count(1)
_live_devices = WeakSet()  # (no Python callback as a device goes: see _vk.finalizer)
_zombies: list[Device] = []  # closed with mapped views alive: kept until the process ends
# What the pending releases of lost devices held (numpy memory a copy may still write into):
# kept until the process ends.
_lost_keep: list[list[Callable[[], None]]] = []
_exit_hook_installed = False


def _device_label(index: int, name: str, number: int) -> str:
    """``Device(0: name)``; a second logical device of the same GPU gets its number too, so
    that errors tell them apart."""
    same = any([d.index == index and d.state is OPEN for d in _live_devices])
    return f"Device({index}: {name})" + (f" #{number}" if same else "")


def live_devices() -> list[Device]:
    """Every Device of this process that is not collected yet."""
    return list(_live_devices)


def _close_all_at_exit() -> None:
    """At exit, close every device (children first) before object finalizers run.

    A lost device, or one inherited across fork, is left alone: nothing waits for it.  A busy
    one is waited for at most a few seconds.
    """
    # Objects dropped in reference cycles (a traceback's frames, say) are collected first:
    # their finalizers queue their releases, which closing the device then runs.
    gc.collect()
    reap()
    for d in list(_live_devices):
        if d.state is OPEN and d.usable_here():
            try:
                d.close(wait_s=min(5.0, timeout_s()))
            except BaseException:  # pragma: no cover - an interrupt during exit
                log.exception("closing %s at exit failed", d.label)
        else:
            d._finalizer.detach()


def _install_exit_hook() -> None:
    # atexit runs handlers last-in first-out, and weakref.finalize registers its own handler
    # when the first finalizer is made (the instance's): registering here, later, makes devices
    # close (children first) before the instance is destroyed.
    global _exit_hook_installed
    if not _exit_hook_installed:
        _exit_hook_installed = True
        atexit.register(_close_all_at_exit)
