"""Images and samplers: a ``VkImage`` with its memory and views, and ``VkSampler`` settings.

An :class:`Image` is a device image made from numpy (:func:`asimage`) or empty
(``Image(shape, format)``), kept for its whole life in ``VK_IMAGE_LAYOUT_GENERAL``: the layout
storage images need, valid for sampling and transfers too, so that a kernel call or a batch
never records a layout transition (on the GPUs vknb targets the general layout costs compute
nothing measurable; docs/performance.md).  Its data moves through a staging buffer on the compute
queue, so that the barriers every kernel command buffer ends with order it after the kernels
that wrote it.

Shapes follow numpy: ``(H, W)`` or ``(H, W, C)`` for 2-D images, ``(D, H, W[, C])`` for 3-D,
``(L, H, W[, C])`` for arrays of L layers, ``(W[, C])`` for 1-D, ``(6, H, W[, C])`` for cube
maps; C is the format's channel count (a missing C means one channel).  Formats are GLSL's
format qualifiers: ``rgba8`` holds uint8 read as floats in [0, 1], ``r32f`` float32,
``rgba32ui`` uint32, and so on (see :data:`FORMATS`).

A :class:`Sampler` is a plain set of filtering and addressing choices; the ``VkSampler`` it
stands for is made per device on first use and lives as long as the device.

Example
-------
>>> import numpy as np, vknb
>>> img = vknb.asimage(np.random.rand(4, 5, 4).astype(np.float32))
>>> img.shape, img.format
((4, 5, 4), 'rgba32f')
>>> np.array_equal(img.numpy(), img.numpy())
True
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _vk
from .. import errors as E
from .._vk import constants as C
from .._vk.finalizer import Finalizer
from .buffer import Buffer, flat_bytes, host_read_barrier, next_serial, staging_for
from .device import OPEN, sharing_fields

if TYPE_CHECKING:  # pragma: no cover
    from .device import Device
    from .memory import Allocation

# format name -> (VkFormat, numpy dtype, channels, numeric kind: 'float', 'unorm', 'snorm',
# 'uint', 'sint').  The names are GLSL's format qualifiers.
FORMATS: dict[str, tuple[int, str, int, str]] = {
    "rgba32f": (109, "float32", 4, "float"),
    "rg32f": (103, "float32", 2, "float"),
    "r32f": (100, "float32", 1, "float"),
    "rgba16f": (97, "float16", 4, "float"),
    "rg16f": (83, "float16", 2, "float"),
    "r16f": (76, "float16", 1, "float"),
    "rgba8": (37, "uint8", 4, "unorm"),
    "rg8": (16, "uint8", 2, "unorm"),
    "r8": (9, "uint8", 1, "unorm"),
    "rgba8_snorm": (38, "int8", 4, "snorm"),
    "rg8_snorm": (17, "int8", 2, "snorm"),
    "r8_snorm": (10, "int8", 1, "snorm"),
    "rgba16": (91, "uint16", 4, "unorm"),
    "rg16": (77, "uint16", 2, "unorm"),
    "r16": (70, "uint16", 1, "unorm"),
    "rgba16_snorm": (92, "int16", 4, "snorm"),
    "rg16_snorm": (78, "int16", 2, "snorm"),
    "r16_snorm": (71, "int16", 1, "snorm"),
    "rgba32ui": (107, "uint32", 4, "uint"),
    "rg32ui": (101, "uint32", 2, "uint"),
    "r32ui": (98, "uint32", 1, "uint"),
    "rgba32i": (108, "int32", 4, "sint"),
    "rg32i": (102, "int32", 2, "sint"),
    "r32i": (99, "int32", 1, "sint"),
    "rgba16ui": (95, "uint16", 4, "uint"),
    "rg16ui": (81, "uint16", 2, "uint"),
    "r16ui": (74, "uint16", 1, "uint"),
    "rgba16i": (96, "int16", 4, "sint"),
    "rg16i": (82, "int16", 2, "sint"),
    "r16i": (75, "int16", 1, "sint"),
    "rgba8ui": (41, "uint8", 4, "uint"),
    "rg8ui": (20, "uint8", 2, "uint"),
    "r8ui": (13, "uint8", 1, "uint"),
    "rgba8i": (42, "int8", 4, "sint"),
    "rg8i": (21, "int8", 2, "sint"),
    "r8i": (14, "int8", 1, "sint"),
    "r64ui": (110, "uint64", 1, "uint"),
    "r64i": (111, "int64", 1, "sint"),
}
_PREFIX = {1: "r", 2: "rg", 4: "rgba"}

# VkFormatFeatureFlagBits
FEATURE_SAMPLED = 0x1
FEATURE_STORAGE = 0x2
FEATURE_UNIFORM_TEXEL = 0x8
FEATURE_STORAGE_TEXEL = 0x10
FEATURE_BLIT_SRC = 0x400
FEATURE_BLIT_DST = 0x800
FEATURE_FILTER_LINEAR = 0x1000

# VkImageUsageFlagBits
_USAGE_TRANSFER_SRC, _USAGE_TRANSFER_DST, _USAGE_SAMPLED, _USAGE_STORAGE = 0x1, 0x2, 0x4, 0x8
_LAYOUT_UNDEFINED, LAYOUT_GENERAL = 0, 1
_ASPECT_COLOR = 0x1
_CUBE_COMPATIBLE = 0x10
_IMAGE_TYPES = {"1d": 0, "2d": 1, "3d": 2, "cube": 1}
_VIEW_TYPES = {
    ("1d", False): 0,
    ("2d", False): 1,
    ("3d", False): 2,
    ("cube", False): 3,
    ("1d", True): 4,
    ("2d", True): 5,
    ("cube", True): 6,
}


def format_for(
    dtype: Any, channels: int, sampled_type: str = "float", normalized: bool = True
) -> str:
    """The format name for numpy ``dtype`` with ``channels`` channels, read as ``sampled_type``.

    Floats map to ``*32f``/``*16f``; integers read as floats (``sampled_type`` 'float') are
    normalized (``uint8`` -> ``rgba8``) unless ``normalized`` is False; integers read as integers
    keep their type (``uint8`` -> ``rgba8ui``).  Raises ValueError naming what has no format.

    Example
    -------
    >>> format_for(np.uint8, 4), format_for(np.float32, 1), format_for(np.uint32, 1, "uint")
    ('rgba8', 'r32f', 'r32ui')
    """
    dt = np.dtype(dtype)
    prefix = _PREFIX.get(channels)
    if prefix is None:
        raise ValueError(f"images hold 1, 2 or 4 channels (3 are widened to 4), not {channels}")
    if dt.kind == "f":
        bits = {4: "32f", 2: "16f"}.get(dt.itemsize)
        if bits is None:
            raise ValueError(f"no image format holds {dt}: use float32 or float16")
        return prefix + bits
    if dt.kind in "iu":
        bits = dt.itemsize * 8
        if sampled_type == "float" and normalized and bits in (8, 16):
            name = prefix + ("8" if bits == 8 else "16") + ("" if dt.kind == "u" else "_snorm")
        else:
            name = f"{prefix}{bits}{'ui' if dt.kind == 'u' else 'i'}"
        if name not in FORMATS:
            raise ValueError(f"no image format holds {channels} channel(s) of {dt}")
        return name
    raise ValueError(f"no image format holds {dt}")


def format_features(device: Device, vk_format: int) -> tuple[int, int]:
    """``(optimal tiling features, buffer features)`` of a format on ``device`` (cached)."""
    cache = _feature_cache.setdefault(device.info.handle, {})
    hit = cache.get(vk_format)
    if hit is None:
        props = _vk.ffi.new("VkFormatProperties*")
        _vk.lib.vkGetPhysicalDeviceFormatProperties(device.info.handle, vk_format, props)
        hit = cache[vk_format] = (int(props.optimalTilingFeatures), int(props.bufferFeatures))
    return hit


_feature_cache: dict[Any, dict[int, tuple[int, int]]] = {}


def image_extent(
    shape: tuple[int, ...], dim: str, arrayed: bool, channels: int, label: str
) -> tuple[tuple[int, int, int], int]:
    """``((width, height, depth), layers)`` of a numpy ``shape`` for an image of ``dim``.

    Raises ValueError saying which shapes fit."""
    spatial = {"1d": 1, "2d": 2, "3d": 3, "cube": 2}[dim] + (1 if arrayed or dim == "cube" else 0)
    want = _shape_text(dim, arrayed, channels)
    if len(shape) == spatial + 1:
        if shape[-1] != channels:
            raise ValueError(
                f"{label}: an image of {channels} channel(s) takes arrays of shape {want}; the "
                f"last dimension of {shape} is {shape[-1]}"
            )
        shape = shape[:-1]
    elif len(shape) != spatial or channels != 1:
        raise ValueError(f"{label}: takes arrays of shape {want}, got {shape}")
    if any(s <= 0 for s in shape):
        raise ValueError(f"{label}: image dimensions must be positive, got {shape}")
    layers = 1
    if arrayed or dim == "cube":
        layers, shape = shape[0], shape[1:]
        if dim == "cube" and (layers % 6 or shape[0] != shape[1]):
            raise ValueError(
                f"{label}: a cube map takes 6 square faces per cube ({want}), got {shape}"
            )
    dims = tuple(reversed(shape)) + (1,) * (3 - len(shape))
    return (int(dims[0]), int(dims[1]), int(dims[2])), int(layers)


def check_image_limits(
    device: Device, dim: str, extent: tuple[int, int, int], layers: int, label: str
) -> None:
    """ValueError naming the limit when an image of this size cannot exist on ``device``."""
    lim = device.info.limits
    key = {"1d": "max_image_dimension_1d", "2d": "max_image_dimension_2d"}.get(
        dim, "max_image_dimension_3d" if dim == "3d" else "max_image_dimension_cube"
    )
    if max(extent) > lim[key]:
        raise ValueError(
            f"{label}: an image of {extent[0]}x{extent[1]}x{extent[2]} texels is beyond "
            f"{device.info.name}'s {key} of {lim[key]}"
        )
    if layers > lim["max_image_array_layers"]:
        raise ValueError(
            f"{label}: {layers} layers are beyond {device.info.name}'s maxImageArrayLayers of "
            f"{lim['max_image_array_layers']}"
        )


def _shape_text(dim: str, arrayed: bool, channels: int) -> str:
    core = {"1d": "W", "2d": "H, W", "3d": "D, H, W", "cube": "6, H, W"}[dim]
    if arrayed:
        core = "6N, H, W" if dim == "cube" else "L, " + core
    return f"({core}, {channels})" if channels != 1 else f"({core}) or ({core}, 1)"


class Image:
    """A device image: data that kernels read and write as images or sample through samplers.

    Parameters
    ----------
    shape : tuple of int
        numpy-style shape (see the module docstring): ``(H, W, C)`` for a 2-D image.
    format : str
        A GLSL format qualifier: ``'rgba8'``, ``'r32f'``, ``'rgba16f'``, ``'r32ui'``...
    dim : str
        ``'1d'``, ``'2d'`` (default), ``'3d'`` or ``'cube'``.
    arrayed : bool
        Layers (``image2DArray``, ``sampler2DArray``): the first dimension of ``shape``.
    mipmaps : bool
        A full chain of mip levels (for sampling with a level of detail); level 0 is the data,
        :meth:`generate_mipmaps` makes the others.
    device : Device, optional
        Default: the session device.

    Example
    -------
    >>> img = vknb.Image((64, 64, 4), "rgba8")
    >>> img.nbytes
    16384
    """

    def __init__(
        self,
        shape: Any,
        format: str,  # noqa: A002 - the name GLSL and Vulkan give it
        *,
        dim: str = "2d",
        arrayed: bool = False,
        mipmaps: bool = False,
        device: Device | None = None,
        label: str | None = None,
    ) -> None:
        from .array import normalize_shape
        from .session import device as session_device

        if format not in FORMATS:
            raise ValueError(
                f"unknown image format {format!r}; formats: {', '.join(sorted(FORMATS))}"
            )
        if dim not in _IMAGE_TYPES:
            raise ValueError(f"dim must be '1d', '2d', '3d' or 'cube', got {dim!r}")
        if arrayed and dim == "3d":
            raise ValueError("3-D images have no layers (arrayed=True needs '1d', '2d' or 'cube')")
        dev = device if device is not None else session_device()
        dev.check_usable()
        dev.collect()  # (memory of objects dropped since the last safe point comes back first)
        self.device = dev
        self.serial = next_serial()
        self.label = label or f"Image#{self.serial}"
        self.shape = normalize_shape(shape)
        self.format = format
        vk_format, dtype, channels, numeric = FORMATS[format]
        self.vk_format = vk_format
        self.dtype = np.dtype(dtype)
        self.channels = channels
        self.numeric = numeric
        self.dim = dim
        self.arrayed = arrayed
        self.extent, self.layers = image_extent(self.shape, dim, arrayed, channels, self.label)
        check_image_limits(dev, dim, self.extent, self.layers, self.label)
        w, h, d = self.extent
        self.mip_levels = max(w, h, d).bit_length() if mipmaps else 1
        self.nbytes = w * h * d * self.layers * channels * self.dtype.itemsize
        optimal, _ = format_features(dev, vk_format)
        usage = _USAGE_TRANSFER_SRC | _USAGE_TRANSFER_DST
        if optimal & FEATURE_SAMPLED:
            usage |= _USAGE_SAMPLED
        if optimal & FEATURE_STORAGE:
            usage |= _USAGE_STORAGE
        if not optimal & (FEATURE_SAMPLED | FEATURE_STORAGE):
            raise E.NotAvailable(
                f"{dev.info.name} can neither sample nor store images of format {format}"
            )
        self.storage_ok = bool(optimal & FEATURE_STORAGE)
        self.sampled_ok = bool(optimal & FEATURE_SAMPLED)
        self.linear_ok = bool(optimal & FEATURE_FILTER_LINEAR)
        if mipmaps and not (optimal & FEATURE_BLIT_SRC and optimal & FEATURE_BLIT_DST):
            raise E.NotAvailable(f"{dev.info.name} cannot make mipmaps of format {format}")
        self._handles: dict[str, Any] = {}
        self.allocation: Allocation | None = None
        self._users = 0
        # Level 0 and the levels made from it change together: two threads updating one image
        # leave one's data with its own mip levels (the host-made levels are uploaded apart).
        self._levels_lock = threading.Lock()
        try:
            self._create(usage)
            self._finalizer = Finalizer(self, _collected, dev, self._handles, self.allocation)
        except BaseException:  # (Ctrl-C included) before the finalizer owns the handles
            if not hasattr(self, "_finalizer"):
                _destroy_image(dev, self._handles, None)
            raise
        dev.adopt(self)
        self._to_general()

    # -- creation ------------------------------------------------------------------------

    def _create(self, usage: int) -> None:
        ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
        dev = self.device
        keep = _vk.Keep()
        fams = [dev.compute_family]
        if dev.transfer_family is not None:
            fams.append(dev.transfer_family)
        w, h, d = self.extent
        info = _vk.new(
            "VkImageCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO,
                "flags": _CUBE_COMPATIBLE if self.dim == "cube" else 0,
                "imageType": _IMAGE_TYPES[self.dim],
                "format": self.vk_format,
                "extent": {"width": w, "height": h, "depth": d},
                "mipLevels": self.mip_levels,
                "arrayLayers": self.layers,
                "samples": 1,
                "tiling": 0,  # VK_IMAGE_TILING_OPTIMAL
                "usage": usage,
                **sharing_fields(fams, keep),
                "initialLayout": _LAYOUT_UNDEFINED,
            },
        )
        handle = _vk.create(
            "vkCreateImage",
            dev.handle,
            info,
            "VkImage",
            self.label,
            lambda h_: self._handles.__setitem__("image", h_),
        )
        req = ffi.new("VkMemoryRequirements*")
        lib.vkGetImageMemoryRequirements(dev.handle, handle, req)
        with _vk.deferred_interrupt():  # (the allocation is noted before Ctrl-C can land)
            alloc = dev.allocator.allocate(
                int(req.size),
                int(req.alignment),
                int(req.memoryTypeBits),
                "device",
                self.label,
                optimal=True,
            )
            self._handles["allocation"] = alloc  # (counted as long as it is there)
            with dev.lock:
                dev.images += 1
        self.allocation = alloc
        _vk.check(
            lib.vkBindImageMemory(dev.handle, handle, alloc.memory, alloc.offset),
            "vkBindImageMemory",
            self.label,
        )
        self.handle = handle
        self.view = self._make_view(0, self.mip_levels)
        # A storage-image descriptor needs a view of one mip level.
        self.storage_view = self.view if self.mip_levels == 1 else self._make_view(0, 1)

    def _make_view(self, base_level: int, levels: int) -> Any:
        vk = _vk.vk
        info = _vk.new(
            "VkImageViewCreateInfo",
            {
                "sType": vk.VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO,
                "image": self._handles["image"],
                "viewType": _VIEW_TYPES[(self.dim, self.arrayed)],
                "format": self.vk_format,
                "subresourceRange": {
                    "aspectMask": _ASPECT_COLOR,
                    "baseMipLevel": base_level,
                    "levelCount": levels,
                    "baseArrayLayer": 0,
                    "layerCount": self.layers,
                },
            },
        )
        views = self._handles.setdefault("views", [])
        return _vk.create(
            "vkCreateImageView", self.device.handle, info, "VkImageView", self.label, views.append
        )

    def _range(self, base_level: int = 0, levels: int | None = None) -> dict[str, int]:
        return {
            "aspectMask": _ASPECT_COLOR,
            "baseMipLevel": base_level,
            "levelCount": self.mip_levels if levels is None else levels,
            "baseArrayLayer": 0,
            "layerCount": self.layers,
        }

    def _barrier(
        self,
        cmd: Any,
        src_access: int,
        dst_access: int,
        src_stage: int,
        dst_stage: int,
        old_layout: int = LAYOUT_GENERAL,
        base_level: int = 0,
        levels: int | None = None,
    ) -> None:
        b = _vk.new(
            "VkImageMemoryBarrier",
            {
                "sType": _vk.vk.VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER,
                "srcAccessMask": src_access,
                "dstAccessMask": dst_access,
                "oldLayout": old_layout,
                "newLayout": LAYOUT_GENERAL,
                "srcQueueFamilyIndex": 0xFFFFFFFF,  # VK_QUEUE_FAMILY_IGNORED
                "dstQueueFamilyIndex": 0xFFFFFFFF,
                "image": self.handle,
                "subresourceRange": self._range(base_level, levels),
            },
        )
        null = _vk.ffi.NULL
        _vk.lib.vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 0, null, 0, null, 1, b)

    def _to_general(self) -> None:
        """The one layout transition of the image's life: UNDEFINED -> GENERAL."""
        all_access = (
            C.ACCESS_SHADER_READ_BIT
            | C.ACCESS_SHADER_WRITE_BIT
            | C.ACCESS_TRANSFER_READ_BIT
            | C.ACCESS_TRANSFER_WRITE_BIT
        )
        stages = C.PIPELINE_STAGE_COMPUTE_SHADER_BIT | C.PIPELINE_STAGE_TRANSFER_BIT
        self.device.submit(
            lambda cmd: self._barrier(
                cmd, 0, all_access, C.PIPELINE_STAGE_TOP_OF_PIPE_BIT, stages, _LAYOUT_UNDEFINED
            ),
            label=f"layout of {self.label}",
            keep=self,
        )

    # -- lifetime ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the image has been closed."""
        return self.allocation is None

    def check(self) -> Allocation:
        """The image's allocation; raise ObjectClosed (or the device's error) if unusable."""
        a = self.allocation
        if a is None:
            raise E.ObjectClosed(f"{self.label} is closed", label=self.label)
        dev = self.device
        if dev.state is not OPEN or dev.epoch != _vk.epoch:
            raise dev.unusable_error(self.label)
        return a

    def close(self) -> None:
        """Close the image now (idempotent); its memory goes once the GPU no longer uses it."""
        with self.device.lock:
            idle = self._users == 0
            if self.allocation is None:  # closed before: queue again a release Ctrl-C lost
                idle = idle and self._finalizer.alive
            self.allocation = None
        if idle:
            self._retire()

    def _retire(self) -> None:
        # Queued first, the finalizer's arguments taken when it runs (see Buffer._retire).
        fin = self._finalizer
        if fin.alive:
            self.device.retire(lambda: _destroy_once(fin))

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self.allocation is None else ""
        extra = f", {self.mip_levels} mip levels" if self.mip_levels > 1 else ""
        kind = self.dim + (" array" if self.arrayed else "")
        return f"<vknb.Image {self.label} {kind} shape={self.shape} {self.format}{extra}{state}>"

    # -- data ----------------------------------------------------------------------------

    def _copy_region(self, level: int = 0, extent: tuple[int, int, int] | None = None) -> Any:
        """The buffer <-> image copy region of mip ``level`` (of ``extent``: level 0's by
        default), every layer, tightly packed."""
        w, h, d = self.extent if extent is None else extent
        return _vk.new(
            "VkBufferImageCopy",
            {
                "imageSubresource": _layers(level, self.layers),
                "imageExtent": {"width": w, "height": h, "depth": d},
            },
        )

    def _check_data(self, data: np.ndarray) -> np.ndarray:
        if data.dtype != self.dtype:
            raise TypeError(
                f"{self.label} ({self.format}) holds {self.dtype}; got an array of {data.dtype} "
                "(nothing is converted silently)"
            )
        want = (*self.shape[:-1], self.channels) if len(self.shape) > 1 else self.shape
        if data.shape != self.shape and data.shape != want:
            raise ValueError(f"{self.label} has shape {self.shape}, got {data.shape}")
        return np.ascontiguousarray(data)

    @contextlib.contextmanager
    def _staging(self, upload: bool) -> Iterator[Buffer]:
        """A host-visible buffer for one transfer: the device's staging buffer when the image
        fits it (no allocation per transfer), else one made for the occasion."""
        dev = self.device
        st = staging_for(dev)
        if self.nbytes <= st.chunk:
            with st.lock:
                st.settle()
                yield st.up[0] if upload else st.down[0]
            return
        kind = "upload" if upload else "readback"
        buf = Buffer(self.nbytes, device=dev, memory=kind, label=f"{self.label}.{kind}")
        try:
            yield buf
        finally:
            buf.close()

    def update(self, data: np.ndarray) -> Image:
        """Overwrite level 0 from a numpy array of the image's shape and dtype; returns self.

        Example
        -------
        >>> img = vknb.Image((2, 2), "r32f"); img.update(np.ones((2, 2), np.float32)).numpy()
        array([[1., 1.],
               [1., 1.]], dtype=float32)
        """
        level0 = self._check_data(np.asarray(data))
        self.check()
        with self._levels_lock:
            self._upload_level(0, flat_bytes(level0), self.extent)
            if self.mip_levels > 1:
                self._make_mipmaps(level0)
        return self

    def numpy(self, out: np.ndarray | None = None) -> np.ndarray:
        """Copy level 0 to a new numpy array (or into ``out`` of the image's shape and dtype).

        Example
        -------
        >>> vknb.asimage(np.arange(4, dtype=np.float32).reshape(2, 2)).numpy()
        array([[0., 1.],
               [2., 3.]], dtype=float32)
        """
        if out is not None and (
            out.shape != self.shape
            or out.dtype != self.dtype
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise ValueError(
                f"out must be a writeable C-contiguous array of shape {self.shape} and dtype "
                f"{self.dtype}, got {out.shape} {out.dtype}"
            )
        self.check()
        result = np.empty(self.shape, self.dtype) if out is None else out
        with self._staging(upload=False) as staging:
            region = self._copy_region()
            sh, ih = staging.handle, self.handle

            def record(cmd: Any) -> None:
                _vk.lib.vkCmdCopyImageToBuffer(cmd, ih, LAYOUT_GENERAL, sh, 1, region)
                host_read_barrier(cmd)

            self._submit_with(record, "download", (staging, region))
            staging.read(out=flat_bytes(result), nbytes=self.nbytes)
        return result

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def to(self, device: Device) -> Image:
        """A copy of this Image (level 0, mipmaps remade) on ``device`` (through the host)."""
        if device is self.device:
            return self
        return _rebuild_image(
            self.numpy(),
            self.format,
            self.dim,
            self.arrayed,
            self.mip_levels > 1,
            self.label,
            device,
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """An Image pickles by value (rebuilt on the receiver's session device)."""
        return (
            _rebuild_image,
            (self.numpy(), self.format, self.dim, self.arrayed, self.mip_levels > 1, self.label),
        )

    def _submit_with(self, record: Any, what: str, keep: Any) -> None:
        dev = self.device
        # (a with statement's exit is a call, where Ctrl-C can land: the count is undone only
        # if it was made, whatever the point)
        counted = False
        idle = False
        try:
            with dev.lock:
                self.check()
                self._users += 1
                counted = True
            dev.submit(record, label=f"{what} {self.label}", keep=(self, keep))
        finally:
            if counted:
                with dev.lock:
                    self._users -= 1
                    idle = self.allocation is None and self._users == 0
            if idle:
                try:
                    self._retire()
                except KeyboardInterrupt:  # (as it started: retire it all the same)
                    self._retire()
                    raise

    def generate_mipmaps(self) -> None:
        """Make every mip level from level 0 by successive linear blits (``vkCmdBlitImage``).

        A blit needs a queue with graphics support; where vknb's compute queue has none (the
        dedicated compute family of NVIDIA GPUs), level 0 is read back, each level made from
        the one above with the blit's linear filter on the host, and uploaded.

        Example
        -------
        >>> img = vknb.asimage(np.ones((8, 8, 4), np.float32), mipmaps=True)
        >>> img.mip_levels
        4
        """
        with self._levels_lock:
            self._make_mipmaps(None)

    def _make_mipmaps(self, level0: np.ndarray | None) -> None:
        """Levels 1.. from level 0 (``level0``: its data where the caller has it on the host)."""
        if self.mip_levels == 1:
            return
        dev = self.device
        flags = dev.info.queue_families[dev.compute_family].flags
        blit = bool(flags & C.QUEUE_GRAPHICS_BIT)  # a blit on any other queue is invalid
        if _BLIT_MIPMAPS is not None:
            blit = blit and _BLIT_MIPMAPS
        if not blit:
            self._mipmaps_on_host(self.numpy() if level0 is None else level0)
            return
        w, h, d = self.extent
        ih = self.handle

        def record(cmd: Any) -> None:
            lw, lh, ld = w, h, d
            for level in range(1, self.mip_levels):
                nw, nh, nd = max(1, lw // 2), max(1, lh // 2), max(1, ld // 2)
                self._barrier(
                    cmd,
                    C.ACCESS_TRANSFER_WRITE_BIT | C.ACCESS_SHADER_WRITE_BIT,
                    C.ACCESS_TRANSFER_READ_BIT,
                    C.PIPELINE_STAGE_TRANSFER_BIT | C.PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    C.PIPELINE_STAGE_TRANSFER_BIT,
                    base_level=level - 1,
                    levels=1,
                )
                blit = _vk.new(
                    "VkImageBlit",
                    {
                        "srcSubresource": _layers(level - 1, self.layers),
                        "srcOffsets": [{"x": 0, "y": 0, "z": 0}, {"x": lw, "y": lh, "z": ld}],
                        "dstSubresource": _layers(level, self.layers),
                        "dstOffsets": [{"x": 0, "y": 0, "z": 0}, {"x": nw, "y": nh, "z": nd}],
                    },
                )
                _vk.lib.vkCmdBlitImage(
                    cmd,
                    ih,
                    LAYOUT_GENERAL,
                    ih,
                    LAYOUT_GENERAL,
                    1,
                    blit,
                    1,  # VK_FILTER_LINEAR
                )
                lw, lh, ld = nw, nh, nd
            self._barrier(
                cmd,
                C.ACCESS_TRANSFER_WRITE_BIT,
                C.ACCESS_SHADER_READ_BIT | C.ACCESS_TRANSFER_READ_BIT,
                C.PIPELINE_STAGE_TRANSFER_BIT,
                C.PIPELINE_STAGE_COMPUTE_SHADER_BIT | C.PIPELINE_STAGE_TRANSFER_BIT,
            )

        self._submit_with(record, "mipmaps of", None)

    def _mipmaps_on_host(self, level0: np.ndarray) -> None:
        """Levels 1.. made on the host from level 0, as the blits would, and uploaded."""
        w, h, d = self.extent
        level = np.asarray(level0).reshape(self.layers, d, h, w, self.channels)
        for n in range(1, self.mip_levels):
            level = _half_level(level, self.numeric, self.dtype)
            _, ld, lh, lw, _ = level.shape
            self._upload_level(n, flat_bytes(np.ascontiguousarray(level)), (lw, lh, ld))

    def _upload_level(self, n: int, flat: Any, extent: tuple[int, int, int]) -> None:
        """Write mip level ``n`` (of ``extent``, every layer) from the bytes ``flat``."""
        region = self._copy_region(n, extent)
        with self._staging(upload=True) as staging:
            staging.write(flat)
            sh, ih = staging.handle, self.handle

            def record(cmd: Any) -> None:
                _vk.lib.vkCmdCopyBufferToImage(cmd, sh, ih, LAYOUT_GENERAL, 1, region)
                self._barrier(
                    cmd,
                    C.ACCESS_TRANSFER_WRITE_BIT,
                    C.ACCESS_SHADER_READ_BIT
                    | C.ACCESS_SHADER_WRITE_BIT
                    | C.ACCESS_TRANSFER_READ_BIT,
                    C.PIPELINE_STAGE_TRANSFER_BIT,
                    C.PIPELINE_STAGE_COMPUTE_SHADER_BIT | C.PIPELINE_STAGE_TRANSFER_BIT,
                    base_level=n,
                    levels=1,
                )

            label = "upload" if n == 0 else f"mip level {n} upload of"
            self._submit_with(record, label, (staging, region))

    def clear(self) -> None:
        """Set every texel of every level to zero (``vkCmdClearColorImage``)."""
        ffi = _vk.ffi
        color = ffi.new("VkClearColorValue*")
        rng = _vk.new("VkImageSubresourceRange", self._range())
        ih = self.handle

        def record(cmd: Any) -> None:
            _vk.lib.vkCmdClearColorImage(cmd, ih, LAYOUT_GENERAL, color, 1, rng)
            self._barrier(
                cmd,
                C.ACCESS_TRANSFER_WRITE_BIT,
                C.ACCESS_SHADER_READ_BIT | C.ACCESS_SHADER_WRITE_BIT | C.ACCESS_TRANSFER_READ_BIT,
                C.PIPELINE_STAGE_TRANSFER_BIT,
                C.PIPELINE_STAGE_COMPUTE_SHADER_BIT | C.PIPELINE_STAGE_TRANSFER_BIT,
            )

        self._submit_with(record, "clear", (color, rng))


def _rebuild_image(
    data: np.ndarray,
    fmt: str,
    dim: str,
    arrayed: bool,
    mipmaps: bool,
    label: str,
    device: Device | None = None,
) -> Image:
    img = Image(
        data.shape, fmt, dim=dim, arrayed=arrayed, mipmaps=mipmaps, device=device, label=label
    )
    try:
        img.update(data)
    except BaseException:
        img.close()
        raise
    return img


#: How :meth:`Image.generate_mipmaps` makes the levels: ``None`` decides by the compute queue
#: (blits where it has graphics support, the host otherwise); tests force the host path
#: (False), or ask for blits (True), which a queue without graphics support never gets: there
#: (NVIDIA's compute-only family) a blit is invalid and loses the device.
_BLIT_MIPMAPS: bool | None = None


def _half_level(level: np.ndarray, numeric: str, dtype: np.dtype) -> np.ndarray:
    """The next mip level of ``level`` (layers, d, h, w, channels): each of d, h and w halved
    (rounded down, at least 1) as a linear blit does: every new texel is the bilinear (or
    trilinear) sample of the level above at the new texel's centre; integer formats take the
    nearest texel.  Normalized formats are filtered as the floats they stand for and rounded
    back."""
    x = level
    if numeric in ("unorm", "snorm"):
        top = float(np.iinfo(dtype).max)
        x = x.astype(np.float64) / top
        if numeric == "snorm":
            x = np.maximum(x, -1.0)
    elif numeric == "float":
        x = x.astype(np.float64)
    for axis in (1, 2, 3):
        n = x.shape[axis]
        m = max(1, n // 2)
        if m == n:
            continue
        u = np.clip((np.arange(m) + 0.5) * (n / m) - 0.5, 0, n - 1)
        if numeric in ("uint", "sint"):
            x = np.take(x, np.floor(u + 0.5).astype(np.intp).clip(0, n - 1), axis=axis)
            continue
        i0 = np.floor(u).astype(np.intp)
        i1 = np.minimum(i0 + 1, n - 1)
        shape = [1] * x.ndim
        shape[axis] = m
        f = (u - i0).reshape(shape)
        x = np.take(x, i0, axis=axis) * (1 - f) + np.take(x, i1, axis=axis) * f
    if numeric in ("unorm", "snorm"):
        top = float(np.iinfo(dtype).max)
        lo = 0.0 if numeric == "unorm" else -top
        return np.clip(np.rint(x * top), lo, top).astype(dtype)
    return x.astype(dtype)


def _layers(level: int, layers: int) -> dict[str, int]:
    return {
        "aspectMask": _ASPECT_COLOR,
        "mipLevel": level,
        "baseArrayLayer": 0,
        "layerCount": layers,
    }


def _destroy_image(dev: Device, handles: dict[str, Any], alloc: Allocation | None) -> None:
    """Destroy the views, the image and free its memory (the GPU is done with them)."""
    if "allocation" in handles:
        with dev.lock:
            dev.images -= 1
    if not dev.handle_alive():
        return
    ffi, lib = _vk.ffi, _vk.lib
    for view in handles.pop("views", []):
        lib.vkDestroyImageView(dev.handle, view, ffi.NULL)
    if "image" in handles:
        lib.vkDestroyImage(dev.handle, handles.pop("image"), ffi.NULL)
    a = handles.pop("allocation", None)
    if a is not None:
        dev.allocator.free(a)


def _destroy_once(fin: Finalizer) -> None:
    """Destroy what an image's finalizer would, unless it (or this) ran already."""
    info = fin.detach()
    if info is not None:
        _destroy_image(*info[2])


def _collected(dev: Device, handles: dict[str, Any], alloc: Allocation | None) -> None:
    """Finalizer of an Image collected without close() (see Device.retire_collected)."""
    if dev.handle_alive():
        dev.retire_collected(lambda: _destroy_image(dev, handles, alloc))


# --- samplers --------------------------------------------------------------------------------

_FILTERS = {"nearest": 0, "linear": 1}
_ADDRESS = {"repeat": 0, "mirrored_repeat": 1, "clamp_to_edge": 2, "clamp_to_border": 3}
_BORDERS = {"transparent_black": 0, "opaque_black": 2, "opaque_white": 4}


@dataclass(frozen=True)
class Sampler:
    """How a kernel samples an image: filtering, addressing, coordinates, mip levels.

    Pass it with an image to a combined image sampler (``k((img, vknb.Sampler(...)))``), or alone
    to a ``sampler`` binding.  Without one, a combined binding samples with the default:
    linear filtering, clamp to edge, normalized coordinates.

    Parameters
    ----------
    filter : str
        ``'linear'`` (default) or ``'nearest'``, for magnification and minification.
    address : str
        ``'clamp_to_edge'`` (default), ``'repeat'``, ``'mirrored_repeat'``, ``'clamp_to_border'``.
    normalized : bool
        Coordinates in [0, 1] (default) or in texels (``False``: no mipmaps, clamp modes only).
    border : str
        ``'transparent_black'`` (default), ``'opaque_black'``, ``'opaque_white'``, for
        ``clamp_to_border``.
    mipmap : str or None
        ``'linear'`` or ``'nearest'``: how levels of detail blend (default: as ``filter``).
    max_lod : float
        The highest level of detail sampled (default: every level).

    Example
    -------
    >>> vknb.Sampler(filter="nearest", address="repeat").address
    'repeat'
    """

    filter: str = "linear"
    address: str = "clamp_to_edge"
    normalized: bool = True
    border: str = "transparent_black"
    mipmap: str | None = None
    max_lod: float = 1000.0

    def __post_init__(self) -> None:
        if self.mipmap is None:
            object.__setattr__(self, "mipmap", self.filter)
        for what, value, table in (
            ("filter", self.filter, _FILTERS),
            ("address", self.address, _ADDRESS),
            ("border", self.border, _BORDERS),
            ("mipmap", self.mipmap, _FILTERS),
        ):
            if value not in table:
                raise ValueError(
                    f"Sampler({what}={value!r}): expected one of {', '.join(map(repr, table))}"
                )
        if not self.normalized and self.address not in ("clamp_to_edge", "clamp_to_border"):
            raise ValueError(
                "Sampler(normalized=False) needs address 'clamp_to_edge' or 'clamp_to_border' "
                "(Vulkan's rule for unnormalized coordinates)"
            )

    def handle(self, device: Device) -> Any:
        """The ``VkSampler`` for ``device`` (made on first use, kept as long as the device)."""
        return _sampler_cache(device).get(self)


class _Samplers:
    """The VkSamplers of one device, by settings; closed with the device."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.handles: dict[Sampler, Any] = {}
        self.lock = threading.Lock()
        device.adopt(self)

    def get(self, s: Sampler) -> Any:
        with self.lock:
            h = self.handles.get(s)
            if h is not None:
                return h
            self.device.check_usable()
            unnormalized = not s.normalized
            info = _vk.new(
                "VkSamplerCreateInfo",
                {
                    "sType": _vk.vk.VK_STRUCTURE_TYPE_SAMPLER_CREATE_INFO,
                    "magFilter": _FILTERS[s.filter],
                    "minFilter": _FILTERS[s.filter],
                    "mipmapMode": 0 if unnormalized else _FILTERS[s.mipmap or s.filter],
                    "addressModeU": _ADDRESS[s.address],
                    "addressModeV": _ADDRESS[s.address],
                    "addressModeW": _ADDRESS[s.address],
                    "mipLodBias": 0.0,
                    "anisotropyEnable": 0,
                    "maxAnisotropy": 1.0,
                    "compareEnable": 0,
                    "minLod": 0.0,
                    "maxLod": 0.0 if unnormalized else float(s.max_lod),
                    "borderColor": _BORDERS[s.border],
                    "unnormalizedCoordinates": int(unnormalized),
                },
            )
            h = _vk.create(
                "vkCreateSampler",
                self.device.handle,
                info,
                "VkSampler",
                "sampler",
                lambda x: self.handles.__setitem__(s, x),
            )
            return h

    def close(self) -> None:
        dev = self.device
        with self.lock:
            handles, self.handles = list(self.handles.values()), {}
        if not handles or not dev.handle_alive():
            return

        def destroy() -> None:
            for h in handles:
                _vk.lib.vkDestroySampler(dev.handle, h, _vk.ffi.NULL)

        dev.retire(destroy)


_samplers: weakref.WeakKeyDictionary[Device, _Samplers] = weakref.WeakKeyDictionary()
_samplers_lock = threading.Lock()


def _sampler_cache(device: Device) -> _Samplers:
    with _samplers_lock:
        c = _samplers.get(device)
        if c is None:
            c = _samplers[device] = _Samplers(device)
        return c


DEFAULT_SAMPLER = Sampler()


def asimage(
    a: Any,
    format: str | None = None,  # noqa: A002
    *,
    dim: str = "2d",
    arrayed: bool = False,
    normalized: bool = True,
    mipmaps: bool = False,
    device: Device | None = None,
    label: str | None = None,
) -> Image:
    """Copy a numpy array to a new device :class:`Image`.

    The format follows the array unless given: float32 -> ``*32f``, float16 -> ``*16f``, uint8 and
    uint16 -> normalized ``rgba8``/``rgba16`` (``normalized=False``: ``rgba8ui``...), int8/int16 ->
    ``*_snorm``, 32-bit integers -> ``*32ui``/``*32i``.  An array with 3 channels is widened to
    4, alpha 1 (the largest value for normalized integers); ``numpy()`` then returns 4 channels.

    Example
    -------
    >>> img = vknb.asimage(np.zeros((16, 16, 3), np.uint8))
    >>> img.format, img.shape
    ('rgba8', (16, 16, 4))
    """
    if isinstance(a, Image):
        return a
    arr = np.asarray(a)
    spatial = {"1d": 1, "2d": 2, "3d": 3, "cube": 2}.get(dim, 2) + (
        1 if arrayed or dim == "cube" else 0
    )
    channels = arr.shape[-1] if arr.ndim == spatial + 1 else 1
    if channels == 3:
        arr = widen_rgb(arr)
        channels = 4
    fmt = format
    if fmt is None:
        kind = "uint" if arr.dtype.kind == "u" and not normalized else "float"
        if arr.dtype.kind == "i" and not normalized:
            kind = "int"
        fmt = format_for(arr.dtype, channels, kind, normalized)
    img = Image(
        arr.shape, fmt, dim=dim, arrayed=arrayed, mipmaps=mipmaps, device=device, label=label
    )
    try:
        img.update(arr)
    except BaseException:
        img.close()
        raise
    return img


def widen_rgb(arr: np.ndarray) -> np.ndarray:
    """An array of 3 channels with a fourth: 1.0 for floats, the maximum for integers."""
    alpha = 1.0 if arr.dtype.kind == "f" else np.iinfo(arr.dtype).max
    out = np.empty((*arr.shape[:-1], 4), arr.dtype)
    out[..., :3] = arr
    out[..., 3] = alpha
    return out


def zeros_image(
    shape: Any,
    format: str,  # noqa: A002
    *,
    dim: str = "2d",
    arrayed: bool = False,
    device: Device | None = None,
    label: str | None = None,
) -> Image:
    """A device :class:`Image` filled with zeros.

    Example
    -------
    >>> vknb.zeros_image((2, 3), "r32f").numpy()
    array([[0., 0., 0.],
           [0., 0., 0.]], dtype=float32)
    """
    img = Image(shape, format, dim=dim, arrayed=arrayed, device=device, label=label)
    img.clear()
    return img
