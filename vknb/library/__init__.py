"""Ready-made compute kernels: the repository's ``shaders/*.comp``, and numpy-friendly helpers.

Each shader in ``shaders/`` starts with a comment that documents its bindings, push constants,
specialization constants and dispatch.  :func:`load` compiles one into a :class:`vknb.Kernel`
(cached per name, options and device); the helpers below run the usual algorithms on top of
them and return numpy arrays.  They take numpy arrays (or anything ``np.asarray`` takes) or
device :class:`vknb.Array` objects; intermediate buffers of multi-pass algorithms stay on the
device.

Dtypes: float inputs are computed in float32 (host arrays of another float dtype are converted;
a :class:`vknb.Array` must already hold float32).  Where integers are supported (``reduce_sum``,
``scan``, ``transpose``: int32 and uint32; ``histogram``: uint32; the sorts: uint32, int32 and
float32 keys) they are used as is and integer sums wrap around modulo 2**32.

Images: ``emboss``, ``edge_detect``, ``sharpen`` and ``filter3x3`` run on ``rgba8`` storage
images (uint8 ``(H, W, 4)`` or ``(H, W, 3)`` arrays); ``resize``, ``warp_affine``, ``rotate`` and
``blur_image`` sample through ``sampler2D`` bindings (float32 or uint8 ``(H, W)`` or ``(H, W, C)``
arrays, C up to 4); each also takes a :class:`vknb.Image` and returns numpy arrays of the
input's dtype and channels.

``vknb/__init__.py`` does not import this module: use ``import vknb.library`` or
``from vknb import library``.

Example
-------
>>> import numpy as np
>>> from vknb import library
>>> "matmul" in library.list_shaders()
True
>>> x = np.arange(5, dtype=np.float32)
>>> library.saxpy(2.0, x, np.ones(5, np.float32))
array([1., 3., 5., 7., 9.], dtype=float32)
>>> float(library.reduce_sum(x))
10.0
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np

from ..compute.kernel import Kernel
from ..compute.kernel import compile as compile_kernel
from ..core.array import Array, asarray, empty
from ..core.image import Image, Sampler, widen_rgb
from ..core.session import device as session_device
from . import _radix, _scan_reduce

__all__ = [
    "BORDER_COLORS",
    "MAP_OPS",
    "RADIX_MIN_KEYS",
    "SAMPLE_FILTERS",
    "argsort",
    "blur",
    "blur_image",
    "clear_kernel_cache",
    "convolve2d",
    "coopmat_shape",
    "edge_detect",
    "elementwise",
    "emboss",
    "filter3x3",
    "gaussian_taps",
    "histogram",
    "list_shaders",
    "load",
    "mandelbrot",
    "matmul",
    "matmul_fp16",
    "random_uniform",
    "random_uniform_reference",
    "reduce_sum",
    "resize",
    "rotate",
    "rotation_matrix",
    "saxpy",
    "scan",
    "shader_path",
    "sharpen",
    "sobel",
    "softmax",
    "sort",
    "sort_pairs",
    "source",
    "transpose",
    "tuning",
    "warp_affine",
]

#: What the helpers take: a numpy array (or anything ``np.asarray`` takes) or a device Array.
ArrayLike = Union[np.ndarray, "Array", Sequence[Any]]

#: Operations of ``map.comp`` (its specialization constant ``OP``), by name.
MAP_OPS: dict[str, int] = {
    "add": 0,
    "sub": 1,
    "mul": 2,
    "div": 3,
    "max": 4,
    "min": 5,
    "pow": 6,
    "neg": 10,
    "abs": 11,
    "exp": 12,
    "log": 13,
    "sqrt": 14,
    "sin": 15,
    "cos": 16,
    "tanh": 17,
    "relu": 18,
    "sigmoid": 19,
    "square": 20,
    "reciprocal": 21,
    "scale": 30,
    "add_scalar": 31,
    "axpy": 32,
    "pow_scalar": 33,
}
_BINARY_OPS = frozenset(v for v in MAP_OPS.values() if v <= 6 or v == 32)

_T_DEFINE = {np.dtype(np.float32): None, np.dtype(np.int32): "int", np.dtype(np.uint32): "uint"}

_cache: dict[tuple[Any, ...], Kernel] = {}
_cache_lock = threading.Lock()


# --- the shader files ---------------------------------------------------------------------------


def _shader_dir() -> Path:
    from .. import config

    d = config.shader_dir()
    if not d.is_dir():
        raise FileNotFoundError(
            f"the vknb shader library was not found at {d}: VKNB_SHADERS names a directory "
            "that does not exist, or the package is incomplete (reinstall vknb)"
        )
    return d


def list_shaders() -> list[str]:
    """Names of the library's kernels (``shaders/<name>.comp``), sorted.

    Example
    -------
    >>> from vknb import library
    >>> library.list_shaders()[:2]
    ['bitonic_sort', 'blur_image']
    """
    return sorted(p.stem for p in _shader_dir().glob("*.comp"))


def shader_path(name: str) -> Path:
    """The path of ``shaders/<name>.comp``; ``FileNotFoundError`` naming the choices if absent.

    Example
    -------
    >>> from vknb import library
    >>> library.shader_path("saxpy").name
    'saxpy.comp'
    """
    path = _shader_dir() / f"{name}.comp"
    if not path.is_file():
        raise FileNotFoundError(
            f"no shader {name!r} in {_shader_dir()}; the library has: {', '.join(list_shaders())}"
        )
    return path


def source(name: str) -> str:
    """The GLSL source of a library kernel; its header comment documents the interface.

    Example
    -------
    >>> from vknb import library
    >>> print(library.source("saxpy").splitlines()[0])
    // saxpy.comp -- y = a * x + y on float32 vectors (BLAS saxpy), in place.
    """
    return shader_path(name).read_text()


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return tuple(sorted((str(k), _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v


def load(name: str, *, cache: bool = True, **compile_kwargs: Any) -> Kernel:
    """Compile a library kernel: ``vknb.compile(source(name), name=name, **compile_kwargs)``.

    Kernels are cached per (name, options, device): loading the same one again is free.

    Parameters
    ----------
    name : str
        One of :func:`list_shaders`.
    cache : bool
        Reuse a kernel compiled earlier with the same options on the same device (default), or
        compile a fresh one that is not cached.
    **compile_kwargs
        Passed to :func:`vknb.compile`: ``defines``, ``constants``, ``local_size``, ``device``,
        ``optimize``, ...

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> k = library.load("saxpy", local_size=64)
    >>> k.local_size
    (64, 1, 1)
    >>> y = np.ones(3, np.float32)
    >>> _ = k(np.arange(3, dtype=np.float32), y, a=2.0, n=3, grid=3); y
    array([1., 3., 5.], dtype=float32)
    """

    from .. import errors as E

    src = source(name)
    dev = compile_kwargs.get("device") or session_device()
    missing = [r for r in _requirements(src) if r not in dev.extensions]
    if missing:
        raise E.NotAvailable(
            f"library kernel {name!r} needs {', '.join(missing)}, which {dev.label} does not "
            f"have (see vknb.devices()[{dev.index}].extensions)"
        )
    if not cache:
        return compile_kernel(src, name=name, **compile_kwargs)
    key = (name, _freeze(compile_kwargs), id(dev))
    with _cache_lock:
        k = _cache.get(key)
        if k is not None:
            try:
                if k.device is dev:
                    return k
            except E.VulkanError:
                pass
            del _cache[key]
        k = compile_kernel(src, name=name, **compile_kwargs)
        _cache[key] = k
        return k


def _requirements(src: str) -> list[str]:
    """Device extensions a library kernel needs: its header's ``// Requires: A, B`` line."""
    for line in src.splitlines():
        if not line.startswith("//"):
            break
        if line.startswith("// Requires:"):
            return [r.strip() for r in line.split(":", 1)[1].split(",") if r.strip()]
    return []


def clear_kernel_cache() -> None:
    """Close and forget every kernel :func:`load` has cached.

    Example
    -------
    >>> from vknb import library
    >>> library.clear_kernel_cache()
    """
    with _cache_lock:
        kernels = list(_cache.values())
        _cache.clear()
    for k in kernels:
        k.close()


