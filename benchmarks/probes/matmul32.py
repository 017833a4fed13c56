"""fp32 matmul kernels at large and odd sizes, next to CuPy's fp32 GEMM (cuBLAS, TF32 off).

Times ``matmul.comp`` (64 × 64 tiles), ``matmul_128.comp`` with scalar and with vec4 memory
access and with each of its optional defines (``VARIANTS``), and ``vknb.library.matmul``
(whichever it picks) at each M × N × K below, as GPU time of bound calls on device arrays, each
checked against numpy first.  This is how the library's
choice between the two kernels was made (docs/performance.md).

    python -m benchmarks.probes.matmul32 [M,N,K ...]
"""

from __future__ import annotations

import os
import statistics
import sys

import numpy as np

import vknb
from vknb import library

from .. import peers

SHAPES = [(4096, 4096, 4096), (4000, 4000, 4000), (1000, 3000, 500), (2048, 2048, 2048),
          (1024, 1024, 1024), (512, 512, 512)]  # fmt: skip


# matmul_128.comp's bands of G tile rows (L2 reuse).
VARIANTS: dict[str, dict[str, int]] = {
    "G8": {"GROUP_ROWS": 8},
    "G16": {"GROUP_ROWS": 16},
}


def _kernels(M: int, N: int, K: int) -> dict[str, tuple[str, dict | None, tuple[int, int]]]:
    out = {
        "matmul (64)": ("matmul", None, (-(-N // 64), -(-M // 64))),
        "matmul_128": ("matmul_128", None, (-(-N // 128), -(-M // 128))),
    }
    g128 = (-(-N // 128), -(-M // 128))
    if K % 4 == 0 and N % 4 == 0:
        out["matmul_128 VEC4"] = ("matmul_128", {"VEC4": 1}, g128)
        for label, extra in VARIANTS.items():
            out[f"matmul_128 VEC4 {label}"] = ("matmul_128", {"VEC4": 1, **extra}, g128)
    else:
        for label, extra in VARIANTS.items():
            out[f"matmul_128 {label}"] = ("matmul_128", extra, g128)
    out["library picks"] = library._matmul_choice(M, N, K, vknb.device().info.type)
    return out


def time_vknb(M: int, N: int, K: int, a: np.ndarray, b: np.ndarray, ref: np.ndarray) -> dict:
    A, B, C = vknb.asarray(a), vknb.asarray(b), vknb.empty((M, N), np.float32)
    out = {}
    try:
        for label, (name, defines, groups) in _kernels(M, N, K).items():
            k = library.load(name, defines=defines)
            step = k.bind(A, B, C, M=M, N=N, K=K, groups=groups)
            step()
            err = np.abs(C.numpy() - ref).max()
            assert err <= 1e-3 * np.abs(ref).max(), f"{label}: max error {err}"
            for _ in range(2):
                step()
            ms = statistics.median(step().gpu_ms for _ in range(15))
            out[label] = (2 * M * N * K / ms / 1e6, name, defines)
    finally:
        for x in (A, B, C):
            x.close()
    return out


def time_cupy(a: np.ndarray, b: np.ndarray) -> float | None:
    """GFLOP/s of ``cupy.matmul`` (TF32 off) of a and b, or None without CuPy."""
    try:
        cm = peers.CupyMatmul(a, b)
    except ImportError:
        return None
    for _ in range(3):
        cm.run()
    ms = statistics.median(peers.cupy_gpu_ms(cm.run) for _ in range(15))
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / ms / 1e6


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("CUPY_TF32", "0")  # before CuPy is imported: no TF32
    args = sys.argv[1:] if argv is None else argv
    shapes = [tuple(int(v) for v in s.split(",")) for s in args] or SHAPES
    print(vknb.device().info.name, flush=True)
    rng = np.random.default_rng(1)
    for M, N, K in shapes:
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        ref = a @ b
        cu = time_cupy(a, b)
        res = time_vknb(M, N, K, a, b, ref)
        for label, (tf, _, _) in res.items():
            share = f" = {100 * tf / cu:.1f} % of CuPy" if cu else ""
            print(f"{M}x{N}x{K} {label}: {tf:,.0f} GFLOP/s{share}", flush=True)
        if cu:
            print(f"{M}x{N}x{K} cupy: {cu:,.0f} GFLOP/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
