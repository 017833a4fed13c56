"""Every UI test leaves no live view behind: views displayed in one test (through a capturing
shell) would otherwise keep updating, from the live thread, during the next ones."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_live_views_left() -> Iterator[None]:
    yield
    widgets = sys.modules.get("vknb.ui.widgets")
    if widgets is not None:
        widgets.close_all()
