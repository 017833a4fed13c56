"""The binding layer: vknb's named Vulkan constants equal the `vulkan` binding's own values."""

from __future__ import annotations

import vulkan

from vknb._vk import constants as C


def test_every_named_constant_matches_the_binding() -> None:
    names = [n for n in dir(C) if n.isupper() and isinstance(getattr(C, n), int)]
    assert len(names) > 40
    wrong = {
        n: (getattr(C, n), getattr(vulkan, "VK_" + n, "missing"))
        for n in names
        if getattr(vulkan, "VK_" + n, None) != getattr(C, n)
    }
    assert not wrong, f"constants that differ from the binding: {wrong}"
