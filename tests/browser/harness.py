"""Real JupyterLab 4 and Notebook 7 servers driven in headless Chromium through Playwright.

Used by the browser tests (``tests/browser``) and by ``scripts/screenshot_widgets.py``.  The
browser is Debian's ``chromium`` (``/usr/bin/chromium``, or ``$VKNB_CHROMIUM``), never one that
Playwright downloads.  Every server runs on 127.0.0.1 on a free port with a random token, in a
fresh ``IPYTHONDIR`` / ``JUPYTER_CONFIG_DIR`` / ``JUPYTER_DATA_DIR`` / settings directory, so
neither the user's configuration nor a previous run leaks in.

Everything here waits with short, explicit time limits and says what it waited for when one
runs out.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Chromium's flags on this kind of machine: no sandbox (root), no GPU, and no background
#: networking (the closed network refuses Chromium's own connections, many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

#: JupyterLab / Notebook 7 user settings: no news or update-check notification over the page.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

#: What a widget output shows when it cannot render (JupyterLab, Notebook 7, nbconvert).
WIDGET_FAILURES = (
    "Error displaying widget",
    "Loading widget",
    "model not found",
    "Model not found",
    "A Jupyter widget could not be displayed",
)


def chromium_path() -> str | None:
    """Debian's Chromium (or ``$VKNB_CHROMIUM``), or None."""
    env = os.environ.get("VKNB_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def wait_for(what: str, fn: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``fn()`` until it returns something truthy; TimeoutError naming ``what`` if not."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except (OSError, ValueError, KeyError, IndexError, RuntimeError) as e:
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells (a cell starting with ``#md`` is a markdown cell)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(c[3:].strip())
        if c.startswith("#md")
        else nbformat.v4.new_code_cell(c)
        for c in cells
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, str(path))
    return path


def isolated_env(state: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ with every Jupyter and IPython directory moved under ``state``."""
    env = dict(os.environ)
    for var, sub in (
        ("IPYTHONDIR", "ipython"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
    ):
        (state / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(state / sub)
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class JupyterServer:
    """``jupyter lab`` or ``jupyter notebook`` (7) serving ``root`` on 127.0.0.1."""

    def __init__(self, app: str, root: Path, state: Path) -> None:
        assert app in ("lab", "notebook"), app
        self.app, self.root, self.state = app, root, state
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = state / f"{app}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> JupyterServer:
        settings = self.state / "lab-settings"
        for name, value in SETTINGS.items():
            p = settings / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(value))
        env = isolated_env(self.state)
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab" if self.app == "lab" else "notebook",
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.open_browser=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=log)
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"jupyter {self.app} exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            return bool(self.api("GET", "/api/status", timeout=2))

        try:
            wait_for(f"jupyter {self.app} to answer on {self.base}", up, timeout, 0.25)
        except TimeoutError as e:
            self.stop()
            raise TimeoutError(f"{e}\n{self.log_tail()}") from None
        return self

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def notebook_url(self, name: str) -> str:
        # ?reset: JupyterLab opens this notebook only, not the ones of the last visit
        return self.url(f"/lab/tree/{name}?reset" if self.app == "lab" else f"/notebooks/{name}")

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else {}

    def kernel_state(self, name: str) -> str | None:
        """The execution state of the kernel of the notebook at ``name`` (None: no session)."""
        for s in self.api("GET", "/api/sessions"):
            if s.get("path") == name and s.get("kernel"):
                return str(s["kernel"].get("execution_state"))
        return None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.api("POST", "/api/shutdown", timeout=5)
        except (OSError, urllib.error.URLError, ValueError):
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


# --- the page -------------------------------------------------------------------------------

#: The notebook on show (JupyterLab keeps the other open notebooks in the page, hidden).
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
CELLS = NOTEBOOK + " .jp-Cell"

# Everything the tests read of a notebook, in one round trip: per code cell its prompt, source
# and outputs (mime type, text, number of tables, and the HTML's table texts).  Text is the
# rendered text (innerText) where the browser rendered it, else the DOM's text: Notebook 7 and
# JupyterLab skip rendering cells far out of view (content-visibility), and innerText of a
# skipped element is empty although its output is there.
JS_CELLS = """() => [...document.querySelectorAll(CELLS)].map(c => ({
  kind: c.classList.contains('jp-CodeCell') ? 'code' : 'other',
  prompt: ((c.querySelector('.jp-InputPrompt') || {}).textContent || '').trim(),
  source: ((c.querySelector('.jp-InputArea-editor .cm-content') || {}).innerText || ''),
  outputs: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => ({
    mime: o.getAttribute('data-mime-type'),
    text: o.innerText || o.textContent,
    tables: [...o.querySelectorAll('table')].map(t => [...t.querySelectorAll('tr')].map(
        r => [...r.querySelectorAll('th,td')].map(x => (x.innerText || x.textContent).trim()))),
    widget: !!o.querySelector('.jupyter-widgets, .widget-vbox, .widget-box'),
  })),
}))""".replace("CELLS", json.dumps(CELLS))

# The colour a CodeMirror token is drawn in: for each occurrence of each word (whole words),
# the computed colour of the element holding its text.
JS_WORD_COLOURS = """([index, words]) => {
  const cell = document.querySelectorAll(CELLS)[index];
  const content = cell.querySelector('.cm-content');
  const out = {};
  for (const w of words) out[w] = [];
  const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    for (const w of words) {
      const re = new RegExp('(^|[^A-Za-z0-9_])' + w + '(?![A-Za-z0-9_])', 'g');
      if (re.test(n.textContent)) out[w].push(getComputedStyle(n.parentElement).color);
    }
  }
  return out;
}""".replace("CELLS", json.dumps(CELLS))

JS_KEYWORD_COLOUR = """() => {
  const el = document.createElement('span');
  el.style.color = 'var(--jp-mirror-editor-keyword-color)';
  document.body.appendChild(el);
  const c = getComputedStyle(el).color;
  el.remove();
  return c;
}"""


STDERR = "application/vnd.jupyter.stderr"


class NotebookPage:
    """One Playwright page on one server; console errors are collected as they come."""

    def __init__(self, page: Any, server: JupyterServer) -> None:
        self.page, self.server = page, server
        self.name = ""
        self.console_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)
        page.on("dialog", lambda d: d.accept())  # "leave the page?" when a notebook is dirty

    def _on_pageerror(self, err: Any) -> None:
        stack = (getattr(err, "stack", "") or "").splitlines()[1:4]
        self.console_errors.append(" | ".join([f"uncaught: {err}", *map(str.strip, stack)]))

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console_errors.append(msg.text)

    # navigation

    def open(self, name: str, timeout: float = 60.0) -> NotebookPage:
        """Open notebook ``name`` and wait for its cells and an idle kernel."""
        self.name = name
        self.page.goto(self.server.notebook_url(name), wait_until="domcontentloaded")
        self._wait_ready(timeout)
        return self

    def reload(self, timeout: float = 60.0) -> None:
        self.page.reload(wait_until="domcontentloaded")
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import nbformat

        n = len(nbformat.read(str(self.server.root / self.name), as_version=4).cells)
        wait_for(
            f"the {n} cells of {self.name} on the page",
            lambda: self.page.locator(CELLS + " .cm-content").count() >= n,
            timeout,
        )
        wait_for(
            f"the kernel of {self.name} to be idle",
            lambda: self.server.kernel_state(self.name) == "idle",
            timeout,
        )

    # menus and commands

    def menu(self, *path: str) -> None:
        """Click through the menu bar: ``menu("Run", "Run All Cells")``."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{path[0]}$")).click()
        for item in path[1:]:
            self.page.locator(
                ".lm-Menu:visible .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")
            ).first.click()

    def run_all(self, executed: int, timeout: float = 90.0) -> list[dict[str, Any]]:
        """Run > Run All Cells; wait until ``executed`` cells have run and the kernel is idle."""
        self.menu("Run", "Run All Cells")
        return self.wait_executed(executed, timeout)

    def wait_executed(self, executed: int, timeout: float = 90.0) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            cells = self.cells()
            prompts = [c["prompt"] for c in cells if c["kind"] == "code"]
            ran = sum(bool(re.fullmatch(r"\[\d+\]:", p)) for p in prompts)
            busy = any("*" in p for p in prompts)
            if busy or self.server.kernel_state(self.name) != "idle":
                return None
            if ran >= executed:
                return cells
            failed = [c for c in cells if any(o["mime"] == STDERR for o in c["outputs"])]
            if failed:  # Run All stopped at a failing cell
                c = failed[0]
                err = "\n".join(o["text"] for o in c["outputs"] if o["mime"] == STDERR)
                raise AssertionError(
                    f"{self.name}: Run All stopped after {ran} cells (wanted {executed}) at "
                    f"cell {c['source'][:60]!r}:\n{err[-2000:]}"
                )
            return None

        try:
            return wait_for(f"{executed} cells of {self.name} to run", done, timeout, 0.3)  # type: ignore[no-any-return]
        except TimeoutError as e:
            prompts = [c["prompt"] for c in self.cells() if c["kind"] == "code"]
            raise TimeoutError(f"{e}; prompts now {prompts}") from None

    def save(self, timeout: float = 20.0) -> None:
        """Ctrl+S, then wait until the file on disk is newer than before."""
        path = self.server.root / self.name
        before = path.stat().st_mtime_ns
        self.page.locator(NOTEBOOK).first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")
        wait_for(f"{self.name} to be saved", lambda: path.stat().st_mtime_ns != before, timeout)

    def restart_kernel(self, timeout: float = 60.0) -> None:
        """Kernel > Restart Kernel…, confirmed in the dialog; waits for the idle kernel."""
        self.menu("Kernel", "Restart Kernel…")
        self.page.locator(".jp-Dialog .jp-mod-accept").click()
        self.page.locator(".jp-Dialog").wait_for(state="detached", timeout=timeout * 1000)
        time.sleep(0.5)  # the server sees 'restarting' first
        wait_for(
            f"the restarted kernel of {self.name} to be idle",
            lambda: self.server.kernel_state(self.name) == "idle",
            timeout,
        )

    # reading

    def cells(self) -> list[dict[str, Any]]:
        """Per cell of the page: kind, prompt, source, outputs (see JS_CELLS).  The source is the
        file's (JupyterLab draws the editors of cells out of view lazily)."""
        import nbformat

        cells: list[dict[str, Any]] = self.page.evaluate(JS_CELLS)
        saved = nbformat.read(str(self.server.root / self.name), as_version=4).cells
        if len(saved) == len(cells):
            for c, s in zip(cells, saved, strict=True):
                c["source"] = c["source"] or s.source
        return cells

    def word_colours(self, index: int, words: list[str]) -> dict[str, list[str]]:
        return self.page.evaluate(JS_WORD_COLOURS, [index, words])  # type: ignore[no-any-return]

    def keyword_colour(self) -> str:
        return self.page.evaluate(JS_KEYWORD_COLOUR)  # type: ignore[no-any-return]

    def widget_failures(self) -> list[str]:
        text = self.page.locator(NOTEBOOK).first.inner_text()
        return [w for w in WIDGET_FAILURES if w in text]


