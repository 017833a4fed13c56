"""Probe (session 3): how a sync call waits, and what secondary command buffers do for batches.

python scripts/probe_s3.py  -> one line per variant. Sections:

1. sync round trip of the tiny kernel, pre-recorded: fence (today), timeline semaphore,
   a flag written by the GPU into host memory, vkQueueSubmit2; and the Python pieces of a call.
2. 1000 dispatches in one submission, dependent (a barrier each) and independent (64 outputs):
   recorded inline (today) versus one vkCmdExecuteCommands over cached secondary command buffers
   (host cost to build, replay time and GPU time of each).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import vknb
from benchmarks.suite import TINY_SRC
from vknb import _vk
from vknb.timing import DispatchRecord, record

ffi = lib = vk = None  # set in main(), once the device has loaded the binding


def st(name: str) -> int:
    return getattr(vk, "VK_STRUCTURE_TYPE_" + name)


def gpu_irqs() -> int:
    """Interrupts the GPU driver has raised so far (Linux /proc/interrupts), else -1."""
    try:
        with open("/proc/interrupts") as f:
            lines = f.read().splitlines()
    except OSError:
        return -1
    return sum(
        sum(int(v) for v in line.split()[1:] if v.isdigit()) for line in lines if "nvidia" in line
    )


def med_us(xs: list[float]) -> float:
    return statistics.median(xs) * 1e6


def per(fn, n: int = 3000, rep: int = 5) -> float:
    out = []
    for _ in range(rep):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n)
    return med_us(out)


def main() -> None:
    global ffi, lib, vk
    dev = vknb.device()
    ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
    dh = dev.handle
    print(dev.info.name, dev.info.driver_info, flush=True)
    X = vknb.asarray(np.ones(256, np.float32))
    Y = vknb.asarray(np.zeros(256, np.float32))
    k = vknb.compile(TINY_SRC, name="tiny")
    k(X, Y, a=1.0, grid=256)
    pipe = k.pipeline
    f = k._fast_lookup((X, Y), {"a": 1.0}, 256, None, pipe)[0]
    gc.disable()

    # ---- 1. sync round trip -------------------------------------------------------------
    out = {}
    out["full k() call"] = per(lambda: k(X, Y, a=1.0, grid=256))
    out["pipe.dispatch+wait"] = per(lambda: pipe.dispatch(f.sets, f.push, f.groups, None))
    slot = pipe.dispatch(f.sets, f.push, f.groups, None)
    out["gpu_ms read"] = per(lambda: pipe.gpu_ms(slot))
    out["fast lookup"] = per(lambda: k._fast_lookup((X, Y), {"a": 1.0}, 256, None, pipe))
    out["DispatchRecord()"] = per(
        lambda: DispatchRecord("t", (4, 1, 1), (64, 1, 1), 0.1, 0.1, 0, 0, "d", 0.0, None, 8)
    )
    r0 = DispatchRecord("t", (4, 1, 1), (64, 1, 1), 0.1, 0.1, 0, 0, "d", 0.0, None, 8)
    out["record()"] = per(lambda: record(r0))
    out["time.time+2 perf_counter"] = per(
        lambda: (time.perf_counter(), time.perf_counter(), time.time())
    )
    out["vkResetFences"] = per(lambda: lib.vkResetFences(dh, 1, slot.pfence))
    out["vkResetQueryPool"] = per(lambda: lib.vkResetQueryPool(dh, pipe.query_pool, 0, 2))
    out["vkGetFenceStatus"] = per(lambda: lib.vkGetFenceStatus(dh, slot.fence))
    q = dev.compute_queue
    cmd = slot.cmd

    def raw_fence():
        lib.vkResetFences(dh, 1, slot.pfence)
        lib.vkResetQueryPool(dh, pipe.query_pool, slot.query, 2)
        lib.vkQueueSubmit(q, 1, slot.submit_info, slot.fence)
        while lib.vkGetFenceStatus(dh, slot.fence) != 0:
            pass

    out["raw: reset+submit+spin fence"] = per(raw_fence)

    # timeline semaphore
    tinfo = _vk.new(
        "VkSemaphoreTypeCreateInfo",
        {"sType": st("SEMAPHORE_TYPE_CREATE_INFO"), "semaphoreType": 1},
    )
    sinfo = _vk.new(
        "VkSemaphoreCreateInfo",
        {"sType": st("SEMAPHORE_CREATE_INFO"), "pNext": tinfo},
    )
    psem = ffi.new("VkSemaphore*")
    lib.vkCreateSemaphore(dh, sinfo, ffi.NULL, psem)
    sem = psem[0]
    val = ffi.new("uint64_t[1]")
    ts_submit = _vk.new(
        "VkTimelineSemaphoreSubmitInfo",
        {
            "sType": st("TIMELINE_SEMAPHORE_SUBMIT_INFO"),
            "signalSemaphoreValueCount": 1,
            "pSignalSemaphoreValues": val,
        },
    )
    sub_t = _vk.new(
        "VkSubmitInfo",
        {
            "sType": st("SUBMIT_INFO"),
            "pNext": ts_submit,
            "commandBufferCount": 1,
            "pCommandBuffers": slot.pcmd,
            "signalSemaphoreCount": 1,
            "pSignalSemaphores": psem,
        },
    )
    got = ffi.new("uint64_t*")
    counter = [0]

    def raw_timeline():
        counter[0] += 1
        v = counter[0]
        val[0] = v
        lib.vkResetQueryPool(dh, pipe.query_pool, slot.query, 2)
        lib.vkQueueSubmit(q, 1, sub_t, ffi.NULL)
        while True:
            lib.vkGetSemaphoreCounterValue(dh, sem, got)
            if got[0] >= v:
                break

    out["raw: submit + spin timeline semaphore"] = per(raw_timeline)

    # vkQueueSubmit2
    cbi = _vk.new(
        "VkCommandBufferSubmitInfo",
        {"sType": st("COMMAND_BUFFER_SUBMIT_INFO"), "commandBuffer": cmd},
    )
    s2 = _vk.new(
        "VkSubmitInfo2",
        {
            "sType": st("SUBMIT_INFO_2"),
            "commandBufferInfoCount": 1,
            "pCommandBufferInfos": cbi,
        },
    )

    def raw_submit2():
        lib.vkResetFences(dh, 1, slot.pfence)
        lib.vkResetQueryPool(dh, pipe.query_pool, slot.query, 2)
        lib.vkQueueSubmit2(q, 1, s2, slot.fence)
        while lib.vkGetFenceStatus(dh, slot.fence) != 0:
            pass

    try:
        out["raw: vkQueueSubmit2 + spin fence"] = per(raw_submit2)
    except Exception as e:
        out["raw: vkQueueSubmit2"] = f"failed: {e}"

    # a flag written by the GPU after the dispatch (vkCmdFillBuffer into host memory)
    flag = vknb.Buffer(64, memory="readback")
    fa = flag._check()
    fptr = ffi.cast("uint32_t *", fa.mapped)
    pcmd2 = ffi.new("VkCommandBuffer*", dev._new_cmd(dev.compute_pool)[0])
    c2 = pcmd2[0]
    lib.vkBeginCommandBuffer(
        c2,
        _vk.new("VkCommandBufferBeginInfo", {"sType": st("COMMAND_BUFFER_BEGIN_INFO")}),
    )
    pipe.record(c2, f.sets, f.push, f.groups, slot.query)
    bar = _vk.new(
        "VkMemoryBarrier",
        {
            "sType": st("MEMORY_BARRIER"),
            "srcAccessMask": 0x40,
            "dstAccessMask": 0x1000,
        },
    )
    lib.vkCmdPipelineBarrier(c2, 0x800, 0x1000, 0, 1, bar, 0, ffi.NULL, 0, ffi.NULL)
    lib.vkCmdFillBuffer(c2, flag.handle, 0, 4, 1)
    lib.vkEndCommandBuffer(c2)
    sub_f = _vk.new(
        "VkSubmitInfo",
        {
            "sType": st("SUBMIT_INFO"),
            "commandBufferCount": 1,
            "pCommandBuffers": pcmd2,
        },
    )
    t_flag, t_fence, t_full = [], [], []
    for i in range(3000):
        fptr[0] = 0
        t0 = time.perf_counter()
        lib.vkResetFences(dh, 1, slot.pfence)
        lib.vkResetQueryPool(dh, pipe.query_pool, slot.query, 2)
        lib.vkQueueSubmit(q, 1, sub_f, slot.fence)
        t1 = time.perf_counter()
        while fptr[0] == 0:
            pass
        t2 = time.perf_counter()
        while lib.vkGetFenceStatus(dh, slot.fence) != 0:
            pass
        t3 = time.perf_counter()
        if i > 300:
            t_flag.append(t2 - t0)
            t_fence.append(t3 - t0)
            t_full.append(t1 - t0)
    out["flag: submit call"] = med_us(t_full)
    out["flag: flag seen after"] = med_us(t_flag)
    out["flag: fence seen after"] = med_us(t_fence)

    # the floor: empty command buffer
    pcmd3 = ffi.new("VkCommandBuffer*", dev._new_cmd(dev.compute_pool)[0])
    lib.vkBeginCommandBuffer(
        pcmd3[0],
        _vk.new("VkCommandBufferBeginInfo", {"sType": st("COMMAND_BUFFER_BEGIN_INFO")}),
    )
    lib.vkEndCommandBuffer(pcmd3[0])
    sub_e = _vk.new(
        "VkSubmitInfo",
        {
            "sType": st("SUBMIT_INFO"),
            "commandBufferCount": 1,
            "pCommandBuffers": pcmd3,
        },
    )

    def raw_empty():
        lib.vkResetFences(dh, 1, slot.pfence)
        lib.vkQueueSubmit(q, 1, sub_e, slot.fence)
        while lib.vkGetFenceStatus(dh, slot.fence) != 0:
            pass

    out["raw: empty cb submit+spin fence"] = per(raw_empty)
    for name, v in out.items():
        print(f"  {name:42s} {v:8.2f} us" if isinstance(v, float) else f"  {name}: {v}", flush=True)
    # second pass of the main ones (the host swings)
    for name, fn in [
        ("full k() call", lambda: k(X, Y, a=1.0, grid=256)),
        ("raw fence", raw_fence),
        ("raw timeline", raw_timeline),
        ("raw empty", raw_empty),
    ]:
        i0 = gpu_irqs()
        us = per(fn)
        irq = (gpu_irqs() - i0) / (5 * 3000) if i0 >= 0 else float("nan")
        print(f"  again {name:36s} {us:8.2f} us, {irq:.2f} GPU interrupts per call", flush=True)
    lib.vkDeviceWaitIdle(dh)
    lib.vkDestroySemaphore(dh, sem, ffi.NULL)

    # ---- 2. batches: inline vs secondary command buffers ---------------------------------
    if "--sync-only" not in sys.argv:
        batches(dev, k, X, Y)
    gc.enable()


def batches(dev, k, X, Y) -> None:
    dh = dev.handle
    pipe = k.pipeline
    N = 1000
    outs = [vknb.asarray(np.zeros(256, np.float32)) for _ in range(64)]
    pool_p = ffi.new("VkCommandPool*")
    lib.vkCreateCommandPool(
        dh,
        _vk.new(
            "VkCommandPoolCreateInfo",
            {
                "sType": st("COMMAND_POOL_CREATE_INFO"),
                "flags": 2,
                "queueFamilyIndex": dev.compute_family,
            },
        ),
        ffi.NULL,
        pool_p,
    )
    pool = pool_p[0]

    def alloc(level: int, n: int):
        arr = ffi.new("VkCommandBuffer[]", n)
        lib.vkAllocateCommandBuffers(
            dh,
            _vk.new(
                "VkCommandBufferAllocateInfo",
                {
                    "sType": st("COMMAND_BUFFER_ALLOCATE_INFO"),
                    "commandPool": pool,
                    "level": level,
                    "commandBufferCount": n,
                },
            ),
            arr,
        )
        return arr

    inh = _vk.new(
        "VkCommandBufferInheritanceInfo",
        {"sType": st("COMMAND_BUFFER_INHERITANCE_INFO")},
    )
    sbegin = _vk.new(
        "VkCommandBufferBeginInfo",
        {
            "sType": st("COMMAND_BUFFER_BEGIN_INFO"),
            "flags": 4,
            "pInheritanceInfo": inh,
        },
    )
    pbegin = _vk.new("VkCommandBufferBeginInfo", {"sType": st("COMMAND_BUFFER_BEGIN_INFO")})
    bar = _vk.new(
        "VkMemoryBarrier",
        {
            "sType": st("MEMORY_BARRIER"),
            "srcAccessMask": 0x60,
            "dstAccessMask": 0x60,
        },
    )

    def secondary(f, barrier: bool):
        c = alloc(1, 1)[0]
        lib.vkBeginCommandBuffer(c, sbegin)
        if barrier:
            lib.vkCmdPipelineBarrier(c, 0x800, 0x800, 0, 1, bar, 0, ffi.NULL, 0, ffi.NULL)
        lib.vkCmdBindPipeline(c, 1, pipe.handle)
        lib.vkCmdBindDescriptorSets(c, 1, pipe.layout, 0, pipe.nsets, f.sets, 0, ffi.NULL)
        lib.vkCmdPushConstants(c, pipe.layout, 0x20, 0, pipe.push_size, f.cpush)
        lib.vkCmdDispatch(c, *f.groups)
        lib.vkEndCommandBuffer(c)
        return c

    bar_only = alloc(1, 1)[0]
    lib.vkBeginCommandBuffer(bar_only, sbegin)
    lib.vkCmdPipelineBarrier(bar_only, 0x800, 0x800, 0, 1, bar, 0, ffi.NULL, 0, ffi.NULL)
    lib.vkEndCommandBuffer(bar_only)

    pq = ffi.new("VkQueryPool*")
    lib.vkCreateQueryPool(
        dh,
        _vk.new(
            "VkQueryPoolCreateInfo",
            {"sType": st("QUERY_POOL_CREATE_INFO"), "queryType": 2, "queryCount": 2},
        ),
        ffi.NULL,
        pq,
    )
    qp = pq[0]
    ts = ffi.new("uint64_t[2]")
    prim = alloc(0, 1)
    fence = dev.new_fence()
    pf = ffi.new("VkFence*", fence)
    sub = _vk.new(
        "VkSubmitInfo",
        {
            "sType": st("SUBMIT_INFO"),
            "commandBufferCount": 1,
            "pCommandBuffers": prim,
        },
    )

    def run_primary(seq: list) -> tuple[float, float, float]:
        """Record one primary executing seq, submit, wait; return build, replay, gpu (us/disp)."""
        t0 = time.perf_counter()
        arr = ffi.new("VkCommandBuffer[]", seq)
        c = prim[0]
        lib.vkBeginCommandBuffer(c, pbegin)
        lib.vkCmdWriteTimestamp(c, 1, qp, 0)
        lib.vkCmdExecuteCommands(c, len(seq), arr)
        lib.vkCmdWriteTimestamp(c, 0x2000, qp, 1)
        lib.vkEndCommandBuffer(c)
        t1 = time.perf_counter()
        reps, gpus = [], []
        for _ in range(7):
            lib.vkResetQueryPool(dh, qp, 0, 2)
            lib.vkResetFences(dh, 1, pf)
            t = time.perf_counter()
            lib.vkQueueSubmit(dev.compute_queue, 1, sub, fence)
            lib.vkWaitForFences(dh, 1, pf, 1, 10**10)
            reps.append(time.perf_counter() - t)
            lib.vkGetQueryPoolResults(dh, qp, 0, 2, 16, ts, 8, 1)
            gpus.append((ts[1] - ts[0]) * dev.info.limits["timestamp_period_ns"] * 1e-9)
        return (t1 - t0) / N * 1e6, med_us(reps) / N, med_us(gpus) / N

    for label, mk_args in [
        ("dependent", lambda i: (X, Y)),
        ("independent/64", lambda i: (X, outs[i % 64])),
    ]:
        # inline, through vknb today
        for _ in range(2):
            t = time.perf_counter()
            with vknb.batch() as b:
                for i in range(N):
                    k(*mk_args(i), a=1.0, grid=256)
            tot = (time.perf_counter() - t) / N * 1e6
            rec = b.record_ms * 1e3 / N
            reps, gpus = [], []
            for _ in range(7):
                t = time.perf_counter()
                b.replay()
                reps.append(time.perf_counter() - t)
                gpus.append(b.gpu_ms * 1e-3)
        print(
            f"  [{label}] inline (vknb today): record {rec:.2f}, total {tot:.2f}, "
            f"replay {med_us(reps) / N:.2f}, gpu {med_us(gpus) / N:.2f} us/disp, "
            f"barriers {b.barriers}",
            flush=True,
        )
        # secondaries: one per distinct call (+ a barrier variant), one vkCmdExecuteCommands
        fasts = {}
        seq = []
        seq2 = []
        for i, e in enumerate(b.entries):
            key = (id(e[2]), e[5])
            f = fasts.get(key)
            if f is None:
                ff = k._fast_lookup(mk_args(i), {"a": 1.0}, 256, None, pipe)[0]
                f = fasts[key] = (secondary(ff, e[5]), secondary(ff, False))
            seq.append(f[0])
            if e[5]:
                seq2.append(bar_only)
            seq2.append(f[1])
        for name, s in [
            ("secondary per call (barrier inside)", seq),
            ("barrier as own secondary", seq2),
        ]:
            for _ in range(2):
                build, rep, gpu = run_primary(s)
            print(
                f"  [{label}] {name}: build {build:.3f}, replay {rep:.2f}, gpu {gpu:.2f} us/disp "
                f"({len(fasts)} secondaries)",
                flush=True,
            )
        # python cost of a lean recording loop (lookup + hazard-free append)
        lst = []
        t = time.perf_counter()
        for i in range(N):
            a = mk_args(i)
            hit = k._fast_lookup(a, {"a": 1.0}, 256, None, pipe)
            lst.append(hit)
        print(f"  [{label}] lookup+append loop: {(time.perf_counter() - t) / N * 1e6:.2f} us/disp")
        b.close()
    lib.vkDeviceWaitIdle(dh)
    lib.vkDestroyCommandPool(dh, pool, ffi.NULL)
    lib.vkDestroyQueryPool(dh, qp, ffi.NULL)
    lib.vkDestroyFence(dh, fence, ffi.NULL)


if __name__ == "__main__":
    main()
