"""Fixtures of the compute tests: the saxpy kernel that test_kernel, test_args and test_timing
call (one per test module, as before they were split)."""

from __future__ import annotations

import pytest
from helpers import SAXPY

import vknb


@pytest.fixture(scope="module")
def saxpy() -> vknb.Kernel:
    return vknb.compile(SAXPY, name="saxpy")