# --- argument helpers ---------------------------------------------------------------------------


def _is_array(x: Any) -> bool:
    from ..core.array import Array

    return isinstance(x, Array)


def _float_input(x: Any, what: str) -> Any:
    """A float32 Array as is, or a C-contiguous float32 numpy copy/view of a host input."""
    if _is_array(x):
        if x.dtype != np.float32:
            raise TypeError(f"{what}: a vknb.Array of dtype float32 is needed, got {x.dtype}")
        return x
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected numbers, got an array of dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _typed_input(x: Any, what: str, allowed: Sequence[np.dtype]) -> Any:
    """Keep int32/uint32 (when allowed) or float32; convert other floats to float32."""
    if _is_array(x):
        if x.dtype not in allowed:
            raise TypeError(
                f"{what}: a vknb.Array of dtype {' or '.join(map(str, allowed))} is needed, got "
                f"{x.dtype}"
            )
        return x
    a = np.asarray(x)
    if a.dtype in allowed:
        return np.ascontiguousarray(a)
    if a.dtype.kind == "f":
        return np.ascontiguousarray(a, dtype=np.float32)
    raise TypeError(
        f"{what}: arrays of dtype {a.dtype} are not supported; pass "
        f"{' or '.join(map(str, allowed))} (e.g. x.astype(np.float32))"
    )


def _uint_input(x: Any, what: str) -> Any:
    """uint32 keys: a uint32 Array as is; host integers in [0, 2**32) converted to uint32."""
    if _is_array(x):
        if x.dtype != np.uint32:
            raise TypeError(f"{what}: a vknb.Array of dtype uint32 is needed, got {x.dtype}")
        return x
    a = np.asarray(x)
    if a.dtype == np.uint32:
        return np.ascontiguousarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected non-negative integers, got an array of dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
        raise ValueError(f"{what}: values must lie in [0, 2**32)")
    return np.ascontiguousarray(a, dtype=np.uint32)


def _defines(dtype: np.dtype) -> dict[str, Any]:
    t = _T_DEFINE[np.dtype(dtype)]
    return {} if t is None else {"defines": {"T": t}}


def _close(arrays: Sequence[Array]) -> None:
    """Free temporary device Arrays now (every dispatch here has completed and was waited for).

    Returning the memory at once, not whenever the collector runs, matters for large inputs; it
    also keeps memory from being pinned by a kernel's repeated-call cache, which (as of this
    writing) holds the buffers of the Arrays it saw.
    """
    for a in arrays:
        a.close()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _max_groups_x(k: Kernel) -> int:
    return int(k.device.info.limits["max_workgroup_count"][0])


def _groups_1d(k: Kernel, n: int, per_invocation: int = 1, cap: int | None = None) -> int:
    """Workgroups for a grid-stride kernel over n elements."""
    g = _ceil_div(n, k.local_size[0] * per_invocation)
    return max(1, min(g, _max_groups_x(k), cap if cap is not None else g))


def _shape_of(x: Any) -> tuple[int, ...]:
    return tuple(x.shape)


# --- helpers ------------------------------------------------------------------------------------


def saxpy(a: float, x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """``a * x + y`` in float32 (``saxpy.comp``).

    A numpy ``y`` is left unchanged; a :class:`vknb.Array` ``y`` is updated in place on the
    device (as BLAS does), and its new contents are returned too.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.saxpy(3.0, np.ones(4, np.float32), np.arange(4, dtype=np.float32))
    array([3., 4., 5., 6.], dtype=float32)
    """
    xv = _float_input(x, "saxpy: x")
    n = int(np.prod(_shape_of(xv)))
    out: Any = y
    if _is_array(out):
        if out.dtype != np.float32:
            raise TypeError(f"saxpy: y must be a float32 vknb.Array, got {out.dtype}")
    else:
        out = np.array(y, dtype=np.float32, copy=True, order="C")
    if int(np.prod(_shape_of(out))) != n:
        raise ValueError(f"saxpy: x has {n} elements, y has {int(np.prod(_shape_of(out)))}")
    if n == 0:
        return out.numpy() if _is_array(out) else out
    k = load("saxpy")
    k(xv, out, a=float(a), n=n, groups=_groups_1d(k, n))
    return out.numpy() if _is_array(out) else out


def elementwise(
    op: str | int, a: ArrayLike, b: ArrayLike | None = None, *, alpha: float = 0.0
) -> np.ndarray:
    """``f(a, b, alpha)`` elementwise in float32 (``map.comp``); see :data:`MAP_OPS`.

    Parameters
    ----------
    op : str or int
        An operation name (``"add"``, ``"exp"``, ``"scale"``, ...) or its number.
    a, b : array_like or Array
        The operands; ``b`` only for binary ops and ``"axpy"``, of a's size.
    alpha : float
        The scalar of ``"scale"``, ``"add_scalar"``, ``"axpy"``, ``"pow_scalar"``.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.elementwise("mul", np.arange(3, dtype=np.float32), np.full(3, 2, np.float32))
    array([0., 2., 4.], dtype=float32)
    >>> library.elementwise("add_scalar", np.zeros(2, np.float32), alpha=1.5)
    array([1.5, 1.5], dtype=float32)
    """
    code = MAP_OPS.get(op) if isinstance(op, str) else int(op)
    if code is None or code not in MAP_OPS.values():
        raise ValueError(f"elementwise: unknown op {op!r}; known: {', '.join(MAP_OPS)}")
    av = _float_input(a, "elementwise: a")
    shape = _shape_of(av)
    n = int(np.prod(shape))
    if code in _BINARY_OPS:
        if b is None:
            raise TypeError(f"elementwise: op {op!r} takes two operands; pass b")
        bv = _float_input(b, "elementwise: b")
        nb = int(np.prod(_shape_of(bv)))
        if nb != n:
            raise ValueError(f"elementwise: a has {n} elements, b has {nb}")
    else:
        bv = av  # never read by unary and scalar ops
    out = np.empty(shape, np.float32)
    if n == 0:
        return out
    k = load("map", constants={"OP": code})
    k(av, bv, out, n=n, alpha=float(alpha), groups=_groups_1d(k, n))
    return out


def reduce_sum(x: ArrayLike) -> np.generic:
    """Sum of all elements, in one dispatch (``reduce_sum.comp``).

    float inputs are summed in float32 (with a tree-shaped order, far more accurate than a
    serial float32 loop, and the same result on every run), int32/uint32 inputs in their own
    type (wrapping around).  Workgroup size, loads per step and workgroup count are chosen per
    device (:func:`tuning`).

    Returns
    -------
    numpy scalar (float32, int32 or uint32)

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> int(library.reduce_sum(np.arange(1000, dtype=np.uint32)))
    499500
    """

    cur = _typed_input(x, "reduce_sum: x", list(_T_DEFINE))
    dtype = np.dtype(cur.dtype)
    n = int(np.prod(_shape_of(cur)))
    if n == 0:
        return dtype.type(0)
    return _scan_reduce.reduce_sum(load, cur, n, dtype, session_device())


def _scan_device(k: Kernel, x: Any, n: int, exclusive: bool, dtype: np.dtype) -> Array:
    """Multi-pass scan of x (n elements) with a ``scan.comp`` kernel into a new device Array,
    which the caller closes."""
    return _scan_reduce.scan_blocks(k, x, n, exclusive, dtype)


def scan(x: ArrayLike, exclusive: bool = False) -> np.ndarray:
    """Prefix sum of the flattened input, in one pass (``scan_lookback.comp``).

    Inclusive (``np.cumsum``) by default; ``exclusive=True`` shifts it right by one with a
    leading zero.  float inputs are scanned in float32, int32/uint32 in their type (wrapping).
    Each element is read once and written once (a chained scan with decoupled look-back);
    devices without 64-bit atomics run the multi-pass ``scan.comp`` instead (see
    :func:`tuning`).  float32 prefixes chain the tiles' sums, so their rounding error grows
    with ``n / tile`` (as in CUB and ``cupy.cumsum``), still far below a serial float32 loop's.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.scan(np.array([1, 2, 3, 4], np.int32))
    array([ 1,  3,  6, 10], dtype=int32)
    >>> library.scan(np.array([1, 2, 3, 4], np.int32), exclusive=True)
    array([0, 1, 3, 6], dtype=int32)
    """
    cur = _typed_input(x, "scan: x", list(_T_DEFINE))
    dtype = np.dtype(cur.dtype)
    n = int(np.prod(_shape_of(cur)))
    if n == 0:
        return np.zeros(0, dtype)
    y = _scan_reduce.scan(load, cur, n, bool(exclusive), dtype, session_device())
    try:
        return y.numpy()
    finally:
        y.close()


def tuning(name: str, device: Any = None) -> dict[str, Any]:
    """The launch shape that ``reduce_sum`` or ``scan`` uses on a device (default: the session
    device), chosen once from its properties and recorded.

    Keys: ``kernel`` (the shader that runs: ``reduce_sum``, ``scan_lookback`` for the single
    pass, ``scan`` for the multi-pass fallback), ``local_size``, ``items`` (elements per
    invocation), ``tile`` (their product), ``subgroups`` (subgroup arithmetic, else shared
    memory), ``single_pass``, ``max_groups`` (the dispatch cap) and ``reason``.

    Example
    -------
    >>> from vknb import library
    >>> t = library.tuning("scan")
    >>> t["tile"] == t["local_size"] * t["items"]
    True
    >>> library.tuning("scan")["kernel"]              # on an H100, and on lavapipe
    'scan_lookback'
    """
    if name not in _scan_reduce.OPS:
        raise ValueError(f"tuning: no tuning for {name!r}; known: {', '.join(_scan_reduce.OPS)}")
    return _scan_reduce.tuning(name, device or session_device()).as_dict()


def histogram(x: ArrayLike, bins: int) -> np.ndarray:
    """Counts of the values ``0 .. bins-1`` in ``x`` (``histogram.comp``); larger values are
    ignored.

    Equal to ``np.bincount(x[x < bins], minlength=bins)``, as uint32.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.histogram(np.array([0, 1, 1, 3, 7], np.uint32), 4)
    array([1, 2, 0, 1], dtype=uint32)
    """
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"histogram: bins must be >= 1, got {bins}")
    xv = _uint_input(x, "histogram: x")
    n = int(np.prod(_shape_of(xv)))
    counts = np.zeros(bins, np.uint32)
    if n == 0:
        return counts
    k = load("histogram")
    k(xv, counts, n=n, num_bins=bins, groups=_histogram_groups(k, n))
    return counts


