#!/usr/bin/env python
"""Render vknb's widgets in a real JupyterLab, in headless Chromium, and save a screenshot.

The script writes a temporary notebook that makes a few dispatches and shows the three widgets
(``DeviceExplorer``, ``MemoryMonitor``, ``TimingsView`` with its plots), starts JupyterLab on
localhost with a fresh settings directory, opens the notebook in headless Chromium, runs all
cells through JupyterLab's own "Run All" command (driven over the Chrome DevTools protocol),
waits until every widget has rendered (no "Loading widget..." left), and captures the notebook.

Needs (not vknb dependencies): ``pip install jupyterlab`` (brings ``websocket-client``) and a
Chromium (Debian: ``apt-get install chromium``).

Example
-------
    .venv/bin/python scripts/screenshot_widgets.py              # writes docs/widgets.png
    .venv/bin/python scripts/screenshot_widgets.py --out /tmp/w.png --keep
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]

SETUP = '''\
import numpy as np
import vknb
import vknb.widgets

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

CELLS = [
    SETUP,
    "vknb.widgets.DeviceExplorer()",
    "vknb.widgets.MemoryMonitor()",
    "tv = vknb.widgets.TimingsView(last=6)\ntv.show_plot()\ntv",
]

# JupyterLab user settings: no news / update-check notification over the screenshot.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


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
        "cells": CELLS,
        "views": 3,
        "imgs": 1,
        "needles": (
            "Vulkan devices",
            "compute limits",
            "vknb allocated",
            "saxpy",
            "Dispatch timings",
        ),
        "errors_ok": False,
    },
    "magics": {
        "cells": MAGIC_CELLS,
        "views": 0,
        "imgs": 0,
        "needles": (
            "vknb kernel",
            "saxpy",
            "push constants",
            "True",
            "ShaderCompileError",
            "undeclared_scale",
        ),
        "errors_ok": True,
    },
}


def write_notebook(path: Path, cells: list[str] = CELLS) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, str(path))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, fn: Any, timeout: float, interval: float = 0.25) -> Any:
    """Poll ``fn()`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (OSError, ValueError, KeyError, IndexError, RuntimeError) as e:  # not up yet
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(
        f"timed out waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


class CDP:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expr: str, await_promise: bool = False) -> Any:
        r = self.call(
            "Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=await_promise
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expr!r}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def close(self) -> None:
        self.ws.close()


# JS snippets (JupyterLab exposes its app as window.jupyterapp with expose_app_in_browser).
# The notebook panel, found among the main area's widgets (headless Chromium has no focus, so
# shell.currentWidget can be null until the panel is activated).
JS_PANEL = """(() => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.sessionContext && w.content && w.content.widgets) return w;
  }
  return null;
})()"""

JS_KERNEL_IDLE = """(() => {
  const w = PANEL;
  const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? k.status : null;
})()""".replace("PANEL", JS_PANEL)

JS_ACTIVATE = """(() => {
  const w = PANEL;
  window.jupyterapp.shell.activateById(w.id);
  return window.jupyterapp.shell.currentWidget === w;
})()""".replace("PANEL", JS_PANEL)

JS_STATE = """(() => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => (c.querySelector('.jp-InputPrompt') || {}).textContent || '');
  const views = document.querySelectorAll('.jp-OutputArea-output .widget-vbox').length;
  const loading = [...document.querySelectorAll('.jp-OutputArea-output')]
      .filter(o => o.textContent.includes('Loading widget')).length;
  const errors = document.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').length;
  const imgs = [...document.querySelectorAll('.jp-OutputArea-output img')]
      .filter(i => i.complete && i.naturalWidth > 0).length;
  const nb = document.querySelector('.jp-Notebook');
  return {prompts, views, loading, errors, imgs, text: nb ? nb.innerText.slice(0, 20000) : ''};
})()"""

JS_BOTTOM = """(() => {
  const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
  const last = cells[cells.length - 1];
  return Math.ceil(last.getBoundingClientRect().bottom);
})()"""


def screenshot(
    out: Path,
    chromium: str,
    width: int,
    height: int,
    timeout: float,
    keep: bool,
    profile_name: str = "widgets",
) -> None:
    prof = PROFILES[profile_name]
    tmp = Path(tempfile.mkdtemp(prefix="vknb-screenshot-"))
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    try:
        work = tmp / "work"
        work.mkdir()
        nb = work / "widgets.ipynb"
        write_notebook(nb, prof["cells"])
        settings = tmp / "lab-settings"
        for name, value in SETTINGS.items():
            p = settings / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(value))

        env = dict(os.environ)
        env.update(
            {
                "JUPYTERLAB_SETTINGS_DIR": str(settings),
                "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
                "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
                "JUPYTER_DATA_DIR": str(tmp / "data"),  # no user kernels, extensions or secrets
                "JUPYTER_CONFIG_DIR": str(tmp / "config"),
                "VKNB_CACHE_DIR": str(tmp / "vknb-cache"),
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            }
        )
        port = free_port()
        token = secrets.token_hex(16)
        lab_log = open(tmp / "lab.log", "wb")
        lab = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                f"--port={port}",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={work}",
                "--LabApp.expose_app_in_browser=True",
                "--ServerApp.port_retries=0",
                *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            ],
            cwd=work,
            env=env,
            stdout=lab_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(lab)
        base = f"http://127.0.0.1:{port}"

        def lab_up() -> bool:
            if lab.poll() is not None:
                raise SystemExit(
                    f"JupyterLab exited ({lab.returncode}):\n"
                    + (tmp / "lab.log").read_text()[-3000:]
                )
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                return r.status == 200

        wait_for("JupyterLab", lab_up, timeout)
        print(f"JupyterLab up on {base}")

        profile = tmp / "chromium-profile"
        chrome_log = open(tmp / "chromium.log", "wb")
        chrome = subprocess.Popen(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=chrome_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(chrome)
        devtools = wait_for(
            "Chromium's DevTools port",
            lambda: (profile / "DevToolsActivePort").read_text().split()[0],
            30,
        )
        targets = wait_for(
            "a page target",
            lambda: [
                t
                for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{devtools}/json"))
                if t.get("type") == "page"
            ],
            30,
        )
        cdp = CDP(targets[0]["webSocketDebuggerUrl"])
        try:
            cdp.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            cdp.call("Page.enable")
            cdp.call("Emulation.setFocusEmulationEnabled", enabled=True)
            cdp.call("Page.navigate", url=f"{base}/lab/tree/{nb.name}?token={token}")
            wait_for("the kernel to start", lambda: cdp.eval(JS_KERNEL_IDLE) == "idle", timeout)
            print("notebook open, kernel idle; running all cells")
            # Tidy the page: no file browser, then Run All through JupyterLab's own command.
            wait_for("the notebook to be the current widget", lambda: cdp.eval(JS_ACTIVATE), 30)
            cdp.eval(
                "window.jupyterapp.commands.execute('application:toggle-left-area')",
                await_promise=True,
            )
            cdp.eval(
                "window.jupyterapp.commands.execute('notebook:run-all-cells')", await_promise=True
            )

            def done() -> dict[str, Any] | None:
                st = cdp.eval(JS_STATE)
                finished = all(p.strip() not in ("[*]:", "[ ]:", "") for p in st["prompts"])
                idle = cdp.eval(JS_KERNEL_IDLE) == "idle"
                if (
                    finished
                    and idle
                    and st["views"] >= prof["views"]
                    and st["loading"] == 0
                    and st["imgs"] >= prof["imgs"]
                ):
                    return st
                return None

            try:
                state = wait_for("the widgets to render", done, timeout, interval=0.5)
            except TimeoutError:
                print(json.dumps(cdp.eval(JS_STATE), indent=1)[:5000], file=sys.stderr)
                raise
            for needle in prof["needles"]:
                if needle not in state["text"]:
                    raise RuntimeError(f"rendered notebook lacks {needle!r}")
            if state["errors"] and not prof["errors_ok"]:
                raise RuntimeError(f"{state['errors']} cell(s) wrote to stderr:\n{state['text']}")
            cdp.eval("document.activeElement && document.activeElement.blur()")
            cdp.eval(
                f"(() => {{ const w = {JS_PANEL}; w.content.activeCellIndex = 0; "
                f"w.content.mode = 'command'; }})()"
            )
            time.sleep(1.0)  # let the last layout settle
            bottom = min(int(cdp.eval(JS_BOTTOM)) + 16, height)
            shot = cdp.call(
                "Page.captureScreenshot",
                format="png",
                clip={"x": 0, "y": 0, "width": width, "height": bottom, "scale": 1},
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
            print(
                f"wrote {out} ({width}x{bottom}, {out.stat().st_size} bytes): "
                f"{state['views']} widget views rendered, {state['imgs']} image(s)"
            )
        finally:
            cdp.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for f in logs:
            f.close()
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "widgets.png")
    ap.add_argument(
        "--chromium",
        default=shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
        or "chromium",
    )
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds for each stage")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument(
        "--magics",
        action="store_true",
        help="show a %%%%glsl card, a call and a compile error instead (docs/magics.png)",
    )
    args = ap.parse_args(argv)
    out = args.out
    if args.magics and out == ROOT / "docs" / "widgets.png":
        out = ROOT / "docs" / "magics.png"
    screenshot(
        out,
        args.chromium,
        args.width,
        args.height,
        args.timeout,
        args.keep,
        "magics" if args.magics else "widgets",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
