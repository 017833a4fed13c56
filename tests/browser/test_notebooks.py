"""vknb in a real JupyterLab 4 and Notebook 7, in headless Chromium (Playwright).

Each notebook is run through the UI (Run > Run All Cells), then the page is read: vknb's views
(``%vknb devices``, ``memory``, ``timings``) are HTML tables whose content is what Python says
(no "Error displaying widget", no stuck "Loading widget", no console errors); they are still
tables after save, kernel restart and page reload; a compile error's listing is readable in the
dark theme (contrast measured on a screenshot); ``%%glsl`` cells are highlighted as GLSL by the
vknb-glsl extension and Python cells are not; ``jupyter nbconvert --execute`` of the quickstart
writes the tables into the HTML.

One server per application and one page per server, reused: the tests of a module share them and
run in order.  Set ``VKNB_SCREENSHOTS=DIR`` to keep a screenshot of each notebook in DIR.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from browser_cases import BROKEN_LINE, ROOT, VALUES_CELL, VIEW_CELLS
from harness import (
    CELLS,
    JS_TEXT_BOXES,
    WIDGET_FAILURES,
    JupyterServer,
    NotebookPage,
    isolated_env,
    text_contrasts,
)

SHOTS = os.environ.get("VKNB_SCREENSHOTS")
# Console errors that are no fault of vknb's: regular expressions.  Notebook 7.6's shortcut
# settings plugin throws this on every page load, with or without vknb or its extension.
BENIGN_CONSOLE: tuple[str, ...] = (
    r"^uncaught: Cannot read properties of undefined \(reading 'schema'\) \| at \S+/static/"
    r"notebook/notebook_core\.",
)


def _shot(page: NotebookPage, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def _console_errors(page: NotebookPage) -> list[str]:
    errs = [e for e in page.console_errors if not any(re.search(b, e) for b in BENIGN_CONSOLE)]
    page.console_errors.clear()
    return errs


def _py_values(cells: list[dict[str, Any]]) -> dict[str, Any]:
    text = "\n".join(o["text"] for o in cells[VALUES_CELL]["outputs"])
    m = re.search(r"PYVALUES=(\{.*\})", text)
    assert m, f"the values cell printed no PYVALUES line: {text!r}"
    return json.loads(m.group(1))  # type: ignore[no-any-return]


def _tables(cell: dict[str, Any]) -> list[list[list[str]]]:
    return [t for o in cell["outputs"] for t in o["tables"]]


def _describe(cell: dict[str, Any]) -> str:
    outs = [(o["mime"], o["text"][:200]) for o in cell["outputs"]]
    return f"cell {cell['source'][:40]!r} has outputs {outs}"


def check_views(cells: list[dict[str, Any]], values: dict[str, Any], when: str) -> None:
    """The device, memory and timings views are tables that show what Python says."""
    for what, i in VIEW_CELLS.items():
        assert _tables(cells[i]), f"{when}: the {what} view shows no table; {_describe(cells[i])}"
        widget_text = [w for o in cells[i]["outputs"] for w in WIDGET_FAILURES if w in o["text"]]
        assert not widget_text, f"{when}: the {what} view shows {widget_text}"
    devices_text = "\n".join(
        " ".join(c for row in t for c in row) for t in _tables(cells[VIEW_CELLS["devices"]])
    )
    for name in values["devices"]:
        assert name in devices_text, f"{when}: device {name!r} not in the devices table"
    memory_text = "\n".join(o["text"] for o in cells[VIEW_CELLS["memory"]]["outputs"])
    assert values["session"] in memory_text, (
        f"{when}: the memory view does not name the session device {values['session']!r}"
    )
    rows = [row for t in _tables(cells[VIEW_CELLS["timings"]]) for row in t]
    for kernel, count in values["timings"].items():
        # the dispatch count cell: the number, maybe followed by a note ("7 (1 warm-up)")
        hits = [
            r
            for r in rows
            if r and r[0] == kernel and any(re.match(rf"{count}\b", c) for c in r[1:])
        ]
        assert hits, (
            f"{when}: no timings row says {kernel!r} ran {count} times (vknb.timings()); "
            f"rows: {rows[:8]}"
        )


# --- JupyterLab -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_views(lab_page: NotebookPage) -> dict[str, Any]:
    """views.ipynb, opened and run through the UI in JupyterLab."""
    lab_page.open("views.ipynb")
    cells = lab_page.run_all(executed=len(VIEW_CELLS) + 4)
    _shot(lab_page, "lab-views")
    return {"cells": cells, "values": _py_values(cells)}


def test_lab_views_show_python_values(lab_page: NotebookPage, lab_views: dict[str, Any]) -> None:
    assert lab_views["values"]["timings"] == {"scale": 7}, lab_views["values"]
    assert lab_page.widget_failures() == []
    check_views(lab_views["cells"], lab_views["values"], "JupyterLab, after Run All")
    assert _console_errors(lab_page) == []


def test_lab_views_survive_save_restart_reload(
    lab_page: NotebookPage, lab_views: dict[str, Any], lab: JupyterServer
) -> None:
    lab_page.save()
    saved = json.loads((lab.root / "views.ipynb").read_text())
    for what, i in VIEW_CELLS.items():
        html = [
            "".join(o["data"]["text/html"])
            for o in saved["cells"][i].get("outputs", [])
            if "text/html" in o.get("data", {})
        ]
        assert any("<table" in h for h in html), (
            f"the saved notebook's {what} view has no text/html table: "
            f"{[sorted(o.get('data', {})) for o in saved['cells'][i].get('outputs', [])]}"
        )
    lab_page.restart_kernel()
    lab_page.reload()
    cells = lab_page.cells()
    _shot(lab_page, "lab-views-reloaded")
    assert lab_page.widget_failures() == []
    check_views(cells, lab_views["values"], "JupyterLab, after save, restart and reload")
    assert _console_errors(lab_page) == []


def test_lab_quickstart_runs(lab_page: NotebookPage) -> None:
    lab_page.open("01_quickstart.ipynb")
    n_code = sum(c["kind"] == "code" for c in lab_page.cells())
    cells = lab_page.run_all(executed=n_code)
    _shot(lab_page, "lab-quickstart")
    assert lab_page.widget_failures() == []
    devices = [c for c in cells if c["kind"] == "code" and "%vknb devices" in c["source"]]
    assert devices and _tables(devices[0]), _describe(devices[0] if devices else cells[0])
    card = [c for c in cells if c["source"].startswith("%%glsl saxpy")]
    assert card and _tables(card[0]), "the %%glsl saxpy cell shows no card"
    text = "\n".join(o["text"] for c in cells for o in c["outputs"])
    assert "matches numpy: True" in text
    assert "Error" not in "\n".join(o["mime"] or "" for c in cells for o in c["outputs"])
    assert _console_errors(lab_page) == []


def _listing(page: NotebookPage) -> Any:
    """The compile error's listing: the HTML output of the failing cell."""
    cell = page.page.locator(CELLS).nth(1)
    out = cell.locator('.jp-OutputArea-output[data-mime-type="text/html"]')
    assert out.count() >= 1, "the failing %%glsl cell shows no HTML listing"
    return out.first