# Workgroups of histogram.comp: each flushes its private histogram with up to num_bins global
# atomics, so as few as fill the device; each invocation counts at least 8 values (two uvec4).
# A GPU wants several workgroups per multiprocessor to keep enough loads in flight: on the H100
# (132 multiprocessors) 512 read 2^26 values at 102 % of a compute copy's bandwidth, 256 at
# 88 %, 1024 at 93 %, 4096 at 85 % (benchmarks/probes/histscan.py).  A CPU driver runs a few
# at a time; the integrated cap is reasoned, not measured.
_HISTOGRAM_GROUPS = {"discrete": 512, "integrated": 256, "cpu": 64}


def _histogram_groups(k: Kernel, n: int) -> int:
    """Workgroups that :func:`histogram` dispatches for n values with kernel k on its device.

    Example
    -------
    >>> from vknb import library
    >>> library._histogram_groups(library.load("histogram"), 1000)
    1
    """
    cap = _HISTOGRAM_GROUPS.get(k.device.info.type, 256)
    return _groups_1d(k, n, per_invocation=8, cap=cap)


# On a GPU the 128 x 128 kernel wins once its tiles fill the GPU; below that the 64 x 64 one
# spreads the work over more workgroups.  A CPU driver runs a few workgroups at a time and the
# 128 x 128 kernel wins at every size (lavapipe: 4x at 100³, 5x at 1024³).  docs/performance.md
# (fp32 matmul), benchmarks/probes/matmul32.py.
_MATMUL_128_MIN_TILES = 128


def _matmul_choice(
    M: int, N: int, K: int, device_type: str = "discrete"
) -> tuple[str, dict[str, int] | None, tuple[int, int]]:
    """(shader, defines, groups) that :func:`matmul` dispatches for an M x K by K x N product
    on a device of this type (``DeviceInfo.type``)."""
    tiles = _ceil_div(M, 128) * _ceil_div(N, 128)
    if device_type == "cpu" or tiles >= _MATMUL_128_MIN_TILES:
        defines = {"VEC4": 1} if K % 4 == 0 and N % 4 == 0 else None
        return "matmul_128", defines, (_ceil_div(N, 128), _ceil_div(M, 128))
    return "matmul", None, (_ceil_div(N, 64), _ceil_div(M, 64))


def matmul(A: ArrayLike, B: ArrayLike) -> np.ndarray:
    """``A @ B`` for 2-D float32 matrices.

    Large products, and every product on a CPU driver, run ``matmul_128.comp`` (128 x 128
    tiles, 8 x 8 per invocation, vec4 access where K and N are multiples of 4); smaller ones on
    a GPU ``matmul.comp`` (64 x 64 tiles, 4 x 4 per invocation), which spreads them over more
    workgroups.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> A = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> library.matmul(A, np.ones((3, 2), np.float32))
    array([[ 3.,  3.],
           [12., 12.]], dtype=float32)
    """
    av = _float_input(A, "matmul: A")
    bv = _float_input(B, "matmul: B")
    sa, sb = _shape_of(av), _shape_of(bv)
    if len(sa) != 2 or len(sb) != 2 or sa[1] != sb[0]:
        raise ValueError(f"matmul: shapes {sa} and {sb} do not multiply (need (M, K) and (K, N))")
    (M, K), N = sa, sb[1]
    C = np.zeros((M, N), np.float32)
    if M == 0 or N == 0 or K == 0:
        return C
    name, defines, groups = _matmul_choice(M, N, K, session_device().info.type)
    k = load(name, defines=defines)
    k(av, bv, C, M=M, N=N, K=K, groups=groups)
    return C


def coopmat_shape(device: Any = None) -> tuple[int, int, int]:
    """The cooperative-matrix shape ``(M, N, K)`` that :func:`matmul_fp16` uses on a device.

    A float16 x float16 + float32 shape of subgroup scope that tiles the kernel's 64 x 64
    subgroup block; ``NotAvailable`` where the device has none.

    Example
    -------
    >>> from vknb import library
    >>> library.coopmat_shape()          # on an H100
    (16, 8, 16)
    """

    from .. import errors as E

    dev = device or session_device()
    fits = [
        (s["M"], s["N"], s["K"])
        for s in dev.cooperative_matrix_shapes()
        if (s["A"], s["B"], s["C"], s["D"], s["scope"])
        == ("float16", "float16", "float32", "float32", "subgroup")
        and 64 % s["M"] == 0
        and 64 % s["N"] == 0
        and 32 % s["K"] == 0
    ]
    if not fits:
        raise E.NotAvailable(
            f"{dev.label} has no float16 cooperative-matrix shape for matmul_fp16 "
            f"(cooperative-matrix extensions enabled: {list(dev.cooperative_matrix) or 'none'})"
        )
    # The fastest shapes first (docs/performance.md: tile and shape choices).
    for best in ((16, 8, 16), (16, 8, 8)):
        if best in fits:
            return best
    return max(fits, key=lambda s: s[0] * s[1] * s[2])


