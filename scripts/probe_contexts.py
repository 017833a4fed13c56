"""Probe: does a second VkDevice in the process (the raw baseline's) slow vknb's replays?

Dependent chain of 1000 tiny dispatches (a barrier each), replayed: GPU time per dispatch and
wall time, (1) with vknb's device alone, (2) with the raw baseline's device open but idle,
(3) alternating with the raw baseline's own replay (what the benchmark's table does).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vknb
from benchmarks.raw_vulkan import RawVulkan, pack
from benchmarks.suite import TINY_SRC

N = 1000


def replays(b, raw=None, reps: int = 9) -> tuple[float, float]:
    walls, gpus = [], []
    for _ in range(reps):
        t = time.perf_counter()
        b.replay()
        walls.append(time.perf_counter() - t)
        gpus.append(b.gpu_ms)
        if raw is not None:
            raw()
    return statistics.median(gpus) * 1e3 / N, statistics.median(walls) * 1e6 / N


def main() -> None:
    dev = vknb.device()
    print(dev.info.name, flush=True)
    n = 256
    k = vknb.compile(TINY_SRC, name="tiny")
    X = vknb.asarray(np.ones(n, np.float32))
    Y = vknb.asarray(np.zeros(n, np.float32))
    outs = [vknb.zeros(n, np.float32) for _ in range(64)]
    with vknb.batch() as dep:
        for _ in range(N):
            k(X, Y, a=1.0, grid=n)
    with vknb.batch() as ind:
        for i in range(N):
            k(X, outs[i % 64], a=1.0, grid=n)
    for label, b in (("dependent", dep), ("independent/64", ind)):
        replays(b)
        g, w = replays(b)
        print(f"[{label}] vknb alone:             gpu {g:.2f} us/disp, replay {w:.2f}", flush=True)
    rv = RawVulkan(dev.info.name)
    rx, ry = rv.buffer(n * 4), rv.buffer(n * 4)
    rv.upload(rx, np.ones(n, np.float32))
    rv.upload(ry, np.zeros(n, np.float32))
    rp = rv.pipeline(k.spirv, 2, 4)
    rds = rp.descriptor_set([rx, ry])
    bc = rv.command_buffer()
    rv.record_batch(bc, rp, rds, [pack("f", 1.0)] * N, (4, 1, 1))
    rv.submit_and_wait(bc)
    for label, b in (("dependent", dep), ("independent/64", ind)):
        replays(b)
        g, w = replays(b)
        print(f"[{label}] raw device open, idle:  gpu {g:.2f} us/disp, replay {w:.2f}", flush=True)
        g, w = replays(b, raw=lambda: rv.submit_and_wait(bc))
        print(f"[{label}] alternating with raw:   gpu {g:.2f} us/disp, replay {w:.2f}", flush=True)
    t = time.perf_counter()
    for _ in range(5):
        rv.submit_and_wait(bc)
    print(f"raw dependent replay: {(time.perf_counter() - t) / 5 / N * 1e6:.2f} us/disp")
    rv.close()
    for label, b in (("dependent", dep), ("independent/64", ind)):
        g, w = replays(b)
        print(f"[{label}] raw device closed again: gpu {g:.2f} us/disp, replay {w:.2f}")


if __name__ == "__main__":
    main()
