"""Probe: which barrier makes a chain of dependent tiny dispatches cheapest on the GPU?

A batch of N dispatches that each read and write one buffer (a barrier before each), replayed
after the GPU's clocks are up; GPU time per dispatch from timestamps and wall time, for several
access masks on the same COMPUTE_SHADER -> COMPUTE_SHADER barrier. Also prints the device's
cooperative-matrix extensions and its memory types (for the BAR question).

    python scripts/probe_barrier.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vknb
from benchmarks.suite import TINY_SRC

N = 1000
W = 0x40  # VK_ACCESS_SHADER_WRITE_BIT
R = 0x20  # VK_ACCESS_SHADER_READ_BIT
SR = 0x200000000  # VK_ACCESS_2_SHADER_STORAGE_READ_BIT
SW = 0x400000000  # VK_ACCESS_2_SHADER_STORAGE_WRITE_BIT

FLAVORS = {"RW->RW (vknb today)": (R | W, R | W)}
MORE = {  # PROBE_ALL_FLAVORS=1
    "W->RW": (W, R | W),
    "storage W->RW": (SW, SR | SW),
    "W->R": (W, R),
    "execution only": (0, 0),
}
if os.environ.get("PROBE_ALL_FLAVORS") == "1":
    FLAVORS.update(MORE)


def replays(name: str, b, before) -> None:
    """Replay ``b`` 7 times (``before()`` first each time); print GPU and wall time per dispatch."""
    gpus, walls = [], []
    for _ in range(7):
        before()
        t = time.perf_counter()
        b.replay()
        walls.append(time.perf_counter() - t)
        gpus.append(b.gpu_ms)
    print(
        f"{name:24s} gpu {statistics.median(gpus) * 1e3 / N:6.3f} us/disp "
        f"(min {min(gpus) * 1e3 / N:6.3f})  wall {statistics.median(walls) * 1e6 / N:6.3f}",
        flush=True,
    )


def warm(k, X, Y, n) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < 0.3:
        k(X, Y, a=1.0, grid=n)


def main() -> None:
    dev = vknb.device()
    info = dev.info
    print(info.name, info.driver_info, "VKNB_BAR =", os.environ.get("VKNB_BAR"), flush=True)
    print("coop:", [e for e in info.extensions if "cooperative" in e])
    for t in info.memory_types:
        print(
            "memtype", t.index, "heap", t.heap, info.heaps[t.heap].size >> 20, "MiB", t.flag_names
        )
    n = 256
    k = vknb.compile(TINY_SRC, name="tiny")
    X = vknb.asarray(np.ones(n, np.float32))
    Y = vknb.asarray(np.zeros(n, np.float32))
    print("arrays in", Y.buffer.memory_kind, "memory")
    big = 4_000_000
    BX = vknb.asarray(np.ones(big, np.float32))
    BY = vknb.asarray(np.zeros(big, np.float32))
    for name, (src, dst) in FLAVORS.items():
        b = vknb.batch()
        if b._dep is None:
            print("no synchronization2")
            return
        b._barrier2.srcAccessMask = src
        b._barrier2.dstAccessMask = dst
        with b:
            for _ in range(N):
                k(X, Y, a=1.0, grid=n)
        replays(name, b, lambda: warm(k, BX, BY, big))
        b.close()
    event_chain(k, X, Y, n, BX, BY, big)
    print("done")


def event_chain(k, X, Y, n, BX, BY, big) -> None:
    """The same chain with an event set after each dispatch and waited for before the next
    (one event per dispatch, reset from the host before each replay), instead of a barrier."""
    from vknb import _vk

    ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
    dev = vknb.device()
    events = []
    for _ in range(N):
        pe = ffi.new("VkEvent*")
        info = _vk.new("VkEventCreateInfo", {"sType": vk.VK_STRUCTURE_TYPE_EVENT_CREATE_INFO})
        _vk.check(lib.vkCreateEvent(dev.handle, info, ffi.NULL, pe), "vkCreateEvent")
        events.append(pe)
    b = vknb.batch()
    with b:
        k(X, Y, a=1.0, grid=n)  # binds the pipeline, its sets and push constants
        cmd, dep = b._cmd, b._dep
        groups = -(-n // 64)
        for i in range(N - 1):
            lib.vkCmdSetEvent2(cmd, events[i][0], dep)
            lib.vkCmdWaitEvents2(cmd, 1, events[i], dep)
            lib.vkCmdDispatch(cmd, groups, 1, 1)

    def before() -> None:
        for pe in events:
            lib.vkResetEvent(dev.handle, pe[0])
        warm(k, BX, BY, big)

    replays("events (set + wait)", b, before)
    b.close()
    for pe in events:
        lib.vkDestroyEvent(dev.handle, pe[0], ffi.NULL)


if __name__ == "__main__":
    main()
