"""Probe where the microseconds go on a real GPU (latency floor, allocation, barriers).

python scripts/probe.py   -> prints one section per experiment (used to decide the hot paths).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from tune import SRC

import vknb
from vknb import _vk


def per(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def med(xs):
    return statistics.median(xs) * 1e6


def latency(k, T, U, label):
    lib = _vk.lib
    pipe = k.pipeline
    dev = pipe.device
    k(T, U, a=1.0, n=256, grid=256)
    f = k._fast_lookup((T, U), {"a": 1.0, "n": 256}, 256, None, pipe)[0]
    m = pipe._ts_mapped
    sub, flag, fence, full = [], [], [], []
    clock = time.perf_counter
    for i in range(3000):
        slot = pipe._slots[0]
        if m is not None:
            m[slot.query + 1] = 0
        t0 = clock()
        s = pipe.dispatch(f.sets, f.push, f.groups, None, wait=False)
        t1 = clock()
        if m is not None:
            while m[s.query + 1] == 0:
                pass
        t2 = clock()
        while lib.vkGetFenceStatus(dev.handle, s.fence) != 0:
            pass
        t3 = clock()
        s.busy = False
        if i >= 200:
            sub.append(t1 - t0)
            flag.append(t2 - t1)
            fence.append(t3 - t1)
            full.append(t3 - t0)
    print(
        f"[{label}] submit call {med(sub):.1f} us; flag seen after {med(flag):.1f} us; "
        f"fence after {med(fence):.1f} us; submit+fence {med(full):.1f} us; "
        f"full k() call {per(lambda: k(T, U, a=1.0, n=256, grid=256), 2000):.1f} us"
    )


def main() -> None:
    dev = vknb.device()
    print(dev.info.name, dev.info.driver if hasattr(dev.info, "driver") else "")
    T = vknb.asarray(np.zeros(256, np.float32))
    U = vknb.asarray(np.zeros(256, np.float32))
    k = vknb.compile(SRC, name="saxpy")
    latency(k, T, U, "timestamps on")
    os.environ["VKNB_TIMESTAMPS"] = "0"
    k0 = vknb.compile(SRC + "\n// no ts\n", name="saxpy0")
    latency(k0, T, U, "timestamps off")
    os.environ["VKNB_TIMESTAMPS"] = "1"

    # empty command buffer submit + fence: the driver's floor
    lib, ffi = _vk.lib, _vk.ffi
    xs = []
    for _ in range(2000):
        t0 = time.perf_counter()
        dev.submit(lambda cmd: None, label="empty")
        xs.append(time.perf_counter() - t0)
    print(f"empty one-shot submit+wait via dev.submit: {med(xs[200:]):.1f} us")

    # micro costs of recording
    pipe = k.pipeline
    b = vknb.batch()
    with b:
        cmd = b._cmd
        lib.vkCmdBindPipeline(cmd, 1, pipe.handle)
        bar = b._barrier
        f = k._fast_lookup((T, U), {"a": 1.0, "n": 256}, 256, None, pipe)[0]
        print(
            "cffi: dispatch {:.2f} barrier {:.2f} push {:.2f} us; "
            "fast_lookup {:.2f}; call in batch {:.2f}".format(
                per(lambda: lib.vkCmdDispatch(cmd, 1, 1, 1), 5000),
                per(
                    lambda: lib.vkCmdPipelineBarrier(
                        cmd, 0x800, 0x800, 0, 1, bar, 0, ffi.NULL, 0, ffi.NULL
                    ),
                    5000,
                ),
                per(
                    lambda: lib.vkCmdPushConstants(
                        cmd, pipe.layout, 0x20, 0, pipe.push_size, f.cpush
                    ),
                    5000,
                ),
                per(lambda: k._fast_lookup((T, U), {"a": 1.0, "n": 256}, 256, None, pipe), 5000),
                per(lambda: k(T, U, a=1.0, n=256, grid=256), 5000),
            )
        )

    # barrier cost on the GPU: dependent chain with several barrier forms
    N = 1000
    for name, src_a, dst_a in [
        ("rw->rw (current)", 0x20 | 0x40, 0x20 | 0x40),
        ("w->r", 0x40, 0x20),
        ("execution only", 0, 0),
    ]:
        with vknb.batch() as b:
            b._barrier.srcAccessMask = src_a
            b._barrier.dstAccessMask = dst_a
            if b._dep is not None:  # Vulkan 1.3: the batch records the synchronization2 form
                b._barrier2.srcAccessMask = src_a
                b._barrier2.dstAccessMask = dst_a
            for _ in range(N):
                k(T, U, a=1.0, n=256, grid=256)
        g = []
        r = []
        for _ in range(5):
            t = time.perf_counter()
            b.replay()
            r.append(time.perf_counter() - t)
            g.append(b.gpu_ms)
        print(
            f"dependent x{N} [{name}]: barriers {b.barriers}, "
            f"gpu {statistics.median(g) * 1e3 / N:.2f} us/disp, "
            f"replay {statistics.median(r) * 1e6 / N:.2f} us/disp"
        )
        b.close()
    outs = [vknb.asarray(np.zeros(256, np.float32)) for _ in range(N)]
    with vknb.batch() as b:
        for i in range(N):
            k(T, outs[i], a=1.0, n=256, grid=256)
    g = []
    for _ in range(5):
        b.replay()
        g.append(b.gpu_ms)
    print(
        f"independent x{N}: barriers {b.barriers}, gpu {statistics.median(g) * 1e3 / N:.2f} us/disp"
    )
    b.close()

    # allocation vs copy at 256 MiB
    a = np.random.default_rng(0).random(64 << 20, dtype=np.float32)
    for _ in range(4):
        t0 = time.perf_counter()
        d = vknb.empty(a.shape, np.float32)
        t1 = time.perf_counter()
        d.update(a)
        t2 = time.perf_counter()
        d.close()
        t3 = time.perf_counter()
        e = vknb.asarray(a)
        t4 = time.perf_counter()
        e.close()
        print(
            f"256 MiB: empty {1e3 * (t1 - t0):.2f} ms, update {1e3 * (t2 - t1):.2f} ms, "
            f"close {1e3 * (t3 - t2):.2f} ms; asarray {1e3 * (t4 - t3):.2f} ms "
            f"({a.nbytes / (t4 - t3) / 1e9:.1f} GB/s)"
        )


if __name__ == "__main__":
    main()
