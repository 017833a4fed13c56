"""Launch shapes of the histogram and the single-pass scan, next to a compute copy.

Times ``histogram.comp`` (256 bins, uint32 2^26 by default) at several workgroup caps, and
``scan_lookback.comp`` (inclusive uint32, 2^24 and 2^28) at several workgroup sizes, elements
per invocation, and with per-invocation or subgroup-striped loads (``STRIPED``), as GPU time of
bound calls on device arrays, each checked against numpy first.  Each line gives GB/s and the
share of a uvec4 compute copy moving the same bytes in the same process.  The library's
choices (``vknb.library.tuning("scan")``, ``library._HISTOGRAM_GROUPS``) were made from this.

    python -m benchmarks.probes.histscan [--hist-log2 26] [--scan-log2 24,28] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys

import numpy as np

import vknb
from vknb import library
from vknb.library import _scan_reduce as sr

COPY_SRC = """
#version 450
layout(local_size_x = 256) in;
layout(set = 0, binding = 0) readonly buffer X { uvec4 x[]; };
layout(set = 0, binding = 1) writeonly buffer Y { uvec4 y[]; };
layout(push_constant) uniform P { uint n4; };
void main() {
    for (uint i = gl_GlobalInvocationID.x; i < n4; i += gl_NumWorkGroups.x * 256u) {
        y[i] = x[i];
    }
}
"""


def gpu_ms(step: vknb.BoundCall, reps: int = 9) -> float:
    """Median GPU time of ``step()`` after two warm-up calls."""
    for _ in range(2):
        step()
    return statistics.median(step().gpu_ms for _ in range(reps))


def copy_gbs(moved: int) -> float:
    """GB/s (read + write) of a uvec4 compute copy moving ``moved`` bytes in all."""
    n4 = moved // 32
    k = vknb.compile(COPY_SRC, name="copy")
    x, y = vknb.zeros(n4 * 4, np.uint32), vknb.empty(n4 * 4, np.uint32)
    try:
        best = max(moved / gpu_ms(k.bind(x, y, n4=n4, groups=g)) / 1e6 for g in (1024, 4096, 16384))
    finally:
        x.close()
        y.close()
    return best


def histogram(log2: int, caps: list[int]) -> None:
    n, bins = 1 << log2, 256
    rng = np.random.default_rng(1)
    data = {
        "uniform": rng.integers(0, bins, n, dtype=np.uint32),
        "runs of 1-64": np.repeat(
            rng.integers(0, bins, n // 16, dtype=np.uint32), rng.integers(1, 64, n // 16)
        )[:n],
        "one value": np.full(n, 7, np.uint32),
    }
    ceiling = copy_gbs(4 * n)
    print(f"histogram 2^{log2}: copy ceiling {ceiling:,.4g} GB/s", flush=True)
    counts = vknb.zeros(bins, np.uint32)
    try:
        for label, host in data.items():
            x = vknb.asarray(host)
            m = host.size
            ref = np.bincount(host, minlength=bins).astype(np.uint32)
            try:
                k = library.load("histogram")
                for cap in caps:
                    g = min(cap, -(-m // (256 * 8)))
                    counts.buffer.fill(0)
                    step = k.bind(x, counts, n=m, num_bins=bins, groups=g)
                    step()
                    assert np.array_equal(counts.numpy(), ref), f"{label} cap {cap}"
                    gbs = 4 * m / gpu_ms(step) / 1e6
                    share = 100 * gbs / ceiling
                    print(f"  {label}: {g} groups: {gbs:,.4g} GB/s = {share:.1f} %", flush=True)
            finally:
                x.close()
    finally:
        counts.close()
    lib = library._histogram_groups(library.load("histogram"), n)
    print(f"  library.histogram takes {lib} groups here", flush=True)


def scan(log2: int, shapes: list[tuple[int, int, bool]]) -> None:
    n = 1 << log2
    rng = np.random.default_rng(2)
    host = rng.integers(0, 4, n, dtype=np.uint32)
    ref = np.cumsum(host, dtype=np.uint32)
    ceiling = copy_gbs(8 * n)
    print(f"scan 2^{log2}: copy ceiling {ceiling:,.4g} GB/s", flush=True)
    base = sr.tuning("scan", vknb.device())
    if not base.single_pass:
        print("  no single pass on this device (no 64-bit atomics)", flush=True)
        return
    x, y = vknb.asarray(host), vknb.empty(n, np.uint32)
    try:
        for local, items, striped in shapes:
            t = dataclasses.replace(base, local_size=local, items=items, striped=striped)
            k = sr.load_tuned(library.load, t, np.dtype(np.uint32))
            tiles, g = -(-n // t.tile), sr.scan_groups(t, n)
            status, state = vknb.zeros(tiles, np.uint64), vknb.zeros(4, np.uint32)
            try:
                step = k.bind(x, y, status, state, n=n, exclusive=0, groups=g)
                step()
                assert np.array_equal(y.numpy(), ref), f"scan {t}"
                gbs = 8 * n / gpu_ms(step) / 1e6
                what = f"{local} x {items}{' striped' if striped else ''}"
                print(f"  {what}: {gbs:,.4g} GB/s = {100 * gbs / ceiling:.1f} %", flush=True)
            finally:
                status.close()
                state.close()
    finally:
        x.close()
        y.close()
    print(f"  library tuning: {sr.tuning('scan', vknb.device())}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.probes.histscan", description=__doc__)
    ap.add_argument("--hist-log2", type=int, default=26)
    ap.add_argument("--scan-log2", default="24,28")
    ap.add_argument("--quick", action="store_true", help="small sizes, few shapes (lavapipe)")
    args = ap.parse_args(argv)
    print(vknb.device().info.name, flush=True)
    caps = [128, 256, 512, 1024, 2048, 4096, 8192, 32768]
    shapes = [(256, 16, False), (256, 16, True), (256, 32, False), (256, 32, True),
              (512, 16, True), (128, 16, True), (256, 8, True), (1024, 8, True),
              (512, 32, True)]  # fmt: skip
    hist_log2, scan_log2 = args.hist_log2, [int(v) for v in args.scan_log2.split(",")]
    if args.quick:
        caps, shapes, hist_log2, scan_log2 = caps[:3], shapes[:2], 20, [18]
    if hist_log2 > 0:  # (0: the scan only)
        histogram(hist_log2, caps)
    for log2 in scan_log2:
        scan(log2, shapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
