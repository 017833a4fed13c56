"""Environment switches that trade measurement for latency: VKNB_TIMESTAMPS, VKNB_SPIN_US."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CODE = r"""
import json, numpy as np, vknb
k = vknb.compile('''
layout(local_size_x = 64) in;
layout(binding = 0) buffer Y { float y[]; };
void main() { y[gl_GlobalInvocationID.x] += 1.0; }''', name="inc")
y = np.random.default_rng(3).random(256).astype(np.float32)
ref = y + 2
rec = k(y, grid=256)
with vknb.batch() as b:
    k(vknb.asarray(np.zeros(64, np.float32)), grid=64)
k(y, grid=256)
np.testing.assert_allclose(y, ref, rtol=1e-6)
print(json.dumps({"gpu_ms": rec.gpu_ms, "batch_gpu_ms": b.gpu_ms, "host_ms": rec.host_ms}))
"""


def run(env: dict[str, str], tmp_path: Path) -> dict[str, object]:
    full = dict(os.environ, VKNB_CACHE_DIR=str(tmp_path), **env)
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full.get("PYTHONPATH", "")) if p)
    p = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=full, timeout=120
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_timestamps_on_by_default(tmp_path: Path) -> None:
    out = run({}, tmp_path)
    assert isinstance(out["gpu_ms"], float) and out["gpu_ms"] >= 0
    assert isinstance(out["batch_gpu_ms"], float)


def test_timestamps_off_gives_no_gpu_time_and_right_results(tmp_path: Path) -> None:
    out = run({"VKNB_TIMESTAMPS": "0", "VKNB_SPIN_US": "0"}, tmp_path)
    assert out["gpu_ms"] is None and out["batch_gpu_ms"] is None
    assert isinstance(out["host_ms"], float) and out["host_ms"] > 0
