"""Kernels over the blocks of Dask arrays: :func:`map_blocks`, :func:`map_overlap`.

A kernel travels in the task graph as a :class:`KernelHandle`: its SPIR-V, reflection and
options (what ``pickle`` makes of a :class:`vknb.Kernel`), never a device object.  Each process
that runs blocks builds the kernel once, on its session device, and keeps it in a cache keyed by
the kernel's name, the SHA-256 of its SPIR-V, its specialization constants and workgroup size
(:func:`kernel_cache_info` counts the builds).  In the process that made the graph (Dask's
threaded scheduler) the kernel itself runs: nothing is rebuilt.

Dask itself is imported only when a graph is built: ``import vknb.dask`` stays cheap.

Example
-------
>>> import dask.array as da, numpy as np, vknb, vknb.dask
>>> k = vknb.compile('''
... layout(local_size_x = 64) in;
... layout(binding = 0) readonly buffer X { float x[]; };
... layout(binding = 1) buffer Y { float y[]; };
... layout(push_constant) uniform P { float a; uint n; };
... void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
... ''', name="saxpy")
>>> x = da.ones(1000, chunks=250, dtype=np.float32)
>>> y = vknb.dask.map_blocks(k, x, da.zeros_like(x), a=2.0, n=lambda x, y: x.size)
>>> float(y.sum().compute())
2000.0
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..compute.kernel import Kernel

__all__ = [
    "BlockPlan",
    "KernelHandle",
    "auto_grid",
    "clear_kernel_cache",
    "kernel_cache_info",
    "kernel_key",
    "map_blocks",
    "map_overlap",
    "run_block",
]

# --- the per-process kernel cache -------------------------------------------------------------

_cache: dict[str, Kernel] = {}
_cache_lock = threading.Lock()
_stats = {"builds": 0, "hits": 0, "blocks": 0}


def kernel_cache_info() -> dict[str, Any]:
    """What this process's kernel cache holds and did: plain data.

    ``builds`` counts kernels rebuilt from a handle (once per kernel and process), ``hits`` the
    blocks that found theirs in the cache, ``blocks`` every block this process ran (those of the
    graph's own process included, which use the kernel itself), ``kernels`` the cached kernels'
    keys, ``pid`` the process.  ``client.run(vknb.dask.kernel_cache_info)`` asks every worker.

    Example
    -------
    >>> info = vknb.dask.kernel_cache_info()
    >>> sorted(info)
    ['blocks', 'builds', 'hits', 'kernels', 'pid']
    """
    with _cache_lock:
        return {**_stats, "kernels": sorted(_cache), "pid": os.getpid()}


def clear_kernel_cache() -> None:
    """Forget this process's cached kernels and zero its counters (the kernels stay usable).

    Example
    -------
    >>> vknb.dask.clear_kernel_cache()
    >>> vknb.dask.kernel_cache_info()["builds"]
    0
    """
    with _cache_lock:
        _cache.clear()
        for k in _stats:
            _stats[k] = 0


def kernel_key(kernel: Kernel) -> str:
    """The cache key of a kernel: its name, the SHA-256 of its SPIR-V, its specialization
    constants and its workgroup size (what makes two kernels build the same pipeline).

    Example
    -------
    >>> vknb.dask.kernel_key(k)                                # doctest: +SKIP
    'saxpy:3f1c...:e4a2...'
    """
    spirv = hashlib.sha256(kernel.spirv).hexdigest()[:32]
    options = repr((sorted((str(n), repr(v)) for n, v in kernel.constants.items()),
                    tuple(kernel.local_size)))  # fmt: skip
    return f"{kernel.name}:{spirv}:{hashlib.sha256(options.encode()).hexdigest()[:16]}"


class KernelHandle:
    """A Kernel as it travels in a task graph: how to rebuild it, and its cache key.

    Pickled, it is the kernel's SPIR-V, reflection and options (the arguments that
    ``pickle.dumps(kernel)`` holds); :meth:`get` returns the kernel: the original one in the
    process that made the handle, else this process's cached copy, built on its session device
    on first use (without compiling).

    Example
    -------
    >>> h = vknb.dask.KernelHandle(k)                         # doctest: +SKIP
    >>> h.get() is k                                          # doctest: +SKIP
    True
    """

    __slots__ = ("kernel", "key", "name", "rebuild")

    def __init__(self, kernel: Kernel) -> None:
        if not isinstance(kernel, Kernel):
            raise TypeError(
                "vknb.dask: expected a vknb.Kernel (from vknb.compile), got "
                f"{type(kernel).__name__}"
            )
        self.key = kernel_key(kernel)
        self.name = kernel.name
        self.rebuild = kernel.__reduce__()  # (function, arguments): what pickle ships
        self.kernel: Kernel | None = kernel  # only in the process that made the handle

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_handle, (self.key, self.name, self.rebuild))

    def __dask_tokenize__(self) -> str:
        return self.key

    def get(self) -> Kernel:
        """The kernel to run in this process (built once per process and key).

        Example
        -------
        >>> pickle.loads(pickle.dumps(h)).get().name          # doctest: +SKIP
        'saxpy'
        """
        if self.kernel is not None:
            return self.kernel
        with _cache_lock:
            k = _cache.get(self.key)
            if k is not None and not k.closed:
                _stats["hits"] += 1
                return k
            fn, args = self.rebuild
            k = fn(*args)
            _cache[self.key] = k
            _stats["builds"] += 1
            return k

    def __repr__(self) -> str:
        return f"<vknb.dask.KernelHandle {self.key}>"


def _handle(key: str, name: str, rebuild: tuple[Any, tuple[Any, ...]]) -> KernelHandle:
    h = KernelHandle.__new__(KernelHandle)
    h.key, h.name, h.rebuild, h.kernel = key, name, rebuild, None
    return h


# --- the plan of one map_blocks call ----------------------------------------------------------

# A binding's source: ("block", j) the j-th dask array's block, ("value", v) the same value for
# every block, ("new", None) the output, allocated per block.
_Source = tuple[str, Any]


class BlockPlan:
    """Everything a block's task needs besides its blocks: plain, picklable data.

    Made by :func:`map_blocks` / :func:`map_overlap` after checking the call against the
    kernel's reflection; each task calls :func:`run_block` with its blocks and the plan.

    Example
    -------
    >>> y.dask.layers[y.name]                                 # doctest: +SKIP
    """

    __slots__ = (
        "args",
        "copy",
        "dtype",
        "grid",
        "handle",
        "out",
        "push",
        "sources",
        "writeonly",
    )

    def __init__(
        self,
        handle: KernelHandle,
        sources: list[_Source],
        args: list[_Source],
        out: int,
        dtype: np.dtype,
        copy: frozenset[int],
        grid: Any,
        push: dict[str, Any],
        writeonly: bool,
    ) -> None:
        self.handle = handle
        self.sources = sources  # one per binding slot, in slot order
        self.args = args  # the user's positional arguments (what callables receive)
        self.out = out  # the output's slot
        self.dtype = dtype  # the output's dtype
        self.copy = copy  # slots whose numpy value is copied (the kernel writes into it)
        self.writeonly = writeonly  # the output binding is writeonly (never uploaded)
        self.grid = grid
        self.push = push

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        from dask.base import tokenize

        return (
            self.handle.key,
            tokenize(self.sources, self.args, self.grid, self.push),
            self.out,
            str(self.dtype),
        )


def _value(src: _Source, blocks: Sequence[Any]) -> Any:
    kind, v = src
    return blocks[v] if kind == "block" else v


def auto_grid(shape: tuple[int, ...], local_size: tuple[int, int, int]) -> int | tuple[int, ...]:
    """``grid="auto"``: the invocations that cover an output block of ``shape``.

    One invocation per element: the block's size (a flat index, ``gl_GlobalInvocationID.x``),
    unless the block is 2-D or 3-D *and* the kernel's workgroup is (``local_size_y`` or
    ``local_size_z`` > 1): then the shape reversed, x fastest (``(W, H)`` for an ``(H, W)``
    block, ``(W, H, D)`` for ``(D, H, W)``).

    Example
    -------
    >>> vknb.dask.auto_grid((100,), (64, 1, 1)), vknb.dask.auto_grid((30, 40), (64, 1, 1))
    (100, 1200)
    >>> vknb.dask.auto_grid((30, 40), (8, 8, 1))
    (40, 30)
    """
    if len(shape) in (2, 3) and (local_size[1] > 1 or local_size[2] > 1):
        return tuple(int(s) for s in reversed(shape))
    return int(np.prod(shape, dtype=np.int64))


def run_block(*blocks: Any, plan: BlockPlan) -> np.ndarray:
    """Run the plan's kernel on one set of blocks and return the output block (the task body).

    Example
    -------
    >>> run_block(x_block, y_block, plan=plan)               # doctest: +SKIP
    """
    k = plan.handle.get()
    with _cache_lock:
        _stats["blocks"] += 1
    shapes = [np.shape(b) for b in blocks]
    shape = tuple(np.broadcast_shapes(*shapes)) if shapes else ()
    out_src = plan.sources[plan.out]
    out_shape = shape if out_src[0] == "new" else np.shape(_value(out_src, blocks))
    if 0 in out_shape:  # an empty chunk: nothing to dispatch
        return np.empty(out_shape, plan.dtype)
    vals: list[Any] = []
    for slot, src in enumerate(plan.sources):
        if src[0] == "new":  # not uploaded if writeonly: no need to clear it then
            v: Any = (np.empty if plan.writeonly else np.zeros)(shape, plan.dtype)
        else:
            v = _value(src, blocks)
            if isinstance(v, np.ndarray):
                # Never write into a block Dask may share: a written binding gets a private
                # copy, which the call uploads and writes back in one submission.
                if slot in plan.copy:
                    v = np.array(v, order="C", copy=True)
                else:
                    v = np.ascontiguousarray(v)
        vals.append(v)
    out = vals[plan.out]
    user = [_value(a, blocks) for a in plan.args]
    push = {n: (f(*user) if callable(f) else f) for n, f in plan.push.items()}
    if plan.grid == "auto":
        grid = auto_grid(out.shape, k.local_size)
    elif callable(plan.grid):
        grid = plan.grid(*user)
    else:
        grid = plan.grid
    k(*vals, grid=grid, **push)
    return out


def _is_dask(x: Any) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - map_blocks imports it first
        return False
    return isinstance(x, da.Array)


def _need_dask() -> Any:
    try:
        import dask.array as da
    except ImportError as e:
        raise ImportError(
            "vknb.dask needs Dask: `pip install 'vknb[dask]'` (dask[array] and distributed)"
        ) from e
    return da


def _plan(
    kernel: Kernel,
    arrays: tuple[Any, ...],
    out: str | None,
    grid: Any,
    dtype: Any,
    push: Mapping[str, Any],
    what: str,
) -> tuple[BlockPlan, list[Any], int]:
    """Check the call against the kernel's reflection before any graph exists."""
    handle = KernelHandle(kernel)
    name = kernel.name
    slots = list(kernel.slots)
    if len(arrays) > len(slots):
        raise TypeError(
            f"{what}({name}): {len(arrays)} arrays for {len(slots)} bindings "
            f"({', '.join(s.name for s in slots)})"
        )
    by_name = {n: s.index for s in slots for n in s.names}
    dask_arrays: list[Any] = []

    def source(v: Any) -> _Source:
        if _is_dask(v):
            dask_arrays.append(v)
            return ("block", len(dask_arrays) - 1)
        if callable(v):
            raise TypeError(f"{what}({name}): a binding takes an array, not a callable")
        return ("value", v)

    sources: list[_Source | None] = [None] * len(slots)
    args = [source(a) for a in arrays]
    for i, a in enumerate(args):
        sources[i] = a
    rest: dict[str, Any] = {}
    for key, v in push.items():
        if key in by_name:
            i = by_name[key]
            if sources[i] is not None:
                raise TypeError(f"{what}({name}): binding {slots[i].name!r} given twice")
            sources[i] = source(v)
        else:
            rest[key] = v
    if not dask_arrays:
        raise TypeError(f"{what}({name}): no dask array among the arguments")

    writable = [s for s in slots if not s.readonly]
    if out is None:
        if len(writable) != 1:
            cands = ", ".join(s.name for s in writable) or "none"
            raise ValueError(
                f"{what}({name}): the kernel may write {len(writable)} bindings ({cands}); "
                "name the output with out=" + ("" if writable else " (none is writable)")
            )
        out_slot = writable[0].index
    else:
        if out not in by_name:
            raise ValueError(
                f"{what}({name}): no binding {out!r}; the kernel's bindings: "
                f"{', '.join(s.name for s in slots)}"
            )
        out_slot = by_name[out]
        if slots[out_slot].readonly:
            cands = ", ".join(s.name for s in writable) or "none"
            raise ValueError(
                f"{what}({name}): binding {slots[out_slot].name!r} is readonly; the bindings "
                f"the kernel may write: {cands}"
            )
    out_src = sources[out_slot]
    if out_src is None:
        sources[out_slot] = ("new", None)
    elif out_src[0] != "block":
        raise TypeError(
            f"{what}({name}): the output binding {slots[out_slot].name!r} must be a dask array "
            "or left out (then it is allocated per block)"
        )
    missing = [s.name for s, src in zip(slots, sources, strict=True) if src is None]
    if missing:
        raise TypeError(f"{what}({name}): missing binding argument(s): {', '.join(missing)}")

    # dtypes: checked now, where the binding's element is a plain scalar
    for s, src in zip(slots, sources, strict=True):
        assert src is not None
        want = s.primary.dtype
        if src[0] == "block" and want is not None:
            want = np.dtype(want)
            if want.fields is None and want.subdtype is None:
                got = dask_arrays[src[1]].dtype
                if got != want:
                    raise TypeError(
                        f"{what}({name}): binding {s.name!r} holds {want}, got a dask array "
                        f"of {got} (convert it with .astype(np.{want.name}))"
                    )
    if out_src is not None and out_src[0] == "block":
        out_dtype = np.dtype(dask_arrays[out_src[1]].dtype)
    elif dtype is not None:
        out_dtype = np.dtype(dtype)
    else:
        if slots[out_slot].primary.dtype is None:
            raise TypeError(
                f"{what}({name}): binding {slots[out_slot].name!r} has no element dtype; "
                "pass dtype="
            )
        out_dtype = np.dtype(slots[out_slot].primary.dtype)
    if out_dtype.subdtype is not None:
        raise TypeError(
            f"{what}({name}): the output binding {slots[out_slot].name!r} holds {out_dtype} "
            "(a vector or array element); declare it as an array of scalars or structs"
        )
    if not (grid == "auto" or callable(grid) or isinstance(grid, (int, np.integer, tuple))):
        raise TypeError(f"{what}({name}): grid must be 'auto', an int, a tuple or a callable")

    # Written bindings of dask blocks or shared values must not be written in place: each is
    # copied per block, and the call writes the result back into the copy (one submission:
    # on the H100 a 4 KiB block cost 0.24 ms that way, 2.4 ms as a device Array uploaded, read
    # back and closed).  An output allocated per block is a fresh numpy array.
    writes = {s.index for s in writable}
    if sources[out_slot] == ("new", None):
        writes.discard(out_slot)
    copy = frozenset(writes)
    plan = BlockPlan(
        handle,
        [s for s in sources if s is not None],
        args,
        out_slot,
        out_dtype,
        copy,
        grid,
        rest,
        slots[out_slot].writeonly,
    )
    ndim = max(a.ndim for a in dask_arrays)
    return plan, dask_arrays, ndim


