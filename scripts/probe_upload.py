"""Probe: host -> device upload rate by staging memory type (write-combined vs cached)."""

from __future__ import annotations

import sys

import numpy as np
from tune import best  # scripts/ is on sys.path when run as a script

import vknb
import vknb.memory as M
from vknb.buffer import _bytes_view, host_copy


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "cached":
        orig = M.Allocator.type_for

        def type_for(self, bits, kind):
            if kind == "upload":
                return self.find_type(
                    bits, M.HOST_VISIBLE, M.HOST_CACHED | M.HOST_COHERENT, avoid=M.DEVICE_LOCAL
                )
            return orig(self, bits, kind)

        M.Allocator.type_for = type_for
    dev = vknb.device()
    a = np.random.default_rng(0).random(64 << 20, dtype=np.float32)  # 256 MiB
    d = vknb.asarray(a)
    st = vknb.buffer._staging(dev).up[0]
    t = dev.info.memory_types[st._alloc.memory_type]
    view = _bytes_view(st._alloc.mapped, st.nbytes)
    src = a.view(np.uint8)[: st.nbytes]
    memcpy = st.nbytes / best(lambda: host_copy(view, src)) / 1e9
    plain = np.empty_like(src)
    memcpy_plain = st.nbytes / best(lambda: host_copy(plain, src)) / 1e9
    up = a.nbytes / best(lambda: d.update(a)) / 1e9
    o = np.empty_like(a)
    d.update(a)
    d.numpy(out=o)
    assert np.array_equal(o, a)
    print(
        f"{sys.argv[1:] or ['default']}: staging type {t.index} flags 0x{t.flags:x}; "
        f"threaded memcpy into staging {memcpy:.1f} GB/s, into numpy {memcpy_plain:.1f} GB/s; "
        f"update 256 MiB {up:.1f} GB/s"
    )


if __name__ == "__main__":
    main()