def launch_browser(playwright: Any, executable: str) -> Any:
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


# --- readability of rendered text, from pixels ----------------------------------------------

# The boxes of the visible text of an element (one per text node and line), relative to it.
JS_TEXT_BOXES = """(el) => {
  const r0 = el.getBoundingClientRect();
  const out = [];
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!/[A-Za-z0-9]/.test(n.textContent)) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    for (const r of range.getClientRects()) {
      if (r.width < 4 || r.height < 6) continue;
      out.push({text: n.textContent.trim().slice(0, 60), x: r.left - r0.left, y: r.top - r0.top,
                w: r.width, h: r.height});
    }
  }
  return out;
}"""


def relative_luminance(rgb: Any) -> Any:
    """WCAG relative luminance of an (..., 3) array of 0-255 sRGB values."""
    import numpy as np

    c = np.asarray(rgb, dtype=float) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(l1: float, l2: float) -> float:
    hi, lo = max(l1, l2), min(l1, l2)
    return (hi + 0.05) / (lo + 0.05)


def text_contrasts(png: bytes, boxes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each text box of a screenshot: its background (the most common colour in the box:
    glyphs cover less than half of it), its ink (the pixels farthest from the background: the
    cores of the glyphs, past the anti-aliased edges) and the WCAG contrast ratio of the two."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    lum = relative_luminance(img)
    out = []
    for b in boxes:
        x0, y0 = max(int(b["x"]), 0), max(int(b["y"]), 0)
        x1, y1 = min(int(b["x"] + b["w"]), img.shape[1]), min(int(b["y"] + b["h"]), img.shape[0])
        if x1 - x0 < 4 or y1 - y0 < 6:
            continue
        px = img[y0:y1, x0:x1].reshape(-1, 3)
        colours, counts = np.unique(px, axis=0, return_counts=True)
        bg = relative_luminance(colours[np.argmax(counts)])
        lum_box = lum[y0:y1, x0:x1].ravel()
        dist = np.abs(lum_box - bg)
        ink_px = dist > 0.02
        if ink_px.sum() < 8:  # no glyph pixels: text painted in the background colour
            ink = float(bg)
        else:
            # the 90th percentile of the glyph pixels' distance: their solid cores
            far = np.quantile(dist[ink_px], 0.9)
            ink = float(lum_box[ink_px][np.argmin(np.abs(dist[ink_px] - far))])
        out.append(
            {
                "text": b["text"],
                "background": float(bg),
                "ink": ink,
                "ratio": contrast_ratio(float(bg), ink),
            }
        )
    return out
