"""Tests of the shader library (shaders/*.comp and vknb.library) on the session device.

Every kernel is checked against a numpy reference on fresh random inputs: float32 results
within rtol 1e-5 (sums of many floats: against float64, with the tolerance explained where it
is set), integers exactly.  Sizes include 1 element and sizes that are not multiples of the
workgroup or tile size.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path

import numpy as np
import pytest

import vknb
from vknb import library

SHADER_DIR = Path(__file__).resolve().parents[2] / "vknb" / "library" / "shaders"
SHADERS = sorted(p.stem for p in SHADER_DIR.glob("*.comp"))
EPS32 = float(np.finfo(np.float32).eps)  # 2**-23

HEADER_SECTIONS = ("Bindings", "Push constants", "Specialization constants", "Dispatch", "Usage")


@pytest.fixture(scope="module", autouse=True)
def _release_library_kernels():
    yield
    library.clear_kernel_cache()


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        lines.append(line[2:])
    return "\n".join(lines)


# --- the library as a whole -------------------------------------------------------------------


def test_library_has_at_least_twelve_shaders():
    assert len(SHADERS) >= 12
    assert library.list_shaders() == SHADERS
    for name in (
        "saxpy",
        "map",
        "reduce_sum",
        "scan",
        "histogram",
        "matmul",
        "convolve2d",
        "transpose",
        "mandelbrot",
        "random_uniform",
        "sobel",
    ):
        assert name in SHADERS


@pytest.mark.parametrize("name", SHADERS)
def test_shader_compiles_reflects_and_documents_itself(name):
    src = library.source(name)
    assert src == (SHADER_DIR / f"{name}.comp").read_text()
    header = _header(src)
    assert header.startswith(f" {name}.comp -- "), "first line: '// <name>.comp -- what it does'"
    for section in HEADER_SECTIONS:
        assert re.search(rf"^ {section}\b[^\n]*:$", header, re.M), f"no {section}: section"
    assert "vknb.library" in header.split("Usage:")[1]

    spirv = vknb.compile_glsl(src, name=name)
    refl = vknb.reflect(spirv)
    assert refl.bindings, "every library kernel binds at least one buffer"
    assert refl.push_constants is not None

    # Everything the interface has is named in the header.
    bindings_doc = header.split(" Bindings")[1].split(" Push constants:")[0]
    for b in refl.bindings:
        if b.kind == "storage":
            assert b.block is not None and b.block.runtime_array is not None
            member = b.block.runtime_array.name
        else:  # images and samplers: the variable's name
            member = b.name
        assert re.search(rf"^ +\d+ +{member} ", bindings_doc, re.M), f"{member} undocumented"
        assert re.search(r"readonly|writeonly|read/write", bindings_doc)
    for m in refl.push_constants.members:
        assert re.search(rf"\b{m.name}\b", header), f"push constant {m.name} undocumented"
    for s in refl.spec_constants:
        if s.name:
            assert s.name in header, f"specialization constant {s.name} undocumented"
    if refl.local_size_ids[0] is not None:
        assert "local_size_x" in header

    dev = vknb.device()
    missing = [r for r in library._requirements(src) if r not in dev.extensions]
    if missing:  # a kernel the device cannot run: a clear error, not a driver failure
        with pytest.raises(vknb.NotAvailable, match=missing[0]):
            library.load(name, cache=False)
        return
    k = library.load(name, cache=False)  # builds the pipeline on the device too
    assert k.reflection.local_size == refl.local_size
    k.close()


def test_matmul_fp16_on_tensor_cores_or_a_clear_error(rng):
    """On a device with cooperative matrices: float16 products checked against numpy (sizes
    that need padding, and whole tiles). Elsewhere: NotAvailable naming what is missing."""
    dev = vknb.device()
    a = (rng.random((200, 40), dtype=np.float32) * 2 - 1).astype(np.float16)
    b = (rng.random((40, 300), dtype=np.float32) * 2 - 1).astype(np.float16)
    with pytest.raises(TypeError, match="float16"):
        library.matmul_fp16(a.astype(np.float32), b)
    with pytest.raises(ValueError, match="do not multiply"):
        library.matmul_fp16(a, b.T)
    if not dev.cooperative_matrix:
        assert dev.cooperative_matrix_shapes() == []
        with pytest.raises(vknb.NotAvailable, match="cooperative-matrix"):
            library.matmul_fp16(a, b)
        with pytest.raises(vknb.NotAvailable, match="VK_NV_cooperative_matrix"):
            library.load("matmul_fp16_coopmat")
        return
    shapes = dev.cooperative_matrix_shapes()
    assert any(s["A"] == "float16" and s["C"] == "float32" for s in shapes), shapes
    assert library.coopmat_shape() in {(s["M"], s["N"], s["K"]) for s in shapes}
    for x, y in ((a, b), (a[:128, :32].copy(), b[:32, :256].copy())):
        ref = x.astype(np.float32) @ y.astype(np.float32)
        got = library.matmul_fp16(x, y)
        assert got.dtype == np.float16 and got.shape == ref.shape
        np.testing.assert_allclose(got.astype(np.float32), ref, rtol=2e-3, atol=1e-2)
    big_a = (rng.random((256, 512), dtype=np.float32) - 0.5).astype(np.float16)
    big_b = (rng.random((512, 512), dtype=np.float32) - 0.5).astype(np.float16)
    ref = big_a.astype(np.float32) @ big_b.astype(np.float32)
    np.testing.assert_allclose(
        library.matmul_fp16(big_a, big_b).astype(np.float32), ref, rtol=4e-3, atol=2e-2
    )


def test_load_caches_per_options():
    a = library.load("saxpy")
    assert library.load("saxpy") is a
    b = library.load("saxpy", local_size=64)
    assert b is not a and b.local_size == (64, 1, 1)
    assert library.load("saxpy", local_size=64) is b
    c = library.load("map", constants={"OP": 2})
    assert library.load("map", constants={"OP": 2}) is c
    assert library.load("map", constants={"OP": 1}) is not c
    fresh = library.load("saxpy", cache=False)
    assert fresh is not a
    fresh.close()


def test_unknown_shader_names_the_choices():
    with pytest.raises(FileNotFoundError, match="saxpy"):
        library.load("no_such_kernel")
    assert library.shader_path("saxpy").parent == vknb.config.shader_dir()


# --- saxpy --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 255, 256, 1000, 4099])
def test_saxpy(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    y0 = y.copy()
    out = library.saxpy(1.75, x, y)
    np.testing.assert_array_equal(y, y0)  # host y untouched
    np.testing.assert_allclose(out, np.float32(1.75) * x + y, rtol=1e-5, atol=1e-6)


def test_saxpy_device_array_in_place_and_grid_stride(rng):
    n = 1000
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    ya = vknb.asarray(y)
    out = library.saxpy(-2.0, vknb.asarray(x), ya)
    np.testing.assert_allclose(out, -2 * x + y, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ya.numpy(), out)

    # Raw kernel, other workgroup size, only 2 workgroups: the grid-stride loop covers all n.
    k = library.load("saxpy", local_size=64)
    y2 = y.copy()
    k(x, y2, a=0.5, n=n, groups=2)
    np.testing.assert_allclose(y2, 0.5 * x + y, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="x has 3 elements"):
        library.saxpy(1.0, np.ones(3), np.ones(4))


# --- map ----------------------------------------------------------------------------------------

_F64 = {
    "add": lambda a, b, s: a + b,
    "sub": lambda a, b, s: a - b,
    "mul": lambda a, b, s: a * b,
    "div": lambda a, b, s: a / b,
    "max": lambda a, b, s: np.maximum(a, b),
    "min": lambda a, b, s: np.minimum(a, b),
    "pow": lambda a, b, s: a**b,
    "neg": lambda a, b, s: -a,
    "abs": lambda a, b, s: np.abs(a),
    "exp": lambda a, b, s: np.exp(a),
    "log": lambda a, b, s: np.log(a),
    "sqrt": lambda a, b, s: np.sqrt(a),
    "sin": lambda a, b, s: np.sin(a),
    "cos": lambda a, b, s: np.cos(a),
    "tanh": lambda a, b, s: np.tanh(a),
    "relu": lambda a, b, s: np.maximum(a, 0),
    "sigmoid": lambda a, b, s: 1 / (1 + np.exp(-a)),
    "square": lambda a, b, s: a * a,
    "reciprocal": lambda a, b, s: 1 / a,
    "scale": lambda a, b, s: a * s,
    "add_scalar": lambda a, b, s: a + s,
    "axpy": lambda a, b, s: s * a + b,
    "pow_scalar": lambda a, b, s: a**s,
}
# Inputs where the op is defined and well conditioned (log, sqrt, pow need a > 0).
_POSITIVE = {"log", "sqrt", "pow", "pow_scalar", "reciprocal", "div"}


def test_map_ops_table_is_complete():
    assert set(_F64) == set(library.MAP_OPS)


@pytest.mark.parametrize("op", list(library.MAP_OPS))
def test_map_op(rng, op):
    n = 1001
    if op in _POSITIVE:
        a = rng.uniform(0.1, 4.0, n).astype(np.float32)
        b = rng.uniform(0.1, 3.0, n).astype(np.float32)
    else:
        a = rng.uniform(-4.0, 4.0, n).astype(np.float32)
        b = rng.uniform(-4.0, 4.0, n).astype(np.float32)
    alpha = 1.25
    out = library.elementwise(
        op, a, b if library.MAP_OPS[op] in library._BINARY_OPS else None, alpha=alpha
    )
    ref = _F64[op](a.astype(np.float64), b.astype(np.float64), alpha)
    # rtol 1e-5 relative; the absolute 1e-6 covers results near 0 whose inputs are near 1
    # (log(a) for a ~ 1, tanh/sin of small arguments): there an error of one float32 ulp of
    # the *input's* magnitude is large relative to the tiny result.
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 255, 257, 70_000])
def test_map_sizes_and_device_arrays(rng, n):
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    out = library.elementwise("mul", vknb.asarray(a), b)
    np.testing.assert_allclose(out, a * b, rtol=1e-5)


def test_map_custom_expression(rng):
    n = 777
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    k = library.load("map", defines={"EXPR": "a * a + alpha * b"})
    out = np.empty(n, np.float32)
    k(a, b, out, n=n, alpha=3.0, grid=n)
    np.testing.assert_allclose(out, a * a + 3 * b, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="two operands"):
        library.elementwise("add", a)
    with pytest.raises(ValueError, match="unknown op"):
        library.elementwise("frobnicate", a)


# --- reduce_sum ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 256, 1023, 1024, 1025, 100_000, 1_234_567])
def test_reduce_sum_float(rng, n):
    x = rng.random(n, dtype=np.float32)
    total = library.reduce_sum(x)
    assert total.dtype == np.float32
    # Inputs are positive, so there is no cancellation: every rounding is relative to a partial
    # sum <= the total, and each value passes through at most ~ n / (256 * groups) serial
    # additions (< 40 here: see library.tuning("reduce_sum")) plus log2(n) tree levels, so the
    # relative error is below 60 * 2**-24 = 3.6e-6 < 1e-5.  (A serial float32 loop over 1e6
    # values would not be.)  tests/library/test_scan_reduce.py checks larger sizes.
    np.testing.assert_allclose(total, x.astype(np.float64).sum(), rtol=1e-5)


def test_reduce_sum_mixed_signs(rng):
    n = 100_000
    x = rng.standard_normal(n).astype(np.float32)
    ref = x.astype(np.float64).sum()
    # With cancellation the bound is absolute: ~40 roundings of partial sums bounded by sum|x|.
    bound = 40 * EPS32 * np.abs(x).astype(np.float64).sum()
    assert abs(float(library.reduce_sum(x)) - ref) <= bound


@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
@pytest.mark.parametrize("n", [1, 1000, 300_001])
def test_reduce_sum_integers(rng, dtype, n):
    lo = -(2**31) if dtype == np.int32 else 0
    x = rng.integers(lo, 2**31, n).astype(dtype)  # large values: the sum wraps around
    total = library.reduce_sum(x)
    assert total.dtype == dtype
    assert total == x.astype(np.int64).sum().astype(np.uint64).astype(np.uint32).view(dtype)


@pytest.mark.parametrize("local_size", [32, 96, 1024])
def test_reduce_sum_raw_one_pass(rng, local_size):
    # 96 is not a power of two (12 subgroups of 8 on lavapipe); 1024 the largest workgroup.
    n = 50_001
    x = vknb.asarray(rng.integers(0, 1000, n).astype(np.uint32))
    k = library.load("reduce_sum", defines={"T": "uint"}, local_size=local_size)
    groups = 37
    sums = vknb.empty(groups + 1, np.uint32)
    state = vknb.zeros(1, np.uint32)
    for _ in range(2):  # the counter is back at zero after a call: a second one is right too
        k(x, sums, state, n=n, groups=groups)
        assert int(sums.numpy()[0]) == int(x.numpy().astype(np.int64).sum())
        assert int(state.numpy()[0]) == 0
    # The partial sums are the workgroups' shares.
    assert int(sums.numpy()[1:].astype(np.int64).sum()) == int(sums.numpy()[0])


# --- scan ---------------------------------------------------------------------------------------

SCAN_SIZES = [1, 5, 1023, 1024, 1025, 5000, 100_000]


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("n", SCAN_SIZES)
def test_scan_float(rng, n, exclusive):
    x = rng.random(n, dtype=np.float32)
    got = library.scan(x, exclusive=exclusive)
    ref = np.cumsum(x.astype(np.float64))
    if exclusive:
        ref = np.concatenate([[0.0], ref[:-1]])
    # Positive inputs, so prefix i is rounded relative to itself; a prefix goes through
    # ITEMS (<= 16) serial additions, log2 of the workgroup (8), and one per earlier tile at
    # most (tiles of >= 1024 elements: < 100 here), so the relative error is below
    # 130 * 2**-24 = 7.7e-6 < 1e-5.  (The multi-pass fallback adds fewer: < 30.)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert got.dtype == np.float32 and got.shape == (n,)


@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("n", [1, 1025, 1_100_003])  # the last one needs three levels of blocks
def test_scan_integers(rng, n, exclusive, dtype):
    x = rng.integers(-1000 if dtype == np.int32 else 0, 1000, n).astype(dtype)
    got = library.scan(vknb.asarray(x), exclusive=exclusive)
    ref = np.cumsum(x, dtype=dtype)
    if exclusive:
        ref = np.concatenate([np.zeros(1, dtype), ref[:-1]])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize(("local_size", "items"), [(64, 1), (96, 3), (1024, 2)])
def test_scan_other_block_shapes(rng, local_size, items):
    n = 20_011
    x = rng.integers(0, 100, n).astype(np.uint32)
    k = library.load(
        "scan", defines={"T": "uint"}, local_size=local_size, constants={"ITEMS": items}
    )
    for exclusive in (False, True):
        got = library._scan_device(k, x, n, exclusive, np.dtype(np.uint32)).numpy()
        ref = np.cumsum(x, dtype=np.uint32)
        np.testing.assert_array_equal(got, np.concatenate([[0], ref[:-1]]) if exclusive else ref)


# --- histogram ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "bins"),
    [
        (1, 1),
        (1, 16),
        (5, 3),
        (7, 2),
        (1000, 7),
        (4099, 256),
        (100_003, 256),
        (50_000, 5000),
        (50_000, 4096),
        (2_000_001, 256),
    ],
)
def test_histogram(rng, n, bins):
    x = rng.integers(0, bins + bins // 5 + 1, n).astype(np.uint32)  # some values >= bins
    counts = library.histogram(x, bins)
    np.testing.assert_array_equal(counts, np.bincount(x[x < bins], minlength=bins))
    assert counts.dtype == np.uint32


def test_histogram_global_atomics_and_accumulation(rng):
    # SHARED_BINS=16 forces the global-atomics path for 100 bins; bins accumulate across calls.
    n, bins = 30_000, 100
    x = vknb.asarray(rng.integers(0, bins, n).astype(np.uint32))
    k = library.load("histogram", constants={"SHARED_BINS": 16}, local_size=64)
    counts = np.zeros(bins, np.uint32)
    k(x, counts, n=n, num_bins=bins, groups=13)
    k(x, counts, n=n, num_bins=bins, groups=5)
    np.testing.assert_array_equal(counts, 2 * np.bincount(x.numpy(), minlength=bins))
    # Any number of workgroups covers every value once: the two-loads-per-iteration loop, its
    # odd last load and the n % 4 tail, each with the shared-memory path.
    shared = library.load("histogram", local_size=32)
    for m in (1, 3, 4, 63, 257, 1021):
        for g in (1, 2, 3, 7, 64):
            c = np.zeros(bins, np.uint32)
            shared(x, c, n=m, num_bins=bins, groups=g)
            np.testing.assert_array_equal(c, np.bincount(x.numpy()[:m], minlength=bins))
    # Skewed data: all values in one bin (maximal atomic contention).
    same = np.full(10_000, 3, np.uint32)
    np.testing.assert_array_equal(library.histogram(same, 8), [0, 0, 0, 10_000, 0, 0, 0, 0])
    # Runs of equal values of every length (contention on one shared counter at a time).
    runs = np.repeat(rng.integers(0, bins, 700), rng.integers(1, 90, 700)).astype(np.uint32)
    ref = np.bincount(runs, minlength=bins)
    kv = library.load("histogram", local_size=64)
    for g in (1, 3, 40):
        c = np.zeros(bins, np.uint32)
        kv(runs, c, n=runs.size, num_bins=bins, groups=g)
        np.testing.assert_array_equal(c, ref, err_msg=f"{g} groups")
    np.testing.assert_array_equal(library.histogram(runs, bins), ref)
    with pytest.raises(ValueError, match="0, 2"):
        library.histogram(np.array([-1, 2]), 4)
    with pytest.raises(TypeError, match="integers"):
        library.histogram(np.array([0.5]), 4)


# --- matmul -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("M", "K", "N"),
    [(1, 1, 1), (64, 64, 64), (65, 17, 33), (100, 70, 130), (3, 200, 5), (256, 256, 256)],
)
def test_matmul(rng, M, K, N):
    A = rng.random((M, K), dtype=np.float32)
    B = rng.random((K, N), dtype=np.float32)
    C = library.matmul(A, B)
    # Positive inputs: no cancellation, each of the K roundings is relative to a partial sum
    # below the result, so |error| <= K * 2**-24 * C in the worst case and ~sqrt(K) * 2**-24 *
    # C typically (< 1e-6 relative at K = 256).
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-5)


_MM_ODD = [(1, 1, 1), (130, 17, 129), (128, 8, 128), (257, 44, 260), (3, 300, 7)]


# matmul_128's bands of tile rows (2 and 3 leave a partial band on the 3- and 5-row grids
# below; 8 as on discrete GPUs), scalar and vec4.
_MM_VARIANTS = [{"GROUP_ROWS": 2}, {"VEC4": 1, "GROUP_ROWS": 3}, {"VEC4": 1, "GROUP_ROWS": 8}]


@pytest.mark.parametrize(
    ("M", "K", "N", "name", "defines"),
    [(*s, "matmul", None) for s in _MM_ODD]
    + [(*s, "matmul_128", None) for s in _MM_ODD]
    + [(*s, "matmul_128", {"VEC4": 1}) for s in _MM_ODD if s[1] % 4 == s[2] % 4 == 0]
    + [
        (*s, "matmul_128", d)
        for s in [(257, 44, 260), (600, 20, 300), (130, 17, 129)]
        for d in _MM_VARIANTS
        if "VEC4" not in d or s[1] % 4 == s[2] % 4 == 0
    ],
)
def test_matmul_kernels_at_odd_sizes(rng, M, K, N, name, defines):
    """Both fp32 kernels and matmul_128's variants, whichever library.matmul picks here."""
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    k = library.load(name, defines=defines)
    C = np.full((M, N), np.nan, np.float32)  # every element must be written
    tile = 128 if name == "matmul_128" else 64
    k(A, B, C, M=M, N=N, K=K, groups=(-(-N // tile), -(-M // tile)))
    ref = A.astype(np.float64) @ B.astype(np.float64)
    bound = K * EPS32 / 2 * (np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64))
    assert np.all(np.abs(C - ref) <= bound + 1e-6)


def test_matmul_kernel_choice():
    """128 x 128 tiles once they fill a GPU, and always on a CPU driver; vec4 where it fits."""
    assert library._matmul_choice(64, 64, 64)[0] == "matmul"
    assert library._matmul_choice(64, 64, 64, "cpu")[0] == "matmul_128"
    assert library._matmul_choice(1450, 1420, 37, "integrated") == ("matmul_128", None, (12, 12))
    assert library._matmul_choice(1408, 1420, 36)[1] == {"VEC4": 1}
    assert library._matmul_choice(1408, 1420, 36, "cpu")[1] == {"VEC4": 1}
    assert library._matmul_choice(1450, 1420, 37, "discrete")[1] is None
    assert library._matmul_choice(4000, 3000, 500)[0] == "matmul_128"


@pytest.mark.parametrize(("M", "K", "N"), [(1450, 37, 1420), (1408, 36, 1420), (300, 64, 200)])
def test_matmul_large_and_small_products(rng, M, K, N):
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    C = library.matmul(A, B)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    bound = K * EPS32 / 2 * (np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64))
    assert np.all(np.abs(C - ref) <= bound + 1e-6)


def test_matmul_mixed_signs_and_device_arrays(rng):
    M, K, N = 70, 129, 45
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    C = library.matmul(vknb.asarray(A), vknb.asarray(B))
    ref = A.astype(np.float64) @ B.astype(np.float64)
    # The classical bound for a float32 dot product in any order: K * eps * sum_k |a_k b_k|.
    bound = K * EPS32 / 2 * (np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64))
    assert np.all(np.abs(C - ref) <= bound + 1e-5 * np.abs(ref))
    with pytest.raises(ValueError, match="do not multiply"):
        library.matmul(A, A)


