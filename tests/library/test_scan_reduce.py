"""The single-pass reduction and scan (``reduce_sum.comp``, ``scan_lookback.comp``), their
per-device tuning and their fallbacks, against numpy on fresh random inputs.

Every path runs here whatever the device: the subgroup kernels, the shared-memory ones
(``SUBGROUPS=0``), the multi-pass ``scan.comp``, the look-back's "add the late tile up
yourself" fallback (``SPINS=1``), and the rerun after a look-back that lavapipe's loop guard cut
short.  Sizes: 0, 1, a tile and one either side, non-multiples of everything, up to 2^22
elements.  Look-back scans also run in a child interpreter with a timeout, so that a hang fails
one test instead of the suite.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import last_json, run_python

import vknb
from vknb import library
from vknb.library import _scan_reduce as sr

EPS32 = float(np.finfo(np.float32).eps) / 2  # float32 unit roundoff, 2**-24
DTYPES = (np.float32, np.int32, np.uint32)


@pytest.fixture(scope="module", autouse=True)
def _release_library_kernels():
    yield
    library.clear_kernel_cache()


def _variant(op: str, dev: vknb.Device, **changes: object) -> sr.Tuning:
    """The device's tuning of ``op`` with some fields changed (a path to force)."""
    return dataclasses.replace(sr.tuning(op, dev), **changes)


def _scan_variants(dev: vknb.Device) -> dict[str, sr.Tuning]:
    base = sr.tuning("scan", dev)
    if base.kernel != "scan_lookback":  # the device has no 64-bit atomics: multi-pass only
        return {"multipass": base, "multipass-shared": dataclasses.replace(base, subgroups=False)}
    # small tiles: many of them; per-invocation loads (the "striped" variants: subgroup-striped)
    look = dataclasses.replace(base, local_size=64, items=8, striped=False)
    return {
        "lookback": base,
        "lookback-small-tiles": look,
        "lookback-group-per-tile": dataclasses.replace(look, max_groups=65535),
        "lookback-two-groups": dataclasses.replace(look, max_groups=2),
        "lookback-shared": dataclasses.replace(look, subgroups=False),
        "lookback-scalar": dataclasses.replace(look, items=5),  # no 16-byte loads
        "lookback-fallback": dataclasses.replace(look, spins=1),  # adds late tiles up itself
        "lookback-fallback-shared": dataclasses.replace(look, spins=1, subgroups=False),
        "lookback-striped": dataclasses.replace(look, striped=True),
        "lookback-striped-fallback": dataclasses.replace(look, striped=True, spins=1),
        "lookback-striped-large": dataclasses.replace(base, striped=True),
        "lookback-unstriped-large": dataclasses.replace(base, striped=False),
        "lookback-striped-scalar": dataclasses.replace(look, striped=True, items=5),  # ignored
        "multipass": dataclasses.replace(base, kernel="scan", local_size=256, items=4),
        "multipass-shared": dataclasses.replace(
            base, kernel="scan", local_size=256, items=4, subgroups=False
        ),
    }


def _data(rng: np.random.Generator, n: int, dtype: type, small: bool = True) -> np.ndarray:
    if dtype == np.float32:
        return rng.random(n, dtype=np.float32)
    if small:
        lo = -1000 if dtype == np.int32 else 0
        return rng.integers(lo, 1000, n).astype(dtype)
    lo = -(2**31) if dtype == np.int32 else 0
    return rng.integers(lo, 2**31, n).astype(dtype)  # large: sums wrap around


def _cumsum(x: np.ndarray, exclusive: bool) -> np.ndarray:
    """numpy's prefix sum: float64 for float32 inputs, else wrapping around mod 2**32."""
    ref = np.cumsum(x.astype(np.float64)) if x.dtype == np.float32 else np.cumsum(x, dtype=x.dtype)
    if exclusive:
        ref = np.concatenate([np.zeros(1, ref.dtype), ref[:-1]])
    return ref


def _check_scan(got: np.ndarray, x: np.ndarray, exclusive: bool, tile: int) -> None:
    ref = _cumsum(x, exclusive)
    assert got.shape == x.shape and got.dtype == x.dtype
    if x.dtype != np.float32:
        np.testing.assert_array_equal(got, ref)
        return
    # Positive inputs, so prefix i is rounded relative to itself: ITEMS serial additions,
    # log2 levels in the workgroup, and at most one per earlier tile along the look-back chain.
    bound = (64 + len(x) / tile) * EPS32
    np.testing.assert_allclose(got, ref, rtol=bound, atol=0)


