"""Turning a kernel call's arguments into descriptors: buffers, images, samplers, texel buffers.

A :class:`Binder` belongs to one Kernel.  For each call it checks every argument against its
slot (all checks before anything is allocated or uploaded), then gives each descriptor its
resource: a device ``Array``, ``Buffer`` or ``Image`` is bound as it is; a numpy array is
copied into a *scratch* resource owned by the call (kept for the kernel's next calls once the
call is done, so repeated calls bind the same memory and reuse their descriptor sets).

What each binding kind takes:

* storage / uniform buffer: numpy array, ``Array``, ``Buffer``; a uniform block also a dict;
* storage image (``image2D`` with a format): numpy array of the format's dtype and channels,
  or an ``Image`` of that format; written back in place unless ``readonly``;
* sampled image (``texture2D``) and combined image sampler (``sampler2D``): numpy array (its
  format follows the dtype: float32 -> ``*32f``, uint8 -> normalized ``rgba8``..., 3 channels
  widened to 4) or ``Image``; a combined one also ``(image, vknb.Sampler(...))``;
* sampler: a ``vknb.Sampler``;
* texel buffers (``samplerBuffer``, ``imageBuffer``): 1-D numpy arrays ``(N,)`` or ``(N, C)``,
  or ``Array``.

Example
-------
>>> prep = kernel.binder.prepare(values, device, private=False)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .. import errors as E
from ..core.array import Array, is_masked
from ..core.buffer import Buffer
from ..core.image import (
    DEFAULT_SAMPLER,
    FEATURE_FILTER_LINEAR,
    FEATURE_STORAGE_TEXEL,
    FEATURE_UNIFORM_TEXEL,
    FORMATS,
    Image,
    Sampler,
    format_features,
    format_for,
    image_extent,
    widen_rgb,
)
from ..core.pipeline import Descriptor
from .args import (
    BindingSlot,
    check_array_dtype,
    expected_text,
    one_member_value,
    pack_block,
    uniform_from_array,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..core.device import Device

_SCRATCH_KEPT = 2  # free scratch resources kept per binding (one per thread calling at once)

_BUFFER_KINDS = ("storage", "uniform")
_IMAGE_KINDS = ("storage_image", "sampled_image", "combined_image_sampler")
_TEXEL_KINDS = ("uniform_texel_buffer", "storage_texel_buffer")
_NUMERIC = {"float": "float", "unorm": "float", "snorm": "float", "uint": "uint", "sint": "int"}


class Planned(NamedTuple):
    """One checked argument (for one descriptor): what it is and what it needs."""

    kind: str  # buffer, numpy, packed, image, numpy_image, sampler, texel, numpy_texel
    value: Any
    nbytes: int = 0
    format: str | None = None  # images and texel buffers
    sampler: Sampler | None = None  # combined image samplers and sampler bindings


class Prepared:
    """One call's resolved resources."""

    __slots__ = (
        "buffers",
        "bytes_in",
        "kernel_bytes",
        "reads",
        "resources",
        "scratch",
        "writeback",
        "writes",
    )

    def __init__(self) -> None:
        self.reads: list[int] = []  # serials of the resources the shader may read
        self.writes: list[int] = []  # ... and may write
        # (set, binding, descriptor type, descriptors), for the descriptor sets
        self.resources: list[tuple[int, int, int, list[Descriptor]]] = []
        self.writeback: list[tuple[np.ndarray, Any]] = []  # (numpy array, Buffer or Image)
        self.buffers: list[Any] = []  # every Buffer and Image bound (checked open, kept alive)
        self.scratch: list[tuple[tuple[int, int], Any]] = []  # taken from the kernel
        self.bytes_in = 0
        self.kernel_bytes = 0


