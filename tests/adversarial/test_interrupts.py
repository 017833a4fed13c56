"""Ctrl-C (SIGINT) during transfers and waits: KeyboardInterrupt within 0.5 s, then a usable
session with correct results and no leaked memory (contract scenarios 2 and 8)."""

from __future__ import annotations

from pathlib import Path

from .conftest import run_interrupt_scenario, run_scenario


def run_leaving_nothing(code: str, *, timeout: float) -> None:
    """Run a scenario with the validation layer on; fail if it reports an error, or an object
    left at ``vkDestroyDevice`` (what an interrupted creation or release would leak)."""
    res = run_scenario(code, validation=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert "has not been destroyed" not in out and "Validation Error" not in out, out[-3000:]


def test_ctrl_c_during_asarray_of_512_mib_is_prompt_and_leaks_nothing() -> None:
    run_interrupt_scenario(
        """
        check_usable()
        base = settle()
        big = np.arange(128 << 20, dtype=np.float32)  # 512 MiB
        ready()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 6:
                vknb.asarray(big)
            no_interrupt("6 s of vknb.asarray(512 MiB) calls")
        except KeyboardInterrupt:
            lat = sigint_latency()
        print(f"KeyboardInterrupt {lat * 1000:.0f} ms after SIGINT")
        check(lat < 0.5, f"KeyboardInterrupt came {lat:.2f} s after SIGINT (limit 0.5 s)")
        check_usable()
        after = settle()
        print("memory (allocated, used, buffers) before", base, "after", after)
        check(after[1:] == base[1:], f"memory not back at baseline: {base} -> {after}")
        print("OK")
        """,
        env={"VKNB_COPY_THREADS": "4"},
        timeout=60,
    )


def test_ctrl_c_during_array_numpy_of_512_mib_is_prompt() -> None:
    run_interrupt_scenario(
        """
        check_usable()
        base = settle()
        big = np.arange(128 << 20, dtype=np.float32)
        A = vknb.asarray(big)
        out = np.empty_like(big)
        ready()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 6:
                A.numpy(out=out)
                A.numpy()
            no_interrupt("6 s of Array.numpy() calls")
        except KeyboardInterrupt:
            lat = sigint_latency()
        print(f"KeyboardInterrupt {lat * 1000:.0f} ms after SIGINT")
        check(lat < 0.5, f"KeyboardInterrupt came {lat:.2f} s after SIGINT (limit 0.5 s)")
        check(np.array_equal(A.numpy(), big), "the Array changed after an interrupted download")
        check_usable()
        del A
        after = settle()
        check(after[1:] == base[1:], f"memory not back at baseline: {base} -> {after}")
        print("OK")
        """,
        env={"VKNB_COPY_THREADS": "4"},
        timeout=60,
    )


def test_ctrl_c_during_long_dispatch_is_prompt_and_session_usable() -> None:
    run_interrupt_scenario(
        """
        kb = vknb.compile(BUSY, name="busy")
        y = rng.random(BUSY_N, dtype=np.float32)
        kb(y[:64].copy(), n=64, iters=10, grid=64)  # pipeline built before READY
        iters = busy_iters(kb)
        ready()
        t0 = time.monotonic()
        try:
            kb(y, n=BUSY_N, iters=iters, grid=BUSY_N)
            no_interrupt(f"the long dispatch ({time.monotonic() - t0:.1f} s)")
        except KeyboardInterrupt:
            lat = sigint_latency()
        print(f"KeyboardInterrupt {lat * 1000:.0f} ms after SIGINT")
        check(lat < 0.5, f"KeyboardInterrupt came {lat:.2f} s after SIGINT (limit 0.5 s)")
        check_usable()  # may wait for the long kernel to end
        # the busy kernel itself still gives the right answer
        z = rng.random(256, dtype=np.float32)
        ref = z.copy()
        for _ in range(10):
            ref = ref * np.float32(0.999) + np.float32(1.0)
        kb(z, n=256, iters=10, grid=256)
        check(np.allclose(z, ref, rtol=1e-5), "busy kernel wrong after the interrupt")
        vknb.synchronize()
        print("OK")
        """,
        timeout=60,
    )


def test_ctrl_c_during_synchronize_of_pending_dispatch() -> None:
    run_interrupt_scenario(
        """
        kb = vknb.compile(BUSY, name="busy")
        y = rng.random(BUSY_N, dtype=np.float32)
        kb(y[:64].copy(), n=64, iters=10, grid=64)
        Y = vknb.asarray(y)
        sub = kb(Y, n=BUSY_N, iters=busy_iters(kb), grid=BUSY_N, wait=False)
        ready()
        try:
            vknb.synchronize()
            no_interrupt("vknb.synchronize()")
        except KeyboardInterrupt:
            lat = sigint_latency()
        print(f"KeyboardInterrupt {lat * 1000:.0f} ms after SIGINT")
        check(lat < 0.5, f"KeyboardInterrupt came {lat:.2f} s after SIGINT (limit 0.5 s)")
        sub.wait()
        # s -> 0.999 s + 1 many times converges to its fixed point 1000
        got = Y.numpy()
        check(np.allclose(got, 1000.0, rtol=1e-2), f"the dispatch's result is wrong: {got[:4]}")
        vknb.synchronize()
        check_usable()
        print("OK")
        """,
        timeout=60,
    )


def test_ctrl_c_while_objects_are_made_leaks_no_vulkan_object() -> None:
    """Ctrl-C that lands as a driver call returns a new object (a shader module, a pipeline, a
    buffer, device memory, a fence) must not lose that object: 80 interrupts at random moments
    while pipelines (new specialization constants: no cache serves them), arrays and library
    kernels are made; the validation layer, which names every object left at vkDestroyDevice,
    reports none at exit."""
    run_leaving_nothing(
        '''
from vknb import library as lib
SRC = """
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint R = 1;
layout(binding = 0) buffer Y { float y[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    float v = y[i];
    for (uint r = 0; r < R; r++) { v = v * 1.0001 + sin(v) * 0.5 + cos(float(r)); }
    y[i] = v;
}
"""
spirv = vknb.compile(SRC, name="spec").spirv
x = rng.integers(0, 2**32, 1 << 16, dtype=np.uint64).astype(np.uint32)
made = 0

def make():
    global made
    made += 1
    k = vknb.compile(spirv, name=f"k{made}", constants={"R": made})
    a = vknb.asarray(rng.random(1000 + made % 5000, dtype=np.float32))
    k(a, grid=a.size)
    if made % 7 == 0:
        lib.sort(x[: 3000 + (17 * made) % 20000])
    k.close(); a.close()

hits = random_interrupts(80, make, max_delay=0.03, seconds=1.0, seed=5)
check(hits >= 70, f"only {hits} interrupts landed")
check_usable()
print(made, "kernels made")
print("OK")
''',
        timeout=240,
    )


# A kernel, its device Arrays, a bound call on them and numpy arrays of the same size: what the
# random-interrupt scenarios of calls share.
CALLS_SETUP = """
# Every descriptor pool gives at most the set tuples it holds (NVIDIA refuses more with
# VK_ERROR_OUT_OF_POOL_MEMORY; lavapipe hands them out, so they are counted here).
from vknb.core import pipeline as P
taken = {{}}
allocate_sets = P.ComputePipeline._allocate_sets
def counted_allocate_sets(self):
    sets = allocate_sets(self)
    taken[self._pool] = taken.get(self._pool, 0) + 1
    return sets
P.ComputePipeline._allocate_sets = counted_allocate_sets
def check_pools():
    most = max(taken.values(), default=0)
    check(most <= P.DESCRIPTOR_CACHE,
          f"a descriptor pool gave {{most}} set tuples; it holds {{P.DESCRIPTOR_CACHE}}")
    print(len(taken), "descriptor pools, at most", most, "tuples from one")

k = vknb.compile(ADD, name="{name}")
n = 4096
x = rng.random(n, dtype=np.float32)
X = vknb.asarray(x)
Y = vknb.asarray(np.zeros(n, np.float32))
step = k.bind(X, Y, a=1.0, n=n, grid=n)
z = np.zeros(n, np.float32)
calls = 0
"""


def test_ctrl_c_at_random_moments_of_repeated_calls_loses_no_slot() -> None:
    """Synchronous calls (a repeated Kernel call, a bound call, a call with numpy arguments)
    take command-buffer slots; Ctrl-C at any moment of one (submission, the wait, the slot's
    hand-back) must leave every slot free once the GPU is done: 300 interrupts at random
    moments, then the calls still give numpy's answers (a lost slot per interrupt would exhaust
    the 16 a pipeline may have and hang), and the validation layer reports no object left at
    exit."""
    run_leaving_nothing(
        CALLS_SETUP.format(name="add_repeated")
        + """

def call():
    global calls
    calls += 1
    if calls % 3 == 0:
        k(X, Y, a=1.0, n=n, grid=n)
    elif calls % 3 == 1:
        step()
    else:  # numpy arguments: scratch buffers, uploads and a write-back
        k(x, z, a=1.0, n=n, grid=n)

hits = random_interrupts(300, call, max_delay=0.004, seconds=0.5, seed=11)
check(hits >= 280, f"only {hits} interrupts landed")
vknb.synchronize()
y0 = rng.random(n, dtype=np.float32)
Y.update(y0)
for _ in range(40):  # more calls than a pipeline has slots
    k(X, Y, a=1.0, n=n, grid=n)
    step()
check(np.allclose(Y.numpy(), y0 + 80 * x, rtol=1e-4), "repeated calls wrong after the interrupts")
k.close()
check_usable()
print(calls, "calls,", hits, "interrupted")
check_pools()
print("OK")
""",
        timeout=120,
    )


def test_ctrl_c_at_random_moments_of_asynchronous_calls_loses_no_slot() -> None:
    """A ``wait=False`` call hands its slot and scratch buffers to the Submission it returns;
    Ctrl-C at any moment of that (submission, the hand-over, a later wait) must leave every
    slot free and every Submission finishable once the GPU is done: 40 interrupts during the
    hand-over, 600 at random moments, then every slot of the pipeline is free, the calls give
    numpy's answers, and the validation layer reports no object left at exit."""
    run_leaving_nothing(
        CALLS_SETUP.format(name="add_async")
        + """

def call():
    global calls
    calls += 1
    if calls % 4 == 0:
        k(X, Y, a=1.0, n=n, grid=n, wait=False)
    elif calls % 4 == 1:  # numpy arguments: scratch buffers, uploads, a write-back on wait()
        k(x, z, a=1.0, n=n, grid=n, wait=False)
    elif calls % 4 == 2:
        step(wait=False).wait()
    else:
        k(x, z, a=1.0, n=n, grid=n, wait=False).wait()

# First, Ctrl-C exactly during the hand-over to the Submission (the window is a few
# microseconds wide: random moments seldom hit it).
import signal
from vknb.core.device import Device
submission = Device.submission
def interrupted_submission(self, *a, **kw):
    os.kill(os.getpid(), signal.SIGINT)
    return submission(self, *a, **kw)
Device.submission = interrupted_submission
for i in range(40):
    try:
        if i % 2:
            k(X, Y, a=1.0, n=n, grid=n, wait=False)
        else:
            k(x, z, a=1.0, n=n, grid=n, wait=False)
    except KeyboardInterrupt:
        pass
    else:
        check(False, "Ctrl-C during the hand-over was lost")
Device.submission = submission
# Ctrl-C exactly as the call that submitted returns, before the caller has stored the slot
# (Python raises a pending interrupt at the end of a call): the slot must still be given up.
from vknb.core.pipeline import ComputePipeline
for name in ("dispatch", "submit_repeated"):
    orig = getattr(ComputePipeline, name)
    def interrupted_return(self, *a, _orig=orig, **kw):
        r = _orig(self, *a, **kw)
        os.kill(os.getpid(), signal.SIGINT)
        return r
    setattr(ComputePipeline, name, interrupted_return)
    for i in range(30):
        try:
            if name == "dispatch":  # numpy arguments
                k(x, z, a=1.0, n=n, grid=n, wait=i % 2 == 0)
            elif i % 2:  # a repeated call
                k(X, Y, a=1.0, n=n, grid=n)
            else:
                step()
        except KeyboardInterrupt:
            pass
        else:
            check(False, f"Ctrl-C as {name} returned was lost")
    setattr(ComputePipeline, name, orig)
vknb.synchronize()
busy = [s for s in k.pipeline._slots if s.busy]
check(not busy, f"{len(busy)} slots lost to Ctrl-C as the submitting call returned")
hits = random_interrupts(600, call, max_delay=0.003, seconds=0.5, seed=13)
check(hits >= 570, f"only {hits} interrupts landed")
vknb.synchronize()
busy = [s for s in k.pipeline._slots if s.busy]
check(not busy, f"{len(busy)} of {len(k.pipeline._slots)} slots still taken after synchronize()")
y0 = rng.random(n, dtype=np.float32)
Y.update(y0)
subs = [k(X, Y, a=1.0, n=n, grid=n, wait=False) for _ in range(40)]  # more than the slots
for s in subs:
    s.wait()
check(np.allclose(Y.numpy(), y0 + 40 * x, rtol=1e-4), "calls wrong after the interrupts")
k.close()
check_usable()
print(calls, "calls,", hits, "interrupted")
check_pools()
print("OK")
""",
        timeout=120,
    )


def test_ctrl_c_at_random_moments_of_batch_replays_with_updates() -> None:
    """A replay with new push constants records the batch again: Ctrl-C at any moment of it
    leaves a batch that replays right afterwards (never a command buffer left half-recorded,
    which a later replay would begin or submit)."""
    run_leaving_nothing(
        """
import random
k = vknb.compile(ADD, name="add_batch")
n = 1024
x = rng.random(n, dtype=np.float32)
X = vknb.asarray(x)
Y = vknb.asarray(np.zeros(n, np.float32))
with vknb.batch() as b:
    for _ in range(200):
        k(X, Y, a=1.0, n=n, grid=n)
pick = random.Random(12)
hits = random_interrupts(
    150, lambda: b.replay({pick.randrange(200): {"a": 1.0}}), max_delay=0.004, seconds=0.5, seed=12
)
check(hits >= 140, f"only {hits} interrupts landed")
vknb.synchronize()
y0 = rng.random(n, dtype=np.float32)
Y.update(y0)
b.replay({0: {"a": 2.0}})
check(np.allclose(Y.numpy(), y0 + 201 * x, rtol=1e-4), "the batch replayed wrong")
b.close()
check_usable()
print("OK")
""",
        timeout=120,
    )


def test_first_compiles_from_threads_and_ctrl_c_while_the_device_is_made(tmp_path: Path) -> None:
    """A fresh process: the first vknb.compile makes the session device on a thread while glslc
    runs.  Three threads compiling at once get one device between them; Ctrl-C during a first
    compile (empty caches: glslc runs) interrupts it, the device thread finishes on its own, the
    session works and the process exits promptly."""
    res = run_scenario(
        """
import random
from vknb.core.device import live_devices
check(vknb.current_device() is None, "the prelude made a device")
random.seed(3)
t = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT))
t.start()
try:
    vknb.compile(ADD.replace("1.5", "2.5"), name="first")
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
t.join()
print("first compile interrupted:", interrupted)
kernels, errors = {}, []

def build(i):
    try:
        kernels[i] = vknb.compile(ADD.replace("a * x[i]", f"a * x[i] + {i}.0"), name=f"t{i}")
    except BaseException as e:
        errors.append(repr(e))

threads = [threading.Thread(target=build, args=(i,)) for i in range(3)]
for th in threads:
    th.start()
for th in threads:
    th.join(60)
check(not errors, f"compiles from threads failed: {errors}")
dev = vknb.device()
check(len([d for d in live_devices() if d.state == "open"]) == 1, "more than one device made")
n = 1000
for i, k in kernels.items():
    check(k.device is dev, f"kernel {i} on another device")
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    ref = y + np.float32(1.5) * x + np.float32(i)
    k(x, y, a=1.5, n=n, grid=n)
    check(np.allclose(y, ref, rtol=1e-5), f"kernel {i} wrong")
check_usable()
print("OK")
""",
        env={"VKNB_CACHE_DIR": str(tmp_path / "cache")},
        validation=True,
        timeout=90,
    )
    assert "first compile interrupted: True" in res.stdout, res.stdout


def test_ctrl_c_during_a_long_batch_replay_then_wait_writes_back() -> None:
    """A synchronous batch replay waits on its fence itself: Ctrl-C there is prompt, the batch
    stays owned until the GPU is done (closing it meanwhile frees nothing in use), and the next
    wait writes its numpy output back."""
    run_interrupt_scenario(
        """
        kb = vknb.compile(BUSY, name="busy_batch")
        y = rng.random(BUSY_N, dtype=np.float32)
        kb(y[:64].copy(), n=64, iters=10, grid=64)
        iters = busy_iters(kb)
        out = y.copy()
        with vknb.batch(wait=False) as b:
            kb(out, n=BUSY_N, iters=iters, grid=BUSY_N)  # a numpy argument: written back
        b.wait()
        ref = out.copy()
        out[:] = y
        ready()
        try:
            b.replay()
            no_interrupt("the long batch replay")
        except KeyboardInterrupt:
            lat = sigint_latency()
        print(f"KeyboardInterrupt {lat * 1000:.0f} ms after SIGINT")
        check(lat < 0.5, f"KeyboardInterrupt came {lat:.2f} s after SIGINT (limit 0.5 s)")
        b.wait()  # the interrupted replay ran on: its output is written back now
        check(np.array_equal(out, ref), "the interrupted replay's output was not written back")
        check(b.gpu_ms is not None and b.gpu_ms > 0, f"batch GPU time {b.gpu_ms}")
        # Interrupted again, then closed at once: the batch's command buffer, fence and
        # timestamps go only once the GPU is done.  (Without the validation layer: with it,
        # lavapipe's vkQueueSubmit runs the batch to the end before it returns.)
        out[:] = y
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            b.replay()
            no_interrupt("the second long batch replay")
        except KeyboardInterrupt:
            pass
        b.close()
        vknb.synchronize()
        check_usable()
        print("OK")
        """,
        timeout=90,
    )


def test_ctrl_c_at_every_point_of_calls_waits_and_replays_loses_nothing() -> None:
    """Ctrl-C at each point of vknb's code where CPython can raise it, in turn, in a call
    (synchronous and
    ``wait=False`` Kernel calls, bound calls, calls with numpy arguments, batch replays,
    transfers): after each, ``vknb.synchronize()`` leaves no slot taken, no submission in
    flight or pending and no batch in use, and at the end the calls still give numpy's
    answers and the validation layer reports no object left at exit.  (Random moments, as on
    the H100, can land in windows a few instructions wide; this reaches every one.)"""
    run_leaving_nothing(
        CALLS_SETUP.format(name="add_lines")
        + """
dev = vknb.device()
with vknb.batch() as b:
    k(X, Y, a=1.0, n=n, grid=n)
    k(x, z, a=1.0, n=n, grid=n)  # a numpy argument: written back by every replay

def settled():
    vknb.synchronize()
    busy = [s for s in k.pipeline._slots if s.busy]
    check(not busy, f"{len(busy)} of {len(k.pipeline._slots)} slots still taken")
    check(not dev.pending(), f"{len(dev.pending())} submissions still pending")
    check(not dev._inflight, f"submissions {sorted(dev._inflight)} still in flight")
    check(b._idle, "the batch is still in use")
    check(vknb.compute.batch.current() is None, "a batch block is still recording")
    check(not dev.busy, f"{len(dev.busy)} waits still registered on the device")

bodies = {
    "repeated call": lambda: k(X, Y, a=1.0, n=n, grid=n),
    "bound call": lambda: step(),
    "numpy call": lambda: k(x, z, a=1.0, n=n, grid=n),
    "repeated call, wait=False, wait()": lambda: k(X, Y, a=1.0, n=n, grid=n, wait=False).wait(),
    "numpy call, wait=False, wait()": lambda: k(x, z, a=1.0, n=n, grid=n, wait=False).wait(),
    "bound call, wait=False, synchronize()": lambda: (step(wait=False), vknb.synchronize()),
    "batch replay": lambda: b.replay(),
    "batch replay, wait=False, wait()": lambda: b.replay(wait=False).wait(),
    "asarray and numpy()": lambda: vknb.asarray(x).numpy(),
    "batch replay with new push constants": lambda: b.replay({0: {"a": 1.0}}),
}
for name, body in bodies.items():
    points, hits = interrupt_at_every_point(body, settled)
    print(f"{name}: {points} points, {hits} interrupted")
    check(hits >= points // 2, f"{name}: only {hits} of {points} interrupts landed")
y0 = rng.random(n, dtype=np.float32)
Y.update(y0)
for _ in range(20):
    k(X, Y, a=1.0, n=n, grid=n)
    step()
check(np.allclose(Y.numpy(), y0 + 40 * x, rtol=1e-4), "calls wrong after the interrupts")
b.replay()  # (its numpy output's device copy accumulates across replays: compare two)
z1 = z.copy()
b.replay()
check(np.allclose(z - z1, x, rtol=1e-4, atol=1e-4), "the batch output is wrong afterwards")
b.close()
k.close()
check_usable()
check_pools()
print("OK")
""",
        timeout=300,
    )


def test_ctrl_c_in_the_validation_callback_is_neither_lost_nor_cuts_the_message() -> None:
    """A Ctrl-C that lands while the validation layer's messenger (Python that C calls back)
    runs: the message is still counted and raised at the call, and the KeyboardInterrupt still
    reaches the user's code once the driver's call has returned (cffi would print and drop an
    exception raised in the callback)."""
    run_scenario(
        """
from vknb import _vk
dev = vknb.device()
ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
info = _vk.new("VkBufferCreateInfo", {"sType": vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                                       "size": 0, "usage": 0x20})  # invalid: size 0
def interrupt_in_callback(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "_message":
        sys.setprofile(None)
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # as CPython would, there
for attempt in range(5):
    p = ffi.new("VkBuffer*")
    before = _vk.validation_counts["error"]
    got = None
    sys.setprofile(interrupt_in_callback)
    try:
        try:
            res = lib.vkCreateBuffer(dev.handle, info, ffi.NULL, p)
        finally:
            sys.setprofile(None)
        for _ in range(2000):  # it lands at the next point where CPython runs handlers
            time.sleep(0.001)
    except KeyboardInterrupt:
        got = "KeyboardInterrupt"
    check(got == "KeyboardInterrupt", f"attempt {attempt}: the Ctrl-C was lost")
    check(_vk.validation_counts["error"] == before + 1, "the message was not counted")
    with raises(vknb.ValidationError, "VUID-VkBufferCreateInfo-size-00912"):
        _vk.check(0, "vkCreateBuffer", "zero-size buffer")
    if p[0]:
        lib.vkDestroyBuffer(dev.handle, p[0], ffi.NULL)
check(not _vk.rearming(), "a Ctrl-C is still on its way")
check_usable()
print("OK")
""",
        validation=True,
        timeout=120,
    )


def test_ctrl_c_at_every_point_of_objects_dropped_batches_recorded_and_library_calls() -> None:
    """Ctrl-C at each point, in turn, of code that makes and drops objects without close()
    (an Array, a mapped Buffer and its view, a batch, an image: their finalizers), records,
    replays and closes batches, updates and reads Arrays, closes an Array right after a
    ``wait=False`` call, and runs library reductions and scans: after each, nothing is in
    flight, no release is queued, and the device holds no more buffers, bytes or objects than
    before (fewer is fine: a cached scratch buffer that Ctrl-C dropped is freed); at exit the
    validation layer reports no object left."""
    run_leaving_nothing(
        CALLS_SETUP.format(name="add_more")
        + """
dev = vknb.device()
A = vknb.asarray(x)
out = np.empty_like(x)
u32 = (x * 1000).astype(np.uint32)
img = rng.random((16, 16, 4), dtype=np.float32)
with vknb.batch() as b:
    k(X, Y, a=1.0, n=n, grid=n)
    k(x, z, a=1.0, n=n, grid=n)

def slots_and_batch_free():
    busy = [s for s in k.pipeline._slots if s.busy]
    check(not busy, f"{len(busy)} of {len(k.pipeline._slots)} slots still taken")
    check(b._idle, "the batch is still in use")

def record_batch():
    with vknb.batch() as bb:
        k(X, Y, a=1.0, n=n, grid=n)
        step()
        k(x, z, a=1.0, n=n, grid=n)
    bb.replay()
    bb.close()

def dropped():
    # Objects made and dropped without close(): their finalizers run wherever Ctrl-C may be.
    a = vknb.asarray(x)
    m = vknb.Buffer(4096, memory="upload")
    with m.mapped(np.float32) as v:
        v[:] = 1.0
    del v
    with vknb.batch() as bb:
        k(a, Y, a=1.0, n=n, grid=n)
    bb.replay()
    i = vknb.asimage(img)
    del a, m, bb, i

bodies = {
    "record, replay and close a batch": record_batch,
    "objects made and dropped": dropped,
    "update and numpy(out)": lambda: (A.update(x), A.numpy(out=out)),
    "Array closed after a wait=False call": lambda: (lambda W: (
        k(X, W, a=1.0, n=n, grid=n, wait=False), W.close()))(vknb.zeros(n, np.float32)),
    "library reduce_sum": lambda: vknb.library.reduce_sum(x),
    "library scan": lambda: vknb.library.scan(u32),
}
interrupt_every_body(bodies, [dev], also=slots_and_batch_free)
b.close()
k.close()
check_usable()
check_pools()
print("OK")
""",
        timeout=600,
    )


def test_ctrl_c_at_every_point_of_a_first_call_and_of_reset() -> None:
    """Ctrl-C at each point, in turn, of making a kernel and its first call (the slow path:
    pipeline, descriptor sets, scratch buffers, then close()), and of ``vknb.reset()``
    followed by a call that rebuilds the kernel's pipeline on the new device: after each,
    nothing is in flight or queued and no slot stays taken; every old device is destroyed (a
    Ctrl-C while close() waited abandoned an idle device, keeping its memory for good), none
    with objects still alive (which also fails the next ``vkCreateDevice``: the validation
    layer's error is raised there), and none twice (which aborted the process: the device's
    finalizer destroyed it again after a Ctrl-C at the end of its close())."""
    run_leaving_nothing(
        CALLS_SETUP.format(name="add_reset")
        + """
def compile_new():  # (the compiler's output comes from its cache after the first)
    kk = vknb.compile(ADD, name="fresh")
    kk(x, z, a=1.0, n=n, grid=n)
    kk.close()

def reset_and_call():
    vknb.reset()
    k(x, z, a=1.0, n=n, grid=n)

def second_device(close):
    d2 = vknb.Device(0)
    a2 = vknb.asarray(x, device=d2)
    check(np.array_equal(a2.numpy(), x), "wrong copy on a second device")
    if close:
        d2.close()

def unreleased_devices(d):
    alive = set(d.instance.devices_alive)
    live = {id(o) for o in vknb.core.device.live_devices() if o.state == "open"}
    return alive - live

def settled():
    d = vknb.device()
    vknb.synchronize()
    gc.collect()
    d.collect()
    check(not d.pending() and not d._inflight, "work still in flight")
    check(not d._retiring and not d._orphans, "releases still queued")
    if k.pipeline is not None and k.pipeline.device is d:
        busy = [s for s in k.pipeline._slots if s.busy]
        check(not busy, f"{len(busy)} of {len(k.pipeline._slots)} slots still taken")
    # Every device neither open nor lost is destroyed (a Ctrl-C in a close() or in a device's
    # finalizer left devices that nothing would destroy).
    for _ in range(2):  # (a dropped device goes once its children's releases have run)
        if unreleased_devices(d):
            gc.collect()
            d.collect()
    left = unreleased_devices(d)
    check(not left, f"{len(left)} devices neither open nor destroyed")

for name, body in {"compile, first call and close of a new kernel": compile_new,
                   "reset() and a call": reset_and_call,
                   "a second device made, used and closed": lambda: second_device(True),
                   "a second device made, used and dropped": lambda: second_device(False)}.items():
    points, hits = interrupt_at_every_point(body, settled)
    print(f"{name}: {points} points, {hits} interrupted", flush=True)
    check(hits >= points // 2, f"{name}: only {hits} of {points} interrupts landed")
y0 = rng.random(n, dtype=np.float32)
Y = vknb.asarray(y0)
X = vknb.asarray(x)
k(X, Y, a=2.0, n=n, grid=n)
check(np.allclose(Y.numpy(), y0 + 2 * x, rtol=1e-5), "the kernel is wrong afterwards")
k.close()
check_usable()
print("OK")
""",
        timeout=600,
    )


def test_ctrl_c_at_every_point_of_image_calls_and_a_sort() -> None:
    """Ctrl-C at each point, in turn, of an image's update and read-back, a kernel call that
    samples one image and stores into another, an image made and dropped, and the library's
    radix sort (passes recorded in a batch, temporaries closed as the exception leaves it):
    after each, nothing is in flight or queued and the device holds no more buffers, images,
    bytes or objects than before; at exit nothing is left.  It found an image's user count
    left raised (a with statement's exit is a call, where Ctrl-C lands), a one-shot command
    buffer and fence lost as they were taken from the free list, an image created and
    recorded nowhere, and a batch block dropped by Ctrl-C that took more commands into a
    command buffer whose buffers were gone (now reset instead)."""
    run_leaving_nothing(
        CALLS_SETUP.format(name="add_images")
        + """
dev = vknb.device()
img0 = rng.random((32, 32, 4), dtype=np.float32)
IM = vknb.asimage(img0)
OUT = vknb.zeros_image((32, 32, 4), "rgba32f")
kf = vknb.compile('''
layout(local_size_x = 8, local_size_y = 8) in;
layout(binding = 0) uniform sampler2D src;
layout(binding = 1, rgba32f) writeonly uniform image2D dst;
void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    imageStore(dst, p, texelFetch(src, p, 0) * 2.0);
}''', name="img_twice")
keys = (rng.random(3000) * 1e6).astype(np.uint32)

bodies = {
    "image update and numpy()": lambda: (IM.update(img0), IM.numpy()),
    "image kernel call": lambda: kf(IM, OUT, grid=(32, 32)),
    "image made and dropped": lambda: vknb.asimage(img0).numpy(),
    "library sort": lambda: vknb.library.sort(keys),
}
interrupt_every_body(bodies, [dev], limit=5000)
kf(IM, OUT, grid=(32, 32))
check(np.allclose(OUT.numpy(), 2 * img0), "the image kernel is wrong afterwards")
check(np.array_equal(vknb.library.sort(keys), np.sort(keys)), "sort is wrong afterwards")
for o in (IM, OUT, kf, k):
    o.close()
check_usable()
print("OK")
""",
        timeout=600,
    )


def test_ctrl_c_at_every_point_of_imported_transfers_copies_between_devices_and_more() -> None:
    """Ctrl-C at each point, in turn, of transfers straight from and into numpy's imported
    pages (``VKNB_HOST_IMPORT=1``), ``asarray`` of such an array, ``Array.to`` another
    device, a bound call made and run, the library's histogram and softmax: after each,
    nothing is in flight or queued on either device, and neither holds more buffers, bytes
    or imports than before."""
    run_leaving_nothing(
        CALLS_SETUP.format(name="add_more_kinds")
        + """
os.environ["VKNB_HOST_IMPORT"] = "1"
dev = vknb.device()
big = rng.random(4 << 20, dtype=np.float32)  # 16 MiB: imported
outb = np.empty_like(big)
BIG = vknb.asarray(big)
other = vknb.Device(0)
v = rng.random(4096, dtype=np.float32)
bodies = {
    "imported upload and download": lambda: (BIG.update(big), BIG.numpy(out=outb)),
    "asarray of an imported array": lambda: vknb.asarray(big).close(),
    "Array.to another device": lambda: vknb.asarray(v).to(other).numpy(),
    "bind and call": lambda: k.bind(X, Y, a=1.0, n=n, grid=n)(),
    "histogram": lambda: vknb.library.histogram((v * 16).astype(np.uint32), 16),
    "softmax": lambda: vknb.library.softmax(v.reshape(64, 64)),
}
interrupt_every_body(bodies, [dev, other], limit=5000)
stats = dev.transfer_stats()
check(stats["import"] > 0 and stats["import_reused"] > 0, f"no imported transfer: {stats}")
check(np.array_equal(BIG.numpy(), big), "the imported array is wrong afterwards")
BIG.close()
other.close()
k.close()
check_usable()
print("OK")
""",
        timeout=600,
    )


def test_ctrl_c_at_every_point_of_main_thread_calls_while_4_threads_call_the_kernel() -> None:
    """Ctrl-C at each point, in turn, of calls in the main thread (synchronous, ``wait=False``
    with numpy arguments, batch replays, transfers) while 4 threads call the same kernel and
    check every result against numpy: no thread ever sees a wrong result or an error, and
    afterwards no slot is taken and nothing is in flight."""
    run_leaving_nothing(
        CALLS_SETUP.format(name="add_threads")
        + """
dev = vknb.device()
stop = threading.Event()
errors = []
done = [0]
def worker(seed):
    r = np.random.default_rng(seed)
    xs = r.random(n, dtype=np.float32)
    XS = vknb.asarray(xs)
    while not stop.is_set():
        try:
            ys = r.random(n, dtype=np.float32)
            YS = vknb.asarray(ys)
            k(XS, YS, a=2.0, n=n, grid=n)
            if not np.allclose(YS.numpy(), ys + 2 * xs, rtol=1e-5):
                errors.append("wrong result in a thread")
            zs = ys.copy()
            k(xs, zs, a=1.0, n=n, grid=n, wait=False).wait()
            if not np.allclose(zs, ys + xs, rtol=1e-5):
                errors.append("wrong numpy result in a thread")
            YS.close()
            done[0] += 1
        except Exception as e:
            errors.append(repr(e))
threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
with vknb.batch() as b:
    k(X, Y, a=1.0, n=n, grid=n)
    k(x, z, a=1.0, n=n, grid=n)
def settled():
    check(vknb.compute.batch.current() is None, "a batch block is still recording")
    check(not errors, f"thread errors: {errors[:3]}")
bodies = {
    "repeated call": lambda: k(X, Y, a=1.0, n=n, grid=n),
    "numpy call, wait=False, wait()": lambda: k(x, z, a=1.0, n=n, grid=n, wait=False).wait(),
    "batch replay": lambda: b.replay(),
    "asarray and numpy()": lambda: vknb.asarray(x).numpy(),
}
for name, body in bodies.items():
    points, hits = interrupt_at_every_point(body, settled, limit=1500)
    print(f"{name}: {points} points, {hits} interrupted", flush=True)
    check(hits >= points // 2, f"{name}: only {hits} of {points} interrupts landed")
stop.set()
for t in threads:
    t.join()
check(not errors, f"thread errors: {errors[:3]}")
vknb.synchronize()
busy = [s for s in k.pipeline._slots if s.busy]
check(not busy, f"{len(busy)} of {len(k.pipeline._slots)} slots still taken")
check(not dev.pending() and not dev._inflight, "work still in flight")
b.close()
k.close()
check_usable()
check(done[0] > 0, "the threads ran no call")
print("OK")
""",
        timeout=600,
    )
