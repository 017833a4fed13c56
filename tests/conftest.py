"""Shared fixtures: a private cache directory, the device fixture, leak-check helpers.

Tests run on the real Vulkan driver (lavapipe on CI).  Where Vulkan or the compiler is missing,
tests fail with the reason; they never skip in CI (``CI=true``).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

# Every test session gets its own SPIR-V / pipeline cache so that tests never depend on (or
# pollute) the user's cache.  Set before vknb is imported anywhere.
_CACHE = tempfile.mkdtemp(prefix="vknb-test-cache-")
os.environ.setdefault("VKNB_CACHE_DIR", _CACHE)

import vknb  # noqa: E402

# A kernel whose GPU time grows with `iters` (the timing tests use it).
BUSY_SRC = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint iters; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= n) return;
    float s = y[i];
    for (uint j = 0u; j < iters; j++) s = s * 0.999 + 1.0;
    y[i] = s;
}
"""


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "gpu_only: needs a real GPU (never counted as a pass on CI)")


def pytest_sessionstart(session: Any) -> None:
    """Fail loudly (not skip) when a required component is missing."""
    missing = []
    for tool, pkg in (("glslc", "glslc"), ("spirv-cross", "spirv-cross")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {pkg})")
    try:
        vknb.devices()
    except vknb.VulkanError as e:
        missing.append(f"Vulkan: {e}")
    if missing:
        raise pytest.UsageError("vknb tests need: " + "; ".join(missing))


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)


def _device_filter() -> list[int]:
    """Indices of the devices to test: all, or those VKNB_TEST_DEVICES lists ("0,1")."""
    infos = vknb.devices()
    spec = os.environ.get("VKNB_TEST_DEVICES")
    if spec:
        return [int(s) for s in spec.split(",") if s.strip()]
    return [d.index for d in infos]


@pytest.fixture(scope="session")
def dev() -> vknb.Device:
    """The session device (what users get from vknb.device())."""
    return vknb.device()


@pytest.fixture(params=_device_filter(), ids=lambda i: f"dev{i}")
def any_device(request: Any) -> Iterator[vknb.Device]:
    """Each available physical device in turn, as its own logical device (closed after)."""
    d = vknb.Device(request.param)
    yield d
    d.close()


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh random generator, seeded by the test's name for reproducibility."""
    import zlib

    return np.random.default_rng(zlib.crc32(os.environ.get("PYTEST_CURRENT_TEST", "").encode()))


def settle() -> None:
    """Collect garbage so that finalizers run before counters are compared."""
    for _ in range(3):
        gc.collect()


@pytest.fixture
def no_leaks(dev: vknb.Device) -> Iterator[None]:
    """Check that the device's memory statistics return to where they were."""
    # The device's staging buffers are made on the first transfer and live as long as it: make
    # them before the baseline (on lavapipe no transfer needs them; on a GPU every one does).
    vknb.asarray(np.zeros(4, np.float32), device=dev).numpy()
    settle()
    dev.synchronize()
    dev.trim()  # freed large allocations kept for reuse are not leaks
    before = dev.memory_stats()
    yield
    settle()
    dev.synchronize()
    dev.trim()
    after = dev.memory_stats()
    assert (after.allocated, after.used, after.buffers, after.blocks) == (
        before.allocated,
        before.used,
        before.buffers,
        before.blocks,
    ), f"memory not back at baseline: before {before}, after {after}"
