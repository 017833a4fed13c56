"""The device CI runs on (lavapipe) has every feature whose absence makes a test take its
fallback or skip: if a CI image ever loses one, this fails loudly instead of the suite quietly
testing less.  On other devices it checks nothing beyond naming the device."""

from __future__ import annotations

import vknb
from vknb.library import _radix
from vknb.library import _scan_reduce as sr


def test_the_ci_driver_offers_what_the_tests_use(dev: vknb.Device) -> None:
    info = dev.info
    assert info.name
    if not info.name.startswith("llvmpipe"):
        return  # a GPU: its own capabilities decide which paths the tests take
    ops = set(info.limits["subgroup_operations"])
    assert {"basic", "ballot", "arithmetic"} <= ops, ops
    assert "VK_EXT_external_memory_host" in info.extensions
    assert sr.tuning("scan", dev).single_pass, "no 64-bit buffer atomics: no look-back scan"
    assert _radix.tuning(dev).ballot
