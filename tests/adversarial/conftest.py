"""Harness of the adversarial suite: every scenario runs in its own Python process.

A scenario is a small script.  It gets a prelude (imports, a seeded generator, helpers) and must
print ``OK`` as its last act.  The harness runs it with a time limit in its own process group, so
a segfault, an abort or a hang fails that one test by name (with the tail of the scenario's
output) instead of taking pytest down.

- :func:`run_scenario` runs a script and checks its exit status and ``OK``.
- :func:`run_interrupt_scenario` waits for the script to print ``READY``, sends it ``SIGINT``
  and lets the script measure (with :func:`sigint_latency`, in the prelude) how long the
  ``KeyboardInterrupt`` took to arrive.

The prelude gives every scenario: ``np``, ``vknb``, ``rng`` (seeded), ``TMP`` (its own
directory), ``check``, ``raises`` (type, message words, duration), ``timed``, ``settle`` (memory
stats after gc + trim), ``check_usable``, ``ready``/``sigint_latency``/``no_interrupt``,
``random_interrupts`` (SIGINTs at random moments of a loop), ``reset_limit``/``busy_iters``
(what a device needs), and the shaders ``ADD``, ``BUSY`` and ``RUNAWAY``.  An uncaught
exception ends the scenario at once (``os._exit(1)``), so a broken interpreter exit never
hides the first failure.

Only the public API of vknb is used (``import vknb``).  This directory is a package
(``__init__.py``) so that this conftest does not replace ``tests/conftest.py`` as the module
``conftest`` that other test files import from.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

# One SPIR-V / pipeline cache for every scenario of the session (compiles are then cache hits),
# never the user's; made on first use, removed at the end of the session.
_CACHE_DIR: list[str] = []


def _cache_dir() -> str:
    if not _CACHE_DIR:
        _CACHE_DIR.append(tempfile.mkdtemp(prefix="vknb-adversarial-cache-"))
    return _CACHE_DIR[0]


PRELUDE = r'''
import gc, os, sys, time, threading, signal, textwrap, weakref
import numpy as np
import vknb

rng = np.random.default_rng(int(os.environ.get("ADV_SEED", "1234")))
TMP = os.environ["ADV_TMP"]  # the scenario's own directory (removed after it)


def _fail_fast(et, ev, tb):
    # A failed scenario exits at once: its interpreter exit (which may hang on a broken
    # device) is not what failed.  Exits after OK are measured by the harness.
    import traceback
    traceback.print_exception(et, ev, tb)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


sys.excepthook = _fail_fast


def check(cond, msg=""):
    if not cond:
        raise AssertionError(msg or "check failed")


class raises:
    """``with raises(Exc, "word", ...) as r:`` -- the block must raise Exc (or a subclass)
    whose message contains every word (case-insensitive); ``within=`` bounds its duration.
    ``r.value`` is the exception, ``r.elapsed`` the seconds the block took."""

    def __init__(self, exc, *words, within=None):
        self.exc, self.words, self.within = exc, words, within
        self.value, self.elapsed = None, None

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, et, ev, tb):
        self.elapsed = time.monotonic() - self.t0
        names = self.exc.__name__ if isinstance(self.exc, type) else [
            e.__name__ for e in self.exc]
        if et is None:
            raise AssertionError(f"expected {names}, nothing was raised "
                                 f"(after {self.elapsed:.2f} s)")
        if not issubclass(et, self.exc):
            raise AssertionError(f"expected {names}, got {et.__name__}: {ev}") from ev
        self.value = ev
        msg = str(ev)
        print(f"raised {et.__name__} after {self.elapsed:.2f} s: {msg[:300]}")
        low = msg.lower()
        missing = [w for w in self.words if str(w).lower() not in low]
        if missing:
            raise AssertionError(f"{et.__name__} message lacks {missing}: {msg!r}") from ev
        if self.within is not None and self.elapsed > self.within:
            raise AssertionError(f"{et.__name__} took {self.elapsed:.2f} s "
                                 f"(limit {self.within} s)") from ev
        return True


def timed(fn, *args, **kwargs):
    """(result, seconds)."""
    t0 = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - t0


def settle(dev=None):
    """Collect garbage, wait, trim; -> (allocated, used, buffers) of the device."""
    dev = dev or vknb.device()
    for _ in range(3):
        gc.collect()
    dev.synchronize()
    dev.trim()
    s = dev.memory_stats()
    return (s.allocated, s.used, s.buffers)


def sigint_latency():
    """Seconds since the harness sent SIGINT (both sides read CLOCK_MONOTONIC)."""
    path = os.environ["ADV_SIGINT_FILE"]
    for _ in range(200):
        try:
            text = open(path).read().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return time.monotonic() - float(text)
        time.sleep(0.005)
    raise AssertionError("KeyboardInterrupt arrived but the harness never sent SIGINT")


def check_usable(what="after the incident"):
    """A new kernel and a round trip on the session device give numpy's answers."""
    k = vknb.compile(ADD, name="add_check")
    n = int(rng.integers(1000, 5000))
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    ref = y + np.float32(1.5) * x
    k(x, y, a=1.5, n=n, grid=n)
    check(np.allclose(y, ref, rtol=1e-5), f"kernel result wrong {what}")
    z = rng.random(n, dtype=np.float32)
    check(np.array_equal(vknb.asarray(z).numpy(), z), f"round trip wrong {what}")


