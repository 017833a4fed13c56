"""Plain helpers shared by test modules in several directories (fixtures live in conftest.py).

Test modules import them as ``from helpers import ...``: pytest puts ``tests/`` on ``sys.path``
for its top-level conftest.py (rootdir-based ``prepend`` import mode).

- garbage collection before counters are compared (:func:`settle`), leak snapshots;
- running a script in a fresh interpreter (:func:`run_python`, :func:`child_env`,
  :func:`last_json`);
- reporting numbers worth reading (:func:`report`) and the hypothesis settings of the fuzzers;
- shader sources that tests of several modules use.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings

import vknb

REPO = Path(__file__).resolve().parents[1]


# --- garbage collection and leak snapshots --------------------------------------------------


def settle() -> None:
    """Collect garbage so that finalizers run before counters are compared."""
    for _ in range(3):
        gc.collect()


def leak_snapshot(dev: vknb.Device) -> dict[str, Any]:
    """Memory counters and live objects after gc, synchronize and trim."""
    settle()
    dev.synchronize()
    dev.trim()
    s = dev.memory_stats()
    return {
        "allocated": s.allocated,
        "used": s.used,
        "blocks": s.blocks,
        "buffers": s.buffers,
        "allocations": s.allocations,
        "live": dev.live_objects(),
    }


def make_staging(dev: vknb.Device) -> None:
    """One transfer, so that the staging buffers a device makes on its first exist."""
    vknb.asarray(np.zeros(4, np.float32), device=dev).numpy()


# --- child interpreters ---------------------------------------------------------------------


def child_env(
    tmp_path: Path, env: dict[str, str] | None = None, *, keep_device: bool = True
) -> dict[str, str]:
    """The environment of a child interpreter: its own cache in ``tmp_path``, this checkout on
    ``PYTHONPATH``, no validation layer unless ``env`` asks; ``keep_device=False`` also drops
    ``VKNB_DEVICE`` (the child picks the session device itself)."""
    full = dict(os.environ)
    full["VKNB_CACHE_DIR"] = str(tmp_path / "cache")
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full.get("PYTHONPATH", "")) if p)
    if not keep_device:
        full.pop("VKNB_DEVICE", None)
    full.pop("VKNB_VALIDATION", None)
    full.update(env or {})
    return full


def run_python(
    code: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    *,
    keep_device: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, cwd and cache in ``tmp_path`` (:func:`child_env`)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=child_env(tmp_path, env, keep_device=keep_device),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(out: str) -> Any:
    """The JSON object on the last line of a child's stdout."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines, "the child printed nothing"
    return json.loads(lines[-1])


# --- reporting and fuzzing ------------------------------------------------------------------


def report(record_property: Any, name: str, value: Any) -> None:
    print(f"\n[{name}] {value}")
    record_property(name, value)


FUZZ = settings(
    database=None,  # never write .hypothesis/ into the working directory
    derandomize=True,  # the same examples on every run (xfail(strict) markers stay stable)
    deadline=None,  # per-example bounds are enforced explicitly by the tests
    suppress_health_check=list(HealthCheck),
)


# --- shaders --------------------------------------------------------------------------------


# A kernel whose GPU time grows with `iters` (the timing tests use it).
BUSY_SRC = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint iters; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= n) return;
    float s = y[i];
    for (uint j = 0u; j < iters; j++) s = s * 0.999 + 1.0;
    y[i] = s;
}
"""


# The saxpy of the compute tests (bindings named by instance, block and member).
SAXPY = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; } xs;
layout(set = 0, binding = 1) buffer Y { float y[]; } ys;
layout(push_constant) uniform P { float a; uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < n) ys.y[i] += a * xs.x[i];
}
"""


def saxpy_data(rng: np.random.Generator, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    return x, y


def check_saxpy(k: vknb.Kernel, rng: np.random.Generator, n: int = 777) -> None:
    """A good call gives the right answer."""
    x, y = saxpy_data(rng, n)
    y0 = y.copy()
    k(x, y, a=1.5, n=n, grid=n)
    np.testing.assert_allclose(y, y0 + np.float32(1.5) * x, rtol=1e-5, atol=1e-6)


# The same with bounds checks on both arrays (fuzzed calls may bind short arrays).
SAXPY_BOUNDED = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; } xs;
layout(set = 0, binding = 1) buffer Y { float y[]; } ys;
layout(push_constant) uniform P { float a; uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < n && i < xs.x.length() && i < ys.y.length()) ys.y[i] += a * xs.x[i];
}
"""


# Doubles a buffer in place.
DOUBLE = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer D { float d[]; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < d.length()) d[i] *= 2.0; }
"""


# Scales a buffer in place by the push constant `a`.
DOUBLE_A = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer D { float d[]; };
layout(push_constant) uniform P { float a; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < d.length()) d[i] *= a; }
"""


def check_double(k: vknb.Kernel, rng: np.random.Generator) -> None:
    d = rng.standard_normal(300).astype(np.float32)
    d0 = d.copy()
    k(d, a=-3.0, grid=300)
    np.testing.assert_allclose(d, -3 * d0, rtol=1e-6)