# --- convolve2d and blur ------------------------------------------------------------------------


def _convolve_ref(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """True convolution with clamp-to-edge borders, in float64."""
    kh, kw = w.shape
    cy, cx = kh // 2, kw // 2
    H, W = img.shape[-2:]
    ys = np.arange(H)[:, None]
    xs = np.arange(W)[None, :]
    out = np.zeros(img.shape, np.float64)
    for i in range(kh):
        for j in range(kw):
            sy = np.clip(ys + cy - i, 0, H - 1)
            sx = np.clip(xs + cx - j, 0, W - 1)
            out += float(w[i, j]) * img[..., sy, sx].astype(np.float64)
    return out


@pytest.mark.parametrize("shape", [(1, 1), (17, 23), (64, 64), (3, 20, 30)])
@pytest.mark.parametrize("ksize", [(1, 1), (3, 3), (5, 5), (1, 7), (7, 1), (4, 6), (35, 3)])
def test_convolve2d(rng, shape, ksize):
    # (4, 6) is even-sized; (35, 3) exceeds the staged halo (2 * 16 + 1) and reads directly.
    img = rng.random(shape, dtype=np.float32)
    w = rng.random(ksize, dtype=np.float32)
    got = library.convolve2d(img, w)
    # Positive image and weights: each output is a sum of kh * kw <= 105 positive products,
    # rounded relative to itself; 105 * 2**-24 = 6e-6 < 1e-5 even in the worst case.
    np.testing.assert_allclose(got, _convolve_ref(img, w), rtol=1e-5)


def test_convolve2d_unstaged_path_and_signed_weights(rng):
    img = rng.standard_normal((40, 37)).astype(np.float32)
    w = rng.standard_normal((5, 5)).astype(np.float32)
    ref = _convolve_ref(img, w)
    # Mixed signs: the error bound is absolute, 25 roundings of sums below sum|w| * max|img|.
    atol = 25 * EPS32 * float(np.abs(w).sum() * np.abs(img).max())
    np.testing.assert_allclose(library.convolve2d(vknb.asarray(img), w), ref, rtol=1e-5, atol=atol)
    # MAX_RADIUS=1: a 5 x 5 filter no longer fits the staged tile and takes the direct path.
    k = library.load("convolve2d", constants={"MAX_RADIUS": 1}, local_size=(8, 4))
    out = np.empty_like(img)
    k(img, w, out, width=37, height=40, kw=5, kh=5, grid=(37, 40, 1))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=atol)


