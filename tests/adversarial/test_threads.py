"""One session used from many threads at once: every public call is thread-safe (contract
scenarios 1 and 11, and a few a careless notebook user would try)."""

from __future__ import annotations

import textwrap

from .conftest import run_scenario

# Runs `work(t, r)` on 8 threads (r: the thread's own generator) and reports every failure.
THREADS = """
def on_threads(work, n=8):
    errors = []
    def run(t):
        try:
            work(t, np.random.default_rng(1000 + t))
        except BaseException as e:
            import traceback
            errors.append(f"thread {t}: {type(e).__name__}: {e}\\n{traceback.format_exc()}")
    ts = [threading.Thread(target=run, args=(t,)) for t in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check(not any(t.is_alive() for t in ts), "a thread never finished")
    check(not errors, f"{len(errors)} thread failures; first: {errors[:1]}")
"""


def _with_threads(code: str) -> str:
    return THREADS + "\n" + textwrap.dedent(code)


def test_one_kernel_from_8_threads_numpy_arguments() -> None:
    run_scenario(
        _with_threads(
            """
            k = vknb.compile(ADD, name="add")
            def work(t, r):
                for it in range(30):
                    n = int(r.integers(1, 3000))
                    x = r.random(n, dtype=np.float32)
                    y = r.random(n, dtype=np.float32)
                    a = float(r.random())
                    ref = y + np.float32(a) * x
                    k(x, y, a=a, n=n, grid=n)
                    check(np.allclose(y, ref, rtol=1e-5), f"call {it}: wrong result")
            on_threads(work)
            vknb.synchronize()
            print("OK")
            """
        ),
        validation=True,
        timeout=60,
    )


def test_one_kernel_from_8_threads_device_arrays() -> None:
    run_scenario(
        _with_threads(
            """
            k = vknb.compile(ADD, name="add")
            def work(t, r):
                for it in range(30):
                    n = int(r.integers(1, 3000))
                    x = r.random(n, dtype=np.float32)
                    y = r.random(n, dtype=np.float32)
                    a = float(r.random())
                    X, Y = vknb.asarray(x), vknb.asarray(y)
                    k(X, Y, a=a, n=n, grid=n)
                    got = Y.numpy()
                    check(np.allclose(got, y + np.float32(a) * x, rtol=1e-5), f"call {it}")
                    if it % 2:
                        X.close()
                        Y.close()
            on_threads(work)
            vknb.synchronize()
            print("OK")
            """
        ),
        validation=True,
        timeout=60,
    )


def test_one_kernel_from_8_threads_wait_false_then_wait() -> None:
    run_scenario(
        _with_threads(
            """
            k = vknb.compile(ADD, name="add")
            def work(t, r):
                for it in range(30):
                    n = int(r.integers(1, 3000))
                    x = r.random(n, dtype=np.float32)
                    y = r.random(n, dtype=np.float32)
                    a = float(r.random())
                    ref = y + np.float32(a) * x
                    s = k(x, y, a=a, n=n, grid=n, wait=False)
                    s.wait()
                    check(np.allclose(y, ref, rtol=1e-5), f"call {it}: wrong after wait()")
            on_threads(work)
            vknb.synchronize()
            print("OK")
            """
        ),
        validation=True,
        timeout=60,
    )


def test_wait_false_result_is_written_back_while_8_threads_dispatch() -> None:
    run_scenario(
        _with_threads(
            """
            k = vknb.compile(ADD, name="add")
            stop = threading.Event()
            def noise(t, r):
                while not stop.is_set():
                    n = int(r.integers(1, 2000))
                    x = r.random(n, dtype=np.float32)
                    y = r.random(n, dtype=np.float32)
                    ref = y + np.float32(0.5) * x
                    k(x, y, a=0.5, n=n, grid=n, wait=bool(r.integers(2)))
                    vknb.synchronize()
                    check(np.allclose(y, ref, rtol=1e-5), "noise thread: wrong result")
            bg = threading.Thread(target=on_threads, args=(noise,))
            bg.start()
            try:
                for it in range(50):
                    n = int(rng.integers(1, 5000))
                    x = rng.random(n, dtype=np.float32)
                    y = rng.random(n, dtype=np.float32)
                    ref = y + np.float32(3.0) * x
                    k(x, y, a=3.0, n=n, grid=n, wait=False).wait()
                    check(np.allclose(y, ref, rtol=1e-5), f"iteration {it}: y not written back")
            finally:
                stop.set()
                bg.join(60)
            print("OK")
            """
        ),
        timeout=60,
    )


