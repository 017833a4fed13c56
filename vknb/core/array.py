"""Device arrays: a :class:`~vknb.core.buffer.Buffer` with a shape and a dtype.

Example
-------
>>> import numpy as np, vknb
>>> a = vknb.asarray(np.arange(8, dtype=np.float32))
>>> a.shape, a.dtype, a.nbytes
((8,), dtype('float32'), 32)
>>> a.numpy()[:3]
array([0., 1., 2.], dtype=float32)
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import config
from .buffer import Buffer

if TYPE_CHECKING:  # pragma: no cover
    from .device import Device

# --- Array ----------------------------------------------------------------------------------

ShapeLike = int | Sequence[int]
_array_ids = itertools.count(1)


def _use_bar(device: Device | None) -> bool:
    """Whether a new Array goes to device memory that host threads write directly.

    On a discrete GPU whose whole memory the host can map (resizable BAR), writing it directly
    skips the staging copy, and kernels run at the same speed there (docs/performance.md).
    ``VKNB_BAR=0`` turns this off, ``VKNB_BAR=1`` turns
    it on wherever such memory exists.  CPU drivers and integrated GPUs map their one memory
    anyway, so nothing changes there.
    """
    env = config.get("VKNB_BAR")
    if env == "0":
        return False
    from .session import device as session_device

    dev = device if device is not None else session_device()
    if env == "1":
        return dev.allocator.has_host_visible_device_memory()
    return dev.info.type == "discrete" and dev.allocator.whole_bar()


def normalize_shape(shape: ShapeLike) -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints (an int is a 1-D shape)."""
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"shape must not have negative dimensions, got {out}")
    return out


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes of an array (exact: Python ints never wrap); ValueError beyond any device."""
    n = math.prod(shape) * dtype.itemsize
    if n >= 1 << 63:
        raise ValueError(
            f"an array of shape {shape} and dtype {dtype} would hold {n} bytes, more than any "
            "device can address"
        )
    return n


class Array:
    """A typed, shaped array living in device memory.

    Create with :func:`asarray`, :func:`empty` or :func:`zeros`.  Passing an Array to a kernel
    moves no bytes; ``.numpy()`` copies it back to the host.

    Example
    -------
    >>> x = vknb.asarray(np.random.rand(1000).astype(np.float32))
    >>> np.allclose(x.numpy(), np.asarray(x))
    True
    """

    __array_priority__ = 10

    def __init__(
        self,
        shape: ShapeLike,
        dtype: Any = np.float32,
        *,
        device: Device | None = None,
        label: str | None = None,
        memory: str = "device",
    ) -> None:
        self.shape = normalize_shape(shape)
        self.dtype = np.dtype(dtype)
        if self.dtype.hasobject:
            raise TypeError(
                f"dtype {self.dtype} holds Python objects; device arrays need plain data"
            )
        self.nbytes = _nbytes(self.shape, self.dtype)
        self.label = label or f"Array#{next(_array_ids)}"
        if memory == "device" and _use_bar(device):
            memory = "host_device"  # written directly by host threads (resizable BAR)
        self.buffer = Buffer(self.nbytes, device=device, memory=memory, label=self.label)

    @property
    def device(self) -> Device:
        """The device holding the data."""
        return self.buffer.device

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d Array")
        return self.shape[0]

    def numpy(self, out: np.ndarray | None = None) -> np.ndarray:
        """Copy to a new numpy array (or into ``out`` of matching shape and dtype).

        Example
        -------
        >>> vknb.zeros(3, np.int32).numpy()
        array([0, 0, 0], dtype=int32)
        """
        if out is not None:
            if out.dtype != self.dtype or out.shape != self.shape:
                raise ValueError(
                    f"out must have shape {self.shape} and dtype {self.dtype}, got "
                    f"{out.shape} {out.dtype}"
                )
            return self.buffer.read(out=out)
        res = np.empty(self.shape, self.dtype)
        self.buffer.read(out=res)
        return res

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def update(self, data: np.ndarray) -> Array:
        """Overwrite the contents from a numpy array of the same shape and dtype; returns self.

        Example
        -------
        >>> a = vknb.zeros(4, np.float32); a.update(np.ones(4, np.float32)).numpy()
        array([1., 1., 1., 1.], dtype=float32)
        """
        data = np.asarray(data)
        if data.dtype != self.dtype:
            raise TypeError(f"{self.label} has dtype {self.dtype}, got {data.dtype}")
        if data.shape != self.shape:
            raise ValueError(f"{self.label} has shape {self.shape}, got {data.shape}")
        self.buffer.write(data)
        return self

    def to(self, device: Device) -> Array:
        """A copy of this Array on ``device`` (through the host).

        Example
        -------
        >>> b = a.to(vknb.Device(1))                         # doctest: +SKIP
        """
        if device is self.device:
            return self
        return asarray(self.numpy(), device=device, label=self.label)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """An Array pickles by value: the receiver gets an Array with the same data on its
        session device."""
        return (_rebuild_array, (self.numpy(), self.label))

    def close(self) -> None:
        """Free the device memory now (idempotent)."""
        self.buffer.close()

    @property
    def closed(self) -> bool:
        """Whether the memory has been freed."""
        return self.buffer.closed

    def __enter__(self) -> Array:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        where = self.device.info.name
        return f"<vknb.Array {self.label} shape={self.shape} dtype={self.dtype} on {where}{state}>"


def _rebuild_array(data: np.ndarray, label: str) -> Array:
    """Unpickle an Array onto this process's session device."""
    return asarray(data, label=label)