class Binder:
    """Checks a kernel's arguments and binds them (see the module docstring)."""

    def __init__(self, name: str, slots: list[BindingSlot]) -> None:
        self.name = name
        self.slots = slots
        self.closed = False
        self._scratch: dict[tuple[int, int], list[Any]] = {}  # free scratch resources

    # -- checking ------------------------------------------------------------------------

    def prepare(self, vals: list[Any], dev: Device, private: bool) -> Prepared:
        """Check every argument, then take resources and upload; all checks come first."""
        plan = [self._plan_slot(slot, v, dev) for slot, v in zip(self.slots, vals, strict=True)]
        self._check_numpy_aliases(plan)
        prep = Prepared()
        uploaded: dict[tuple[int, int], Any] = {}  # numpy memory -> its resource
        try:
            for slot, items in zip(self.slots, plan, strict=True):
                descriptors: list[Descriptor] = []
                for element, item in enumerate(items):
                    res, desc = self._materialize(slot, element, item, dev, private, prep, uploaded)
                    descriptors.append(desc)
                    if res is None:  # a sampler
                        continue
                    prep.buffers.append(res)
                    if not slot.writeonly:
                        prep.reads.append(res.serial)
                    if not slot.readonly:
                        prep.writes.append(res.serial)
                    n = item.nbytes or res.nbytes
                    prep.kernel_bytes += n * ((not slot.writeonly) + (not slot.readonly))
                prep.resources.append((slot.set, slot.binding, slot.descriptor_type, descriptors))
        except BaseException:
            self.give_back(prep.scratch, keep=False)
            raise
        return prep

    def _plan_slot(self, slot: BindingSlot, v: Any, dev: Device) -> list[Planned]:
        """What one argument is, checked: one Planned per descriptor."""
        kind = slot.kind
        if kind not in _BUFFER_KINDS + _IMAGE_KINDS + _TEXEL_KINDS + ("sampler",):
            raise TypeError(
                f"{self.name}: binding {slot.name!r} is a {kind}, which a compute kernel call "
                "cannot fill"
            )
        if slot.is_array:
            if not isinstance(v, (list, tuple)) or (
                kind == "combined_image_sampler" and _is_pair(v)
            ):
                raise TypeError(
                    f"{self.name}: binding {slot.name!r} is an array of {slot.count} "
                    f"descriptors; pass a list of {slot.count} values"
                )
            if len(v) != slot.count:
                raise ValueError(
                    f"{self.name}: binding {slot.name!r} is an array of {slot.count} "
                    f"descriptors; got {len(v)}"
                )
            return [self._plan_one(slot, x, dev, f"{slot.name!r}[{i}]") for i, x in enumerate(v)]
        return [self._plan_one(slot, v, dev, repr(slot.name))]

    def _plan_one(self, slot: BindingSlot, v: Any, dev: Device, what: str) -> Planned:
        if is_masked(v):
            raise TypeError(
                f"{self.name}: binding {what} got a masked array; its mask cannot go to the GPU. "
                "Pass a.filled(value) (or a.data)"
            )
        if isinstance(v, (Array, Buffer, Image)):
            if v.closed:
                raise E.ObjectClosed(
                    f"{self.name}: binding {what} got {v.label}, which is closed", label=v.label
                )
            if v.device is not dev:
                raise ValueError(
                    f"{self.name}: binding {what} holds {type(v).__name__} {v.label} of "
                    f"{v.device.label}, but the kernel runs on {dev.label}; copy it there with "
                    f"{'img' if isinstance(v, Image) else 'a'}.to(device), or build the kernel "
                    "for the other device with kernel.to(device)"
                    + (
                        " (a kernel that calls debugPrintfEXT runs on a device of its own unless "
                        "VKNB_VALIDATION=1: make its Arrays with device=kernel.device)"
                        if dev.instance.printf and not v.device.instance.printf
                        else ""
                    )
                )
        kind = slot.kind
        if kind in _BUFFER_KINDS:
            return self._plan_buffer(slot, v, dev, what)
        if kind == "sampler":
            if not isinstance(v, Sampler):
                raise TypeError(
                    f"{self.name}: binding {what} is a sampler; pass vknb.Sampler(...), got "
                    f"{type(v).__name__}"
                )
            return Planned("sampler", None, sampler=v)
        if kind in _TEXEL_KINDS:
            return self._plan_texel(slot, v, dev, what)
        return self._plan_image(slot, v, dev, what)

    def _plan_buffer(self, slot: BindingSlot, v: Any, dev: Device, what: str) -> Planned:
        b = slot.primary
        kind = slot.kind
        block = b.block
        lim = dev.info.limits
        fixed = block.size if block is not None else 0
        max_range = lim[
            "max_storage_buffer_range" if kind == "storage" else "max_uniform_buffer_range"
        ]
        if isinstance(v, Array):
            if kind == "storage":
                check_array_dtype(slot, v.dtype, v.shape, self.name)
            entry = Planned("buffer", v.buffer, v.nbytes)
        elif isinstance(v, Buffer):
            entry = Planned("buffer", v, v.nbytes)
        elif isinstance(v, np.ndarray) and not (
            kind == "uniform" and (v.dtype.names is not None or one_member_value(block, v))
        ):
            if kind == "uniform" and block is not None:
                v = uniform_from_array(self.name, b, v)
            else:
                check_array_dtype(slot, v.dtype, v.shape, self.name)
            self._check_numpy(slot, v, what, writable=kind == "storage")
            entry = Planned("numpy", v, v.nbytes)
        elif kind == "uniform" and block is not None and not isinstance(v, Image):
            data = pack_block(block, v, f"{self.name}: uniform block {what}")
            entry = Planned("packed", data, len(data))
        else:
            raise TypeError(
                f"{self.name}: binding {what} ({kind} buffer of {expected_text(b)}) "
                f"takes a numpy array or a vknb.Array, got {type(v).__name__}"
            )
        nbytes = entry.nbytes
        if nbytes < max(fixed, 1):
            raise ValueError(
                f"{self.name}: binding {what} needs at least {fixed} bytes (the fixed part "
                f"of block {block.name if block else '?'}), got {nbytes}"
            )
        if nbytes > max_range:
            raise ValueError(
                f"{self.name}: binding {what} is {nbytes} bytes, beyond {dev.info.name}'s "
                f"max{'Storage' if kind == 'storage' else 'Uniform'}BufferRange ({max_range} "
                "bytes); split the data over several calls or bindings"
            )
        return entry

    def _check_numpy(self, slot: BindingSlot, v: np.ndarray, what: str, writable: bool) -> None:
        if not v.flags.c_contiguous:
            raise ValueError(
                f"{self.name}: binding {what} got a non-contiguous array (strides "
                f"{v.strides}); pass np.ascontiguousarray(x)"
            )
        if v.nbytes == 0:
            raise ValueError(f"{self.name}: binding {what} got an empty array")
        if writable and not slot.readonly and not v.flags.writeable:
            raise ValueError(
                f"{self.name}: binding {what} may be written by the shader, but the "
                "array is read-only; pass a writeable array (or declare the binding "
                "readonly)"
            )

    def _plan_image(self, slot: BindingSlot, v: Any, dev: Device, what: str) -> Planned:
        info = slot.primary.image
        assert info is not None
        kind = slot.kind
        sampler: Sampler | None = None
        if kind == "combined_image_sampler":
            sampler = DEFAULT_SAMPLER
            if _is_pair(v):
                v, sampler = v
        elif _is_pair(v):
            raise TypeError(
                f"{self.name}: binding {what} is a {kind}, which takes no sampler; pass the "
                "image alone"
            )
        dim = info.dim
        unfillable = (
            f"a {info.dim} image"
            if dim not in ("1d", "2d", "3d", "cube")
            else "a multisampled image"
            if info.multisampled
            else "a depth (shadow) image, and vknb has no depth formats or comparison samplers"
            if info.depth
            else f"a {info.format} image, a packed format with no numpy dtype"
            if info.format is not None and info.format not in FORMATS
            else None
        )
        if unfillable is not None:
            raise TypeError(
                f"{self.name}: binding {what} is {unfillable}, which a kernel call cannot fill"
            )
        if isinstance(v, Image):
            if (v.dim, v.arrayed) != (dim, info.arrayed):
                raise TypeError(
                    f"{self.name}: binding {what} is a {_dims(dim, info.arrayed)} image; "
                    f"{v.label} is a {_dims(v.dim, v.arrayed)} one"
                )
            fmt = v.format
            self._check_image_format(slot, fmt, what, v.label)
            if kind == "storage_image" and not v.storage_ok:
                raise ValueError(
                    f"{self.name}: binding {what}: {dev.info.name} cannot store into images of "
                    f"format {fmt}"
                )
            self._check_sampler(sampler, fmt, v.linear_ok, what)
            return Planned("image", v, v.nbytes, fmt, sampler)
        if not isinstance(v, np.ndarray):
            raise TypeError(
                f"{self.name}: binding {what} ({kind}) takes a numpy array or a vknb.Image"
                + (" (with a vknb.Sampler as a pair)" if sampler is not None else "")
                + f", got {type(v).__name__}"
            )
        self._check_numpy(slot, v, what, writable=kind == "storage_image")
        spatial = {"1d": 1, "2d": 2, "3d": 3, "cube": 2}[dim] + (
            1 if info.arrayed or dim == "cube" else 0
        )
        channels = v.shape[-1] if v.ndim == spatial + 1 else 1
        if kind == "storage_image":
            fmt = info.format or format_for(v.dtype, channels, info.sampled_type, False)
            fdtype, fchannels = FORMATS[fmt][1], FORMATS[fmt][2]
            if v.dtype != np.dtype(fdtype):
                raise TypeError(
                    f"{self.name}: binding {what} is a {fmt} image of {fdtype}; got an array "
                    f"of {v.dtype} (nothing is converted silently)"
                )
            image_extent(
                v.shape, dim, info.arrayed, fchannels, f"{self.name}: binding {what} ({fmt})"
            )
        else:
            if channels == 3:
                v = widen_rgb(v)
                channels = 4
            try:
                fmt = format_for(v.dtype, channels, info.sampled_type)
            except ValueError as e:
                raise ValueError(f"{self.name}: binding {what}: {e}") from None
            self._check_image_format(slot, fmt, what, "the array")
            image_extent(v.shape, dim, info.arrayed, channels, f"{self.name}: binding {what}")
            optimal, _ = format_features(dev, FORMATS[fmt][0])
            self._check_sampler(sampler, fmt, bool(optimal & FEATURE_FILTER_LINEAR), what)
        return Planned("numpy_image", v, v.nbytes, fmt, sampler)

    def _check_image_format(self, slot: BindingSlot, fmt: str, what: str, whose: str) -> None:
        info = slot.primary.image
        assert info is not None
        if slot.kind == "storage_image" and info.format is not None and fmt != info.format:
            raise TypeError(
                f"{self.name}: binding {what} is a {info.format} image; {whose} is {fmt}"
            )
        numeric = _NUMERIC[FORMATS[fmt][3]]
        if numeric != info.sampled_type:
            prefix = {"float": "", "uint": "u", "int": "i"}[info.sampled_type]
            raise TypeError(
                f"{self.name}: binding {what} reads {info.sampled_type} values "
                f"({prefix}{'image' if slot.kind == 'storage_image' else 'sampler'}...); "
                f"{whose} has format {fmt}, which reads as {numeric}"
            )

    def _check_sampler(self, sampler: Sampler | None, fmt: str, linear_ok: bool, what: str) -> None:
        if sampler is None:
            return
        if not isinstance(sampler, Sampler):
            raise TypeError(
                f"{self.name}: binding {what}: the second item of the pair must be a "
                f"vknb.Sampler, got {type(sampler).__name__}"
            )
        if "linear" in (sampler.filter, sampler.mipmap) and not linear_ok:
            raise ValueError(
                f"{self.name}: binding {what}: images of format {fmt} cannot be filtered "
                "linearly on this device (integer formats never can); pass "
                "(image, vknb.Sampler(filter='nearest'))"
            )

    def _plan_texel(self, slot: BindingSlot, v: Any, dev: Device, what: str) -> Planned:
        info = slot.primary.image
        assert info is not None
        if isinstance(v, Array):
            dtype, shape, nbytes = v.dtype, v.shape, v.nbytes
        elif isinstance(v, np.ndarray):
            self._check_numpy(slot, v, what, writable=slot.kind == "storage_texel_buffer")
            dtype, shape, nbytes = v.dtype, v.shape, v.nbytes
        else:
            raise TypeError(
                f"{self.name}: binding {what} ({slot.kind}) takes a 1-D numpy array or a "
                f"vknb.Array, got {type(v).__name__}"
            )
        if len(shape) not in (1, 2):
            raise ValueError(
                f"{self.name}: binding {what} is a texel buffer: it takes shape (N,) or (N, C), "
                f"got {shape}"
            )
        channels = shape[1] if len(shape) == 2 else 1
        if info.format is not None and info.format not in FORMATS:
            raise TypeError(
                f"{self.name}: binding {what} is a {info.format} texel buffer, a packed format "
                "with no numpy dtype, which a kernel call cannot fill"
            )
        if slot.kind == "storage_texel_buffer" and info.format is not None:
            fmt = info.format
            if np.dtype(FORMATS[fmt][1]) != dtype or FORMATS[fmt][2] != channels:
                raise TypeError(
                    f"{self.name}: binding {what} is a {fmt} texel buffer (shape (N, "
                    f"{FORMATS[fmt][2]}) of {FORMATS[fmt][1]}); got shape {shape} of {dtype}"
                )
        else:
            try:
                fmt = format_for(dtype, channels, info.sampled_type)
            except ValueError as e:
                raise ValueError(f"{self.name}: binding {what}: {e}") from None
            self._check_image_format(slot, fmt, what, "the array")
        _, features = format_features(dev, FORMATS[fmt][0])
        need = (
            FEATURE_STORAGE_TEXEL if slot.kind == "storage_texel_buffer" else FEATURE_UNIFORM_TEXEL
        )
        if not features & need:
            raise ValueError(
                f"{self.name}: binding {what}: {dev.info.name} has no {slot.kind.replace('_', ' ')}"
                f" of format {fmt}"
            )
        texels = shape[0]
        limit = dev.info.limits["max_texel_buffer_elements"]
        if texels > limit:
            raise ValueError(
                f"{self.name}: binding {what} holds {texels} texels, beyond {dev.info.name}'s "
                f"maxTexelBufferElements of {limit}"
            )
        return Planned("texel" if isinstance(v, Array) else "numpy_texel", v, nbytes, fmt)

    def _check_numpy_aliases(self, plan: list[list[Planned]]) -> None:
        """Two numpy arguments that overlap must be the same array (then one resource serves
        both, as one device Array would); partial overlaps are refused."""
        seen: list[tuple[int, int, np.ndarray, str]] = []
        for slot, items in zip(self.slots, plan, strict=True):
            for i, item in enumerate(items):
                if item.kind not in ("numpy", "numpy_image", "numpy_texel"):
                    continue
                v = item.value
                start = v.__array_interface__["data"][0]
                end = start + v.nbytes
                where = slot.name if not slot.is_array else f"{slot.name}[{i}]"
                for s0, e0, other, other_where in seen:
                    if start < e0 and s0 < end and not _same_memory(v, other):
                        raise ValueError(
                            f"{self.name}: the numpy arrays given for {other_where!r} and "
                            f"{where!r} overlap without being the same array; pass the same "
                            "array (one buffer on the device) or separate copies"
                        )
                seen.append((start, end, v, where))

    # -- binding -------------------------------------------------------------------------

    def _materialize(
        self,
        slot: BindingSlot,
        element: int,
        item: Planned,
        dev: Device,
        private: bool,
        prep: Prepared,
        uploaded: dict[tuple[int, int], Any],
    ) -> tuple[Any, Descriptor]:
        """The resource and descriptor of one checked value (a scratch one for numpy)."""
        kind = item.kind
        if kind == "sampler":
            assert item.sampler is not None
            h = item.sampler.handle(dev)
            return None, Descriptor("sampler", None, h, ("sampler", item.sampler))
        if kind in ("buffer", "packed", "numpy"):
            if kind == "packed":
                buf = self._take_buffer((slot.index, element), item.nbytes, dev, private, prep)
                buf.write(np.frombuffer(item.value, np.uint8))
                prep.bytes_in += item.nbytes
            elif kind == "numpy":
                buf = self._numpy_resource(slot, element, item, dev, private, prep, uploaded)
            else:
                buf = item.value
            return buf, Descriptor("buffer", buf.handle, item.nbytes, (buf.serial, item.nbytes))
        if kind in ("texel", "numpy_texel"):
            buf = (
                item.value.buffer
                if kind == "texel"
                else self._numpy_resource(slot, element, item, dev, private, prep, uploaded)
            )
            vk_format = FORMATS[item.format or ""][0]
            view = buf.texel_view(vk_format, item.nbytes)
            return buf, Descriptor("texel", view, None, (buf.serial, vk_format))
        img = (
            item.value
            if kind == "image"
            else self._numpy_resource(slot, element, item, dev, private, prep, uploaded)
        )
        if slot.kind == "storage_image":
            return img, Descriptor("image", img.storage_view, None, (img.serial, "storage"))
        sampler = item.sampler
        h = sampler.handle(dev) if sampler is not None else None
        return img, Descriptor("image", img.view, h, (img.serial, "sampled", sampler))

    def _numpy_resource(
        self,
        slot: BindingSlot,
        element: int,
        item: Planned,
        dev: Device,
        private: bool,
        prep: Prepared,
        uploaded: dict[tuple[int, int], Any],
    ) -> Any:
        """The scratch buffer or image that holds a numpy argument for this call; the same
        numpy array given twice gets one."""
        v = item.value
        key = (v.__array_interface__["data"][0], v.nbytes)
        res = uploaded.get(key)
        writable = not slot.readonly and slot.kind in (
            "storage",
            "storage_image",
            "storage_texel_buffer",
        )
        if res is None:
            if item.kind == "numpy_image":
                info = slot.primary.image
                assert info is not None and item.format is not None
                res = self._take_image(
                    (slot.index, element),
                    v.shape,
                    item.format,
                    info.dim,
                    info.arrayed,
                    dev,
                    private,
                    prep,
                )
                if slot.writeonly:
                    res.clear()  # the part the shader does not write comes back as zeros
                else:
                    res.update(v)
                    prep.bytes_in += item.nbytes
            else:
                res = self._take_buffer((slot.index, element), item.nbytes, dev, private, prep)
                if slot.writeonly:
                    res.zero()  # the part the shader does not write comes back as zeros
                else:
                    res.write(v)
                    prep.bytes_in += item.nbytes
            uploaded[key] = res
            if writable:
                prep.writeback.append((v, res))
        elif writable and not any(res is r for _, r in prep.writeback):
            prep.writeback.append((v, res))
        return res

    def _take_buffer(
        self, key: tuple[int, int], nbytes: int, dev: Device, private: bool, prep: Prepared
    ) -> Buffer:
        """A scratch buffer owned by this call until it has finished."""

        def fits(b: Any) -> bool:
            return isinstance(b, Buffer) and b.nbytes == nbytes

        found = self._take_free(key, dev, private, prep, fits)
        if found is not None:
            return found
        buf = Buffer(nbytes, device=dev, label=f"{self.name}.{self.slots[key[0]].name}")
        if not private:
            prep.scratch.append((key, buf))
        return buf

    def _take_image(
        self,
        key: tuple[int, int],
        shape: tuple[int, ...],
        fmt: str,
        dim: str,
        arrayed: bool,
        dev: Device,
        private: bool,
        prep: Prepared,
    ) -> Image:
        """A scratch image owned by this call until it has finished."""

        def fits(i: Any) -> bool:
            return isinstance(i, Image) and (i.shape, i.format, i.dim, i.arrayed) == (
                tuple(shape),
                fmt,
                dim,
                arrayed,
            )

        found = self._take_free(key, dev, private, prep, fits)
        if found is not None:
            return found
        img = Image(
            shape,
            fmt,
            dim=dim,
            arrayed=arrayed,
            device=dev,
            label=f"{self.name}.{self.slots[key[0]].name}",
        )
        if not private:
            prep.scratch.append((key, img))
        return img

    def _take_free(
        self, key: tuple[int, int], dev: Device, private: bool, prep: Prepared, fits: Any
    ) -> Any:
        if private:  # a batch keeps its own copies: later calls must not overwrite them
            return None
        free = self._scratch.get(key)
        for i, r in enumerate(free or ()):
            if fits(r) and r.device is dev and not r.closed:
                del free[i]  # type: ignore[union-attr]
                prep.scratch.append((key, r))
                return r
        return None

    def give_back(self, scratch: list[tuple[tuple[int, int], Any]], keep: bool = True) -> None:
        """A call is done with its scratch resources: keep a few for the next calls.

        Call under the kernel's lock."""
        for key, res in scratch:
            free = self._scratch.setdefault(key, [])
            if keep and not self.closed and len(free) < _SCRATCH_KEPT:
                free.insert(0, res)
            else:
                res.close()
        scratch.clear()

    def drop(self) -> None:
        """Close every free scratch resource (the kernel closes, or moves to another device)."""
        for free in self._scratch.values():
            for r in free:
                r.close()
        self._scratch = {}


def read_back(arr: np.ndarray, res: Any) -> None:
    """Copy a written resource (Buffer or Image) into the numpy array it was made from."""
    if isinstance(res, Image):
        res.numpy(out=arr)
    else:
        res.read(out=arr)


def _is_pair(v: Any) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], Sampler)


def _dims(dim: str, arrayed: bool) -> str:
    return dim.upper() + (" array" if arrayed else "")


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.nbytes == b.nbytes
    )
