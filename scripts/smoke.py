"""A quick end-to-end check of the runtime on whatever device is present (used on the GPU box).

python scripts/smoke.py  -> prints devices, round trips, a saxpy check and rough latencies.
"""

from __future__ import annotations

import time

import numpy as np

import vknb
from vknb import display

SAXPY = """
layout(local_size_x = 256) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
"""


def main() -> None:
    print(display.devices_text())
    dev = vknb.device()
    print("session:", dev.info.name, "|", dev.reason, "| transfer family", dev.transfer_family)
    rng = np.random.default_rng(1)
    for n in (1, 3, 4097, 5 << 20, 256 << 20):
        a = rng.integers(0, 255, n, dtype=np.uint8)
        t0 = time.perf_counter()
        d = vknb.asarray(a)
        t1 = time.perf_counter()
        b = d.numpy()
        t2 = time.perf_counter()
        assert np.array_equal(a, b), n
        if n >= 1 << 20:
            print(
                f"round trip {n >> 20} MiB ok: up {n / (t1 - t0) / 1e9:.2f} GB/s, "
                f"down {n / (t2 - t1) / 1e9:.2f} GB/s"
            )
        d.close()
    k = vknb.compile(SAXPY, name="saxpy")
    n = 1 << 20
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    ref = y + 2.5 * x
    rec = k(x, y, a=2.5, n=n, grid=n)
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    print("saxpy numpy args ok", rec)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    k(X, Y, a=1.0, n=n, grid=n)
    np.testing.assert_allclose(Y.numpy(), y + x, rtol=1e-6)
    tiny = vknb.asarray(np.zeros(256, np.float32))
    for _ in range(50):
        k(tiny, tiny, a=1.0, n=256, grid=256)
    t = time.perf_counter()
    N = 2000
    for _ in range(N):
        k(tiny, tiny, a=1.0, n=256, grid=256)
    print(f"sync dispatch through Kernel call: {(time.perf_counter() - t) / N * 1e6:.1f} us")
    print(display.memory_text(dev))
    print(display.timings_text(vknb.timings(last=3)))
    print("validation errors:", vknb._vk.validation_counts)


if __name__ == "__main__":
    main()
