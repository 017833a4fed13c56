"""Batches: one submission for many calls, barriers from reflected access, replay."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from helpers import BUSY_SRC

import vknb

AXPY = """
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
"""
SCALE = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer Y { float y[]; };
layout(push_constant) uniform P { float s; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] *= s; }
"""


@pytest.fixture(scope="module")
def axpy() -> vknb.Kernel:
    return vknb.compile(AXPY, name="b_axpy")


@pytest.fixture(scope="module")
def scale() -> vknb.Kernel:
    return vknb.compile(SCALE, name="b_scale")


def test_batch_matches_sequential_calls(axpy, scale, rng, no_leaks):
    n = 1000
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    with vknb.batch() as b:
        i0 = axpy(X, Y, a=2.0, n=n, grid=n)
        i1 = scale(Y, s=0.5, n=n, grid=n)
        i2 = axpy(X, Y, a=-1.0, n=n, grid=n)
    assert (i0, i1, i2) == (0, 1, 2) and len(b) == 3
    ref = ((y + 2 * x) * np.float32(0.5)) - x
    np.testing.assert_allclose(Y.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert b.gpu_ms is not None and b.gpu_ms >= 0
    assert vknb.timings()[-1].dispatches == 3
    b.close()
    X.close()
    Y.close()


def test_barriers_only_where_a_dispatch_depends_on_an_earlier_one(axpy, rng):
    n = 256
    X = vknb.asarray(rng.random(n, dtype=np.float32))
    outs = [vknb.zeros(n, np.float32) for _ in range(4)]
    with vknb.batch() as b:
        for o in outs:  # all read X, each writes its own output: independent
            axpy(X, o, a=1.0, n=n, grid=n)
    assert b.barriers == 0
    with vknb.batch() as b2:
        axpy(X, outs[0], a=1.0, n=n, grid=n)
        axpy(outs[0], outs[1], a=1.0, n=n, grid=n)  # reads what the first wrote (RAW)
        axpy(X, outs[1], a=1.0, n=n, grid=n)  # writes what the second wrote (WAW)
        axpy(X, outs[2], a=1.0, n=n, grid=n)  # independent of the last barrier group
        axpy(outs[2], X, a=1.0, n=n, grid=n)  # writes X, which others read (WAR), and RAW
    assert b2.barriers == 3
    x = X.numpy()  # X changed last; check the others against numpy step by step
    assert np.isfinite(x).all()


REDUCE = """
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) writeonly buffer S { float s[]; };
layout(push_constant) uniform P { uint n; uint slot; };
void main() { if (gl_GlobalInvocationID.x == 0u) s[slot] = x[0] + x[n - 1u]; }
"""


@pytest.mark.parametrize("barrier", ["synchronization2", "legacy"])
def test_a_call_repeated_in_a_batch_waits_for_itself_and_the_result_is_exact(
    axpy, rng, barrier, dev
):
    """The same call k times: a barrier before each repeat (it reads and writes Y), and the
    result is what k sequential calls give; a read-only kernel repeated needs no barrier.
    Both barrier forms: vkCmdPipelineBarrier2 (Vulkan 1.3) and the one before it."""
    n = 300
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    b = vknb.batch()
    if barrier == "legacy":
        b._rec._dep = None  # what a Vulkan 1.2 device records
    else:
        assert (b._rec._dep is not None) == (dev.api_version >= vknb._vk.make_version(1, 3))
    with b:
        for _ in range(7):
            axpy(X, Y, a=0.5, n=n, grid=n)
    assert b.barriers == 6
    want = y.copy()
    for _ in range(7):
        want += np.float32(0.5) * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-6)
    b.replay({3: {"a": 2.0}})  # re-recorded with the same barriers
    for i in range(7):
        want += np.float32(2.0 if i == 3 else 0.5) * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-5)
    b.close()
    red = vknb.compile(REDUCE, name="b_reduce")
    S = vknb.zeros(8, np.float32)
    with vknb.batch() as b2:
        for i in range(8):  # each writes its own element of S, but the binding is one buffer
            red(X, S, n=n, slot=i, grid=64)
        red(X, Y, n=n, slot=0, grid=64)  # writes Y: independent of the S group
        red(X, Y, n=n, slot=0, grid=64)  # the same call again: WAW on Y
    assert b2.barriers == 7 + 1  # S is written by every call (buffer granularity)
    np.testing.assert_allclose(S.numpy(), x[0] + x[n - 1], rtol=1e-6)
    for a in (X, Y, S):
        a.close()
    red.close()


