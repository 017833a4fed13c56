"""Probe: DMA straight from numpy memory imported with VK_EXT_external_memory_host vs staging."""

from __future__ import annotations

import time

import numpy as np

import vknb
from vknb import _vk


def main() -> None:
    dev = vknb.device()
    ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
    dh = dev.handle
    print(dev.info.name, "VK_EXT_external_memory_host" in dev.info.extensions)
    fp = lib.vkGetDeviceProcAddr(dh, b"vkGetMemoryHostPointerPropertiesEXT")
    get_props = ffi.cast("PFN_vkGetMemoryHostPointerPropertiesEXT", fp)
    props = _vk.new(
        "VkPhysicalDeviceExternalMemoryHostPropertiesEXT",
        {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT},
    )
    p2 = _vk.new(
        "VkPhysicalDeviceProperties2",
        {"sType": vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, "pNext": props},
    )
    lib.vkGetPhysicalDeviceProperties2(dev.info.handle, p2)
    align = int(props.minImportedHostPointerAlignment)
    print("alignment", align)
    a = np.random.default_rng(0).random(64 << 20, dtype=np.float32)  # 256 MiB
    d = vknb.empty(a.shape, np.float32)
    d.update(a)

    def one(src: np.ndarray, upload: bool = True) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        addr = src.ctypes.data
        base = addr & ~(align - 1)
        end = (addr + src.nbytes + align - 1) & ~(align - 1)
        size = end - base
        hp = _vk.new(
            "VkMemoryHostPointerPropertiesEXT",
            {"sType": vk.VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT},
        )
        HT = 0x80  # VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
        r = get_props(dh, HT, ffi.cast("void*", base), hp)
        assert r == 0, r
        ext = _vk.new(
            "VkExternalMemoryBufferCreateInfo",
            {"sType": vk.VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO, "handleTypes": HT},
        )
        info = _vk.new(
            "VkBufferCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                "pNext": ext,
                "size": size,
                "usage": 0x3,
            },
        )
        pb = ffi.new("VkBuffer*")
        assert lib.vkCreateBuffer(dh, info, ffi.NULL, pb) == 0
        req = ffi.new("VkMemoryRequirements*")
        lib.vkGetBufferMemoryRequirements(dh, pb[0], req)
        bits = hp.memoryTypeBits & req.memoryTypeBits
        mt = next(i for i in range(32) if bits >> i & 1)
        imp = _vk.new(
            "VkImportMemoryHostPointerInfoEXT",
            {
                "sType": vk.VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT,
                "handleType": HT,
                "pHostPointer": ffi.cast("void*", base),
            },
        )
        ainfo = _vk.new(
            "VkMemoryAllocateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                "pNext": imp,
                "allocationSize": size,
                "memoryTypeIndex": mt,
            },
        )
        pm = ffi.new("VkDeviceMemory*")
        r = lib.vkAllocateMemory(dh, ainfo, ffi.NULL, pm)
        assert r == 0, r
        assert lib.vkBindBufferMemory(dh, pb[0], pm[0], 0) == 0
        t1 = time.perf_counter()
        region = ffi.new(
            "VkBufferCopy*",
            {
                "srcOffset": addr - base if upload else 0,
                "dstOffset": 0 if upload else addr - base,
                "size": src.nbytes,
            },
        )
        s_h, d_h = (pb[0], d.buffer.handle) if upload else (d.buffer.handle, pb[0])
        dev.submit(lambda cmd: lib.vkCmdCopyBuffer(cmd, s_h, d_h, 1, region), transfer=True)
        t2 = time.perf_counter()
        lib.vkDestroyBuffer(dh, pb[0], ffi.NULL)
        lib.vkFreeMemory(dh, pm[0], ffi.NULL)
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    for _ in range(3):
        t = one(a)
        tot = sum(t)
        print(
            f"import upload 256 MiB: import {t[0] * 1e3:.2f} ms, DMA {t[1] * 1e3:.2f} ms, "
            f"release {t[2] * 1e3:.2f} ms -> {a.nbytes / tot / 1e9:.1f} GB/s "
            f"(DMA alone {a.nbytes / t[1] / 1e9:.1f})"
        )
    o = d.numpy()
    assert np.array_equal(o, a)
    out = np.empty_like(a)
    for _ in range(3):
        t = one(out, upload=False)
        print(f"import download: {a.nbytes / sum(t) / 1e9:.1f} GB/s, import {t[0] * 1e3:.2f} ms")
    assert np.array_equal(out, a)
    for _ in range(2):
        t = time.perf_counter()
        d.update(a)
        up = a.nbytes / (time.perf_counter() - t) / 1e9
        t = time.perf_counter()
        d.numpy(out=out)
        down = a.nbytes / (time.perf_counter() - t) / 1e9
        print(f"staging: update {up:.1f} GB/s, download {down:.1f} GB/s")


if __name__ == "__main__":
    main()
