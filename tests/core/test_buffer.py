"""Buffers: writes and reads at offsets, sizes, memory kinds, mapped views, and the staging
path that discrete GPUs use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, last_json, run_python

import vknb

# ---------------------------------------------------------------------------------------------
# Writes and reads
# ---------------------------------------------------------------------------------------------


def test_buffer_write_read_with_offsets(dev, rng, no_leaks):
    size = 1000
    b = vknb.Buffer(size)
    assert b.nbytes == size and not b.closed
    model = np.zeros(size, np.uint8)
    b.write(model)
    for _ in range(60):
        off = int(rng.integers(0, size))
        n = int(rng.integers(0, size - off + 1))
        chunk = rng.integers(0, 256, n, dtype=np.uint8)
        b.write(chunk, offset=off)
        model[off : off + n] = chunk
        r_off = int(rng.integers(0, size))
        r_n = int(rng.integers(0, size - r_off + 1))
        np.testing.assert_array_equal(b.read(offset=r_off, nbytes=r_n), model[r_off : r_off + r_n])
    np.testing.assert_array_equal(b.read(), model)
    # Typed reads and writes, bytes, and reads into `out`.
    b.write(np.arange(10, dtype=np.int32), offset=40)
    np.testing.assert_array_equal(b.read(np.int32, offset=40, nbytes=40), np.arange(10))
    b.write(b"hello", offset=3)
    assert b.read(offset=3, nbytes=5).tobytes() == b"hello"
    out = np.empty(4, np.int32)
    assert b.read(out=out, offset=44) is out
    np.testing.assert_array_equal(out, [1, 2, 3, 4])
    # 2-D and non-contiguous sources are written in logical order.
    m = np.arange(12, dtype=np.int16).reshape(3, 4)
    b.write(m.T, offset=100)
    np.testing.assert_array_equal(b.read(np.int16, offset=100, nbytes=24), m.T.ravel())
    b.close()


def test_buffer_odd_and_zero_sizes(dev, no_leaks):
    for n in (0, 1, 3, 5, 17):
        b = vknb.Buffer(n)
        assert b.nbytes == n
        data = np.arange(n, dtype=np.uint8) + 7
        b.write(data)
        np.testing.assert_array_equal(b.read(), data)
        b.close()


def test_buffer_too_small(dev, no_leaks):
    b = vknb.Buffer(16)
    with pytest.raises(vknb.BufferTooSmall, match="16 bytes"):
        b.write(np.zeros(5, np.float32))
    with pytest.raises(vknb.BufferTooSmall, match="offset 12"):
        b.write(np.zeros(2, np.float32), offset=12)
    with pytest.raises(vknb.BufferTooSmall):
        b.write(b"x", offset=-1)
    with pytest.raises(vknb.BufferTooSmall):
        b.read(np.float32, out=np.empty(5, np.float32))
    with pytest.raises(vknb.BufferTooSmall):
        b.read(offset=10, nbytes=7)
    assert issubclass(vknb.BufferTooSmall, vknb.BufferFailed)
    with pytest.raises(TypeError, match="numpy array or bytes"):
        b.write([1, 2, 3])  # type: ignore[arg-type]
    b.write(np.arange(4, dtype=np.float32))  # the buffer still works
    np.testing.assert_array_equal(b.read(np.float32), np.arange(4))
    b.close()


# ---------------------------------------------------------------------------------------------
# Memory kinds and mapped views
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("memory", ["upload", "readback", "device"])
def test_buffer_memory_kinds_and_mapped(dev, rng, memory, no_leaks):
    data = rng.standard_normal(64).astype(np.float32)
    b = vknb.Buffer(data.nbytes, memory=memory)
    assert b.memory_kind == memory and memory in repr(b)
    b.write(data)
    np.testing.assert_array_equal(b.read(np.float32), data)
    if not b.host_visible:
        with pytest.raises(vknb.NotMapped), b.mapped():
            pass
        b.close()
        return
    with b.mapped(np.float32) as v:
        np.testing.assert_array_equal(v, data)  # sees what write() put there
        v[:] = data * 2  # writes land in the buffer
    np.testing.assert_array_equal(b.read(np.float32), data * 2)
    with b.mapped() as raw:
        assert raw.dtype == np.uint8 and raw.size == data.nbytes
    b.close()
    with pytest.raises(vknb.ObjectClosed), b.mapped():
        pass


def test_mapped_view_is_read_only_after_the_block(dev):
    b = vknb.Buffer(64, memory="upload")
    with b.mapped(np.float32) as v:
        v[:] = 1.0
        assert v.flags.writeable
    # Only the flags are inspected: the memory itself must not be touched here.
    writeable = v.flags.writeable
    del v
    assert not writeable
    np.testing.assert_array_equal(b.read(np.float32), np.ones(16))
    b.close()


_KEPT_VIEW = """
import numpy as np, vknb
b = vknb.Buffer(64, memory="upload")
with b.mapped(np.float32) as v:
    v[:] = 1.0
b.close()
try:
    print(float(v.sum()))
except Exception as e:
    print(type(e).__name__)
print("alive")
"""


def test_reading_a_kept_mapped_view_after_close_does_not_crash(tmp_path):
    res = run_python(_KEPT_VIEW, tmp_path, keep_device=False)
    assert res.returncode == 0, f"the process died with exit code {res.returncode}"
    assert res.stdout.strip().endswith("alive")


_KEPT_VIEW_DEVICE_CLOSE = """
import json, numpy as np, vknb
from vknb import _vk
b = vknb.Buffer(64, memory="upload")
with b.mapped(np.float32) as v:  # `v` stays bound, as users write it
    v[:] = 1.0
vknb.device().close()
print(json.dumps(_vk.validation_counts))
"""


def test_device_close_with_a_kept_mapped_view_is_clean(tmp_path):
    res = run_python(_KEPT_VIEW_DEVICE_CLOSE, tmp_path, {"VKNB_VALIDATION": "1"}, keep_device=False)
    assert res.returncode == 0, res.stderr
    assert last_json(res.stdout)["error"] == 0, res.stderr
    assert "Validation Error" not in res.stderr


# ---------------------------------------------------------------------------------------------
# The staging path (what discrete GPUs use), driven on lavapipe with
# VKNB_FORCE_STAGING=1 in a subprocess (the variable is set for the whole process)
# ---------------------------------------------------------------------------------------------


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
