"""A minimal compute runtime written directly on the ``vulkan`` PyPI binding: the baseline.

This is what a Python user who skips vknb writes, following the binding's README and examples:
the binding's wrapper functions (``vk.vkCreateInstance``, ``vk.vkQueueSubmit``, ...) and struct
constructors (``vk.VkSubmitInfo(...)``), a fence per submission, one command pool, one
descriptor set per binding set-up, timestamp queries for GPU time.  It is deliberately plain but
not careless: the command buffer, the fence, the begin info and the barrier are made once and
reused; the submit info and the push-constant bytes are built per call, as in the binding's
examples.  Nothing goes below the binding's Python API (no ``vulkan.lib`` calls).

Only the SPIR-V comes from vknb (:func:`vknb.compile_glsl`), so both sides run the same shader.

What each benchmark row measures here:

* :meth:`RawVulkan.sync_dispatch` -- per call: record a command buffer (bind, push constants,
  dispatch), submit with a fence, wait: what a minimal runtime does for ``k(x, y, a=2.0)``;
* :meth:`RawVulkan.resubmit` -- a pre-recorded command buffer submitted again (submit + wait);
* :meth:`RawVulkan.record_batch` / :meth:`RawVulkan.submit_and_wait` -- N dispatches recorded
  from Python into one command buffer (a barrier between them), and its replay;
* :meth:`RawVulkan.copy_gpu_ms` -- ``vkCmdCopyBuffer`` device -> device, timestamps around it;
* :meth:`RawVulkan.dispatch_gpu_ms` -- one dispatch between two timestamps;
* :meth:`RawVulkan.upload` / :meth:`RawVulkan.download` -- numpy <-> device through one
  host-visible staging buffer and ``vkCmdCopyBuffer`` (a single-threaded ``memcpy``);
* :meth:`RawVulkan.upload_image` / :meth:`RawVulkan.download_image` -- numpy <-> a 2-D image in
  the general layout through the same staging buffers and ``vkCmdCopyBufferToImage`` /
  ``vkCmdCopyImageToBuffer``;
* :meth:`RawVulkan.pipeline` -- shader module, layouts and pipeline from SPIR-V, no cache
  (storage buffers, or the descriptor types given: storage images, combined image samplers).

Pitfalls of the binding handled here: nested structs and arrays a struct points to are kept in
local variables until the call returns; ``vkMapMemory`` returns a cffi buffer, viewed with
``np.frombuffer``.

Example
-------
>>> import numpy as np, vknb
>>> from benchmarks.raw_vulkan import RawVulkan
>>> spirv = vknb.compile_glsl(SRC)                                  # doctest: +SKIP
>>> with RawVulkan() as rv:                                         # doctest: +SKIP
...     x = rv.buffer(1024); rv.upload(x, np.ones(256, np.float32))
...     p = rv.pipeline(spirv, n_bindings=1, push_size=4)
...     ds = p.descriptor_set([x])
...     rv.sync_dispatch(p, ds, np.float32(2.0).tobytes(), (4, 1, 1))
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

UINT64_MAX = (1 << 64) - 1
_COMPUTE_BIT = 0x20  # VK_SHADER_STAGE_COMPUTE_BIT


def _vk() -> Any:
    import vulkan

    return vulkan


class RawBuffer:
    """A ``VkBuffer`` with its own ``VkDeviceMemory`` (one allocation per buffer, as users do)."""

    def __init__(
        self, rv: RawVulkan, nbytes: int, host_visible: bool = False, cached: bool = False
    ) -> None:
        vk = rv.vk
        self.rv = rv
        self.nbytes = int(nbytes)
        self.size = max(16, (self.nbytes + 3) // 4 * 4)
        self.handle = vk.vkCreateBuffer(
            rv.device,
            vk.VkBufferCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                size=self.size,
                usage=vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT
                | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
                | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE,
            ),
            None,
        )
        req = vk.vkGetBufferMemoryRequirements(rv.device, self.handle)
        if host_visible:
            want = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
            prefer = [want | vk.VK_MEMORY_PROPERTY_HOST_CACHED_BIT, want] if cached else [want]
        else:
            prefer = [vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT]
        mtype = rv.memory_type(req.memoryTypeBits, prefer)
        self.memory = vk.vkAllocateMemory(
            rv.device,
            vk.VkMemoryAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                allocationSize=req.size,
                memoryTypeIndex=mtype,
            ),
            None,
        )
        vk.vkBindBufferMemory(rv.device, self.handle, self.memory, 0)
        self.mapped: np.ndarray | None = None
        if host_visible:
            # vkMapMemory returns a cffi buffer: view it with numpy (ffi.buffer() on it fails).
            ptr = vk.vkMapMemory(rv.device, self.memory, 0, self.nbytes, 0)
            self._ptr = ptr
            self.mapped = np.frombuffer(ptr, np.uint8, count=self.nbytes)
        rv._owned.append(self.destroy)

    def destroy(self) -> None:
        vk, dev = self.rv.vk, self.rv.device
        if self.handle is None:
            return
        if self.mapped is not None:
            self.mapped = None
            self._ptr = None
            vk.vkUnmapMemory(dev, self.memory)
        vk.vkDestroyBuffer(dev, self.handle, None)
        vk.vkFreeMemory(dev, self.memory, None)
        self.handle = None


class RawImage:
    """A 2-D ``VkImage`` (optimal tiling) with its own memory and a view, kept in
    ``VK_IMAGE_LAYOUT_GENERAL`` (one transition at creation), as a user of storage images does."""

    def __init__(self, rv: RawVulkan, width: int, height: int, vk_format: int, texel_bytes: int):
        vk, dev = rv.vk, rv.device
        self.rv = rv
        self.width, self.height = int(width), int(height)
        self.nbytes = self.width * self.height * int(texel_bytes)
        self.handle = vk.vkCreateImage(
            dev,
            vk.VkImageCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO,
                imageType=vk.VK_IMAGE_TYPE_2D,
                format=vk_format,
                extent=vk.VkExtent3D(width=self.width, height=self.height, depth=1),
                mipLevels=1,
                arrayLayers=1,
                samples=vk.VK_SAMPLE_COUNT_1_BIT,
                tiling=vk.VK_IMAGE_TILING_OPTIMAL,
                usage=vk.VK_IMAGE_USAGE_STORAGE_BIT
                | vk.VK_IMAGE_USAGE_SAMPLED_BIT
                | vk.VK_IMAGE_USAGE_TRANSFER_SRC_BIT
                | vk.VK_IMAGE_USAGE_TRANSFER_DST_BIT,
                sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE,
                initialLayout=vk.VK_IMAGE_LAYOUT_UNDEFINED,
            ),
            None,
        )
        req = vk.vkGetImageMemoryRequirements(dev, self.handle)
        mtype = rv.memory_type(req.memoryTypeBits, [vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT])
        self.memory = vk.vkAllocateMemory(
            dev,
            vk.VkMemoryAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                allocationSize=req.size,
                memoryTypeIndex=mtype,
            ),
            None,
        )
        vk.vkBindImageMemory(dev, self.handle, self.memory, 0)
        self.range = vk.VkImageSubresourceRange(
            aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT,
            baseMipLevel=0,
            levelCount=1,
            baseArrayLayer=0,
            layerCount=1,
        )
        self.view = vk.vkCreateImageView(
            dev,
            vk.VkImageViewCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO,
                image=self.handle,
                viewType=vk.VK_IMAGE_VIEW_TYPE_2D,
                format=vk_format,
                subresourceRange=self.range,
            ),
            None,
        )
        self.region = [
            vk.VkBufferImageCopy(
                bufferOffset=0,
                bufferRowLength=0,
                bufferImageHeight=0,
                imageSubresource=vk.VkImageSubresourceLayers(
                    aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT,
                    mipLevel=0,
                    baseArrayLayer=0,
                    layerCount=1,
                ),
                imageOffset=vk.VkOffset3D(x=0, y=0, z=0),
                imageExtent=vk.VkExtent3D(width=self.width, height=self.height, depth=1),
            )
        ]
        barrier = vk.VkImageMemoryBarrier(
            sType=vk.VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER,
            srcAccessMask=0,
            dstAccessMask=vk.VK_ACCESS_SHADER_READ_BIT
            | vk.VK_ACCESS_SHADER_WRITE_BIT
            | vk.VK_ACCESS_TRANSFER_READ_BIT
            | vk.VK_ACCESS_TRANSFER_WRITE_BIT,
            oldLayout=vk.VK_IMAGE_LAYOUT_UNDEFINED,
            newLayout=vk.VK_IMAGE_LAYOUT_GENERAL,
            srcQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED,
            dstQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED,
            image=self.handle,
            subresourceRange=self.range,
        )
        rv.run(
            lambda cmd: vk.vkCmdPipelineBarrier(
                cmd,
                vk.VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT,
                vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
                0,
                0,
                None,
                0,
                None,
                1,
                [barrier],
            )
        )
        rv._owned.append(self.destroy)

    def destroy(self) -> None:
        vk, dev = self.rv.vk, self.rv.device
        if self.handle is None:
            return
        vk.vkDestroyImageView(dev, self.view, None)
        vk.vkDestroyImage(dev, self.handle, None)
        vk.vkFreeMemory(dev, self.memory, None)
        self.handle = None


class RawPipeline:
    """Shader module, one descriptor-set layout of ``n_bindings`` storage buffers (or of the
    descriptor ``types`` given), pipeline layout with a push-constant range, the compute pipeline
    (specialized with ``spec``: 32-bit values by constant id) and a descriptor pool."""

    def __init__(
        self,
        rv: RawVulkan,
        spirv: bytes,
        n_bindings: int,
        push_size: int,
        max_sets: int = 128,
        types: Sequence[int] | None = None,
        spec: dict[int, int] | None = None,
    ) -> None:
        vk, dev = rv.vk, rv.device
        self.rv = rv
        self.push_size = push_size
        self.types = (
            list(types)
            if types is not None
            else [vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER] * n_bindings
        )
        self.module = vk.vkCreateShaderModule(
            dev,
            vk.VkShaderModuleCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                codeSize=len(spirv),
                pCode=spirv,
            ),
            None,
        )
        bindings = [
            vk.VkDescriptorSetLayoutBinding(
                binding=i,
                descriptorType=self.types[i],
                descriptorCount=1,
                stageFlags=_COMPUTE_BIT,
            )
            for i in range(n_bindings)
        ]
        self.set_layout = vk.vkCreateDescriptorSetLayout(
            dev,
            vk.VkDescriptorSetLayoutCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                bindingCount=n_bindings,
                pBindings=bindings,
            ),
            None,
        )
        ranges = [vk.VkPushConstantRange(stageFlags=_COMPUTE_BIT, offset=0, size=push_size)]
        self.layout = vk.vkCreatePipelineLayout(
            dev,
            vk.VkPipelineLayoutCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                setLayoutCount=1,
                pSetLayouts=[self.set_layout],
                pushConstantRangeCount=1 if push_size else 0,
                pPushConstantRanges=ranges if push_size else None,
            ),
            None,
        )
        # Keep the nested stage struct (and the entry-point name it points to) in a variable
        # until vkCreateComputePipelines returns (binding pitfall: VK_ERROR_UNKNOWN otherwise).
        spec_info = spec_data = spec_entries = None
        if spec:
            ids = sorted(spec)
            spec_data = vk.ffi.new("uint32_t[]", [int(spec[i]) & 0xFFFFFFFF for i in ids])
            spec_entries = [
                vk.VkSpecializationMapEntry(constantID=i, offset=4 * k, size=4)
                for k, i in enumerate(ids)
            ]
            spec_info = vk.VkSpecializationInfo(
                mapEntryCount=len(ids),
                pMapEntries=spec_entries,
                dataSize=4 * len(ids),
                pData=spec_data,
            )
        stage = vk.VkPipelineShaderStageCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            stage=vk.VK_SHADER_STAGE_COMPUTE_BIT,
            module=self.module,
            pName="main",
            pSpecializationInfo=spec_info,
        )
        info = vk.VkComputePipelineCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            stage=stage,
            layout=self.layout,
            basePipelineIndex=-1,
        )
        self.handle = vk.vkCreateComputePipelines(dev, None, 1, [info], None)[0]
        del stage, info, spec_info, spec_data, spec_entries
        sizes = [
            vk.VkDescriptorPoolSize(type=t, descriptorCount=max(1, self.types.count(t)) * max_sets)
            for t in sorted(set(self.types) or {vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER})
        ]
        self.pool = vk.vkCreateDescriptorPool(
            dev,
            vk.VkDescriptorPoolCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                maxSets=max_sets,
                poolSizeCount=len(sizes),
                pPoolSizes=sizes,
            ),
            None,
        )
        rv._owned.append(self.destroy)

    def descriptor_set(self, buffers: Sequence[Any]) -> Any:
        """Allocate a descriptor set and point binding i at the whole of ``buffers[i]``: a
        :class:`RawBuffer`, a :class:`RawImage` (storage image) or ``(RawImage, VkSampler)``
        (combined image sampler), as the pipeline's descriptor types say."""
        vk, dev = self.rv.vk, self.rv.device
        dset = vk.vkAllocateDescriptorSets(
            dev,
            vk.VkDescriptorSetAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                descriptorPool=self.pool,
                descriptorSetCount=1,
                pSetLayouts=[self.set_layout],
            ),
        )[0]
        # The binding's VK_WHOLE_SIZE is -1 (rejected by the unsigned field): give the size.
        infos: list[Any] = []
        writes = []
        for i, b in enumerate(buffers):
            t = self.types[i]
            if t == vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER:
                infos.append([vk.VkDescriptorBufferInfo(buffer=b.handle, offset=0, range=b.size)])
                extra = {"pBufferInfo": infos[-1]}
            else:
                img, smp = b if isinstance(b, tuple) else (b, None)
                infos.append(
                    [
                        vk.VkDescriptorImageInfo(
                            sampler=smp, imageView=img.view, imageLayout=vk.VK_IMAGE_LAYOUT_GENERAL
                        )
                    ]
                )
                extra = {"pImageInfo": infos[-1]}
            writes.append(
                vk.VkWriteDescriptorSet(
                    sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                    dstSet=dset,
                    dstBinding=i,
                    dstArrayElement=0,
                    descriptorCount=1,
                    descriptorType=t,
                    **extra,
                )
            )
        vk.vkUpdateDescriptorSets(dev, len(writes), writes, 0, None)
        return dset

    def destroy(self) -> None:
        vk, dev = self.rv.vk, self.rv.device
        if self.handle is None:
            return
        vk.vkDestroyDescriptorPool(dev, self.pool, None)
        vk.vkDestroyPipeline(dev, self.handle, None)
        vk.vkDestroyPipelineLayout(dev, self.layout, None)
        vk.vkDestroyDescriptorSetLayout(dev, self.set_layout, None)
        vk.vkDestroyShaderModule(dev, self.module, None)
        self.handle = None


