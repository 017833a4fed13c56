"""Objects closed, deleted or reset while the GPU may still use them: nothing the GPU may use is
freed or reused, and every later use is a clear error (contract scenarios 3, 5, 13, 14)."""

from __future__ import annotations

from .conftest import run_scenario

# y: runs ~1 s on lavapipe (n = 50_000); z = 2 x + 1 is the "other output" of the dispatch.
TWO_OUT = '''
TWO_OUT = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer Y { float y[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) writeonly buffer Z { float z[]; };
layout(push_constant) uniform P { uint n; uint iters; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= n) return;
    float s = y[i];
    for (uint j = 0u; j < iters; j++) s = s * 0.999 + 1.0;
    y[i] = s;
    z[i] = 2.0 * x[i] + 1.0;
}
"""
k2 = vknb.compile(TWO_OUT, name="two_out")
n = 50_000
'''


def _close_during_dispatch(how: str) -> str:
    return (
        TWO_OUT
        + f"""
y = rng.random(n, dtype=np.float32)
x = rng.random(n, dtype=np.float32)
z = np.zeros(n, np.float32)
Y = vknb.asarray(y, label="busy_y")
s = k2(Y, x, z, n=n, iters=1_000_000, grid=n, wait=False)
{how}
# memory freed too early would be handed to this new Array while the GPU still writes y
w = rng.random(n, dtype=np.float32)
W = vknb.asarray(w, label="fresh")
vknb.synchronize()
s.wait()
check(np.allclose(z, 2 * x + 1, rtol=1e-6), "the dispatch's other output is wrong")
check(np.array_equal(W.numpy(), w), "a new Array was corrupted by the closed Array's dispatch")
check_usable()
print("OK")
"""
    )


def test_array_close_right_after_wait_false_dispatch() -> None:
    run_scenario(_close_during_dispatch("Y.close()"), validation=True, timeout=30)


def test_array_del_and_gc_right_after_wait_false_dispatch() -> None:
    run_scenario(_close_during_dispatch("del Y\ngc.collect()"), validation=True, timeout=30)


def test_mapped_view_read_after_reset_does_not_crash() -> None:
    run_scenario(
        """
        b = vknb.Buffer(1 << 16, memory="upload")
        data = rng.random((1 << 16) // 4, dtype=np.float32)
        with b.mapped(np.float32) as v:
            v[:] = data
            keep = v
        check(np.array_equal(keep, data), "mapped view does not hold what was written")
        vknb.reset()
        gc.collect()
        try:  # any values, or a clear error; never a crash
            print("sum after reset", float(np.asarray(keep, dtype=np.float64).sum()))
            keep[:4].copy()
        except Exception as e:
            print("reading after reset raised", type(e).__name__, e)
        check_usable("after reset")
        print("OK")
        """,
        timeout=30,
    )


def test_mapped_view_read_after_buffer_close_does_not_crash() -> None:
    run_scenario(
        """
        b = vknb.Buffer(1 << 16, memory="upload")
        data = rng.random((1 << 16) // 4, dtype=np.float32)
        with b.mapped(np.float32) as v:
            v[:] = data
            keep = v
        b.close()
        del b
        gc.collect()
        vknb.device().trim()
        try:
            print("sum after close", float(np.asarray(keep, dtype=np.float64).sum()))
        except Exception as e:
            print("reading after close raised", type(e).__name__, e)
        check_usable("after close")
        print("OK")
        """,
        timeout=30,
    )


