"""Cold start: a new Python process, to the first kernel result on 1 MiB, stage by stage.

Each side runs in a fresh interpreter (``sys.executable``), as a notebook kernel or a script
starts, and reports when it reached each stage on the ``time.time()`` clock; the parent notes
when it spawned the process, so the total counts the interpreter's own start too:

- vknb: ``import numpy, vknb``; ``vknb.compile`` (glslc or the SPIR-V cache, reflection, the
  pipeline; the session device is made on a thread meanwhile); the first call on 1 MiB of
  float32 with numpy arrays in and out.  ``cold``: an empty ``VKNB_CACHE_DIR`` (SPIR-V and
  pipeline caches); ``warm``: the caches a previous process left.
- raw: the minimal ``vulkan`` cffi runtime of :mod:`benchmarks.raw_vulkan` (instance, device,
  glslc, pipeline, upload, dispatch, download), which has no cache of its own.
- CuPy: ``import cupy``; ``cupy.asarray``, the same SAXPY as an elementwise expression, and
  ``cupy.asnumpy`` (CUDA context, NVRTC or its kernel cache).

The driver's own shader cache (NVIDIA keeps one under ``~/.cache/nvidia``) is the machine's and
is not cleared.  Every side checks its result against numpy and says so in its report.

Example
-------
>>> from benchmarks.coldstart import measure                        # doctest: +SKIP
>>> measure("vknb", repeat=3, cold=True)["total_ms"]                # doctest: +SKIP
231.0
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .suite import TINY_SRC

REPO = Path(__file__).resolve().parent.parent

#: 1 MiB of float32.
N = 1 << 18

SRC = TINY_SRC  # the SAXPY of the suite's compile rows

_COMMON = f"""
import json, sys, time
T = {{"spawn": float(sys.argv[1]), "started": time.time()}}
N = {N}
SRC = {SRC!r}
"""

_CHECK = """
rng = np.random.default_rng(11)
x = rng.random(N, dtype=np.float32)
y = rng.random(N, dtype=np.float32)
ref = y + np.float32(2.0) * x
"""

_VKNB = (
    _COMMON
    + """
import numpy as np
import vknb
T["imported"] = time.time()
k = vknb.compile(SRC, name="saxpy")
T["ready"] = time.time()
"""
    + _CHECK
    + """
k(x, y, a=2.0, grid=N)
T["result"] = time.time()
T["ok"] = bool(np.allclose(y, ref, rtol=1e-6, atol=1e-6))
T["device"] = vknb.device().info.name
print(json.dumps(T))
"""
)

_RAW = (
    _COMMON
    + """
import struct
import numpy as np
from benchmarks.raw_vulkan import RawVulkan, glslc_compile
T["imported"] = time.time()
rv = RawVulkan(device_name=sys.argv[2] or None)
p = rv.pipeline(glslc_compile("#version 450\\n" + SRC), 2, 4)
T["ready"] = time.time()
"""
    + _CHECK
    + """
bx, by = rv.buffer(4 * N), rv.buffer(4 * N)
rv.upload(bx, x)
rv.upload(by, y)
rv.sync_dispatch(p, p.descriptor_set([bx, by]), struct.pack("<f", 2.0), (N // 64, 1, 1))
out = rv.download(by, np.empty(N, np.float32))
T["result"] = time.time()
T["ok"] = bool(np.allclose(out, ref, rtol=1e-6, atol=1e-6))
print(json.dumps(T))
"""
)

_CUPY = (
    _COMMON
    + """
import numpy as np
import cupy as cp
T["imported"] = time.time()
T["ready"] = T["imported"]
"""
    + _CHECK
    + """
out = cp.asnumpy(cp.float32(2.0) * cp.asarray(x) + cp.asarray(y))
T["result"] = time.time()
T["ok"] = bool(np.allclose(out, ref, rtol=1e-6, atol=1e-6))
print(json.dumps(T))
"""
)

SCRIPTS = {"vknb": _VKNB, "raw": _RAW, "cupy": _CUPY}

#: The stages each report is split into, in order (ms each).
STAGES = ("interpreter_ms", "import_ms", "ready_ms", "first_call_ms")


def run_once(side: str, cache_dir: str, device_name: str = "") -> dict[str, Any]:
    """One fresh process of ``side``; its stages in ms, ``total_ms`` and ``ok``."""
    env = dict(os.environ)
    env["VKNB_CACHE_DIR"] = cache_dir
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    spawn = time.time()
    p = subprocess.run(
        [sys.executable, "-c", SCRIPTS[side], repr(spawn), device_name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),
        env=env,
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{side} cold-start process failed ({p.returncode}): {p.stderr[-600:]}")
    t = json.loads(lines[-1])
    ms = {
        "interpreter_ms": (t["started"] - t["spawn"]) * 1e3,
        "import_ms": (t["imported"] - t["started"]) * 1e3,
        "ready_ms": (t["ready"] - t["imported"]) * 1e3,
        "first_call_ms": (t["result"] - t["ready"]) * 1e3,
        "total_ms": (t["result"] - t["spawn"]) * 1e3,
    }
    return {**ms, "ok": bool(t["ok"])}


def measure(side: str, repeat: int, cold: bool, device_name: str = "") -> dict[str, Any]:
    """Median stages of ``repeat`` fresh processes (after one discarded warm-up process).

    ``cold``: each process gets an empty cache directory; else all share one that the warm-up
    filled.  ``ok`` is whether every process's result matched numpy.
    """
    shared = tempfile.mkdtemp(prefix="vknb-coldstart-")
    dirs: list[str] = [shared]
    try:
        runs = []
        for i in range(repeat + 1):
            d = shared
            if cold:
                d = tempfile.mkdtemp(prefix="vknb-coldstart-")
                dirs.append(d)
            r = run_once(side, d, device_name)
            if i:
                runs.append(r)
        out: dict[str, Any] = {
            k: statistics.median(r[k] for r in runs) for k in (*STAGES, "total_ms")
        }
        out["ok"] = all(r["ok"] for r in runs)
        return out
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def stages_text(m: dict[str, Any]) -> str:
    """``interpreter 20 + import 50 + compile/device 80 + first call 11 = 161 ms``."""
    names = ("interpreter", "import", "compile+device", "first call")
    parts = " + ".join(f"{n} {m[k]:.0f}" for n, k in zip(names, STAGES, strict=True))
    return f"{parts} = {m['total_ms']:.0f} ms"
