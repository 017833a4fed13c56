"""The one module that talks to the ``vulkan`` cffi binding.

vknb calls the binding's raw cffi functions (``vulkan.lib``) rather than its Python wrappers: the
wrappers cost microseconds per call, drop the result code into bare exception classes and build
structs that can be collected before the call returns.  Everything goes through :func:`check`,
which turns a negative ``VkResult`` into a :class:`~vknb.errors.VulkanError` subclass naming the
function, the object's label and the result code.

Structs are built with :func:`new` (``ffi.new("VkXxx*", {...})``); whatever a struct points to
must be kept referenced by the caller until the call returns (see :class:`Keep`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from .. import errors as E
from . import constants as C
from .interrupts import deferred_interrupt, held_in_callback, rearming  # noqa: F401

_lock = threading.Lock()
_mod: Any = None

# Filled by :func:`load`.
ffi: Any = None
lib: Any = None
vk: Any = None  # the `vulkan` module, for its constants

# Result codes that are outcomes, not failures (STYLE 9).
SUCCESS = 0
NOT_READY = 1
TIMEOUT = 2
INCOMPLETE = 5

WHOLE_SIZE = (1 << 64) - 1

# --- processes ------------------------------------------------------------------------------
#
# Vulkan objects do not survive ``os.fork()``: the child has a copy of the driver's memory but
# none of its threads, and its device memory mappings are not the parent's GPU memory.  Every
# object records the epoch it was made in; a forked child bumps the epoch, so that its first use
# of an inherited object raises :func:`fork_error` and that cleanup never calls into the driver.

epoch = 0
_parent_pid = os.getpid()
# Threads of this process making the session device in the background now (core.session's
# prewarm); a child forked meanwhile inherits that thread's locks, held for ever, and the
# driver's half-made state: it refuses every Vulkan use at once (forked_mid_creation).
background_creation = 0
forked_mid_creation = False


def _after_fork_in_child() -> None:
    global epoch, forked_mid_creation
    epoch += 1
    if background_creation:
        forked_mid_creation = True
    if lib is not None:  # the parent loaded the driver: its exit code must not run here
        exit_past_the_driver()


# --- process exit ---------------------------------------------------------------------------
#
# After Python's own finalization, the C library's exit() runs the handlers that the loaded
# libraries registered, the Vulkan driver's among them.  NVIDIA's waits there for a device whose
# kernel never ends (a runaway kernel that VKNB_TIMEOUT_S gave up on: the process never exits)
# and crashes in a forked child, which has the parent's driver state but none of its threads
# (SIGSEGV as the child exits, even a child that never used vknb).  Where that can happen, vknb
# ends exit() with _exit(status) instead: glibc's on_exit passes the exit status to its
# handlers, and handlers run latest first, so _exit runs before every handler the driver
# registered when it was loaded.  Python's finalization (atexit, flushing files) is over by then;
# the kernel frees the GPU's resources as for any process that ends.

_exit_past_driver = False
_exit_hook: list[Any] = []  # [(on_exit, the address of _exit) or None], resolved by load()


def _resolve_exit_hook() -> tuple[Any, Any] | None:
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        on_exit = libc.on_exit
        end = ctypes.cast(libc._exit, ctypes.c_void_p)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    on_exit.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    on_exit.restype = ctypes.c_int
    return on_exit, end


def exit_past_the_driver() -> bool:
    """Make this process's exit end with ``_exit(status)`` once Python has finalized, skipping
    the driver's exit handlers (see above).  Idempotent; False where the C library lacks
    ``on_exit`` (not glibc).  The functions are looked up when the driver is loaded, so that a
    forked child only makes the call (a lookup there could wait for ever on a loader lock that
    another thread of the parent held at the fork).

    Example
    -------
    >>> exit_past_the_driver()  # doctest: +SKIP
    True
    """
    global _exit_past_driver
    if _exit_past_driver:
        return True
    hook = _exit_hook[0] if _exit_hook else _resolve_exit_hook()
    if hook is None:  # pragma: no cover - not glibc
        return False
    on_exit, end = hook
    if on_exit(end, None) != 0:  # pragma: no cover - out of memory
        return False
    _exit_past_driver = True
    return True


os.register_at_fork(after_in_child=_after_fork_in_child)


def submitted_serial(exc: BaseException) -> int | None:
    """The serial of the submission that ``exc`` (a Ctrl-C) interrupted just after it reached
    the queue (``Device.queue_submit`` tags it), or None where nothing was submitted.

    Example
    -------
    >>> submitted_serial(KeyboardInterrupt()) is None
    True
    """
    return getattr(exc, "vknb_submitted", None)


def fork_error(what: str) -> E.VulkanError:
    """The error for using, in a forked child, ``what`` made by the parent before the fork."""
    return E.VulkanError(
        f"{what} was set up in process {_parent_pid} before os.fork(); Vulkan objects cannot be "
        "used in a forked child. Start worker processes with the 'spawn' (or 'forkserver') "
        "method: multiprocessing.get_context('spawn'), or concurrent.futures.ProcessPoolExecutor("
        "mp_context=multiprocessing.get_context('spawn')); Dask's distributed workers already do."
    )


def load() -> Any:
    """Import the binding and dlopen the Vulkan loader once; raise NotAvailable with a fix."""
    global _mod, ffi, lib, vk
    if _mod is not None:
        return _mod
    with _lock:
        if _mod is not None:
            return _mod
        try:
            import vulkan as mod
        except OSError as e:
            raise E.NotAvailable(
                "The Vulkan loader (libvulkan.so.1) was not found. Install it and a driver: "
                "`apt-get install libvulkan1 mesa-vulkan-drivers` (mesa-vulkan-drivers provides "
                "lavapipe, a CPU driver, where there is no GPU)."
            ) from e
        except ImportError as e:  # pragma: no cover - a broken install
            raise E.NotAvailable(
                "The Python package `vulkan` is missing: `pip install vulkan`."
            ) from e
        ffi, lib, vk = mod.ffi, mod.lib, mod
        _exit_hook[:] = [_resolve_exit_hook()]  # here: a forked child must not dlsym
        _mod = mod
    return _mod


# --- errors ---------------------------------------------------------------------------------

# Which error class a failed function raises, when its result code does not say more.
_FUNCTION_ERRORS: dict[str, type[E.VulkanError]] = {
    "vkCreateInstance": E.InitializationFailed,
    "vkEnumeratePhysicalDevices": E.InitializationFailed,
    "vkCreateDevice": E.DeviceCreationFailed,
    "vkAllocateMemory": E.AllocationFailed,
    "vkCreateBuffer": E.BufferFailed,
    "vkBindBufferMemory": E.BufferFailed,
    "vkMapMemory": E.NotMapped,
    "vkCreateShaderModule": E.PipelineCreationFailed,
    "vkCreateComputePipelines": E.PipelineCreationFailed,
    "vkCreatePipelineLayout": E.PipelineCreationFailed,
    "vkCreateDescriptorSetLayout": E.PipelineCreationFailed,
    "vkCreatePipelineCache": E.PipelineCreationFailed,
    "vkQueueSubmit": E.ExecutionFailed,
    "vkWaitForFences": E.SyncError,
    "vkResetFences": E.SyncError,
    "vkCreateFence": E.SyncError,
    "vkDeviceWaitIdle": E.SyncError,
    "vkBeginCommandBuffer": E.CommandBufferError,
    "vkEndCommandBuffer": E.CommandBufferError,
    "vkAllocateCommandBuffers": E.CommandBufferError,
    "vkResetCommandBuffer": E.CommandBufferError,
    "vkCreateCommandPool": E.CommandBufferError,
}

_HINTS = {
    -1: "the host is out of memory",
    -2: "the device is out of memory: free Arrays you no longer need (del / .close())",
    -4: "the device was lost (a fault or a timeout in a kernel): call vknb.reset()",
    -7: "the driver lacks a required extension",
    -9: "no compatible Vulkan driver: `apt-get install mesa-vulkan-drivers` for lavapipe",
}


def error_for(
    result: int, function: str, label: str | None = None, detail: str = ""
) -> E.VulkanError:
    """Build (not raise) the exception for a failed call."""
    name = E.result_name(result)
    cls: type[E.VulkanError]
    if result == -4:
        cls = E.DeviceLost
    elif result in (-1, -2) and function in ("vkAllocateMemory", "vkCreateBuffer"):
        cls = E.AllocationFailed
    else:
        cls = _FUNCTION_ERRORS.get(function, E.VulkanError)
    where = f" for {label}" if label else ""
    msg = f"{function}{where} failed with {name}"
    hint = _HINTS.get(result)
    if detail:
        msg += f": {detail}"
    if hint:
        msg += f" ({hint})"
    return cls(msg, function=function, label=label, result=result)


def check(result: int, function: str, label: str | None = None, detail: str = "") -> int:
    """Raise for a negative ``VkResult``; return non-negative results (TIMEOUT, NOT_READY...).

    Also raises a pending validation error recorded during the call (VKNB_VALIDATION=1).
    """
    if result < 0:
        raise error_for(result, function, label, detail)
    if _validation_pending:
        raise_validation(function, label)
    return result


def after_void(function: str, label: str | None = None) -> None:
    """For calls that return void: surface any validation error they caused."""
    if _validation_pending:
        raise_validation(function, label)


def record_validation(severity: int, message: str) -> None:
    """Called by the debug messenger: raise ``message`` at the next checked call."""
    _validation_pending.append((severity, message))


def validation_pending() -> bool:
    """Whether the debug messenger recorded a validation message not yet raised."""
    return bool(_validation_pending)


# --- validation messages, filled by the instance's debug messenger ---------------------------

_validation_pending: list[tuple[int, str]] = []
validation_counts: dict[str, int] = {"error": 0, "warning": 0}


def raise_validation(function: str, label: str | None) -> None:
    import warnings

    pending = list(_validation_pending)
    _validation_pending.clear()
    errors_ = [m for sev, m in pending if sev >= 0x1000]
    for sev, m in pending:
        if sev < 0x1000:
            warnings.warn(f"Vulkan validation ({function}): {m}", RuntimeWarning, stacklevel=3)
    if errors_:
        where = f" for {label}" if label else ""
        raise E.ValidationError(
            f"validation error in {function}{where}: {errors_[0]}"
            + (f" (+{len(errors_) - 1} more)" if len(errors_) > 1 else ""),
            function=function,
            label=label,
        )


# --- struct helpers -------------------------------------------------------------------------


def new(ctype: str, init: dict[str, Any] | None = None) -> Any:
    """``ffi.new("ctype*", init)``: a pointer to a zero-initialised struct."""
    return ffi.new(ctype + "*", init) if init is not None else ffi.new(ctype + "*")


class Keep(list):
    """Holds cdata that a struct points to until the call that reads it returns."""

    def __call__(self, obj: Any) -> Any:
        self.append(obj)
        return obj


def query_features(physical_device: Any, api: int) -> tuple[Any, Any, Any, Any]:
    """The device's features as the driver reports them: ``(features2, f11, f12, f13)``.

    ``features2`` is a ``VkPhysicalDeviceFeatures2*`` whose ``pNext`` chains the Vulkan 1.3,
    1.2 and 1.1 feature structs where ``api`` (the version both instance and device support)
    has them; an absent struct is None.  The caller keeps all four alive while the chain is
    used (it can be handed to ``vkCreateDevice`` as is).
    """
    f11 = f12 = f13 = None
    chain = ffi.NULL
    if api >= make_version(1, 2):
        f11 = new(
            "VkPhysicalDeviceVulkan11Features",
            {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES},
        )
        f12 = new(
            "VkPhysicalDeviceVulkan12Features",
            {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, "pNext": f11},
        )
        chain = f12
        if api >= make_version(1, 3):
            f13 = new(
                "VkPhysicalDeviceVulkan13Features",
                {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, "pNext": f12},
            )
            chain = f13
    feats2 = new(
        "VkPhysicalDeviceFeatures2",
        {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, "pNext": chain},
    )
    if api >= make_version(1, 1):
        lib.vkGetPhysicalDeviceFeatures2(physical_device, feats2)
    else:
        lib.vkGetPhysicalDeviceFeatures(physical_device, ffi.addressof(feats2.features))
    return feats2, f11, f12, f13


def create(
    function: str,
    device: Any,
    info: Any,
    handle_type: str,
    label: str | None,
    keep: Callable[[Any], None],
) -> Any:
    """Call ``vkCreateXxx(device, info, NULL, &handle)``; return the handle.

    ``keep(handle)`` records the new handle with its owner *before* the result is checked, so
    that a validation error raised for a call that did create the object cannot leak it; a
    Ctrl-C is held back until it has (Python cannot stop the driver's call anyway: it would
    be raised as the call returns, or as ``keep`` starts, with the handle recorded nowhere).
    """
    p = ffi.new(handle_type + "*")
    with deferred_interrupt():
        res = getattr(lib, function)(device, info, ffi.NULL, p)
        if res == 0:
            keep(p[0])
    check(res, function, label)
    return p[0]


def cstr(s: str) -> Any:
    return ffi.new("char[]", s.encode())


def to_str(c: Any) -> str:
    return ffi.string(c).decode(errors="replace")


def instance_proc(instance: Any, name: str) -> Any:
    """An instance-level extension function, or None where the loader has none."""
    fn = lib.vkGetInstanceProcAddr(instance, name.encode())
    if fn == ffi.NULL:
        return None
    return ffi.cast("PFN_" + name, fn)


def device_proc(device: Any, name: str) -> Any:
    """A device-level extension function resolved for ``device``, or None."""
    fn = lib.vkGetDeviceProcAddr(device, name.encode())
    if fn == ffi.NULL:
        return None
    return ffi.cast("PFN_" + name, fn)


def version_str(v: int) -> str:
    return f"{(v >> 22) & 0x7F}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


def make_version(major: int, minor: int, patch: int = 0) -> int:
    return (major << 22) | (minor << 12) | patch


# --- debug names (with VKNB_VALIDATION=1, validation messages then name vknb's objects) -------

_set_name_fn: Any = None

OBJECT_BUFFER = C.OBJECT_TYPE_BUFFER
OBJECT_PIPELINE = C.OBJECT_TYPE_PIPELINE


def enable_debug_names(instance: Any) -> None:
    """Resolve vkSetDebugUtilsObjectNameEXT (only when the debug-utils extension is on)."""
    global _set_name_fn
    _set_name_fn = instance_proc(instance, "vkSetDebugUtilsObjectNameEXT")


def set_name(device: Any, object_type: int, handle: Any, name: str) -> None:
    """Label a Vulkan object for validation messages (no-op without validation)."""
    if _set_name_fn is None:
        return
    cname = ffi.new("char[]", name.encode(errors="replace"))
    info = ffi.new(
        "VkDebugUtilsObjectNameInfoEXT*",
        {
            "sType": vk.VK_STRUCTURE_TYPE_DEBUG_UTILS_OBJECT_NAME_INFO_EXT,
            "objectType": object_type,
            "objectHandle": int(ffi.cast("uint64_t", handle)),
            "pObjectName": cname,
        },
    )
    _set_name_fn(device, info)
