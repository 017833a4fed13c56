"""The session: its shared device (the best one, unless ``VKNB_DEVICE`` says otherwise),
``vknb.reset()``, and interpreter exit with live objects and pending work.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import last_json, run_python

import vknb

# ---------------------------------------------------------------------------------------------
# The session device
# ---------------------------------------------------------------------------------------------


def test_session_device_is_the_argmax():
    infos = vknb.devices()
    best = max(infos, key=lambda d: (d.score, -d.index))
    dev = vknb.device()
    assert dev is vknb.device()
    if os.environ.get("VKNB_DEVICE"):  # the override wins, and the reason says so
        assert "VKNB_DEVICE" in dev.reason
        return
    assert dev.index == best.index
    assert f"score {best.score}" in dev.reason
    assert dev.info.name in dev.label


# ---------------------------------------------------------------------------------------------
# Reset
# ---------------------------------------------------------------------------------------------


_RESET = """
import json, numpy as np, vknb
out = {}
k = vknb.compile('''
layout(local_size_x = 64) in;
layout(binding = 0) buffer D { float d[]; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < d.length()) d[i] *= 2.0; }''', name="k")
old = vknb.device()
a = vknb.asarray(np.arange(10, dtype=np.float32))
k(a, grid=10)
pinned = vknb.compile(k.source, name="pinned", device=old)
new = vknb.reset()
out["new_device"] = new is vknb.device() and new is not old and old.closed
out["old_closed"] = a.closed
try:
    a.numpy()
    out["old_array"] = "no error"
except vknb.ObjectClosed as e:
    out["old_array"] = "ObjectClosed"
try:
    pinned(np.ones(4, np.float32), grid=4)
    out["pinned"] = "no error"
except vknb.ObjectClosed:
    out["pinned"] = "ObjectClosed"
x = np.arange(100, dtype=np.float32)
k(x, grid=100)  # rebuilt on the new device
out["kernel_after_reset"] = bool((x == 2 * np.arange(100)).all()) and k.device is new
b = vknb.asarray(np.arange(5, dtype=np.float32))
k(b, grid=5)
out["array_after_reset"] = b.numpy().tolist()
s = new.memory_stats()
out["stats"] = [s.buffers, s.allocations]
print(json.dumps(out))
"""


def test_reset_rebuilds_kernels_and_closes_old_arrays(tmp_path):
    res = run_python(_RESET, tmp_path)
    assert res.returncode == 0, res.stderr
    out = last_json(res.stdout)
    assert out["new_device"] and out["old_closed"]
    assert out["old_array"] == "ObjectClosed"
    assert out["pinned"] == "ObjectClosed"
    assert out["kernel_after_reset"]
    assert out["array_after_reset"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert "Traceback" not in res.stderr


# ---------------------------------------------------------------------------------------------
# Shutdown with live objects
# ---------------------------------------------------------------------------------------------


_LIVE_AT_EXIT = """
import numpy as np, vknb
SAXPY = '''
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
'''
k = vknb.compile(SAXPY, name="saxpy")
x = np.ones(1000, np.float32)
y = np.zeros(1000, np.float32)
k(x, y, a=1.0, n=1000, grid=1000)
ax, ay = vknb.asarray(x), vknb.asarray(y)
k(ax, ay, a=1.0, n=1000, grid=1000)
bufs = [vknb.Buffer(n) for n in (1, 100, 1 << 20, 100 << 20)]
up = vknb.Buffer(64, memory="upload")
rb = vknb.Buffer(64, memory="readback")
other = vknb.Device(0)
k2 = vknb.compile(SAXPY, name="saxpy2", device=other)
bx, by = vknb.asarray(x, device=other), vknb.asarray(y, device=other)
k2(bx, by, a=1.0, n=1000, grid=1000)
cycle = {"kernel": k, "array": ax}
cycle["self"] = cycle
PENDING
print("done", flush=True)
"""


_PENDING = """
pending = [k(ax, ay, a=1.0, n=1000, grid=1000, wait=False) for _ in range(3)]
pending2 = k2(bx, by, a=1.0, n=1000, grid=1000, wait=False)
"""


def _assert_clean_exit(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("done")
    for bad in ("Traceback", "Exception ignored", "Error", "Segmentation", "Fatal"):
        assert bad not in res.stderr, res.stderr


@pytest.mark.parametrize("validation", ["0", "1"], ids=["plain", "validation"])
def test_exit_with_live_objects_is_clean(tmp_path, validation):
    res = run_python(
        _LIVE_AT_EXIT.replace("PENDING", ""), tmp_path, {"VKNB_VALIDATION": validation}
    )
    _assert_clean_exit(res)


def test_exit_with_pending_submissions_is_clean(tmp_path):
    res = run_python(_LIVE_AT_EXIT.replace("PENDING", _PENDING), tmp_path)
    _assert_clean_exit(res)


def test_exit_with_pending_submissions_is_clean_under_validation(tmp_path):
    res = run_python(_LIVE_AT_EXIT.replace("PENDING", _PENDING), tmp_path, {"VKNB_VALIDATION": "1"})
    _assert_clean_exit(res)


def test_compile_makes_the_device_while_glslc_runs(tmp_path):
    """A fresh process's first vknb.compile starts the session device on a thread (vknb-device)
    before compiling: the kernel runs on that one device, the thread is gone afterwards."""
    p = run_python(
        """
        import json, threading, numpy as np, vknb
        from vknb.core import session
        made_in = []
        orig = session.Device
        class Spy(orig):
            def __init__(self, *a, **k):
                made_in.append(threading.current_thread().name)
                super().__init__(*a, **k)
        session.Device = Spy
        assert vknb.current_device() is None
        k = vknb.compile('''layout(local_size_x = 64) in;
            layout(binding = 0) buffer B { float b[]; };
            void main() { b[gl_GlobalInvocationID.x] *= 2.0; }''', name="twice")
        x = np.random.default_rng(3).random(1000, dtype=np.float32)
        y = x.copy()
        k(y, grid=y.size)
        alive = [t.name for t in threading.enumerate() if t.name == "vknb-device"]
        print(json.dumps({"made_in": made_in, "same": k.device is vknb.device(),
                          "ok": bool(np.allclose(y, 2 * x)), "alive": alive}))
        """,
        tmp_path,
        keep_device=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = last_json(p.stdout)
    assert out == {"made_in": ["vknb-device"], "same": True, "ok": True, "alive": []}, out


def test_compile_reports_a_device_that_cannot_be_made(tmp_path):
    """The background device's failure is raised by compile, in the caller, as device() would
    raise it (the thread swallows nothing the user needs to see); the process exits at once."""
    p = run_python(
        """
        import vknb
        try:
            vknb.compile("layout(local_size_x = 1) in; void main() {}", name="k")
        except vknb.NoDeviceFound as e:
            print("RAISED", e)
        """,
        tmp_path,
        env={"VKNB_DEVICE": "no-such-gpu"},
        keep_device=False,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "RAISED VKNB_DEVICE='no-such-gpu' matches no device" in p.stdout, p.stdout
