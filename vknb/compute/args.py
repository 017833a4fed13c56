"""Kernel arguments: the slots a call fills, and checking and packing what the user passes.

A *slot* is one descriptor binding number of the shader, ``(set, binding)``.  Two bindings that
share a number (aliases: two views of one buffer) are one slot, taking one argument by position
or by either name; aliases of different descriptor types cannot be built and are refused when
the kernel is compiled.  A descriptor array (``buffer B {...} bufs[4];``) is one slot taking a
list or tuple of that many arrays; an unsized one (``bufs[]``) is refused.

Every check here raises ``TypeError`` or ``ValueError`` naming the kernel, the binding or member
at fault and what was expected, before anything is allocated or uploaded.

Block values
------------
A uniform or push-constant block is packed member by member (:func:`pack_block`,
:func:`pack_into`) at the offsets and strides of its reflected dtype; padding never shows:

* a scalar takes a Python or numpy scalar (checked by :func:`scalar_check`);
* a vector, a matrix, or an array of them (any number of dimensions) takes a numpy array of
  exactly the member's component dtype, or (nested) lists of numbers, of the natural shape:
  the array dimensions, then the vector's length or the matrix's two dimensions.  ``vec4
  planes[6]`` takes ``(6, 4)``, ``vec2 p[3]`` ``(3, 2)``, ``mat2 m[2]`` ``(2, 2, 2)``, a std140
  ``float w[3]`` (16-byte stride) ``(3,)``.  A matrix is indexed like its reflected dtype, as a
  single ``mat4`` member is: ``[column][row]``, like GLSL (so the shader's ``m[i] * v`` computes
  ``A[i].T @ v`` for the numpy matrices ``A[i]``: pass ``A.transpose(0, 2, 1)`` to have it
  compute ``A[i] @ v``), and ``[row][column]`` for a ``layout(row_major)`` member;
* a struct takes a dict by member name; an array of structs (nested) lists of dicts, or a numpy
  array of the struct's dtype;
* any member also takes a numpy array already in the member's own (padded) dtype.

Example
-------
>>> slots = binding_slots(k.reflection, "saxpy")             # doctest: +SKIP
>>> [s.names for s in slots]                                 # doctest: +SKIP
[('x', 'X'), ('y', 'Y')]
"""

from __future__ import annotations

import numbers
import operator
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import errors as E
from .._vk import constants as C
from ..shader.spirv import PAD_FIELD, encode_float

if TYPE_CHECKING:  # pragma: no cover
    from ..shader.spirv import Binding, Block, Member, Reflection, SpecConstant

# Descriptor types a kernel call can fill today.
BUFFER_TYPES = (C.DESCRIPTOR_TYPE_STORAGE_BUFFER, C.DESCRIPTOR_TYPE_UNIFORM_BUFFER)


@dataclass(frozen=True)
class BindingSlot:
    """One ``(set, binding)`` of a kernel: the argument a call passes for it.

    Attributes
    ----------
    index : int
        Its position among the kernel's positional arguments.
    set, binding, descriptor_type : int
    count : int
        Descriptors in the binding (1, or the length of a descriptor array).
    bindings : tuple of Binding
        The reflected bindings at this number (more than one for aliases; the first names it).
    names : tuple of str
        Every name the slot answers to (instance, block and single-array-member names).
    readonly, writeonly : bool
        True when every alias is (so a numpy argument is never downloaded / uploaded).
    """

    index: int
    set: int
    binding: int
    descriptor_type: int
    count: int
    bindings: tuple[Binding, ...]
    names: tuple[str, ...]
    readonly: bool
    writeonly: bool

    @property
    def primary(self) -> Binding:
        return self.bindings[0]

    @property
    def name(self) -> str:
        return self.bindings[0].name

    @property
    def kind(self) -> str:
        return self.bindings[0].kind

    @property
    def is_array(self) -> bool:
        return self.count != 1


def _names_of(b: Binding) -> list[str]:
    names = [b.name, b.block_name]
    if b.block is not None:
        arr = [m for m in b.block.members if m.array_length is not None]
        if b.block.runtime_array is not None:
            names.append(b.block.runtime_array.name)
        elif len(b.block.members) == 1 and arr:
            names.append(arr[0].name)
    return [n for n in names if n]