def test_reset_from_two_threads_at_once() -> None:
    run_scenario(
        _with_threads(
            """
            check_usable("before")
            barrier = threading.Barrier(2)
            got = []
            def work(t, r):
                barrier.wait()
                d = vknb.reset()
                got.append(d)
            on_threads(work, n=2)
            check(len(got) == 2, "a reset() did not return")
            dev = vknb.device()
            check(not dev.closed, "the session device is closed after two resets")
            check_usable("after two concurrent resets")
            print("OK")
            """
        ),
        validation=True,
        timeout=30,
    )


def test_kernel_call_on_another_thread_while_a_batch_records() -> None:
    run_scenario(
        _with_threads(
            """
            k = vknb.compile(ADD, name="add")
            n = 1000
            x = rng.random(n, dtype=np.float32)
            y0 = rng.random(n, dtype=np.float32)
            X, Y = vknb.asarray(x), vknb.asarray(y0)
            with vknb.batch() as b:
                k(X, Y, a=1.0, n=n, grid=n)
                def other(t, r):  # not recorded: this thread has no batch
                    xs = r.random(n, dtype=np.float32)
                    ys = r.random(n, dtype=np.float32)
                    ref = ys + np.float32(2.0) * xs
                    rec = k(xs, ys, a=2.0, n=n, grid=n)
                    check(not isinstance(rec, int), f"recorded into another thread's batch: {rec}")
                    check(np.allclose(ys, ref, rtol=1e-5), "call beside a batch: wrong result")
                on_threads(other, n=4)
                k(X, Y, a=1.0, n=n, grid=n)
            check(np.allclose(Y.numpy(), y0 + 2 * x, rtol=1e-5), "the batch's result is wrong")
            print("OK")
            """
        ),
        validation=True,
        timeout=30,
    )


def test_create_and_close_arrays_and_kernels_on_8_threads() -> None:
    run_scenario(
        _with_threads(
            """
            check_usable("before")
            base = settle()
            def work(t, r):
                for it in range(10):
                    k = vknb.compile(ADD, name=f"add_{t}_{it % 2}")
                    n = int(r.integers(1, 4000))
                    x = r.random(n, dtype=np.float32)
                    Y = vknb.zeros(n, np.float32)
                    k(x, Y, a=2.0, n=n, grid=n)
                    check(np.allclose(Y.numpy(), 2 * x, rtol=1e-5), f"iteration {it}")
                    Y.close()
                    k.close()
            on_threads(work)
            after = settle()
            check(after == base, f"memory not back at baseline: {base} -> {after}")
            print("OK")
            """
        ),
        validation=True,
        timeout=60,
    )


def test_bound_calls_from_8_threads() -> None:
    run_scenario(
        _with_threads(
            """
            k = vknb.compile(ADD, name="add")
            def work(t, r):
                n = int(r.integers(100, 5000))
                x = r.random(n, dtype=np.float32)
                y = r.random(n, dtype=np.float32)
                X, Y = vknb.asarray(x), vknb.asarray(y)
                step = k.bind(X, Y, a=1.0, n=n, grid=n)
                for _ in range(30):
                    step()
                check(np.allclose(Y.numpy(), y + 30 * x, rtol=1e-4), "bound calls: wrong")
            on_threads(work)
            print("OK")
            """
        ),
        validation=True,
        timeout=60,
    )


def test_same_batch_replayed_from_4_threads() -> None:
    run_scenario(
        _with_threads(
            """
            k = vknb.compile(ADD, name="add")
            n = 5000
            x = rng.random(n, dtype=np.float32)
            y = rng.random(n, dtype=np.float32)
            X, Y = vknb.asarray(x), vknb.asarray(y)
            with vknb.batch() as b:  # runs once on leaving the block: + 4 x
                for _ in range(4):
                    k(X, Y, a=1.0, n=n, grid=n)
            def work(t, r):
                for _ in range(20):
                    b.replay()
            on_threads(work, n=4)
            vknb.synchronize()
            got = Y.numpy()
            ref = y + np.float32(4 + 4 * 4 * 20) * x
            check(np.allclose(got, ref, rtol=1e-4),
                  f"every replay must run once: got y + {np.median((got - y) / x):.1f} x, "
                  "expected y + 324 x")
            print("OK")
            """
        ),
        validation=True,
        timeout=20,
    )


