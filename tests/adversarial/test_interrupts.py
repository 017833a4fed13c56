"""Ctrl-C (SIGINT) during transfers and waits: KeyboardInterrupt within 0.5 s, then a usable
session with correct results and no leaked memory (contract scenarios 2 and 8)."""

from __future__ import annotations

from .conftest import run_interrupt_scenario


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
        ready()
        t0 = time.monotonic()
        try:
            kb(y, n=BUSY_N, iters=1_000_000, grid=BUSY_N)
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
        sub = kb(Y, n=BUSY_N, iters=1_000_000, grid=BUSY_N, wait=False)
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