def _name(kernel: Kernel, plan: BlockPlan, *args: Any) -> str:
    """``vknb-<kernel name>-<token>``: a unique key name (recent dask takes ``name=`` whole,
    older versions as a prefix of their own token); dashboards show ``vknb-<kernel name>``."""
    from dask.base import tokenize

    return f"vknb-{kernel.name}-{tokenize(plan, *args)}"


def map_blocks(
    kernel: Kernel,
    *arrays: Any,
    out: str | None = None,
    grid: int | tuple[int, ...] | str | Callable[..., Any] = "auto",
    dtype: Any = None,
    **push: Any,
) -> Any:
    """Run ``kernel`` on every block of Dask arrays; a Dask array of its output binding.

    The arrays fill the kernel's bindings in order, like a kernel call; their blocks are aligned
    as :func:`dask.array.map_blocks` aligns them (fewer dimensions broadcast from the right),
    after their chunks are unified (as :func:`dask.array.blockwise` and ``map_overlap`` do).
    Each task runs the kernel once, on the session device of the process that runs it (on a
    ``LocalVulkanCluster`` worker: its own device), with the blocks as numpy arrays.

    Parameters
    ----------
    kernel : Kernel
        From :func:`vknb.compile`.  It travels as SPIR-V and options; each worker process
        builds it once (see :func:`kernel_cache_info`).
    *arrays : dask arrays, numpy arrays
        One per binding, in binding order.  A numpy array (or any non-dask value) is the same
        for every block (it is copied into every task: keep it small).
    out : str, optional
        The binding whose contents are the result.  Default: the only binding the kernel may
        write (not ``readonly``); with several, a ``ValueError`` names them.  If ``out`` is one
        of the arrays, each block is copied, written by the kernel and returned (the input is
        untouched); if it is left out, a zeroed block of the broadcast block shape is
        allocated for it.
    grid : "auto", int, tuple or callable
        Invocations per block.  ``"auto"`` covers the output block (see :func:`auto_grid`): its
        size, or its shape reversed (x fastest) for a 2-D/3-D block and a 2-D/3-D workgroup.
        A callable gets the positional arguments (blocks as numpy arrays) and returns the grid.
    dtype : numpy dtype, optional
        The output's dtype where the kernel's reflection does not give one.
    **push
        Push-constant members (or bindings, by name).  A value may be a callable of the
        positional arguments' blocks: ``n=lambda x, y: x.size``.

    Returns
    -------
    dask.array.Array
        With the chunks of the aligned inputs and the output binding's dtype; its tasks are
        named ``vknb-<kernel name>`` (the dashboard and progress bars show them so).

    Raises
    ------
    TypeError, ValueError
        A wrong dtype, a missing binding, an ambiguous output: when the graph is built, before
        anything runs.

    Example
    -------
    >>> import dask.array as da
    >>> x = da.random.random(10_000, chunks=2_500).astype(np.float32)
    >>> y = vknb.dask.map_blocks(saxpy, x, da.zeros_like(x), a=2.0,
    ...                          n=lambda x, y: x.size)       # doctest: +SKIP
    >>> np.allclose(y.compute(), 2 * x.compute())             # doctest: +SKIP
    True
    """
    da = _need_dask()
    plan, dask_arrays, ndim = _plan(kernel, arrays, out, grid, dtype, push, "map_blocks")
    if len(dask_arrays) > 1:  # common chunks (as blockwise aligns them), broadcast from the right
        from dask.array.core import unify_chunks

        pairs: list[Any] = []
        for a in dask_arrays:
            pairs += [a, tuple(range(a.ndim))[::-1]]
        _, dask_arrays = unify_chunks(*pairs, warn=False)
    return da.map_blocks(
        run_block,
        *dask_arrays,
        dtype=plan.dtype,
        meta=np.empty((0,) * ndim, plan.dtype),
        name=_name(kernel, plan, dask_arrays),
        plan=plan,
    )


