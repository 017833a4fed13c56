"""os.fork() after vknb was used: the child's first use is a clear VulkanError that mentions fork
and the 'spawn' start method, the child exits promptly, the parent keeps working (scenario 9)."""

from __future__ import annotations

from .conftest import run_scenario

# fork_and_reap(child) forks, runs child() in the child (its return value is the exit status,
# given to sys.exit so that the normal interpreter exit runs), and reaps it within 8 s.
# The child writes when it starts exiting, so the parent can time the exit itself.
FORK = """
import tempfile
def fork_and_reap(child, limit=8.0):
    stamp = os.path.join(tempfile.mkdtemp(dir=TMP), "exit_started")
    pid = os.fork()
    if pid == 0:
        try:
            code = child()
        except BaseException as e:
            print(f"child: unexpected {type(e).__name__}: {e}", flush=True)
            code = 70
        with open(stamp, "w") as f:
            f.write(repr(time.monotonic()))
        sys.exit(code)
    t0 = time.monotonic()
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            break
        if time.monotonic() - t0 > limit:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            started = os.path.exists(stamp)
            raise AssertionError(f"forked child still running after {limit:g} s "
                                 f"({'in its interpreter exit' if started else 'before exiting'})")
        time.sleep(0.02)
    reaped = time.monotonic()
    rc = os.waitstatus_to_exitcode(status)
    exit_s = reaped - float(open(stamp).read()) if os.path.exists(stamp) else None
    print(f"child exit status {rc}, its exit took {exit_s} s")
    check(rc == 0, f"forked child exit status {rc}")
    check(exit_s is not None and exit_s < 3.0, f"forked child's exit took {exit_s} s")
"""


def test_fork_after_use_child_gets_clear_error_and_exits_promptly() -> None:
    run_scenario(
        FORK
        + """
k = vknb.compile(ADD, name="add")
n = 1000
x = rng.random(n, dtype=np.float32)
y = rng.random(n, dtype=np.float32)
ref = y + 2 * x
k(x, y.copy(), a=2.0, n=n, grid=n)
A = vknb.asarray(x)

def child():
    bad = 0
    for what, f in [
        ("vknb.asarray", lambda: vknb.asarray(x)),
        ("kernel call", lambda: k(x, y, a=2.0, n=n, grid=n)),
        ("vknb.device", vknb.device),
        ("Array.numpy", A.numpy),
    ]:
        try:
            f()
            print(f"child: {what} did not raise", flush=True)
            bad += 1
        except vknb.VulkanError as e:
            msg = str(e).lower()
            if "fork" not in msg or "spawn" not in msg:
                print(f"child: {what}: message lacks 'fork'/'spawn': {e}", flush=True)
                bad += 1
            else:
                print(f"child: {what} raised {type(e).__name__}", flush=True)
    return 1 if bad else 0

fork_and_reap(child)
y2 = y.copy()
k(x, y2, a=2.0, n=n, grid=n)
check(np.allclose(y2, ref, rtol=1e-5), "parent's kernel wrong after the fork")
check(np.array_equal(A.numpy(), x), "parent's Array changed after the fork")
check_usable("in the parent after the fork")
print("OK")
""",
        timeout=30,
    )


def test_fork_after_use_child_that_never_touches_vknb_exits_promptly() -> None:
    run_scenario(
        FORK
        + """
check_usable("before the fork")
A = vknb.asarray(rng.random(1000, dtype=np.float32))
fork_and_reap(lambda: 0)
check_usable("in the parent after the fork")
print("OK")
""",
        timeout=30,
    )


def test_spawn_start_method_works_after_use() -> None:
    run_scenario(
        """
import multiprocessing as mp

def work(seed):
    import numpy as np, vknb
    r = np.random.default_rng(seed)
    x = r.random(500, dtype=np.float32)
    y = r.random(500, dtype=np.float32)
    k = vknb.compile(ADD, name="add_spawned")
    k(x, y, a=2.0, n=500, grid=500)
    return x, y

if __name__ == "__main__":
    check_usable("before spawning")
    with mp.get_context("spawn").Pool(1) as pool:
        x, y = pool.apply_async(work, (7,)).get(timeout=30)
    r = np.random.default_rng(7)
    x0 = r.random(500, dtype=np.float32)
    y0 = r.random(500, dtype=np.float32)
    check(np.array_equal(x, x0), "spawned worker saw other inputs")
    check(np.allclose(y, y0 + 2 * x0, rtol=1e-5), "spawned worker's kernel wrong")
    check_usable("after the spawned worker")
    print("OK")
""",
        timeout=40,
    )


def test_fork_while_the_device_is_made_in_the_background() -> None:
    """vknb.compile starts making the session device on a thread while glslc runs: a child
    forked meanwhile (whose copy of that thread's locks stays held) gets the fork error at
    once from every entry point, never a hang; the parent's device and kernel work."""
    run_scenario(
        FORK
        + """
from vknb.core import session
check(vknb.current_device() is None, "the prelude made a device")
session.prewarm()            # what vknb.compile does first

def child():
    bad = 0
    for what, f in [("vknb.device", vknb.device), ("vknb.devices", vknb.devices),
                    ("vknb.compile", lambda: vknb.compile(ADD, name="add"))]:
        try:
            f()
        except vknb.VulkanError as e:
            if "fork" not in str(e).lower():
                print(f"child: {what}: {e}", flush=True)
                bad += 1
        else:  # mid-creation or after it, the child holds the parent's Vulkan state
            print(f"child: {what} did not raise", flush=True)
            bad += 1
    return 1 if bad else 0

fork_and_reap(child)
k = vknb.compile(ADD, name="add")
n = 1000
x = rng.random(n, dtype=np.float32)
y = rng.random(n, dtype=np.float32)
ref = y + 2 * x
k(x, y, a=2.0, n=n, grid=n)
check(np.allclose(y, ref, rtol=1e-5), "parent's kernel wrong after the fork")
check_usable("in the parent after the fork")
print("OK")
""",
        timeout=30,
    )
