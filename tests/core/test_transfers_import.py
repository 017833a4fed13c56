"""Transfers straight from and into numpy's pages (VK_EXT_external_memory_host).

lavapipe offers the extension, so these tests run the real import path (``VKNB_HOST_IMPORT=1``:
on a CPU driver ``auto`` never imports) next to the paths it falls back to, and check which path
ran through ``Device.transfer_stats()``: round trips around the size threshold, arrays at odd
addresses, read-only inputs, non-contiguous fallbacks, kept imports and their release, failures,
alignments larger than a page, threads, and the validation layer.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import numpy as np
import pytest
from helpers import leak_snapshot, run_python, settle

import vknb
from vknb.core import buffer as buffer_mod
from vknb.core import hostimport
from vknb.core.hostimport import HOST_IMPORT_MIN_BYTES, MAX_FAILURES, host_imports_for

MIN = HOST_IMPORT_MIN_BYTES
EXT = "VK_EXT_external_memory_host"


def _require_ext(dev: vknb.Device) -> None:
    if EXT not in dev.info.extensions:
        pytest.fail(
            f"{dev.info.name} does not offer {EXT}; the host-import tests need a device that does "
            "(lavapipe and NVIDIA's driver both do)"
        )


@pytest.fixture
def imports_on(dev: vknb.Device, monkeypatch: pytest.MonkeyPatch) -> vknb.Device:
    """The session device with VKNB_HOST_IMPORT=1 (fails where the device lacks the extension:
    lavapipe in CI and the NVIDIA driver both offer it, and the tests must not pass unrun)."""
    _require_ext(dev)
    monkeypatch.setenv("VKNB_HOST_IMPORT", "1")
    monkeypatch.delenv("VKNB_FORCE_STAGING", raising=False)
    monkeypatch.delenv("VKNB_HOST_IMPORT_CACHE_MB", raising=False)
    host_imports_for(dev).trim()
    return dev


def _paths(dev: vknb.Device) -> dict[str, int]:
    return dev.transfer_stats()


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def _imported(dev: vknb.Device) -> tuple[int, int]:
    settle()
    s = dev.memory_stats()
    return s.imported, s.imports


# ---------------------------------------------------------------------------------------------
# The capability
# ---------------------------------------------------------------------------------------------


def test_the_extension_is_enabled_where_offered(dev: vknb.Device) -> None:
    offered = EXT in dev.info.extensions
    assert (EXT in dev.extensions) == offered
    hi = host_imports_for(dev)
    assert hi.available == offered, hi.reason
    if offered:
        a = hi.alignment
        assert a > 0 and a & (a - 1) == 0, a
    else:
        assert EXT in hi.reason


# ---------------------------------------------------------------------------------------------
# Round trips, and which path ran
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nbytes", [MIN - 4, MIN, MIN + 4, 3 * MIN + 12])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_round_trips_around_the_threshold(imports_on, rng, nbytes, dtype) -> None:
    dev = imports_on
    n = nbytes // np.dtype(dtype).itemsize
    for _ in range(2):  # fresh data each time: a kept import must show the new bytes
        x = (rng.random(n) * 250).astype(dtype)
        before = _paths(dev)
        a = vknb.asarray(x)
        out = np.empty_like(x)
        a.numpy(out=out)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(a.numpy(), x)
        d = _delta(before, _paths(dev))
        if nbytes >= MIN:
            assert d.get("import") == 3 and "direct" not in d and "staging" not in d, d
        else:
            assert "import" not in d, d
        a.close()


def test_update_reuses_the_kept_import_and_sees_new_bytes(imports_on, rng) -> None:
    dev = imports_on
    x = rng.random(MIN // 4 + 1000, dtype=np.float32)
    a = vknb.empty(x.shape, np.float32)
    out = np.zeros_like(x)
    before = _paths(dev)
    for i in range(4):
        x[:] = rng.random(x.size, dtype=np.float32)  # new contents, same memory
        a.update(x)
        a.numpy(out=out)
        np.testing.assert_array_equal(out, x, err_msg=f"pass {i}")
    d = _delta(before, _paths(dev))
    assert d["import"] == 8 and d["import_reused"] == 6, d  # each array imported once
    assert _imported(dev)[1] == 2  # x and out stay imported while they live
    a.close()


@pytest.mark.parametrize("shift", [1, 3, 4, 13, 4095])
def test_arrays_at_odd_addresses_and_buffer_offsets(imports_on, rng, shift) -> None:
    dev = imports_on
    n = MIN + 4 * 1001
    raw = np.empty(n + 2 * 4096, np.uint8)
    src = raw[shift : shift + n]  # not aligned to anything
    src[:] = rng.integers(0, 256, n, dtype=np.uint8)
    guard = raw.copy()
    b = vknb.Buffer(n + 64)
    off = 7
    before = _paths(dev)
    b.write(src, offset=off)
    # float32 seen at an odd byte address: numpy allows it (unaligned), the copy takes bytes
    f = raw[shift : shift + n].view(np.float32)
    np.testing.assert_array_equal(b.read(np.float32, offset=off, nbytes=n), f)
    # read back into an unaligned view: only its own bytes change
    dst_raw = np.full(n + 2 * 4096, 0xAB, np.uint8)
    dst = dst_raw[shift : shift + n]
    b.read(out=dst, offset=off)
    np.testing.assert_array_equal(dst, src)
    assert (dst_raw[:shift] == 0xAB).all() and (dst_raw[shift + n :] == 0xAB).all()
    np.testing.assert_array_equal(raw, guard)  # the source was only read
    d = _delta(before, _paths(dev))
    assert d.get("import") == 3, d
    b.close()


def test_read_only_inputs_are_imported(imports_on, rng) -> None:
    dev = imports_on
    x = rng.random(MIN // 4, dtype=np.float32)
    x.flags.writeable = False
    data = rng.integers(0, 256, MIN + 5, dtype=np.uint8).tobytes()  # memory owned by bytes
    before = _paths(dev)
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
    b = vknb.Buffer(len(data))
    b.write(data)
    assert b.read().tobytes() == data
    d = _delta(before, _paths(dev))
    assert d.get("import", 0) >= 4, d
    b.close()


def test_non_contiguous_and_fortran_arrays_take_the_other_paths(imports_on, rng) -> None:
    dev = imports_on
    m = rng.random((1024, MIN // 4 // 1024 + 8), dtype=np.float32)
    f = np.asfortranarray(m)
    strided = rng.random(2 * (MIN // 4 + 8), dtype=np.float32)[::2]
    b = vknb.Buffer(f.nbytes)
    s = vknb.Buffer(strided.nbytes)
    before = _paths(dev)
    b.write(f)  # written in logical (C) order, through a C-contiguous copy
    s.write(strided)
    d = _delta(before, _paths(dev))
    assert "import" not in d and d.get("direct", 0) + d.get("staging", 0) == 2, d
    np.testing.assert_array_equal(b.read(np.float32).reshape(m.shape), m)
    b.close()
    np.testing.assert_array_equal(s.read(np.float32), strided)
    with pytest.raises(ValueError, match="C-contiguous"):
        s.read(out=np.empty((2, strided.size), np.float32)[:, 0])
    s.close()


def test_kernel_calls_with_large_numpy_arrays_import(imports_on, rng) -> None:
    dev = imports_on
    k = vknb.compile(
        """
        layout(local_size_x = 64) in;
        layout(binding = 0) readonly buffer X { float x[]; };
        layout(binding = 1) buffer Y { float y[]; };
        void main() { uint i = gl_GlobalInvocationID.x; if (i < y.length()) y[i] += 2.0 * x[i]; }
        """,
        name="import_axpy",
    )
    n = MIN // 4 + 33
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    ref = y + 2 * x
    before = _paths(dev)
    k(x, y, grid=n)
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    d = _delta(before, _paths(dev))
    assert d.get("import") == 3, d  # x and y up, y down
    k.close()


# ---------------------------------------------------------------------------------------------
# The switches
# ---------------------------------------------------------------------------------------------


def test_host_import_0_and_force_staging_turn_it_off(imports_on, rng, monkeypatch) -> None:
    dev = imports_on
    x = rng.random(MIN // 4, dtype=np.float32)
    for env in ({"VKNB_HOST_IMPORT": "0"}, {"VKNB_FORCE_STAGING": "1"}):
        for k_, v in env.items():
            monkeypatch.setenv(k_, v)
        before = _paths(dev)
        np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
        d = _delta(before, _paths(dev))
        assert "import" not in d and d, d
        monkeypatch.setenv("VKNB_HOST_IMPORT", "1")
        monkeypatch.delenv("VKNB_FORCE_STAGING", raising=False)


def test_auto_never_imports_on_a_cpu_driver(dev, rng, monkeypatch) -> None:
    monkeypatch.delenv("VKNB_HOST_IMPORT", raising=False)
    x = rng.random(MIN // 4, dtype=np.float32)
    if dev.info.type not in ("cpu", "integrated"):
        # A discrete GPU (never a skip): auto imports only memory moved before, so a new
        # array's first transfer goes the usual way.
        before = _paths(dev)
        np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
        d = _delta(before, _paths(dev))
        assert "import" not in d and d, d
        return
    before = _paths(dev)
    for _ in range(3):
        np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
    d = _delta(before, _paths(dev))
    assert "import" not in d and d.get("direct") == 6, d


def test_reused_policy_imports_memory_on_its_second_transfer(imports_on, rng, monkeypatch) -> None:
    """What ``auto`` does on a discrete GPU: one-off memory goes through the usual path, memory
    that moves again is imported and kept."""
    dev = imports_on
    monkeypatch.setattr(buffer_mod, "policy", lambda d, kind: "reused")
    x = rng.random(MIN // 4, dtype=np.float32)
    a = vknb.empty(x.shape, np.float32)
    seen = []
    for _ in range(3):
        before = _paths(dev)
        a.update(x)
        seen.append(_delta(before, _paths(dev)))
    assert "import" not in seen[0], seen
    assert seen[1].get("import") == 1 and "import_reused" not in seen[1], seen
    assert seen[2].get("import_reused") == 1, seen
    before = _paths(dev)
    np.testing.assert_array_equal(a.numpy(), x)  # a fresh array each time: never imported
    assert "import" not in _delta(before, _paths(dev))
    # memory not owned by a numpy array is never imported this way
    data = x.tobytes()
    before = _paths(dev)
    for _ in range(2):
        a.buffer.write(data)
    assert "import" not in _delta(before, _paths(dev))
    a.close()


def test_cache_limit_and_zero(imports_on, rng, monkeypatch) -> None:
    dev = imports_on
    monkeypatch.setenv("VKNB_HOST_IMPORT_CACHE_MB", str((MIN >> 20) * 2 + 1))
    xs = [rng.random(MIN // 4 + 1024, dtype=np.float32) for _ in range(3)]
    a = vknb.empty(xs[0].shape, np.float32)
    for x in xs:
        a.update(x)
    imported, n = _imported(dev)
    assert n == 2 and imported <= ((MIN >> 20) * 2 + 1) << 20, (imported, n)
    before = _paths(dev)
    a.update(xs[2])  # the most recent one is still kept
    assert _delta(before, _paths(dev)).get("import_reused") == 1
    monkeypatch.setenv("VKNB_HOST_IMPORT_CACHE_MB", "0")
    dev.trim()
    for x in xs:
        a.update(x)
        np.testing.assert_array_equal(a.numpy(), x)
    assert _imported(dev) == (0, 0)  # imported for each transfer only
    a.close()


# ---------------------------------------------------------------------------------------------
# Lifetimes and leaks
# ---------------------------------------------------------------------------------------------


def test_a_kept_import_goes_with_its_array(imports_on, rng) -> None:
    dev = imports_on
    base = _imported(dev)
    x = rng.random(MIN // 4, dtype=np.float32)
    a = vknb.asarray(x)
    assert _imported(dev)[1] == base[1] + 1
    view = x[10:]  # a view keeps the memory (and the import) alive
    del x
    assert _imported(dev)[1] == base[1] + 1
    del view
    assert _imported(dev) == base  # released without trim()
    a.close()


def test_arrays_freed_by_the_cycle_collector_release_their_imports(imports_on, rng) -> None:
    dev = imports_on
    base = _imported(dev)
    a = vknb.empty(MIN // 4, np.float32)
    for _ in range(5):
        holder: dict[str, Any] = {"x": rng.random(MIN // 4, dtype=np.float32)}
        holder["self"] = holder  # freed only by the garbage collector
        a.update(holder["x"])
        a.numpy(out=holder["x"])
        del holder
    gc.collect()
    assert _imported(dev) == base
    a.close()


def test_no_leaks_after_loops_of_imported_transfers(imports_on, rng) -> None:
    dev = imports_on
    a = vknb.empty(MIN // 4 + 4096, np.float32)
    a.numpy()
    base = leak_snapshot(dev)
    base_imp = _imported(dev)
    for i in range(40):
        n = MIN // 4 + int(rng.integers(0, 4096))
        x = rng.random(n, dtype=np.float32)
        b = vknb.asarray(x)
        out = b.numpy()
        np.testing.assert_array_equal(out, x)
        a.buffer.write(x[: min(n, a.size)])
        if i % 3 == 0:
            b.close()
        del x, b, out
    assert leak_snapshot(dev) == base
    assert _imported(dev) == base_imp == (0, 0)
    a.close()


def test_trim_releases_kept_imports(imports_on, rng) -> None:
    dev = imports_on
    x = rng.random(MIN // 4, dtype=np.float32)
    vknb.asarray(x).close()
    assert _imported(dev)[1] == 1
    dev.trim()
    assert _imported(dev) == (0, 0)
    before = _paths(dev)
    vknb.asarray(x).close()  # imported again
    d = _delta(before, _paths(dev))
    assert d.get("import") == 1 and "import_reused" not in d


def test_no_reuse_after_fork(imports_on, rng) -> None:
    """After a fork() the parent's pages may be copied on write: kept imports are dropped."""
    dev = imports_on
    x = rng.random(MIN // 4, dtype=np.float32)
    a = vknb.asarray(x)
    hostimport._after_fork_in_parent()  # what os.fork() runs in the parent
    before = _paths(dev)
    a.update(x)
    d = _delta(before, _paths(dev))
    assert d.get("import") == 1 and "import_reused" not in d, d
    assert _imported(dev)[1] == 1  # the stale import went
    a.close()


# ---------------------------------------------------------------------------------------------
# Failures and alignment
# ---------------------------------------------------------------------------------------------


def test_a_failed_import_falls_back_and_is_remembered(imports_on, rng, monkeypatch) -> None:
    dev = imports_on
    hi = host_imports_for(dev)
    calls = []

    def refuse(self: Any, start: int, size: int) -> Any:
        calls.append(size)
        raise vknb.errors.AllocationFailed("refused by the test")

    monkeypatch.setattr(hostimport.HostImports, "_import", refuse)
    monkeypatch.setattr(hi, "_failures", 0)  # restored afterwards: later tests import again
    x = rng.random(MIN // 4, dtype=np.float32)
    before = _paths(dev)
    for _ in range(3):
        np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
    d = _delta(before, _paths(dev))
    assert "import" not in d and d["direct"] + d.get("staging", 0) == 6, d
    # x was tried once; each fresh output of numpy() was tried once
    assert d["import_failed"] == len(calls) == 4, (d, calls)
    assert len(calls) >= MAX_FAILURES
    y = rng.random(MIN // 4, dtype=np.float32)
    vknb.asarray(y).close()
    assert len(calls) == 4  # the device stopped trying after MAX_FAILURES in a row
    monkeypatch.undo()
    monkeypatch.setenv("VKNB_HOST_IMPORT", "1")
    hi_new = hostimport.HostImports(dev)  # a fresh registry tries again
    assert hi_new.available and hi is not hi_new
    hi_new.close()


def test_alignment_larger_than_a_page(imports_on, rng, monkeypatch) -> None:
    dev = imports_on
    hi = host_imports_for(dev)
    monkeypatch.setattr(hi, "alignment", 1 << 16)
    owner = np.empty(4 * MIN, np.uint8)
    base = owner.__array_interface__["data"][0]
    page = hi.page
    lo, hi_end = base // page * page, -(-(base + owner.nbytes) // page) * page
    for start_off in (0, 5, 70_000, 3 * MIN - 100):
        v = owner[start_off : start_off + MIN + 3]
        got = hi.import_range(v, owner)
        addr = base + start_off
        s = addr >> 16 << 16
        e = -(-(addr + v.nbytes) >> 16) << 16
        expect = (s, e) if s >= lo and e <= hi_end else None
        assert got == expect, (start_off, got, expect)
        assert hi.import_range(v, None) in (None, expect)
    # transfers still give the right bytes, whichever path they take
    src = owner[70_000 : 70_000 + MIN + 3]
    src[:] = rng.integers(0, 256, src.size, dtype=np.uint8)
    b = vknb.Buffer(src.nbytes)
    b.write(src)
    np.testing.assert_array_equal(b.read(), src)
    b.close()


# ---------------------------------------------------------------------------------------------
# Threads and devices
# ---------------------------------------------------------------------------------------------


def test_two_threads_transfer_concurrently(imports_on, rng) -> None:
    dev = imports_on
    errors: list[BaseException] = []
    box = {"shared": rng.random(MIN // 4 + 100, dtype=np.float32)}
    seeds = rng.integers(0, 1 << 30, 2)

    def work(seed: int) -> None:
        shared = box["shared"]
        try:
            r = np.random.default_rng(seed)
            a = vknb.empty(shared.shape, np.float32)
            for _ in range(6):
                x = r.random(shared.size, dtype=np.float32)
                a.update(x)
                np.testing.assert_array_equal(a.numpy(), x)
                a.update(shared)  # the same memory from both threads: one kept import
                out = np.empty_like(shared)
                a.numpy(out=out)
                np.testing.assert_array_equal(out, shared)
            a.close()
        except BaseException as e:  # reported below
            errors.append(e)

    before = _paths(dev)
    threads = [threading.Thread(target=work, args=(int(s),)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    d = _delta(before, _paths(dev))
    assert d["import"] == 2 * 6 * 4 and d["import_reused"] >= 2 * 6 - 1, d
    box.clear()
    gc.collect()
    assert _imported(dev) == (0, 0)


def test_closing_a_device_with_kept_imports(imports_on, rng) -> None:
    d = vknb.Device(imports_on.index)
    x = rng.random(MIN // 4, dtype=np.float32)
    a = vknb.asarray(x, device=d)
    out = np.empty_like(x)
    a.numpy(out=out)
    assert d.memory_stats().imports == 2
    d.close()
    del x, out  # their imports went with the device: nothing to release any more
    gc.collect()
    with pytest.raises(vknb.ObjectClosed):
        a.numpy()


_VALIDATED = r"""
import gc, json, os
import numpy as np
import vknb
from vknb import _vk
os.environ["VKNB_HOST_IMPORT"] = "1"
rng = np.random.default_rng(3)
n = (8 << 20) // 4 + 77
x = rng.random(n, dtype=np.float32)
a = vknb.asarray(x)
out = np.empty_like(x)
a.numpy(out=out)
assert np.array_equal(out, x)
k = vknb.compile('''
layout(local_size_x = 64) in;
layout(binding = 0) buffer Y { float y[]; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < y.length()) y[i] *= 2.0; }
''', name="dbl")
y = x.copy()
k(y, grid=n)
assert np.array_equal(y, 2 * x)
stats = vknb.device().transfer_stats()
# a device collected without close() frees its imports before its handles
d2 = vknb.Device(0)
b = vknb.asarray(x, device=d2)
b.numpy(out=out)
b.close(); del b
d2 = None
gc.collect()
print(json.dumps({"stats": stats, "validation": dict(_vk.validation_counts)}))
"""


def test_import_path_under_the_validation_layer(dev, tmp_path) -> None:
    _require_ext(dev)
    res = run_python(_VALIDATED, tmp_path, {"VKNB_VALIDATION": "1"}, keep_device=False)
    assert res.returncode == 0, res.stdout + res.stderr
    import json

    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["stats"]["import"] == 4, out  # x up, out down, y up and down
    assert out["validation"]["error"] == 0, res.stderr
    assert "Validation Error" not in res.stderr, res.stderr[-3000:]
