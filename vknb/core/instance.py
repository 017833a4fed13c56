"""The process-wide Vulkan instance and the physical devices it sees.

The instance is created lazily, once, under a lock.  ``VKNB_VALIDATION=1`` enables the Khronos
validation layer and a debug messenger that routes messages to the ``vknb.vulkan`` logger; a
validation *error* raises :class:`~vknb.errors.ValidationError` at the vknb call that caused it.

Example
-------
>>> import vknb
>>> for d in vknb.devices():
...     print(d.index, d.name, d.type, d.score)          # doctest: +SKIP
0 llvmpipe (LLVM 15.0.6, 256 bits) cpu 23
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import _vk, config
from .. import errors as E
from .._vk import constants as C

log = logging.getLogger("vknb")
vlog = logging.getLogger("vknb.vulkan")

TYPE_NAMES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}
TYPE_BONUS = {"discrete": 1000, "integrated": 100}
VENDORS = {
    0x10DE: "NVIDIA",
    0x1002: "AMD",
    0x8086: "Intel",
    0x13B5: "ARM",
    0x5143: "Qualcomm",
    0x106B: "Apple",
    0x10005: "Mesa",
    0x1010: "Imagination",
}
GiB = 1 << 30

# Memory property flags
DEVICE_LOCAL = C.MEMORY_PROPERTY_DEVICE_LOCAL_BIT
HOST_VISIBLE = C.MEMORY_PROPERTY_HOST_VISIBLE_BIT
HOST_COHERENT = C.MEMORY_PROPERTY_HOST_COHERENT_BIT
HOST_CACHED = C.MEMORY_PROPERTY_HOST_CACHED_BIT

_MEMORY_FLAG_NAMES = {
    0x1: "device_local",
    0x2: "host_visible",
    0x4: "host_coherent",
    0x8: "host_cached",
    0x10: "lazily_allocated",
    0x20: "protected",
    0x40: "device_coherent_amd",
    0x80: "device_uncached_amd",
}
_QUEUE_FLAG_NAMES = {
    0x1: "graphics",
    0x2: "compute",
    0x4: "transfer",
    0x8: "sparse",
    0x10: "protected",
}
_SUBGROUP_OPS = {
    0x1: "basic",
    0x2: "vote",
    0x4: "arithmetic",
    0x8: "ballot",
    0x10: "shuffle",
    0x20: "shuffle_relative",
    0x40: "clustered",
    0x80: "quad",
}
NOTABLE_EXTENSIONS = (
    "VK_EXT_memory_budget",
    "VK_EXT_external_memory_host",
    "VK_KHR_cooperative_matrix",
    "VK_NV_cooperative_matrix",
    "VK_KHR_shader_float16_int8",
    "VK_KHR_8bit_storage",
    "VK_KHR_16bit_storage",
    "VK_EXT_shader_atomic_float",
    "VK_KHR_buffer_device_address",
    "VK_EXT_subgroup_size_control",
    "VK_KHR_shader_integer_dot_product",
    "VK_KHR_portability_subset",
)


_PRINTF_FEATURE = 3  # VK_VALIDATION_FEATURE_ENABLE_DEBUG_PRINTF_EXT
# Bytes the layer sets aside per dispatch for what its invocations print (its default: 1024,
# some thirty lines); a line costs about 8 bytes plus 4 per value.
_PRINTF_BUFFER = 1 << 20


def _has_printf_layer() -> bool:
    """Whether the validation layer offers debug printf (VK_EXT_validation_features)."""
    _vk.load()
    ffi, lib = _vk.ffi, _vk.lib
    name = b"VK_LAYER_KHRONOS_validation"
    n = ffi.new("uint32_t*")
    if lib.vkEnumerateInstanceExtensionProperties(name, n, ffi.NULL) != 0:
        return False
    arr = ffi.new("VkExtensionProperties[]", n[0])
    lib.vkEnumerateInstanceExtensionProperties(name, n, arr)
    return any(
        _vk.to_str(arr[i].extensionName) == "VK_EXT_validation_features" for i in range(n[0])
    )


# Validation messages that are decisions, not mistakes: vknb keeps every image in the general
# layout on purpose (core.image), which the layer's best-practices check reports on every use.
_SILENCED = frozenset({0x4DAE5635})  # "InvalidImageLayout" performance warning


def _flag_names(value: int, names: dict[int, str]) -> list[str]:
    return [n for bit, n in names.items() if value & bit]


@dataclass(frozen=True)
class MemoryHeap:
    """One memory heap of a physical device."""

    index: int
    size: int
    device_local: bool


@dataclass(frozen=True)
class MemoryType:
    """One memory type: its heap and property flags."""

    index: int
    heap: int
    flags: int

    @property
    def flag_names(self) -> list[str]:
        """Property flags as names, e.g. ``['device_local', 'host_visible']``."""
        return _flag_names(self.flags, _MEMORY_FLAG_NAMES)


@dataclass(frozen=True)
class QueueFamily:
    """One queue family: what it can do and how many queues it has."""

    index: int
    flags: int
    count: int
    timestamp_valid_bits: int

    @property
    def capabilities(self) -> list[str]:
        """``['graphics', 'compute', 'transfer', ...]``."""
        return _flag_names(self.flags, _QUEUE_FLAG_NAMES)


@dataclass(frozen=True)
class DeviceInfo:
    """Everything vknb knows about a physical device, as plain data.

    ``score`` is ``score_parts['type'] + score_parts['memory']``: +1000 for a discrete GPU, +100
    for an integrated one, +1 per GiB of device-local memory.  The session device is the one with
    the highest score (ties: lowest index) unless ``VKNB_DEVICE`` names another.
    """

    index: int
    name: str
    type: str
    vendor_id: int
    vendor: str
    device_id: int
    driver: str
    driver_info: str
    driver_version: int
    api_version: str
    score: int
    score_parts: dict[str, int]
    total_memory: int
    limits: dict[str, Any]
    heaps: tuple[MemoryHeap, ...]
    memory_types: tuple[MemoryType, ...]
    queue_families: tuple[QueueFamily, ...]
    extensions: tuple[str, ...]
    features: dict[str, bool]
    pipeline_cache_uuid: bytes
    handle: Any = field(repr=False, compare=False, default=None)

    @property
    def timestamps(self) -> bool:
        """Whether the compute queue can write timestamps."""
        return any(q.timestamp_valid_bits > 0 and q.flags & 0x2 for q in self.queue_families)

    @property
    def notable_extensions(self) -> list[str]:
        """The extensions from :data:`NOTABLE_EXTENSIONS` that this device supports."""
        return [e for e in NOTABLE_EXTENSIONS if e in self.extensions]

    def has_extension(self, name: str) -> bool:
        """Whether the device supports the named extension."""
        return name in self.extensions

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data (no handle).

        Example
        -------
        >>> vknb.devices()[0].to_dict()["score_parts"]          # doctest: +SKIP
        {'type': 0, 'memory': 23}
        """
        return {
            "index": self.index,
            "name": self.name,
            "type": self.type,
            "vendor": self.vendor,
            "vendor_id": self.vendor_id,
            "device_id": self.device_id,
            "driver": self.driver,
            "driver_info": self.driver_info,
            "api_version": self.api_version,
            "score": self.score,
            "score_parts": dict(self.score_parts),
            "total_memory": self.total_memory,
            "limits": dict(self.limits),
            "heaps": [vars(h).copy() for h in self.heaps],
            "memory_types": [
                {"index": t.index, "heap": t.heap, "flags": t.flag_names} for t in self.memory_types
            ],
            "queue_families": [
                {
                    "index": q.index,
                    "capabilities": q.capabilities,
                    "count": q.count,
                    "timestamp_valid_bits": q.timestamp_valid_bits,
                }
                for q in self.queue_families
            ],
            "extensions": list(self.extensions),
            "features": dict(self.features),
        }