@pytest.mark.parametrize(("shape", "sigma"), [((1, 1), 1.0), ((50, 61), 1.5), ((2, 33, 40), 6.0)])
def test_blur(rng, shape, sigma):
    img = rng.random(shape, dtype=np.float32)
    got = library.blur(img, sigma)
    g = library._gaussian1d(sigma, 3.0)
    ref = _convolve_ref(_convolve_ref(img, g.reshape(1, -1)), g.reshape(-1, 1))
    # Two passes of positive sums (<= 37 terms each), intermediate rounded to float32 once.
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert abs(g.sum() - 1) < 1e-6
    flat = np.full((9, 9), 0.25, np.float32)
    np.testing.assert_allclose(library.blur(flat, 2.0), flat, rtol=1e-5)


# --- transpose ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (32, 32), (33, 65), (100, 7), (1, 300), (256, 256)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint32])
def test_transpose(rng, shape, dtype):
    a = rng.integers(-(2**31), 2**31, shape, dtype=np.int64).astype(np.uint32).view(dtype)
    if dtype == np.float32:
        a = rng.standard_normal(shape).astype(np.float32)
    got = library.transpose(a)
    np.testing.assert_array_equal(got, a.T)  # a copy: exact
    assert got.dtype == dtype


# --- mandelbrot ---------------------------------------------------------------------------------


