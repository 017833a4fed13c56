"""The logical device: its lifetime and children, a wait that runs past ``VKNB_TIMEOUT_S``
(a runaway kernel), and use from several threads (statistics polled while dispatching, two
threads with kernels of their own).

Numbers worth reading are printed (run with ``-s``) and recorded with ``record_property``.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from helpers import (
    DOUBLE,
    DOUBLE_A,
    SAXPY_BOUNDED,
    child_env,
    last_json,
    leak_snapshot,
    make_staging,
    report,
)

import vknb

# ---------------------------------------------------------------------------------------------
# Device lifetime
# ---------------------------------------------------------------------------------------------


def test_second_device_and_its_children(dev, rng):
    x = rng.standard_normal(100).astype(np.float32)
    d = vknb.Device(dev.index)
    assert d is not dev and d is not vknb.device()
    assert d.reason.startswith("chosen by index")
    a = vknb.asarray(x, device=d)
    z = vknb.zeros(100, device=d)
    buf = vknb.Buffer(64, device=d)
    k = vknb.compile(DOUBLE, name="double_d", device=d)
    assert k.device is d
    rec = k(a, grid=100)
    assert rec.bytes_in == rec.bytes_out == 0
    np.testing.assert_allclose(a.numpy(), 2 * x, rtol=1e-6)
    y = x.copy()
    k(y, grid=100)
    np.testing.assert_allclose(y, 2 * x, rtol=1e-6)
    live = d.live_objects()
    assert live.get("Buffer", 0) >= 3 and live.get("ComputePipeline", 0) == 1
    # The session device's memory is separate.
    assert d.memory_stats().buffers >= 3
    # An Array of one device cannot go to a kernel of another.
    with pytest.raises(ValueError, match="binding 'D'"):
        k(vknb.asarray(x), grid=100)

    d.close()
    assert d.closed and "closed" in repr(d)
    assert a.closed and z.closed and buf.closed
    for use in (
        lambda: a.numpy(),
        lambda: z.update(np.zeros(100, np.float32)),
        lambda: buf.write(b"1234"),
        lambda: buf.read(),
        lambda: k(y, grid=100),
        lambda: k(a, grid=100),
        lambda: d.memory_stats(),
        lambda: vknb.Buffer(16, device=d),
        lambda: vknb.asarray(x, device=d),
        lambda: vknb.compile(DOUBLE, name="late", device=d),
        lambda: d.submit(lambda cmd: None),
    ):
        with pytest.raises(vknb.ObjectClosed):
            use()
    d.close()  # idempotent
    a.close()
    k.close()
    k.close()
    # The session device is untouched.
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)


def test_device_with_block_and_bad_index(dev):
    with vknb.Device(dev.index) as d:
        a = vknb.asarray(np.arange(3, dtype=np.int32), device=d)
        np.testing.assert_array_equal(a.numpy(), [0, 1, 2])
        d.synchronize()
        assert d.submit(lambda cmd: None, label="nothing").done
    assert d.closed and a.closed
    d.close()
    n = len(vknb.devices())
    for bad in (n, n + 7, -1):
        with pytest.raises(vknb.NoDeviceFound, match=re.escape(vknb.devices()[0].name)):
            vknb.Device(bad)
    assert vknb.use(dev.index) is dev  # choosing the current device changes nothing


# ---------------------------------------------------------------------------------------------
# A runaway kernel
# ---------------------------------------------------------------------------------------------


_RUNAWAY = """
import json, os, time, numpy as np, vknb
# lavapipe stops any one invocation after 65535 loop iterations, so the runaway is made of
# many invocations, each looping while a push constant says so.
k = vknb.compile('''
layout(local_size_x = 256) in;
layout(binding = 0) buffer D { float data[]; };
layout(push_constant) uniform P { uint flag; } p;
void main() {
    uint i = gl_GlobalInvocationID.x & 3u;
    while (p.flag != 0u) { data[i] += 1.0; }
}''', name="runaway")
d = np.zeros(4, np.float32)
k(d, flag=0, groups=1)  # terminates
t = time.perf_counter()
try:
    k(d, flag=1, groups=65535)
    out = {"raised": None}
except Exception as e:
    out = {"raised": type(e).__name__, "message": str(e),
           "vulkan": isinstance(e, vknb.VulkanError)}