def test_replay_and_replay_with_new_push_constants(axpy, rng):
    n = 500
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    with vknb.batch() as b:
        axpy(X, Y, a=1.0, n=n, grid=n)
        axpy(X, Y, a=2.0, n=n, grid=n)
    expected = y + 3 * x
    np.testing.assert_allclose(Y.numpy(), expected, rtol=1e-5)
    b.replay()
    expected = expected + 3 * x
    np.testing.assert_allclose(Y.numpy(), expected, rtol=1e-5)
    b.replay({1: {"a": 10.0}})  # dispatch 1 now adds 10 x; dispatch 0 still 1 x
    expected = expected + 11 * x
    np.testing.assert_allclose(Y.numpy(), expected, rtol=1e-5)
    with pytest.raises(IndexError):
        b.replay({5: {"a": 1.0}})
    with pytest.raises(TypeError, match="n"):
        b.replay({0: {"n": 1.5}})
    b.replay()  # the failed updates changed nothing
    np.testing.assert_allclose(Y.numpy(), expected + 11 * x, rtol=1e-5)


def test_numpy_arguments_are_written_back_after_the_batch(axpy, rng):
    n = 300
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    y0 = y.copy()
    with vknb.batch():
        axpy(x, y, a=2.0, n=n, grid=n)
        y_during = y.copy()
    np.testing.assert_array_equal(y_during, y0)  # nothing ran inside the block
    np.testing.assert_allclose(y, y0 + 2 * x, rtol=1e-5)


def test_async_batch_and_synchronize(axpy, rng):
    n = 400
    x = rng.random(n, dtype=np.float32)
    X, Y = vknb.asarray(x), vknb.zeros(n, np.float32)
    with vknb.batch(wait=False) as b:
        for _ in range(5):
            axpy(X, Y, a=1.0, n=n, grid=n)
    vknb.synchronize()
    np.testing.assert_allclose(Y.numpy(), 5 * x, rtol=1e-5)
    sub = b.replay(wait=False)
    assert sub is not None
    sub.wait()
    np.testing.assert_allclose(Y.numpy(), 10 * x, rtol=1e-5)


def test_nesting_and_errors_inside_the_block(axpy, rng):
    n = 64
    X, Y = vknb.asarray(rng.random(n, dtype=np.float32)), vknb.zeros(n, np.float32)
    with vknb.batch():
        with pytest.raises(RuntimeError, match="nest"):
            with vknb.batch():
                pass
    with pytest.raises(TypeError, match="float"), vknb.batch() as b:
        axpy(X, Y, a=1.0, n=n, grid=n)
        axpy(X, Y, a="one", n=n, grid=n)
    assert len(b) == 0  # discarded, nothing submitted
    assert not Y.numpy().any()
    rec = axpy(X, Y, a=1.0, n=n, grid=n)  # outside a batch, calls run at once again
    assert rec.kernel == "b_axpy"
    with pytest.raises(RuntimeError, match=r"nothing recorded|recording"):
        vknb.batch().submit()


def test_more_descriptor_sets_than_the_cache_holds_then_replay(axpy, rng, no_leaks):
    """Regression: the set cache used to reset its pool under a recorded batch (a crash)."""
    n = 64
    x = rng.random(n, dtype=np.float32)
    X = vknb.asarray(x)
    more = vknb.core.pipeline.DESCRIPTOR_CACHE + 30  # distinct descriptor sets
    outs = [vknb.zeros(n, np.float32) for _ in range(more)]
    with vknb.batch() as b:
        for o in outs:
            axpy(X, o, a=1.0, n=n, grid=n)
    b.replay()
    for o in outs:
        np.testing.assert_allclose(o.numpy(), 2 * x, rtol=1e-6)
    pipe = axpy.pipeline
    assert any(p.retired and p.pins for p in pipe._pools)  # kept alive for the batch
    b.close()
    gc.collect()
    vknb.device().collect()
    assert not any(p.retired for p in pipe._pools) and not any(p.pins for p in pipe._pools)
    for o in outs[:80]:  # and plain calls still work afterwards
        axpy(X, o, a=1.0, n=n, grid=n)
    np.testing.assert_allclose(outs[0].numpy(), 3 * x, rtol=1e-6)
    for o in outs:
        o.close()
    X.close()


