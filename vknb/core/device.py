"""The logical device, its queues and submissions, and the session's shared device.

A :class:`Device` owns a ``VkDevice`` with a compute queue (and a dedicated transfer queue where
the hardware has one), a command pool per queue, fences, a pipeline cache persisted on disk and
the memory allocator.  Submissions are serialized by a lock and each waits on its own fence,
with a timeout (``VKNB_TIMEOUT_S``, default 60 s) so that a runaway kernel raises instead of
freezing the notebook.

Example
-------
>>> import vknb
>>> dev = vknb.device()
>>> dev.info.name                                            # doctest: +SKIP
'llvmpipe (LLVM 15.0.6, 256 bits)'
>>> dev.memory_stats().allocated >= 0
True
"""

from __future__ import annotations

import atexit
import logging
import os
import struct
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import _vk
from .. import errors as E
from .instance import DeviceInfo, get_instance, select_device_index
from .memory import Allocator, MemoryStats

log = logging.getLogger("vknb")

COMPUTE = 0x2
TRANSFER = 0x4
GRAPHICS = 0x1

_FEATURES2 = 1000059000  # VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
# (extension, its features struct, that struct's sType), enabled where the driver has them.
# Only the NV extension: it is what glslc (shaderc 2023) compiles GL_NV_cooperative_matrix to,
# and the validation layers of that era reject the KHR features struct in the device's chain.
_COOPERATIVE_MATRIX = (
    ("VK_NV_cooperative_matrix", "VkPhysicalDeviceCooperativeMatrixFeaturesNV", 1000249000),
)


def timeout_s() -> float:
    """The submission timeout in seconds (``VKNB_TIMEOUT_S``, default 60)."""
    try:
        return float(os.environ.get("VKNB_TIMEOUT_S", "60"))
    except ValueError:
        return 60.0


