"""Probe: where the microseconds of recording a dispatch go (Batch.extend of bound calls).

Times `Batch.extend` over a dependent chain and over 64 independent calls, and the same with
the vkCmd* functions replaced by no-ops (only for this measurement: the Python part alone), and
the bare cffi calls (bind sets + dispatch, barrier + dispatch) in a loop.

    python scripts/probe_record.py
"""

from __future__ import annotations

import gc
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vknb
from benchmarks.suite import TINY_SRC
from vknb import _vk

N = 4000
KEEP = ("vkCmdWriteTimestamp", "vkCmdResetQueryPool", "vkCmdPipelineBarrier")
KEEP += ("vkCmdCopyQueryPoolResults",)


class _NoCommands:
    """The binding with every vkCmd* recording call a no-op (the Python part alone)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        if name.startswith("vkCmd") and name not in KEEP:
            v = lambda *a: None  # noqa: E731
        else:
            v = getattr(self._real, name)
        setattr(self, name, v)
        return v


def best(fn, reps=7) -> float:
    out = []
    for _ in range(reps):
        out.append(fn())
    out.sort()
    return out[len(out) // 2]


def main() -> None:
    dev = vknb.device()
    print(dev.info.name, flush=True)
    n = 256
    k = vknb.compile(TINY_SRC, name="tiny")
    X = vknb.asarray(np.ones(n, np.float32))
    Y = vknb.asarray(np.zeros(n, np.float32))
    outs = [vknb.zeros(n, np.float32) for _ in range(64)]
    chain = k.bind(X, Y, a=1.0, grid=n)
    steps = [k.bind(X, o, a=1.0, grid=n) for o in outs]
    ind = [steps[i % 64] for i in range(N)]
    gc.disable()

    def extend(calls, stub: bool) -> float:
        b = vknb.batch()
        with b:
            real = _vk.lib
            if stub:
                _vk.lib = _NoCommands(real)
            try:
                t = time.perf_counter()
                b.extend(calls)
                dt = (time.perf_counter() - t) / N * 1e6
            finally:
                _vk.lib = real
            if stub:
                b.entries.clear()  # nothing was recorded: submit nothing but the frame
        b.close()
        return dt

    for name, calls in (("dependent", [chain] * N), ("independent", ind)):
        print(
            f"{name:12s} extend {best(lambda c=calls: extend(c, False)):5.2f} us/disp, "
            f"Python part {best(lambda c=calls: extend(c, True)):5.2f}",
            flush=True,
        )
    lib = _vk.lib
    b = vknb.batch()
    for round_ in ("new command buffer", "same command buffer again", "and again"):
        bare(b, k, chain, steps, lib, round_)
    b.close()
    # The same Batch object re-recorded: does the driver's command memory, grown once, make
    # the calls cheaper?
    b2 = vknb.batch()
    for round_ in ("extend, same Batch 1", "extend, same Batch 2", "extend, same Batch 3"):
        t = time.perf_counter()
        with b2:
            b2.extend(ind)
        print(f"{round_}: {(time.perf_counter() - t) / N * 1e6:.2f} us/disp incl. submit+wait")
    b2.close()


def bare(b, k, chain, steps, lib, round_) -> None:
    with b:
        cmd = b._cmd
        chain()
        pipe = k.pipeline
        N = len(steps) * 62
        sets = [s._item()[2] for s in steps]  # fresh, and pinned by the batch
        bind, disp = lib.vkCmdBindDescriptorSets, lib.vkCmdDispatch
        null = _vk.ffi.NULL
        t = time.perf_counter()
        for i in range(N):
            bind(cmd, 1, pipe.layout, 0, 1, sets[i % 64], 0, null)
            disp(cmd, 4, 1, 1)
        raw_ind = (time.perf_counter() - t) / N * 1e6
        dep, bar = b._dep, lib.vkCmdPipelineBarrier2
        t = time.perf_counter()
        for _ in range(N):
            bar(cmd, dep)
            disp(cmd, 4, 1, 1)
        raw_dep = (time.perf_counter() - t) / N * 1e6
        t = time.perf_counter()
        for _ in range(N):
            disp(cmd, 4, 1, 1)
        raw_disp = (time.perf_counter() - t) / N * 1e6
    print(
        f"bare cffi ({round_}): bind sets + dispatch {raw_ind:.2f}, barrier + dispatch "
        f"{raw_dep:.2f}, dispatch {raw_disp:.2f} us"
    )


if __name__ == "__main__":
    main()
