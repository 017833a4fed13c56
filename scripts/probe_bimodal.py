"""Probe: one process's median sync-call latency, with where it ran (a run of many processes
shows whether the latency is bimodal per process, and what the process's threads were doing)."""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vknb
from benchmarks.suite import TINY_SRC


def cpu() -> int:
    """The CPU this thread last ran on (field 39 of /proc/self/stat)."""
    with open("/proc/thread-self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])


def yielding_wait(self, fence, label, timeout=None, pfence=None) -> None:
    """The device's fence wait with os.sched_yield() between polls (for --yield)."""
    from vknb import _vk

    lib, h = _vk.lib, self.handle
    end = time.perf_counter() + self._spin_s
    while time.perf_counter() < end:
        r = lib.vkGetFenceStatus(h, fence)
        if r == 0:
            return
        os.sched_yield()
    lib.vkWaitForFences(h, 1, pfence or _vk.ffi.new("VkFence*", fence), 1, 10**10)


def main() -> None:
    if "--yield" in sys.argv:
        from vknb._device import Device

        Device._wait_fence = yielding_wait
    k = vknb.compile(TINY_SRC, name="tiny")
    X = vknb.asarray(np.ones(256, np.float32))
    Y = vknb.asarray(np.zeros(256, np.float32))
    for _ in range(500):
        k(X, Y, a=1.0, grid=256)
    cpu0 = cpu()
    raw = None
    if "--with-raw" in sys.argv:  # alternate with the raw baseline's device, as the suite does
        from benchmarks.raw_vulkan import RawVulkan, pack

        rv = RawVulkan(vknb.device().info.name)
        rx, ry = rv.buffer(256 * 4), rv.buffer(256 * 4)
        rp = rv.pipeline(k.spirv, 2, 4)
        rds = rp.descriptor_set([rx, ry])

        def raw() -> None:
            rv.sync_dispatch(rp, rds, pack("f", 1.0), (4, 1, 1))

    xs = []
    for _ in range(9):
        t = time.perf_counter()
        for _ in range(500):
            k(X, Y, a=1.0, grid=256)
        xs.append((time.perf_counter() - t) / 500 * 1e6)
        if raw is not None:
            for _ in range(100):
                raw()
    threads = len(os.listdir("/proc/self/task"))
    print(
        f"median {statistics.median(xs):6.1f} us  min {min(xs):6.1f}  max {max(xs):6.1f}  "
        f"cpu {cpu0}->{cpu()}  threads {threads}  "
        f"spin {os.environ.get('VKNB_SPIN_US', 'default')}"
        + ("  alternating with raw" if raw is not None else "")
        + ("  yielding" if "--yield" in sys.argv else ""),
        flush=True,
    )


if __name__ == "__main__":
    main()
