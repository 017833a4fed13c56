"""Probe: where a synchronous call's microseconds go (tiny kernel, device Arrays), by variant."""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vknb
from benchmarks.suite import TINY_SRC
from vknb.timing import DispatchRecord, record


def loop(fn, inner=2000, rep=9):
    xs = []
    for _ in range(rep):
        t = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        xs.append((time.perf_counter_ns() - t) / inner / 1e3)
    return statistics.median(xs)


def main() -> None:
    X = vknb.asarray(np.ones(256, np.float32))
    Y = vknb.asarray(np.zeros(256, np.float32))
    k = vknb.compile(TINY_SRC, name="tiny")
    k(X, Y, a=1.0, grid=256)
    pipe = k.pipeline
    f = next(iter(k._fast.values()))
    s = pipe._slots[0]

    def d_w():
        pipe.dispatch(f.sets, f.push, f.groups, None)

    def d_w_read():
        pipe.gpu_ms(pipe.dispatch(f.sets, f.push, f.groups, None))

    def d_w_read_rec():
        sl = pipe.dispatch(f.sets, f.push, f.groups, None)
        record(DispatchRecord("tiny", f.groups, (64, 1, 1), pipe.gpu_ms(sl), 0.0))

    variants = {
        "dispatch+wait": d_w,
        "dispatch+wait+gpu_ms": d_w_read,
        "dispatch+wait+gpu_ms+record": d_w_read_rec,
        "full call": lambda: k(X, Y, a=1.0, grid=256),
        "lookup": lambda: k._fast_lookup((X, Y), {"a": 1.0}, 256, None, pipe),
        "gpu_ms": lambda: pipe.gpu_ms(s),
    }
    for gc_on in (True, False):
        if not gc_on:
            gc.disable()
        for _ in range(2):
            out = {name: loop(fn) for name, fn in variants.items()}
            print(
                f"gc {'on ' if gc_on else 'off'}: "
                + ", ".join(f"{n} {v:.1f}" for n, v in out.items())
            )
        gc.enable()


if __name__ == "__main__":
    main()