def _mandelbrot_ref(width, height, cx, cy, scale, max_iter):
    """The same float32 expressions as the shader, one rounding per operation."""
    f = np.float32
    px = np.arange(width, dtype=f)[None, :]
    py = np.arange(height, dtype=f)[:, None]
    cr = f(cx) + (px - f(0.5) * f(width) + f(0.5)) * f(scale)
    ci = f(cy) + (f(0.5) * f(height) - py - f(0.5)) * f(scale)
    cr, ci = np.broadcast_arrays(cr, ci)
    zr = np.zeros((height, width), f)
    zi = np.zeros((height, width), f)
    it = np.full((height, width), max_iter, np.uint32)
    active = np.ones((height, width), bool)
    for i in range(max_iter):
        zr2 = zr * zr
        zi2 = zi * zi
        escaped = active & (zr2 + zi2 > f(4.0))
        it[escaped] = i
        active &= ~escaped
        if not active.any():
            break
        zri = zr * zi
        zi = np.where(active, zri + zri + ci, zi)
        zr = np.where(active, zr2 - zi2 + cr, zr)
    return it


@pytest.mark.parametrize(
    ("w", "h", "center", "span", "max_iter"),
    [
        (1, 1, (-0.5, 0.0), 3.0, 50),
        (64, 48, (-0.5, 0.0), 3.0, 100),
        (17, 13, (0.25, 0.1), 0.5, 200),
        (50, 37, (-0.743643887, 0.131825904), 0.01, 400),  # along the boundary: chaotic points
    ],
)
def test_mandelbrot(w, h, center, span, max_iter):
    got = library.mandelbrot(w, h, center=center, span=span, max_iter=max_iter)
    assert got.shape == (h, w) and got.dtype == np.uint32
    np.testing.assert_array_equal(got, _mandelbrot_ref(w, h, *center, span / w, max_iter))


