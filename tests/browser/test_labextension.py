"""The prebuilt vknb-glsl JupyterLab extension is installed: in this environment (run.sh links
it, since an editable install skips data files).  That a wheel installs it where Jupyter finds
it is checked with the wheel itself, in ``tests/test_packaging.py``.  No browser needed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from harness import isolated_env

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / "vknb" / "labextension"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(cmd: list[str], timeout: float, **kw: object) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    out = ANSI.sub("", p.stdout + p.stderr)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{out}"
    return out


def _check_built(where: Path) -> None:
    meta = json.loads((where / "package.json").read_text())
    assert meta["name"] == "vknb-glsl", meta["name"]
    load = meta["jupyterlab"]["_build"]["load"]
    assert (where / load).is_file(), f"{where}: its remote entry {load} is missing"
    assert (where / "install.json").is_file()


def test_prebuilt_assets_are_complete() -> None:
    _check_built(BUILT)
    src = json.loads((ROOT / "labextension" / "package.json").read_text())
    meta = json.loads((BUILT / "package.json").read_text())
    assert meta["version"] == src["version"], "vknb/labextension is older than labextension/"


def test_listed_enabled_in_this_environment(tmp_path: Path) -> None:
    import jupyterlab  # noqa: F401 - a test dependency: missing is a failure, never a skip

    out = _run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        60,
        env=isolated_env(tmp_path),
    )
    assert re.search(r"vknb-glsl v\S+ enabled\s+OK", out), (
        "vknb-glsl is not an enabled extension of this environment "
        f"(bash run.sh links it into .venv/share/jupyter/labextensions):\n{out}"
    )