class Submission:
    """A submitted command buffer; holds what it uses alive until its fence signals.

    Returned by asynchronous calls (``kernel(..., wait=False)``).

    Example
    -------
    >>> s = k(x, y, grid=n, wait=False)                      # doctest: +SKIP
    >>> s.wait()                                             # doctest: +SKIP
    """

    __slots__ = (
        "__weakref__",
        "_done",
        "_on_done",
        "_result",
        "cmd",
        "device",
        "fence",
        "keep",
        "label",
        "transfer",
    )

    def __init__(
        self,
        device: Device,
        cmd: Any,
        fence: Any,
        keep: Any,
        label: str,
        on_done: Callable[[], Any] | None = None,
    ) -> None:
        self.device = device
        self.cmd = cmd
        self.fence = fence
        self.keep = keep
        self.label = label
        self._done = False
        self._on_done = on_done
        self._result: Any = None
        self.transfer = False

    @property
    def done(self) -> bool:
        """Whether the GPU has finished (does not block)."""
        if self._done:
            return True
        res = _vk.lib.vkGetFenceStatus(self.device.handle, self.fence)
        if res == _vk.SUCCESS:
            self.wait()
            return True
        _vk.check(res, "vkGetFenceStatus", self.label)
        return False

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the GPU is done; raise ExecutionFailed on timeout."""
        if self._done:
            return self._result
        self.device._wait_fence(self.fence, self.label, timeout)
        self._done = True
        on_done = self._on_done
        self._on_done = None
        # Retire first: the completion callback may itself wait for the device (a write-back
        # through staging synchronizes), which must not find this submission still pending.
        self.device._retire(self)
        self._result = on_done() if on_done is not None else None
        return self._result

    def __repr__(self) -> str:
        return f"<Submission {self.label} {'done' if self._done else 'pending'}>"


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
        The device extensions vknb enabled (``VK_EXT_memory_budget``, and
        ``VK_NV_cooperative_matrix`` for tensor-core kernels, where the driver has them).
    cooperative_matrix : tuple of str
        The cooperative-matrix extensions enabled; empty where there are none (see
        :meth:`cooperative_matrix_shapes`).

    Example
    -------
    >>> with vknb.Device(0) as dev:                          # doctest: +SKIP
    ...     a = vknb.asarray(np.arange(4.0, dtype=np.float32), device=dev)
    """

    def __init__(self, index: int | None = None) -> None:
        inst = get_instance()
        infos = inst.physical_devices()
        if index is None:
            index, reason = select_device_index(infos)
        else:
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
        self.label = f"Device({index}: {self.info.name})"
        self._closed = False
        self._lock = threading.RLock()
        self._children: weakref.WeakSet[Any] = weakref.WeakSet()
        self._pending: list[Submission] = []
        self._free_cmds: list[tuple[Any, Any]] = []  # (command buffer, fence) ready for reuse
        self._create()
        self._timeout_s = timeout_s()
        default_spin = "300"  # measured: halves the latency of small dispatches on lavapipe too
        try:
            self._spin_s = float(os.environ.get("VKNB_SPIN_US", default_spin)) * 1e-6
        except ValueError:
            self._spin_s = 0.0
        self.allocator = Allocator(self)
        self._buffers = 0
        self._staging: Any = None
        # Collected without close(): by then every child is gone (children hold the device), so
        # only the device's own handles remain; the callback gets them, not the dead object.
        self._finalizer = weakref.finalize(
            self,
            _release_device,
            self.handle,
            self.allocator,
            self._free_cmds,
            self._transfer_free,
            [p for p in (self.compute_pool, self.transfer_pool) if p],
            self.pipeline_cache,
        )
        _live_devices.add(self)
        _install_exit_hook()

    # -- creation -------------------------------------------------------------------------

    def _create(self) -> None:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        info = self.info
        keep = _vk.Keep()
        fams = info.queue_families
        compute = [q for q in fams if q.flags & COMPUTE]
        if not compute:
            raise E.NoComputeQueue(f"{self.label} has no queue family with compute support")
        # Prefer a compute family without graphics (async compute), else the first one.
        self.compute_family = next((q for q in compute if not q.flags & GRAPHICS), compute[0]).index
        dedicated = [q for q in fams if q.flags & TRANSFER and not q.flags & (COMPUTE | GRAPHICS)]
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

        exts = [e for e in ("VK_EXT_memory_budget",) if e in info.extensions]
        if "VK_KHR_portability_subset" in info.extensions:
            exts.append("VK_KHR_portability_subset")

        # Enable every core feature the device has (compute shaders opt into what they use),
        # except robustBufferAccess, which costs speed on some GPUs.
        api = min(
            self.instance.api_version, _vk.make_version(*map(int, info.api_version.split(".")[:2]))
        )
        feats2, f11, f12, f13 = _vk.query_features(info.handle, api)
        feats2.features.robustBufferAccess = 0
        if f12 is not None:
            # Features that need a surface or another extension enabled too.
            f11.protectedMemory = 0
            f12.bufferDeviceAddressCaptureReplay = 0
            f12.bufferDeviceAddressMultiDevice = 0
        if f13 is not None:
            f13.robustImageAccess = 0
        # Cooperative matrices (tensor cores), where the driver has them.
        self.cooperative_matrix: tuple[str, ...] = ()
        self._coop_shapes: list[dict[str, Any]] | None = None  # queried on first use
        if api >= _vk.make_version(1, 1):
            for ext, struct, stype in _COOPERATIVE_MATRIX:
                if ext not in info.extensions:
                    continue
                f = keep(_vk.new(struct, {"sType": stype}))
                probe = keep(
                    _vk.new("VkPhysicalDeviceFeatures2", {"sType": _FEATURES2, "pNext": f})
                )
                lib.vkGetPhysicalDeviceFeatures2(info.handle, probe)
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
        self.compute_pool = self._make_pool(self.compute_family)
        self.transfer_pool = (
            self._make_pool(self.transfer_family) if self.transfer_family is not None else None
        )
        self._transfer_free: list[tuple[Any, Any]] = []
        self.pipeline_cache = self._load_pipeline_cache()

    def _make_pool(self, family: int) -> Any:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        info = _vk.new(
            "VkCommandPoolCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                "flags": vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                "queueFamilyIndex": family,
            },
        )
        p = ffi.new("VkCommandPool*")
        _vk.check(
            lib.vkCreateCommandPool(self.handle, info, ffi.NULL, p),
            "vkCreateCommandPool",
            self.label,
        )
        return p[0]

    # -- pipeline cache ------------------------------------------------------------------

    def pipeline_cache_path(self) -> Path:
        """Where this device's pipeline cache is saved (keyed by vendor, device, driver, UUID)."""
        from ..shader.compiler import cache_dir

        i = self.info
        return (
            cache_dir()
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
        self._pipeline_cache_loaded = len(data)
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
        if self._closed:
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
        except OSError as e:
            log.info("could not save the pipeline cache: %s", e)
            return None

    # -- command buffers and submission ---------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise E.ObjectClosed(f"{self.label} is closed")

    def _new_cmd(self, pool: Any) -> tuple[Any, Any]:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        info = _vk.new(
            "VkCommandBufferAllocateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                "commandPool": pool,
                "level": vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                "commandBufferCount": 1,
            },
        )
        p = ffi.new("VkCommandBuffer*")
        _vk.check(
            lib.vkAllocateCommandBuffers(self.handle, info, p),
            "vkAllocateCommandBuffers",
            self.label,
        )
        return p[0], self.new_fence()

    def new_fence(self) -> Any:
        """A new unsignaled fence owned by the caller (destroy with :meth:`destroy_fence`)."""
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        finfo = _vk.new("VkFenceCreateInfo", {"sType": vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO})
        pf = ffi.new("VkFence*")
        _vk.check(lib.vkCreateFence(self.handle, finfo, ffi.NULL, pf), "vkCreateFence", self.label)
        return pf[0]

    def destroy_fence(self, fence: Any) -> None:
        if not self._closed:
            _vk.lib.vkDestroyFence(self.handle, fence, _vk.ffi.NULL)

    def _wait_fence(
        self, fence: Any, label: str, timeout: float | None = None, pfence: Any = None
    ) -> None:
        """Wait for ``fence``: spin briefly on its status, then block (with the timeout).

        Tiny dispatches finish within tens of microseconds; a blocking wait costs a thread
        wake-up of similar size, so vknb polls first (``VKNB_SPIN_US``, default 300).
        """
        lib = _vk.lib
        h = self.handle
        if self._spin_s > 0:
            status = lib.vkGetFenceStatus
            clock = time.perf_counter
            end = clock() + self._spin_s
            while True:
                r = status(h, fence)
                if r == 0:
                    if _vk._validation_pending:
                        _vk.raise_validation("vkGetFenceStatus", label)
                    return
                if r != _vk.NOT_READY:
                    _vk.check(r, "vkGetFenceStatus", label)
                if clock() > end:
                    break
        t = self._timeout_s if timeout is None else timeout
        ns = min(int(t * 1e9), _vk.UINT64_MAX)
        pf = pfence if pfence is not None else _vk.ffi.new("VkFence*", fence)
        res = lib.vkWaitForFences(h, 1, pf, 1, ns)
        if res == _vk.TIMEOUT:
            raise E.ExecutionFailed(
                f"{label} did not finish within {t:g} s on {self.label}. A kernel may loop "
                "forever or be far too large; raise VKNB_TIMEOUT_S for long kernels, or call "
                "vknb.reset() to start a fresh device.",
                function="vkWaitForFences",
                label=label,
                result=res,
            )
        _vk.check(res, "vkWaitForFences", label)

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
        self._check_open()
        lib, vk = _vk.lib, _vk.vk
        use_transfer = transfer and self.transfer_pool is not None
        queue = self.transfer_queue if use_transfer else self.compute_queue
        with self._lock:
            free = self._transfer_free if use_transfer else self._free_cmds
            cmd, fence = (
                free.pop()
                if free
                else self._new_cmd(self.transfer_pool if use_transfer else self.compute_pool)
            )
            try:
                begin = _vk.new(
                    "VkCommandBufferBeginInfo",
                    {
                        "sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                        "flags": vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
                    },
                )
                _vk.check(lib.vkBeginCommandBuffer(cmd, begin), "vkBeginCommandBuffer", label)
                record(cmd)
                _vk.check(lib.vkEndCommandBuffer(cmd), "vkEndCommandBuffer", label)
                self._submit_locked(cmd, fence, queue, label)
            except BaseException:
                lib.vkResetCommandBuffer(cmd, 0)
                free.append((cmd, fence))
                raise
            sub = Submission(self, cmd, fence, keep, label, on_done)
            sub.transfer = use_transfer
        if wait:
            sub.wait()
        else:
            self._pending.append(sub)
        return sub

    def _submit_locked(self, cmd: Any, fence: Any, queue: Any, label: str) -> None:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        pc = ffi.new("VkCommandBuffer*", cmd)
        info = _vk.new(
            "VkSubmitInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                "commandBufferCount": 1,
                "pCommandBuffers": pc,
            },
        )
        pf = ffi.new("VkFence*", fence)
        _vk.check(lib.vkResetFences(self.handle, 1, pf), "vkResetFences", label)
        _vk.check(lib.vkQueueSubmit(queue, 1, info, fence), "vkQueueSubmit", label)

    def _retire(self, sub: Submission) -> None:
        """Give a finished one-shot submission's command buffer and fence back for reuse."""
        with self._lock:
            if sub in self._pending:
                self._pending.remove(sub)
            if sub.cmd is not None and not self._closed:
                (self._transfer_free if sub.transfer else self._free_cmds).append(
                    (sub.cmd, sub.fence)
                )
            sub.cmd = None
            sub.keep = None

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
            props[i].sType = 1000249001  # VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV
        _vk.check(
            fn(self.info.handle, count, props), "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"
        )
        names = {
            0: "float16",
            1: "float32",
            2: "float64",
            3: "int8",
            4: "int16",
            5: "int32",
            6: "int64",
            7: "uint8",
            8: "uint16",
            9: "uint32",
            10: "uint64",
        }
        scopes = {1: "device", 2: "workgroup", 3: "subgroup", 5: "queue_family"}
        return [
            {
                "M": p.MSize,
                "N": p.NSize,
                "K": p.KSize,
                "A": names.get(p.AType, str(p.AType)),
                "B": names.get(p.BType, str(p.BType)),
                "C": names.get(p.CType, str(p.CType)),
                "D": names.get(p.DType, str(p.DType)),
                "scope": scopes.get(p.scope, str(p.scope)),
            }
            for p in props[0 : count[0]]
        ]

    def synchronize(self) -> None:
        """Wait for every pending asynchronous submission on this device.

        Example
        -------
        >>> vknb.device().synchronize()
        """
        for sub in list(self._pending):
            sub.wait()

    def wait_idle(self) -> None:
        """``vkDeviceWaitIdle``: wait until the device has nothing left to do."""
        if not self._closed:
            _vk.check(_vk.lib.vkDeviceWaitIdle(self.handle), "vkDeviceWaitIdle", self.label)

    # -- children and statistics ---------------------------------------------------------

    def _adopt(self, child: Any) -> None:
        self._children.add(child)

    def memory_stats(self) -> MemoryStats:
        """Memory statistics: per-heap size, driver budget/usage, vknb's allocated/used bytes.

        Example
        -------
        >>> s = vknb.device().memory_stats()
        >>> s.allocated >= s.used >= 0
        True
        """
        self._check_open()
        return self.allocator.stats(self._buffers)

    def trim(self) -> int:
        """Give the memory of freed large Arrays, kept for reuse, back to the driver now.

        vknb keeps up to ``VKNB_RECYCLE_MB`` (default 1 GiB) of freed dedicated allocations
        and hands them to the next Array of about the same size; they show as ``cached`` in
        :meth:`memory_stats`.  Returns the number of bytes freed.

        Example
        -------
        >>> dev = vknb.device()
        >>> vknb.empty(1 << 24).close()
        >>> dev.trim() >= 0 and dev.memory_stats().cached == 0
        True
        """
        self._check_open()
        return self.allocator.trim()

    def live_objects(self) -> dict[str, int]:
        """Counts of live vknb objects on this device by class (for leak checks)."""
        out: dict[str, int] = {}
        for c in list(self._children):
            n = type(c).__name__
            out[n] = out.get(n, 0) + 1
        return out

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Wait idle, close every child (arrays, kernels), save the pipeline cache, destroy.

        Idempotent; never raises (problems are logged).
        """
        if self._closed:
            return
        ffi, lib = _vk.ffi, _vk.lib
        try:
            lib.vkDeviceWaitIdle(self.handle)
            for sub in list(self._pending):
                sub._done = True
                sub.keep = None
            self._pending.clear()
            for child in list(self._children):
                try:
                    child.close()
                    release = getattr(child, "_release_now", None)
                    if release is not None:  # a buffer whose release waits on a mapped view
                        release()
                except Exception:  # pragma: no cover
                    log.exception("closing %r failed", child)
            if self._staging is not None:
                self._staging.close()
                self._staging = None
            self.save_pipeline_cache()
            self._closed = True
            self.allocator.close()
            for cmd_fence in self._free_cmds + self._transfer_free:
                lib.vkDestroyFence(self.handle, cmd_fence[1], ffi.NULL)
            self._free_cmds.clear()
            self._transfer_free.clear()
            lib.vkDestroyPipelineCache(self.handle, self.pipeline_cache, ffi.NULL)
            lib.vkDestroyCommandPool(self.handle, self.compute_pool, ffi.NULL)
            if self.transfer_pool is not None:
                lib.vkDestroyCommandPool(self.handle, self.transfer_pool, ffi.NULL)
            lib.vkDestroyDevice(self.handle, ffi.NULL)
        except Exception:  # pragma: no cover - never raise from cleanup
            log.exception("closing %s failed", self.label)
        finally:
            self._closed = True
            self._finalizer.detach()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        i = self.info
        return f"<vknb.Device {self.index}: {i.name} ({i.type}, score {i.score}){state}>"

    def _repr_html_(self) -> str:
        from ..ui.display import device_html

        return device_html(self)


def _release_device(
    handle: Any,
    allocator: Allocator,
    free_cmds: list[Any],
    transfer_free: list[Any],
    pools: list[Any],
    pipeline_cache: Any,
) -> None:
    """Finalizer of a Device collected without close(): destroy its own handles."""
    ffi, lib = _vk.ffi, _vk.lib
    try:
        lib.vkDeviceWaitIdle(handle)
        allocator.close()
        for _cmd, fence in free_cmds + transfer_free:
            lib.vkDestroyFence(handle, fence, ffi.NULL)
        lib.vkDestroyPipelineCache(handle, pipeline_cache, ffi.NULL)
        for pool in pools:
            lib.vkDestroyCommandPool(handle, pool, ffi.NULL)
        lib.vkDestroyDevice(handle, ffi.NULL)
    except Exception:  # pragma: no cover - never raise from cleanup
        log.exception("releasing a collected device failed")


_live_devices: weakref.WeakSet[Device] = weakref.WeakSet()
_exit_hook_installed = False


def _close_all_at_exit() -> None:
    """At exit, close every device (waiting for its work) before object finalizers run."""
    for d in list(_live_devices):
        d.close()


def _install_exit_hook() -> None:
    # atexit runs handlers last-in first-out, and weakref.finalize registers its own handler
    # when the first finalizer is made (the instance's): registering here, later, makes devices
    # close (waiting idle, children first) before any buffer finalizer runs.
    global _exit_hook_installed
    if not _exit_hook_installed:
        _exit_hook_installed = True
        atexit.register(_close_all_at_exit)