def binding_slots(
    reflection: Reflection, kernel: str, spec_values: Mapping[int, Any] | None = None
) -> list[BindingSlot]:
    """The kernel's slots in (set, binding) order (``Reflection.check_layout`` merges aliases).

    Raises PipelineCreationFailed for aliases that one descriptor cannot serve, an unsized
    descriptor array, or a descriptor array whose length depends on a specialization constant
    that ``spec_values`` sets to a value the reflection was not specialized with (see
    ``Reflection.specialize``).
    Bindings of kinds a call cannot fill yet (images, samplers, texel buffers) are slots too;
    calling the kernel raises a TypeError naming them.
    """
    from ..shader.spirv import SpirvError

    try:
        merged = reflection.check_layout()
    except SpirvError as e:
        raise E.PipelineCreationFailed(f"{kernel}: {e}", label=kernel) from None
    shared = reflection.aliases
    spec_values = spec_values or {}
    # The counts are right for the values the reflection was specialized with (the defaults
    # for reflect()): Kernel passes reflection.specialize(values).
    defaults = {s.id: s.default for s in reflection.spec_constants}
    defaults.update(reflection.specialization)
    slots = []
    for i, slot in enumerate(merged):
        where = f"{kernel}: binding {slot.name!r} (set={slot.set}, binding={slot.binding})"
        if slot.runtime_sized:
            raise E.PipelineCreationFailed(
                f"{where} is an unsized descriptor array ([]), which needs descriptor "
                f"indexing; give it a size (e.g. {slot.name}[4]) and pass a list of that many "
                "arrays",
                label=kernel,
            )
        changed = [
            sid
            for sid in slot.count_spec_ids
            if sid in spec_values and spec_values[sid] != defaults.get(sid)
        ]
        if changed:
            raise E.PipelineCreationFailed(
                f"{where} is a descriptor array whose length depends on specialization "
                f"constant id {changed[0]}, but the reflection was not specialized with its "
                "value; pass reflection.specialize(values)",
                label=kernel,
            )
        group = shared.get((slot.set, slot.binding), (slot,))
        names: list[str] = []
        for b in (slot, *[g for g in group if g is not slot]):
            for n in _names_of(b):
                if n not in names:
                    names.append(n)
        slots.append(
            BindingSlot(
                index=i,
                set=slot.set,
                binding=slot.binding,
                descriptor_type=slot.descriptor_type,
                count=slot.count,
                bindings=(slot, *[g for g in group if g is not slot]),
                names=tuple(names),
                readonly=slot.readonly,
                writeonly=slot.writeonly,
            )
        )
    return slots


# --- value checks and packing ----------------------------------------------------------------


def scalar_check(value: Any, dt: np.dtype, what: str, gl_type: str) -> Any:
    """Check that a Python/numpy scalar fits a member of dtype ``dt``; return it."""
    if gl_type == "bool":
        if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, (int, np.integer)) and value in (0, 1)
        ):
            return int(bool(value))
        raise TypeError(f"{what} is a bool; got {type(value).__name__} {value!r}")
    if dt.kind in "iu":
        if isinstance(value, (bool, np.bool_)):
            # GLSL keeps a block's bool as a 32-bit integer: True/False are its 1/0.
            return int(value)
        if not isinstance(value, (numbers.Integral,)):
            raise TypeError(
                f"{what} is {gl_type} ({dt}); got {type(value).__name__} {value!r} "
                "(nothing is converted silently: pass an int)"
            )
        info = np.iinfo(dt)
        if not info.min <= int(value) <= info.max:
            raise ValueError(f"{what} is {gl_type}: {value} is outside [{info.min}, {info.max}]")
        return int(value)
    if dt.kind == "f":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{what} is {gl_type} ({dt}); got {type(value).__name__} {value!r}")
        v = float(value)
        if np.isfinite(v) and abs(v) > float(np.finfo(dt).max):
            raise ValueError(f"{what} is {gl_type}: {value} overflows {dt}")
        return v
    raise TypeError(f"{what}: cannot set a value of dtype {dt} from {type(value).__name__}")