@pytest.mark.parametrize("readout", ["copy", "host"])
def test_batch_gpu_time_tracks_the_work(readout, dev, monkeypatch):
    """A batch's GPU time (both readouts) grows with the work and stays within its wall time."""
    if not dev.info.timestamps:
        pytest.fail(f"{dev.info.name} has no timestamps on its compute queue")
    monkeypatch.setenv("VKNB_TS_READOUT", readout)
    k = vknb.compile(BUSY_SRC + f"// batch {readout}\n", name=f"b_loop_{readout}")
    n = 1024
    heavy = 5000 if dev.info.type == "cpu" else 500_000
    y = vknb.zeros(n, np.float32)
    times = {}
    for iters in (heavy // 100, heavy):
        with vknb.batch() as b:
            for _ in range(3):
                k(y, n=n, iters=iters, grid=n)
        assert b._ts.host_reset == (readout == "host" and dev.host_query_reset)
        runs = [b.gpu_ms]
        for _ in range(2):
            b.replay()
            runs.append(b.gpu_ms)
            assert 0 < b.gpu_ms <= b.host_ms * 1.05, (b.gpu_ms, b.host_ms)
        times[iters] = min(runs)
        b.close()
    assert times[heavy] > 5 * times[heavy // 100], times
    assert np.isfinite(y.numpy()).all()
    y.close()
    k.close()


def test_extend_records_bound_calls_like_calls_in_the_block(axpy, scale, rng, no_leaks):
    """Batch.extend: the same dispatches, barriers and results as calling each bound call."""
    n = 500
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    outs = [vknb.zeros(n, np.float32) for _ in range(3)]
    up = axpy.bind(X, Y, a=0.5, n=n, grid=n)
    half = scale.bind(Y, s=0.5, n=n, grid=n)
    fans = [axpy.bind(X, o, a=1.0, n=n, grid=n) for o in outs]
    with vknb.batch() as b:
        first = up()
        r = b.extend([up, half, up] * 3 + fans * 2)
    assert first == 0 and r == range(1, 16) and len(b) == 16
    assert b.barriers == 9 + 1  # the chain on Y, then the fans' second round
    want = y + np.float32(0.5) * x
    for _ in range(3):
        want = ((want + np.float32(0.5) * x) * np.float32(0.5)) + np.float32(0.5) * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-6)
    for o in outs:
        np.testing.assert_allclose(o.numpy(), 2 * x, rtol=1e-6)
    b.close()
    with pytest.raises(TypeError, match="bound calls"), vknb.batch() as bad:
        bad.extend([up, lambda: None])
    Y.close()
    with pytest.raises(vknb.ObjectClosed, match="was closed"), vknb.batch() as b2:
        b2.extend([fans[0], up])
    with vknb.batch() as b3:  # the session goes on
        b3.extend(fans)
    np.testing.assert_allclose(outs[0].numpy(), 3 * x, rtol=1e-6)
    b3.close()
    for a in (X, *outs):
        a.close()


def test_batch_block_through_exitstack_helpers_and_one_left_without_exit(axpy, rng):
    """Calls record wherever the with statement of the batch is on the stack (through
    contextlib.ExitStack, from a helper function); a block whose __exit__ never ran (a Ctrl-C
    as it began) records nothing more: the next call runs, and a new block opens."""
    import contextlib

    n = 256
    x = rng.random(n, dtype=np.float32)
    X, Y = vknb.asarray(x), vknb.zeros(n, np.float32)

    def helper():
        return axpy(X, Y, a=1.0, n=n, grid=n)

    with contextlib.ExitStack() as stack:
        b = stack.enter_context(vknb.batch())
        assert helper() == 0 and axpy(X, Y, a=1.0, n=n, grid=n) == 1
    assert len(b) == 2
    np.testing.assert_allclose(Y.numpy(), 2 * x, rtol=1e-6)

    def left_open():  # __enter__ without __exit__: what a Ctrl-C at __exit__'s start leaves
        b2 = vknb.batch()
        b2.__enter__()
        axpy(X, Y, a=1.0, n=n, grid=n)
        return b2

    b2 = left_open()
    rec = axpy(X, Y, a=1.0, n=n, grid=n)  # runs: the abandoned block records nothing more
    assert rec.kernel == "b_axpy"
    np.testing.assert_allclose(Y.numpy(), 3 * x, rtol=1e-6)
    assert len(b2) == 0 and not b2._lock._is_owned()
    with vknb.batch() as b3:
        axpy(X, Y, a=1.0, n=n, grid=n)
    np.testing.assert_allclose(Y.numpy(), 4 * x, rtol=1e-6)
    for o in (b, b2, b3, X, Y):
        o.close()