def _scan(t: sr.Tuning, x: object, n: int, exclusive: bool, dtype: type) -> np.ndarray:
    y = sr.scan(library.load, x, n, exclusive, np.dtype(dtype), vknb.device(), t)
    try:
        return y.numpy()
    finally:
        y.close()


# --- the choice per device ----------------------------------------------------------------------


def test_tuning_is_recorded_per_device_and_reported(dev):
    for op in ("scan", "reduce_sum"):
        t = library.tuning(op)
        assert t == library.tuning(op, dev)
        assert sr.tuning(op, dev) is sr.tuning(op, dev)  # chosen once
        assert t["tile"] == t["local_size"] * t["items"] and t["reason"]
        assert t["local_size"] % dev.info.limits["subgroup_size"] == 0
    scan = library.tuning("scan")
    atomics = dev.info.features["int64"] and dev.info.features["atomic_int64"]
    assert scan["kernel"] == ("scan_lookback" if atomics else "scan")
    assert scan["single_pass"] == atomics
    with pytest.raises(ValueError, match="known: reduce_sum, scan"):
        library.tuning("sort")


def test_choice_follows_the_device_properties(dev):
    info = dev.info
    no_atomics = dataclasses.replace(info, features={**info.features, "atomic_int64": False})
    t = sr.choose_tuning("scan", no_atomics)
    assert t.kernel == "scan" and not t.single_pass and "64-bit" in t.reason
    limits = {**info.limits, "subgroup_operations": ["basic"], "max_workgroup_invocations": 128}
    bare = dataclasses.replace(info, limits=limits)
    for op in ("scan", "reduce_sum"):
        t = sr.choose_tuning(op, bare)
        assert not t.subgroups and t.local_size == 128 and "shared memory" in t.reason
    gpu = dataclasses.replace(info, type="discrete")
    assert (
        sr.choose_tuning("reduce_sum", gpu).vec4 and sr.choose_tuning("reduce_sum", gpu).items == 16
    )
    cpu = dataclasses.replace(info, type="cpu")
    assert not sr.choose_tuning("reduce_sum", cpu).vec4


# --- reduce_sum ---------------------------------------------------------------------------------


def _reduce_sizes(t: sr.Tuning) -> list[int]:
    per = t.local_size * t.items
    return [1, 3, 4, 5, per - 1, per, per + 1, 3 * per + 7, 100_003, 1 << 22]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_reduce_sum_sizes(dev, rng, dtype):
    t = sr.tuning("reduce_sum", dev)
    assert library.reduce_sum(np.zeros(0, dtype)) == 0
    for n in _reduce_sizes(t):
        x = _data(rng, n, dtype, small=False)
        total = library.reduce_sum(x if n % 2 else vknb.asarray(x))  # Array inputs too
        assert total.dtype == dtype
        if dtype == np.float32:
            # Positive inputs: each value goes through ~ n / (groups * local_size) serial
            # additions in its invocation plus the tree levels (log2 of the workgroup, twice).
            groups = sr.reduce_groups(t, n)
            serial = math.ceil(n / (groups * t.local_size)) + 2 * math.log2(t.local_size) + 4
            ref = x.astype(np.float64).sum()
            assert abs(float(total) - ref) <= serial * EPS32 * ref, (n, float(total), ref)
        else:
            assert total == x.astype(np.int64).sum().astype(np.uint64).astype(np.uint32).view(dtype)


def test_reduce_sum_mixed_signs_and_repeats(dev, rng):
    x = rng.standard_normal(1_000_003).astype(np.float32)
    ref = x.astype(np.float64).sum()
    bound = 80 * EPS32 * np.abs(x).astype(np.float64).sum()
    first = library.reduce_sum(x)
    assert abs(float(first) - ref) <= bound
    for _ in range(3):  # one dispatch, no float atomics: the same bits every time
        assert library.reduce_sum(x).tobytes() == first.tobytes()


@pytest.mark.parametrize("vec4", [True, False], ids=["vec4", "scalar"])
@pytest.mark.parametrize("subgroups", [True, False], ids=["subgroups", "shared"])
def test_reduce_sum_kernel_paths(rng, subgroups, vec4):
    """Both workgroup reductions, both load widths, odd workgroup sizes; the counter is zero
    after every call, so calls in a row on the same buffers are right."""
    for dtype, T in ((np.uint32, "uint"), (np.float32, "float")):
        for local_size, items in ((64, 8), (96, 3), (256, 16)):
            k = library.load(
                "reduce_sum",
                defines={"T": T, "SUBGROUPS": int(subgroups)},
                constants={"ITEMS": items, "VEC4": vec4},
                local_size=local_size,
            )
            state = vknb.zeros(1, np.uint32)
            for n, groups in ((1, 1), (4099, 3), (50_001, 37), (50_001, 1)):
                x = _data(rng, n, dtype)
                sums = vknb.empty(groups + 1, dtype)
                k(x, sums, state, n=n, groups=groups)
                total = sums.numpy()[0]
                if dtype == np.float32:
                    np.testing.assert_allclose(total, x.astype(np.float64).sum(), rtol=1e-5)
                else:
                    assert total == x.sum(dtype=np.uint32)
                assert state.numpy()[0] == 0


