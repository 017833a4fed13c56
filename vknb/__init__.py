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
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

from .config import VERSION as __version__
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

if TYPE_CHECKING:  # pragma: no cover - the names below load lazily at run time
    from .compute.batch import Batch, batch  # noqa: F401
    from .compute.kernel import BoundCall, Kernel, compile  # noqa: F401, A004
    from .compute.timing import DispatchRecord, clear_timings, timings  # noqa: F401
    from .core.array import Array, asarray, empty, zeros  # noqa: F401
    from .core.buffer import Buffer  # noqa: F401
    from .core.device import Device, Submission  # noqa: F401
    from .core.image import Image, Sampler, asimage, zeros_image  # noqa: F401
    from .core.instance import DeviceInfo, devices  # noqa: F401
    from .core.session import current_device, device, reset, synchronize, use  # noqa: F401
    from .shader.compiler import clear_cache, compile_glsl  # noqa: F401
    from .shader.spirv import Reflection, reflect  # noqa: F401

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "devices": "core.instance",
    "DeviceInfo": "core.instance",
    "Device": "core.device",
    "device": "core.session",
    "current_device": "core.session",
    "use": "core.session",
    "reset": "core.session",
    "synchronize": "core.session",
    "Submission": "core.device",
    "Buffer": "core.buffer",
    "Image": "core.image",
    "asimage": "core.image",
    "zeros_image": "core.image",
    "Sampler": "core.image",
    "Array": "core.array",
    "asarray": "core.array",
    "empty": "core.array",
    "zeros": "core.array",
    "compile_glsl": "shader.compiler",
    "clear_cache": "shader.compiler",
    "reflect": "shader.spirv",
    "Reflection": "shader.spirv",
    "compile": "compute.kernel",
    "Kernel": "compute.kernel",
    "BoundCall": "compute.kernel",
    "timings": "compute.timing",
    "clear_timings": "compute.timing",
    "DispatchRecord": "compute.timing",
    "Batch": "compute.batch",
    "batch": "compute.batch",
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


# Modules users reach into, at their short public paths (``vknb.widgets.TimingsView``): each is
# an alias of where it lives in the layered tree.  They import on first access.
_PUBLIC_MODULES = {
    "library": "library",
    "dask": "dask",
    "widgets": "ui.widgets",
    "display": "ui.display",
    "magics": "ui.magics",
    "cli": "ui.cli",
    "timing": "compute.timing",
    "compiler": "shader.compiler",
    "spirv": "shader.spirv",
    "config": "config",
    "errors": "errors",
}
# Module paths of the flat layout this package had before its layers; they still import, with a
# DeprecationWarning naming the new path.
_DEPRECATED_MODULES = {
    "instance": "core.instance",
    "memory": "core.memory",
    "_device": "core.device",
    "buffer": "core.buffer",
    "pipeline": "core.pipeline",
    "kernel": "compute.kernel",
    "batching": "compute.batch",
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import vknb.widgets`` (and the deprecated flat paths) load the layered module."""

    _specs: dict[str, Any] = {}  # noqa: RUF012 - alias -> the aliased module's own spec

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        head, _, leaf = fullname.partition(".")
        if head != __name__ or "." in leaf:
            return None
        target = _PUBLIC_MODULES.get(leaf) or _DEPRECATED_MODULES.get(leaf)
        if target is None or target == leaf:  # not an alias (a real module, or unknown)
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        leaf = spec.name.partition(".")[2]
        target = _PUBLIC_MODULES.get(leaf) or _DEPRECATED_MODULES[leaf]
        if leaf in _DEPRECATED_MODULES:
            import warnings

            warnings.warn(
                f"vknb.{leaf} is now vknb.{target}; the old path will be removed",
                DeprecationWarning,
                stacklevel=4,
            )
        module = importlib.import_module(f"{__name__}.{target}")
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        # The module already ran; the import machinery has just stamped the alias's spec on
        # it: give it back its own.
        for alias, real in list(self._specs.items()):
            if real.name == module.__name__:
                module.__spec__ = real
                del self._specs[alias]


sys.meta_path.insert(0, _AliasFinder())


def __getattr__(name: str) -> Any:
    if name in _PUBLIC_MODULES or name in _DEPRECATED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'vknb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_PUBLIC_MODULES))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext vknb``: register the ``%%glsl`` and ``%vknb`` magics (and nothing else)."""
    from .ui.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext vknb``."""
    from .ui.magics import unload_ipython_extension as _unload

    _unload(ipython)
