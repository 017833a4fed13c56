"""Probe: fp16 matrix multiply on tensor cores (shaders/matmul_fp16_coopmat.comp) against CuPy.

Prints the device's cooperative-matrix extensions and shapes, checks the kernel against numpy
(a padded odd size and 1024^3), then times 4096^3 for every shape that fits, next to CuPy's
fp16 matmul on the same machine.

    python scripts/probe_coopmat.py [size]
"""

from __future__ import annotations

import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vknb
from vknb import library


def check(rng) -> None:
    for m, n, k in ((200, 136, 40), (1024, 1024, 1024)):
        a = (rng.random((m, k), dtype=np.float32) * 2 - 1).astype(np.float16)
        b = (rng.random((k, n), dtype=np.float32) * 2 - 1).astype(np.float16)
        ref = a.astype(np.float32) @ b.astype(np.float32)
        got = library.matmul_fp16(a, b).astype(np.float32)
        err = np.abs(got - ref).max()
        scale = np.abs(ref).max()
        print(f"check {m}x{n}x{k}: max abs error {err:.4f} (|C| up to {scale:.1f})", flush=True)
        assert err <= 2e-3 * scale + 1e-2, "matmul_fp16 disagrees with numpy"


CONFIGS = {  # name -> defines (and the workgroup tile they make); the first is the default
    "128x256, 8 sg of 64x64, single (default)": {},
    "128x256, 8 sg of 64x64, bands of 8": {"GM": "8u"},
    "128x128, 8 sg of 64x32, double-buffered": {"BN": "128u", "WN": "32u", "NBUF": 2},
    "128x128, 4 sg of 64x64, double-buffered": {"BN": "128u", "THREADS": 128, "NBUF": 2},
    "128x128, 4 sg of 64x64, BK 64": {"BN": "128u", "THREADS": 128, "BK": "64u"},
    "256x128, 8 sg of 64x64": {"BM": "256u", "BN": "128u"},
    "128x256, 8 sg of 64x64, double, BK 16": {"NBUF": 2, "BK": "16u"},
    "128x256, 16 sg of 64x32": {"WN": "32u", "THREADS": 512},
}
if os.environ.get("PROBE_CONFIG"):  # one of the above, by index
    CONFIGS = dict([list(CONFIGS.items())[int(os.environ["PROBE_CONFIG"])]])


def time_vknb(n: int, shape: tuple[int, int, int], config: dict, rng) -> float:
    mm, nn, kk = shape
    defines = {"MMA_M": mm, "MMA_N": nn, "MMA_K": kk, **config}
    bm = int(str(config.get("BM", "128")).rstrip("u"))
    bn = int(str(config.get("BN", "256")).rstrip("u"))
    k = library.load("matmul_fp16_coopmat", defines=defines)
    a = (rng.random((n, n), dtype=np.float32) - 0.5).astype(np.float16)
    b = (rng.random((n, n), dtype=np.float32) - 0.5).astype(np.float16)
    A, B = vknb.asarray(a.view(np.uint32)), vknb.asarray(b.view(np.uint32))
    C = vknb.empty((n, n // 2), np.uint32)
    step = k.bind(A, B, C, M=n, N=n, K=n, groups=(n // bn, n // bm))
    for _ in range(3):
        step()
    got = C.numpy().view(np.float16)[:64].astype(np.float32)
    ref = a[:64].astype(np.float32) @ b.astype(np.float32)
    assert np.abs(got - ref).max() <= 2e-3 * np.abs(ref).max() + 1e-2, "4096 check"
    ms = statistics.median(step().gpu_ms for _ in range(20))
    for x in (A, B, C):
        x.close()
    return 2 * n**3 / ms / 1e9  # TFLOP/s


def time_cupy(n: int) -> float | str:
    try:
        import cupy as cp
    except ImportError:
        return "cupy not installed"
    a = cp.random.random((n, n), dtype=cp.float32).astype(cp.float16)
    b = cp.random.random((n, n), dtype=cp.float32).astype(cp.float16)
    for _ in range(3):
        cp.matmul(a, b)
    s, e = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(20):
        s.record()
        cp.matmul(a, b)
        e.record()
        e.synchronize()
        times.append(cp.cuda.get_elapsed_time(s, e))
    return 2 * n**3 / statistics.median(times) / 1e9


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    dev = vknb.device()
    print(dev.info.name, "| enabled:", dev.cooperative_matrix, flush=True)
    shapes = dev.cooperative_matrix_shapes()
    for s in shapes:
        print("  shape", s)
    rng = np.random.default_rng(1)
    print("matmul_fp16 picks", library.coopmat_shape(), flush=True)
    check(rng)
    fits = sorted(
        {
            (s["M"], s["N"], s["K"])
            for s in shapes
            if (s["A"], s["C"], s["scope"]) == ("float16", "float32", "subgroup")
            and 64 % s["M"] == 0
            and 32 % s["N"] == 0
            and 32 % s["K"] == 0
        }
    )
    print("max shared memory per workgroup:", dev.info.limits.get("max_shared_memory"))
    cu = time_cupy(n)
    print(f"cupy fp16 matmul {n}^3: {cu if isinstance(cu, str) else f'{cu:.1f} TFLOP/s'}")
    for shape in fits:
        if shape != (16, 8, 16):
            continue  # 16 x 8 x 16 measured fastest on the H100 (16 x 16 x 16: 4x slower)
        for name, config in CONFIGS.items():
            tf = time_vknb(n, shape, config, rng)
            share = f" = {100 * tf / cu:.1f} % of CuPy" if not isinstance(cu, str) else ""
            print(f"vknb {shape} {name} {n}^3: {tf:.1f} TFLOP/s{share}", flush=True)
    cu2 = time_cupy(n)
    if not isinstance(cu2, str):
        print(f"cupy fp16 matmul {n}^3 again, after: {cu2:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