def pack_into(
    target: np.ndarray,
    members: Sequence[Member],
    values: Mapping[str, Any],
    where: str,
    required: bool = True,
) -> None:
    """Fill a structured scalar ``target`` from ``values`` by member name."""
    names = {m.name for m in members}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise TypeError(
            f"{where} has no member {unknown[0]!r}; members are: {', '.join(sorted(names))}"
        )
    for m in members:
        if m.array_length == 0:
            continue  # runtime array: not part of a packed block
        if m.name not in values:
            if required:
                raise TypeError(f"missing value for {where} member {m.name!r} ({m.type})")
            continue
        _assign(target, m, values[m.name], f"{where} member {m.name!r}")


def _assign(target: np.ndarray, m: Member, value: Any, what: str) -> None:
    fields = target.dtype.fields
    assert fields is not None
    fdt = fields[m.name][0]
    if m.members and m.array_length is None:  # struct
        if not isinstance(value, Mapping):
            raise TypeError(f"{what} is a struct {m.type}; pass a dict by member name")
        pack_into(target[m.name], m.members, value, what)
        return
    if fdt.subdtype is None and fdt.names is None:  # scalar
        target[m.name] = scalar_check(value, fdt, what, m.type)
        return
    view = target[m.name]  # shape: the array dimensions (and vector/matrix ones)
    if isinstance(value, np.ndarray) and value.dtype == view.dtype and value.shape == view.shape:
        view[...] = value  # already in the block's own (padded) layout
        return
    if m.members:  # an array of structs: dicts in (nested) lists, or the element dtype
        _assign_structs(view, m, value, what)
        return
    # Vectors, matrices and arrays of them: peel the structs that pad elements, matrix
    # columns (or rows) up to their stride; what is left is a view of the values themselves.
    while view.dtype.names == (PAD_FIELD,):
        view = view[PAD_FIELD]
    shape, base = view.shape, view.dtype
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise ValueError(
            f"{what} is {m.type}: expected values of shape {shape}{_layout_hint(m)}; got "
            "nested sequences of uneven lengths"
        ) from None
    if arr.shape != shape:
        raise ValueError(
            f"{what} is {m.type}: expected shape {shape}{_layout_hint(m)}, got {arr.shape}"
        )
    if isinstance(value, np.ndarray) and value.dtype != base:
        # Python lists and numbers are taken by value; a numpy array must already be exact.
        raise TypeError(
            f"{what} is {m.type} ({base}); got an array of dtype {value.dtype} "
            "(nothing is converted silently)"
        )
    if arr.dtype.kind not in ("iub" if base.kind in "iu" else "iuf") or (
        base.kind in "iu" and arr.dtype.kind == "f"
    ):
        raise TypeError(f"{what} is {m.type} ({base}); got values of dtype {arr.dtype}")
    if base.kind in "iu" and arr.size:
        info = np.iinfo(base)
        if arr.min() < info.min or arr.max() > info.max:
            raise ValueError(f"{what} is {m.type}: values outside [{info.min}, {info.max}]")
    if base.kind == "f" and arr.size and arr.dtype != base:
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
        if finite.size and float(np.abs(finite).max()) > float(np.finfo(base).max):
            raise ValueError(f"{what} is {m.type}: a value overflows {base}")
    view[...] = arr


def _layout_hint(m: Member) -> str:
    if m.matrix_stride is None:
        return ""
    order = "[row][column] (row_major)" if m.row_major else "[column][row], like GLSL"
    return f", each matrix indexed {order}"


def _assign_structs(view: np.ndarray, m: Member, value: Any, what: str) -> None:
    """Fill an array of structs from dicts in (nested) lists, or from an array of its dtype."""
    if view.ndim == 0:
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{what} is a struct {m.type.split('[')[0]}; pass a dict by member name"
            )
        pack_into(view, m.members, value, what)
        return
    if isinstance(value, np.ndarray):
        if value.dtype == view.dtype and value.shape == view.shape:
            view[...] = value
            return
        raise TypeError(
            f"{what} is {m.type}: pass a list of dicts by member name, or an array of shape "
            f"{view.shape} and dtype {view.dtype}; got shape {value.shape}, dtype {value.dtype}"
        )
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(
            f"{what} is {m.type}: pass a list of {view.shape[0]} dicts by member name, got "
            f"{type(value).__name__}"
        )
    if len(value) != view.shape[0]:
        raise ValueError(f"{what} is {m.type}: expected {view.shape[0]} elements, got {len(value)}")
    for i, v in enumerate(value):
        _assign_structs(view[i, ...], m, v, f"{what}[{i}]")


