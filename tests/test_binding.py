"""The binding layer: vknb's named Vulkan constants equal the `vulkan` binding's own values."""

from __future__ import annotations

import vulkan

from vknb._vk import constants as C

#: Where the binding (vulkan 1.3.275.1) itself is wrong: the registry value, and what the binding
#: has instead.  VK_EXT_calibrated_timestamps' sType became an alias of the KHR one when it was
#: promoted; the binding resolves the alias to None and numbers the KHR name by its own extension
#: (1000543000) instead of the EXT value that vk.xml keeps for both (1000184000).
BINDING_DEFECTS = {"STRUCTURE_TYPE_CALIBRATED_TIMESTAMP_INFO_EXT": (1000184000, None)}


def test_every_named_constant_matches_the_binding() -> None:
    names = [n for n in dir(C) if n.isupper() and isinstance(getattr(C, n), int)]
    assert len(names) > 40
    wrong = {
        n: (getattr(C, n), getattr(vulkan, "VK_" + n, "missing"))
        for n in names
        if getattr(vulkan, "VK_" + n, None) != getattr(C, n)
    }
    # A known defect is listed with exactly what the binding has: once the binding is fixed the
    # entry no longer matches and this test asks for it to be removed.
    assert wrong == BINDING_DEFECTS, f"constants that differ from the binding: {wrong}"
