"""Where the microseconds of a dispatch go (run on the GPU box): a breakdown of the hot path."""

from __future__ import annotations

import time

import numpy as np
from tune import SRC  # the same kernel (scripts/ is on sys.path when run as a script)

import vknb
from vknb import _vk


def per(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    dev = vknb.device()
    k = vknb.compile(SRC, name="saxpy")
    T = vknb.asarray(np.zeros(256, np.float32))
    U = vknb.asarray(np.zeros(256, np.float32))
    k(T, U, a=1.0, n=256, grid=256)
    pipe = k.pipeline
    lib = _vk.lib
    fast = k._fast_lookup((T, U), {"a": 1.0, "n": 256}, 256, None, pipe)[0]
    slot = pipe._slots[0]
    out = {}
    out["fast_lookup"] = per(
        lambda: k._fast_lookup((T, U), {"a": 1.0, "n": 256}, 256, None, pipe), 5000
    )
    out["gpu_ms query"] = per(lambda: pipe.gpu_ms(slot), 5000)
    out["resubmit+wait (recorded)"] = per(
        lambda: pipe.dispatch(fast.sets, fast.push, fast.groups, None), 3000
    )
    out["full call"] = per(lambda: k(T, U, a=1.0, n=256, grid=256), 3000)
    pf = slot.pfence
    out["vkResetFences"] = per(lambda: lib.vkResetFences(dev.handle, 1, pf), 5000)
    out["vkGetFenceStatus"] = per(lambda: lib.vkGetFenceStatus(dev.handle, slot.fence), 5000)
    b = vknb.batch()
    with b:
        out["kernel call in batch (hazard)"] = per(lambda: k(T, U, a=1.0, n=256, grid=256), 5000)
    for name, v in out.items():
        print(f"{name:36s} {v:8.2f} us")
    # independent dispatches: many outputs, read-only input
    outs = [vknb.asarray(np.zeros(256, np.float32)) for _ in range(64)]
    N = 2048
    t = time.perf_counter()
    with vknb.batch() as b2:
        for i in range(N):
            k(T, outs[i % 64], a=1.0, n=256, grid=256)
    rec = (time.perf_counter() - t) / N * 1e6
    t = time.perf_counter()
    b2.replay()
    rep = (time.perf_counter() - t) / N * 1e6
    print(
        f"batch of {N} over 64 outputs: record+submit {rec:.2f} us/disp, barriers {b2.barriers}, "
        f"replay {rep:.2f} us/disp, gpu {b2.gpu_ms * 1e3 / N:.2f} us/disp"
    )


if __name__ == "__main__":
    main()