def test_reduce_sum_forced_tunings(dev, rng):
    """The helper with other tunings (the choice another device would get)."""
    x = rng.integers(0, 2**31, 300_001).astype(np.uint32)
    for changes in ({"vec4": False}, {"subgroups": False}, {"items": 4, "max_groups": 1}):
        t = _variant("reduce_sum", dev, **changes)
        k = sr.load_tuned(library.load, t, np.dtype(np.uint32))
        with sr.scratch(k) as s:
            state = s.get("state", 1, np.uint32, k.device, zero=True)
            sums = s.get("sums", sr.reduce_groups(t, x.size) + 1, np.uint32, k.device, zero=False)
            k(x, sums, state, n=x.size, groups=sr.reduce_groups(t, x.size))
            assert sums.numpy()[0] == x.sum(dtype=np.uint32)


# --- scan ---------------------------------------------------------------------------------------


def _scan_sizes(tile: int) -> list[int]:
    return [1, 2, 5, tile - 1, tile, tile + 1, 2 * tile + 3, 7 * tile - 5, 33_333]


def test_scan_every_path_at_every_edge(dev, rng):
    """Each path: the sizes around a tile, inclusive and exclusive, the three dtypes, numpy and
    Array inputs; all calls on the same cached kernels and buffers."""
    for name, t in _scan_variants(dev).items():
        # int32 on the default path (test_scan_wraps_around has it on more): a kernel per dtype
        for dtype in DTYPES if name in ("lookback", "multipass") else (np.float32, np.uint32):
            for i, n in enumerate(_scan_sizes(t.tile)):
                x = _data(rng, n, dtype)
                exclusive = bool(i % 2)
                got = _scan(t, x if i % 3 else vknb.asarray(x), n, exclusive, dtype)
                try:
                    _check_scan(got, x, exclusive, t.tile)
                except AssertionError as e:
                    raise AssertionError(f"{name} {np.dtype(dtype)} n={n}: {e}") from None


@pytest.mark.parametrize("dtype", [np.int32, np.uint32], ids=["int32", "uint32"])
def test_scan_wraps_around(dev, rng, dtype):
    variants = _scan_variants(dev)
    for name in ("lookback", "lookback-shared", "multipass", "multipass-shared"):
        if name not in variants:
            continue
        t = variants[name]
        x = _data(rng, 20_001, dtype, small=False)
        for exclusive in (False, True):
            _check_scan(_scan(t, x, x.size, exclusive, dtype), x, exclusive, t.tile)


def test_scan_large_and_repeated(dev, rng):
    """The default path at 2^22 elements, and calls in a row: the tile counter and epoch the
    kernel keeps in its state buffer are ready for the next call without clearing."""
    n = 1 << 22
    x = _data(rng, n, np.uint32)
    got = library.scan(x)
    np.testing.assert_array_equal(got, np.cumsum(x, dtype=np.uint32))
    xf = rng.random(n, dtype=np.float32)
    _check_scan(
        library.scan(vknb.asarray(xf), exclusive=True), xf, True, library.tuning("scan")["tile"]
    )
    for n in (5000, 1, 70_001, 5000):
        x = _data(rng, n, np.int32)
        np.testing.assert_array_equal(library.scan(x), np.cumsum(x, dtype=np.int32))
    t = sr.tuning("scan", dev)
    if t.single_pass:
        k = sr.load_tuned(library.load, t, np.dtype(np.int32))
        with sr.scratch(k) as s:
            state = s.arrays["state"].numpy()
        assert state[0] == 0 and state[2] == 0 and state[3] == 0  # counters reset
        assert state[1] >= 4  # one epoch per call


def _single_pass(dev: vknb.Device, rng: np.random.Generator) -> sr.Tuning | None:
    """The look-back scan with small tiles, or None where the device has no 64-bit buffer
    atomics: then (never a skip) the library must have chosen the multi-pass scan, which is
    checked against numpy here instead."""
    t = _variant("scan", dev, local_size=64, items=8)
    if t.single_pass:
        return t
    base = sr.tuning("scan", dev)
    assert base.kernel == "scan" and not base.single_pass, base
    x = _data(rng, 30_000, np.uint32)
    _check_scan(_scan(base, x, x.size, False, np.uint32), x, False, base.tile)
    return None


