"""Create/destroy loops return the device's memory statistics to their baseline after
gc.collect() and trim() (contract scenario 30)."""

from __future__ import annotations

from .conftest import run_scenario

# Warm up (the device's staging buffers, the compiler), record the baseline, then make the
# kernel `k` that the loops use; the check closes it before comparing.
LOOP = """
check_usable("warm-up")
one = vknb.compile(ADD, name="warm")
one(rng.random(10, dtype=np.float32), rng.random(10, dtype=np.float32), a=1.0, n=10, grid=10)
one.close()
del one
base = settle()
print("baseline (allocated, used, buffers)", base)
k = vknb.compile(ADD, name="add")
def one_round(i, r):
    n = int(r.integers(1, 300_000))
    x = r.random(n, dtype=np.float32)
    y = r.random(n, dtype=np.float32)
    ref = y + np.float32(2.0) * x
    X, Y = vknb.asarray(x), vknb.asarray(y, label=f"y{i}")
    k(X, Y, a=2.0, n=n, grid=n)
    check(np.allclose(Y.numpy(), ref, rtol=1e-5), f"round {i}: wrong")
    Z = vknb.zeros(n, np.float32)
    k(x, Z, a=1.0, n=n, grid=n)
    E = vknb.empty((n, 2), np.float32)
    if i % 3 == 0:
        X.close()
    if i % 3 == 1:
        del E
    if i % 5 == 0:
        k(x, y, a=2.0, n=n, grid=n, wait=False)
"""


def _leak_check(body: str) -> str:
    return (
        LOOP
        + body
        + """
k.close()
del k
after = settle()
print("after (allocated, used, buffers)", after)
check(after == base, f"memory not back at baseline: {base} -> {after}")
print("OK")
"""
    )


def test_array_create_destroy_loop_returns_to_baseline() -> None:
    run_scenario(
        _leak_check(
            """
for i in range(40):
    one_round(i, rng)
"""
        ),
        timeout=60,
    )


def test_kernel_create_close_loop_returns_to_baseline() -> None:
    run_scenario(
        _leak_check(
            """
for i in range(20):
    kk = vknb.compile(ADD.replace("a * x[i]", f"a * x[i] + {i}.0"), name=f"k{i}")
    x = rng.random(1000, dtype=np.float32)
    y = rng.random(1000, dtype=np.float32)
    ref = y + 2 * x + i
    kk(x, y, a=2.0, n=1000, grid=1000)
    check(np.allclose(y, ref, rtol=1e-5), f"kernel {i}: wrong")
    if i % 2:
        kk.close()
    del kk
"""
        ),
        validation=True,
        timeout=60,
    )


def test_batch_create_replay_close_loop_returns_to_baseline() -> None:
    run_scenario(
        _leak_check(
            """
for i in range(15):
    n = 2000
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    with vknb.batch() as b:
        for _ in range(3):
            k(X, Y, a=1.0, n=n, grid=n)
    b.replay()
    check(np.allclose(Y.numpy(), y + 6 * x, rtol=1e-5), f"batch {i}: wrong")
    if i % 2:
        b.close()
    del b, X, Y
"""
        ),
        validation=True,
        timeout=60,
    )


def test_thread_loop_returns_to_baseline() -> None:
    run_scenario(
        _leak_check(
            """
for wave in range(3):
    errs = []
    def work(t):
        try:
            r = np.random.default_rng(100 * wave + t)
            for i in range(4):
                one_round(i, r)
        except BaseException as e:
            errs.append(repr(e))
    ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    check(not errs, f"thread failures: {errs[:2]}")
"""
        ),
        timeout=60,
    )


def test_interrupted_and_failed_calls_leave_nothing_behind() -> None:
    run_scenario(
        _leak_check(
            """
x = rng.random(1000, dtype=np.float32)
for i in range(20):
    try:
        k(x, x.astype(np.float64), a=1.0, n=1000, grid=1000)
    except TypeError:
        pass
    try:
        k(x, rng.random(1000, dtype=np.float32), a=1.0, n=1000, grid=0)
    except ValueError:
        pass
    try:
        vknb.empty((2**40,), np.float32)
    except (ValueError, vknb.AllocationFailed):
        pass
"""
        ),
        timeout=60,
    )