def sigint_sent_ago():
    """Seconds since the harness sent SIGINT, or None when it has not sent it yet."""
    try:
        text = open(os.environ["ADV_SIGINT_FILE"]).read().strip()
    except FileNotFoundError:
        return None
    return time.monotonic() - float(text) if text else None


def no_interrupt(what):
    """Fail: ``what`` ended without a KeyboardInterrupt."""
    ago = sigint_sent_ago()
    when = "before SIGINT was sent" if ago is None else f"{ago:.2f} s after SIGINT was sent"
    raise AssertionError(f"{what} ended {when}, without KeyboardInterrupt")


def ready():
    print("READY", flush=True)


def random_interrupts(rounds, body, max_delay, seconds, seed):
    """``rounds`` times: run ``body()`` over and over for up to ``seconds`` while a SIGINT
    lands at a random moment within ``max_delay`` s; return how many interrupts landed."""
    import random
    pick = random.Random(seed)
    hits = 0
    for _ in range(rounds):
        t = threading.Timer(pick.uniform(0.0005, max_delay), os.kill, (os.getpid(), signal.SIGINT))
        try:  # (the timer may fire before start() returns)
            t.start()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                body()
        except KeyboardInterrupt:
            hits += 1
        t.join()
    return hits


def _vknb_profiler(on_point):
    """A sys.setprofile function that calls ``on_point(frame)`` wherever vknb's code can be
    interrupted: as a Python function that vknb has or calls starts, and as a C function it
    called returns (where CPython runs pending signal handlers; never between two plain
    statements)."""
    def ours(frame):
        return frame is not None and "/vknb/" in frame.f_code.co_filename
    def profile(frame, event, arg):
        if event == "c_return" and ours(frame) or event == "call" and (
                ours(frame) or ours(frame.f_back)):
            on_point(frame)
    return profile


def interrupt_at_every_point(body, after, limit=3000):
    """Run ``body()`` once for every point of vknb's code where it can be interrupted (counted
    on a clean run, after a first run that takes the long way), with Ctrl-C at that point (the
    SIGINT handler in force there is run, as CPython would: KeyboardInterrupt, or held back by
    vknb), then ``after()``, which checks that nothing was lost; return (points, how many runs
    a KeyboardInterrupt ended).  Random moments reach narrow windows by chance; this reaches
    every one, in order."""
    body()
    after()
    count = [0]
    sys.setprofile(_vknb_profiler(lambda frame: count.__setitem__(0, count[0] + 1)))
    try:
        body()
    finally:
        sys.setprofile(None)
    after()
    points, hits = min(count[0], limit), 0
    for target in range(1, points + 1):
        seen, where = [0], []
        def on_point(frame, target=target):
            seen[0] += 1
            if seen[0] == target:
                where.append(f"{frame.f_code.co_filename.split('/vknb/')[-1]}:{frame.f_lineno}")
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        try:
            try:
                sys.setprofile(_vknb_profiler(on_point))
                body()
            finally:
                sys.setprofile(None)
            while vknb._vk.rearming():  # (held back in a callback: on its way again)
                time.sleep(0.001)
            time.sleep(0)  # (a Ctrl-C still held back fires here at the latest)
        except KeyboardInterrupt:
            hits += 1
        try:
            after()
        except Exception as e:
            raise AssertionError(
                f"Ctrl-C at point {target} of {points} ({where}): {type(e).__name__}: {e}"
            ) from None
    return points, hits


