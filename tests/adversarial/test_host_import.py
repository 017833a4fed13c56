"""Copies straight from and into numpy's pages (VKNB_HOST_IMPORT=1) under attack: Ctrl-C during
large imported transfers (with another thread transferring too), and a device lost while an
import is held.  Each promptly raises, frees nothing the GPU may still use, and leaves the
session usable with no memory or import left behind."""

from __future__ import annotations

from .conftest import exit_limit_after_runaway, run_interrupt_scenario, run_scenario

IMPORT = {"VKNB_HOST_IMPORT": "1", "VKNB_COPY_THREADS": "4"}


def test_ctrl_c_during_imported_transfers_is_prompt_and_leaks_nothing() -> None:
    run_interrupt_scenario(
        """
        check(vknb.device().info.has_extension("VK_EXT_external_memory_host"),
              "this scenario needs VK_EXT_external_memory_host")
        check_usable()
        base = settle()
        big = rng.random(64 << 20, dtype=np.float32)  # 256 MiB
        A = vknb.asarray(big)
        out = np.zeros_like(big)  # its pages touched before the timed part
        A.numpy(out=out)
        stop = threading.Event()
        side_errors = []

        def side():  # another thread moving its own imported arrays meanwhile
            try:
                r = np.random.default_rng(7)
                s = r.random(3 << 20, dtype=np.float32)  # 12 MiB
                S = vknb.asarray(s)
                o = np.empty_like(s)
                while not stop.is_set():
                    S.update(s)
                    S.numpy(out=o)
                    check(np.array_equal(o, s), "side thread: wrong round trip")
                S.close()
            except BaseException as e:
                side_errors.append(e)

        t = threading.Thread(target=side)
        t.start()
        s0 = vknb.device().transfer_stats()
        ready()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 8:
                A.update(big)
                A.numpy(out=out)
            no_interrupt("8 s of imported transfers")
        except KeyboardInterrupt:
            lat = sigint_latency()
        stop.set()
        t.join(30)
        check(not t.is_alive(), "the side thread did not finish")
        check(not side_errors, f"side thread failed: {side_errors}")
        print(f"KeyboardInterrupt {lat * 1000:.0f} ms after SIGINT")
        check(lat < 0.5, f"KeyboardInterrupt came {lat:.2f} s after SIGINT (limit 0.5 s)")
        s1 = vknb.device().transfer_stats()
        print("paths", {k: s1[k] - s0[k] for k in s1})
        check(s1["import"] - s0["import"] >= 3, "the transfers were not imported")
        check(np.array_equal(A.numpy(), big), "the Array is wrong after the interrupt")
        A.numpy(out=out)
        check(np.array_equal(out, big), "an imported download after the interrupt is wrong")
        check_usable()
        del A, out, big
        after = settle()
        print("memory (allocated, used, buffers) before", base, "after", after)
        check(after[1:] == base[1:], f"memory not back at baseline: {base} -> {after}")
        s = vknb.device().memory_stats()
        check((s.imported, s.imports) == (0, 0), f"imports left: {s.imported} B in {s.imports}")
        print("OK")
        """,
        env=IMPORT,
        delay=1.0,
        timeout=90,
    )


def test_device_lost_with_an_import_held_then_reset() -> None:
    run_scenario(
        """
        k_run = vknb.compile(RUNAWAY, name="runaway")
        check_usable("before the runaway kernel")
        old = vknb.device()
        big = rng.random(8 << 20, dtype=np.float32)  # 32 MiB
        A = vknb.asarray(big)
        flag = np.zeros(4, np.uint32)
        o = np.zeros(4, np.uint32)
        s = k_run(flag, o, groups=RUNAWAY_GROUPS, wait=False)
        with raises(vknb.DeviceLost, within=3.0):
            A.update(big)  # imported, then waits for the runaway kernel
        with raises(vknb.DeviceLost, within=0.5):
            A.numpy(out=np.empty_like(big))
        with raises(vknb.DeviceLost, within=0.5):
            s.wait()
        del big  # a lost device holds what it may still touch: freeing ours is safe
        gc.collect()
        new = prompt_reset(old)
        x = rng.random(8 << 20, dtype=np.float32)
        check(np.array_equal(vknb.asarray(x).numpy(), x), "imported round trip after reset")
        check(new.transfer_stats()["import"] >= 2, "the fresh device did not import")
        check_usable("after reset")
        print("OK")
        """,
        env={**IMPORT, "VKNB_TIMEOUT_S": "1"},
        timeout=30,
        exit_within=exit_limit_after_runaway(),
    )