def _readability(page: NotebookPage, theme: str) -> list[dict[str, Any]]:
    listing = _listing(page)
    listing.scroll_into_view_if_needed()
    page.page.wait_for_timeout(300)  # the theme's colours are applied
    boxes = listing.evaluate(JS_TEXT_BOXES)
    png = listing.screenshot()
    if SHOTS:
        (Path(SHOTS) / f"listing-{theme}.png").write_bytes(png)
    measured = text_contrasts(png, boxes)
    assert measured, f"{theme}: no text found in the listing"
    return measured


def _set_theme(page: NotebookPage, theme: str) -> None:
    page.menu("Settings", "Theme", theme)
    page.page.wait_for_selector(f'body[data-jp-theme-name="{theme}"]', state="attached")


def test_lab_compile_error_listing_readable_in_dark_theme(lab_page: NotebookPage) -> None:
    lab_page.open("compile_error.ipynb")
    cells = lab_page.run_all(executed=2)
    assert cells[2]["prompt"] in ("[ ]:", ""), "Run All went on past the failing %%glsl cell"
    text = "\n".join(o["text"] for o in cells[1]["outputs"])
    assert "undeclared_scale" in text and BROKEN_LINE.strip() in text, _describe(cells[1])
    assert "ShaderCompileError" in text, _describe(cells[1])

    light = _readability(lab_page, "light")
    try:
        _set_theme(lab_page, "JupyterLab Dark")
        dark = _readability(lab_page, "dark")
        _shot(lab_page, "lab-compile-error-dark")
    finally:
        _set_theme(lab_page, "JupyterLab Light")
    for theme, measured in (("light", light), ("dark", dark)):
        worst = min(measured, key=lambda m: m["ratio"])
        assert worst["ratio"] >= 3.0, (
            f"{theme} theme: text {worst['text']!r} of the compile-error listing has a contrast "
            f"of {worst['ratio']:.2f}:1 with its background (luminance {worst['ink']:.3f} on "
            f"{worst['background']:.3f}); at least 3:1 wanted"
        )
    # The marked line (the error) is among the measured texts.
    assert any("undeclared_scale" in m["text"] for m in dark), [m["text"] for m in dark]
    assert _console_errors(lab_page) == []