def test_batch_replay_after_its_array_closed_raises_object_closed() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 1000
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        X = vknb.asarray(x, label="input_x")
        Y = vknb.asarray(y, label="output_y")
        step = k.bind(X, Y, a=2.0, n=n, grid=n)
        with vknb.batch() as b:
            b.extend([step] * 3)
        b.replay()
        check(np.allclose(Y.numpy(), y + 12 * x, rtol=1e-5), "replay result wrong")
        X.close()
        with raises(vknb.ObjectClosed, "input_x"):
            b.replay()
        check(np.allclose(Y.numpy(), y + 12 * x, rtol=1e-5), "a refused replay changed Y")
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_batch_replay_after_its_kernel_closed_raises_object_closed() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add_closed")
        n = 1000
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        X = vknb.asarray(x)
        Y = vknb.asarray(y)
        with vknb.batch() as b:
            k(X, Y, a=2.0, n=n, grid=n)
        check(np.allclose(Y.numpy(), y + 2 * x, rtol=1e-5), "batch result wrong")
        k.close()
        with raises(vknb.ObjectClosed, "add_closed"):
            b.replay()
        check(np.allclose(Y.numpy(), y + 2 * x, rtol=1e-5), "a refused replay changed Y")
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_kernel_close_with_pending_call_then_wait_gives_result() -> None:
    run_scenario(
        """
        kb = vknb.compile(BUSY, name="busy")
        Yb = vknb.asarray(rng.random(50_000, dtype=np.float32))
        kb(Yb, n=50_000, iters=1_000_000, grid=50_000, wait=False)  # keeps the queue busy
        k = vknb.compile(ADD, name="add_pending")
        n = 20_000
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        ref = y + np.float32(2.0) * x
        s = k(x, y, a=2.0, n=n, grid=n, wait=False)
        k.close()
        s.wait()
        check(np.allclose(y, ref, rtol=1e-5), "output wrong after Kernel.close() + wait()")
        vknb.synchronize()
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_reset_with_pending_call_never_returns_stale_data() -> None:
    run_scenario(
        """
        kb = vknb.compile(BUSY, name="busy")
        Yb = vknb.asarray(rng.random(50_000, dtype=np.float32))
        kb(Yb, n=50_000, iters=1_000_000, grid=50_000, wait=False)
        k = vknb.compile(ADD, name="add_pending")
        n = 20_000
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        y0 = y.copy()
        ref = y + np.float32(2.0) * x
        s = k(x, y, a=2.0, n=n, grid=n, wait=False)
        vknb.reset()
        try:
            s.wait()
        except vknb.VulkanError as e:
            print("wait() after reset raised", type(e).__name__, e)
        else:
            check(np.allclose(y, ref, rtol=1e-5),
                  "wait() after reset returned but y does not hold the result "
                  f"(unchanged: {np.array_equal(y, y0)})")
        check_usable("after reset")
        print("OK")
        """,
        timeout=30,
    )


def test_arrays_of_a_closed_device_raise_clear_errors() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 100
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        d = vknb.Device(0)
        A = vknb.asarray(x, device=d, label="on_closed")
        kd = vknb.compile(ADD, name="add_on_d", device=d)
        d.close()
        with raises(vknb.ObjectClosed, "on_closed"):
            A.numpy()
        with raises(vknb.ObjectClosed, "closed"):
            kd(x, y, a=1.0, n=n, grid=n)
        with raises(vknb.ObjectClosed, "closed"):
            vknb.asarray(x, device=d)
        with raises((vknb.VulkanError, ValueError), "X"):
            k(A, y, a=1.0, n=n, grid=n)
        A.close()
        d.close()
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_old_arrays_bound_calls_and_batches_after_reset() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 100
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        X = vknb.asarray(x, label="old_x")
        Y = vknb.asarray(y, label="old_y")
        step = k.bind(X, Y, a=1.0, n=n, grid=n)
        with vknb.batch() as b:
            k(X, Y, a=1.0, n=n, grid=n)
        vknb.reset()
        with raises(vknb.ObjectClosed, "old_x"):
            X.numpy()
        with raises((vknb.VulkanError, ValueError), "X"):
            k(X, y, a=1.0, n=n, grid=n)
        with raises((vknb.VulkanError, ValueError)):
            step()
        with raises(vknb.VulkanError):
            b.replay()
        y2 = y.copy()
        k(x, y2, a=1.0, n=n, grid=n)  # the kernel follows the session to the new device
        check(np.allclose(y2, y + x, rtol=1e-6), "kernel compiled before reset: wrong result")
        X.close()
        Y.close()
        check_usable("after reset")
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_current_device_never_creates_one() -> None:
    run_scenario(
        """
        check(vknb.current_device() is None, "a device exists before any use")
        vknb.devices()
        vknb.compile_glsl(ADD)
        check(vknb.current_device() is None, "current_device() or devices() created a device")
        d = vknb.device()
        check(vknb.current_device() is d, "current_device() is not vknb.device()")
        d2 = vknb.reset()
        check(vknb.current_device() is d2 and d2 is not d, "current_device() after reset")
        check_usable()
        print("OK")
        """,
        timeout=30,
    )


def test_closed_arrays_are_refused_by_name() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 100
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        y0 = y.copy()
        A = vknb.asarray(x, label="closed_x")
        A.close()
        A.close()  # idempotent
        with raises(vknb.ObjectClosed, "closed_x"):
            k(A, y, a=1.0, n=n, grid=n)
        with raises(vknb.ObjectClosed, "closed_x"):
            A.numpy()
        with vknb.asarray(x, label="ctx_x") as B:
            check(np.array_equal(B.numpy(), x), "Array in a with block: wrong")
        with raises(vknb.ObjectClosed, "ctx_x"):
            B.numpy()
        check(np.array_equal(y, y0), "a refused call changed y")
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_reset_inside_a_batch_block_is_a_clear_error() -> None:
    run_scenario(
        """
        k = vknb.compile(ADD, name="add")
        n = 100
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        X, Y = vknb.asarray(x), vknb.asarray(y)
        try:
            with vknb.batch():
                k(X, Y, a=1.0, n=n, grid=n)
                vknb.reset()
                k(X, Y, a=1.0, n=n, grid=n)
        except (vknb.VulkanError, RuntimeError, ValueError) as e:
            print("batch across a reset raised", type(e).__name__, e)
        else:
            raise AssertionError("a batch recorded across vknb.reset() ran without an error")
        check_usable("after the batch")
        with vknb.batch():  # batches work again on the fresh device
            X2, Y2 = vknb.asarray(x), vknb.asarray(y)
            k(X2, Y2, a=2.0, n=n, grid=n)
        check(np.allclose(Y2.numpy(), y + 2 * x, rtol=1e-5), "batch after reset: wrong")
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_records_read_and_pickled_after_reset_and_from_threads() -> None:
    """A repeated call's record keeps its GPU time in its slot, then as raw ticks converted when
    first read: records read only after their kernel is closed and the device reset, from 8
    threads at once, or pickled there, all give a GPU time (no Vulkan call on the old device,
    no crash), the same in every thread."""
    run_scenario(
        """
        import pickle, threading
        k = vknb.compile(ADD, name="records_after_reset")
        n = 4096
        X = vknb.asarray(rng.random(n, dtype=np.float32))
        Y = vknb.asarray(np.zeros(n, np.float32))
        recs = [k(X, Y, a=1.0, n=n, grid=n) for _ in range(40)]
        check(any(r.pending is not None for r in recs), "no record left its time in a slot")
        k.close()
        X.close()
        Y.close()
        vknb.reset()
        seen = [[] for _ in range(8)]
        def read(t):
            for r in recs:
                seen[t].append((r.gpu_ms, r.gpu_start, r.gpu_end))
        threads = [threading.Thread(target=read, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        check(all(s == seen[0] for s in seen), "threads read different times")
        if vknb.device().info.timestamps:
            check(all(ms is not None and ms >= 0 for ms, _, _ in seen[0]), f"{seen[0][:3]}")
        copies = [pickle.loads(pickle.dumps(r)) for r in recs]
        check([c.gpu_ms for c in copies] == [s[0] for s in seen[0]], "pickled times differ")
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=60,
    )
