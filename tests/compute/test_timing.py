"""Per-dispatch records: their fields, the session's list and its listeners, and GPU times
from timestamp queries (both readouts) that track the work and stay with their own call.
"""

from __future__ import annotations

import json
import pickle
import statistics
import threading
import time

import numpy as np
import pytest
from helpers import BUSY_SRC, saxpy_data

import vknb
from vknb import timing

# ---------------------------------------------------------------------------------------------
# Dispatch records
# ---------------------------------------------------------------------------------------------


def test_dispatch_record_fields(saxpy, rng, dev):
    x, y = saxpy_data(rng, 5000)
    t0 = time.time()
    rec = saxpy(x, y, a=1.0, n=5000, grid=5000)
    assert rec.kernel == "saxpy"
    assert rec.groups == (79, 1, 1) and rec.local_size == (64, 1, 1)
    assert rec.invocations == 79 * 64
    assert rec.device == dev.info.name
    if dev.info.timestamps:
        assert rec.gpu_ms is not None and rec.gpu_ms >= 0
    assert rec.host_ms > 0
    assert t0 - 1 <= rec.time <= time.time() + 1
    assert rec.bytes_in == 2 * x.nbytes and rec.bytes_out == y.nbytes
    assert rec.kernel_bytes == 3 * x.nbytes  # x read; y read and written
    assert rec.bandwidth_gbs is None or rec.bandwidth_gbs > 0
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["kernel"] == "saxpy" and d["groups"] == [79, 1, 1]


def test_dispatch_record_is_plain_data():
    a = vknb.DispatchRecord("k", (2, 1, 1), (64, 1, 1), 0.5, 1.0, kernel_bytes=1000)
    b = vknb.DispatchRecord("k", (2, 1, 1), (64, 1, 1), 0.5, 1.0, kernel_bytes=1000, time=a.time)
    assert a == b and a != vknb.DispatchRecord("k", (2, 1, 1), (64, 1, 1), 0.6, 1.0)
    assert a.to_dict()["gpu_ms"] == 0.5 and list(a.to_dict())[:5] == [
        "kernel",
        "groups",
        "local_size",
        "gpu_ms",
        "host_ms",
    ]
    assert "gpu_ms=0.5" in repr(a) and a.invocations == 128
    assert a.bandwidth_gbs == pytest.approx(1000 / 0.5e-3 / 1e9)
    a.gpu_ms = None
    assert a.gpu_ms is None and a.bandwidth_gbs is None


def test_timings_append_and_filter(saxpy, rng):
    x, y = saxpy_data(rng, 100)
    seen: list[vknb.DispatchRecord] = []
    timing.add_listener(seen.append)
    try:
        before = len(vknb.timings())
        recs = [saxpy(x, y, a=1.0, n=100, grid=100) for _ in range(3)]
    finally:
        timing.remove_listener(seen.append)
    after = vknb.timings()
    assert len(after) == min(before + 3, timing.MAX_RECORDS)
    assert after[-3:] == recs and seen == recs
    assert vknb.timings(last=1) == [recs[-1]]
    assert vknb.timings(last=0) == []
    assert all(r.kernel == "saxpy" for r in vknb.timings(kernel="saxpy"))
    assert vknb.timings(kernel="no-such-kernel") == []
    saxpy(x, y, a=1.0, n=100, grid=100)
    assert seen == recs  # the listener was removed


# ---------------------------------------------------------------------------------------------
# GPU times
# ---------------------------------------------------------------------------------------------


def test_gpu_times_wherever_the_queue_has_timestamps(saxpy, rng, dev):
    if dev.info.type == "cpu":
        assert dev.info.timestamps  # lavapipe has them: CI must measure GPU times
    x, y = saxpy_data(rng)
    rec = saxpy(x, y, a=1.0, n=x.size, grid=x.size)
    if dev.info.timestamps:
        assert rec.gpu_ms is not None and rec.gpu_ms >= 0
    else:
        assert rec.gpu_ms is None


