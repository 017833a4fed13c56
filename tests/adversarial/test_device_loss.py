"""A runaway kernel with VKNB_TIMEOUT_S=1: DeviceLost promptly, every later call on the device
fails at once, reset() gives a fresh device at once, and the interpreter exits without waiting
on the stuck one (contract scenarios 7 and 12)."""

from __future__ import annotations

from .conftest import exit_limit_after_runaway, run_scenario

TIMEOUT_1S = {"VKNB_TIMEOUT_S": "1"}

# Builds everything before the runaway call, then runs it: DeviceLost within 3 s.
LOSE_DEVICE = """
k_run = vknb.compile(RUNAWAY, name="runaway")
k_add = vknb.compile(ADD, name="add")
check_usable("before the runaway kernel")
n = 1000
x = rng.random(n, dtype=np.float32)
y = rng.random(n, dtype=np.float32)
A = vknb.asarray(x, label="old_array")
olds = [vknb.asarray(rng.random(4096, dtype=np.float32), label=f"old{i}") for i in range(4)]
old = vknb.device()
flag = np.zeros(4, np.uint32)
out = np.zeros(4, np.uint32)
with raises(vknb.DeviceLost, "runaway", within=3.0) as r:
    k_run(flag, out, groups=RUNAWAY_GROUPS)
check(isinstance(r.value, vknb.ExecutionFailed), "DeviceLost is not an ExecutionFailed")
"""


def test_runaway_kernel_device_lost_then_reset_then_prompt_exit() -> None:
    run_scenario(
        LOSE_DEVICE
        + """
with raises(vknb.DeviceLost, within=0.5):
    k_add(x, y, a=1.0, n=n, grid=n)
with raises(vknb.DeviceLost, within=0.5):
    vknb.asarray(x)
with raises(vknb.DeviceLost, within=0.5):
    A.numpy()
with raises(vknb.DeviceLost, within=0.5):
    k_run(flag, out, groups=1)
new = prompt_reset(old)
check(new is not old and not new.closed, "reset() did not give a fresh device")
check(vknb.device() is new, "the session device is not the fresh one")
k_new = vknb.compile(ADD.replace("a * x[i]", "a * x[i] + 1.0"), name="add_new")
y2 = y.copy()
k_new(x, y2, a=2.0, n=n, grid=n)
check(np.allclose(y2, y + 2 * x + 1, rtol=1e-5), "new kernel on the fresh device: wrong")
y3 = y.copy()
k_add(x, y3, a=3.0, n=n, grid=n)
check(np.allclose(y3, y + 3 * x, rtol=1e-5), "old kernel on the fresh device: wrong")
check_usable("after reset")
print("OK")
""",
        env=TIMEOUT_1S,
        timeout=15,
        exit_within=exit_limit_after_runaway(),
    )


def test_runaway_kernel_then_exit_without_reset_is_prompt() -> None:
    run_scenario(
        LOSE_DEVICE
        + """
print("OK")
""",
        env=TIMEOUT_1S,
        timeout=15,
        exit_within=exit_limit_after_runaway(),
    )


def test_runaway_wait_false_then_synchronize_raises_device_lost() -> None:
    run_scenario(
        """
k_run = vknb.compile(RUNAWAY, name="runaway")
check_usable("before")
old = vknb.device()
flag = np.zeros(4, np.uint32)
out = np.zeros(4, np.uint32)
s = k_run(flag, out, groups=RUNAWAY_GROUPS, wait=False)
with raises(vknb.DeviceLost, within=3.0):
    vknb.synchronize()
with raises(vknb.DeviceLost, within=0.5):
    s.wait()
prompt_reset(old)
check_usable("after reset")
print("OK")
""",
        env=TIMEOUT_1S,
        timeout=15,
        exit_within=exit_limit_after_runaway(),
    )


def test_closing_old_arrays_after_timeout_never_corrupts_new_ones() -> None:
    run_scenario(
        LOSE_DEVICE
        + """
vknb.reset()
k = vknb.compile(ADD, name="add_fresh")
xs = [rng.random(4096, dtype=np.float32) for _ in range(4)]
ys = [rng.random(4096, dtype=np.float32) for _ in range(4)]
X = [vknb.asarray(v) for v in xs]
Y = [vknb.asarray(v) for v in ys]
for i in range(4):
    k(X[i], Y[i], a=2.0, n=4096, grid=4096)
for o in olds:  # arrays of the lost device
    o.close()
A.close()
del olds, A
gc.collect()
more = [vknb.asarray(rng.random(4096, dtype=np.float32)) for _ in range(4)]
for i in range(4):
    k(X[i], Y[i], a=1.0, n=4096, grid=4096)
for i in range(4):
    check(np.array_equal(X[i].numpy(), xs[i]), f"new input {i} corrupted")
    check(np.allclose(Y[i].numpy(), ys[i] + 3 * xs[i], rtol=1e-5), f"new output {i} wrong")
check_usable("after closing the old arrays")
print("OK")
""",
        env=TIMEOUT_1S,
        timeout=15,
        exit_within=exit_limit_after_runaway(),
    )


def test_exit_after_a_lost_device_keeps_its_status_and_runs_atexit() -> None:
    """The exit that skips the driver's handlers (which wait for the runaway kernel on NVIDIA)
    still runs Python's atexit handlers and flushes, and keeps the script's exit status."""
    res = run_scenario(
        LOSE_DEVICE
        + """
import atexit
atexit.register(lambda: print("atexit ran", flush=True))
print("buffered to the end", end="")
sys.exit(3)
""",
        env=TIMEOUT_1S,
        timeout=15,
        expect_rc=3,
    )
    assert "atexit ran" in res.stdout and "buffered to the end" in res.stdout, res.stdout


def test_runaway_kernel_in_a_synchronous_batch_replay_then_reset() -> None:
    """A synchronous replay waits on the batch's own fence: a kernel that never ends there
    raises DeviceLost at the timeout, the batch refuses later replays at once, and reset()
    gives a usable device."""
    run_scenario(
        """
k_run = vknb.compile(RUNAWAY, name="runaway")
old = vknb.device()
flag = vknb.zeros(4, np.uint32)
out = vknb.zeros(4, np.uint32)
with vknb.batch(wait=False) as b:
    k_run(flag, out, groups=RUNAWAY_GROUPS)
with raises(vknb.DeviceLost, within=3.0):
    b.wait()
with raises((vknb.DeviceLost, vknb.ObjectClosed), within=0.5):
    b.replay()
prompt_reset(old)
check_usable("after reset")
print("OK")
""",
        env=TIMEOUT_1S,
        timeout=15,
        exit_within=exit_limit_after_runaway(),
    )