def matmul_fp16(A: ArrayLike, B: ArrayLike) -> np.ndarray:
    """``A @ B`` for 2-D float16 matrices on tensor cores; float32 sums, a float16 result.

    Runs ``matmul_fp16_coopmat.comp`` (cooperative matrices: ``VK_NV_cooperative_matrix``);
    sizes that are not multiples of its tiles (128 for M, 256 for N, 32 for K) are padded with
    zeros.
    ``NotAvailable`` on devices without cooperative matrices.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> A = np.ones((2, 3), np.float16)
    >>> library.matmul_fp16(A, np.ones((3, 2), np.float16))   # on a GPU with tensor cores
    array([[3., 3.],
           [3., 3.]], dtype=float16)
    """
    a, b = np.asarray(A), np.asarray(B)
    for what, x in (("A", a), ("B", b)):
        if x.dtype != np.float16:
            raise TypeError(
                f"matmul_fp16: {what} must be float16, got {x.dtype}; nothing is converted "
                "silently (use x.astype(np.float16))"
            )
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"matmul_fp16: shapes {a.shape} and {b.shape} do not multiply (need (M, K) and (K, N))"
        )
    (M, K), N = a.shape, b.shape[1]
    if M == 0 or N == 0 or K == 0:
        return np.zeros((M, N), np.float16)
    mm, nn, kk = coopmat_shape()
    k = load("matmul_fp16_coopmat", defines={"MMA_M": mm, "MMA_N": nn, "MMA_K": kk})
    Mp, Np, Kp = -(-M // 128) * 128, -(-N // 256) * 256, -(-K // 32) * 32
    if (Mp, Kp) != (M, K):
        a = np.pad(a, ((0, Mp - M), (0, Kp - K)))
    if (Kp, Np) != (K, N):
        b = np.pad(b, ((0, Kp - K), (0, Np - N)))
    C = np.empty((Mp, Np), np.float16)
    k(
        np.ascontiguousarray(a).view(np.uint32),  # 8 float16 per uvec4 word of the kernel
        np.ascontiguousarray(b).view(np.uint32),
        C.view(np.uint32),
        M=Mp,
        N=Np,
        K=Kp,
        groups=(Np // 256, Mp // 128),
    )
    return C[:M, :N] if (Mp, Np) != (M, N) else C


def _image_input(image: Any, what: str) -> tuple[Any, int, int, int]:
    """float32 image of shape (H, W) or (planes, H, W) -> (data, planes, H, W)."""
    iv = _float_input(image, what)
    shape = _shape_of(iv)
    if len(shape) == 2:
        return iv, 1, shape[0], shape[1]
    if len(shape) == 3:
        return iv, shape[0], shape[1], shape[2]
    raise ValueError(f"{what}: expected an image of shape (H, W) or (planes, H, W), got {shape}")


def convolve2d(image: ArrayLike, kernel: ArrayLike) -> np.ndarray:
    """True 2-D convolution with clamp-to-edge borders (``convolve2d.comp``).

    ``out[y, x] = sum_ij kernel[i, j] * image[y + kh//2 - i, x + kw//2 - j]``, indices clamped
    into the image: ``scipy.ndimage.convolve(image, kernel, mode="nearest")`` for odd sizes.
    ``image`` is (H, W) or a stack (planes, H, W), each plane filtered on its own.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> img = np.zeros((3, 3), np.float32); img[1, 1] = 1
    >>> library.convolve2d(img, np.array([[0, 1, 2]], np.float32))
    array([[0., 0., 0.],
           [0., 1., 2.],
           [0., 0., 0.]], dtype=float32)
    """
    iv, planes, H, W = _image_input(image, "convolve2d: image")
    w = np.ascontiguousarray(np.asarray(kernel), dtype=np.float32)
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"convolve2d: kernel must be a non-empty 2-D array, got shape {w.shape}")
    out = np.empty(_shape_of(iv), np.float32)
    if out.size == 0:
        return out
    k = load("convolve2d")
    k(iv, w, out, width=W, height=H, kw=w.shape[1], kh=w.shape[0], grid=(W, H, planes))
    return out


def _gaussian1d(sigma: float, truncate: float) -> np.ndarray:
    radius = max(1, math.ceil(truncate * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def blur(image: ArrayLike, sigma: float, *, truncate: float = 3.0) -> np.ndarray:
    """Gaussian blur, clamp-to-edge: two passes of ``convolve2d.comp`` (1 x K, then K x 1).

    The filter has radius ``ceil(truncate * sigma)`` and sums to one; the intermediate image
    stays on the device.  ``image`` is (H, W) or (planes, H, W).

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> flat = np.full((8, 8), 0.5, np.float32)
    >>> bool(np.allclose(library.blur(flat, 1.5), 0.5))
    True
    """

    if not sigma > 0:
        raise ValueError(f"blur: sigma must be > 0, got {sigma}")
    iv, planes, H, W = _image_input(image, "blur: image")
    shape = _shape_of(iv)
    out = np.empty(shape, np.float32)
    if out.size == 0:
        return out
    g = _gaussian1d(float(sigma), float(truncate))
    k = load("convolve2d")
    with empty(shape, np.float32) as tmp:
        k(iv, g.reshape(1, -1), tmp, width=W, height=H, kw=g.size, kh=1, grid=(W, H, planes))
        k(tmp, g.reshape(-1, 1), out, width=W, height=H, kw=1, kh=g.size, grid=(W, H, planes))
    return out


def transpose(A: ArrayLike) -> np.ndarray:
    """``A.T`` of a 2-D float32, int32 or uint32 matrix (``transpose.comp``, shared tiles).

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.transpose(np.arange(6, dtype=np.int32).reshape(2, 3))
    array([[0, 3],
           [1, 4],
           [2, 5]], dtype=int32)
    """
    av = _typed_input(A, "transpose: A", list(_T_DEFINE))
    shape = _shape_of(av)
    if len(shape) != 2:
        raise ValueError(f"transpose: expected a 2-D matrix, got shape {shape}")
    rows, cols = shape
    out = np.empty((cols, rows), av.dtype)
    if out.size == 0:
        return out
    k = load("transpose", **_defines(np.dtype(av.dtype)))
    k(av, out, rows=rows, cols=cols, groups=(_ceil_div(cols, 32), _ceil_div(rows, 32)))
    return out


def mandelbrot(
    width: int,
    height: int,
    *,
    center: tuple[float, float] = (-0.5, 0.0),
    span: float = 3.0,
    max_iter: int = 256,
) -> np.ndarray:
    """Escape-time iteration counts of the Mandelbrot set (``mandelbrot.comp``).

    Parameters
    ----------
    width, height : int
        Image size in pixels; the result has shape (height, width), row 0 at the top.
    center : (float, float)
        The complex number at the image centre.
    span : float
        Width of the window in the complex plane (``scale = span / width`` per pixel).
    max_iter : int
        Iteration limit: points that never escape get ``max_iter``.

    Example
    -------
    >>> from vknb import library
    >>> it = library.mandelbrot(64, 48, max_iter=100)
    >>> it.shape, it.dtype, int(it.max())
    ((48, 64), dtype('uint32'), 100)
    """
    width, height, max_iter = int(width), int(height), int(max_iter)
    if width < 1 or height < 1:
        raise ValueError(f"mandelbrot: width and height must be >= 1, got {width} x {height}")
    out = np.empty((height, width), np.uint32)
    k = load("mandelbrot")
    k(
        out,
        width=width,
        height=height,
        center_x=float(center[0]),
        center_y=float(center[1]),
        scale=float(span) / width,
        max_iter=max_iter,
        grid=(width, height),
    )
    return out


def random_uniform(n: int, seed: int = 0) -> np.ndarray:
    """``n`` uniform float32 numbers in [0, 1) from PCG (``random_uniform.comp``).

    Element i depends only on (i, seed): the same seed gives the same numbers on any device.

    Example
    -------
    >>> from vknb import library
    >>> u = library.random_uniform(1000, seed=1)
    >>> bool(((u >= 0) & (u < 1)).all()), bool((u == library.random_uniform(1000, seed=1)).all())
    (True, True)
    """
    n = int(n)
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"random_uniform: seed must lie in [0, 2**32), got {seed}")
    out = np.empty(n, np.float32)
    if n == 0:
        return out
    k = load("random_uniform")
    k(out, n=n, seed=seed, groups=_groups_1d(k, n))
    return out


_PCG_MUL = np.uint64(747796405)
_PCG_INC = np.uint64(2891336453)
_M32 = np.uint64(0xFFFFFFFF)


def _pcg_permute(state: np.ndarray) -> np.ndarray:
    word = (
        ((state >> ((state >> np.uint64(28)) + np.uint64(4))) ^ state) * np.uint64(277803737)
    ) & _M32
    return (word >> np.uint64(22)) ^ word


def _pcg_hash(v: np.ndarray) -> np.ndarray:
    return _pcg_permute((v * _PCG_MUL + _PCG_INC) & _M32)


def random_uniform_reference(n: int, seed: int = 0) -> np.ndarray:
    """What :func:`random_uniform` returns, computed by numpy on the host (bit for bit).

    ``shaders/random.glsl``'s PCG in numpy: element i is ``rng_uniform(state)`` with
    ``state = hash2(uvec2(i, seed))``.  Use it to check a device, or to draw the same numbers
    without one.

    Example
    -------
    >>> from vknb import library
    >>> bool((library.random_uniform_reference(100, 7) == library.random_uniform(100, 7)).all())
    True
    """
    n, seed = int(n), int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"random_uniform_reference: seed must lie in [0, 2**32), got {seed}")
    # uint64 with a 32-bit mask after each multiply-add: uint32 wrap-around without overflow.
    i = np.arange(n, dtype=np.uint64)
    state = _pcg_hash((i + _pcg_hash(np.array([seed], np.uint64))) & _M32)
    state = (state * _PCG_MUL + _PCG_INC) & _M32  # rng_next
    bits = _pcg_permute(state) >> np.uint64(8)  # 24 high bits
    return (bits.astype(np.float64) / 2.0**24).astype(np.float32)  # k / 2^24, exact


def sobel(image: ArrayLike) -> np.ndarray:
    """Sobel gradient magnitude ``sqrt(gx**2 + gy**2)`` of a 2-D float32 image, clamp-to-edge
    (``sobel.comp``).

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> step = np.zeros((4, 4), np.float32); step[:, 2:] = 1
    >>> library.sobel(step)[0]
    array([0., 4., 4., 0.], dtype=float32)
    """
    iv = _float_input(image, "sobel: image")
    shape = _shape_of(iv)
    if len(shape) != 2:
        raise ValueError(f"sobel: expected a 2-D image, got shape {shape}")
    H, W = shape
    out = np.empty(shape, np.float32)
    if out.size == 0:
        return out
    k = load("sobel")
    k(iv, out, width=W, height=H, grid=(W, H))
    return out


def softmax(x: ArrayLike) -> np.ndarray:
    """Row-wise softmax of a 2-D float32 matrix (a 1-D vector is one row) (``softmax.comp``).

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> p = library.softmax(np.log(np.array([[1, 3]], np.float32)))
    >>> bool(np.allclose(p, [[0.25, 0.75]]))
    True
    """
    xv = _float_input(x, "softmax: x")
    shape = _shape_of(xv)
    if len(shape) not in (1, 2):
        raise ValueError(f"softmax: expected a 1-D or 2-D array, got shape {shape}")
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    out = np.empty(shape, np.float32)
    if out.size == 0:
        return out
    k = load("softmax")
    if rows > _max_groups_x(k):
        raise ValueError(f"softmax: {rows} rows exceed the device's {_max_groups_x(k)} workgroups")
    k(xv, out, rows=rows, cols=cols, groups=rows)
    return out


#: Sorts of at least this many keys run the radix sort (``vknb/library/_radix.py``: four passes
#: of three dispatches, stable); smaller ones the bitonic network of ``bitonic_sort.comp``
#: (a few dispatches, ties broken by index so that it is stable too).  On lavapipe the bitonic
#: sort wins up to 2048 keys (0.6-2.1 ms against 2.8), and loses from 2049 on, where it pads to
#: 4096 (3.9 ms against 3.0; docs/performance.md).  Measured on lavapipe: re-measure on a GPU.
RADIX_MIN_KEYS = 2049

_SORT_DTYPES = (np.dtype(np.uint32), np.dtype(np.int32), np.dtype(np.float32))


def _sort_input(x: Any, what: str) -> Any:
    """Keys or values of the sorts: a uint32, int32 or float32 Array as is; a host array of
    those dtypes flattened, other floats as float32, other integers as uint32 (in range)."""
    if _is_array(x):
        if x.dtype not in _SORT_DTYPES:
            raise TypeError(
                f"{what}: a vknb.Array of dtype uint32, int32 or float32 is needed, got {x.dtype}"
            )
        return x
    a = np.asarray(x)
    if a.dtype in _SORT_DTYPES:
        return np.ascontiguousarray(a).reshape(-1)
    if a.dtype.kind == "f":
        return np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    if a.dtype.kind in "iu" and a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
        raise ValueError(
            f"{what}: {a.dtype} values must lie in [0, 2**32) to be sorted as uint32; pass "
            "int32 for negative numbers (x.astype(np.int32))"
        )
    return _uint_input(a, what).reshape(-1)


def _flat_host(x: Any) -> np.ndarray:
    return (x.numpy() if _is_array(x) else np.asarray(x)).reshape(-1)


def _bitonic(ordered: np.ndarray, with_values: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Sort uint32 keys with ``bitonic_sort.comp``; ``with_values``: also the indices that sort
    them, stably (the kernel orders equal keys by index)."""
    n = ordered.size
    opts: dict[str, Any] = {"defines": {"WITH_VALUES": 1}} if with_values else {}
    k = load("bitonic_sort", **opts)
    block = 2 * k.local_size[0]
    size = max(block, 1 << max(0, (n - 1).bit_length()))
    padded = np.full(size, 0xFFFFFFFF, np.uint32)  # after every key (index ties: after too)
    padded[:n] = ordered
    args: list[Array] = [asarray(padded)]
    try:
        if with_values:
            args.append(asarray(np.arange(size, dtype=np.uint32)))
        groups = size // block
        k(*args, n=size, k=0, j=0, mode=0, groups=groups)
        kk = 2 * block
        while kk <= size:
            jj = kk // 2
            while jj >= block:
                k(*args, n=size, k=kk, j=jj, mode=1, groups=groups)
                jj //= 2
            k(*args, n=size, k=kk, j=0, mode=2, groups=groups)
            kk *= 2
        return args[0].numpy()[:n], (args[1].numpy()[:n] if with_values else None)
    finally:
        _close(args)


def _sorted(keys: Any, values: Any, what: str, index: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Sorted keys, and the values (or with ``index``, the keys' indices) in their order."""
    kv = _sort_input(keys, f"{what}: keys")
    n = int(np.prod(_shape_of(kv)))
    vv = None
    if values is not None:
        vv = _sort_input(values, f"{what}: values")
        nv = int(np.prod(_shape_of(vv)))
        if nv != n:
            raise ValueError(f"{what}: {n} keys but {nv} values; pass one value per key")
    if n == 0:
        empty_v = np.zeros(0, vv.dtype if vv is not None else np.uint32)
        return np.zeros(0, kv.dtype), (empty_v if vv is not None or index else None)
    if n >= RADIX_MIN_KEYS:
        return _radix.radix_sort(load, kv, vv, iota=index)
    host = _flat_host(kv)
    if vv is None and not index and host.dtype == np.uint32:
        return _bitonic(host, False)[0], None
    idx = _bitonic(_radix.order_bits(host), True)[1]
    assert idx is not None
    if vv is not None:
        return host[idx], _flat_host(vv)[idx]
    return host[idx], (idx if index else None)


def sort(keys: ArrayLike) -> np.ndarray:
    """The flattened keys, sorted ascending: a radix sort from :data:`RADIX_MIN_KEYS` keys on,
    a bitonic network below.

    Keys are uint32, int32 or float32 (host arrays of other floats are converted to float32, of
    other integers to uint32 when their values fit); the result has their dtype.  Floats sort
    as numpy sorts them: ``-inf`` first, ``-0.0`` and ``0.0`` equal, NaNs last.  The radix sort
    (LSD, 8-bit digits: four passes, fewer when a digit is the same for every key) keeps a
    :class:`vknb.Array` on the device; the bitonic path reads it back first.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.sort(np.array([5, 1, 4, 1], np.uint32))
    array([1, 1, 4, 5], dtype=uint32)
    >>> library.sort(np.array([0.5, np.nan, -np.inf, -2], np.float32))
    array([-inf, -2. ,  0.5,  nan], dtype=float32)
    """
    return _sorted(keys, None, "sort", False)[0]


def argsort(keys: ArrayLike) -> np.ndarray:
    """Indices that sort the flattened keys, stably: ``np.argsort(keys, kind="stable")``.

    Takes what :func:`sort` takes.  Equal keys keep their input order (the radix sort is
    stable; the bitonic network breaks ties by index), as do ``-0.0`` and ``0.0``, and NaNs,
    which come last.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.argsort(np.array([30, 10, 20, 10], np.uint32))
    array([1, 3, 2, 0])
    """
    idx = _sorted(keys, None, "argsort", True)[1]
    assert idx is not None
    return idx.astype(np.intp)


def sort_pairs(keys: ArrayLike, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Sort key-value pairs by key, stably: the sorted keys, and the values in their order.

    ``values`` holds one uint32, int32 or float32 value per key (converted as keys are); it
    moves with its key, bit for bit.  The same as ``i = np.argsort(keys, kind="stable");
    (keys[i], values[i])``, without the gather: on the radix path the values travel with the
    keys through every pass, and :class:`vknb.Array` inputs stay on the device.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> k, v = library.sort_pairs(np.array([3, 1, 3, 2], np.int32),
    ...                           np.array([0.5, 1.5, 2.5, 3.5], np.float32))
    >>> k, v
    (array([1, 2, 3, 3], dtype=int32), array([1.5, 3.5, 0.5, 2.5], dtype=float32))
    """
    k, v = _sorted(keys, values, "sort_pairs", False)
    assert v is not None
    return k, v


# --- images: storage-image filters, sampled resampling and blur ----------------------------------

#: Border colours of ``clamp_to_border`` (``border=`` of :func:`warp_affine`, :func:`rotate`).
BORDER_COLORS: dict[str, tuple[float, float, float, float]] = {
    "transparent_black": (0.0, 0.0, 0.0, 0.0),
    "opaque_black": (0.0, 0.0, 0.0, 1.0),
    "opaque_white": (1.0, 1.0, 1.0, 1.0),
}
# VkSamplerAddressMode values (resample.comp's ``address``), by vknb.Sampler's names.
_ADDRESS_CODES = {"repeat": 0, "mirrored_repeat": 1, "clamp_to_edge": 2, "clamp_to_border": 3}
_RESAMPLE_METHODS = ("bilinear", "bicubic", "nearest")

#: The 3x3 filters of the Vulkan samples' compute shader example, as
#: ``(weights, scale, offset, gray)`` for :func:`filter3x3` (weights row-major, ``[dy][dx]``).
SAMPLE_FILTERS: dict[str, tuple[tuple[float, ...], float, float, bool]] = {
    "emboss": ((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 2.0), 1.0, 0.5, True),
    "edge_detect": (
        (-0.125, -0.125, -0.125, -0.125, 1.0, -0.125, -0.125, -0.125, -0.125),
        10.0,
        0.0,
        True,
    ),
    "sharpen": ((-1.0, -1.0, -1.0, -1.0, 9.0, -1.0, -1.0, -1.0, -1.0), 1.0, 0.0, False),
}


def _is_image(x: Any) -> bool:
    return isinstance(x, Image)


def _rgba8_input(img: Any, what: str) -> tuple[Any, int, int, int]:
    """An rgba8 image to bind: ``(image or uint8 (H, W, 4) array, channels out, H, W)``.

    A ``(H, W, 3)`` array is widened to 4 channels (alpha 255); ``channels out`` is what the
    caller gave (3 or 4), so that the result has the input's shape."""
    if _is_image(img):
        if img.format != "rgba8" or img.dim != "2d" or img.arrayed:
            raise TypeError(f"{what}: a 2-D vknb.Image of format rgba8 is needed, got {img!r}")
        return img, 4, img.shape[0], img.shape[1]
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise TypeError(
            f"{what}: expected a uint8 image (H, W, 3) or (H, W, 4), got dtype {a.dtype} "
            "(e.g. (img * 255).round().astype(np.uint8) for floats in [0, 1])"
        )
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(
            f"{what}: expected an image of shape (H, W, 3) or (H, W, 4), got {a.shape}"
        )
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what}: the image is empty: shape {a.shape}")
    channels = a.shape[2]
    a = widen_rgb(a) if channels == 3 else np.ascontiguousarray(a)
    return a, channels, a.shape[0], a.shape[1]


def filter3x3(
    img: Any,
    kernel: ArrayLike,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    gray: bool = False,
) -> np.ndarray:
    """A 3x3 filter on an 8-bit colour image through rgba8 storage images (``filter3x3.comp``).

    ``out = clip(scale * sum_ij kernel[i, j] * img[y + i - 1, x + j - 1] + offset, 0, 1)`` on
    the channels read as floats in [0, 1] (a correlation: the kernel is not flipped), rounded to
    uint8; neighbours outside the image are clamped to the edge.  The alpha channel is kept.

    Parameters
    ----------
    img : ndarray or vknb.Image
        uint8 ``(H, W, 4)`` or ``(H, W, 3)`` (widened to 4 on the way in), or an ``rgba8``
        :class:`vknb.Image`.
    kernel : array_like
        3 x 3 weights, row-major: ``kernel[i, j]`` weighs the neighbour at ``dy = i - 1``,
        ``dx = j - 1``.
    scale, offset : float
        Applied to the sum before clamping (the Vulkan sample's ``1 / denom`` and ``offset``).
    gray : bool
        Filter the average ``(r + g + b) / 3`` and write it to r, g and b (emboss, edge detect)
        instead of each channel on its own (sharpen).

    Returns
    -------
    ndarray
        uint8, the input's shape (4 channels for an Image).

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> img = np.full((4, 5, 3), 100, np.uint8)
    >>> box = np.full((3, 3), 1 / 9, np.float32)
    >>> out = library.filter3x3(img, box)              # a flat image stays flat
    >>> out.shape, int(out.min()), int(out.max())
    ((4, 5, 3), 100, 100)
    """
    w = np.asarray(kernel, dtype=np.float32)
    if w.shape not in ((3, 3), (9,)):
        raise ValueError(f"filter3x3: kernel must be 3 x 3, got shape {w.shape}")
    src, channels, H, W = _rgba8_input(img, "filter3x3: img")
    out = np.empty((H, W, 4), np.uint8)
    k = load("filter3x3")
    k(
        src,
        out,
        weights=np.ascontiguousarray(w.reshape(9)),
        scale=float(scale),
        offset=float(offset),
        gray=int(bool(gray)),
        grid=(W, H),
    )
    return out if channels == 4 else np.ascontiguousarray(out[..., :channels])


def _sample_filter(name: str, img: Any) -> np.ndarray:
    w, scale, offset, gray = SAMPLE_FILTERS[name]
    return filter3x3(
        img, np.array(w, np.float32).reshape(3, 3), scale=scale, offset=offset, gray=gray
    )


def emboss(img: Any) -> np.ndarray:
    """The Vulkan sample's emboss filter (gray, ``[-1 0 0; 0 -1 0; 0 0 2]``, offset 0.5).

    See :func:`filter3x3` for what it takes and returns; :data:`SAMPLE_FILTERS` holds the
    weights.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.emboss(np.full((2, 2, 4), 200, np.uint8))[0, 0]    # flat: 0.5 gray, alpha kept
    array([128, 128, 128, 200], dtype=uint8)
    """
    return _sample_filter("emboss", img)


def edge_detect(img: Any) -> np.ndarray:
    """The Vulkan sample's edge detector: gray, centre 1, neighbours -1/8, scale 10 (denom 0.1).

    See :func:`filter3x3` for what it takes and returns.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> img = np.zeros((3, 3, 4), np.uint8); img[1, 1] = 255
    >>> library.edge_detect(img)[..., 0]
    array([[  0,   0,   0],
           [  0, 255,   0],
           [  0,   0,   0]], dtype=uint8)
    """
    return _sample_filter("edge_detect", img)


def sharpen(img: Any) -> np.ndarray:
    """The Vulkan sample's sharpen filter: per channel, centre 9, neighbours -1.

    See :func:`filter3x3` for what it takes and returns.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> img = np.full((3, 3, 3), 100, np.uint8); img[1, 1, 0] = 110
    >>> library.sharpen(img)[1, :, 0]
    array([ 90, 190,  90], dtype=uint8)
    """
    return _sample_filter("sharpen", img)


class _Sampled(NamedTuple):
    """An image prepared for sampling (see :func:`_sampled_input`)."""

    data: Any  # a C-contiguous numpy array or a vknb.Image
    dtype: np.dtype  # float32 or uint8
    tail: tuple[int, ...]  # the input's shape after (H, W): () or (C,)
    channels: int  # the caller's channel count (3 for a widened RGB array)
    height: int
    width: int

    def result(self, out: np.ndarray) -> np.ndarray:
        """The caller's shape from an (H', W', 4) result."""
        if not self.tail:
            return np.ascontiguousarray(out[..., 0])
        return out if self.channels == 4 else np.ascontiguousarray(out[..., : self.channels])


def _sampled_input(img: Any, what: str) -> _Sampled:
    """An image to sample: float inputs become float32 (``*32f``), uint8 stays uint8
    (normalized ``*8``); 3 channels are widened to 4 (the result drops the fourth again)."""
    if _is_image(img):
        if img.dim != "2d" or img.arrayed or img.dtype not in (np.float32, np.uint8):
            raise TypeError(
                f"{what}: a 2-D vknb.Image of a float32 or 8-bit unorm format is needed, "
                f"got {img!r}"
            )
        if img.numeric not in ("float", "unorm"):
            raise TypeError(f"{what}: {img.format} images cannot be filtered; use rgba8 or *32f")
        return _Sampled(img, img.dtype, tuple(img.shape[2:]), img.channels, *img.shape[:2])
    a = np.asarray(img)
    if a.dtype.kind == "f":
        a = a.astype(np.float32, copy=False)
    elif a.dtype != np.uint8:
        raise TypeError(
            f"{what}: images of float32 or uint8 are supported, got dtype {a.dtype} "
            "(convert with .astype(np.float32))"
        )
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"{what}: expected an image of shape (H, W) or (H, W, C) with C <= 4, got {a.shape}"
        )
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what}: the image is empty: shape {a.shape}")
    tail = tuple(a.shape[2:])
    channels = a.shape[2] if a.ndim == 3 else 1
    if channels == 1:
        a = a.reshape(a.shape[0], a.shape[1])
    elif channels == 3:
        a = widen_rgb(a)
    return _Sampled(np.ascontiguousarray(a), a.dtype, tail, channels, a.shape[0], a.shape[1])