def test_library_scans_histograms_and_sums_from_8_threads() -> None:
    """The library kernels that keep per-kernel state between calls (the single-pass scan's
    tile counters and status words, the reduction's partial sums) or count with atomics (the
    histogram, with its equal-values path) give numpy's answers when 8 threads call them at
    once, at sizes that are not multiples of a tile, on numpy arrays and device Arrays."""
    run_scenario(
        _with_threads(
            """
            from vknb import library
            def work(t, r):
                for it in range(12):
                    n = int(r.integers(1, 200_000))
                    x = r.integers(0, 300, n).astype(np.uint32)
                    if it % 3 == 2:
                        x[: n // 2] = 7  # a long run of one value
                    src = vknb.asarray(x) if it % 2 else x
                    ex = bool(it % 4 == 1)
                    ref = np.cumsum(x, dtype=np.uint32)
                    if ex:
                        ref = np.concatenate([[0], ref[:-1]]).astype(np.uint32)
                    got = library.scan(src, exclusive=ex)
                    got = got.numpy() if isinstance(got, vknb.Array) else got
                    check(np.array_equal(got, ref), f"thread {t}, call {it}: scan wrong")
                    h = library.histogram(src, 256)
                    check(np.array_equal(h, np.bincount(x[x < 256], minlength=256)),
                          f"thread {t}, call {it}: histogram wrong")
                    f = r.random(n, dtype=np.float32)
                    s = float(library.reduce_sum(f))
                    check(abs(s - float(f.sum(dtype=np.float64))) <= 1e-4 * n,
                          f"thread {t}, call {it}: sum wrong")
                    if isinstance(src, vknb.Array):
                        src.close()
            on_threads(work)
            vknb.synchronize()
            print("OK")
            """
        ),
        validation=True,
        timeout=180,
    )


def test_batch_closed_while_8_threads_replay_it() -> None:
    """Synchronous replays wait on the batch's fence holding its lock, asynchronous ones hand
    it to a Submission: closed by the main thread meanwhile, every replay either runs whole or
    raises ObjectClosed, nothing is freed while in use (validation layer on), and the numpy
    output gets exactly the replays that ran."""
    run_scenario(
        _with_threads(
            """
            k = vknb.compile(ADD, name="add")
            n = 4096
            x = rng.random(n, dtype=np.float32)
            X = vknb.asarray(x)
            z = np.zeros(n, np.float32)
            with vknb.batch() as b:  # z: a numpy output, written back after every replay
                k(X, z, a=1.0, n=n, grid=n)
            ran, refused = [0], [0]
            lock = threading.Lock()
            def work(t, r):
                for i in range(200):
                    try:
                        if (t + i) % 2:
                            b.replay()
                        else:
                            b.replay(wait=False).wait()
                    except vknb.ObjectClosed:
                        with lock:
                            refused[0] += 1
                        return
                    with lock:
                        ran[0] += 1
            closer = threading.Timer(0.05, b.close)
            closer.start()
            on_threads(work, n=8)
            closer.join()
            vknb.synchronize()
            print(ran[0], "replays ran,", refused[0], "refused after close()")
            check(refused[0] >= 1 or ran[0] == 1600, "no replay saw the batch closed")
            check(np.allclose(z, (1 + ran[0]) * x, rtol=1e-4),
                  f"z holds {np.median(z / x):.0f} x, expected {1 + ran[0]} x")
            with raises(vknb.ObjectClosed):
                b.replay()
            check_usable()
            print("OK")
            """
        ),
        validation=True,
        timeout=60,
    )


def test_8_threads_make_and_drop_arrays_on_two_devices() -> None:
    """8 threads make Arrays on two devices in turn, run a kernel on each, check it, and drop
    them without close(): the finalizers run at any device's safe point and release on the
    other device under a try-lock, so no thread ever waits for another's device lock (no
    deadlock), every result is right, and every buffer is freed."""
    run_scenario(
        _with_threads(
            """
            d1, d2 = vknb.device(), vknb.Device(0)
            INC = '''
            layout(local_size_x = 64) in;
            layout(binding = 0) buffer Y { float y[]; };
            void main() { y[gl_GlobalInvocationID.x] += 1.0; }'''
            k1 = vknb.compile(INC, name="inc1")
            k2 = vknb.compile(INC, name="inc2", device=d2)
            for d in (d1, d2):  # (a first transfer may make the staging buffers: before base)
                vknb.asarray(np.zeros(4096, np.float32), device=d).numpy()
            gc.collect()
            d1.collect()
            d2.collect()
            base = (d1.memory_stats().buffers, d2.memory_stats().buffers)
            def work(t, r):
                for it in range(120):
                    x = r.random(4096, dtype=np.float32)
                    first = it % 2 == 0
                    a = vknb.asarray(x, device=d1 if first else d2)
                    b = vknb.asarray(x, device=d2 if first else d1)
                    (k1 if first else k2)(a, grid=4096)
                    (k2 if first else k1)(b, grid=4096)
                    check(np.allclose(a.numpy(), x + 1) and np.allclose(b.numpy(), x + 1),
                          f"call {it}: wrong result")
                    del a, b
            on_threads(work)
            gc.collect()
            d1.collect()
            d2.collect()
            check(vknb._vk.finalizer.pending() == 0, "finalizers still queued")
            now = (d1.memory_stats().buffers, d2.memory_stats().buffers)
            check(now == base, f"buffers {now}, {base} before")
            k2.close()
            d2.close()
            print("OK")
            """
        ),
        validation=True,
        timeout=120,
    )