def test_lab_interactive_controls_render(lab_page: NotebookPage) -> None:
    """The opt-in ipywidgets controls (``--interactive``) render live in JupyterLab."""
    lab_page.open("interactive.ipynb")
    cells = lab_page.run_all(executed=4)
    assert lab_page.widget_failures() == []
    assert any(o["widget"] for o in cells[3]["outputs"]), (
        f"`%vknb timings --interactive` shows no ipywidgets controls; {_describe(cells[3])}"
    )
    assert "scale" in "\n".join(o["text"] for o in cells[3]["outputs"])
    assert _console_errors(lab_page) == []


def check_highlighting(page: NotebookPage, app: str) -> None:
    """GLSL keywords in the %%glsl cell have the keyword colour; the Python cell's do not."""
    page.open("highlight.ipynb")
    page.page.wait_for_timeout(500)  # the extension switches an opened cell's language
    kw = page.keyword_colour()
    words = ["layout", "uniform", "void"]
    glsl = page.word_colours(0, words)
    py = page.word_colours(1, [*words, "def", "return"])
    for w in words:
        assert glsl[w] and all(c == kw for c in glsl[w]), (
            f"{app}: {w!r} in the %%glsl cell is drawn in {glsl[w]}, not the keyword colour {kw} "
            "(is the vknb-glsl extension installed? `jupyter labextension list`)"
        )
        assert py[w] and kw not in py[w], f"{app}: {w!r} in a Python cell is a keyword: {py[w]}"
    assert py["def"] == [kw] and py["return"] == [kw], f"{app}: Python keywords not coloured: {py}"

    # Remove the magic line: Python again; undo: GLSL again.
    editor = page.page.locator(CELLS).nth(0).locator(".cm-content")
    editor.click()
    page.page.keyboard.press("Control+Home")
    page.page.keyboard.press("Shift+End")
    page.page.keyboard.press("Backspace")
    page.page.wait_for_timeout(300)
    after = page.word_colours(0, words)
    assert all(kw not in after[w] for w in words), f"{app}: still GLSL without %%glsl: {after}"
    page.page.keyboard.press("Control+z")
    page.page.wait_for_timeout(300)
    again = page.word_colours(0, words)
    assert all(again[w] and set(again[w]) == {kw} for w in words), f"{app}: not GLSL again: {again}"
    page.page.keyboard.press("Escape")
    assert _console_errors(page) == []


def test_lab_glsl_cells_highlighted(lab_page: NotebookPage) -> None:
    check_highlighting(lab_page, "JupyterLab")


# --- Notebook 7 -------------------------------------------------------------------------------