def _result_format(dtype: np.dtype) -> str:
    return "rgba8" if dtype == np.uint8 else "rgba32f"


def _shape2(shape: Any, what: str) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: shape must be (height, width), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{what}: shape must be positive, got {(h, w)}")
    return h, w


def _border_mode(border: str, what: str) -> tuple[str, str]:
    """``border=`` of the warps -> (address mode, border colour name)."""
    if border in BORDER_COLORS:
        return "clamp_to_border", border
    if border in ("clamp_to_edge", "repeat", "mirrored_repeat"):
        return border, "transparent_black"
    raise ValueError(
        f"{what}: border must be a colour ({', '.join(BORDER_COLORS)}) or an address mode "
        f"(clamp_to_edge, repeat, mirrored_repeat), got {border!r}"
    )


def _resample(
    src: _Sampled,
    m: np.ndarray,
    shape: tuple[int, int],
    method: str,
    address: str,
    border: str,
    what: str,
) -> np.ndarray:
    """Run ``resample.comp``: ``m`` maps output texel coordinates to source texel coordinates."""
    if method not in _RESAMPLE_METHODS:
        raise ValueError(
            f"{what}: method must be one of {', '.join(_RESAMPLE_METHODS)}, got {method!r}"
        )
    h, w = shape
    out = np.empty((h, w, 4), src.dtype)
    sampler = Sampler(
        filter="nearest" if method == "nearest" else "linear", address=address, border=border
    )
    k = load("resample", defines={"FORMAT": _result_format(src.dtype)})
    k(
        (src.data, sampler),
        out,
        m=np.asarray(m, np.float32).reshape(6),
        cubic=int(method == "bicubic"),
        address=_ADDRESS_CODES[address],
        border=np.array(BORDER_COLORS[border], np.float32),
        grid=(w, h),
    )
    return src.result(out)


