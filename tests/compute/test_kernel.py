"""Kernels: what a call uploads and downloads, asynchronous dispatch, compiling (SPIR-V input,
the compile cache), closing, leaks, the repeated-call shortcut and bound calls.

Every result is checked against numpy on fresh random inputs.  Argument checks are in
test_args.py, dispatch records and GPU times in test_timing.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import weakref
from typing import Any

import numpy as np
import pytest
from helpers import (
    DOUBLE_A,
    REPO,
    SAXPY,
    SAXPY_BOUNDED,
    check_double,
    check_saxpy,
    leak_snapshot,
    make_staging,
    report,
    saxpy_data,
)

import vknb
from vknb import compiler

WRITEONLY = """
layout(local_size_x = 32) in;
layout(binding = 0) readonly buffer In { int src[]; };
layout(binding = 1) writeonly buffer Out { int dst[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < src.length()) dst[i] = 3 * src[i] - 1;
}
"""


# ---------------------------------------------------------------------------------------------
# Data movement: what each binding's access uploads and downloads
# ---------------------------------------------------------------------------------------------


def test_readonly_not_downloaded_and_write_back_in_place(saxpy, rng):
    x, y = saxpy_data(rng)
    x.setflags(write=False)  # a readonly binding accepts a read-only array
    y0 = y.copy()
    y_id = id(y)
    rec = saxpy(x, y, a=2.0, n=y.size, grid=y.size)
    assert id(y) == y_id
    np.testing.assert_allclose(y, y0 + 2 * x, rtol=1e-5, atol=1e-6)
    assert rec.bytes_in == x.nbytes + y.nbytes
    assert rec.bytes_out == y.nbytes  # x is readonly: never downloaded
    # A contiguous view into a larger array writes back into its base.
    big = np.zeros(3000, np.float32)
    view = big[1000:2000]
    saxpy(x, view, a=1.0, n=1000, grid=1000)
    np.testing.assert_allclose(big[1000:2000], x, rtol=1e-6)
    assert not big[:1000].any() and not big[2000:].any()


def test_writeonly_not_uploaded(rng):
    k = vknb.compile(WRITEONLY, name="wo")
    b_in, b_out = k.reflection.bindings
    assert b_in.readonly and b_out.writeonly
    src = rng.integers(-1000, 1000, 500, dtype=np.int32)
    dst = np.full(500, 12345, np.int32)
    rec = k(src, dst, grid=500)
    np.testing.assert_array_equal(dst, 3 * src - 1)
    assert rec.bytes_in == src.nbytes  # dst is writeonly: never uploaded
    assert rec.bytes_out == dst.nbytes  # src is readonly: never downloaded
    k.close()


def test_device_arrays_move_no_bytes(saxpy, rng):
    x, y = saxpy_data(rng)
    ax, ay = vknb.asarray(x), vknb.asarray(y)
    rec = saxpy(ax, ay, a=3.0, n=x.size, grid=x.size)
    assert rec.bytes_in == 0 and rec.bytes_out == 0
    np.testing.assert_allclose(ay.numpy(), y + 3 * x, rtol=1e-5, atol=1e-5)
    # Mixing: only the numpy side moves.
    y2 = y.copy()
    rec = saxpy(ax, y2, a=1.0, n=x.size, grid=x.size)
    assert rec.bytes_in == y2.nbytes and rec.bytes_out == y2.nbytes
    np.testing.assert_allclose(y2, y + x, rtol=1e-5, atol=1e-6)
    # A raw Buffer binds too.
    buf = vknb.Buffer(x.nbytes)
    buf.write(y)
    saxpy(ax, buf, a=1.0, n=x.size, grid=x.size)
    np.testing.assert_allclose(buf.read(np.float32), y + x, rtol=1e-5, atol=1e-6)
    for o in (ax, ay, buf):
        o.close()


# ---------------------------------------------------------------------------------------------
# Asynchronous dispatch
# ---------------------------------------------------------------------------------------------


def test_async_dispatch_on_device_arrays(saxpy, rng):
    x, y = saxpy_data(rng)
    ax, ay = vknb.asarray(x), vknb.asarray(y)
    n_before = len(vknb.timings(kernel="saxpy"))
    sub = saxpy(ax, ay, a=2.0, n=x.size, grid=x.size, wait=False)
    assert isinstance(sub, vknb.Submission)
    vknb.synchronize()
    assert sub.done
    assert len(vknb.timings(kernel="saxpy")) == n_before + 1
    np.testing.assert_allclose(ay.numpy(), y + 2 * x, rtol=1e-5, atol=1e-5)
    rec = saxpy(ax, ay, a=1.0, n=x.size, grid=x.size, wait=False).wait()
    assert isinstance(rec, vknb.DispatchRecord) and rec.kernel == "saxpy"
    np.testing.assert_allclose(ay.numpy(), y + 3 * x, rtol=1e-5, atol=1e-5)
    # Many asynchronous dispatches run in order (more than the pipeline's ring of slots).
    subs = [saxpy(ax, ay, a=1.0, n=x.size, grid=x.size, wait=False) for _ in range(12)]
    vknb.synchronize()
    assert all(s.done for s in subs)
    np.testing.assert_allclose(ay.numpy(), y + 15 * x, rtol=1e-4, atol=1e-4)
    ax.close()
    ay.close()


_ASYNC_WRITE_BACK = """
import json, numpy as np, vknb
k = vknb.compile(SRC, name="saxpy")
rng = np.random.default_rng(3)
x = rng.standard_normal(1000).astype(np.float32)
y = rng.standard_normal(1000).astype(np.float32)
y0 = y.copy()
sub = k(x, y, a=2.0, n=1000, grid=1000, wait=False)
vknb.synchronize()
ok1 = bool(sub.done) and bool(np.allclose(y, y0 + 2 * x, rtol=1e-5, atol=1e-6))
y1 = y0.copy()
rec = k(x, y1, a=1.0, n=1000, grid=1000, wait=False).wait()
ok2 = rec is not None and rec.kernel == "saxpy" and bool(np.allclose(y1, y0 + x, rtol=1e-5))
print(json.dumps([ok1, ok2]))
"""


def test_async_dispatch_writes_numpy_arrays_back(tmp_path):
    """Run in a subprocess with a time limit: the bug is an endless loop."""
    code = _ASYNC_WRITE_BACK.replace("SRC", repr(SAXPY))
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, VKNB_CACHE_DIR=str(tmp_path))
    try:
        res = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=12,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("an asynchronous dispatch with numpy arrays did not finish within 12 s")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1]) == [True, True]


# ---------------------------------------------------------------------------------------------
# Compiling: SPIR-V input, the compile cache, repr, closing
# ---------------------------------------------------------------------------------------------


def test_spirv_bytes_input(rng):
    # An optimized module keeps no names: bindings go by position.
    spirv = vknb.compile_glsl(WRITEONLY, name="wo_spv", optimize=True)
    k = vknb.compile(spirv)
    assert k.name == "spirv" and k.source is None and k.spirv == spirv
    src = rng.integers(-1000, 1000, 300, dtype=np.int32)
    dst = np.zeros(300, np.int32)
    k(src, dst, grid=300)
    np.testing.assert_array_equal(dst, 3 * src - 1)
    # Unoptimized SPIR-V keeps the names: everything binds by name.
    k2 = vknb.compile(vknb.compile_glsl(SAXPY, optimize=False), name="named")
    x, y = saxpy_data(rng, 300)
    y0 = y.copy()
    k2(x=x, y=y, a=-1.0, n=300, grid=300)
    np.testing.assert_allclose(y, y0 - x, rtol=1e-5, atol=1e-6)
    with pytest.raises(vknb.SpirvError):
        vknb.compile(b"\x03\x02\x23\x07" + b"\x00" * 16)
    with pytest.raises(TypeError, match="GLSL source"):
        vknb.compile(12345)  # type: ignore[arg-type]
    k.close()
    k2.close()


def test_compile_cache_hit_on_second_compile():
    src = SAXPY + "\n// cache test " + str(time.time_ns()) + "\n"
    k1 = vknb.compile(src, name="cached")
    k2 = vknb.compile(src, name="cached")
    assert not k1.compile_info.cache_hit
    assert k2.compile_info.cache_hit
    assert k1.spirv == k2.spirv
    assert k2.pipeline_ms >= 0
    k1.close()
    k2.close()


def test_damaged_spirv_cache_entry_at_kernel_level(dev, tmp_path, monkeypatch, rng):
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path))
    compiler._reset_memory_cache()
    src = DOUBLE_A + "// kernel-level cache test\n"
    k = vknb.compile(src, name="cache_k")
    k.close()
    entries = list((tmp_path / "spirv").iterdir())
    assert len(entries) == 1
    good = entries[0].read_bytes()
    damaged = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "garbage": bytes(range(256)) * 8,
        "flipped": good[:-9] + bytes([good[-9] ^ 0x40]) + good[-8:],
    }
    for label, bad in damaged.items():
        entries[0].write_bytes(bad)
        compiler._reset_memory_cache()
        k = vknb.compile(src, name="cache_k")
        assert not k.compile_info.cache_hit, label
        check_double(k, rng)
        k.close()
        assert entries[0].read_bytes() == good, label  # rebuilt
    compiler._reset_memory_cache()
    k = vknb.compile(src, name="cache_k")
    assert k.compile_info.cache_hit
    k.close()


def test_kernel_repr_mentions_bindings(saxpy):
    text = vknb.display.kernel_text(saxpy)
    html = vknb.display.kernel_html(saxpy)
    assert "saxpy" in repr(saxpy) and "2 bindings" in repr(saxpy)
    for name in ("saxpy", "xs", "ys", "a", "n", "readonly"):
        assert name in text, name
        assert name in html, name
    assert "float32" in text
    assert html.lstrip().startswith("<")


def test_kernel_close_and_with_block(rng):
    with vknb.compile(SAXPY, name="saxpy_with") as k:
        check_saxpy(k, rng)
    with pytest.raises(vknb.ObjectClosed, match="saxpy_with"):
        check_saxpy(k, rng)
    k.close()  # idempotent


def test_kernel_scratch_buffers_are_reused(dev, rng):
    k = vknb.compile(SAXPY, name="saxpy_scratch")
    check_saxpy(k, rng, 500)
    buffers = dev.memory_stats().buffers
    for _ in range(20):
        check_saxpy(k, rng, 500)
    assert dev.memory_stats().buffers == buffers
    k.close()


# ---------------------------------------------------------------------------------------------
# Leaks: kernels compiled, dispatched and dropped
# ---------------------------------------------------------------------------------------------


def test_leaks_kernels_compiled_dispatched_dropped(dev, rng, record_property):
    make_staging(dev)
    before = leak_snapshot(dev)
    dropped: list[Any] = []
    for i in range(100):
        src = DOUBLE_A.replace("d[i] *= a;", f"d[i] = d[i] * a + float({i % 10});")
        k = vknb.compile(src, name=f"leak_k{i}", local_size=None)
        x = rng.standard_normal(64 + i).astype(np.float32)
        x0 = x.copy()
        k(x, a=2.0, grid=x.size)
        np.testing.assert_allclose(x, 2 * x0 + (i % 10), rtol=1e-5, atol=1e-5)
        dropped.append(weakref.ref(k))
        del k  # dropped, not closed: the garbage collector frees it
    after = leak_snapshot(dev)
    report(record_property, "leaks_100_kernels", {"before": before, "after": after})
    assert after == before
    assert all(r() is None for r in dropped)  # no Kernel is kept alive by vknb


def test_leaks_recompiling_the_same_source(dev, rng, record_property):
    make_staging(dev)
    k0 = vknb.compile(SAXPY_BOUNDED, name="recompiled")
    k0.close()
    del k0
    before = leak_snapshot(dev)
    hits = 0
    x = rng.standard_normal(100).astype(np.float32)
    for _ in range(200):
        k = vknb.compile(SAXPY_BOUNDED, name="recompiled")
        hits += k.compile_info.cache_hit
        y = np.zeros(100, np.float32)
        k(x, y, a=1.0, n=100, grid=100)
        np.testing.assert_allclose(y, x, rtol=1e-6)
    del k
    after = leak_snapshot(dev)
    report(
        record_property,
        "leaks_200_recompiles",
        {"before": before, "after": after, "cache hits": hits},
    )
    assert hits == 200
    assert after == before


# ---------------------------------------------------------------------------------------------
# The repeated-call shortcut
# ---------------------------------------------------------------------------------------------


def test_repeated_call_memo_never_serves_a_different_call(saxpy, rng):
    """The last-call shortcut must miss on any change: a value, a type, an Array, the grid."""
    n = 512
    x, y = saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    saxpy(X, Y, a=1.0, n=n, grid=n)
    saxpy(X, Y, a=1.0, n=n, grid=n)  # served by the memo
    want = y + 2 * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    saxpy(X, Y, a=3.0, n=n, grid=n)  # another value
    want = want + 3 * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    saxpy(X, Y, a=3.0, n=n // 2, grid=n)  # another push constant: only half is updated
    want[: n // 2] += 3 * x[: n // 2]
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    saxpy(X, Y, a=3.0, n=n, grid=n // 2)  # another grid: the first 448 (7 groups of 64)
    groups = -(-(n // 2) // 64) * 64
    want[:groups] += 3 * x[:groups]
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    X2 = vknb.asarray(2 * x)  # another Array in the same place
    saxpy(X2, Y, a=3.0, n=n, grid=n)
    want += 6 * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    X2.close()
    with pytest.raises(vknb.ObjectClosed):
        saxpy(X2, Y, a=3.0, n=n, grid=n)  # a closed Array: an error, not a stale dispatch
    with pytest.raises(TypeError):
        saxpy(X, Y, a="3", n=n, grid=n)  # another type: checked again, and refused
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)


def test_repeated_calls_stay_fast_after_the_descriptor_sets_are_rebuilt(saxpy, rng):
    """A remembered call made stale (new descriptor-set epoch) is replaced, not missed forever."""
    n = 256
    X, Y = vknb.asarray(rng.random(n, dtype=np.float32)), vknb.zeros(n, np.float32)
    saxpy(X, Y, a=1.0, n=n, grid=n)
    pipe = saxpy.pipeline
    assert saxpy._fast_lookup((X, Y), {"a": 1.0, "n": n}, n, None, pipe) is not None
    pipe.sets_epoch += 1  # what a descriptor-pool reset does
    assert saxpy._fast_lookup((X, Y), {"a": 1.0, "n": n}, n, None, pipe) is None
    saxpy(X, Y, a=1.0, n=n, grid=n)  # the slow path remembers the call again
    assert saxpy._fast_lookup((X, Y), {"a": 1.0, "n": n}, n, None, pipe) is not None


# ---------------------------------------------------------------------------------------------
# Bound calls (Kernel.bind)
# ---------------------------------------------------------------------------------------------


def test_bound_call_dispatches_like_the_call_it_fixes(saxpy, rng, no_leaks):
    n = 1000
    x, y = saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    step = saxpy.bind(X, ys=Y, a=1.5, n=n, grid=n)
    assert repr(step) == f"<vknb.BoundCall saxpy({X.label}, ys={Y.label}, a=1.5, n={n}, grid={n})>"
    want = y.copy()
    for _ in range(3):
        rec = step()
        want += np.float32(1.5) * x
        assert rec.kernel == "saxpy" and rec.groups == (-(-n // 64), 1, 1)
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-6)
    assert rec.gpu_ms is None or rec.gpu_ms >= 0
    assert vknb.timings("saxpy")[-1] is rec
    sub = step(wait=False)  # asynchronous: a Submission, finished by vknb.synchronize()
    assert isinstance(sub, vknb.Submission)
    vknb.synchronize()
    want += np.float32(1.5) * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-6)
    assert sub.wait().kernel == "saxpy"
    del step, sub
    X.close()
    Y.close()


def test_bound_calls_recorded_in_a_batch_get_the_same_barriers(saxpy, rng):
    n = 256
    x, y = saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    outs = [vknb.zeros(n, np.float32) for _ in range(4)]
    chain = saxpy.bind(X, Y, a=0.25, n=n, grid=n)
    fans = [saxpy.bind(X, o, a=2.0, n=n, grid=n) for o in outs]
    with vknb.batch() as b:
        first = chain()
        for _ in range(4):
            chain()  # each repeat reads and writes Y: a barrier before it
        for f in fans:
            f()  # independent of each other and of Y
        fans[0]()  # writes outs[0] again: one barrier
    assert first == 0 and len(b) == 10
    assert b.barriers == 5
    want = y + np.float32(5 * 0.25) * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0].numpy(), 4 * x, rtol=1e-6)
    for o in outs[1:]:
        np.testing.assert_allclose(o.numpy(), 2 * x, rtol=1e-6)
    b.replay()
    np.testing.assert_allclose(Y.numpy(), want + np.float32(5 * 0.25) * x, rtol=1e-5, atol=1e-5)
    b.close()
    for a in (X, Y, *outs):
        a.close()


def test_bound_call_errors_name_the_argument_and_leave_the_kernel_working(saxpy, rng):
    n = 64
    x, y = saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    with pytest.raises(TypeError, match=r"saxpy\.bind: argument 1 is a numpy array"):
        saxpy.bind(X, y, a=1.0, n=n, grid=n)
    with pytest.raises(TypeError, match=r"ys= is a numpy array"):
        saxpy.bind(X, ys=y, a=1.0, n=n, grid=n)
    with pytest.raises(TypeError, match="float32"):  # what a call would raise, at bind time
        saxpy.bind(X, vknb.zeros(n, np.int32), a=1.0, n=n, grid=n)
    with pytest.raises(TypeError, match="push constant member 'a'"):
        saxpy.bind(X, Y, a=[1.0], n=n, grid=n)
    step = saxpy.bind(X, Y, a=1.0, n=n, grid=n)
    Y.close()
    with pytest.raises(vknb.ObjectClosed, match=f"{Y.label} was closed"):
        step()
    Y2 = vknb.asarray(y)
    saxpy.bind(X, Y2, a=1.0, n=n, grid=n)()
    np.testing.assert_allclose(Y2.numpy(), y + x, rtol=1e-6)
    X.close()
    Y2.close()


def test_bound_call_survives_a_rebuild_of_the_descriptor_sets(saxpy, rng, monkeypatch):
    """More distinct calls than the pipeline caches sets for: the pool is reset and the bound
    call, whose sets went with it, binds again instead of using freed sets."""
    monkeypatch.setattr(vknb.core.pipeline, "DESCRIPTOR_CACHE", 4)
    n = 128
    x, y = saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    step = saxpy.bind(X, Y, a=1.0, n=n, grid=n)
    epoch = saxpy.pipeline.sets_epoch
    others = [vknb.zeros(n, np.float32) for _ in range(6)]
    for o in others:
        saxpy(X, o, a=1.0, n=n, grid=n)
    assert saxpy.pipeline.sets_epoch > epoch
    step()
    np.testing.assert_allclose(Y.numpy(), y + x, rtol=1e-6)
    for a in (X, Y, *others):
        a.close()