def pack_block(block: Block, values: Any, where: str) -> bytes:
    """Pack a dict (or a single value for a one-member block) by the block's layout."""
    target = np.zeros((), dtype=block.dtype)
    members = [m for m in block.members if m.array_length != 0]
    if isinstance(values, np.ndarray) and values.dtype == block.dtype:
        return values.tobytes()[: block.size]
    if not isinstance(values, Mapping):
        if len(members) == 1:
            values = {members[0].name: values}
        else:
            raise TypeError(
                f"{where} has {len(members)} members ({', '.join(m.name for m in members)}); "
                "pass a dict by member name"
            )
    pack_into(target, members, values, where)
    return target.tobytes()


def expected_text(b: Binding) -> str:
    dt = b.dtype
    if dt is None:
        return "?"
    if dt.subdtype is not None:
        return f"{dt.base} (in groups of {dt.shape})"
    return str(dt)


def member_type(b: Binding) -> str:
    if b.block is not None and b.block.runtime_array is not None:
        return b.block.runtime_array.type
    return b.block.name if b.block is not None else b.kind


def check_array_dtype(
    slot: BindingSlot, dt: np.dtype, shape: tuple[int, ...], kernel: str = "kernel"
) -> None:
    """An array of ``dt``/``shape`` fits the slot (any alias's element type, or raw bytes)."""
    first_error: Exception | None = None
    for b in slot.bindings:
        try:
            _check_one_dtype(b, dt, shape, kernel)
            return
        except (TypeError, ValueError) as e:
            first_error = first_error or e
    assert first_error is not None
    raise first_error


def _check_one_dtype(b: Binding, dt: np.dtype, shape: tuple[int, ...], kernel: str) -> None:
    exp = b.dtype
    assert exp is not None
    block = b.block
    prefix = block is not None and block.runtime_array is not None and block.size > 0
    if prefix and dt == np.uint8:
        return  # raw bytes of a block with a fixed part and a runtime array
    if dt == exp:
        return
    if exp.subdtype is not None and exp.names is None and dt == exp.base:
        n = int(np.prod(exp.shape))
        if shape and int(np.prod(shape)) % n == 0:
            return
        raise ValueError(
            f"{kernel}: binding {b.name!r} holds {exp.base} in groups of {n} ({member_type(b)}); "
            f"an array of shape {shape} does not divide into them"
        )
    count = _tight_single_member(exp, dt)
    if count:  # `buffer C { float c[3]; }` from float32 data of 3 elements: the same bytes
        if int(np.prod(shape)) >= count:
            return
        raise ValueError(
            f"{kernel}: binding {b.name!r} holds {count} {dt} values ({member_type(b)}); "
            f"got an array of shape {shape}"
        )
    hint = ""
    if exp.names is not None:
        hint = f"; build it with dtype=k.reflection.binding({b.name!r}).dtype"
    raise TypeError(
        f"{kernel}: binding {b.name!r} (set={b.set}, binding={b.binding}) expects "
        f"{expected_text(b)} ({member_type(b)}), got an array of dtype {dt}{hint}; nothing is "
        "converted silently"
    )


def _tight_single_member(exp: np.dtype, dt: np.dtype) -> int:
    """The element count of a block of one member (a scalar, vector or array of ``dt``s) laid
    out without padding, else 0: plain ``dt`` data of that many elements has its bytes."""
    if exp.names is None or exp.fields is None or len(exp.names) != 1:
        return 0
    base, offset = exp.fields[exp.names[0]][:2]
    count = 1
    while base.subdtype is not None:  # arrays of vectors nest: (('<f4', (4,)), (2,))
        base, sub = base.subdtype
        count *= int(np.prod(sub))
    return count if offset == 0 and dt == base and base.itemsize * count == exp.itemsize else 0


def one_member_value(block: Block | None, v: np.ndarray) -> bool:
    """A numpy value for a one-member uniform block (packed like a list would be)."""
    if block is None or v.dtype == block.dtype or v.dtype == np.uint8:
        return False
    return len([m for m in block.members if m.array_length != 0]) == 1


