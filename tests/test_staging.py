"""The staging path (what discrete GPUs use) driven on lavapipe with VKNB_FORCE_STAGING=1.

Runs in a subprocess with the environment variable set for the whole process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORKLOAD = r"""
import json, numpy as np, vknb
from vknb import _vk
from vknb.core.buffer import staging_for
assert vknb.config.get("VKNB_FORCE_STAGING")
rng = np.random.default_rng(7)
out = {}
# Round trips across the staging chunk size (several chunks, odd sizes, offsets).
chunk = staging_for(vknb.device()).chunk
for n in (1, 3, 4097, chunk - 1, chunk + 5, 2 * chunk + 12345):
    a = rng.integers(0, 256, n, dtype=np.uint8)
    d = vknb.asarray(a)
    assert np.array_equal(d.numpy(), a), n
    d.close()
b = vknb.Buffer(4096)
b.write(np.arange(100, dtype=np.int32), offset=100)
assert (b.read(np.int32, offset=100, nbytes=400) == np.arange(100)).all()
# A kernel with numpy arguments: upload, dispatch, write-back, sync and async.
k = vknb.compile('''
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
''', name="saxpy")
x = rng.random(100_000, dtype=np.float32)
y = rng.random(100_000, dtype=np.float32)
ref = y + 2 * x
rec = k(x, y, a=2.0, n=x.size, grid=x.size)
np.testing.assert_allclose(y, ref, rtol=1e-6)
s = k(x, y, a=1.0, n=x.size, grid=x.size, wait=False)
vknb.synchronize()
np.testing.assert_allclose(y, ref + x, rtol=1e-6)
assert s.wait().bytes_out == y.nbytes
out["bytes_in"], out["bytes_out"] = rec.bytes_in, rec.bytes_out
k.close(); b.close()
dev = vknb.device()
out["stats_used"] = dev.memory_stats().used
dev.close()
out["validation"] = dict(_vk.validation_counts)
print(json.dumps(out))
"""


def test_staging_path_round_trips_and_kernels(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        VKNB_FORCE_STAGING="1",
        VKNB_VALIDATION="1",
        VKNB_CACHE_DIR=str(tmp_path),
        VKNB_STAGING_MB="1",
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    p = subprocess.run(
        [sys.executable, "-c", WORKLOAD],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["bytes_in"] == 800_000 and out["bytes_out"] == 400_000
    assert out["validation"]["error"] == 0, p.stderr
    assert "Validation Error" not in p.stderr
