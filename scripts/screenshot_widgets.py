#!/usr/bin/env python
"""Render vknb's views in a real JupyterLab, in headless Chromium, and save a screenshot.

The script writes a temporary notebook, starts JupyterLab on 127.0.0.1 with fresh settings, opens
the notebook in Debian's Chromium through Playwright (the browser tests' harness,
``tests/browser/harness.py``), runs all cells through the menu (Run > Run All Cells), checks
that every view rendered (tables, no widget error, plots loaded) and captures the notebook.

- default (``docs/widgets.png``): a few dispatches of two kernels, then ``%vknb devices``,
  ``%vknb memory``, ``%vknb timings`` and ``%vknb timings --plot``;
- ``--magics`` (``docs/magics.png``): a ``%%glsl`` card, a kernel call and a compile error.

Needs what the browser tests need: ``pip install -e '.[test]'`` (jupyterlab, playwright) and
Debian's ``chromium`` (``apt-get install chromium``); never ``playwright install``.

Example
-------
    .venv/bin/python scripts/screenshot_widgets.py              # writes docs/widgets.png
    .venv/bin/python scripts/screenshot_widgets.py --magics     # writes docs/magics.png
    .venv/bin/python scripts/screenshot_widgets.py --out /tmp/w.png --keep
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from harness import (  # noqa: E402
    CELLS,
    JupyterServer,
    NotebookPage,
    chromium_path,
    launch_browser,
    write_notebook,
)

SETUP = '''\
%load_ext vknb
import numpy as np
import vknb

saxpy = vknb.compile("""
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < x.length()) y[i] += a * x[i]; }
""", name="saxpy")
scale = vknb.compile("""
layout(local_size_x = 128) in;
layout(set = 0, binding = 0) buffer Y { float y[]; };
layout(push_constant) uniform P { float s; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < y.length()) y[i] *= s; }
""", name="scale")

rng = np.random.default_rng(0)
x = rng.random(1 << 18, dtype=np.float32)
y = np.zeros_like(x)
x_dev = vknb.asarray(x)  # a device-resident array, so that the memory view has something in it
for _ in range(30):
    saxpy(x, y, a=2.0, grid=x.size)
for _ in range(15):
    scale(y, s=0.5, grid=y.size)
'''

# --magics: the %%glsl card, a kernel call and a compile error, as a user meets them.
MAGIC_CELLS = [
    "%load_ext vknb\nimport numpy as np",
    """%%glsl saxpy
layout(local_size_x = 256) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < n) y[i] += a * x[i];
}""",
    "x = np.random.rand(100_000).astype(np.float32)\ny = np.zeros_like(x)\n"
    "rec = saxpy(x, y, a=2.0, n=x.size, grid=x.size)\nprint(np.allclose(y, 2 * x), rec)",
    """%%glsl saxpy
layout(local_size_x = 256) in;
layout(binding = 0) buffer Y { float y[]; };
void main() {
    y[gl_GlobalInvocationID.x] = undeclared_scale * 2.0;
}""",
]

PROFILES: dict[str, dict[str, Any]] = {
    "widgets": {
        "cells": [
            SETUP,
            "%vknb devices",
            "%vknb memory",
            "%vknb timings --last 6",
            "%vknb timings --plot",
        ],
        "tables": 3,
        "imgs": 1,
        "needles": ("saxpy", "scale"),
    },
    "magics": {
        "cells": MAGIC_CELLS,
        "tables": 1,
        "imgs": 0,
        "needles": ("saxpy", "True", "ShaderCompileError", "undeclared_scale"),
    },
}

JS_BOTTOM = """() => {
  const cells = document.querySelectorAll(CELLS);
  return Math.ceil(cells[cells.length - 1].getBoundingClientRect().bottom);
}""".replace("CELLS", repr(CELLS))

JS_IMAGES = """() => [...document.querySelectorAll(CELLS + ' .jp-OutputArea-output img')]
  .filter(i => i.complete && i.naturalWidth > 0).length""".replace("CELLS", repr(CELLS))


def screenshot(
    out: Path, chromium: str, width: int, height: int, keep: bool, profile_name: str
) -> None:
    from playwright.sync_api import sync_playwright

    prof = PROFILES[profile_name]
    tmp = Path(tempfile.mkdtemp(prefix="vknb-screenshot-"))
    work = tmp / "work"
    work.mkdir()
    nb = f"{profile_name}.ipynb"
    write_notebook(work / nb, prof["cells"])
    server = JupyterServer("lab", work, tmp / "state").start()
    try:
        with sync_playwright() as p:
            browser = launch_browser(p, chromium)
            page = NotebookPage(
                browser.new_page(viewport={"width": width, "height": height}), server
            )
            page.open(nb)
            # no file browser: clicking the open side panel's tab closes it
            tab = page.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
            if tab.count():
                tab.first.click()
            cells = page.run_all(executed=len(prof["cells"]))
            tables = sum(bool(o["tables"]) for c in cells for o in c["outputs"])
            if tables < prof["tables"]:
                raise RuntimeError(f"only {tables} output(s) with tables: {cells}")
            if page.widget_failures():
                raise RuntimeError(f"widget failures: {page.widget_failures()}")
            page.page.wait_for_function(f"({JS_IMAGES})() >= {prof['imgs']}", timeout=30_000)
            text = "\n".join(o["text"] for c in cells for o in c["outputs"])
            for needle in prof["needles"]:
                if needle not in text:
                    raise RuntimeError(f"the rendered notebook lacks {needle!r}")
            page.page.keyboard.press("Escape")
            page.page.locator(CELLS).first.click(position={"x": 2, "y": 2})
            page.page.wait_for_timeout(800)  # the last layout settles
            bottom = min(int(page.page.evaluate(JS_BOTTOM)) + 16, height)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.page.screenshot(
                path=str(out), clip={"x": 0, "y": 0, "width": width, "height": bottom}
            )
            browser.close()
        print(f"wrote {out} ({width}x{bottom}, {out.stat().st_size} bytes)")
    finally:
        server.stop()
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--chromium", default=chromium_path())
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument(
        "--magics",
        action="store_true",
        help="show a %%%%glsl card, a call and a compile error instead (docs/magics.png)",
    )
    args = ap.parse_args(argv)
    if not args.chromium:
        ap.error("no Chromium found: apt-get install chromium (or --chromium PATH)")
    name = "magics" if args.magics else "widgets"
    out = args.out or ROOT / "docs" / f"{name}.png"
    screenshot(out, args.chromium, args.width, args.height, args.keep, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