class RawVulkan:
    """Instance, device with one compute queue, command pool, fence, timestamp query pool.

    Parameters
    ----------
    device_name : str, optional
        Use the first physical device whose name contains this (default: the first discrete
        GPU, else device 0).  The suite passes the name of vknb's session device so that both
        sides run on the same hardware.

    Example
    -------
    >>> with RawVulkan() as rv:                                     # doctest: +SKIP
    ...     print(rv.name)
    llvmpipe (LLVM 15.0.6, 256 bits)
    """

    def __init__(self, device_name: str | None = None, int64_atomics: bool = False) -> None:
        self.vk = vk = _vk()
        self._owned: list[Callable[[], None]] = []
        self.instance = None
        self.device = None
        app = vk.VkApplicationInfo(
            sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO,
            pApplicationName="raw-baseline",
            applicationVersion=1,
            pEngineName="none",
            engineVersion=1,
            apiVersion=vk.VK_MAKE_VERSION(1, 2, 0),
        )
        self.instance = vk.vkCreateInstance(
            vk.VkInstanceCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo=app
            ),
            None,
        )
        try:
            self._open(device_name, int64_atomics)
        except BaseException:
            self.close()
            raise

    def _open(self, device_name: str | None, int64_atomics: bool = False) -> None:
        vk = self.vk
        phys = vk.vkEnumeratePhysicalDevices(self.instance)
        props = [vk.vkGetPhysicalDeviceProperties(p) for p in phys]
        pick = None
        if device_name:
            pick = next((i for i, p in enumerate(props) if device_name in p.deviceName), None)
        if pick is None:
            pick = next(
                (
                    i
                    for i, p in enumerate(props)
                    if p.deviceType == vk.VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
                ),
                0,
            )
        self.physical = phys[pick]
        self.props = props[pick]
        self.name = str(self.props.deviceName)
        self.timestamp_period_ns = float(self.props.limits.timestampPeriod)
        self.max_groups = tuple(self.props.limits.maxComputeWorkGroupCount)
        self.mem_props = vk.vkGetPhysicalDeviceMemoryProperties(self.physical)
        fams = vk.vkGetPhysicalDeviceQueueFamilyProperties(self.physical)
        compute = [i for i, f in enumerate(fams) if f.queueFlags & vk.VK_QUEUE_COMPUTE_BIT]
        self.family = next(
            (i for i in compute if not fams[i].queueFlags & vk.VK_QUEUE_GRAPHICS_BIT), compute[0]
        )
        bits = fams[self.family].timestampValidBits
        self.ts_mask = (1 << bits) - 1 if 0 < bits < 64 else UINT64_MAX
        self.has_timestamps = bits > 0
        qinfo = vk.VkDeviceQueueCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
            queueFamilyIndex=self.family,
            queueCount=1,
            pQueuePriorities=[1.0],
        )
        # 64-bit integers and buffer atomics (Vulkan 1.2), for kernels that need them (the
        # single-pass scan), only where the caller knows the device has them.
        f12 = feats = None
        if int64_atomics:
            f12 = vk.VkPhysicalDeviceVulkan12Features(
                sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                shaderBufferInt64Atomics=vk.VK_TRUE,
            )
            feats = vk.VkPhysicalDeviceFeatures2(
                sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                pNext=f12,
                features=vk.VkPhysicalDeviceFeatures(shaderInt64=vk.VK_TRUE),
            )
        self.device = vk.vkCreateDevice(
            self.physical,
            vk.VkDeviceCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                pNext=feats,
                queueCreateInfoCount=1,
                pQueueCreateInfos=[qinfo],
            ),
            None,
        )
        del qinfo, f12, feats
        self.queue = vk.vkGetDeviceQueue(self.device, self.family, 0)
        self.pool = vk.vkCreateCommandPool(
            self.device,
            vk.VkCommandPoolCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                flags=vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                queueFamilyIndex=self.family,
            ),
            None,
        )
        self.cmd = self.command_buffer()
        self.fence = vk.vkCreateFence(
            self.device, vk.VkFenceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO), None
        )
        self.query_pool = vk.vkCreateQueryPool(
            self.device,
            vk.VkQueryPoolCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                queryType=vk.VK_QUERY_TYPE_TIMESTAMP,
                queryCount=2,
            ),
            None,
        )
        self._ts = vk.ffi.new("uint64_t[2]")
        self.begin_info = vk.VkCommandBufferBeginInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        )
        self.barrier = vk.VkMemoryBarrier(
            sType=vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            srcAccessMask=vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_TRANSFER_WRITE_BIT,
            dstAccessMask=vk.VK_ACCESS_SHADER_READ_BIT
            | vk.VK_ACCESS_SHADER_WRITE_BIT
            | vk.VK_ACCESS_TRANSFER_READ_BIT
            | vk.VK_ACCESS_HOST_READ_BIT,
        )
        self._staging: dict[str, RawBuffer] = {}

    # -- set-up helpers ---------------------------------------------------------------------

    def memory_type(self, type_bits: int, prefer: Sequence[int]) -> int:
        """The first memory type allowed by ``type_bits`` that has all flags of a preference."""
        mp = self.mem_props
        for flags in prefer:
            for i in range(mp.memoryTypeCount):
                if type_bits & (1 << i) and mp.memoryTypes[i].propertyFlags & flags == flags:
                    return i
        raise RuntimeError(f"no memory type with flags {list(prefer)} in bits {type_bits:#x}")

    def command_buffer(self) -> Any:
        """A new primary command buffer from the pool."""
        vk = self.vk
        return vk.vkAllocateCommandBuffers(
            self.device,
            vk.VkCommandBufferAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                commandPool=self.pool,
                level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                commandBufferCount=1,
            ),
        )[0]

    def buffer(self, nbytes: int, host_visible: bool = False, cached: bool = False) -> RawBuffer:
        """A storage + transfer buffer, device-local (default) or host-visible and mapped."""
        return RawBuffer(self, nbytes, host_visible, cached)

    def pipeline(
        self,
        spirv: bytes,
        n_bindings: int,
        push_size: int,
        types: Sequence[int] | None = None,
        spec: dict[int, int] | None = None,
    ) -> RawPipeline:
        """A pipeline over ``n_bindings`` storage buffers (or descriptors of ``types``, set 0)
        and ``push_size`` bytes, specialized with ``spec`` (32-bit values by constant id)."""
        return RawPipeline(self, spirv, n_bindings, push_size, types=types, spec=spec)

    def image(self, width: int, height: int, vk_format: int, texel_bytes: int) -> RawImage:
        """A 2-D image for storage, sampling and transfers, in the general layout."""
        return RawImage(self, width, height, vk_format, texel_bytes)

    def sampler(self, linear: bool = True) -> Any:
        """A ``VkSampler``: linear (or nearest) filtering, clamp to edge, normalized coordinates."""
        vk = self.vk
        f = vk.VK_FILTER_LINEAR if linear else vk.VK_FILTER_NEAREST
        clamp = vk.VK_SAMPLER_ADDRESS_MODE_CLAMP_TO_EDGE
        h = vk.vkCreateSampler(
            self.device,
            vk.VkSamplerCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_SAMPLER_CREATE_INFO,
                magFilter=f,
                minFilter=f,
                mipmapMode=vk.VK_SAMPLER_MIPMAP_MODE_NEAREST,
                addressModeU=clamp,
                addressModeV=clamp,
                addressModeW=clamp,
                maxAnisotropy=1.0,
                borderColor=vk.VK_BORDER_COLOR_FLOAT_TRANSPARENT_BLACK,
            ),
            None,
        )
        dev = self.device
        self._owned.append(lambda: vk.vkDestroySampler(dev, h, None))
        return h

    # -- submission -------------------------------------------------------------------------

    def submit_and_wait(self, cmd: Any) -> None:
        """Submit a recorded command buffer with the fence and wait for it."""
        vk = self.vk
        vk.vkResetFences(self.device, 1, [self.fence])
        vk.vkQueueSubmit(
            self.queue,
            1,
            [
                vk.VkSubmitInfo(
                    sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                    commandBufferCount=1,
                    pCommandBuffers=[cmd],
                )
            ],
            self.fence,
        )
        vk.vkWaitForFences(self.device, 1, [self.fence], vk.VK_TRUE, UINT64_MAX)

    def run(self, record: Callable[[Any], None], cmd: Any = None) -> None:
        """Record ``record(cmd)`` into a command buffer, submit, wait."""
        vk = self.vk
        cmd = self.cmd if cmd is None else cmd
        vk.vkBeginCommandBuffer(cmd, self.begin_info)
        record(cmd)
        vk.vkEndCommandBuffer(cmd)
        self.submit_and_wait(cmd)

    def record_dispatch(
        self, cmd: Any, p: RawPipeline, dset: Any, push: bytes, groups: tuple[int, int, int]
    ) -> None:
        """Bind the pipeline and set, push the constants, dispatch."""
        vk = self.vk
        vk.vkCmdBindPipeline(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, p.handle)
        vk.vkCmdBindDescriptorSets(
            cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, [dset], 0, None
        )
        if p.push_size:
            vk.vkCmdPushConstants(
                cmd, p.layout, _COMPUTE_BIT, 0, p.push_size, vk.ffi.from_buffer(push)
            )
        vk.vkCmdDispatch(cmd, *groups)

    def record_barrier(self, cmd: Any) -> None:
        """Shader/transfer writes -> later shader, transfer and host reads."""
        vk = self.vk
        vk.vkCmdPipelineBarrier(
            cmd,
            vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
            vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
            | vk.VK_PIPELINE_STAGE_TRANSFER_BIT
            | vk.VK_PIPELINE_STAGE_HOST_BIT,
            0,
            1,
            [self.barrier],
            0,
            None,
            0,
            None,
        )

    def sync_dispatch(
        self, p: RawPipeline, dset: Any, push: bytes, groups: tuple[int, int, int]
    ) -> None:
        """One call of a minimal runtime: record bind + push + dispatch, submit, wait.

        Example
        -------
        >>> rv.sync_dispatch(p, ds, struct.pack("<f", 2.0), (4, 1, 1))   # doctest: +SKIP
        """
        vk = self.vk
        cmd = self.cmd
        vk.vkBeginCommandBuffer(cmd, self.begin_info)
        self.record_dispatch(cmd, p, dset, push, groups)
        vk.vkEndCommandBuffer(cmd)
        self.submit_and_wait(cmd)

    def prerecord(
        self, p: RawPipeline, dset: Any, push: bytes, groups: tuple[int, int, int]
    ) -> Any:
        """A command buffer with one dispatch, recorded once (for :meth:`resubmit`)."""
        vk = self.vk
        cmd = self.command_buffer()
        vk.vkBeginCommandBuffer(cmd, self.begin_info)
        self.record_dispatch(cmd, p, dset, push, groups)
        vk.vkEndCommandBuffer(cmd)
        return cmd

    def resubmit(self, cmd: Any) -> None:
        """Submit an already recorded command buffer again and wait (no recording)."""
        self.submit_and_wait(cmd)

    def record_dispatches(
        self,
        cmd: Any,
        p: RawPipeline,
        dset: Any,
        pushes: Sequence[bytes],
        groups: tuple[int, int, int],
    ) -> None:
        """Record ``len(pushes)`` dependent dispatches, a barrier after each."""
        for push in pushes:
            self.record_dispatch(cmd, p, dset, push, groups)
            self.record_barrier(cmd)

    def record_batch(
        self,
        cmd: Any,
        p: RawPipeline,
        dset: Any,
        pushes: Sequence[bytes],
        groups: tuple[int, int, int],
    ) -> None:
        """Begin ``cmd``, record :meth:`record_dispatches`, end it (ready to submit)."""
        vk = self.vk
        vk.vkBeginCommandBuffer(cmd, self.begin_info)
        self.record_dispatches(cmd, p, dset, pushes, groups)
        vk.vkEndCommandBuffer(cmd)

    # -- GPU time from timestamps -----------------------------------------------------------

    def gpu_ms(self, record: Callable[[Any], None]) -> float:
        """Record ``record(cmd)`` between two timestamps, run it, return the GPU milliseconds."""
        vk = self.vk
        if not self.has_timestamps:
            raise RuntimeError(f"{self.name}: the compute queue has no timestamps")

        def rec(cmd: Any) -> None:
            # Earlier submissions' writes -> this work (outside the timed span).
            self.record_barrier(cmd)
            vk.vkCmdResetQueryPool(cmd, self.query_pool, 0, 2)
            vk.vkCmdWriteTimestamp(cmd, vk.VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, self.query_pool, 0)
            record(cmd)
            vk.vkCmdWriteTimestamp(cmd, vk.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, self.query_pool, 1)

        self.run(rec)
        vk.vkGetQueryPoolResults(
            self.device,
            self.query_pool,
            0,
            2,
            16,
            self._ts,
            8,
            vk.VK_QUERY_RESULT_64_BIT | vk.VK_QUERY_RESULT_WAIT_BIT,
        )
        ticks = ((self._ts[1] & self.ts_mask) - (self._ts[0] & self.ts_mask)) & self.ts_mask
        return ticks * self.timestamp_period_ns * 1e-6

    def dispatch_gpu_ms(
        self, p: RawPipeline, dset: Any, push: bytes, groups: tuple[int, int, int]
    ) -> float:
        """GPU time of one dispatch (timestamps around it)."""
        return self.gpu_ms(lambda cmd: self.record_dispatch(cmd, p, dset, push, groups))

    def copy_gpu_ms(self, src: RawBuffer, dst: RawBuffer, nbytes: int) -> float:
        """GPU time of ``vkCmdCopyBuffer`` of ``nbytes`` from ``src`` to ``dst``."""
        vk = self.vk
        region = [vk.VkBufferCopy(srcOffset=0, dstOffset=0, size=nbytes)]
        return self.gpu_ms(lambda cmd: vk.vkCmdCopyBuffer(cmd, src.handle, dst.handle, 1, region))

    # -- transfers ----------------------------------------------------------------------------

    def _staging_buffer(self, kind: str, nbytes: int) -> RawBuffer:
        st = self._staging.get(kind)
        if st is None or st.nbytes < nbytes:
            if st is not None:
                self.vk.vkDeviceWaitIdle(self.device)
                st.destroy()
            st = self.buffer(nbytes, host_visible=True, cached=(kind == "down"))
            self._staging[kind] = st
        return st

    def upload(self, dst: RawBuffer, a: np.ndarray) -> None:
        """numpy -> device: copy into the staging buffer (one memcpy), ``vkCmdCopyBuffer``, wait."""
        vk = self.vk
        src = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        n = src.nbytes
        st = self._staging_buffer("up", n)
        assert st.mapped is not None
        st.mapped[:n] = src
        region = [vk.VkBufferCopy(srcOffset=0, dstOffset=0, size=n)]

        def rec(cmd: Any) -> None:
            vk.vkCmdCopyBuffer(cmd, st.handle, dst.handle, 1, region)
            self.record_barrier(cmd)

        self.run(rec)

    def download(self, src: RawBuffer, out: np.ndarray) -> np.ndarray:
        """device -> numpy: ``vkCmdCopyBuffer`` into the staging buffer, wait, one memcpy out."""
        vk = self.vk
        flat = out.reshape(-1).view(np.uint8)
        n = flat.nbytes
        st = self._staging_buffer("down", n)
        region = [vk.VkBufferCopy(srcOffset=0, dstOffset=0, size=n)]

        def rec(cmd: Any) -> None:
            self.record_barrier(cmd)  # earlier submissions' shader writes -> this copy
            vk.vkCmdCopyBuffer(cmd, src.handle, st.handle, 1, region)
            self.record_barrier(cmd)  # the copy -> host reads

        self.run(rec)
        assert st.mapped is not None
        flat[:] = st.mapped[:n]
        return out

    def upload_image(self, dst: RawImage, a: np.ndarray) -> None:
        """numpy -> image: one memcpy into the staging buffer, ``vkCmdCopyBufferToImage``, wait."""
        vk = self.vk
        src = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        n = src.nbytes
        st = self._staging_buffer("up", n)
        assert st.mapped is not None
        st.mapped[:n] = src

        def rec(cmd: Any) -> None:
            vk.vkCmdCopyBufferToImage(
                cmd, st.handle, dst.handle, vk.VK_IMAGE_LAYOUT_GENERAL, 1, dst.region
            )
            self.record_barrier(cmd)

        self.run(rec)

    def download_image(self, src: RawImage, out: np.ndarray) -> np.ndarray:
        """image -> numpy: ``vkCmdCopyImageToBuffer`` into the staging buffer, wait, one memcpy."""
        vk = self.vk
        flat = out.reshape(-1).view(np.uint8)
        n = flat.nbytes
        st = self._staging_buffer("down", n)

        def rec(cmd: Any) -> None:
            self.record_barrier(cmd)
            vk.vkCmdCopyImageToBuffer(
                cmd, src.handle, vk.VK_IMAGE_LAYOUT_GENERAL, st.handle, 1, src.region
            )
            self.record_barrier(cmd)

        self.run(rec)
        assert st.mapped is not None
        flat[:] = st.mapped[:n]
        return out

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Wait idle and destroy everything, children first, in reverse order of creation."""
        vk = self.vk
        if self.device is not None:
            with contextlib.suppress(Exception):
                vk.vkDeviceWaitIdle(self.device)
            for destroy in reversed(self._owned):
                destroy()
            self._owned.clear()
            vk.vkDestroyQueryPool(self.device, self.query_pool, None)
            vk.vkDestroyFence(self.device, self.fence, None)
            vk.vkDestroyCommandPool(self.device, self.pool, None)  # frees its command buffers
            vk.vkDestroyDevice(self.device, None)
            self.device = None
        if self.instance is not None:
            vk.vkDestroyInstance(self.instance, None)
            self.instance = None

    def __enter__(self) -> RawVulkan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def glslc_compile(source: str, glslc: str = "glslc") -> bytes:
    """GLSL -> SPIR-V with a glslc subprocess and no cache: what a minimal runtime does.

    Example
    -------
    >>> spirv = glslc_compile("#version 450\\nlayout(local_size_x=1) in; void main() {}")
    >>> spirv[:4]
    b'\\x03\\x02#\\x07'
    """
    with tempfile.TemporaryDirectory(prefix="raw-glslc-") as d:
        src = Path(d) / "k.comp"
        out = Path(d) / "k.spv"
        src.write_text(source)
        subprocess.run(
            [glslc, "--target-env=vulkan1.2", str(src), "-o", str(out)],
            check=True,
            capture_output=True,
        )
        return out.read_bytes()


def pack(fmt: str, *values: Any) -> bytes:
    """``struct.pack`` with little-endian layout: push-constant bytes the way users build them."""
    return struct.pack("<" + fmt, *values)


def timed_ns(fn: Callable[[], Any]) -> int:
    """Wall time of one call, in nanoseconds."""
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0
