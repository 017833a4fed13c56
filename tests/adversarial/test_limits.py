"""Device limits are checked before any work, with a ValueError that names the limit
(contract scenarios 4, 18, 20, 29)."""

from __future__ import annotations

from .conftest import run_scenario


def test_push_constant_block_beyond_max_push_constants_size() -> None:
    run_scenario(
        """
        lim = vknb.device().info.limits["max_push_constants_size"]
        print("maxPushConstantsSize", lim)
        body = '''
        layout(local_size_x = 64) in;
        layout(binding = 0) buffer D { float d[]; };
        layout(push_constant) uniform P { float v[N]; };
        void main() { uint i = gl_GlobalInvocationID.x; if (i < N) d[i] = v[i]; }
        '''
        too_big = body.replace("N", str(lim // 4 + 1))
        with raises(ValueError, str(lim), "push"):
            vknb.compile(too_big, name="too_big_push")
        # exactly the limit: compiles and every member arrives
        k = vknb.compile(body.replace("N", str(lim // 4)), name="full_push")
        v = rng.random(lim // 4, dtype=np.float32)
        d = rng.random(64, dtype=np.float32)
        ref = d.copy()
        ref[: lim // 4] = v
        k(d, v=v, grid=64)
        check(np.array_equal(d, ref), "push constants at the limit arrived wrong")
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_shared_memory_beyond_max_compute_shared_memory_size() -> None:
    """Shared arrays larger than the device allows are refused by name before the driver sees
    them (NVIDIA's may crash on invalid usage), also where a specialization constant sizes
    them; at the limit the kernel runs and every element is written and read back."""
    run_scenario(
        """
        lim = vknb.device().info.limits["max_shared_memory"]
        print("maxComputeSharedMemorySize", lim)
        body = '''
        layout(local_size_x = 64) in;
        layout(constant_id = 1) const uint N = 16;
        layout(binding = 0) buffer D { uint d[]; };
        shared uint s[N];
        shared uvec4 pad[2];
        void main() {
            for (uint i = gl_LocalInvocationID.x; i < N; i += 64u) s[i] = i * 3u;
            barrier();
            uint sum = 0u;
            for (uint i = 0u; i < N; ++i) sum += s[i];
            if (gl_LocalInvocationID.x == 0u) { pad[0] = uvec4(sum); d[0] = pad[0].x; }
        }
        '''
        fits = lim // 4 - 8  # with the 32 bytes of pad: exactly the limit
        with raises(ValueError, str(lim), "maxComputeSharedMemorySize", "too_big_shared"):
            vknb.compile(body, name="too_big_shared", constants={"N": fits + 1})
        k = vknb.compile(body, name="full_shared", constants={"N": fits})
        check(k.reflection.shared_memory == lim, f"{k.reflection.shared_memory} != {lim}")
        d = np.zeros(1, np.uint32)
        k(d, groups=1)
        check(int(d[0]) == (3 * fits * (fits - 1) // 2) % 2**32, f"sum {d[0]}")
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=60,
    )


def test_numpy_argument_beyond_max_storage_buffer_range_is_refused_before_upload() -> None:
    res = run_scenario(
        """
        lim = vknb.device().info.limits["max_storage_buffer_range"]
        print("maxStorageBufferRange", lim)
        k = vknb.compile('''
        layout(local_size_x = 64) in;
        layout(binding = 0) readonly buffer S { float s[]; };
        layout(binding = 1) buffer D { float d[]; };
        void main() { uint i = gl_GlobalInvocationID.x; d[i] += s[i]; }
        ''', name="big_arg")
        small = rng.random(64, dtype=np.float32)
        d = rng.random(64, dtype=np.float32)
        ref = d + small
        k(small, d, grid=64)
        check(np.allclose(d, ref), "warm-up call wrong")
        # np.zeros maps its pages lazily: only the few touched here cost memory, so a range of
        # 4 GiB (NVIDIA) is tested as well as lavapipe's 128 MiB, and never skipped.
        big = np.zeros(lim // 4 + 16, np.float32)
        big[:64] = rng.random(64, dtype=np.float32)
        base = settle()
        ntim = len(vknb.timings())
        with raises(ValueError, "'S'", str(lim)):
            k(big, d, grid=64)
        after = settle()
        check(after == base, f"memory changed by a refused call: {base} -> {after}")
        with raises(ValueError, "'D'", str(lim)):
            k(small, big, grid=64)
        with raises(ValueError, "'D'", str(lim)):
            k(small, D=big, grid=64)
        after = settle()
        check(after == base, f"memory changed by a refused call: {base} -> {after}")
        check(len(vknb.timings()) == ntim, "a refused call dispatched")
        check(np.allclose(d, ref), "a refused call changed the other argument")
        check_usable()
        print("OK")
        """,
        timeout=60,
    )
    assert "maxStorageBufferRange" in res.stdout


def test_empty_with_overflowing_shape_is_refused() -> None:
    run_scenario(
        """
        import re
        for shape, dtype in [((2**62 + 1, 4), np.float32), ((2**63,), np.uint8),
                             ((2**32, 2**32), np.float32), ((2**40,), np.float32)]:
            for make in (vknb.empty, vknb.zeros):
                try:
                    a = make(shape, dtype)
                except (ValueError, vknb.AllocationFailed) as e:
                    print(f"{make.__name__}{shape}: {type(e).__name__}: {e}")
                    check(not re.search(r"-\\d", str(e)),
                          f"message has a negative size (an overflow): {e}")
                else:
                    true = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
                    raise AssertionError(f"{make.__name__}({shape}) gave an Array with "
                                         f"nbytes={a.nbytes} (true size {true})")
        with raises(ValueError, "-1"):
            vknb.empty((-1, 4))
        with raises(ValueError, "-2"):
            vknb.zeros((3, -2), np.float32)
        with raises(TypeError):
            vknb.empty((1.5,))
        check_usable()
        print("OK")
        """,
        timeout=30,
    )


def test_workgroup_counts_and_sizes_beyond_limits_are_refused_before_work() -> None:
    run_scenario(
        """
        lim = vknb.device().info.limits
        max_count = lim["max_workgroup_count"]
        max_inv = lim["max_workgroup_invocations"]
        print("limits", max_count, max_inv)
        k = vknb.compile('''
        layout(local_size_x = 64) in;
        layout(binding = 0) buffer D { float d[]; };
        void main() { uint i = gl_GlobalInvocationID.x; if (i < d.length()) d[i] += 1.0; }
        ''', name="inc")
        d = rng.random(64, dtype=np.float32)
        d0 = d.copy()
        ntim = len(vknb.timings())
        with raises(ValueError, str(max_count[0])):
            k(d, groups=max_count[0] + 1)
        with raises(ValueError, str(max_count[2])):
            k(d, groups=(1, 1, max_count[2] + 1))
        with raises(ValueError, str(max_count[0])):
            k(d, grid=64 * (max_count[0] + 1))
        with raises(ValueError):
            k(d, grid=2**70)
        with raises(ValueError, "grid"):
            k(d, grid=0)
        with raises(ValueError, "grid"):
            k(d, grid=(64, 0))
        with raises(ValueError, "grid"):
            k(d, grid=-64)
        with raises(ValueError, "groups"):
            k(d, groups=0)
        with raises(TypeError, "grid"):
            k(d, grid=(1, 1, 1, 1))
        with raises(TypeError, "grid"):
            k(d, grid=64.0)
        with raises(TypeError):
            k(d, grid=64, groups=1)
        with raises(TypeError, "grid"):
            k(d)
        check(np.array_equal(d, d0), "a refused call changed its argument")
        check(len(vknb.timings()) == ntim, "a refused call dispatched")
        spec = '''
        layout(local_size_x_id = 0, local_size_y_id = 1) in;
        layout(binding = 0) buffer D { float d[]; };
        void main() { uint i = gl_LocalInvocationIndex; if (i < d.length()) d[i] += 1.0; }
        '''
        with raises(ValueError, str(max_inv)):
            vknb.compile(spec, name="too_wide", local_size=max_inv + 1)
        with raises(ValueError, str(max_inv)):
            vknb.compile(spec, name="too_many", local_size=(max_inv // 2, 4))
        with raises(ValueError):
            vknb.compile(spec, name="zero_wide", local_size=0)
        k2 = vknb.compile(spec, name="just_fits", local_size=(max_inv // 4, 4))
        e = rng.random(max_inv, dtype=np.float32)
        ref = e + 1
        k2(e, groups=1)
        check(np.allclose(e, ref), "workgroup at the limit: wrong result")
        check_usable()
        print("OK")
        """,
        validation=True,
        timeout=30,
    )


def test_robust_buffer_access_keeps_neighbours_intact() -> None:
    """VKNB_ROBUST=1 turns robust buffer access on (where the device has the feature): a kernel
    writing far past the end of its Array changes neither its neighbours nor the session."""
    run_scenario(
        """
        dev = vknb.device()
        check(dev.robust == bool(dev.features["robust_buffer_access"]), "Device.robust")
        check(dev.robust, f"{dev.info.name} offers robustBufferAccess: VKNB_ROBUST=1 is on")
        k = vknb.compile('''
        layout(local_size_x = 64) in;
        layout(binding = 0) buffer A { float a[]; };
        layout(push_constant) uniform P { float v; };
        void main() { a[gl_GlobalInvocationID.x] = v; }
        ''', name="oob")
        before = [rng.random(256, dtype=np.float32) for _ in range(6)]
        small = vknb.zeros(16, np.float32)
        neighbours = [vknb.asarray(b) for b in before]
        k(small, v=7.0, groups=64)  # 4096 invocations write into a 16-float Array
        check(np.array_equal(small.numpy(), np.full(16, 7.0, np.float32)), "in-bounds part")
        for b, n in zip(before, neighbours):
            check(np.array_equal(n.numpy(), b), "an out-of-bounds write reached another Array")
        check_usable()
        print("OK")
        """,
        env={"VKNB_ROBUST": "1", "VKNB_BAR": "0"},
        validation=True,
        timeout=60,
    )
