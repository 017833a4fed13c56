"""Shared fixtures: a private cache directory, the device fixtures, the leak check.

Plain helpers (``settle``, subprocess runners, shader sources) are in helpers.py and
spirv_damage.py, imported as ``from helpers import ...``.

Tests run on the real Vulkan driver (lavapipe on CI).  Where Vulkan or the compiler is missing,
tests fail with the reason; they never skip in CI (``CI=true``).
"""

from __future__ import annotations

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

from helpers import settle  # noqa: E402
from spirv_damage import RICH  # noqa: E402

import vknb  # noqa: E402


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


@pytest.fixture(scope="module")
def rich_spirv() -> bytes:
    """A module with most kinds of declarations, unoptimized (names kept), to damage."""
    return vknb.compile_glsl(RICH, name="rich", optimize=False)
