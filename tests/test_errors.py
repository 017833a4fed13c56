"""The errors module: the exception classes, ``VkResult`` names, and the class that
``_vk.check`` raises for each result and function.
"""

from __future__ import annotations

import builtins
import inspect

import pytest

import vknb
from vknb import _vk
from vknb import errors as E


def test_every_error_is_a_vulkan_error():
    classes = [getattr(E, n) for n in E.__all__ if inspect.isclass(getattr(E, n))]
    assert len(classes) >= 19
    for cls in classes:
        assert issubclass(cls, vknb.VulkanError), cls
        assert getattr(vknb, cls.__name__) is cls  # exported at the top level
        assert cls.__name__ not in dir(builtins), f"{cls.__name__} shadows a builtin"
    assert issubclass(vknb.DeviceLost, vknb.ExecutionFailed)
    assert issubclass(vknb.NotMapped, vknb.BufferFailed)
    assert issubclass(vknb.SpirvError, ValueError)
    assert vknb.SpirvCompilationFailed is vknb.ShaderCompileError


def test_result_names():
    assert E.result_name(0) == "VK_SUCCESS"
    assert E.result_name(-2) == "VK_ERROR_OUT_OF_DEVICE_MEMORY"
    assert E.result_name(-4) == "VK_ERROR_DEVICE_LOST"
    assert E.result_name(2) == "VK_TIMEOUT"
    assert E.result_name(-1000069000) == "VK_ERROR_OUT_OF_POOL_MEMORY"
    assert E.result_name(12345) == "VkResult(12345)"
    err = vknb.VulkanError("x", function="vkFoo", label="L", result=-3)
    assert err.result_name == "VK_ERROR_INITIALIZATION_FAILED"
    assert vknb.VulkanError("x").result_name is None


@pytest.mark.parametrize(
    ("result", "function", "cls"),
    [
        (-2, "vkAllocateMemory", vknb.AllocationFailed),
        (-1, "vkCreateBuffer", vknb.AllocationFailed),
        (-3, "vkCreateBuffer", vknb.BufferFailed),
        (-4, "vkQueueSubmit", vknb.DeviceLost),
        (-4, "vkWaitForFences", vknb.DeviceLost),
        (-2, "vkQueueSubmit", vknb.ExecutionFailed),
        (-3, "vkCreateInstance", vknb.InitializationFailed),
        (-3, "vkCreateDevice", vknb.DeviceCreationFailed),
        (-13, "vkCreateComputePipelines", vknb.PipelineCreationFailed),
        (-1, "vkCreateShaderModule", vknb.PipelineCreationFailed),
        (-5, "vkMapMemory", vknb.NotMapped),
        (-1, "vkWaitForFences", vknb.SyncError),
        (-1, "vkBeginCommandBuffer", vknb.CommandBufferError),
        (-3, "vkSomethingElse", vknb.VulkanError),
    ],
)
def test_check_raises_the_right_class(result, function, cls):
    _vk.load()
    with pytest.raises(vknb.VulkanError) as ei:
        _vk.check(result, function, "my-label", "some detail")
    e = ei.value
    assert type(e) is cls
    assert (e.function, e.label, e.result) == (function, "my-label", result)
    msg = str(e)
    assert function in msg and "my-label" in msg and E.result_name(result) in msg
    assert "some detail" in msg
    if result == -2:
        assert "free Arrays" in msg  # says what to do next
    if result == -4:
        assert "vknb.reset()" in msg


@pytest.mark.parametrize("result", [0, 1, 2, 3, 5])
def test_check_returns_non_errors(result):
    assert _vk.check(result, "vkWaitForFences", "x") == result
    assert _vk.NOT_READY == 1 and _vk.TIMEOUT == 2 and _vk.INCOMPLETE == 5