def is_masked(v: object) -> bool:
    """Whether ``v`` is a numpy masked array, without importing ``numpy.ma`` (tens of
    milliseconds of a first call) in a process where nothing made one.

    Example
    -------
    >>> import numpy as np
    >>> is_masked(np.ma.masked_array([1, 2], mask=[0, 1])), is_masked(np.zeros(2))
    (True, False)
    """
    # The class, from the module that defines it; absent while another thread is still
    # importing numpy.ma (then no masked array exists yet).
    cls = getattr(sys.modules.get("numpy.ma.core"), "MaskedArray", None)
    return cls is not None and isinstance(v, cls)


def asarray(
    a: Any, dtype: Any = None, *, device: Device | None = None, label: str | None = None
) -> Array:
    """Copy a numpy array (or anything ``np.asarray`` takes) to a new device :class:`Array`.

    An :class:`Array` on the same device is returned as is.

    Example
    -------
    >>> x = vknb.asarray(np.arange(4, dtype=np.uint32))
    >>> x.numpy()
    array([0, 1, 2, 3], dtype=uint32)
    """
    if isinstance(a, Array) and (dtype is None or np.dtype(dtype) == a.dtype):
        if device is None or a.device is device:
            return a
        a = a.numpy()
    if is_masked(a):
        raise TypeError(
            "asarray: a masked array's mask cannot go to the device; pass a.filled(value) or a.data"
        )
    arr = np.asarray(a, dtype=dtype)
    if arr.dtype.hasobject:
        raise TypeError("asarray: object arrays cannot live on the device")
    out = Array(arr.shape, arr.dtype, device=device, label=label)
    try:
        out.buffer.write(np.ascontiguousarray(arr))
    except BaseException:  # Ctrl-C or a failed transfer: free what was allocated
        out.close()
        raise
    return out


def empty(
    shape: ShapeLike,
    dtype: Any = np.float32,
    *,
    device: Device | None = None,
    label: str | None = None,
) -> Array:
    """A device :class:`Array` with undefined contents.

    Example
    -------
    >>> vknb.empty((2, 3), np.float32).shape
    (2, 3)
    """
    return Array(shape, dtype, device=device, label=label)


def zeros(
    shape: ShapeLike,
    dtype: Any = np.float32,
    *,
    device: Device | None = None,
    label: str | None = None,
) -> Array:
    """A device :class:`Array` filled with zeros.

    Example
    -------
    >>> vknb.zeros(4).numpy()
    array([0., 0., 0., 0.], dtype=float32)
    """
    out = Array(shape, dtype, device=device, label=label)
    out.buffer.fill(0)
    return out