def map_overlap(
    kernel: Kernel,
    *arrays: Any,
    depth: Any,
    boundary: Any = "none",
    trim: bool = True,
    out: str | None = None,
    grid: int | tuple[int, ...] | str | Callable[..., Any] = "auto",
    dtype: Any = None,
    allow_rechunk: bool = True,
    **push: Any,
) -> Any:
    """:func:`map_blocks` over blocks grown by ``depth`` neighbours on each side: stencils.

    As :func:`dask.array.map_overlap`: each block is extended with ``depth`` elements of its
    neighbours (per axis: an int, a tuple or a dict), the kernel runs on the extended block
    (``grid="auto"`` and callables see the extended shape), and the halo is trimmed from the
    result (``trim=True``).  At the array's outer edges ``boundary`` says what lies beyond:
    ``"reflect"`` (the edge mirrored, the edge element repeated: numpy's ``"symmetric"``),
    ``"periodic"`` (wrap around), ``"nearest"`` (the edge element repeated), a number
    (that constant), or ``"none"`` (nothing: edge blocks are smaller, and the kernel must
    handle its own edges, e.g. by clamping its indices).  All arrays given must be dask arrays.

    Example
    -------
    >>> smooth = vknb.compile('''
    ... layout(local_size_x = 64) in;
    ... layout(binding = 0) readonly buffer X { float x[]; };
    ... layout(binding = 1) writeonly buffer Y { float y[]; };
    ... layout(push_constant) uniform P { uint n; };
    ... void main() {
    ...     uint i = gl_GlobalInvocationID.x;
    ...     if (i >= n) return;
    ...     y[i] = (x[max(i, 1) - 1] + x[i] + x[min(i + 1, n - 1)]) / 3.0;
    ... }''', name="smooth")                                  # doctest: +SKIP
    >>> y = vknb.dask.map_overlap(smooth, x, depth=1, boundary="periodic",
    ...                           n=lambda x: x.size)         # doctest: +SKIP
    """
    da = _need_dask()
    plan, dask_arrays, ndim = _plan(kernel, arrays, out, grid, dtype, push, "map_overlap")
    if any(src[0] == "value" and np.ndim(src[1]) > 0 for src in plan.sources):
        raise TypeError(
            f"map_overlap({kernel.name}): every array must be a dask array (its blocks get "
            "halos); give small constants as push-constant values"
        )
    return da.map_overlap(
        run_block,
        *dask_arrays,
        depth=depth,
        boundary=boundary,
        trim=trim,
        allow_rechunk=allow_rechunk,
        dtype=plan.dtype,
        meta=np.empty((0,) * ndim, plan.dtype),
        name=_name(kernel, plan, dask_arrays, depth, boundary, trim),
        plan=plan,
    )