def test_scan_reruns_multipass_when_a_look_back_was_cut_short(dev, rng):
    """A kernel that reports a loop cut short (lavapipe's loop guard) is rerun multi-pass, and
    its buffers are cleared for the next call."""
    t = _single_pass(dev, rng)
    if t is None:
        return
    x = _data(rng, 30_000, np.uint32)
    k = sr.load_tuned(library.load, t, np.dtype(np.uint32))
    _scan(t, x, x.size, False, np.uint32)  # creates the scratch buffers
    with sr.scratch(k) as s:
        state = s.arrays["state"]
        cut = np.zeros(state.size, np.uint32)
        cut[1], cut[3] = 7, 1  # epoch 7, and a loop cut short
        state.update(cut)
    _check_scan(_scan(t, x, x.size, False, np.uint32), x, False, t.tile)
    with sr.scratch(k) as s:
        assert not s.arrays["state"].numpy().any()
    _check_scan(_scan(t, x, x.size, True, np.uint32), x, True, t.tile)


@pytest.mark.parametrize("subgroups", [1, 0], ids=["subgroups", "shared"])
def test_look_back_never_waits_on_a_tile_nobody_scans(dev, rng, subgroups):
    """Tile 0 is never claimed (the counter starts at 1): every other tile still finishes, with
    the right prefix, by adding tile 0 up from the input after SPINS reads (the decoupled
    fallback), instead of waiting for ever."""
    t = _single_pass(dev, rng)
    if t is None:
        return
    if subgroups and not t.subgroups:
        # No subgroup arithmetic here (never a skip): the library must not choose it, and the
        # shared-memory scan must pass the same check.
        assert not {"basic", "arithmetic"} <= set(dev.info.limits["subgroup_operations"])
        subgroups = 0
    k = library.load(
        "scan_lookback",
        defines={"T": "uint", "SUBGROUPS": subgroups},
        constants={"ITEMS": 8, "SPINS": 64},
        local_size=64,
    )
    n = 40 * t.tile + 17
    x = _data(rng, n, np.uint32)
    y = vknb.zeros(n, np.uint32)
    status = vknb.zeros(64, np.uint64)
    state = vknb.asarray(np.array([1, 0, 0, 0], np.uint32))
    k(x, y, status, state, n=n, exclusive=0, groups=41)
    got, st = y.numpy(), state.numpy()
    assert st[3] == 0 and st[0] == 0 and st[1] == 1
    assert not got[: t.tile].any()  # nobody wrote tile 0
    np.testing.assert_array_equal(got[t.tile :], np.cumsum(x, dtype=np.uint32)[t.tile :])


_CHILD = """
import json, time
import numpy as np
import vknb
from vknb import library
from vknb.library import _scan_reduce as sr

rng = np.random.default_rng(SEED)
dev = vknb.device()
base = sr.tuning("scan", dev)
runs = fails = 0
t0 = time.perf_counter()
for spins, subgroups, groups in ((base.spins, True, 65535), (1, True, 3), (base.spins, False, 7),
                                 (2, False, 65535)):
    t = sr.Tuning("scan", "scan_lookback", 64, 8, subgroups and base.subgroups, groups, True,
                  spins, "test")
    for i in range(12):
        n = int(rng.integers(1, 300_000))
        x = rng.integers(0, 1 << 20, n).astype(np.uint32)
        y = sr.scan(library.load, x, n, bool(i % 2), np.dtype(np.uint32), dev, t)
        ref = np.cumsum(x, dtype=np.uint32)
        if i % 2:
            ref = np.concatenate([[0], ref[:-1]]).astype(np.uint32)
        fails += not np.array_equal(y.numpy(), ref)
        y.close()
        runs += 1
print(json.dumps({"runs": runs, "fails": fails, "seconds": time.perf_counter() - t0}))
"""


def test_look_back_stress_in_a_child_with_a_timeout(dev, tmp_path: Path):
    """Many look-back scans of random sizes, with the fallback forced often: a hang would end
    this child (and fail this test), not the suite."""
    if _single_pass(dev, np.random.default_rng()) is None:
        return  # no look-back on this device: its multi-pass fallback was checked instead
    env = {"VKNB_DEVICE": str(dev.index)}
    if os.environ.get("VKNB_VALIDATION"):
        env["VKNB_VALIDATION"] = os.environ["VKNB_VALIDATION"]
    seed = int(np.random.default_rng().integers(1 << 30))  # fresh sizes on every run
    proc = run_python(_CHILD.replace("SEED", str(seed)), tmp_path, env=env, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert result["runs"] == 48 and result["fails"] == 0, (seed, json.dumps(result))
