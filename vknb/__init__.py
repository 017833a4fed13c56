"""vknb: write and run Vulkan compute kernels from Jupyter, numpy in and out.

``import vknb`` is cheap: the Vulkan binding is loaded, the instance created and the session
device chosen only when first needed.

Example
-------
>>> import numpy as np, vknb
>>> k = vknb.compile('''
... layout(local_size_x = 64) in;
... layout(set = 0, binding = 0) buffer X { float x[]; };
... layout(set = 0, binding = 1) buffer Y { float y[]; };
... layout(push_constant) uniform P { float a; };
... void main() { uint i = gl_GlobalInvocationID.x; if (i < x.length()) y[i] += a * x[i]; }
... ''', name="saxpy")
>>> x = np.random.rand(1000).astype(np.float32); y = np.zeros_like(x)
>>> rec = k(x, y, a=2.0, grid=x.size)
>>> bool(np.allclose(y, 2 * x))
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AllocationFailed,
    BufferFailed,
    BufferTooSmall,
    CommandBufferError,
    DeviceCreationFailed,
    DeviceLost,
    ExecutionFailed,
    InitializationFailed,
    NoComputeQueue,
    NoDeviceFound,
    NotAvailable,
    NotMapped,
    ObjectClosed,
    PipelineCreationFailed,
    ShaderCompileError,
    SpirvCompilationFailed,
    SpirvError,
    SyncError,
    ValidationError,
    VulkanError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover - the names below load lazily at run time
    from ._device import Device, Submission, device, reset, synchronize, use  # noqa: F401
    from .batching import Batch, batch  # noqa: F401
    from .buffer import Array, Buffer, asarray, empty, zeros  # noqa: F401
    from .compiler import clear_cache, compile_glsl  # noqa: F401
    from .instance import DeviceInfo, devices  # noqa: F401
    from .kernel import BoundCall, Kernel, compile  # noqa: F401, A004
    from .spirv import Reflection, reflect  # noqa: F401
    from .timing import DispatchRecord, clear_timings, timings  # noqa: F401

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "devices": "instance",
    "DeviceInfo": "instance",
    "Device": "_device",
    "device": "_device",
    "use": "_device",
    "reset": "_device",
    "synchronize": "_device",
    "Submission": "_device",
    "Buffer": "buffer",
    "Array": "buffer",
    "asarray": "buffer",
    "empty": "buffer",
    "zeros": "buffer",
    "compile_glsl": "compiler",
    "clear_cache": "compiler",
    "reflect": "spirv",
    "Reflection": "spirv",
    "compile": "kernel",
    "Kernel": "kernel",
    "BoundCall": "kernel",
    "timings": "timing",
    "clear_timings": "timing",
    "DispatchRecord": "timing",
    "Batch": "batching",
    "batch": "batching",
}

__all__ = [
    "AllocationFailed",
    "BufferFailed",
    "BufferTooSmall",
    "CommandBufferError",
    "DeviceCreationFailed",
    "DeviceLost",
    "ExecutionFailed",
    "InitializationFailed",
    "NoComputeQueue",
    "NoDeviceFound",
    "NotAvailable",
    "NotMapped",
    "ObjectClosed",
    "PipelineCreationFailed",
    "ShaderCompileError",
    "SpirvCompilationFailed",
    "SpirvError",
    "SyncError",
    "ValidationError",
    "VulkanError",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
    *sorted(_LAZY),
]


# Submodules reachable as attributes without an explicit import (``vknb.widgets.TimingsView``).
_SUBMODULES = {
    "timing",
    "display",
    "widgets",
    "library",
    "compiler",
    "spirv",
    "magics",
    "cli",
    "instance",
    "memory",
    "buffer",
    "pipeline",
    "kernel",
    "batching",
    "errors",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'vknb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext vknb``: register the ``%%glsl`` and ``%vknb`` magics (and nothing else)."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext vknb``."""
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
