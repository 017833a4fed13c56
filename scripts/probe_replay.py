"""Probe: where the time of replaying a 1-dispatch batch goes, next to the sync call."""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vknb
from benchmarks.suite import TINY_SRC
from vknb import _vk


def per(fn, n: int = 2000, rep: int = 5) -> float:
    out = []
    for _ in range(rep):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(out)


def main() -> None:
    dev = vknb.device()
    lib = _vk.lib
    print(dev.info.name)
    k = vknb.compile(TINY_SRC, name="tiny")
    X = vknb.asarray(np.ones(256, np.float32))
    Y = vknb.asarray(np.zeros(256, np.float32))
    k(X, Y, a=1.0, grid=256)
    with vknb.batch() as b:
        k(X, Y, a=1.0, grid=256)
    out = {
        "sync k()": per(lambda: k(X, Y, a=1.0, grid=256)),
        "b.replay()": per(b.replay),
    }
    sub = b._submit_info
    fence, pf = b._fence, b._pfence
    q = b._handles.get("query")

    def submit_wait():
        lib.vkResetFences(dev.handle, 1, pf)
        if q is not None and dev.host_query_reset:
            lib.vkResetQueryPool(dev.handle, q, 0, 2)
        lib.vkQueueSubmit(dev.compute_queue, 1, sub, fence)
        while lib.vkGetFenceStatus(dev.handle, fence) != 0:
            pass

    out["batch cmd: reset+submit+spin"] = per(submit_wait)
    out["b.submit(wait=False) + b.wait()"] = per(lambda: (b.submit(wait=False), b.wait()))
    t0 = time.perf_counter()
    out["b._finish"] = per(lambda: b._finish(t0))
    for name, v in out.items():
        print(f"  {name:40s} {v:8.2f} us")


if __name__ == "__main__":
    main()