def resize(img: Any, shape: Any, method: str = "bilinear") -> np.ndarray:
    """Resize an image through a sampler (``resample.comp``).

    Pixel centres map to pixel centres: output pixel ``(x, y)`` of ``(H', W')`` reads the source
    at ``((x + 0.5) W / W', (y + 0.5) H / H')`` in texel coordinates (OpenCV's ``INTER_LINEAR``
    convention, PIL's without antialiasing), clamped to the edge.  ``"bilinear"`` and
    ``"nearest"`` are the sampler's filters (so a GPU's sub-texel precision, 8 bits on most,
    limits bilinear weights); ``"bicubic"`` is Keys' cubic convolution (a = -0.5, Catmull-Rom)
    from 16 texel fetches with float32 weights.  Downscaling by more than 2 aliases (nothing
    is prefiltered): blur first (:func:`blur_image`) if that matters.

    Parameters
    ----------
    img : ndarray or vknb.Image
        float32 (other floats are converted) or uint8 (read as [0, 1], rounded back),
        ``(H, W)`` or ``(H, W, C)`` with C = 1 to 4; a 2-D float or unorm vknb.Image.
    shape : (int, int)
        ``(H', W')`` of the result.
    method : str
        ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"``.

    Returns
    -------
    ndarray
        ``(H', W')`` or ``(H', W', C)``, the input's dtype (float32 for other floats).  Bicubic
        float results may overshoot the input's range; uint8 ones are clamped.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> library.resize(np.array([[0, 1]], np.float32), (1, 4))
    array([[0.  , 0.25, 0.75, 1.  ]], dtype=float32)
    """
    h, w = _shape2(shape, "resize")
    src = _sampled_input(img, "resize: img")
    m = np.array([src.width / w, 0.0, 0.0, 0.0, src.height / h, 0.0])
    return _resample(src, m, (h, w), method, "clamp_to_edge", "transparent_black", "resize")


