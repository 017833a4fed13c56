"""The prebuilt vknb-glsl JupyterLab extension is installed: in this environment (run.sh links
it, since an editable install skips data files) and by a wheel, where Jupyter finds it
(``share/jupyter/labextensions/vknb-glsl``).  No browser needed."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import site
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


def test_wheel_installs_the_extension(tmp_path: Path) -> None:
    # A copy of what the wheel is built from, so that no build/ or egg-info lands in the tree.
    build, dist = tmp_path / "build", tmp_path / "dist"
    shutil.copytree(ROOT / "vknb", build / "vknb", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / f).exists():
            shutil.copy2(ROOT / f, build / f)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(build)]
    if int(importlib.metadata.version("setuptools").split(".")[0]) >= 77:
        cmd.insert(4, "--no-build-isolation")  # offline, with this environment's setuptools
    _run(cmd, 180, cwd=tmp_path)
    (wheel,) = dist.glob("vknb-*.whl")
    env_dir = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], 60)
    py = env_dir / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        120,
    )
    _check_built(env_dir / "share" / "jupyter" / "labextensions" / "vknb-glsl")
    # JupyterLab (from this environment's site-packages) run in the new one lists it from there.
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], 30)
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib.strip()) / "zz_deps.pth").write_text("\n".join(deps) + "\n")
    out = _run([str(py), "-m", "jupyterlab.labextensions", "list"], 60, env=isolated_env(tmp_path))
    assert re.search(
        rf"{re.escape(str(env_dir))}\S*labextensions\s+vknb-glsl v\S+ enabled\s+OK", out
    ), out