@pytest.mark.parametrize("readout", ["copy", "host"])
def test_gpu_time_tracks_the_work(readout, dev, monkeypatch):
    """Timestamps measure the dispatch itself: 100x the loop gives several times the GPU time,
    and the GPU time of a long dispatch is most of its wall time (both readout modes)."""
    if not dev.info.timestamps:
        pytest.fail(f"{dev.info.name} has no timestamps on its compute queue")
    monkeypatch.setenv("VKNB_TS_READOUT", readout)
    # A distinct source per mode: a fresh pipeline built under this readout.
    k = vknb.compile(BUSY_SRC + f"// {readout}\n", name=f"busy_{readout}")
    if readout == "host" and dev.host_query_reset:
        assert k.pipeline.timestamps.host_reset
    n = 2048
    iters = 5000 if dev.info.type == "cpu" else 500_000  # tens of ms on lavapipe, ~1 ms on a GPU
    y = vknb.zeros(n, np.float32)
    small = min(k(y, n=n, iters=iters // 100, grid=n).gpu_ms for _ in range(5))
    recs = [k(y, n=n, iters=iters, grid=n) for _ in range(3)]
    big = min(r.gpu_ms for r in recs)
    assert big > 5 * small, (small, big)
    r = max(recs, key=lambda r: r.gpu_ms)
    assert 0.5 * r.host_ms <= r.gpu_ms <= r.host_ms * 1.05, (r.gpu_ms, r.host_ms)
    # the loop ran: s_k = 1000 (1 - 0.999^k) after k iterations from 0
    got = y.numpy()
    assert np.all(np.isfinite(got)) and got.min() > 0
    k.close()
    y.close()


@pytest.mark.parametrize("readout", ["copy", "host"])
def test_gpu_times_read_late_belong_to_their_own_call(readout, dev, monkeypatch):
    """Repeated calls read their timestamps later, from alternating slots: records read only
    at the end still carry their own GPU time (light and heavy calls interleaved), also when a
    call with numpy arguments reuses a slot in between and when the kernel is closed first."""
    if not dev.info.timestamps:
        pytest.fail(f"{dev.info.name} has no timestamps on its compute queue")
    monkeypatch.setenv("VKNB_TS_READOUT", readout)
    k = vknb.compile(BUSY_SRC + f"// late {readout}\n", name=f"late_{readout}")
    n = 1024
    # (far above a light call, also when the CPU driver's threads are starved by other work)
    heavy = 40_000 if dev.info.type == "cpu" else 300_000
    y = vknb.zeros(n, np.float32)
    k(y, n=n, iters=1, grid=n)
    k(y, n=n, iters=heavy, grid=n)  # both calls now take the repeated-call path
    recs = []
    for i in range(12):
        iters = heavy if i % 3 == 2 else 1  # a pattern that does not follow the two slots
        recs.append((iters, k(y, n=n, iters=iters, grid=n)))
        if i == 6:  # numpy arguments: the general path takes a slot, reading what it held
            k(np.zeros(n, np.float32), n=n, iters=1, grid=n)
    pending = [r for _, r in recs if r.pending is not None]
    assert pending, "repeated calls should leave their GPU time to be read later"
    # Records whose slot was readied since hold its raw ticks, converted when first read; a
    # pickled record carries its converted time (never the slot or the query pool).
    assert any(r._raw is not None for _, r in recs), "no record kept raw ticks"
    copies = [pickle.loads(pickle.dumps(r)) for _, r in recs]
    times = [(it, r.gpu_ms) for it, r in recs]
    assert [c.gpu_ms for c in copies] == [t for _, t in times]
    assert [c.gpu_start for c in copies] == [r.gpu_start for _, r in recs]
    light = statistics.median(t for it, t in times if it == 1)
    least_heavy = min(t for it, t in times if it == heavy)
    assert least_heavy > 5 * light, times  # no heavy call got a light call's time
    assert all(t < least_heavy / 2 for it, t in times if it == 1), times  # nor the reverse
    last = k(y, n=n, iters=heavy, grid=n)
    k.close()  # the pipeline's queries go: the waiting record reads them first
    assert last.pending is None and last.gpu_ms > 5 * light
    y.close()


def test_gpu_times_stay_with_their_call_when_threads_share_a_kernel(dev):
    """Two threads call one kernel (heavy and light calls) while a third reads the records:
    every record keeps its own call's GPU time (each record reads the slot its call ran on)."""
    if not dev.info.timestamps:
        pytest.fail(f"{dev.info.name} has no timestamps on its compute queue")
    k = vknb.compile(BUSY_SRC + "// threads\n", name="busy_threads")
    n = 1024
    # (far above a light call, also when the CPU driver's threads are starved by other work)
    heavy = 40_000 if dev.info.type == "cpu" else 300_000
    ys = {it: vknb.zeros(n, np.float32) for it in (1, heavy)}
    recs: dict[int, list[vknb.DispatchRecord]] = {1: [], heavy: []}
    errors: list[BaseException] = []
    stop = threading.Event()

    def caller(it: int) -> None:
        try:
            for _ in range(12):
                recs[it].append(k(ys[it], n=n, iters=it, grid=n))
        except BaseException as e:  # surfaced below
            errors.append(e)

    def reader() -> None:
        while not stop.is_set():
            for lst in list(recs.values()):
                for r in list(lst):
                    _ = r.gpu_ms

    threads = [threading.Thread(target=caller, args=(it,)) for it in (1, heavy)]
    rt = threading.Thread(target=reader)
    rt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    rt.join(30)
    assert not errors, errors
    light = [r.gpu_ms for r in recs[1]]
    heavy_t = [r.gpu_ms for r in recs[heavy]]
    assert None not in light and None not in heavy_t
    # No heavy call may show a light call's time (what mixing up slots would give). A light
    # call may show more than its own work: on a CPU driver its timestamps can span work of
    # the other thread that the queue ran in between, so only its median is checked.
    assert min(heavy_t) > 5 * statistics.median(light), (light, heavy_t)
    k.close()
    for y in ys.values():
        y.close()


def test_records_carry_the_kernel_version_and_when_the_gpu_ran(dev, rng) -> None:
    """An edited kernel of the same name has another version; GPU start and end lie inside the
    call on the host clock (calibrated where the device has calibrated timestamps)."""
    import time

    src = "layout(local_size_x = 64) in; layout(binding = 0) buffer B { float b[]; };\n"
    k1 = vknb.compile(src + "void main() { b[gl_GlobalInvocationID.x] *= 2.0; }", name="ver")
    k2 = vknb.compile(src + "void main() { b[gl_GlobalInvocationID.x] *= 3.0; }", name="ver")
    assert k1.version != k2.version and len(k1.version) == 8
    x = vknb.asarray(rng.random(1 << 16, dtype=np.float32))
    for k in (k1, k2, k2, k2):  # the repeated calls resolve their times lazily
        t0 = time.time()
        rec = k(x, grid=x.size)
        t1 = time.time()
        assert rec.version == k.version
        if rec.gpu_ms is None:
            continue
        assert t0 - 0.05 <= rec.gpu_start <= rec.gpu_end <= t1 + 0.05
        assert abs((rec.gpu_end - rec.gpu_start) * 1e3 - rec.gpu_ms) < 1e-3  # (float seconds)
        if "VK_EXT_calibrated_timestamps" in dev.extensions:
            assert rec.calibrated


def test_a_late_wait_keeps_the_time_of_the_call(dev, rng) -> None:
    """A wait=False call whose wait() comes later is recorded at the time of the call: the
    record's time lies within the call, and the GPU ran between the call and the wait."""
    k = vknb.compile(
        "layout(local_size_x = 64) in; layout(binding = 0) buffer B { float b[]; };\n"
        "void main() { b[gl_GlobalInvocationID.x] += 1.0; }",
        name="late_wait",
    )
    x = rng.random(1 << 12, dtype=np.float32)
    want = x + 1.0
    for wait in (True, False):
        y = x.copy()
        t0 = time.time()
        out = k(y, grid=y.size, wait=wait)
        t1 = time.time()
        if not wait:
            time.sleep(0.3)
            rec = out.wait()
        else:
            rec = out
        t2 = time.time()
        np.testing.assert_allclose(y, want)
        assert t0 <= rec.time <= t1, (wait, t0, rec.time, t1)
        assert rec.time + rec.host_ms * 1e-3 <= t2 + 1e-3
        if rec.gpu_ms is not None:
            assert t0 - 0.01 <= rec.gpu_start <= rec.gpu_end <= t2 + 0.01
    k.close()