def uniform_from_array(name: str, b: Binding, v: np.ndarray) -> np.ndarray:
    block = b.block
    assert block is not None
    if v.dtype == block.dtype or v.dtype == np.uint8:
        return v
    raise TypeError(
        f"{name}: uniform block {b.name!r} takes a dict by member name, a scalar (one-member "
        f"block) or an array of dtype {block.dtype}; got an array of dtype {v.dtype}"
    )


def workgroups(
    local: tuple[int, int, int], grid: Any, groups: Any, limits: Sequence[int], name: str
) -> tuple[int, int, int]:
    """Workgroup counts from ``grid=`` (invocations) or ``groups=``, checked against the
    device's ``maxComputeWorkGroupCount``."""

    def norm(v: Any, what: str) -> tuple[int, int, int]:
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            t = [int(v)]
        elif isinstance(v, (tuple, list)) and 1 <= len(v) <= 3:
            try:
                t = [operator.index(x) for x in v]
            except TypeError:
                raise TypeError(f"{name}: {what} must hold ints, got {v!r}") from None
        else:
            raise TypeError(f"{name}: {what} must be an int or a tuple of 1 to 3 ints, got {v!r}")
        if any(x <= 0 for x in t):
            raise ValueError(f"{name}: {what} must be positive in every dimension, got {tuple(t)}")
        t += [1] * (3 - len(t))
        return (t[0], t[1], t[2])

    if grid is not None and groups is not None:
        raise TypeError(f"{name}: pass grid= (invocations) or groups= (workgroups), not both")
    if grid is None and groups is None:
        raise TypeError(
            f"{name}: missing grid= (invocations per dimension) or groups= (workgroups); e.g. "
            f"grid=x.size"
        )
    if grid is not None:
        g = norm(grid, "grid")
        out = (-(-g[0] // local[0]), -(-g[1] // local[1]), -(-g[2] // local[2]))
    else:
        out = norm(groups, "groups")
    for d in range(3):
        if out[d] > limits[d]:
            raise ValueError(
                f"{name}: {out[d]} workgroups in dimension {'xyz'[d]} exceed the device limit "
                f"maxComputeWorkGroupCount = {limits[d]}; use more dimensions or a larger "
                f"workgroup (local_size={local})"
            )
    return out


def spec_check(spec: SpecConstant, value: Any, what: str) -> Any:
    """Check that ``value`` fits specialization constant ``spec``; return it as packed.

    A bool constant takes True/False (or 0/1), an integer one an integer in its type's range,
    a float one a real number (an IEEE float must not overflow its dtype); a bfloat16 or FP8
    constant (``spec.encoding``) takes a real number within the encoding's range (an infinity
    only where the encoding has one), rounded to nearest even when packed.
    """
    if spec.encoding is not None:
        try:
            encode_float(value, spec.encoding)
        except TypeError:
            raise TypeError(
                f"{what} is {spec.encoding}; got {type(value).__name__} {value!r}"
            ) from None
        except ValueError as e:
            raise ValueError(f"{what} is {spec.encoding}: {e}") from None
        return float(value)
    if spec.dtype == np.bool_:
        return scalar_check(value, np.dtype(np.uint32), what, "bool")
    return scalar_check(value, spec.dtype, what, str(spec.dtype))


def pack_spec_values(
    reflection: Reflection, values: dict[int, Any]
) -> tuple[bytes, list[tuple[int, int, int]]]:
    """Pack specialization values (by id) into bytes + (id, offset, size) map entries.

    Each value takes the size of its constant's type (a bool 4 bytes, as VkBool32); a
    bfloat16 or FP8 constant the bits of its encoding (:func:`vknb.spirv.encode_float`).
    """
    by_id = {s.id: s for s in reflection.spec_constants}
    data = bytearray()
    entries = []
    for sid in sorted(values):
        spec = by_id.get(sid)
        v = values[sid]
        if spec is None:
            # LocalSizeId / WorkgroupSize ids always take uint32.
            raw = struct.pack("<I", int(v))
        elif spec.dtype == np.bool_:
            raw = struct.pack("<I", 1 if v else 0)
        elif spec.encoding is not None:
            raw = encode_float(v, spec.encoding).to_bytes(spec.dtype.itemsize, "little")
        else:
            raw = np.asarray(v, dtype=spec.dtype).tobytes()
        entries.append((sid, len(data), len(raw)))
        data += raw
    return bytes(data), entries