class Instance:
    """The process-wide ``VkInstance`` (use :func:`get_instance`)."""

    def __init__(self, validation: bool, printf: bool = False) -> None:
        _vk.load()
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        self.label = "vknb instance" + (" (debug printf)" if printf else "")
        self.epoch = _vk.epoch
        self.printf = printf
        # Lines kernels printed with debugPrintfEXT, as the validation layer hands them over.
        self.printf_messages: collections.deque[str] = collections.deque(maxlen=100_000)
        self.validation = validation
        self._messenger = None
        self._callback = None
        keep = _vk.Keep()

        api = _vk.make_version(1, 0)
        if hasattr(lib, "vkEnumerateInstanceVersion"):
            pv = ffi.new("uint32_t*")
            if lib.vkEnumerateInstanceVersion(pv) == 0:
                api = pv[0]
        self.loader_version = api
        # Ask for at most 1.3: what vknb uses; newer drivers still serve it.
        self.api_version = min(api, _vk.make_version(1, 3))

        layers: list[str] = []
        exts: list[str] = []
        available_ext = self._instance_extensions()
        if validation or printf:
            have = self._layers()
            if "VK_LAYER_KHRONOS_validation" not in have:
                raise E.InitializationFailed(
                    "VKNB_VALIDATION=1 but the Khronos validation layer is not installed: "
                    "`apt-get install vulkan-validationlayers` (or unset VKNB_VALIDATION)"
                    if validation
                    else "debugPrintfEXT output needs the Khronos validation layer: "
                    "`apt-get install vulkan-validationlayers`"
                )
            layers.append("VK_LAYER_KHRONOS_validation")
            exts.append("VK_EXT_debug_utils")
        features = ffi.NULL
        if printf:
            exts.append("VK_EXT_validation_features")
            enabled = keep(ffi.new("VkValidationFeatureEnableEXT[]", [_PRINTF_FEATURE]))
            # A printf-only instance skips the layer's checks (they cost time and are not asked
            # for): thread safety, API parameters, object lifetimes, core checks.
            disabled = keep(ffi.new("VkValidationFeatureDisableEXT[]", [2, 3, 4, 5]))
            features = keep(
                _vk.new(
                    "VkValidationFeaturesEXT",
                    {
                        "sType": C.STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
                        "enabledValidationFeatureCount": 1,
                        "pEnabledValidationFeatures": enabled,
                        "disabledValidationFeatureCount": 0 if validation else 4,
                        "pDisabledValidationFeatures": ffi.NULL if validation else disabled,
                    },
                )
            )
        if "VK_KHR_portability_enumeration" in available_ext:
            exts.append("VK_KHR_portability_enumeration")

        app = _vk.new(
            "VkApplicationInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_APPLICATION_INFO,
                "pApplicationName": keep(_vk.cstr("vknb")),
                "applicationVersion": 1,
                "pEngineName": keep(_vk.cstr("vknb")),
                "engineVersion": 1,
                "apiVersion": self.api_version,
            },
        )
        layer_c = [keep(_vk.cstr(s)) for s in layers]
        ext_c = [keep(_vk.cstr(s)) for s in exts]
        info = _vk.new(
            "VkInstanceCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                "pNext": features,
                "flags": 0x1 if "VK_KHR_portability_enumeration" in exts else 0,
                "pApplicationInfo": app,
                "enabledLayerCount": len(layers),
                "ppEnabledLayerNames": keep(ffi.new("char*[]", layer_c)) if layers else ffi.NULL,
                "enabledExtensionCount": len(exts),
                "ppEnabledExtensionNames": keep(ffi.new("char*[]", ext_c)) if exts else ffi.NULL,
            },
        )
        p = ffi.new("VkInstance*")
        with _printf_settings() if printf else contextlib.nullcontext():
            res = lib.vkCreateInstance(info, ffi.NULL, p)
        if res == -9:
            raise E.NotAvailable(
                "No Vulkan driver was found (VK_ERROR_INCOMPATIBLE_DRIVER). Install one: "
                "`apt-get install mesa-vulkan-drivers` gives lavapipe, a CPU driver.",
                function="vkCreateInstance",
                result=res,
            )
        _vk.check(res, "vkCreateInstance", self.label)
        self.handle = p[0]
        if validation or printf:
            self._install_messenger()
            _vk.enable_debug_names(self.handle)
        self._devices: list[DeviceInfo] | None = None
        # Devices made from this instance and not destroyed (a lost device, or one closed with
        # mapped views alive, never is): while any remains, the instance is left to the end of
        # the process rather than destroyed under it.
        self.devices_alive: set[int] = set()
        self._finalizer = weakref.finalize(
            self,
            _destroy_instance,
            self.handle,
            self._messenger,
            lib,
            ffi,
            self.epoch,
            self.devices_alive,
        )

    def flush_printf(self, file: Any = None) -> int:
        """Print what kernels printed with ``debugPrintfEXT`` since the last flush (to
        ``file``, default ``sys.stdout``: a notebook cell's output); returns the line count."""
        msgs = self.printf_messages
        if not msgs:
            return 0
        import sys

        out = sys.stdout if file is None else file
        n = 0
        while msgs:
            print(_printf_text(msgs.popleft()), file=out)
            n += 1
        return n

    # -- enumeration helpers -------------------------------------------------------------

    @staticmethod
    def _layers() -> list[str]:
        ffi, lib = _vk.ffi, _vk.lib
        n = ffi.new("uint32_t*")
        lib.vkEnumerateInstanceLayerProperties(n, ffi.NULL)
        arr = ffi.new("VkLayerProperties[]", n[0])
        lib.vkEnumerateInstanceLayerProperties(n, arr)
        return [_vk.to_str(arr[i].layerName) for i in range(n[0])]

    @staticmethod
    def _instance_extensions() -> list[str]:
        ffi, lib = _vk.ffi, _vk.lib
        n = ffi.new("uint32_t*")
        lib.vkEnumerateInstanceExtensionProperties(ffi.NULL, n, ffi.NULL)
        arr = ffi.new("VkExtensionProperties[]", n[0])
        lib.vkEnumerateInstanceExtensionProperties(ffi.NULL, n, arr)
        return [_vk.to_str(arr[i].extensionName) for i in range(n[0])]

    def _install_messenger(self) -> None:
        ffi, vk = _vk.ffi, _vk.vk
        create = _vk.instance_proc(self.handle, "vkCreateDebugUtilsMessengerEXT")
        if create is None:  # pragma: no cover - layer present but no debug utils
            return
        seen: dict[int, int] = {}

        @ffi.callback("PFN_vkDebugUtilsMessengerCallbackEXT")
        def callback(severity: int, types: int, data: Any, user: Any) -> int:
            with _vk.held_in_callback():  # (a Ctrl-C would cut it short and be lost)
                _message(severity, data)
            return 0

        def _message(severity: int, data: Any) -> None:
            try:
                msg = _vk.to_str(data.pMessage) if data.pMessage != ffi.NULL else "?"
                ident = int(data.messageIdNumber)
                if ident in _SILENCED:
                    return
                if data.pMessageIdName != ffi.NULL and b"DEBUG-PRINTF" in ffi.string(
                    data.pMessageIdName
                ):
                    self.printf_messages.append(msg)
                    return
                seen[ident] = seen.get(ident, 0) + 1
                if severity >= 0x1000:
                    _vk.validation_counts["error"] += 1
                    # Every error is raised; repeats of the same message id are not re-logged.
                    _vk.record_validation(severity, msg)
                    if seen[ident] <= 3:
                        vlog.error(msg)
                elif severity >= 0x100:
                    _vk.validation_counts["warning"] += 1
                    if seen[ident] <= 3:
                        vlog.warning(msg)
                else:
                    vlog.debug(msg)
            except Exception:  # never raise through C
                pass

        self._callback = callback
        info = _vk.new(
            "VkDebugUtilsMessengerCreateInfoEXT",
            {
                "sType": vk.VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
                "messageSeverity": 0x1 | 0x10 | 0x100 | 0x1000,
                "messageType": 0x1 | 0x2 | 0x4,
                "pfnUserCallback": callback,
            },
        )
        p = ffi.new("VkDebugUtilsMessengerEXT*")
        _vk.check(create(self.handle, info, ffi.NULL, p), "vkCreateDebugUtilsMessengerEXT")
        self._messenger = p[0]

    # -- physical devices ----------------------------------------------------------------

    def physical_devices(self) -> list[DeviceInfo]:
        """Every physical device, with properties and score (cached)."""
        if self._devices is None:
            ffi, lib = _vk.ffi, _vk.lib
            n = ffi.new("uint32_t*")
            _vk.check(
                lib.vkEnumeratePhysicalDevices(self.handle, n, ffi.NULL),
                "vkEnumeratePhysicalDevices",
                self.label,
            )
            arr = ffi.new("VkPhysicalDevice[]", n[0])
            _vk.check(
                lib.vkEnumeratePhysicalDevices(self.handle, n, arr),
                "vkEnumeratePhysicalDevices",
                self.label,
            )
            self._devices = [_describe(self, i, arr[i]) for i in range(n[0])]
        return self._devices

    def close(self) -> None:
        """Destroy the instance (only after every device is closed)."""
        self._finalizer()


