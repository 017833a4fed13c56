"""The LSD radix sort behind ``vknb.library.sort``, ``argsort`` and ``sort_pairs`` (large n).

32-bit keys (uint32; int32 and float32 through radix_sort.glsl's order-preserving bit
transforms), 8-bit digits, four passes at shifts 0, 8, 16, 24.  A pass is three dispatches over
tiles of ``256 * items`` keys, one workgroup per tile:

1. ``radix_sort_count``: each tile's 256 digit counts, digit-major (``counts[d * nblocks + b]``);
2. ``radix_sort_scan``: those counts -> global offsets (one workgroup per digit, or a single
   one for up to :data:`SCAN_ONE_GROUP_MAX` tiles; with the exclusive prefix of the digit
   totals);
3. ``radix_sort_scatter``: each tile ranks its keys stably (subgroup ballots where the device
   has them, shared memory otherwise), sorts itself in shared memory and writes its digit runs
   to their offsets.  Values (or, for an argsort, the keys' indices) move along.

The first count (mode 1) also adds up the digit totals of all four passes: they do not change
from pass to pass.  They are read back (4 KiB) before the passes run, and a pass whose digit is
the same for every key is skipped (keys below 2^24 need three passes, below 2^16 two, ...).  The
passes then run as one submission (``vknb.batch``) on the keys' device; a device Array is
read in place (never written), and temporary buffers are freed before returning.

Example
-------
>>> import numpy as np
>>> from vknb import library
>>> from vknb.library import _radix
>>> keys = np.array([3, 1, 2, 1], np.uint32)
>>> _radix.radix_sort(library.load, keys, iota=True)
(array([1, 1, 2, 3], dtype=uint32), array([1, 3, 2, 0], dtype=uint32))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..compute.batch import batch, current
from ..compute.kernel import Kernel
from ..core.array import Array, asarray, empty
from ..core.session import device as session_device

#: The radix sort's key dtypes, and the ``KEY`` / ``VALUE`` define of each.
TYPE_NAMES: dict[np.dtype, str] = {
    np.dtype(np.uint32): "uint",
    np.dtype(np.int32): "int",
    np.dtype(np.float32): "float",
}

_WG = 256  # the kernels' workgroup size (fixed: one digit per invocation)
_SHARED_EXTRA = 3 * 256 * 4  # radix_sort_scatter's shared arrays besides its region
#: Up to this many tiles radix_sort_scan runs as one workgroup (a row per invocation), beyond
#: as one workgroup per digit: 256 small workgroups cost more than the serial rows (3 ms against
#: 0.03 ms a pass on lavapipe).
SCAN_ONE_GROUP_MAX = 64


class RadixTuning(NamedTuple):
    """How the radix kernels are compiled for a device.

    Example
    -------
    >>> RadixTuning(items=16, subgroups=32, ballot=True, arithmetic=True).tile
    4096
    """

    items: int  # keys per invocation (ITEMS): tiles of 256 * items keys
    subgroups: int  # digit counter sets (SUBGROUPS): >= 256 / subgroup size, >= 8
    ballot: bool  # rank with subgroup ballots (SUBGROUP_BALLOT)
    arithmetic: bool  # workgroup scans with subgroup arithmetic (SUBGROUP_ARITHMETIC)

    @property
    def tile(self) -> int:
        """Keys per tile (per workgroup)."""
        return _WG * self.items


def scatter_shared_bytes(items: int, subgroups: int) -> int:
    """Shared memory of ``radix_sort_scatter`` compiled with ``ITEMS`` and ``SUBGROUPS``.

    Example
    -------
    >>> scatter_shared_bytes(16, 32)
    19456
    """
    return 4 * max(_WG * items, max(8, subgroups) * 128) + _SHARED_EXTRA


def tuning(device: Any) -> RadixTuning:
    """The tuning for a device: ballots and subgroup scans where it has them (``basic``,
    ``ballot`` and ``arithmetic`` subgroup operations, a subgroup size dividing 256), the
    largest tile of 4096, 2048 or 1024 keys that fits its shared memory.

    Example
    -------
    >>> import vknb
    >>> tuning(vknb.device())                # lavapipe: 8-wide subgroups, 32 KiB shared
    RadixTuning(items=16, subgroups=32, ballot=True, arithmetic=True)
    """
    limits = device.info.limits
    size = int(limits.get("subgroup_size") or 0)
    ops = set(limits.get("subgroup_operations") or ())
    shared = int(limits.get("max_shared_memory") or 16384)
    fits = 0 < size <= 128 and _WG % size == 0
    ballot = fits and {"basic", "ballot"} <= ops
    arithmetic = fits and {"basic", "arithmetic"} <= ops
    for use_ballot in (True, False) if ballot else (False,):
        for items in (16, 8, 4):
            # Counter sets for the subgroups, or as many as the tile's region holds anyway
            # (more sets cost nothing and cover drivers that pick smaller subgroups).
            sets = max(8, 2 * items, _WG // size if use_ballot else 8)
            if scatter_shared_bytes(items, sets) <= shared:
                return RadixTuning(items, sets, use_ballot, arithmetic)
    return RadixTuning(4, 8, False, arithmetic)  # 7 KiB: within Vulkan's minimum of 16 KiB


def order_bits(keys: np.ndarray) -> np.ndarray:
    """The uint32 whose unsigned order is the keys' order (radix_sort.glsl's ``radix_order``)
    of a uint32, int32 or float32 numpy array: the sign bit flipped for int32; for float32 the
    sign bit of non-negative and all bits of negative numbers, -0.0 as +0.0, NaN last.

    Example
    -------
    >>> order_bits(np.array([-1.0, 0.0, -0.0, np.inf, np.nan], np.float32))
    array([1082130431, 2147483648, 2147483648, 4286578688, 4294967295], dtype=uint32)
    """
    if keys.dtype == np.uint32:
        return keys
    if keys.dtype == np.int32:
        return keys.view(np.uint32) ^ np.uint32(0x80000000)
    bits = keys.view(np.uint32).copy()
    bits[bits == 0x80000000] = 0
    out = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    out[np.isnan(keys)] = 0xFFFFFFFF
    return out.astype(np.uint32, copy=False)


def _host(x: Any) -> np.ndarray:
    return (x.numpy() if isinstance(x, Array) else np.asarray(x)).reshape(-1)


def radix_sort(
    load: Callable[..., Kernel],
    keys: Any,
    values: Any = None,
    *,
    iota: bool = False,
    tune: RadixTuning | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sort keys stably on the device; move values (or the keys' indices) along.

    Parameters
    ----------
    load : callable
        ``vknb.library.load`` (compiles and caches the kernels).
    keys : Array or ndarray
        uint32, int32 or float32 (a numpy array C-contiguous); a device Array stays where it
        is: only the 4 KiB of digit totals and the result come back.
    values : Array or ndarray, optional
        uint32, int32 or float32, as many as keys.
    iota : bool
        Without ``values``: return the indices that sort the keys (uint32) as the values.
    tune : RadixTuning, optional
        Default: :func:`tuning` of the keys' device.

    Returns
    -------
    (ndarray, ndarray or None)
        The sorted keys (flattened), and the values in the same order (None without values
        and ``iota``).

    Example
    -------
    >>> from vknb import library
    >>> k, v = radix_sort(library.load, np.array([2.5, -1, 2.5], np.float32),
    ...                   np.array([7, 8, 9], np.int32))
    >>> k, v
    (array([-1. ,  2.5,  2.5], dtype=float32), array([8, 7, 9], dtype=int32))
    """
    if current() is not None:
        raise RuntimeError(
            "vknb.library's sorts read their results back, so they cannot run inside a "
            "`with vknb.batch()` block: call them outside it"
        )
    kdt = np.dtype(keys.dtype)
    n = int(np.prod(keys.shape))
    with_values = values is not None or iota
    vdt = np.dtype(values.dtype) if values is not None else np.dtype(np.uint32)
    dev = keys.device if isinstance(keys, Array) else session_device()
    tune = tune or tuning(dev)
    nblocks = -(-n // tune.tile)
    max_groups = int(dev.info.limits["max_workgroup_count"][0])
    if nblocks > max_groups:
        raise ValueError(
            f"sort: {n} keys make {nblocks} tiles of {tune.tile}, more than the "
            f"{max_groups} workgroups {dev.label} can dispatch"
        )
    # Kernels and temporaries go to the keys' device (load's default: the session device).
    on: dict[str, Any] = {} if dev is session_device() else {"device": dev}
    key_t = {"KEY": TYPE_NAMES[kdt]}
    kc = load("radix_sort_count", defines=key_t, constants={"ITEMS": tune.items}, **on)
    arith = {"SUBGROUP_ARITHMETIC": 1} if tune.arithmetic else {}
    ks = load("radix_sort_scan", **({"defines": arith} if arith else {}), **on)
    defines: dict[str, Any] = dict(key_t, **arith)
    if with_values:
        defines.update(WITH_VALUES=1, VALUE=TYPE_NAMES[vdt])
    if tune.ballot:
        defines["SUBGROUP_BALLOT"] = 1
    kx = load(
        "radix_sort_scatter",
        defines=defines,
        constants={"ITEMS": tune.items, "SUBGROUPS": tune.subgroups},
        **on,
    )

    temps: list[Array] = []

    def temp(a: Array) -> Array:
        temps.append(a)
        return a

    try:
        src = keys if isinstance(keys, Array) else temp(asarray(keys, device=dev))
        vsrc = values
        if values is not None and not isinstance(values, Array):
            vsrc = temp(asarray(values, device=dev))
        counts = temp(empty(_WG * nblocks, np.uint32, device=dev))
        totals = temp(empty(4 * 256, np.uint32, device=dev))
        with batch(dev):
            kc(src, counts, totals, n=n, shift=0, mode=2, groups=1)
            kc(src, counts, totals, n=n, shift=0, mode=1, groups=nblocks)
        per_pass = totals.numpy().reshape(4, 256)
        passes = [p for p in range(4) if int(per_pass[p].max()) != n]
        if not passes:  # one order value for all keys: they are sorted as they are
            out_v = np.arange(n, dtype=np.uint32) if iota else None
            if values is not None:
                out_v = _host(vsrc)
            return _host(src), out_v

        kbuf = [temp(empty(n, kdt, device=dev)) for _ in range(min(2, len(passes)))]
        vbuf = [temp(empty(n, vdt, device=dev)) for _ in range(len(kbuf) if with_values else 0)]
        cur, vcur = src, vsrc
        scan_groups = 1 if nblocks <= SCAN_ONE_GROUP_MAX else _WG
        with batch(dev):
            for i, p in enumerate(passes):
                shift = 8 * p
                if i > 0 or p != 0:  # pass 0's counts came with the totals
                    kc(cur, counts, totals, n=n, shift=shift, mode=0, groups=nblocks)
                ks(counts, totals, nblocks=nblocks, shift=shift, groups=scan_groups)
                out = kbuf[i % 2]
                if with_values:
                    vout = vbuf[i % 2]
                    first_iota = iota and i == 0
                    vin = vout if first_iota else vcur  # iota: values_in is not read
                    kx(
                        cur,
                        out,
                        counts,
                        vin,
                        vout,
                        n=n,
                        shift=shift,
                        iota=int(first_iota),
                        groups=nblocks,
                    )
                    vcur = vout
                else:
                    kx(cur, out, counts, n=n, shift=shift, iota=0, groups=nblocks)
                cur = out
        return _host(cur), (_host(vcur) if with_values else None)
    finally:
        for a in temps:
            a.close()
