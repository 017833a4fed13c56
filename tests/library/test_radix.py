"""The radix sort (radix_sort_*.comp, vknb/library/_radix.py) and the sorts built on it.

Every result is checked against numpy on fresh random keys: ``np.sort`` for sorted keys,
``np.argsort(kind="stable")`` for indices and key-value pairs (both sorts are stable), bit for
bit.  Sizes include 0, 1, sizes that are not multiples of the tile, both sides of the
bitonic/radix crossover and of the scan's one-workgroup limit (64 tiles), and 2^20.  The
portable ranking (no subgroup ballots) and smaller tiles are checked through the driver's
``tune=`` argument on this device.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import vknb
from vknb import library
from vknb.library import _radix

R = _radix.RadixTuning
TILE = _radix.tuning(vknb.device()).tile
CROSS = library.RADIX_MIN_KEYS


@pytest.fixture(scope="module", autouse=True)
def _release_library_kernels():
    yield
    library.clear_kernel_cache()


@pytest.fixture(params=["bitonic", "radix"])
def path(request, monkeypatch):
    """Run the sorts through one path whatever the size."""
    monkeypatch.setattr(library, "RADIX_MIN_KEYS", 0 if request.param == "radix" else 1 << 40)
    return request.param


def _keys(rng: np.random.Generator, n: int, dtype=np.uint32) -> np.ndarray:
    if dtype == np.uint32:
        k = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    elif dtype == np.int32:
        k = rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32)
    else:
        k = (rng.standard_normal(n) * 10.0 ** rng.integers(-40, 38, n)).astype(np.float32)
    if n > 10:
        k[: n // 3] = k[n // 3 : 2 * (n // 3)]  # duplicates, far apart
    return k


def _stable(keys: np.ndarray) -> np.ndarray:
    return np.argsort(keys, kind="stable")


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


# --- sort and argsort ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n", [0, 1, 2, 3, 255, 256, 511, 513, TILE - 1, TILE, TILE + 1, 3 * TILE + 17]
)
def test_sort_and_argsort_small(rng, path, n):
    keys = _keys(rng, n)
    if n > 20:
        keys[-3:] = 0xFFFFFFFF  # the padding value of the bitonic path
        keys[5] = 0
    got = library.sort(keys)
    assert got.dtype == np.uint32 and got.shape == (n,)
    np.testing.assert_array_equal(got, np.sort(keys))
    idx = library.argsort(keys)
    assert idx.dtype == np.intp
    np.testing.assert_array_equal(idx, _stable(keys))


@pytest.mark.parametrize("n", [CROSS - 1, CROSS, CROSS + 1, 64 * TILE, 64 * TILE + 1, 1 << 20])
def test_sort_and_argsort_large(rng, n):
    """Around the crossover (each side runs its own path), around the scan's one-workgroup
    limit, and 2^20 keys."""
    keys = _keys(rng, n)
    np.testing.assert_array_equal(library.sort(keys), np.sort(keys))
    np.testing.assert_array_equal(library.argsort(keys), _stable(keys))


@pytest.mark.parametrize("n", [1, 1000, 3 * TILE + 5])
@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_signed_and_float_keys(rng, path, n, dtype):
    keys = _keys(rng, n, dtype)
    if dtype == np.int32 and n > 10:
        keys[:4] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max, -1, 0]
    got = library.sort(keys)
    _same_bits(got, keys[_stable(keys)])
    np.testing.assert_array_equal(library.argsort(keys), _stable(keys))


@pytest.mark.parametrize("n", [40, 5000])
def test_float_specials_sort_as_numpy(rng, path, n):
    """-inf first; -0.0 and 0.0 equal (kept in input order); NaNs (any sign or payload) last,
    in input order, with their bits."""
    keys = rng.standard_normal(n).astype(np.float32)
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 3.4e38, -3.4e38],
        np.float32,
    )
    keys[rng.integers(0, n, 30)] = rng.choice(specials, 30)
    bits = keys.view(np.uint32)
    bits[rng.integers(0, n, 3)] = [0x7FC00001, 0xFFC00002, 0x7F800001]  # NaN payloads
    order = _stable(keys)
    np.testing.assert_array_equal(library.argsort(keys), order)
    got = library.sort(keys)
    _same_bits(got, keys[order])
    assert np.isnan(got[-5:]).all() and got[0] == -np.inf


def test_keys_of_every_bit_and_few_values(rng, path):
    """All 32 bits in use; few distinct keys (long runs of equal digits); one key."""
    n = 3 * TILE + 100
    top = rng.integers(0, 2**32, 4, dtype=np.uint64).astype(np.uint32)
    for keys in (
        rng.choice(np.array([0, 1, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF], np.uint32), n),
        rng.choice(top, n),
        np.full(n, 0xDEADBEEF, np.uint32),
        np.full(n, 0xFFFFFFFF, np.uint32),
        rng.integers(0, 3, n).astype(np.uint32) << np.uint32(31),
    ):
        np.testing.assert_array_equal(library.sort(keys), np.sort(keys))
        np.testing.assert_array_equal(library.argsort(keys), _stable(keys))


def test_all_equal_keys_keep_their_order(rng, path):
    keys = np.full(10_000, 7, np.uint32)
    np.testing.assert_array_equal(library.argsort(keys), np.arange(10_000))
    vals = rng.random(10_000).astype(np.float32)
    k, v = library.sort_pairs(keys, vals)
    np.testing.assert_array_equal(k, keys)
    _same_bits(v, vals)


def test_host_inputs_of_other_dtypes(rng, path):
    """Other integers become uint32 (when they fit), other floats float32; nD is flattened."""
    keys = rng.integers(0, 1000, (30, 7))
    got = library.sort(keys)
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, np.sort(keys.reshape(-1)))
    f64 = rng.standard_normal(500)
    np.testing.assert_array_equal(library.sort(f64), np.sort(f64.astype(np.float32)))
    np.testing.assert_array_equal(library.argsort([3, 1, 2]), [1, 2, 0])


# --- device Arrays ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint32, np.int32, np.float32])
def test_device_arrays_stay_on_the_device(rng, dtype, monkeypatch):
    """The radix path reads a device Array in place: never back to the host, never written."""
    monkeypatch.setattr(library, "RADIX_MIN_KEYS", 0)
    keys = _keys(rng, 5 * TILE + 3, dtype)
    vals = rng.integers(0, 2**32, keys.size, dtype=np.uint64).astype(np.uint32)
    with vknb.asarray(keys) as dk, vknb.asarray(vals) as dv:
        reads = []
        for a in (dk, dv):
            monkeypatch.setattr(a, "numpy", lambda *args, a=a, **kw: reads.append(a))
        _same_bits(library.sort(dk), keys[_stable(keys)])
        np.testing.assert_array_equal(library.argsort(dk), _stable(keys))
        k, v = library.sort_pairs(dk, dv)
        assert not reads, "a device input was read back to the host"
        monkeypatch.undo()
        _same_bits(k, keys[_stable(keys)])
        np.testing.assert_array_equal(v, vals[_stable(keys)])
        _same_bits(dk.numpy(), keys)  # the input is left as it was
        np.testing.assert_array_equal(dv.numpy(), vals)


def test_arrays_on_another_device(rng, monkeypatch):
    """The radix sort runs where the keys are: here a second logical device."""
    monkeypatch.setattr(library, "RADIX_MIN_KEYS", 0)
    other = vknb.Device(vknb.device().index)
    try:
        keys = _keys(rng, 2 * TILE + 1, np.float32)
        vals = np.arange(keys.size, dtype=np.int32)
        with vknb.asarray(keys, device=other) as dk, vknb.asarray(vals, device=other) as dv:
            np.testing.assert_array_equal(library.argsort(dk), _stable(keys))
            _, v = library.sort_pairs(dk, dv)
            np.testing.assert_array_equal(v, _stable(keys))
    finally:
        library.clear_kernel_cache()  # the kernels compiled for `other` go before it does
        other.close()


def test_device_arrays_on_the_bitonic_path(rng, monkeypatch):
    monkeypatch.setattr(library, "RADIX_MIN_KEYS", 1 << 40)
    keys = _keys(rng, 3000, np.float32)
    with vknb.asarray(keys) as dk:
        _same_bits(library.sort(dk), keys[_stable(keys)])
        _, v = library.sort_pairs(dk, np.arange(3000, dtype=np.int32))
        np.testing.assert_array_equal(v, _stable(keys))


# --- key-value pairs ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 700, 3 * TILE + 1])
@pytest.mark.parametrize("kdt", [np.uint32, np.int32, np.float32])
@pytest.mark.parametrize("vdt", [np.uint32, np.int32, np.float32])
def test_sort_pairs(rng, path, n, kdt, vdt):
    keys = _keys(rng, n, kdt)
    if n > 10:
        keys[rng.integers(0, n, n // 2)] = keys[0]  # long runs of equal keys
    vals = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(vdt)
    k, v = library.sort_pairs(keys, vals)
    order = _stable(keys)
    _same_bits(k, keys[order])
    _same_bits(v, vals[order])  # bit for bit: float NaN payloads included


def test_sort_pairs_checks_its_arguments(rng):
    with pytest.raises(ValueError, match="3 keys but 2 values"):
        library.sort_pairs(np.arange(3, dtype=np.uint32), np.arange(2, dtype=np.uint32))
    with pytest.raises(TypeError, match="uint32, int32 or float32"):
        library.sort_pairs(vknb.asarray(np.arange(3.0)), np.arange(3, dtype=np.uint32))
    with pytest.raises(TypeError, match=r"values: a vknb\.Array of dtype"):
        library.sort_pairs(np.arange(3, dtype=np.uint32), vknb.asarray(np.arange(3.0)))
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\).*astype\(np.int32\)"):
        library.sort(np.array([-1, 2**40]))
    with pytest.raises(TypeError, match="uint32, int32 or float32"):
        library.argsort(vknb.asarray(np.zeros(3, np.float16)))
    k, v = library.sort_pairs(np.zeros(0, np.float32), np.zeros(0, np.int32))
    assert (k.dtype, v.dtype, k.size, v.size) == (np.float32, np.int32, 0, 0)
    assert library.argsort(np.zeros(0, np.uint32)).dtype == np.intp


def test_sorts_refuse_to_run_inside_a_batch(monkeypatch):
    monkeypatch.setattr(library, "RADIX_MIN_KEYS", 0)
    with pytest.raises(RuntimeError, match="batch"), vknb.batch():
        library.sort(np.arange(10, dtype=np.uint32))


# --- the driver: passes, tunings, buffers --------------------------------------------------------


def _last_batch_dispatches() -> int:
    return vknb.timings(last=1)[0].dispatches


@pytest.mark.parametrize(
    ("high", "passes"), [(2**8, 1), (2**16, 2), (2**24, 3), (2**32, 4), (1, 0)]
)
def test_passes_of_constant_digits_are_skipped(rng, high, passes):
    """Keys below 2^8 need one pass, ..., all-equal keys none (nothing runs after the count)."""
    n = 2 * TILE + 9
    keys = rng.integers(0, high, n, dtype=np.uint64).astype(np.uint32)
    got, idx = _radix.radix_sort(library.load, keys, iota=True)
    np.testing.assert_array_equal(got, np.sort(keys))
    np.testing.assert_array_equal(idx, _stable(keys))
    # count + scan + scatter a pass; the first pass's count came with the totals.
    expected = 3 * passes - 1 if passes else 2  # (no passes: the totals batch was the last)
    assert _last_batch_dispatches() == expected


@pytest.mark.parametrize(
    "tune",
    [R(4, 8, False, False), R(8, 8, False, True), R(8, 32, True, False), R(16, 32, True, True)],
    ids=str,
)
@pytest.mark.parametrize("n", [1, 1000, 5 * 1024 + 3, 70 * 1024 + 11])
def test_tunings(rng, tune, n):
    """The portable ranking (virtual subgroups of 32), the shared-memory scans, other tiles."""
    limits = vknb.device().info.limits
    if tune.ballot and "ballot" not in limits["subgroup_operations"]:
        # No ballots here (never a skip): the library must not choose them, and the same tile
        # must sort with the portable ranking instead.
        assert not _radix.tuning(vknb.device()).ballot
        tune = tune._replace(ballot=False)
    keys = _keys(rng, n, np.float32)
    vals = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    k, v = _radix.radix_sort(library.load, keys, vals, tune=tune)
    order = _stable(keys)
    _same_bits(k, keys[order])
    np.testing.assert_array_equal(v, vals[order])
    k2, _ = _radix.radix_sort(library.load, keys, tune=tune)
    _same_bits(k2, keys[order])


class _FakeDevice:
    def __init__(self, **limits):
        self.info = type("Info", (), {"limits": limits})()


def test_tuning_fits_the_device():
    assert _radix.tuning(vknb.device()) == _radix.tuning(vknb.device())
    ops = ["basic", "vote", "arithmetic", "ballot"]
    big = _FakeDevice(subgroup_size=32, subgroup_operations=ops, max_shared_memory=49152)
    assert _radix.tuning(big) == R(16, 32, True, True)
    small = _FakeDevice(subgroup_size=32, subgroup_operations=ops, max_shared_memory=16384)
    assert _radix.tuning(small) == R(8, 16, True, True)
    narrow = _FakeDevice(subgroup_size=4, subgroup_operations=ops, max_shared_memory=16384)
    assert _radix.tuning(narrow) == R(8, 16, False, True)  # 64 counter sets would not fit
    bare = _FakeDevice(subgroup_size=0, subgroup_operations=[], max_shared_memory=16384)
    assert _radix.tuning(bare) == R(8, 16, False, False)
    for dev in (big, small, narrow, bare, vknb.device()):
        t = _radix.tuning(dev)
        assert (
            _radix.scatter_shared_bytes(t.items, t.subgroups)
            <= dev.info.limits["max_shared_memory"]
        )


def test_order_bits_matches_the_shader_order(rng):
    f = np.array([-np.inf, -1.0, -0.0, 0.0, 1e-45, 2.0, np.inf, np.nan], np.float32)
    o = _radix.order_bits(f)
    assert (np.diff(o[:-1].astype(np.int64)) >= 0).all() and o[2] == o[3] and o[-1] == 2**32 - 1
    i = np.array([-(2**31), -1, 0, 2**31 - 1], np.int32)
    np.testing.assert_array_equal(_radix.order_bits(i), [0, 2**31 - 1, 2**31, 2**32 - 1])


def test_raw_kernels_as_their_headers_document(rng):
    """The kernels by hand: the totals and tile counts, then one pass (the second digit) with
    the scan as one workgroup and as 256, and the portable ranking (no SUBGROUP_BALLOT)."""
    n = 3 * TILE + 77
    keys = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    items = TILE // 256
    kc = library.load("radix_sort_count", constants={"ITEMS": items})
    ks = library.load("radix_sort_scan")
    kx = library.load("radix_sort_scatter", constants={"ITEMS": items, "SUBGROUPS": 32})
    nb = -(-n // TILE)
    counts = np.empty(256 * nb, np.uint32)
    totals = np.full(1024, 5, np.uint32)
    kc(keys, counts, totals, n=n, shift=0, mode=2, groups=1)
    assert not totals.any()
    kc(keys, counts, totals, n=n, shift=0, mode=1, groups=nb)
    for p in range(4):
        digits = (keys >> np.uint32(8 * p)) & np.uint32(255)
        np.testing.assert_array_equal(
            totals[256 * p : 256 * (p + 1)], np.bincount(digits, None, 256)
        )
        if p == 0:
            for b in range(nb):
                tile = np.bincount(digits[b * TILE : (b + 1) * TILE], None, 256)
                np.testing.assert_array_equal(counts.reshape(256, nb)[:, b], tile)
    d = (keys >> np.uint32(8)) & np.uint32(255)
    for groups in (1, 256):
        offsets = np.empty(256 * nb, np.uint32)
        out = np.empty_like(keys)
        kc(keys, offsets, totals, n=n, shift=8, mode=0, groups=nb)
        ks(offsets, totals, nblocks=nb, shift=8, groups=groups)
        kx(keys, out, offsets, n=n, shift=8, iota=0, groups=nb)
        np.testing.assert_array_equal(out, keys[np.argsort(d, kind="stable")])


def test_sorts_free_their_device_buffers(dev, rng, monkeypatch):
    keys = _keys(rng, 3 * TILE + 5)
    equal = np.full(2 * TILE, 3, np.uint32)
    small = _keys(rng, 900)

    def run():
        monkeypatch.setattr(library, "RADIX_MIN_KEYS", 0)
        library.sort(keys)
        library.argsort(keys)
        library.sort_pairs(keys, keys)
        library.argsort(equal)  # no pass runs
        with pytest.raises(RuntimeError), vknb.batch():
            library.sort(keys)
        monkeypatch.setattr(library, "RADIX_MIN_KEYS", 1 << 40)
        library.sort_pairs(small, small)

    run()  # first call: compiles, and kernels keep per-binding scratch buffers for reuse
    gc.collect()
    dev.synchronize()
    before = dev.memory_stats()
    for _ in range(2):
        run()
    gc.collect()
    dev.synchronize()
    after = dev.memory_stats()
    assert (after.used, after.buffers) == (before.used, before.buffers)
