"""Probe: what timestamp queries cost a sync dispatch, per way of recording and reading them."""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import vknb
from vknb import _vk

SRC = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer XBuf { float x[]; };
layout(set = 0, binding = 1) buffer YBuf { float y[]; };
layout(push_constant) uniform Params { float a; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < y.length()) y[i] += a * x[i]; }
"""


def main() -> None:
    os.environ["VKNB_TS_READOUT"] = "copy"  # the variants below need the mapped buffer
    dev = vknb.device()
    print(dev.info.name)
    n = 256
    T = vknb.asarray(np.ones(n, np.float32))
    U = vknb.asarray(np.zeros(n, np.float32))
    k = vknb.compile(SRC, name="tiny")
    k(T, U, a=1.0, grid=n)
    pipe = k.pipeline
    lib, ffi = _vk.lib, _vk.ffi
    f = k._fast_lookup((T, U), {"a": 1.0}, n, None, pipe)[0]
    buf = ffi.new("uint64_t[2]")
    dh = dev.handle

    def variant(reset, st0, st1, flags, ts=True):
        def rec(cmd, sets, push, groups, query):
            if reset:
                lib.vkCmdResetQueryPool(cmd, pipe.query_pool, query, 2)
            if ts:
                lib.vkCmdWriteTimestamp(cmd, st0, pipe.query_pool, query)
            lib.vkCmdBindPipeline(cmd, 1, pipe.handle)
            lib.vkCmdBindDescriptorSets(cmd, 1, pipe.layout, 0, pipe.nsets, sets, 0, ffi.NULL)
            lib.vkCmdPushConstants(cmd, pipe.layout, 0x20, 0, pipe.push_size, f.cpush)
            lib.vkCmdDispatch(cmd, *groups)
            if ts:
                lib.vkCmdWriteTimestamp(cmd, st1, pipe.query_pool, query + 1)
            if flags is not None:
                lib.vkCmdCopyQueryPoolResults(
                    cmd, pipe.query_pool, query, 2, pipe._ts_buffer.handle, query * 8, 8, flags
                )

        return rec

    for name, args, host_reset, get in [
        ("current: cmd reset, TOP/BOTTOM, copy WAIT", (1, 1, 0x2000, 3), False, False),
        ("no timestamps", (0, 1, 1, None, False), False, False),
        ("cmd reset, TOP/BOTTOM, get after fence", (1, 1, 0x2000, None), False, True),
        ("host reset, TOP/BOTTOM, get after fence", (0, 1, 0x2000, None), True, True),
        ("host reset, TOP/COMPUTE, get after fence", (0, 1, 0x800, None), True, True),
        ("cmd reset, TOP/BOTTOM, copy nowait", (1, 1, 0x2000, 1), False, False),
        ("host reset, TOP/BOTTOM, copy WAIT", (0, 1, 0x2000, 3), True, False),
    ]:
        pipe.record = variant(*args)
        for s in pipe._slots:
            s.key = None
        xs, gs, vals = [], [], []
        for _i in range(2500):
            s = pipe._slots[0]
            t = time.perf_counter()
            if host_reset:
                lib.vkResetQueryPool(dh, pipe.query_pool, s.query, 2)
            s = pipe.dispatch(f.sets, f.push, f.groups, None)
            t1 = time.perf_counter()
            if get:
                r = lib.vkGetQueryPoolResults(dh, pipe.query_pool, s.query, 2, 16, buf, 8, 0x1)
                vals.append((buf[1] - buf[0]) * 1e-3 if r == 0 else float("nan"))
            elif args[3] is not None:
                vals.append(pipe.gpu_ms(s) * 1e3)
            t2 = time.perf_counter()
            xs.append(t1 - t)
            gs.append(t2 - t1)
        print(
            f"{name:44s} dispatch+wait {statistics.median(xs[300:]) * 1e6:6.1f} us, "
            f"read {statistics.median(gs[300:]) * 1e6:5.2f} us, "
            f"gpu {statistics.median(vals[300:]) if vals else float('nan'):.2f} us"
        )
    for s in pipe._slots:
        s.key = None
    del pipe.record

    # dependent batch GPU time: 4 workgroups of 64 (the benchmark's) vs 1 of 256
    SRC1 = SRC.replace("local_size_x = 64", "local_size_x = 256")
    k1 = vknb.compile(SRC1, name="tiny256")
    for kk, lab in [(k, "4x64"), (k1, "1x256")]:
        with vknb.batch() as b:
            for _ in range(1000):
                kk(T, U, a=1.0, grid=n)
        g, r = [], []
        for _ in range(7):
            t = time.perf_counter()
            b.replay()
            r.append(time.perf_counter() - t)
            g.append(b.gpu_ms)
        print(
            f"dependent x1000 {lab}: gpu {statistics.median(g):.3f} us/disp, "
            f"replay {statistics.median(r) * 1e3:.3f} us/disp"
        )
        b.close()


if __name__ == "__main__":
    main()