def holdings(devs):
    """Per device: buffers, bytes used, images, imports of host memory, live vknb objects."""
    out = []
    for d in devs:
        s = d.memory_stats()
        out.append((s.buffers, s.used, s.images, s.imports, dict(d.live_objects())))
    return out


def check_settled(devs):
    """After an interrupted call (and what the user does next: a call, synchronize()): no batch
    block recording, nothing in flight or pending, no wait registered, no release queued."""
    check(vknb.compute.batch.current() is None, "a batch block is still recording")
    vknb.synchronize()
    for d in devs:
        d.synchronize()
        d.collect()
        check(not d.pending(), f"{len(d.pending())} submissions still pending")
        check(not d._inflight, f"submissions {sorted(d._inflight)} still in flight")
        check(not d.busy, f"{len(d.busy)} waits still registered on the device")
        check(not d._retiring and not d._orphans, "releases still queued")


def interrupt_every_body(bodies, devs, also=None, limit=3000):
    """For each named body, ``interrupt_at_every_point``; after each run, ``check_settled``,
    ``also()``, and that the devices hold no more than before the body (fewer is fine: a
    cached scratch buffer that Ctrl-C dropped is freed, not leaked)."""
    for name, body in bodies.items():
        body()
        gc.collect()
        check_settled(devs)
        base = holdings(devs)

        def after():
            check_settled(devs)
            if also is not None:
                also()
            now = holdings(devs)
            for (*nums, objs), (*was, was_objs) in zip(now, base):
                more = any(a > b for a, b in zip(nums, was)) or any(
                    c > was_objs.get(cls, 0) for cls, c in objs.items())
                check(not more, f"objects left: {now} after, {base} before")

        points, hits = interrupt_at_every_point(body, after, limit)
        print(f"{name}: {points} points, {hits} interrupted", flush=True)
        check(hits >= points // 2, f"{name}: only {hits} of {points} interrupts landed")


# Shaders used by many scenarios.
ADD = """
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < n) y[i] += a * x[i];
}
"""

# Terminates.  lavapipe stops any loop after 65535 iterations per invocation, so the run time
# comes from the invocation count: about 20 us per invocation there (BUSY_N: ~5 s).
BUSY = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; uint iters; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= n) return;
    float s = y[i];
    for (uint j = 0u; j < iters; j++) s = s * 0.999 + 1.0;
    y[i] = s;
}
"""
BUSY_N = 250_000


def reset_limit(dev):
    """How long vknb.reset() may take after a runaway kernel on ``dev``: 2 s on a CPU driver.
    A GPU's driver first takes the GPU back from the kernel, which never ends by itself (the
    H100's needs about 4.5 s): 8 s there."""
    return 2.0 if dev.info.type == "cpu" else 8.0


def prompt_reset(old):
    """``vknb.reset()`` after a runaway kernel on ``old``: the fresh device, checked to come
    within ``reset_limit(old)``."""
    new, t = timed(vknb.reset)
    print(f"reset() took {t:.2f} s")
    check(t < reset_limit(old), f"vknb.reset() took {t:.2f} s (limit {reset_limit(old):g} s)")
    return new