def _affine3(matrix: ArrayLike, what: str) -> np.ndarray:
    a = np.asarray(matrix, dtype=np.float64)
    if a.shape == (2, 3):
        a = np.vstack([a, [0.0, 0.0, 1.0]])
    if a.shape != (3, 3) or not np.allclose(a[2], [0.0, 0.0, 1.0]):
        raise ValueError(
            f"{what}: matrix must be 2 x 3 (or 3 x 3 with last row 0 0 1), got {a.shape}"
        )
    if not np.isfinite(a).all() or abs(np.linalg.det(a[:2, :2])) < 1e-12:
        raise ValueError(f"{what}: the matrix is not invertible")
    return a


def _texel_map(forward: np.ndarray) -> np.ndarray:
    """``resample.comp``'s ``m`` for a forward map in pixel-centre coordinates.

    Pixel centres are at integer ``(x, y)`` for the caller and at ``+0.5`` in texel
    coordinates: ``s = inv(forward) (p - 0.5) + 0.5``."""
    inv = np.linalg.inv(forward)
    a, t = inv[:2, :2], inv[:2, 2]
    t = t + 0.5 - a @ np.array([0.5, 0.5])
    return np.array([a[0, 0], a[0, 1], t[0], a[1, 0], a[1, 1], t[1]])


