"""The vknb exception hierarchy.

Every error that vknb raises on purpose is a :class:`VulkanError` (or, for argument mistakes,
a plain :class:`TypeError` / :class:`ValueError`).  Errors that come from a Vulkan call carry the
name of the function, the label of the object it was called for and the result code, and chain
the binding's own exception.

Example
-------
>>> import vknb
>>> try:
...     vknb.compile("void main() { undeclared = 1; }")
... except vknb.ShaderCompileError as e:
...     print(e.diagnostics[0][:3])
(1, ..., 'error')
"""

from __future__ import annotations

__all__ = [
    "RESULT_NAMES",
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
    "result_name",
]

# VkResult values -> names (the ones a compute runtime meets; others print as numbers).
RESULT_NAMES: dict[int, str] = {
    0: "VK_SUCCESS",
    1: "VK_NOT_READY",
    2: "VK_TIMEOUT",
    3: "VK_EVENT_SET",
    4: "VK_EVENT_RESET",
    5: "VK_INCOMPLETE",
    -1: "VK_ERROR_OUT_OF_HOST_MEMORY",
    -2: "VK_ERROR_OUT_OF_DEVICE_MEMORY",
    -3: "VK_ERROR_INITIALIZATION_FAILED",
    -4: "VK_ERROR_DEVICE_LOST",
    -5: "VK_ERROR_MEMORY_MAP_FAILED",
    -6: "VK_ERROR_LAYER_NOT_PRESENT",
    -7: "VK_ERROR_EXTENSION_NOT_PRESENT",
    -8: "VK_ERROR_FEATURE_NOT_PRESENT",
    -9: "VK_ERROR_INCOMPATIBLE_DRIVER",
    -10: "VK_ERROR_TOO_MANY_OBJECTS",
    -11: "VK_ERROR_FORMAT_NOT_SUPPORTED",
    -12: "VK_ERROR_FRAGMENTED_POOL",
    -13: "VK_ERROR_UNKNOWN",
    -1000069000: "VK_ERROR_OUT_OF_POOL_MEMORY",
    -1000072003: "VK_ERROR_INVALID_EXTERNAL_HANDLE",
    -1000161000: "VK_ERROR_FRAGMENTATION",
    -1000257000: "VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS",
    -1000012000: "VK_ERROR_INVALID_SHADER_NV",
    1000297000: "VK_PIPELINE_COMPILE_REQUIRED",
}


def result_name(code: int) -> str:
    """Return the symbolic name of a ``VkResult`` code (``-2``: out of device memory).

    Example
    -------
    >>> result_name(-4)
    'VK_ERROR_DEVICE_LOST'
    """
    return RESULT_NAMES.get(code, f"VkResult({code})")


class VulkanError(Exception):
    """Base of every vknb error.

    Attributes
    ----------
    function : str or None
        The Vulkan function that failed (``"vkCreateBuffer"``), when one did.
    label : str or None
        The label of the vknb object the call was made for.
    result : int or None
        The ``VkResult`` code, when the error came from the driver.
    """

    def __init__(
        self,
        message: str,
        *,
        function: str | None = None,
        label: str | None = None,
        result: int | None = None,
    ) -> None:
        super().__init__(message)
        self.function = function
        self.label = label
        self.result = result

    @property
    def result_name(self) -> str | None:
        """Symbolic name of :attr:`result`, or None."""
        return None if self.result is None else result_name(self.result)


class NotAvailable(VulkanError):
    """Vulkan itself (the loader or any driver) cannot be found on this machine."""


class NoDeviceFound(VulkanError):
    """No physical device (or none matching ``VKNB_DEVICE``) exists."""


class NoComputeQueue(VulkanError):
    """The physical device has no queue family with compute support."""


class InitializationFailed(VulkanError):
    """Creating the Vulkan instance (or another one-time set-up step) failed."""


class DeviceCreationFailed(VulkanError):
    """Creating the logical device failed."""


class AllocationFailed(VulkanError):
    """Device or host memory could not be allocated."""


class BufferFailed(VulkanError):
    """A buffer could not be created or used (named so as not to shadow the builtin BufferError)."""


class BufferTooSmall(BufferFailed):
    """A buffer (or array) is smaller than an operation needs."""


class NotMapped(BufferFailed):
    """Host access to memory that is not (or no longer) mapped."""


class PipelineCreationFailed(VulkanError):
    """The driver rejected a shader module or compute pipeline."""


class ShaderCompileError(VulkanError):
    """GLSL failed to compile.

    Attributes
    ----------
    diagnostics : list of (line, column, severity, message)
        In the user's own line numbers (1-based; column 0 when the compiler gave none).
    source : str
        The source as the user wrote it.
    command : list of str
        The compiler command line (for reproducing the error in a terminal).
    """

    def __init__(
        self,
        message: str,
        *,
        diagnostics: list[tuple[int, int, str, str]] | None = None,
        source: str = "",
        command: list[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(message, label=name)
        self.diagnostics = list(diagnostics or [])
        self.source = source
        self.command = list(command or [])
        self.name = name


# The seed's name for the same thing; kept as an alias so both spellings work.
SpirvCompilationFailed = ShaderCompileError


class SpirvError(VulkanError, ValueError):
    """A SPIR-V module is malformed or uses something reflection does not understand."""


class ExecutionFailed(VulkanError):
    """A submission failed or did not finish in time."""


class CommandBufferError(VulkanError):
    """Recording or submitting a command buffer failed."""


class SyncError(VulkanError):
    """Waiting on a fence or another synchronization primitive failed."""


class DeviceLost(ExecutionFailed):
    """The driver reported VK_ERROR_DEVICE_LOST: call ``vknb.reset()`` for a fresh device."""


class ValidationError(VulkanError):
    """The Khronos validation layer reported an error for a call made by vknb."""


class ObjectClosed(VulkanError):
    """An object was used after ``close()`` (or after its device was closed)."""
