"""Tuning probe for the transfer path and the dispatch hot path (run on the GPU box).

python scripts/tune.py          -> one line of numbers for the current environment
(VKNB_STAGING_MB, VKNB_COPY_THREADS, VKNB_BAR and VKNB_SPIN_US change what it measures).
"""

from __future__ import annotations

import os
import time

import numpy as np

import vknb

SRC = """
layout(local_size_x = 256) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
"""


def best(fn, n=3):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main() -> None:
    vknb.device()
    a = np.random.default_rng(0).random((64 << 20) // 1, dtype=np.float32)  # 256 MiB
    d = vknb.asarray(a)
    o = np.empty_like(a)
    up = a.nbytes / best(lambda: d.update(a)) / 1e9
    down = a.nbytes / best(lambda: d.numpy(out=o)) / 1e9
    assert np.array_equal(o, a)
    k = vknb.compile(SRC, name="saxpy")
    T = vknb.asarray(np.zeros(256, np.float32))
    for _ in range(200):
        k(T, T, a=1.0, n=256, grid=256)
    N = 3000
    t = time.perf_counter()
    for _ in range(N):
        k(T, T, a=1.0, n=256, grid=256)
    sync_us = (time.perf_counter() - t) / N * 1e6
    with vknb.batch() as b:
        for _ in range(100):
            k(T, T, a=1.0, n=256, grid=256)
    U = vknb.asarray(np.zeros(256, np.float32))
    N = 2000
    t = time.perf_counter()
    with vknb.batch() as b:
        for _ in range(N):
            k(T, U, a=1.0, n=256, grid=256)
    rec_us = b.record_ms * 1e3 / N
    tot_us = (time.perf_counter() - t) / N * 1e6
    t = time.perf_counter()
    b.replay()
    rep_us = (time.perf_counter() - t) / N * 1e6
    n = 1 << 26 if vknb.device().info.limits["max_workgroup_count"][0] >= (1 << 18) else 1 << 23
    X = vknb.asarray(np.ones(n, np.float32))
    Y = vknb.asarray(np.ones(n, np.float32))
    gpu = min(k(X, Y, a=1.0, n=n, grid=n).gpu_ms for _ in range(5))
    env = {
        k_: os.environ.get(k_)
        for k_ in ("VKNB_STAGING_MB", "VKNB_COPY_THREADS", "VKNB_BAR", "VKNB_SPIN_US")
        if os.environ.get(k_)
    }
    print(
        f"{env} up {up:.1f} GB/s down {down:.1f} GB/s | sync {sync_us:.1f} us | batch record "
        f"{rec_us:.2f} us/disp (incl submit {tot_us:.2f}) replay {rep_us:.2f} us/disp gpu "
        f"{b.gpu_ms:.2f} ms | saxpy {n} {gpu:.3f} ms = {12 * n / gpu / 1e6:.0f} GB/s"
    )


if __name__ == "__main__":
    main()
