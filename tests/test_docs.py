"""The documentation: the MkDocs site builds without a warning, the generated pages are current,
and the tutorials the docs name exist (and are stored executed, as GitHub shows them).

The notebooks themselves are executed by nbval in the same pytest session (``--nbval
notebooks``); these tests check what nbval does not.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"
_NB_RE = re.compile(r"notebooks/[\w.-]+\.ipynb")


def _gen_api() -> ModuleType:
    """docs/gen_api.py as a module (executed from source: no __pycache__ written into docs/)."""
    path = DOCS / "gen_api.py"
    mod = ModuleType("vknb_docs_gen_api")
    mod.__file__ = str(path)
    sys.modules[mod.__name__] = mod  # dataclasses and inspect look modules up by name
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), mod.__dict__)
    return mod


def _notebook_names_in_docs() -> dict[str, list[str]]:
    """``{"notebooks/xx.ipynb": [pages that name it]}``."""
    found: dict[str, list[str]] = {}
    for page in sorted(DOCS.glob("*.md")):
        for name in _NB_RE.findall(page.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(page.name)
    return found


def _stale(path: Path, expected: str) -> str:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if current == expected:
        return ""
    diff = difflib.unified_diff(
        current.splitlines(), expected.splitlines(), "committed", "generated", lineterm="", n=1
    )
    head = "\n".join(list(diff)[:40])
    return (
        f"docs/{path.name} is stale: run `.venv/bin/python docs/gen_api.py` and commit the "
        f"result. First differences:\n{head}"
    )


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` succeeds and prints no warning (broken links, missing pages)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{out}"
    warnings = [ln for ln in out.splitlines() if "WARNING" in ln]
    assert not warnings, "mkdocs warnings:\n" + "\n".join(warnings)
    site = tmp_path / "site"
    for page in ("index.html", "api/index.html", "binding/index.html", "magics/index.html"):
        assert (site / page).is_file(), f"{page} was not built"


def test_api_page_is_current() -> None:
    """docs/api.md is exactly what docs/gen_api.py generates from today's docstrings."""
    problem = _stale(DOCS / "api.md", _gen_api().generate())
    assert not problem, problem


def test_library_page_is_current() -> None:
    """docs/library.md lists every shader in shaders/ with its current header."""
    problem = _stale(DOCS / "library.md", _gen_api().generate_library())
    assert not problem, problem
    current = (DOCS / "library.md").read_text(encoding="utf-8")
    shaders = sorted((ROOT / "vknb" / "library" / "shaders").glob("*.comp"))
    assert len(shaders) >= 10, "the shader library was not found"
    for comp in shaders:
        assert f"`{comp.stem}`" in current, f"shaders/{comp.name} is missing from the library page"


def test_configuration_table_is_current() -> None:
    """The environment-variable table in getting-started.md is the one vknb.config declares,
    and the README names every variable."""
    page = DOCS / "getting-started.md"
    problem = _stale(page, _gen_api().generate_config_page())
    assert not problem, problem
    import vknb.config as config

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in config.VARIABLES if name not in readme]
    assert not missing, f"README.md does not mention {missing}"


def test_notebooks_named_in_docs_exist() -> None:
    named = _notebook_names_in_docs()
    assert named, "the docs name no notebook"
    missing = {nb: pages for nb, pages in named.items() if not (ROOT / nb).is_file()}
    assert not missing, f"the docs name notebooks that do not exist: {missing}"


def test_every_notebook_is_in_the_tutorials_page() -> None:
    tutorials = (DOCS / "tutorials.md").read_text(encoding="utf-8")
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert len(notebooks) >= 6
    for nb in notebooks:
        assert f"notebooks/{nb.name}" in tutorials, f"{nb.name} is not listed in docs/tutorials.md"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_stored_executed(path: Path) -> None:
    """Every code cell was run in order and kept its outputs (so GitHub shows them), and no
    stored output is an error except in cells tagged `raises-exception`."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    counts = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
            continue
        assert cell.get("execution_count") is not None, (
            f"{path.name}: a code cell was not executed:\n{''.join(cell['source'])[:200]}"
        )
        counts.append(cell["execution_count"])
        tags = cell.get("metadata", {}).get("tags", [])
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors and "raises-exception" not in tags:
            pytest.fail(
                f"{path.name}: stored error output in an untagged cell: "
                f"{errors[0].get('ename')}: {errors[0].get('evalue')}"
            )
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: cells run out of order"


def test_quickstart_ends_with_timings() -> None:
    """scripts/demo.py prints the output of the quickstart's `%vknb timings --text` cell."""
    nb = json.loads((NOTEBOOKS / "01_quickstart.ipynb").read_text(encoding="utf-8"))
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    last = code[-1].strip().splitlines()
    assert last[0].strip() == "# NBVAL_IGNORE_OUTPUT"
    assert last[-1].strip() == "%vknb timings --text"