def warp_affine(
    img: Any,
    matrix: ArrayLike,
    shape: Any = None,
    *,
    method: str = "bilinear",
    border: str = "transparent_black",
) -> np.ndarray:
    """Warp an image by an affine map, through a sampler (``resample.comp``).

    ``matrix`` maps source pixel coordinates to output pixel coordinates (``x`` to the right,
    ``y`` down, pixel centres at integers: ``cv2.warpAffine``'s convention); each output pixel
    reads the source at the inverse image of its centre.

    Parameters
    ----------
    img : ndarray or vknb.Image
        As for :func:`resize`: float32 or uint8, ``(H, W)`` or ``(H, W, C)``, C = 1 to 4.
    matrix : array_like
        2 x 3 (or 3 x 3 with last row ``0 0 1``) forward affine map.
    shape : (int, int), optional
        ``(H', W')`` of the result; default: the input's.
    method : str
        ``"bilinear"`` (default), ``"nearest"`` (the sampler's filters) or ``"bicubic"``.
    border : str
        What lies outside the source: a colour of ``clamp_to_border`` (``"transparent_black"``
        (default: zeros), ``"opaque_black"``, ``"opaque_white"``), or the address mode
        ``"clamp_to_edge"``, ``"repeat"`` or ``"mirrored_repeat"``.  The sampler applies it (the
        shader, with the same rules, for bicubic).

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> img = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> library.warp_affine(img, [[1, 0, 1], [0, 1, 0]])       # one pixel to the right
    array([[0., 0., 1.],
           [0., 3., 4.]], dtype=float32)
    """
    fwd = _affine3(matrix, "warp_affine")
    src = _sampled_input(img, "warp_affine: img")
    h, w = _shape2((src.height, src.width) if shape is None else shape, "warp_affine")
    address, colour = _border_mode(border, "warp_affine")
    return _resample(src, _texel_map(fwd), (h, w), method, address, colour, "warp_affine")


def rotation_matrix(
    degrees: float, center: tuple[float, float], out_center: tuple[float, float] | None = None
) -> np.ndarray:
    """The 2 x 3 forward map of a rotation by ``degrees`` counter-clockwise (as displayed, with
    ``y`` down) about ``center`` = ``(x, y)``, moved to ``out_center`` (default: ``center``).

    The same matrix as ``cv2.getRotationMatrix2D(center, degrees, 1)`` when ``out_center`` is
    ``center``.

    Example
    -------
    >>> from vknb import library
    >>> library.rotation_matrix(90, (0, 0)).round(6)
    array([[ 0.,  1.,  0.],
           [-1.,  0.,  0.]])
    """
    t = math.radians(float(degrees))
    c, s = math.cos(t), math.sin(t)
    cx, cy = (float(v) for v in center)
    ox, oy = (cx, cy) if out_center is None else (float(v) for v in out_center)
    return np.array([[c, s, ox - c * cx - s * cy], [-s, c, oy + s * cx - c * cy]])


def rotate(
    img: Any,
    degrees: float,
    *,
    expand: bool = False,
    center: tuple[float, float] | None = None,
    method: str = "bilinear",
    border: str = "transparent_black",
) -> np.ndarray:
    """Rotate an image counter-clockwise (as displayed) through a sampler (:func:`warp_affine`).

    Parameters
    ----------
    img : ndarray or vknb.Image
        As for :func:`resize`.
    degrees : float
        Angle, counter-clockwise.
    expand : bool
        Enlarge the result to hold the whole rotated image (about its centre) instead of keeping
        the input's shape.
    center : (float, float), optional
        ``(x, y)`` in pixels to rotate about; default: the image centre ``((W-1)/2, (H-1)/2)``.
    method, border : str
        As for :func:`warp_affine`.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> img = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> library.rotate(img, 90, expand=True, method="nearest")
    array([[2., 5.],
           [1., 4.],
           [0., 3.]], dtype=float32)
    """
    H, W = _shape2(img.shape[:2] if _is_image(img) else np.shape(img)[:2], "rotate")
    c = ((W - 1) / 2.0, (H - 1) / 2.0) if center is None else center
    out_shape = (H, W)
    out_c = None
    if expand:
        t = math.radians(float(degrees))
        co, si = abs(math.cos(t)), abs(math.sin(t))
        w2 = max(1, math.ceil(W * co + H * si - 1e-6))
        h2 = max(1, math.ceil(W * si + H * co - 1e-6))
        out_shape = (h2, w2)
        c = ((W - 1) / 2.0, (H - 1) / 2.0)
        out_c = ((w2 - 1) / 2.0, (h2 - 1) / 2.0)
    fwd = rotation_matrix(degrees, c, out_c)
    return warp_affine(img, fwd, out_shape, method=method, border=border)


def gaussian_taps(sigma: float, truncate: float = 3.0) -> np.ndarray:
    """The bilinear reads of :func:`blur_image`'s Gaussian: ``(offset, weight)`` rows, float32.

    The Gaussian of radius ``R = ceil(truncate * sigma)`` (2R + 1 weights summing to one) with
    its taps paired from ``-R``: taps ``a`` and ``a + 1`` become one read at
    ``a + w[a+1] / (w[a] + w[a+1])`` weighing ``w[a] + w[a+1]``; the last tap (``+R``) stays
    alone.  R + 1 reads instead of 2R + 1.

    Example
    -------
    >>> from vknb import library
    >>> taps = library.gaussian_taps(2.0)        # radius 6: 13 weights, 7 reads
    >>> taps.shape, round(float(taps[:, 1].sum()), 6)
    ((7, 2), 1.0)
    """
    if not sigma > 0:
        raise ValueError(f"gaussian_taps: sigma must be > 0, got {sigma}")
    radius = max(1, math.ceil(float(truncate) * float(sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / float(sigma)) ** 2)
    g /= g.sum()
    taps = []
    for i in range(0, g.size - 1, 2):
        wa, wb = g[i], g[i + 1]
        taps.append((t[i] + wb / (wa + wb), wa + wb))
    if g.size % 2:
        taps.append((t[-1], g[-1]))
    return np.array(taps, np.float32)


def blur_image(img: Any, sigma: float, *, truncate: float = 3.0) -> np.ndarray:
    """Gaussian blur through a linear sampler: two passes of ``blur_image.comp``.

    Separable (a horizontal then a vertical pass, the intermediate image in ``rgba32f`` on the
    device) with the linear-filtering trick: two neighbouring taps are one bilinear read between
    them, so a radius-R filter takes R + 1 reads per pass instead of 2R + 1 (see
    :func:`gaussian_taps`).  Borders clamp to the edge (as :func:`blur`).  The sampler's
    sub-texel precision (8 bits on most GPUs) rounds each read's position: errors up to about
    2^-8 of the local contrast per pass, where :func:`blur` is exact in float32.

    Parameters
    ----------
    img : ndarray or vknb.Image
        As for :func:`resize`: float32 or uint8, ``(H, W)`` or ``(H, W, C)``, C = 1 to 4.
    sigma : float
        Standard deviation in pixels.
    truncate : float
        Radius ``ceil(truncate * sigma)``.

    Example
    -------
    >>> import numpy as np
    >>> from vknb import library
    >>> flat = np.full((5, 7, 3), 90, np.uint8)
    >>> out = library.blur_image(flat, 1.5)
    >>> out.shape, out.dtype, int(out.min()), int(out.max())
    ((5, 7, 3), dtype('uint8'), 90, 90)
    """
    taps = gaussian_taps(sigma, truncate)
    src = _sampled_input(img, "blur_image: img")
    H, W = src.height, src.width
    sampler = Sampler(filter="linear", address="clamp_to_edge")
    out = np.empty((H, W, 4), src.dtype)
    k1 = load("blur_image")
    k2 = load("blur_image", defines={"FORMAT": _result_format(src.dtype)})
    with Image((H, W, 4), "rgba32f", device=k1.device, label="blur_image.tmp") as tmp:
        k1((src.data, sampler), tmp, taps, direction=[1.0, 0.0], ntaps=len(taps), grid=(W, H))
        k2((tmp, sampler), out, taps, direction=[0.0, 1.0], ntaps=len(taps), grid=(W, H))
    return src.result(out)