# --- random_uniform -----------------------------------------------------------------------------

_M32 = np.uint64(0xFFFFFFFF)


def _pcg_permute(state: np.ndarray) -> np.ndarray:
    word = (
        ((state >> ((state >> np.uint64(28)) + np.uint64(4))) ^ state) * np.uint64(277803737)
    ) & _M32
    return (word >> np.uint64(22)) ^ word


def _pcg_hash(v: np.ndarray) -> np.ndarray:
    return _pcg_permute((v * np.uint64(747796405) + np.uint64(2891336453)) & _M32)


def _random_uniform_ref(n: int, seed: int) -> np.ndarray:
    """random.glsl's PCG in numpy (uint64 with a 32-bit mask, so nothing overflows)."""
    i = np.arange(n, dtype=np.uint64)
    state = _pcg_hash((i + _pcg_hash(np.array([seed], np.uint64))) & _M32)
    state = (state * np.uint64(747796405) + np.uint64(2891336453)) & _M32
    bits = _pcg_permute(state) >> np.uint64(8)
    return (bits.astype(np.float64) / 2.0**24).astype(np.float32)  # exact: 24-bit integers


@pytest.mark.parametrize("n", [1, 1000, 4097])
@pytest.mark.parametrize("seed", [0, 1, 0xFFFFFFFF])
def test_random_uniform_matches_numpy_pcg(n, seed):
    ref = _random_uniform_ref(n, seed)
    np.testing.assert_array_equal(library.random_uniform(n, seed), ref)
    np.testing.assert_array_equal(library.random_uniform_reference(n, seed), ref)


