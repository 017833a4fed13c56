"""Sums and prefix sums on the device: the single-pass kernels, their tuning per device, and the
fallbacks.

``reduce_sum.comp`` adds an array in one dispatch (partial sums per workgroup; the last
workgroup to finish adds them up).  ``scan_lookback.comp`` scans it in one dispatch (chained
scan with decoupled look-back); where the device has no 64-bit atomics, or where lavapipe's
loop guard cut a look-back short, the multi-pass ``scan.comp`` runs instead.

The workgroup size, the elements per invocation and the dispatch cap are chosen once per device
from its properties (:func:`choose_tuning`), and the kernels are compiled with them as
specialization constants; :func:`tuning` returns the choice that was recorded.  Each kernel
keeps its scratch buffers (partial sums, tile status words, counters) between calls: the
kernels leave their counters at zero, so a call never clears anything.

The package passes its ``load`` (the cached kernel loader) into these functions; nothing here
imports ``vknb.library`` itself.

Example
-------
>>> import numpy as np, vknb
>>> from vknb.library import _scan_reduce as sr
>>> t = sr.tuning("scan", vknb.device())
>>> t.kernel in ("scan_lookback", "scan")
True
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compute.kernel import Kernel
from ..core.array import Array, empty, zeros

if TYPE_CHECKING:  # pragma: no cover
    from ..core.device import Device
    from ..core.instance import DeviceInfo

log = logging.getLogger(__name__)

#: The loader the package passes in: ``load(shader_name, **compile_kwargs) -> Kernel``.
Loader = Callable[..., Kernel]

OPS = ("reduce_sum", "scan")

_T_DEFINE = {np.dtype(np.float32): "float", np.dtype(np.int32): "int", np.dtype(np.uint32): "uint"}

# A loop of the kernels runs at most this many iterations per invocation: lavapipe ends every
# loop once an invocation has run 65535 iterations in all (see scan_lookback.comp).
_MAX_LOOP_STEPS = 16384
# The most tiles one workgroup of the scan takes (a handful of loop iterations each).
_MAX_GROUP_TILES = 1024


@dataclass(frozen=True)
class Tuning:
    """The launch shape of one library algorithm on one device, chosen once.

    Attributes
    ----------
    op : str
        ``"reduce_sum"`` or ``"scan"``.
    kernel : str
        The shader that runs: ``reduce_sum``, ``scan_lookback`` (single pass) or ``scan``
        (multi-pass).
    local_size : int
        Workgroup size (specialization constant 0).
    items : int
        Elements per invocation (``ITEMS``, specialization constant 1): per loop step for the
        reduction, per tile for the scan (tile = ``local_size * items``).
    subgroups : bool
        Whether the kernel uses subgroup arithmetic (``SUBGROUPS=1``) or shared memory only.
    max_groups : int
        The most workgroups one dispatch uses.
    vec4 : bool
        16-byte loads (the reduction's ``VEC4``); the scan uses them wherever ``items`` is a
        multiple of 4.
    spins : int
        Reads of a predecessor's status word before the scan adds up that tile itself
        (``SPINS``); 0 where it does not apply.
    reason : str
        Why: the properties of the device the choice was made from.
    striped : bool
        The scan's subgroup-striped loads and stores (``STRIPED``): each subgroup reads a
        contiguous run, one block per load instruction, instead of each invocation reading its
        own ``items`` consecutive elements.

    Example
    -------
    >>> t = Tuning("scan", "scan_lookback", 256, 16, True, 65535, True, 1024, "an example")
    >>> t.tile
    4096
    """

    op: str
    kernel: str
    local_size: int
    items: int
    subgroups: bool
    max_groups: int
    vec4: bool
    spins: int
    reason: str
    striped: bool = False

    @property
    def tile(self) -> int:
        """Elements one workgroup handles per tile (``local_size * items``)."""
        return self.local_size * self.items

    @property
    def single_pass(self) -> bool:
        """Whether the algorithm runs as one dispatch."""
        return self.kernel != "scan"

    def as_dict(self) -> dict[str, Any]:
        """The choice as plain data (for reports and benchmarks).

        Example
        -------
        >>> Tuning("scan", "scan", 256, 4, False, 65535, False, 0, "x").as_dict()["single_pass"]
        False
        """
        d = asdict(self)
        d["tile"] = self.tile
        d["single_pass"] = self.single_pass
        return d


def _pow2_at_most(n: int) -> int:
    p = 1
    while 2 * p <= n:
        p *= 2
    return p


def choose_tuning(op: str, info: DeviceInfo) -> Tuning:
    """The launch shape of ``op`` (``"reduce_sum"`` or ``"scan"``) on a device, from its
    properties: type, subgroup operations, 64-bit atomics, workgroup limits.

    The numbers: bandwidth-bound kernels want enough loads in flight per invocation to cover the
    memory latency: 16 elements (four 16-byte loads) on discrete GPUs, 8 elsewhere; 256
    invocations is a multiple of every subgroup size (8 to 128).  A reduction launches a bounded
    number of workgroups that each add up a contiguous share (about two per multiprocessor of
    the largest GPUs); on a CPU driver, 4-byte loads (a 16-byte load per invocation becomes a
    gather there).  A scan launches one workgroup per tile, up to the dispatch limit (the
    workgroups take tiles in the order in which they start), and needs 64-bit buffer atomics
    for its single pass; without them it runs the multi-pass ``scan.comp``.

    Example
    -------
    >>> import vknb
    >>> from vknb.library._scan_reduce import choose_tuning
    >>> t = choose_tuning("reduce_sum", vknb.devices()[0])
    >>> t.local_size * t.items >= 256
    True
    """
    if op not in OPS:
        raise ValueError(f"no tuning for {op!r}; known: {', '.join(OPS)}")
    limits = info.limits
    ops = set(limits.get("subgroup_operations") or ())
    subgroups = {"basic", "arithmetic"} <= ops
    sg = int(limits.get("subgroup_size") or 1)
    local = min(256, _pow2_at_most(int(limits.get("max_workgroup_invocations") or 128)))
    max_x = int((limits.get("max_workgroup_count") or (65535,))[0])
    kind = info.type
    gpu = kind in ("discrete", "integrated", "virtual")
    why = [f"{info.vendor} {kind} device", f"subgroup size {sg}"]
    why.append("subgroup arithmetic" if subgroups else "no subgroup arithmetic: shared memory")
    if op == "reduce_sum":
        items, cap = {"discrete": (16, 2048), "cpu": (8, 128)}.get(kind, (8, 512))
        why.append("16-byte loads" if gpu else "4-byte loads (vector loads gather on a CPU)")
        return Tuning(
            op, "reduce_sum", local, items, subgroups, min(cap, max_x), gpu, 0, "; ".join(why)
        )
    feats = info.features
    if not (feats.get("int64") and feats.get("atomic_int64")):
        why.append("no 64-bit buffer atomics: multi-pass scan")
        return Tuning(op, "scan", 256, 4, subgroups, max_x, False, 0, "; ".join(why))
    why.append("64-bit atomics: single pass with decoupled look-back")
    items = 16 if kind == "discrete" else 8
    # A GPU gets a workgroup per tile.  A CPU driver runs workgroups on a few threads, where
    # starting one costs more than a tile: a few workgroups per thread each take a share of the
    # tiles, and a waiting one (it holds a thread) adds a late tile up sooner.
    groups, spins = max_x, 1024
    if not gpu:
        groups, spins = min(max_x, 4 * (os.cpu_count() or 4)), 256
        why.append(f"{groups} workgroups (4 per CPU thread)")
    # Subgroup-striped loads and stores where a subgroup tiles the workgroup exactly; measured
    # faster on the H100 (+8 % at 2^24, +62 % at 2^28) and on lavapipe (+5-9 % at 2^20):
    # benchmarks/probes/histscan.py.
    striped = subgroups and items % 4 == 0 and local % sg == 0
    if striped:
        why.append("subgroup-striped loads")
    return Tuning(
        op,
        "scan_lookback",
        local,
        items,
        subgroups,
        groups,
        items % 4 == 0,
        spins,
        "; ".join(why),
        striped,
    )


_tunings: dict[tuple[str, int], tuple[weakref.ref[Device], Tuning]] = {}
_tunings_lock = threading.Lock()


def tuning(op: str, device: Device) -> Tuning:
    """The tuning of ``op`` on ``device``: chosen on first use, then recorded for the device.

    Example
    -------
    >>> import vknb
    >>> from vknb.library._scan_reduce import tuning
    >>> tuning("reduce_sum", vknb.device()) is tuning("reduce_sum", vknb.device())
    True
    """
    key = (op, id(device))
    with _tunings_lock:
        hit = _tunings.get(key)
        if hit is not None and hit[0]() is device:
            return hit[1]
        t = choose_tuning(op, device.info)
        _tunings[key] = (weakref.ref(device), t)
        return t


def load_tuned(load: Loader, t: Tuning, dtype: np.dtype, kernel: str | None = None) -> Kernel:
    """The kernel of a tuning, for ``dtype`` (``kernel`` overrides the shader: the multi-pass
    ``scan`` keeps its own default tile)."""
    name = kernel or t.kernel
    defines: dict[str, Any] = {"T": _T_DEFINE[np.dtype(dtype)], "SUBGROUPS": int(t.subgroups)}
    if name == "scan":
        return load("scan", defines=defines)
    constants: dict[str, Any] = {"ITEMS": t.items}
    if name == "reduce_sum":
        constants["VEC4"] = t.vec4
    else:
        constants["SPINS"] = t.spins
        constants["STRIPED"] = t.striped and t.subgroups
    return load(name, defines=defines, constants=constants, local_size=t.local_size)


# --- scratch buffers, per kernel ----------------------------------------------------------------


class Scratch:
    """Device buffers a kernel keeps between calls (at least 16 elements, grown to powers of
    two on demand), and the lock that keeps two calls from sharing them at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrays: dict[str, Array] = {}

    def get(self, name: str, count: int, dtype: Any, device: Device, *, zero: bool) -> Array:
        """An Array of at least ``count`` elements; a new one is zero-filled if ``zero``."""
        a = self.arrays.get(name)
        if a is not None and (a.closed or a.device is not device or a.size < count):
            a.close()
            a = None
        if a is None:
            size = 1 << max(count - 1, 15).bit_length()  # a power of two: few regrowths
            a = (zeros if zero else empty)(size, dtype, device=device, label=f"scratch:{name}")
            self.arrays[name] = a
        return a

    def close(self) -> None:
        """Free the buffers (after a call using them ends)."""
        with self.lock:
            for a in self.arrays.values():
                a.close()
            self.arrays.clear()


_scratch_lock = threading.Lock()


@contextmanager
def scratch(k: Kernel) -> Iterator[Scratch]:
    """The kernel's scratch buffers, held for one call (kept in ``k.extras``: they go with
    the kernel, through its Arrays' own finalizers, and ``k.close()`` frees them)."""
    with _scratch_lock:
        s = k.extras.get("scratch")
        if s is None:
            s = k.extras["scratch"] = Scratch()
    with s.lock:
        yield s


# --- reduction ----------------------------------------------------------------------------------


def reduce_groups(t: Tuning, n: int) -> int:
    """Workgroups of a reduction over ``n`` elements: enough for the data, at most the tuning's
    cap, and enough that no invocation loops more than ``_MAX_LOOP_STEPS`` times."""
    per_group = t.local_size * t.items
    g = min(-(-n // per_group), t.max_groups)
    return max(1, g, -(-n // (per_group * _MAX_LOOP_STEPS)))


def reduce_sum(load: Loader, x: Any, n: int, dtype: np.dtype, device: Device) -> np.generic:
    """Sum of ``x`` (``n > 0`` elements of ``dtype``; a numpy array or an Array) in one
    dispatch of ``reduce_sum.comp``."""
    t = tuning("reduce_sum", device)
    k = load_tuned(load, t, dtype)
    groups = reduce_groups(t, n)
    with scratch(k) as s:
        sums = s.get("sums", groups + 1, dtype, k.device, zero=False)
        state = s.get("state", 1, np.uint32, k.device, zero=True)
        k(x, sums, state, n=n, groups=groups)
        return sums.buffer.read(dtype, nbytes=np.dtype(dtype).itemsize)[0]


# --- scans --------------------------------------------------------------------------------------


def spec_value(k: Kernel, name: str) -> int:
    """A specialization constant of a kernel: the value it was given, else its default."""
    if name in k.constants:
        return int(k.constants[name])
    for c in k.reflection.spec_constants:
        if c.name == name:
            return int(c.default)
    raise KeyError(f"{k.name} has no specialization constant {name!r}")


def scan_blocks(k: Kernel, x: Any, n: int, exclusive: bool, dtype: np.dtype) -> Array:
    """Multi-pass scan of ``x`` (``n`` elements) with ``scan.comp`` into a new device Array,
    which the caller closes: block scans, a scan of the block totals (recursively), offsets."""
    block = k.local_size[0] * spec_value(k, "ITEMS")
    nblocks = -(-n // block)
    max_x = int(k.device.info.limits["max_workgroup_count"][0])
    if nblocks > max_x:
        raise ValueError(
            f"scan: {n} elements need {nblocks} blocks, beyond the device's {max_x} workgroups"
        )
    y = empty(n, dtype)
    temps = [empty(nblocks, dtype)]
    try:
        k(x, y, temps[0], n=n, exclusive=int(exclusive), mode=0, groups=nblocks)
        if nblocks > 1:
            temps.append(scan_blocks(k, temps[0], nblocks, True, dtype))
            k(y, y, temps[1], n=n, exclusive=0, mode=1, groups=nblocks)
    except BaseException:
        y.close()
        raise
    finally:
        for a in temps:
            a.close()
    return y


def scan_groups(t: Tuning, n: int) -> int:
    """Workgroups of a single-pass scan: one per tile up to the tuning's cap, and enough that
    none scans more than ``_MAX_GROUP_TILES`` tiles (each takes at most its share)."""
    tiles = -(-n // t.tile)
    return max(1, min(tiles, t.max_groups), -(-tiles // _MAX_GROUP_TILES))


def scan_single_pass(
    k: Kernel, x: Any, n: int, exclusive: bool, dtype: np.dtype, groups: int
) -> Array | None:
    """One dispatch of ``scan_lookback.comp`` into a new device Array; None (and the scratch
    reset) when the kernel reports a look-back that lavapipe's loop guard cut short."""
    tile = k.local_size[0] * spec_value(k, "ITEMS")
    tiles = -(-n // tile)
    y = empty(n, dtype)
    try:
        with scratch(k) as s:
            status = s.get("status", tiles, np.uint64, k.device, zero=True)
            state = s.get("state", 4, np.uint32, k.device, zero=True)
            k(x, y, status, state, n=n, exclusive=int(exclusive), groups=groups)
            if int(state.buffer.read(np.uint32, offset=12, nbytes=4)[0]) == 0:
                return y
            log.debug("scan_lookback: a look-back was cut short (lavapipe); rerunning multi-pass")
            status.buffer.fill(0)
            state.buffer.fill(0)
    except BaseException:
        y.close()
        raise
    y.close()
    return None


def scan(
    load: Loader,
    x: Any,
    n: int,
    exclusive: bool,
    dtype: np.dtype,
    device: Device,
    t: Tuning | None = None,
) -> Array:
    """Prefix sum of ``x`` (``n > 0`` elements) into a new device Array, which the caller
    closes: single pass where the tuning says so, else (or if that was cut short) multi-pass.
    ``t`` overrides the device's tuning (tests force the fallbacks with it)."""
    t = t or tuning("scan", device)
    if t.single_pass:
        k = load_tuned(load, t, dtype)
        y = scan_single_pass(k, x, n, exclusive, dtype, scan_groups(t, n))
        if y is not None:
            return y
    return scan_blocks(load_tuned(load, t, dtype, kernel="scan"), x, n, exclusive, dtype)