out["elapsed"] = time.perf_counter() - t
print(json.dumps(out), flush=True)
os._exit(0)  # the driver cannot abort the shader: leave without waiting for it
"""


def test_runaway_kernel_times_out(tmp_path, record_property):
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUNAWAY],
        cwd=tmp_path,
        env=child_env(tmp_path, {"VKNB_TIMEOUT_S": "2"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the runaway kernel did not raise within 60 s: {stdout} {stderr}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = last_json(stdout)
    report(record_property, "runaway", out)
    assert out["raised"] == "DeviceLost" and out["vulkan"], (out, stderr)
    assert "VKNB_TIMEOUT_S" in out["message"] and "2 s" in out["message"]
    assert "vknb.reset()" in out["message"]
    assert 1.5 <= out["elapsed"] < 30


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saxpy() -> Iterator[vknb.Kernel]:
    k = vknb.compile(SAXPY_BOUNDED, name="saxpy_fuzz")
    yield k
    k.close()


class Poller(threading.Thread):
    """Reads statistics and timings in a loop, as a widget refreshing from another thread."""

    def __init__(self, dev: vknb.Device) -> None:
        super().__init__(daemon=True)
        self.dev = dev
        self.stop = threading.Event()
        self.polls = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                s = self.dev.memory_stats()
                assert s.allocated >= s.used >= 0
                recs = vknb.timings(last=20)
                assert all(r.host_ms >= 0 for r in recs)
                self.dev.live_objects()
                self.polls += 1
                time.sleep(0.0005)
        except BaseException as e:
            self.errors.append(e)


def test_polling_while_dispatching(dev, rng, saxpy, record_property):
    poller = Poller(dev)
    poller.start()
    t0 = time.perf_counter()
    try:
        for i in range(200):
            n = 100 + i
            x = rng.standard_normal(n).astype(np.float32)
            y = rng.standard_normal(n).astype(np.float32)
            y0 = y.copy()
            rec = saxpy(x, y, a=2.0, n=n, grid=n)
            assert rec.kernel == "saxpy_fuzz"
            np.testing.assert_allclose(y, y0 + 2 * x, rtol=1e-5, atol=1e-5)
    finally:
        poller.stop.set()
        poller.join(10)
    dt = time.perf_counter() - t0
    report(
        record_property,
        "poll_while_dispatch",
        {"dispatches": 200, "polls": poller.polls, "seconds": round(dt, 2)},
    )
    assert not poller.errors, poller.errors
    assert poller.polls > 0


def test_two_threads_dispatching_their_own_kernels(dev, record_property):
    make_staging(dev)
    before = leak_snapshot(dev)
    errors: list[BaseException] = []
    done = collections.Counter()

    def worker(seed: int, scale: float) -> None:
        try:
            r = np.random.default_rng(seed)
            k = vknb.compile(DOUBLE_A, name=f"thread{seed}")
            for i in range(100):
                n = int(r.integers(1, 5000))
                x = r.standard_normal(n).astype(np.float32)
                if i % 2:
                    a = vknb.asarray(x)
                    k(a, a=scale, grid=n)
                    got = a.numpy()
                    a.close()
                else:
                    got = x.copy()
                    k(got, a=scale, grid=n)
                np.testing.assert_allclose(got, scale * x, rtol=1e-6, atol=1e-6)
                done[seed] += 1
            k.close()
        except BaseException as e:
            errors.append(e)

    poller = Poller(dev)
    poller.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(s, float(s + 2))) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    poller.stop.set()
    poller.join(10)
    dt = time.perf_counter() - t0
    report(
        record_property,
        "two_threads",
        {"dispatches": dict(done), "polls": poller.polls, "seconds": round(dt, 2)},
    )
    assert not errors, errors
    assert not poller.errors, poller.errors
    assert done == {1: 100, 2: 100}
    assert leak_snapshot(dev) == before  # counters were updated consistently by both threads


def test_a_bad_timeout_is_refused_when_the_device_is_made(monkeypatch) -> None:
    """Not only at the first wait that outlasts its spin: on a fast GPU short waits never get
    there, so a bad VKNB_TIMEOUT_S would go unnoticed."""
    monkeypatch.setenv("VKNB_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="VKNB_TIMEOUT_S"):
        vknb.Device(0)