def _destroy_instance(
    handle: Any, messenger: Any, lib: Any, ffi: Any, epoch: int, devices_alive: set[int]
) -> None:
    if epoch != _vk.epoch or devices_alive:  # forked, or a device still lives on it
        return
    try:
        if messenger is not None:
            fn = lib.vkGetInstanceProcAddr(handle, b"vkDestroyDebugUtilsMessengerEXT")
            if fn != ffi.NULL:
                ffi.cast("PFN_vkDestroyDebugUtilsMessengerEXT", fn)(handle, messenger, ffi.NULL)
        lib.vkDestroyInstance(handle, ffi.NULL)
    except Exception:  # pragma: no cover - never raise from cleanup
        log.exception("destroying the Vulkan instance failed")


def _describe(inst: Instance, index: int, pd: Any) -> DeviceInfo:
    ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
    keep = _vk.Keep()
    props = ffi.new("VkPhysicalDeviceProperties*")
    lib.vkGetPhysicalDeviceProperties(pd, props)
    p = props.limits
    dev_api = props.apiVersion
    use2 = inst.api_version >= _vk.make_version(1, 1) and dev_api >= _vk.make_version(1, 1)

    # Extensions
    n = ffi.new("uint32_t*")
    lib.vkEnumerateDeviceExtensionProperties(pd, ffi.NULL, n, ffi.NULL)
    ext_arr = ffi.new("VkExtensionProperties[]", n[0])
    lib.vkEnumerateDeviceExtensionProperties(pd, ffi.NULL, n, ext_arr)
    extensions = tuple(sorted(_vk.to_str(ext_arr[i].extensionName) for i in range(n[0])))

    subgroup_size = 0
    subgroup_ops: list[str] = []
    driver = ""
    driver_info = ""
    if use2:
        sub = keep(
            _vk.new(
                "VkPhysicalDeviceSubgroupProperties",
                {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES},
            )
        )
        chain = sub
        drv = None
        if dev_api >= _vk.make_version(1, 2) or "VK_KHR_driver_properties" in extensions:
            drv = keep(
                _vk.new(
                    "VkPhysicalDeviceDriverProperties",
                    {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES, "pNext": sub},
                )
            )
            chain = drv
        p2 = _vk.new(
            "VkPhysicalDeviceProperties2",
            {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, "pNext": chain},
        )
        lib.vkGetPhysicalDeviceProperties2(pd, p2)
        subgroup_size = sub.subgroupSize
        subgroup_ops = _flag_names(sub.supportedOperations, _SUBGROUP_OPS)
        if drv is not None:
            driver = _vk.to_str(drv.driverName)
            driver_info = _vk.to_str(drv.driverInfo)

    # Memory
    mem = ffi.new("VkPhysicalDeviceMemoryProperties*")
    lib.vkGetPhysicalDeviceMemoryProperties(pd, mem)
    heaps = tuple(
        MemoryHeap(i, int(mem.memoryHeaps[i].size), bool(mem.memoryHeaps[i].flags & 0x1))
        for i in range(mem.memoryHeapCount)
    )
    types = tuple(
        MemoryType(i, mem.memoryTypes[i].heapIndex, mem.memoryTypes[i].propertyFlags)
        for i in range(mem.memoryTypeCount)
    )
    device_local = sum(h.size for h in heaps if h.device_local)

    # Queues
    qn = ffi.new("uint32_t*")
    lib.vkGetPhysicalDeviceQueueFamilyProperties(pd, qn, ffi.NULL)
    qarr = ffi.new("VkQueueFamilyProperties[]", qn[0])
    lib.vkGetPhysicalDeviceQueueFamilyProperties(pd, qn, qarr)
    queues = tuple(
        QueueFamily(i, qarr[i].queueFlags, qarr[i].queueCount, qarr[i].timestampValidBits)
        for i in range(qn[0])
    )

    # Features
    feats: dict[str, bool] = {}
    f2, f11, f12, _ = _vk.query_features(pd, min(dev_api, inst.api_version))
    f = f2.features
    feats["float64"] = bool(f.shaderFloat64)
    feats["int64"] = bool(f.shaderInt64)
    feats["int16"] = bool(f.shaderInt16)
    if f12 is not None:
        feats["float16"] = bool(f12.shaderFloat16)
        feats["int8"] = bool(f12.shaderInt8)
        feats["storage_8bit"] = bool(f12.storageBuffer8BitAccess)
        feats["storage_16bit"] = bool(f11.storageBuffer16BitAccess)
        feats["buffer_device_address"] = bool(f12.bufferDeviceAddress)
        feats["atomic_int64"] = bool(f12.shaderBufferInt64Atomics)
    else:
        for k in (
            "float16",
            "int8",
            "storage_8bit",
            "storage_16bit",
            "buffer_device_address",
            "atomic_int64",
        ):
            feats[k] = False
    feats["atomic_float"] = "VK_EXT_shader_atomic_float" in extensions

    compute_q = [q for q in queues if q.flags & 0x2]
    ts_bits = compute_q[0].timestamp_valid_bits if compute_q else 0
    limits = {
        "max_workgroup_size": tuple(p.maxComputeWorkGroupSize[i] for i in range(3)),
        "max_workgroup_count": tuple(p.maxComputeWorkGroupCount[i] for i in range(3)),
        "max_workgroup_invocations": p.maxComputeWorkGroupInvocations,
        "max_shared_memory": p.maxComputeSharedMemorySize,
        "max_storage_buffer_range": p.maxStorageBufferRange,
        "max_uniform_buffer_range": p.maxUniformBufferRange,
        "max_push_constants_size": p.maxPushConstantsSize,
        "max_bound_descriptor_sets": p.maxBoundDescriptorSets,
        "max_image_dimension_1d": p.maxImageDimension1D,
        "max_image_dimension_2d": p.maxImageDimension2D,
        "max_image_dimension_3d": p.maxImageDimension3D,
        "max_image_dimension_cube": p.maxImageDimensionCube,
        "max_image_array_layers": p.maxImageArrayLayers,
        "max_texel_buffer_elements": p.maxTexelBufferElements,
        "max_memory_allocation_count": p.maxMemoryAllocationCount,
        "min_storage_buffer_offset_alignment": p.minStorageBufferOffsetAlignment,
        "min_uniform_buffer_offset_alignment": p.minUniformBufferOffsetAlignment,
        "non_coherent_atom_size": p.nonCoherentAtomSize,
        "subgroup_size": subgroup_size,
        "subgroup_operations": subgroup_ops,
        "timestamp_compute_and_graphics": bool(p.timestampComputeAndGraphics),
        "timestamp_period_ns": float(p.timestampPeriod),
        "timestamp_valid_bits": ts_bits,
    }
    type_name = TYPE_NAMES.get(props.deviceType, "other")
    parts = {"type": TYPE_BONUS.get(type_name, 0), "memory": int(device_local // GiB)}
    return DeviceInfo(
        index=index,
        name=_vk.to_str(props.deviceName),
        type=type_name,
        vendor_id=props.vendorID,
        vendor=VENDORS.get(props.vendorID, f"0x{props.vendorID:04x}"),
        device_id=props.deviceID,
        driver=driver or "unknown",
        driver_info=driver_info,
        driver_version=props.driverVersion,
        api_version=_vk.version_str(dev_api),
        score=parts["type"] + parts["memory"],
        score_parts=parts,
        total_memory=device_local,
        limits=limits,
        heaps=heaps,
        memory_types=types,
        queue_families=queues,
        extensions=extensions,
        features=feats,
        pipeline_cache_uuid=bytes(ffi.buffer(props.pipelineCacheUUID, 16)),
        handle=pd,
    )


_instance: Instance | None = None
_instance_lock = threading.Lock()


def validation_enabled() -> bool:
    """Whether ``VKNB_VALIDATION`` asks for the validation layer."""
    return bool(config.get("VKNB_VALIDATION"))


_PRINTF_PARTS = re.compile(
    r"Global invocation ID \(x, y, z\) = "
    r"\((?P<inv>[^)]*)\)\s?(?P<text>.*?)(?:\s*Unable to find SPIR-V OpLine.*)?$",
    re.S,
)
_PRINTF_PIPELINE = re.compile(r"Pipeline \((?P<pipe>[^)]*)\)")


def _printf_text(message: str) -> str:
    """A debug-printf message of the layer as ``[kernel (x, y, z)] what it printed``."""
    body = message.rsplit(" | ", 1)[-1]
    m = _PRINTF_PARTS.search(body)
    if m is None:
        return body
    inv = ", ".join(p.strip() for p in m.group("inv").split(","))
    pm = _PRINTF_PIPELINE.search(body)
    pipe = pm.group("pipe") if pm else None
    return f"[{pipe + ' ' if pipe else ''}({inv})] {m.group('text').rstrip()}"


@contextlib.contextmanager
def _printf_settings() -> Iterator[None]:
    """Have the validation layer report each debugPrintfEXT line with its invocation (its
    ``printf_verbose`` setting), unless the user gives the layer settings of their own."""
    if os.environ.get("VK_LAYER_SETTINGS_PATH"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="vknb-layer-") as d:
        with open(os.path.join(d, "vk_layer_settings.txt"), "w") as f:
            f.write("khronos_validation.printf_verbose = true\n")
            f.write("khronos_validation.printf_to_stdout = false\n")
            f.write(f"khronos_validation.printf_buffer_size = {_PRINTF_BUFFER}\n")
        os.environ["VK_LAYER_SETTINGS_PATH"] = d
        try:
            yield
        finally:
            os.environ.pop("VK_LAYER_SETTINGS_PATH", None)


def printf_instance() -> Instance:
    """The instance for kernels that call ``debugPrintfEXT``: the session's own when it has the
    validation layer on (``VKNB_VALIDATION=1``: printf is then enabled with it), else a second
    process-wide instance with only the layer's debug-printf feature (made on first use)."""
    global _printf_instance
    main = get_instance()
    if main.printf:
        return main
    with _instance_lock:
        if _printf_instance is None or _printf_instance.epoch != _vk.epoch:
            _printf_instance = Instance(False, printf=True)
        return _printf_instance


_printf_instance: Instance | None = None


def current_instance() -> Instance | None:
    """The process-wide instance if it has been created, else None (never creates it)."""
    return _instance


def replace_instance() -> Instance:
    """A fresh process-wide instance; the old one is left to the devices that still use it.

    What ``vknb.reset()`` does after a device was lost: some drivers (lavapipe) run a device's
    work on threads shared by its instance, so an abandoned runaway kernel would slow every
    later device of that instance.
    """
    global _instance
    with _instance_lock:
        v = validation_enabled()
        _instance = Instance(v, printf=v and _has_printf_layer())
        return _instance


def get_instance() -> Instance:
    """The process-wide instance, created on first use (thread-safe)."""
    global _instance
    inst = _instance
    if inst is not None and inst.epoch == _vk.epoch:
        return inst
    if _vk.forked_mid_creation:  # its lock may be held by a thread the child does not have
        raise _vk.fork_error("vknb's Vulkan instance (being made when the process forked)")
    with _instance_lock:
        if _instance is None:
            v = validation_enabled()
            _instance = Instance(v, printf=v and _has_printf_layer())
        elif _instance.epoch != _vk.epoch:
            raise _vk.fork_error("vknb's Vulkan instance")
        return _instance


def devices() -> list[DeviceInfo]:
    """List every Vulkan physical device with its properties and score.

    Returns
    -------
    list of DeviceInfo
        ``index, name, type ('discrete'|'integrated'|'virtual'|'cpu'|'other'), score,
        score_parts, total_memory, api_version, driver, limits, heaps, ...``

    Example
    -------
    >>> import vknb
    >>> best = max(vknb.devices(), key=lambda d: d.score)
    >>> best.score == best.score_parts["type"] + best.score_parts["memory"]
    True
    """
    return list(get_instance().physical_devices())


def select_device_index(infos: list[DeviceInfo], spec: str | None = None) -> tuple[int, str]:
    """Pick the session device: ``(index, reason)``.

    ``spec`` (default ``$VKNB_DEVICE``) is an index or a case-insensitive name substring.
    """
    if not infos:
        raise E.NoDeviceFound(
            "No Vulkan device found. Install a driver: `apt-get install mesa-vulkan-drivers` "
            "gives lavapipe (CPU) where there is no GPU."
        )
    spec = os.environ.get("VKNB_DEVICE") if spec is None else spec
    if spec is not None and spec.strip() != "":
        s = spec.strip()
        if s.isdigit():
            i = int(s)
            if i >= len(infos):
                raise E.NoDeviceFound(
                    f"VKNB_DEVICE={s}, but there are only {len(infos)} devices: "
                    + ", ".join(f"{d.index}: {d.name}" for d in infos)
                )
            return i, f"VKNB_DEVICE={s}"
        matches = [d for d in infos if s.lower() in d.name.lower()]
        if not matches:
            raise E.NoDeviceFound(
                f"VKNB_DEVICE={s!r} matches no device name; devices are: "
                + ", ".join(f"{d.index}: {d.name}" for d in infos)
            )
        return matches[0].index, f"VKNB_DEVICE={s!r}"
    best = max(infos, key=lambda d: (d.score, -d.index))
    parts = best.score_parts
    return best.index, (
        f"highest score {best.score} ({best.type} +{parts['type']}, "
        f"{parts['memory']} GiB device-local +{parts['memory']})"
    )