def test_pcg_reference_known_values():
    # pcg_hash of 0, 1, 2**32-1 by Jarzynski & Olano's reference C code (compiled with gcc).
    got = _pcg_hash(np.array([0, 1, 0xFFFFFFFF], np.uint64))
    np.testing.assert_array_equal(got, [129708002, 2831084092, 3861530882])


def test_random_uniform_statistics_and_determinism():
    n = 200_000
    u = library.random_uniform(n, seed=12345)
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0
    # Mean of n uniforms: sd sqrt(1/12/n) = 6.5e-4; allow 5 sd.  Variance: sd of the sample
    # variance of U(0,1) is sqrt(1/180/n) = 1.7e-4; allow 5 sd.
    assert abs(u.mean(dtype=np.float64) - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(u.var(dtype=np.float64) - 1 / 12) < 5 * np.sqrt(1 / 180 / n)
    counts = np.bincount((u * 16).astype(np.int64), minlength=16)
    assert np.all(np.abs(counts - n / 16) < 5 * np.sqrt(n / 16))
    np.testing.assert_array_equal(u, library.random_uniform(n, seed=12345))
    other = library.random_uniform(n, seed=12346)
    assert np.mean(u == other) < 0.001
    # Independent of the workgroup size and of the number of workgroups (grid-stride).
    k = library.load("random_uniform", local_size=32)
    v = np.empty(5000, np.float32)
    k(v, n=5000, seed=12345, groups=3)
    np.testing.assert_array_equal(v, u[:5000])


# --- sobel --------------------------------------------------------------------------------------


def _sobel_ref(img: np.ndarray) -> np.ndarray:
    p = np.pad(img.astype(np.float64), 1, mode="edge")
    c = slice(1, -1)
    r = slice(2, None)
    lft = slice(None, -2)
    gx = (p[lft, r] + 2 * p[c, r] + p[r, r]) - (p[lft, lft] + 2 * p[c, lft] + p[r, lft])
    gy = (p[r, lft] + 2 * p[r, c] + p[r, r]) - (p[lft, lft] + 2 * p[lft, c] + p[lft, r])
    return np.sqrt(gx * gx + gy * gy)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (37, 53), (256, 256)])
