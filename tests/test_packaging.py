"""The package installs anywhere: a wheel of the repository, installed into a fresh virtual
environment outside it, runs a library kernel and a ``%%glsl`` cell from a directory outside it.

The wheel is built from a copy of the files git would commit (tracked, and untracked but not
ignored), so that a stale build/ or egg-info in the work tree can neither leak into it nor be
written there.  The new environment gets vknb from the wheel only; its dependencies (numpy,
vulkan, IPython...) come from this interpreter's site-packages through a ``.pth`` line (whose
own ``.pth`` files, the editable install's finder among them, are not run), so no index is needed
to install.  Building needs setuptools>=77 (pyproject.toml): this environment's when it has it,
else pip's isolated build fetches it from the package index.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUBPACKAGES = (
    "vknb/_vk",
    "vknb/core",
    "vknb/compute",
    "vknb/shader",
    "vknb/ui",
    "vknb/library",
    "vknb/dask",
)


def _run(cmd: list[str], timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    assert p.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    )
    return p


def _source_copy(dst: Path) -> Path:
    """The files git would commit, copied to ``dst``."""
    git = shutil.which("git")
    assert git, "git is needed to list the repository's files (apt-get install git)"
    out = _run([git, "ls-files", "-z", "-c", "-o", "--exclude-standard"], 60, cwd=REPO).stdout
    for rel in filter(None, out.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 0


def _build_wheel(tmp: Path) -> Path:
    src = _source_copy(tmp / "src")
    dist = tmp / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(src)]
    if _setuptools_major() >= 77:  # offline: build with this environment's setuptools
        cmd.insert(4, "--no-build-isolation")
    _run(cmd, 180)
    wheels = list(dist.glob("vknb-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _venv(tmp: Path, wheel: Path) -> tuple[Path, Path]:
    """A fresh environment with the wheel installed; its python and its site-packages."""
    env_dir = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], 60)
    py = env_dir / "bin" / "python"
    purelib = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], 30
        ).stdout.strip()
    )
    # Dependencies from this interpreter's site-packages, never the repository itself.
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    assert deps and not any(Path(p).resolve() == REPO for p in deps)
    (purelib / "zz_vknb_test_deps.pth").write_text("\n".join(deps) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "--no-cache-dir",
            str(wheel),
        ],
        120,
    )
    return py, purelib


CHECK = r"""
import os, sys
from pathlib import Path

import numpy as np

REPO, PURELIB = Path(sys.argv[1]), Path(sys.argv[2])
assert not any(Path(p or os.getcwd()).resolve() == REPO for p in sys.path), sys.path
assert not Path.cwd().resolve().is_relative_to(REPO)

import vknb
from vknb import config, library

where = Path(vknb.__file__).resolve()
assert where.is_relative_to(PURELIB), f"vknb imported from {where}, not from the new venv"

# The shader library is package data of the installed package.
d = config.shader_dir()
assert d.resolve().is_relative_to(PURELIB / "vknb"), d
comps = sorted(p.name for p in d.glob("*.comp"))
want = sorted(p.name for p in (REPO / "vknb" / "library" / "shaders").glob("*.comp"))
assert comps == want, (comps, want)

# A library kernel.
rng = np.random.default_rng(7)
x = rng.standard_normal(4099).astype(np.float32)
y = rng.standard_normal(4099).astype(np.float32)
y0 = y.copy()
out = library.saxpy(2.0, x, y)
np.testing.assert_allclose(out, 2.0 * x + y0, rtol=1e-6, atol=1e-6)

# A %%glsl cell through a real IPython shell.
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

cfg = Config()
cfg.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=cfg)
shell.run_line_magic("load_ext", "vknb")
shell.run_cell_magic("glsl", "scale --quiet", '''
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < x.length()) y[i] = a * x[i] + 1.0;
}
''')
z = np.zeros_like(x)
shell.user_ns.update(x=x, z=z)
shell.run_cell("scale(x, z, a=-3.0, grid=x.size)").raise_error()
np.testing.assert_allclose(z, -3.0 * x + 1.0, rtol=1e-6, atol=1e-6)

# Everything of vknb that ran came from the new environment.
stray = sorted(
    n for n, m in sys.modules.items()
    if n.split(".")[0] == "vknb" and getattr(m, "__file__", None)
    and not Path(m.__file__).resolve().is_relative_to(PURELIB)
)
assert not stray, stray
print("INSTALLED-OK", where)
"""


def test_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    t0 = time.monotonic()
    wheel = _build_wheel(tmp_path)

    names = set(zipfile.ZipFile(wheel).namelist())
    shaders = sorted((REPO / "vknb" / "library" / "shaders").glob("*.comp"))
    assert shaders, "no .comp files in the repository's vknb/library/shaders"
    missing = [f"vknb/library/shaders/{p.name}" for p in shaders]
    missing += ["vknb/py.typed", "vknb/library/shaders/random.glsl"]
    missing += [f"{pkg}/__init__.py" for pkg in SUBPACKAGES]
    # every module of the package (a new module is shipped without touching pyproject.toml)
    missing += [p.relative_to(REPO).as_posix() for p in (REPO / "vknb").rglob("*.py")]
    missing = sorted(set(missing) - names)
    assert not missing, f"the wheel lacks {missing}"
    # Besides the package: the prebuilt JupyterLab extension, as data files Jupyter finds under
    # share/jupyter/labextensions/vknb-glsl of the environment.
    version = wheel.name.split("-")[1]
    ext = f"vknb-{version}.data/data/share/jupyter/labextensions/vknb-glsl/"
    built = REPO / "vknb" / "labextension"
    want_ext = {ext + p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()}
    assert want_ext and want_ext <= names, f"the wheel lacks {sorted(want_ext - names)}"
    others = sorted(
        n
        for n in names
        if not n.split("/")[0].endswith(".dist-info")
        and not n.startswith("vknb/")
        and n not in want_ext
    )
    assert not others, f"the wheel ships more than vknb and its lab extension: {others}"

    py, purelib = _venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VKNB_SHADERS")}
    env["VKNB_CACHE_DIR"] = str(tmp_path / "cache")
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    p = _run([str(py), "-c", CHECK, str(REPO), str(purelib)], 180, cwd=work, env=env)
    assert "INSTALLED-OK" in p.stdout, p.stdout + p.stderr

    # The console script the wheel declares.
    script = py.parent / "vknb"
    assert script.is_file(), "the wheel installed no `vknb` command"
    h = _run([str(script), "--help"], 60, cwd=work, env=env)
    assert "devices" in h.stdout, h.stdout

    # The prebuilt JupyterLab extension: installed where Jupyter finds it, and enabled there
    # (JupyterLab comes from this interpreter's site-packages, through the .pth above).
    venv = py.parent.parent
    ext_dir = venv / "share" / "jupyter" / "labextensions" / "vknb-glsl"
    meta = json.loads((ext_dir / "package.json").read_text())
    assert (
        meta["name"] == "vknb-glsl" and (ext_dir / meta["jupyterlab"]["_build"]["load"]).is_file()
    )
    jenv = dict(env)
    jenv.pop("JUPYTER_PATH", None)
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        jenv[var] = str(tmp_path / "jupyter" / var.lower())
    out = _run([str(py), "-m", "jupyterlab.labextensions", "list"], 60, cwd=work, env=jenv)
    listing = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(
        rf"{re.escape(str(venv))}\S*labextensions\s+vknb-glsl v\S+ enabled\s+OK", listing
    ), listing
    print(f"packaging check: {time.monotonic() - t0:.1f} s")
