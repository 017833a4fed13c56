"""Device arrays: round trips of every dtype and size (bit for bit), where Arrays live
(``VKNB_BAR``), ``zeros``/``empty``, shapes, attributes, closing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import DOUBLE

import vknb

SAXPY_N = """
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
"""


def random_array(rng: np.random.Generator, n: int, dtype: Any) -> np.ndarray:
    """``n`` elements of ``dtype`` made of random bytes (every bit pattern, NaNs included)."""
    dt = np.dtype(dtype)
    raw = rng.integers(0, 256, n * dt.itemsize, dtype=np.uint8)
    return raw.view(dt)


# ---------------------------------------------------------------------------------------------
# Transfers
# ---------------------------------------------------------------------------------------------


STRUCT = np.dtype([("a", "<f4"), ("b", "<i2"), ("c", "u1"), ("d", "<f8")])  # packed: 15 bytes


DTYPES = [
    np.uint8,
    np.int16,
    np.int32,
    np.uint32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    STRUCT,
]


SIZES = [1, 3, 4097, 3 * (1 << 20) + 5]  # bytes (rounded down to whole elements, at least one)


@pytest.mark.parametrize("nbytes", SIZES, ids=lambda n: f"{n}B")
@pytest.mark.parametrize(
    "dtype", DTYPES, ids=lambda d: np.dtype(d).name if np.dtype(d).names is None else "struct"
)
def test_round_trip_asarray_numpy(dev, rng, dtype, nbytes):
    dt = np.dtype(dtype)
    n = max(1, nbytes // dt.itemsize)
    host = random_array(rng, n, dt)
    a = vknb.asarray(host)
    assert a.dtype == dt and a.shape == (n,) and a.nbytes == n * dt.itemsize
    back = a.numpy()
    assert back.dtype == dt and back.shape == host.shape
    assert back.tobytes() == host.tobytes()  # bit for bit (NaN payloads included)
    # numpy(out=...) fills a caller's array.
    out = np.empty_like(host)
    assert a.numpy(out=out) is out
    assert out.tobytes() == host.tobytes()
    # Array.update replaces the contents.
    other = random_array(rng, n, dt)
    assert a.update(other) is a
    assert a.numpy().tobytes() == other.tobytes()
    a.close()


def test_round_trip_multidimensional(dev, rng):
    host = rng.standard_normal((7, 5, 3)).astype(np.float32)
    a = vknb.asarray(host)
    assert a.shape == (7, 5, 3) and a.size == 105 and a.ndim == 3 and len(a) == 7
    np.testing.assert_array_equal(a.numpy(), host)
    np.testing.assert_array_equal(np.asarray(a), host)
    # Non-contiguous input is copied in its logical order.
    t = host.transpose(2, 0, 1)
    np.testing.assert_array_equal(vknb.asarray(t).numpy(), t)
    np.testing.assert_array_equal(vknb.asarray(host[:, ::2]).numpy(), host[:, ::2])
    # A Python list goes through np.asarray.
    np.testing.assert_array_equal(
        vknb.asarray([[1, 2], [3, 4]], np.int32).numpy(), np.array([[1, 2], [3, 4]], np.int32)
    )


@pytest.mark.slow
def test_round_trip_256_mib(dev, rng):
    """The one large transfer: 256 MiB up and down (marked slow)."""
    n = 256 << 20
    host = rng.integers(0, 256, n, dtype=np.uint8)
    a = vknb.asarray(host)
    assert a.nbytes == n
    back = a.numpy()
    assert np.array_equal(back, host)
    a.close()
    del back, host


def _whole_bar_expected(info: vknb.DeviceInfo) -> bool:
    """From the device list alone: a mappable, coherent device-local type in the main heap."""
    local = [h.size for h in info.heaps if h.device_local]
    want = {"device_local", "host_visible", "host_coherent"}
    return bool(local) and any(
        want <= set(t.flag_names) and info.heaps[t.heap].size >= max(local)
        for t in info.memory_types
    )


@pytest.mark.parametrize("env", [None, "0", "1"])
def test_arrays_go_to_mappable_device_memory_where_all_of_it_is(dev, rng, env, monkeypatch):
    if env is None:
        monkeypatch.delenv("VKNB_BAR", raising=False)
        bar = dev.info.type == "discrete" and _whole_bar_expected(dev.info)
    else:
        monkeypatch.setenv("VKNB_BAR", env)
        bar = env == "1"
    assert dev.allocator.whole_bar() == _whole_bar_expected(dev.info)
    x = rng.standard_normal(10_000).astype(np.float32)
    y = rng.standard_normal(10_000).astype(np.float32)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    assert Y.buffer.memory_kind == ("host_device" if bar else "device")
    assert Y.buffer.host_visible == (bar or dev.info.type in ("cpu", "integrated"))
    k = vknb.compile(SAXPY_N, name="saxpy_bar")
    s = k(X, Y, a=2.0, n=x.size, grid=x.size, wait=False)
    # Written while the dispatch may still run: the update lands after it, never under it.
    z = rng.standard_normal(10_000).astype(np.float32)
    Y.update(z)
    s.wait()
    np.testing.assert_array_equal(Y.numpy(), z)
    k(X, Y, a=0.5, n=x.size, grid=x.size)
    np.testing.assert_allclose(Y.numpy(), z + 0.5 * x, rtol=1e-6)
    for a in (X, Y):
        a.close()
    k.close()


def test_zeros_and_empty(dev, rng, no_leaks):
    # Dirty some memory first, free it, and check that zeros() really clears what it reuses.
    dirty = [vknb.asarray(rng.integers(1, 255, 4096, dtype=np.uint8)) for _ in range(8)]
    for d in dirty:
        d.close()
    cases = [
        ((4096,), np.uint8),
        ((3, 5), np.float32),
        ((7,), np.int64),
        ((2, 3, 4), np.float16),
        ((5,), np.complex64),
        ((9,), STRUCT),
        (3, np.int16),
    ]
    for shape, dtype in cases:
        z = vknb.zeros(shape, dtype)
        expected = np.zeros(shape, dtype)
        assert z.shape == expected.shape and z.dtype == np.dtype(dtype)
        assert z.numpy().tobytes() == expected.tobytes()
        e = vknb.empty(shape, dtype)
        assert e.shape == expected.shape and e.dtype == np.dtype(dtype)
        assert e.nbytes == expected.nbytes
        assert e.numpy().shape == expected.shape
        z.close()
        e.close()
    assert vknb.zeros(4).dtype == np.float32  # the default dtype


def test_numpy_out_and_update_check_shape_and_dtype(dev):
    a = vknb.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(ValueError, match="shape"):
        a.numpy(out=np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        a.numpy(out=np.empty((2, 3), np.float64))
    with pytest.raises(TypeError, match="float32"):
        a.update(np.zeros((2, 3), np.float64))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        a.update(np.zeros(6, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        a.buffer.read(out=np.empty((6, 2), np.float32)[:, 0])
    np.testing.assert_array_equal(a.numpy(), np.arange(6).reshape(2, 3))


# ---------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------


def test_array_attributes_and_repr(dev):
    a = vknb.asarray(np.zeros((4, 3), np.int16), label="my_array")
    assert (a.shape, a.dtype, a.nbytes, a.size, a.ndim, len(a)) == (
        (4, 3),
        np.dtype(np.int16),
        24,
        12,
        2,
        4,
    )
    assert a.device is dev
    r = repr(a)
    assert "my_array" in r and "(4, 3)" in r and "int16" in r and dev.info.name in r
    assert "closed" not in r
    a.close()
    assert a.closed and "closed" in repr(a)
    # An Array passed to asarray is returned as is.
    b = vknb.asarray(np.ones(3, np.float32))
    assert vknb.asarray(b) is b
    c = vknb.asarray(b, np.float64)  # another dtype: a converted copy
    assert c is not b and c.dtype == np.float64
    np.testing.assert_array_equal(c.numpy(), np.ones(3))


def test_zero_dimensional_and_empty_arrays(dev, no_leaks):
    s = vknb.asarray(np.float64(2.5))
    assert s.shape == () and s.size == 1 and s.nbytes == 8 and s.ndim == 0
    back = s.numpy()
    assert back.shape == () and back == 2.5
    with pytest.raises(TypeError, match="0-d"):
        len(s)
    s.update(np.float64(-1.0))
    assert s.numpy() == -1.0
    for shape in [(0,), (3, 0), (0, 5, 2)]:
        e = vknb.asarray(np.zeros(shape, np.int32))
        assert e.shape == shape and e.nbytes == 0 and e.size == 0
        assert e.numpy().shape == shape
        e.update(np.zeros(shape, np.int32))
        z = vknb.zeros(shape, np.float32)
        assert z.numpy().shape == shape
        e.close()
        z.close()
    with pytest.raises(ValueError, match="negative"):
        vknb.empty((-1, 3))
    with pytest.raises((TypeError, ValueError)):
        vknb.empty("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shape"):
        vknb.empty(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="object"):
        vknb.asarray(np.array([object()]))
    with pytest.raises(ValueError, match="non-negative"):
        vknb.Buffer(-1)


@pytest.mark.parametrize("shape", [(1.5,), (2, 3.0)])
def test_float_shape_is_rejected(dev, shape):
    with pytest.raises(TypeError):
        vknb.empty(shape)


def test_closed_array_raises_object_closed(dev, no_leaks):
    a = vknb.asarray(np.arange(10, dtype=np.float32))
    a.close()
    a.close()  # idempotent
    for use in (
        lambda: a.numpy(),
        lambda: a.update(np.zeros(10, np.float32)),
        lambda: a.buffer.read(),
        lambda: a.buffer.write(np.zeros(10, np.float32)),
        lambda: np.asarray(a),
    ):
        with pytest.raises(vknb.ObjectClosed, match=a.label):
            use()
    k = vknb.compile(DOUBLE, name="double")
    with pytest.raises(vknb.ObjectClosed):
        k(a, grid=10)
    k.close()


def test_with_blocks_close(dev, no_leaks):
    with vknb.asarray(np.ones(5, np.float32)) as a:
        np.testing.assert_array_equal(a.numpy(), np.ones(5))
    assert a.closed
    with vknb.Buffer(32) as b:
        b.write(np.arange(8, dtype=np.int32))
    assert b.closed
    with pytest.raises(vknb.ObjectClosed):
        b.read()


def test_masked_arrays_are_recognized_without_importing_numpy_ma(monkeypatch) -> None:
    """is_masked finds masked arrays (refused by asarray and by kernel calls), and never fails
    while another thread is still importing numpy.ma: a Dask worker thread saw
    'partially initialized module numpy.ma has no attribute MaskedArray' there."""
    import sys
    import types

    from vknb.core.array import is_masked

    m = np.ma.masked_array([1.0, 2.0], mask=[0, 1])
    assert is_masked(m) and not is_masked(np.zeros(2)) and not is_masked(3.0)
    with pytest.raises(TypeError, match="masked array"):
        vknb.asarray(m)
    # numpy.ma.core half imported: no MaskedArray class yet, so nothing can be one.
    for name in ("numpy.ma", "numpy.ma.core"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    assert not is_masked(np.zeros(2))
    a = vknb.asarray(np.arange(3, dtype=np.float32))
    assert a.numpy().tolist() == [0.0, 1.0, 2.0]
    a.close()
