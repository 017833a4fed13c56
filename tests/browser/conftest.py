"""Fixtures of the browser tests: Debian's Chromium through Playwright, and one JupyterLab 4 and
one Notebook 7 server, each serving its own temporary copy of the notebooks under test.

What they need is installed by ``bash run.sh test`` (the ``chromium`` Debian package; the test
extra: jupyterlab, notebook, playwright).  Where something is missing the tests fail, naming the
command that installs it: a browser test is never skipped.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_cases import make_workdir
from harness import JupyterServer, NotebookPage, chromium_path, launch_browser


def _missing(what: str) -> Any:
    pytest.fail(f"the browser tests need {what} (`bash run.sh test` installs it)", pytrace=False)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium, driven by Playwright (its own browser download is never used)."""
    for mod, pkg in (("jupyterlab", "jupyterlab>=4"), ("notebook", "notebook>=7")):
        if importlib.util.find_spec(mod) is None:
            _missing(f"{pkg} in this environment (pip install -e '.[test]')")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python (pip install -e '.[test]'; no `playwright install`)")
    exe = chromium_path()
    if exe is None:
        _missing("Debian's Chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = launch_browser(p, exe)
        yield b
        b.close()


def _server(app: str, base: Path) -> Iterator[JupyterServer]:
    state = base / "state"
    server = JupyterServer(app, make_workdir(base), state).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lab(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """``jupyter lab`` on a free port of 127.0.0.1, isolated, serving a copy of the notebooks."""
    yield from _server("lab", tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="module")
def notebook7(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """``jupyter notebook`` (7), likewise."""
    yield from _server("notebook", tmp_path_factory.mktemp("nb7"))


def _page(browser: Any, server: JupyterServer) -> Iterator[NotebookPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(20_000)
    page = NotebookPage(context.new_page(), server)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def lab_page(browser: Any, lab: JupyterServer) -> Iterator[NotebookPage]:
    """One page, reused by the JupyterLab tests."""
    yield from _page(browser, lab)


@pytest.fixture(scope="module")
def nb7_page(browser: Any, notebook7: JupyterServer) -> Iterator[NotebookPage]:
    """One page, reused by the Notebook 7 tests."""
    yield from _page(browser, notebook7)