def busy_iters(kb, seconds=5.0):
    """``iters`` for a BUSY dispatch of BUSY_N invocations that runs about ``seconds``.

    lavapipe caps every loop (1_000_000 gives ~5 s there); a GPU runs all BUSY_N invocations
    at once, each one's loop for a few ns per iteration: measured with a short dispatch and
    scaled (an H100 needs ~1e9 iterations for 5 s).
    """
    if vknb.device().info.type == "cpu":
        return 1_000_000
    Y = vknb.asarray(np.zeros(BUSY_N, np.float32))
    it = 1_000_000
    while True:
        rec = kb(Y, n=BUSY_N, iters=it, grid=BUSY_N)
        ms = rec.gpu_ms if rec.gpu_ms is not None else rec.host_ms
        if ms > 50 or it >= 2**31:
            break
        it *= 8
    Y.close()
    return int(min(2**32 - 1, it * seconds * 1e3 / ms))

# Never terminates in practice: `flag[0]` is never written but, being volatile, is read again
# every iteration.  Dispatched with RUNAWAY_GROUPS: with lavapipe's loop cap (above) that is
# 2.7e11 invocations of 65535 iterations each.  Bindings: flag (uint32, zeros), out (uint32).
RUNAWAY = """
layout(local_size_x = 64) in;
layout(binding = 0) volatile buffer F { uint flag[]; };
layout(binding = 1) buffer O { uint o[]; };
void main() {
    uint k = 0u;
    while (flag[0] == 0u) { k++; }
    o[gl_GlobalInvocationID.x & 3u] = k;
}
"""
RUNAWAY_GROUPS = (65535, 65535, 1)
'''

_PRELUDE_LINES = PRELUDE.count("\n")


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float  # seconds from start to exit
    exit_s: float | None  # seconds from the OK line to the process's exit


def session_device_is_cpu() -> bool:
    """Whether the device the scenarios run on (the highest score) is a CPU driver."""
    import vknb

    infos = vknb.devices()
    return max(infos, key=lambda d: (d.score, -d.index)).type == "cpu"


def exit_limit_after_runaway() -> float:
    """How soon a process must end after a kernel that never ends: 5 s on a CPU driver.  A
    GPU's driver must take the GPU back from the kernel first; NVIDIA's needs about 6 s for
    that as the process ends (and 4.5 s when a new device is made): 10 s there."""
    return 5.0 if session_device_is_cpu() else 10.0


def _tail(text: str, n: int = 4000) -> str:
    text = text or ""
    return text if len(text) <= n else "...\n" + text[-n:]


def _script(code: str, tmpdir: Path) -> Path:
    path = tmpdir / "scenario.py"
    path.write_text(PRELUDE + "\n# --- scenario ---\n" + textwrap.dedent(code))
    return path


def _env(env: dict[str, str] | None, validation: bool, tmpdir: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.pop("VKNB_VALIDATION", None)
    e["VKNB_CACHE_DIR"] = _cache_dir()
    e["PYTHONUNBUFFERED"] = "1"
    e["PYTHONFAULTHANDLER"] = "1"  # a crash prints the Python stack of every thread
    e["ADV_SIGINT_FILE"] = str(tmpdir / "sigint_sent")
    e["ADV_TMP"] = str(tmpdir)
    if validation:
        e["VKNB_VALIDATION"] = "1"
    if env:
        e.update(env)
    return e


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


class _Child:
    """A scenario process in its own process group, its output pumped by two threads (each
    stdout line with the time it arrived)."""

    def __init__(self, script: Path, env: dict[str, str], cwd: Path) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.lines: queue.Queue[tuple[str, float] | None] = queue.Queue()
        self.out: list[tuple[str, float]] = []
        self.err: list[str] = []
        self.threads = [
            threading.Thread(target=self._pump_out, daemon=True),
            threading.Thread(target=self._pump_err, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            item = (line, time.monotonic())
            self.out.append(item)
            self.lines.put(item)
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self, timeout: float) -> float | None:
        """Wait for the exit (None: killed after ``timeout``); the exit time otherwise."""
        try:
            self.proc.wait(timeout=max(0.1, timeout))
            t_exit = time.monotonic()
        except subprocess.TimeoutExpired:
            t_exit = None
        self.kill()  # grandchildren (a forked child, a compiler) never outlive the scenario
        self.proc.wait()
        for t in self.threads:
            t.join(5)
        return t_exit

    def report(self, what: str) -> str:
        elapsed = time.monotonic() - self.t0
        out = "".join(line for line, _ in self.out)
        return (
            f"{what} (after {elapsed:.1f} s)\n"
            f"--- stdout (tail) ---\n{_tail(out)}\n"
            f"--- stderr (tail) ---\n{_tail(''.join(self.err))}"
        )

    def result(
        self, t_exit: float | None, timeout: float, expect_rc: int, exit_within: float | None
    ) -> Result:
        if t_exit is None:
            pytest.fail(self.report(f"scenario hung: killed after {timeout:g} s"))
        rc = self.proc.returncode
        if rc < 0:
            pytest.fail(self.report(f"scenario crashed with {_signal_name(rc)}"))
        if rc != expect_rc:
            pytest.fail(self.report(f"scenario exited with status {rc}, expected {expect_rc}"))
        exit_s = None
        if expect_rc == 0:
            stripped = [(line.strip(), t) for line, t in self.out if line.strip()]
            if not stripped or stripped[-1][0] != "OK":
                pytest.fail(self.report("scenario did not print OK at its end"))
            exit_s = t_exit - stripped[-1][1]
            print(f"scenario: {t_exit - self.t0:.2f} s, its exit {exit_s:.2f} s after OK")
            print(_tail("".join(line for line, _ in self.out), 1500))
            if exit_within is not None and exit_s > exit_within:
                pytest.fail(
                    self.report(
                        f"interpreter exit took {exit_s:.1f} s after OK (limit {exit_within:g} s)"
                    )
                )
        return Result(
            rc,
            "".join(line for line, _ in self.out),
            "".join(self.err),
            t_exit - self.t0,
            exit_s,
        )


def run_scenario(
    code: str,
    *,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    validation: bool = False,
    expect_rc: int = 0,
    exit_within: float | None = 10.0,
) -> Result:
    """Run ``PRELUDE + code`` in a fresh interpreter.

    Fails the test on a timeout (the whole process group is killed), a signal (named), an
    unexpected exit status, a missing final ``OK`` line, or an interpreter exit slower than
    ``exit_within`` seconds after ``OK``.  ``validation=True`` sets ``VKNB_VALIDATION=1``.
    """
    tmpdir = Path(tempfile.mkdtemp(prefix="vknb-adv-"))
    try:
        child = _Child(_script(code, tmpdir), _env(env, validation, tmpdir), tmpdir)
        t_exit = child.finish(timeout)
        return child.result(t_exit, timeout, expect_rc, exit_within)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def run_interrupt_scenario(
    code: str,
    *,
    delay: float = 0.3,
    timeout: float = 60,
    ready_timeout: float = 30,
    env: dict[str, str] | None = None,
    validation: bool = False,
    exit_within: float | None = 10.0,
) -> Result:
    """Run a scenario and send it SIGINT ``delay`` s after it prints ``READY``.

    The scenario catches ``KeyboardInterrupt``, calls ``sigint_latency()`` (seconds since the
    harness sent the signal, measured by the child) and asserts on it, then goes on using the
    session and prints OK.  Fails like :func:`run_scenario`.
    """
    tmpdir = Path(tempfile.mkdtemp(prefix="vknb-adv-"))
    try:
        e = _env(env, validation, tmpdir)
        child = _Child(_script(code, tmpdir), e, tmpdir)
        deadline = child.t0 + ready_timeout
        while True:
            try:
                item = child.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                child.finish(0.1)
                pytest.fail(child.report(f"scenario never printed READY in {ready_timeout:g} s"))
            if item is None:  # exited before READY: report why
                return child.result(child.finish(timeout), timeout, 0, exit_within)
            if item[0].strip() == "READY":
                break
        time.sleep(delay)
        Path(e["ADV_SIGINT_FILE"]).write_text(repr(time.monotonic()))
        try:
            os.kill(child.proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        t_exit = child.finish(timeout - (time.monotonic() - child.t0))
        return child.result(t_exit, timeout, 0, exit_within)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for d in _CACHE_DIR:
        shutil.rmtree(d, ignore_errors=True)