def test_notebook7_views(nb7_page: NotebookPage, notebook7: JupyterServer) -> None:
    nb7_page.open("views.ipynb")
    cells = nb7_page.run_all(executed=len(VIEW_CELLS) + 4)
    _shot(nb7_page, "nb7-views")
    values = _py_values(cells)
    assert nb7_page.widget_failures() == []
    check_views(cells, values, "Notebook 7, after Run All")
    assert _console_errors(nb7_page) == []
    nb7_page.save()
    nb7_page.restart_kernel()
    nb7_page.reload()
    assert nb7_page.widget_failures() == []
    check_views(nb7_page.cells(), values, "Notebook 7, after save, restart and reload")
    assert _console_errors(nb7_page) == []


def test_notebook7_glsl_cells_highlighted(nb7_page: NotebookPage) -> None:
    check_highlighting(nb7_page, "Notebook 7")


# --- nbconvert --------------------------------------------------------------------------------


def test_nbconvert_html_of_quickstart_has_tables(tmp_path: Path) -> None:
    import vknb

    src = tmp_path / "01_quickstart.ipynb"
    src.write_bytes((ROOT / "notebooks" / "01_quickstart.ipynb").read_bytes())
    p = subprocess.run(
        [
            *(sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute"),
            "--ExecutePreprocessor.timeout=120",
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=isolated_env(tmp_path / "state"),
    )
    assert p.returncode == 0, f"nbconvert failed ({p.returncode}):\n{p.stderr[-3000:]}"
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((tmp_path / "01_quickstart.html").read_text(), "html.parser")
    cells = soup.select("div.jp-CodeCell")
    by_source = {c.select_one(".jp-InputArea").get_text(): c for c in cells}  # type: ignore[union-attr]

    def cell(start: str) -> Any:
        hits = [c for s, c in by_source.items() if start in s]
        assert hits, f"no cell with {start!r} in the HTML"
        return hits[0]

    devices = cell("%vknb devices")
    tables = devices.select(".jp-OutputArea-output table")
    outputs = [o.get_text()[:200] for o in devices.select(".jp-OutputArea-output")]
    assert tables, f"the devices view of the nbconvert HTML has no table: {outputs}"
    text = " ".join(t.get_text(" ") for t in tables)
    for d in vknb.devices():
        assert d.name in text, f"device {d.name!r} not in the devices table of the HTML"
    assert cell("%%glsl saxpy").select(".jp-OutputArea-output table"), "no kernel card table"
    page_text = soup.get_text()
    for bad in WIDGET_FAILURES:
        assert bad not in page_text, f"the nbconvert HTML says {bad!r}"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_nbconvert_html_of_every_saved_tutorial_shows_its_tables(name: str) -> None:
    """Each tutorial as committed (its saved outputs, no kernel): nbconvert's HTML shows every
    view and every ``%%glsl`` card as a table, and nowhere a widget that cannot render."""
    import nbformat
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    html_tables = 0
    cards = 0
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        for o in c.get("outputs", []):
            data = o.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                assert "text/html" in data, f"{name}: a widget output with no HTML beside it"
            html = data.get("text/html", "")
            html_tables += "<table" in (html if isinstance(html, str) else "".join(html))
        first = c.source.splitlines()[0] if c.source else ""
        if first.startswith("%%glsl") and "--quiet" not in first and "-q" not in first.split():
            cards += 1
            htmls = [o.get("data", {}).get("text/html", "") for o in c.get("outputs", [])]
            assert any("<table" in (h if isinstance(h, str) else "".join(h)) for h in htmls) or any(
                o.get("output_type") == "error" for o in c.get("outputs", [])
            ), f"{name}: the saved output of {first!r} has no card table"
    body, _ = HTMLExporter().from_notebook_node(nb)
    soup = BeautifulSoup(body, "html.parser")
    shown = len(soup.select(".jp-OutputArea-output table"))
    assert shown >= html_tables, f"{name}: {html_tables} saved tables, {shown} in the HTML"
    text = soup.get_text()
    for bad in WIDGET_FAILURES:
        assert bad not in text, f"{name}: the HTML says {bad!r}"
    if name.startswith(("01", "02", "04", "06", "07")):
        assert html_tables and cards, f"{name}: no view or card table saved"
