"""Tile configurations of the fp16 tensor-core matmul, next to CuPy's fp16 GEMM.

``matmul_fp16_coopmat.comp`` takes its cooperative-matrix shape and its tiling as defines, so
other configurations can be compiled with ``vknb.library.load(name, defines=...)``.  This
prints the device's cooperative-matrix shapes, checks the default kernel against numpy, then
times every configuration below at SIZE³ (default 4096) for the 16×8×16 shape (``--all-shapes``
for every float16 shape the tiling fits), each with the share of CuPy's fp16 matmul when CuPy
is installed.  Needs ``VK_NV_cooperative_matrix``.

    python -m benchmarks.probes.coopmat [SIZE] [--config I] [--all-shapes]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

import vknb

NAME = "matmul_fp16_coopmat"
# name -> defines (the workgroup tile they make); the first is the shader's default
CONFIGS = {
    "128x256, 8 sg of 64x64, single (default)": {},
    "128x256, 8 sg of 64x64, bands of 8": {"GM": "8u"},
    "128x128, 8 sg of 64x32, double-buffered": {"BN": "128u", "WN": "32u", "NBUF": 2},
    "128x128, 4 sg of 64x64, double-buffered": {"BN": "128u", "THREADS": 128, "NBUF": 2},
    "128x128, 4 sg of 64x64, BK 64": {"BN": "128u", "THREADS": 128, "BK": "64u"},
    "256x128, 8 sg of 64x64": {"BM": "256u", "BN": "128u"},
    "128x256, 8 sg of 64x64, double, BK 16": {"NBUF": 2, "BK": "16u"},
    "128x256, 16 sg of 64x32": {"WN": "32u", "THREADS": 512},
}


def _fp16(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return (rng.random(shape, dtype=np.float32) * 2 - 1).astype(np.float16)


def check(rng: np.random.Generator) -> None:
    """``vknb.library.matmul_fp16`` against numpy, on a padded odd size and on 1024³."""
    for m, n, k in ((200, 136, 40), (1024, 1024, 1024)):
        a, b = _fp16(rng, (m, k)), _fp16(rng, (k, n))
        ref = a.astype(np.float32) @ b.astype(np.float32)
        err = np.abs(vknb.library.matmul_fp16(a, b).astype(np.float32) - ref).max()
        print(f"check {m}x{n}x{k}: max abs error {err:.4f} (|C| up to {np.abs(ref).max():.1f})")
        assert err <= 2e-3 * np.abs(ref).max() + 1e-2, "matmul_fp16 disagrees with numpy"


def time_vknb(n: int, shape: tuple[int, int, int], config: dict, rng: np.random.Generator) -> float:
    """TFLOP/s of one configuration at n³: the median GPU time of 20 bound calls."""
    mm, nn, kk = shape
    bm = int(str(config.get("BM", "128")).rstrip("u"))
    bn = int(str(config.get("BN", "256")).rstrip("u"))
    k = vknb.library.load(NAME, defines={"MMA_M": mm, "MMA_N": nn, "MMA_K": kk, **config})
    a, b = _fp16(rng, (n, n)), _fp16(rng, (n, n))
    A, B = vknb.asarray(a.view(np.uint32)), vknb.asarray(b.view(np.uint32))
    C = vknb.empty((n, n // 2), np.uint32)  # 8 float16 per uvec4 word: read as uint32 pairs
    try:
        step = k.bind(A, B, C, M=n, N=n, K=n, groups=(n // bn, n // bm))
        for _ in range(3):
            step()
        got = C.numpy().view(np.float16)[:64].astype(np.float32)
        ref = a[:64].astype(np.float32) @ b.astype(np.float32)
        assert np.abs(got - ref).max() <= 2e-3 * np.abs(ref).max() + 1e-2, f"{config}: wrong"
        ms = statistics.median(step().gpu_ms for _ in range(20))
    finally:
        for x in (A, B, C):
            x.close()
    return 2 * n**3 / ms / 1e9


def time_cupy(n: int) -> float | None:
    """TFLOP/s of ``cupy.matmul`` on float16 at n³ (CUDA events), or None without CuPy."""
    try:
        import cupy as cp
    except ImportError:
        return None
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.probes.coopmat", description=__doc__)
    ap.add_argument("size", nargs="?", type=int, default=4096, help="M = N = K (default 4096)")
    ap.add_argument("--config", type=int, default=None, help="time only CONFIGS[I]")
    ap.add_argument("--all-shapes", action="store_true", help="every float16 shape that fits")
    args = ap.parse_args(argv)
    n = args.size
    if n % 256:
        ap.error("SIZE must be a multiple of 256")
    configs = list(CONFIGS.items())
    if args.config is not None:
        configs = [configs[args.config]]
    dev = vknb.device()
    print(f"{dev.info.name}: cooperative matrices {dev.cooperative_matrix or 'none'}", flush=True)
    if not dev.cooperative_matrix:
        print("nothing to measure: this device has no VK_NV_cooperative_matrix")
        return 0
    shapes = dev.cooperative_matrix_shapes()
    for s in shapes:
        print("  shape", s)
    print("matmul_fp16 picks", vknb.library.coopmat_shape())
    print("max shared memory per workgroup:", dev.info.limits.get("max_shared_memory"))
    rng = np.random.default_rng(1)
    check(rng)
    fits = sorted(
        (s["M"], s["N"], s["K"])
        for s in shapes
        if (s["A"], s["C"], s["scope"]) == ("float16", "float32", "subgroup")
        and 64 % s["M"] == 0
        and 32 % s["N"] == 0
        and 32 % s["K"] == 0
    )
    if not args.all_shapes:
        fits = [s for s in fits if s == (16, 8, 16)] or fits[:1]
    cu = time_cupy(n)
    print(f"cupy fp16 matmul {n}^3: " + (f"{cu:.1f} TFLOP/s" if cu else "CuPy not installed"))
    for shape in fits:
        for name, config in configs:
            tf = time_vknb(n, shape, config, rng)
            share = f" = {100 * tf / cu:.1f} % of CuPy" if cu else ""
            print(f"vknb {shape} {name} {n}^3: {tf:.1f} TFLOP/s{share}", flush=True)
    if cu:  # CuPy's rate moves with what ran before it: measure it again
        print(f"cupy fp16 matmul {n}^3 again, after: {time_cupy(n):.1f} TFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