def test_sobel(rng, shape):
    img = rng.random(shape, dtype=np.float32)
    # Differences of sums of 4 values in [0, 1): an absolute rounding error of a few 2**-24;
    # atol 1e-6 covers magnitudes near 0, where gx, gy cancel and rtol alone means nothing.
    np.testing.assert_allclose(library.sobel(img), _sobel_ref(img), rtol=1e-5, atol=1e-6)


def test_sobel_flat_and_step_images():
    np.testing.assert_array_equal(library.sobel(np.full((20, 21), 3.5, np.float32)), 0)
    step = np.zeros((5, 6), np.float32)
    step[:, 3:] = 1
    got = library.sobel(vknb.asarray(step))
    np.testing.assert_array_equal(got, _sobel_ref(step).astype(np.float32))


# --- softmax ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 1000), (7, 3), (64, 300), (5, 1025), (33,)])
def test_softmax(rng, shape):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x[..., 0] += 1000  # exp(1000) overflows: only correct if the row maximum is subtracted
    got = library.softmax(x)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    ref = e / e.sum(axis=-1, keepdims=True)
    # exp is accurate to < 1e-6 relative on lavapipe; the row sum adds < 1e-6.
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-30)


# --- bitonic sort -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 511, 512, 513, 5000, 65_537])
def test_sort(rng, n):
    keys = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    keys[: n // 3] = keys[n // 3 : 2 * (n // 3)]  # duplicates
    if n > 10:
        keys[-3:] = 0xFFFFFFFF  # equal to the padding value
    np.testing.assert_array_equal(library.sort(keys), np.sort(keys))
    idx = library.argsort(vknb.asarray(keys))
    np.testing.assert_array_equal(np.sort(idx), np.arange(n))  # a permutation
    np.testing.assert_array_equal(keys[idx], np.sort(keys))


def test_argsort_unique_keys_matches_numpy(rng):
    keys = rng.permutation(3000).astype(np.uint32) * 7
    np.testing.assert_array_equal(library.argsort(keys), np.argsort(keys))


def test_bitonic_sort_raw_kernel_small_workgroup(rng):
    # local_size 16: BLOCK = 32, so a 1024-key sort runs global steps (mode 1) too.
    k = library.load("bitonic_sort", local_size=16)
    n, block = 1024, 32
    keys = rng.integers(0, 1000, n).astype(np.uint32)
    dk = vknb.asarray(keys)
    k(dk, n=n, k=0, j=0, mode=0, groups=n // block)
    kk = 2 * block
    while kk <= n:
        jj = kk // 2
        while jj >= block:
            k(dk, n=n, k=kk, j=jj, mode=1, groups=n // block)
            jj //= 2
        k(dk, n=n, k=kk, j=0, mode=2, groups=n // block)
        kk *= 2
    np.testing.assert_array_equal(dk.numpy(), np.sort(keys))


# --- helpers: lifetimes and edge cases ---------------------------------------------------------


def test_helpers_reject_wrong_device_dtypes_and_take_empty_inputs():
    with pytest.raises(TypeError, match="float32"):
        library.saxpy(1.0, vknb.asarray(np.ones(3, np.float64)), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="astype"):
        library.reduce_sum(np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="seed"):
        library.random_uniform(3, seed=-1)
    assert library.reduce_sum(np.zeros(0, np.float32)) == 0
    assert library.scan(np.zeros(0, np.float32)).shape == (0,)
    assert library.matmul(np.zeros((2, 0)), np.zeros((0, 3))).shape == (2, 3)
    assert library.sort(np.zeros(0, np.uint32)).shape == (0,)
    # float64 host input is computed in float32.
    np.testing.assert_allclose(library.saxpy(2, np.arange(3.0), np.ones(3)), [1, 3, 5])


def test_multi_pass_helpers_free_their_device_buffers(dev, rng):
    x = rng.random(70_000, dtype=np.float32)
    img = rng.random((40, 50), dtype=np.float32)
    keys = rng.integers(0, 1000, 3000).astype(np.uint32)

    def run():
        library.scan(x)
        library.reduce_sum(x)
        library.blur(img, 1.0)
        library.argsort(keys)

    run()  # first call: compiles, and kernels keep per-binding scratch buffers for reuse
    gc.collect()
    dev.synchronize()
    before = dev.memory_stats()
    for _ in range(3):
        run()
    gc.collect()
    dev.synchronize()
    after = dev.memory_stats()
    assert (after.used, after.buffers) == (before.used, before.buffers)
