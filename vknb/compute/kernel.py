"""The Kernel: a compiled, reflected compute shader that you call with numpy arrays.

Binding rules (see ``docs/binding.md``):

* positional arguments fill the descriptor bindings in (set, binding) order;
* keyword arguments name a binding (instance name, block name, or the name of its single array
  member), a push-constant member, or ``grid`` / ``groups``;
* ``grid`` counts invocations per dimension (int or tuple), ``groups`` counts workgroups;
* a numpy array bound to a binding the shader may write is written back in place after the
  dispatch; a ``readonly`` binding is never downloaded, a ``writeonly`` one never uploaded;
  a device :class:`~vknb.Array` moves no bytes at all;
* uniform blocks and push-constant blocks also take a dict by member name;
* every mismatch is a TypeError / ValueError naming the binding or member.

Matrices: numpy is row-major and GLSL column-major, so the bytes of a numpy ``(4, 4)`` array
``M`` are seen by the shader as ``transpose(M)``.  Pass ``M.T.copy()``, or declare the member
``layout(row_major)``, to see ``M`` itself.

Example
-------
>>> k = vknb.compile(SAXPY, name="saxpy")                    # doctest: +SKIP
>>> rec = k(x, y, a=2.0, grid=x.size)                        # doctest: +SKIP
"""

from __future__ import annotations

import numbers
import operator
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import errors as E
from ..core.device import Device, Submission
from ..core.session import device as session_device
from ..core.session import session_generation
from .batch import _cpush
from .batch import _local as _batching_local
from ..core.array import Array
from ..core.buffer import Buffer
from ..core.pipeline import ComputePipeline
from .timing import DispatchRecord, record

if TYPE_CHECKING:  # pragma: no cover
    from ..shader.compiler import CompileResult
    from ..shader.spirv import Binding, Block, Member, Reflection

_RESERVED = ("grid", "groups", "wait")


# --- value checks and packing ----------------------------------------------------------------


def _scalar_check(value: Any, dt: np.dtype, what: str, gl_type: str) -> Any:
    """Check that a Python/numpy scalar fits a member of dtype ``dt``; return it."""
    if gl_type == "bool":
        if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, (int, np.integer)) and value in (0, 1)
        ):
            return int(bool(value))
        raise TypeError(f"{what} is a bool; got {type(value).__name__} {value!r}")
    if dt.kind in "iu":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,)):
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


def _pack_into(
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
    field = target[m.name]
    fdt = target.dtype.fields[m.name][0]
    if m.members and m.array_length is None:  # struct
        if not isinstance(value, Mapping):
            raise TypeError(f"{what} is a struct {m.type}; pass a dict by member name")
        _pack_into(field, m.members, value, what)
        return
    if fdt.subdtype is None and fdt.names is None:  # scalar
        target[m.name] = _scalar_check(value, fdt, what, m.type)
        return
    arr = np.asarray(value)
    shape = fdt.shape if fdt.subdtype is not None else ()
    base = fdt.base if fdt.subdtype is not None else fdt
    if base.names is not None or fdt.names is not None:
        if isinstance(value, np.ndarray) and value.dtype == fdt:
            target[m.name] = value
            return
        raise TypeError(f"{what} ({m.type}) needs an array of dtype {fdt}")
    if arr.shape != shape:
        raise ValueError(f"{what} is {m.type}: expected shape {shape}, got {arr.shape}")
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
    target[m.name] = arr


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
    _pack_into(target, members, values, where)
    return target.tobytes()


def _expected_text(b: Binding) -> str:
    dt = b.dtype
    if dt is None:
        return "?"
    if dt.subdtype is not None:
        return f"{dt.base} (in groups of {dt.shape})"
    return str(dt)


def _check_array_dtype(
    b: Binding, dt: np.dtype, shape: tuple[int, ...], kernel: str = "kernel"
) -> None:
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
            f"{kernel}: binding {b.name!r} holds {exp.base} in groups of {n} ({_member_type(b)}); "
            "an array "
            f"of shape {shape} does not divide into them"
        )
    hint = ""
    if exp.names is not None:
        hint = f"; build it with dtype=k.reflection.binding({b.name!r}).dtype"
    raise TypeError(
        f"{kernel}: binding {b.name!r} (set={b.set}, binding={b.binding}) expects "
        f"{_expected_text(b)}"
        f" ({_member_type(b)}), got an array of dtype {dt}{hint}; nothing is converted silently"
    )


def _member_type(b: Binding) -> str:
    if b.block is not None and b.block.runtime_array is not None:
        return b.block.runtime_array.type
    return b.block.name if b.block is not None else b.kind


def _groups(
    local: tuple[int, int, int], grid: Any, groups: Any, limits: tuple[int, ...], name: str
) -> tuple[int, int, int]:
    def norm(v: Any, what: str) -> tuple[int, int, int]:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
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


class _Fast:
    """A remembered call: what to dispatch when the same Arrays and values come again.

    Kept per tuple of the ids of the positional Arrays (see ``Kernel._fast_lookup``); only
    weak references to the Arrays, so that a remembered call keeps no memory alive.
    """

    __slots__ = (
        "cpush",
        "epoch",
        "grid_arg",
        "groups",
        "groups_arg",
        "kernel_bytes",
        "kw",
        "pipe",
        "push",
        "reads",
        "refs",
        "sets",
        "writes",
    )

    def __init__(
        self,
        pipe: ComputePipeline,
        args: tuple[Array, ...],
        kw: list[tuple[str, type, Any]],
        grid: Any,
        groups_arg: Any,
        prep: _Prepared,
        sets: Any,
        push: bytes,
        groups: tuple[int, int, int],
    ) -> None:
        self.pipe = pipe
        self.epoch = pipe._sets_epoch
        self.refs = [weakref.ref(a) for a in args]
        self.kw = kw  # (name, type, value), or (name, Array, weak reference)
        self.grid_arg = grid
        self.groups_arg = groups_arg
        self.reads = prep.reads
        self.writes = prep.writes
        self.kernel_bytes = prep.kernel_bytes
        self.sets = sets
        self.push = push
        self.cpush = _cpush(push)
        self.groups = groups

    def match(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], grid: Any, groups: Any
    ) -> list[Array] | None:
        """The call's Arrays if it repeats this one exactly (identity, type and value)."""
        refs = self.refs
        if len(refs) != len(args):
            return None
        arrays = []
        for r, a in zip(refs, args, strict=True):  # the Arrays first: they differ most often
            if r() is not a:
                return None
            arrays.append(a)
        g, gr = self.grid_arg, self.groups_arg
        if (
            type(grid) is not type(g)
            or type(groups) is not type(gr)
            or grid != g
            or groups != gr
            or len(kwargs) != len(self.kw)
        ):
            return None
        if type(grid) is tuple and not _memo_shape(grid):  # (256.0,) == (256,): not the same
            return None
        if type(groups) is tuple and not _memo_shape(groups):
            return None
        for name, t, v in self.kw:
            x = kwargs.get(name, _MISSING)
            if type(x) is not t:
                return None
            if t is Array:
                if v() is not x:
                    return None
                arrays.append(x)
            elif x != v:
                return None
        return arrays

    def prepared(self, arrays: list[Array]) -> _Prepared:
        p = _Prepared()
        p.keep = [a.buffer for a in arrays]
        p.reads = self.reads
        p.writes = self.writes
        p.kernel_bytes = self.kernel_bytes
        return p


class _Prepared:
    """One call's resolved resources."""

    __slots__ = ("bytes_in", "keep", "kernel_bytes", "reads", "resources", "writeback", "writes")

    def __init__(self) -> None:
        self.reads: list[int] = []
        self.writes: list[int] = []
        self.resources: list[tuple[Binding, Buffer, int]] = []
        self.writeback: list[tuple[np.ndarray, Buffer]] = []
        self.keep: list[Any] = []
        self.bytes_in = 0
        self.kernel_bytes = 0


class Kernel:
    """A compiled compute shader bound to a device; call it to dispatch.

    Create with :func:`vknb.compile`.  Attributes: ``name``, ``source``, ``spirv``,
    ``reflection``, ``constants``, ``local_size``, ``device``, ``compile_info``.

    Example
    -------
    >>> k = vknb.compile('''
    ... layout(local_size_x = 64) in;
    ... layout(binding = 0) buffer D { float d[]; };
    ... void main() { d[gl_GlobalInvocationID.x] *= 2.0; }''', name="double")
    >>> a = np.arange(64, dtype=np.float32)
    >>> _ = k(a, grid=64); a[:3]
    array([0., 2., 4.], dtype=float32)
    """

    def __init__(
        self,
        spirv: bytes,
        reflection: Reflection,
        *,
        name: str = "kernel",
        source: str | None = None,
        constants: Mapping[str | int, Any] | None = None,
        local_size: Sequence[int] | int | None = None,
        device: Device | None = None,
        compile_info: CompileResult | None = None,
        defines: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.spirv = bytes(spirv)
        self.reflection = reflection
        self.compile_info = compile_info
        self.defines = dict(defines or {})
        self._follow_session = device is None
        self._spec_values, self.constants = self._resolve_constants(constants)
        self._apply_local_size(local_size)
        self.local_size = reflection.local_size_for(self._spec_values)
        self._names = self._name_map()
        self._scratch: dict[int, Buffer] = {}
        self._push_memo: dict[Any, bytes] = {}
        self._fast: dict[tuple[int, ...], list[_Fast]] = {}  # see _fast_lookup
        self._last_fast: _Fast | None = None
        self._pipeline: ComputePipeline | None = None
        self._generation = -1
        dev = device if device is not None else session_device()
        self._build(dev)

    # -- construction --------------------------------------------------------------------

    def _resolve_constants(
        self, constants: Mapping[str | int, Any] | None
    ) -> tuple[dict[int, Any], dict[str, Any]]:
        specs = self.reflection.spec_constants
        by_name = {s.name: s for s in specs if s.name}
        by_id = {s.id: s for s in specs}
        values: dict[int, Any] = {}
        named: dict[str, Any] = {}
        for key, v in (constants or {}).items():
            spec = by_name.get(key) if isinstance(key, str) else by_id.get(key)
            if spec is None:
                avail = ", ".join(f"{s.name or '?'} (id {s.id})" for s in specs) or "none"
                raise TypeError(
                    f"{self.name}: no specialization constant {key!r}; the shader declares: {avail}"
                )
            what = f"{self.name}: specialization constant {spec.name or spec.id!r}"
            gl = "bool" if spec.dtype == np.bool_ else str(spec.dtype)
            values[spec.id] = _scalar_check(
                v, np.dtype(np.uint32) if gl == "bool" else spec.dtype, what, gl
            )
            named[spec.name or str(spec.id)] = v
        # glslang gives `local_size_x_id = N` its own constant (default 1) even when a named
        # `constant_id = N` constant declares the size the author meant: specialize with that.
        for sid in self.reflection.local_size_ids:
            if sid is not None and sid not in values and sid in by_id:
                values[sid] = by_id[sid].default
        return values, named

    def _apply_local_size(self, local_size: Sequence[int] | int | None) -> None:
        if local_size is None:
            return
        ls = [local_size] if isinstance(local_size, int) else list(local_size)
        if not 1 <= len(ls) <= 3:
            raise TypeError(
                f"{self.name}: local_size must be an int or 1 to 3 ints, got {local_size!r}"
            )
        ids = self.reflection.local_size_ids
        for d, v in enumerate(ls):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{self.name}: local_size[{d}] must be a positive int, got {v!r}")
            if ids[d] is None:
                if v == self.reflection.local_size[d]:
                    continue
                raise ValueError(
                    f"{self.name}: the shader fixes local_size_{'xyz'[d]} = "
                    f"{self.reflection.local_size[d]}; declare "
                    f"`layout(local_size_{'xyz'[d]}_id = N) in;` "
                    "to make it settable, or use a define"
                )
            self._spec_values[ids[d]] = int(v)

    def _name_map(self) -> dict[str, tuple[str, Any]]:
        names: dict[str, tuple[str, Any]] = {}
        for i, b in enumerate(self.reflection.bindings):
            cands = [b.name, b.block_name]
            if b.block is not None:
                arr = [m for m in b.block.members if m.array_length is not None]
                if b.block.runtime_array is not None:
                    cands.append(b.block.runtime_array.name)
                elif len(b.block.members) == 1 and arr:
                    cands.append(arr[0].name)
            for n in cands:
                if n and n not in names:
                    names[n] = ("binding", i)
        pc = self.reflection.push_constants
        if pc is not None:
            for m in pc.members:
                if m.name and m.name not in names:
                    names[m.name] = ("push", m)
            if pc.name and pc.name not in names:
                names[pc.name] = ("push_block", pc)
        return names

    def _build(self, dev: Device) -> None:
        lim = dev.info.limits
        ls = self.local_size
        mx = lim["max_workgroup_size"]
        if (
            any(ls[d] > mx[d] for d in range(3))
            or ls[0] * ls[1] * ls[2] > lim["max_workgroup_invocations"]
        ):
            raise ValueError(
                f"{self.name}: workgroup size {ls} exceeds the limits of {dev.info.name}: "
                f"maxComputeWorkGroupSize {mx}, maxComputeWorkGroupInvocations "
                f"{lim['max_workgroup_invocations']}"
            )
        old = self._pipeline
        t0 = time.perf_counter()
        self._pipeline = ComputePipeline(
            dev, self.spirv, self.reflection, self._spec_values, label=self.name
        )
        self.pipeline_ms = (time.perf_counter() - t0) * 1e3
        self._generation = session_generation()
        self._scratch = {}
        self._fast = {}  # remembered calls name the old pipeline
        self._last_fast = None
        if old is not None:
            old.close()

    @property
    def device(self) -> Device:
        """The device the kernel runs on."""
        return self.pipeline.device

    @property
    def pipeline(self) -> ComputePipeline:
        """The compute pipeline (rebuilt on the new session device after ``vknb.use``/``reset``)."""
        p = self._pipeline
        if p is None:
            raise E.ObjectClosed(f"kernel {self.name!r} is closed")
        if (
            p._closed
            or p.device._closed
            or (self._follow_session and self._generation != session_generation())
        ):
            if not self._follow_session and p.device._closed:
                raise E.ObjectClosed(f"kernel {self.name!r}: its device {p.device.label} is closed")
            self._build(session_device())
            p = self._pipeline
            assert p is not None
        return p

    # -- calling -------------------------------------------------------------------------

    def _bind_args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        bindings = self.reflection.bindings
        if len(args) > len(bindings):
            raise TypeError(
                f"{self.name}() takes {len(bindings)} positional arguments (its bindings: "
                f"{', '.join(b.name for b in bindings) or 'none'}), got {len(args)}"
            )
        vals: list[Any] = list(args) + [_MISSING] * (len(bindings) - len(args))
        push: dict[str, Any] = {}
        for key, v in kwargs.items():
            hit = self._names.get(key)
            if hit is None:
                known = sorted(self._names)
                raise TypeError(
                    f"{self.name}() got an unexpected argument {key!r}; it takes: "
                    f"{', '.join([*known, 'grid', 'groups'])}"
                )
            kind, ref = hit
            if kind == "binding":
                if vals[ref] is not _MISSING:
                    raise TypeError(
                        f"{self.name}() got binding {key!r} twice (by position and name)"
                    )
                vals[ref] = v
            elif kind == "push":
                push[ref.name] = v
            else:
                if not isinstance(v, Mapping):
                    raise TypeError(f"{self.name}: push-constant block {key!r} takes a dict")
                push.update(v)
        missing = [b.name for b, v in zip(bindings, vals, strict=True) if v is _MISSING]
        if missing:
            raise TypeError(f"{self.name}() missing binding argument(s): {', '.join(missing)}")
        return vals, push

    def _prepare(
        self, vals: list[Any], dev: Device, pipe: ComputePipeline, private: bool = False
    ) -> _Prepared:
        prep = _Prepared()
        lim = dev.info.limits
        for i, (b, v) in enumerate(zip(self.reflection.bindings, vals, strict=True)):
            if b.kind not in ("storage", "uniform"):
                raise TypeError(
                    f"{self.name}: binding {b.name!r} is a {b.kind}; vknb binds storage and "
                    "uniform buffers only (images and samplers are listed by reflection, not "
                    "bindable yet)"
                )
            block = b.block
            fixed = block.size if block is not None else 0
            max_range = lim[
                "max_storage_buffer_range" if b.kind == "storage" else "max_uniform_buffer_range"
            ]
            if isinstance(v, Array):
                if v.buffer.device is not dev:
                    raise ValueError(
                        f"{self.name}: binding {b.name!r} holds an Array on "
                        f"{v.buffer.device.label}, "
                        f"but the kernel runs on {dev.label}"
                    )
                if b.kind == "storage":
                    _check_array_dtype(b, v.dtype, v.shape, self.name)
                buf, nbytes = v.buffer, v.nbytes
                buf._check()
            elif isinstance(v, Buffer):
                buf, nbytes = v, v.nbytes
                buf._check()
            elif isinstance(v, np.ndarray) and not (
                b.kind == "uniform" and (v.dtype.names is not None or _one_member_value(block, v))
            ):
                if b.kind == "uniform" and block is not None:
                    v = _uniform_from_array(self.name, b, v)
                else:
                    _check_array_dtype(b, v.dtype, v.shape, self.name)
                if not v.flags.c_contiguous:
                    raise ValueError(
                        f"{self.name}: binding {b.name!r} got a non-contiguous array (strides "
                        f"{v.strides}); pass np.ascontiguousarray(x)"
                    )
                nbytes = v.nbytes
                if nbytes == 0:
                    raise ValueError(f"{self.name}: binding {b.name!r} got an empty array")
                writable = not b.readonly and b.kind == "storage"
                if writable and not v.flags.writeable:
                    raise ValueError(
                        f"{self.name}: binding {b.name!r} may be written by the shader, but the "
                        "array is read-only; pass a writeable array (or declare the binding "
                        "readonly)"
                    )
                buf = self._scratch_buffer(i, b, nbytes, dev, private)
                if not b.writeonly:
                    buf.write(v)
                    prep.bytes_in += nbytes
                if writable:
                    prep.writeback.append((v, buf))
            elif b.kind == "uniform" and block is not None:
                data = pack_block(block, v, f"{self.name}: uniform block {b.name!r}")
                nbytes = len(data)
                buf = self._scratch_buffer(i, b, nbytes, dev, private)
                buf.write(np.frombuffer(data, np.uint8))
                prep.bytes_in += nbytes
            else:
                raise TypeError(
                    f"{self.name}: binding {b.name!r} ({b.kind} buffer of {_expected_text(b)}) "
                    f"takes a numpy array or a vknb.Array, got {type(v).__name__}"
                )
            if nbytes < max(fixed, 1):
                raise ValueError(
                    f"{self.name}: binding {b.name!r} needs at least {fixed} bytes (the fixed part "
                    f"of block {block.name if block else '?'}), got {nbytes}"
                )
            if nbytes > max_range:
                raise ValueError(
                    f"{self.name}: binding {b.name!r} is {nbytes} bytes, beyond the device's "
                    f"max{'Storage' if b.kind == 'storage' else 'Uniform'}BufferRange ({max_range})"
                )
            prep.resources.append((b, buf, nbytes))
            prep.keep.append(buf)
            prep.kernel_bytes += nbytes * ((not b.writeonly) + (not b.readonly))
        return prep

    def _scratch_buffer(
        self, i: int, b: Binding, nbytes: int, dev: Device, private: bool = False
    ) -> Buffer:
        if private:  # a batch keeps its own copy: later calls must not overwrite it
            return Buffer(nbytes, device=dev, label=f"{self.name}.{b.name}")
        buf = self._scratch.get(i)
        if (
            buf is not None
            and not buf.closed
            and buf.nbytes == nbytes
            and not getattr(buf, "_busy", False)
        ):
            return buf
        buf = Buffer(nbytes, device=dev, label=f"{self.name}.{b.name}")
        if self._scratch.get(i) is None or not getattr(self._scratch[i], "_busy", False):
            old = self._scratch.get(i)
            self._scratch[i] = buf
            if old is not None:
                old.close()
        return buf

    def _push_bytes(self, push: dict[str, Any]) -> bytes:
        # Memo by value *and type* (1, 1.0 and True hash alike but pack differently).
        try:
            key: Any = tuple((k, type(v), v) for k, v in push.items())
            hit = self._push_memo.get(key)
        except TypeError:  # unhashable values (lists): pack every time
            key, hit = None, None
        if hit is not None:
            return hit
        data = self._pack_push(push)
        if key is not None:
            if len(self._push_memo) > 256:
                self._push_memo.clear()
            self._push_memo[key] = data
        return data

    def _pack_push(self, push: dict[str, Any]) -> bytes:
        pc = self.reflection.push_constants
        if pc is None:
            if push:
                raise TypeError(f"{self.name} has no push constants; got {', '.join(push)}")
            return b""
        target = np.zeros((), dtype=pc.dtype)
        _pack_into(target, pc.members, push, f"{self.name}: push constant")
        return target.tobytes()

    # -- the fast path: a repeated call with the same device Arrays and scalar values ----------

    def _fast_lookup(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        grid: Any,
        groups: Any,
        pipe: ComputePipeline,
    ) -> tuple[_Fast, list[Array]] | None:
        """The remembered call this call repeats, if any, and its Arrays (still alive)."""
        f = self._last_fast  # the call before, checked first: loops repeat one call
        arrays = f.match(args, kwargs, grid, groups) if f is not None else None
        if arrays is None:
            for f in self._fast.get(tuple(map(id, args)), ()):
                arrays = f.match(args, kwargs, grid, groups)
                if arrays is not None:
                    break
            else:
                return None
            self._last_fast = f
        if f.pipe is not pipe or f.epoch != pipe._sets_epoch:
            # Stale (the pipeline or its descriptor sets were rebuilt): forget every remembered
            # call; the call goes the long way, which remembers it afresh.
            self._fast = {}
            self._last_fast = None
            return None
        for a in arrays:
            if a.buffer._alloc is None:
                return None
        return f, arrays

    def _fast_store(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        grid: Any,
        groups: Any,
        pipe: ComputePipeline,
        prep: _Prepared,
        sets: Any,
        push: bytes,
        grp: tuple[int, int, int],
    ) -> None:
        """Remember a call made with device Arrays and plain scalars only."""
        if prep.writeback or prep.bytes_in:
            return  # numpy arguments: their data must move on every call
        if not (_memo_shape(grid) and _memo_shape(groups)):
            return
        for a in args:
            if type(a) is not Array:
                return
        kw: list[tuple[str, type, Any]] = []
        for name, v in kwargs.items():
            t = type(v)
            if t is Array:
                kw.append((name, t, weakref.ref(v)))
            elif t in _SCALAR_TYPES:
                kw.append((name, t, v))
            else:
                return
        key = tuple(map(id, args))
        fast = self._fast
        if len(fast) >= 64 and key not in fast:
            fast.clear()
        cands = fast.setdefault(key, [])
        cands.insert(0, _Fast(pipe, args, kw, grid, groups, prep, sets, push, grp))
        del cands[8:]

    def _resolve(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        grid: Any,
        groups: Any,
        pipe: ComputePipeline,
        private: bool = False,
    ) -> tuple[_Prepared, Any, bytes, tuple[int, int, int]]:
        """The long way: bind, check and upload the arguments; remember the call if it can be."""
        dev = pipe.device
        vals, push = self._bind_args(args, kwargs)
        grp = _groups(
            self.local_size, grid, groups, dev.info.limits["max_workgroup_count"], self.name
        )
        push_bytes = self._push_bytes(push)
        prep = self._prepare(vals, dev, pipe, private=private)
        sets = pipe.descriptor_sets(prep.resources)
        prep.reads = [buf._serial for bd, buf, _ in prep.resources if not bd.writeonly]
        prep.writes = [buf._serial for bd, buf, _ in prep.resources if not bd.readonly]
        self._fast_store(args, kwargs, grid, groups, pipe, prep, sets, push_bytes, grp)
        return prep, sets, push_bytes, grp

    def _run_repeated(self, pipe: ComputePipeline, f: _Fast) -> DispatchRecord:
        """A remembered call, synchronously: no scratch buffers, nothing to write back."""
        t0 = time.perf_counter()
        slot = pipe.submit_repeated(f.sets, f.push, f.groups)
        # Built while the GPU runs; its GPU time is read later (finish_repeated).
        rec = DispatchRecord(
            self.name,
            f.groups,
            self.local_size,
            None,
            0.0,
            0,
            0,
            pipe.device.info.name,
            time.time(),
            None,
            f.kernel_bytes,
        )
        pipe.finish_repeated(slot, rec)
        rec.host_ms = (time.perf_counter() - t0) * 1e3
        record(rec)
        return rec

    def bind(self, *args: Any, grid: Any = None, groups: Any = None, **kwargs: Any) -> BoundCall:
        """Fix a call's arguments once; the returned :class:`BoundCall` dispatches it again.

        Takes what a call takes, except numpy arrays: the buffers must be device
        :class:`~vknb.Array` objects, the push constants plain scalars.  Calling the result skips
        matching the arguments against remembered calls, which makes it the cheapest way to
        dispatch in a loop or to record many dispatches in a :func:`vknb.batch`.  It keeps its
        Arrays alive; closing one of them makes the next call raise ``ObjectClosed``.

        Example
        -------
        >>> step = k.bind(X, Y, a=2.0, grid=X.size)
        >>> for _ in range(100):
        ...     rec = step()             # same as k(X, Y, a=2.0, grid=X.size)
        >>> with vknb.batch() as b:
        ...     for _ in range(1000):
        ...         step()               # recorded
        """
        return BoundCall(self, args, kwargs, grid, groups)

    def __call__(
        self, *args: Any, grid: Any = None, groups: Any = None, wait: bool = True, **kwargs: Any
    ) -> Any:
        """Dispatch the kernel; return its :class:`~vknb.timing.DispatchRecord`.

        With ``wait=False`` return a :class:`~vknb.Submission` at once; its ``wait()`` writes
        numpy arrays back and returns the record (``vknb.synchronize()`` waits for all).  Inside
        a ``with vknb.batch():`` block the dispatch is recorded, and the call returns its index
        in the batch.
        """
        pipe = self.pipeline
        b = _batching_local.__dict__.get("batch")
        fast = self._fast_lookup(args, kwargs, grid, groups, pipe)
        if fast is not None:
            f, arrays = fast
            if b is not None:  # the hottest path: recording a repeated call
                return b.add(self, pipe, f.sets, f.cpush, f.groups, f.reads, f.writes, arrays, ())
            if wait:  # a repeated synchronous call: no scratch buffers, nothing to write back
                return self._run_repeated(pipe, f)
        t0 = time.perf_counter()
        dev = pipe.device
        if fast is not None:
            prep, sets, push_bytes, grp = f.prepared(arrays), f.sets, f.push, f.groups
        else:
            prep, sets, push_bytes, grp = self._resolve(
                args, kwargs, grid, groups, pipe, private=b is not None
            )
        if b is not None:
            return b.add(
                self,
                pipe,
                sets,
                _cpush(push_bytes),
                grp,
                prep.reads,
                prep.writes,
                prep.keep,
                prep.writeback,
            )
        scratch = fast is None  # only calls with numpy arguments use scratch buffers
        if scratch:
            for buf in prep.keep:
                buf._busy = True
        try:
            slot = pipe.dispatch(sets, push_bytes, grp, prep.keep, wait=False)
        except BaseException:
            for buf in prep.keep:
                buf._busy = False
            raise

        def finish() -> DispatchRecord:
            gpu = pipe.wait_and_read(slot)  # read before another call may take the slot
            if scratch:
                for buf in prep.keep:
                    buf._busy = False
            bytes_out = 0
            for arr, buf in prep.writeback:
                buf.read(out=arr)
                bytes_out += arr.nbytes
            rec = DispatchRecord(
                kernel=self.name,
                groups=grp,
                local_size=self.local_size,
                gpu_ms=gpu,
                host_ms=(time.perf_counter() - t0) * 1e3,
                bytes_in=prep.bytes_in,
                bytes_out=bytes_out,
                device=dev.info.name,
                kernel_bytes=prep.kernel_bytes,
            )
            record(rec)
            return rec

        if wait:
            return finish()
        sub = Submission(dev, None, slot.fence, prep.keep, f"{self.name} dispatch", on_done=finish)
        dev._pending.append(sub)
        return sub

    # -- lifetime and display ------------------------------------------------------------

    def close(self) -> None:
        """Release the pipeline and scratch buffers now (idempotent)."""
        p, self._pipeline = self._pipeline, None
        for b in self._scratch.values():
            b.close()
        self._scratch = {}
        self._fast = {}
        self._last_fast = None
        if p is not None:
            p.close()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        from ..ui.display import kernel_text

        return kernel_text(self)

    def _repr_html_(self) -> str:
        from ..ui.display import kernel_html

        return kernel_html(self)


class BoundCall:
    """A kernel call with its arguments fixed (see :meth:`Kernel.bind`).

    Calling it dispatches the call again, as ``kernel(*args, **kwargs)`` would, without matching
    the arguments: synchronously (returns a :class:`~vknb.timing.DispatchRecord`), with
    ``wait=False`` (returns a :class:`~vknb.Submission`), or recorded inside a
    ``with vknb.batch():`` block (returns the dispatch's index in the batch).

    Example
    -------
    >>> step = k.bind(X, Y, a=2.0, grid=X.size)
    >>> step().gpu_ms > 0
    True
    >>> step
    <vknb.BoundCall saxpy(Array#1, Array#2, a=2.0, grid=1000)>
    """

    __slots__ = ("_buffers", "_fast", "args", "grid", "groups", "kernel", "kwargs")

    def __init__(
        self, kernel: Kernel, args: tuple[Any, ...], kwargs: dict[str, Any], grid: Any, groups: Any
    ) -> None:
        for name, v in [*enumerate(args), *kwargs.items()]:
            if isinstance(v, np.ndarray):
                where = f"argument {name}" if isinstance(name, int) else f"{name}="
                raise TypeError(
                    f"{kernel.name}.bind: {where} is a numpy array; a bound call takes device "
                    "Arrays (vknb.asarray(a)), whose data stays on the device between calls"
                )
        self.kernel = kernel
        self.args = args
        self.kwargs = dict(kwargs)
        self.grid = grid
        self.groups = groups
        self._fast: _Fast | None = None
        self._buffers: list[Buffer] = []
        self._bind()

    def _bind(self) -> None:
        """Resolve the call (checking every argument) and keep what dispatching it needs."""
        k = self.kernel
        pipe = k.pipeline
        prep, sets, push, grp = k._resolve(self.args, self.kwargs, self.grid, self.groups, pipe)
        if prep.writeback or prep.bytes_in:
            raise TypeError(
                f"{k.name}.bind: a buffer is given as values, which a call uploads each time; "
                "pass a device Array (vknb.asarray(...)) for it"
            )
        self._fast = _Fast(pipe, (), [], self.grid, self.groups, prep, sets, push, grp)
        self._buffers = prep.keep

    def _item(self) -> tuple[Any, ...]:
        """What a batch records for the call, after checking that it can still run."""
        f = self._fast
        k = self.kernel
        pipe = k.pipeline
        if f is None or f.pipe is not pipe or f.epoch != pipe._sets_epoch:
            self._bind()  # the pipeline or its descriptor sets were rebuilt
            f = self._fast
            assert f is not None
        bufs = self._buffers
        for buf in bufs:
            if buf._alloc is None:
                raise E.ObjectClosed(
                    f"{k.name}: bound argument {buf.label} was closed; bind the call again",
                    label=buf.label,
                )
        return (k, pipe, f.sets, f.cpush, f.groups, f.reads, f.writes, bufs, ())

    def __call__(self, *, wait: bool = True) -> Any:
        """Dispatch the call (see the class docstring for what it returns)."""
        item = self._item()
        b = _batching_local.__dict__.get("batch")
        if b is not None:
            return b.add(*item)
        if wait:
            return self.kernel._run_repeated(item[1], self._fast)  # type: ignore[arg-type]
        return self.kernel(
            *self.args, grid=self.grid, groups=self.groups, wait=False, **self.kwargs
        )

    def __repr__(self) -> str:
        def show(v: Any) -> str:
            return v.label if isinstance(v, (Array, Buffer)) else repr(v)

        parts = [show(a) for a in self.args]
        parts += [f"{n}={show(v)}" for n, v in self.kwargs.items()]
        if self.grid is not None:
            parts.append(f"grid={self.grid!r}")
        if self.groups is not None:
            parts.append(f"groups={self.groups!r}")
        return f"<vknb.BoundCall {self.kernel.name}({', '.join(parts)})>"


_SCALAR_TYPES = frozenset(
    {float, int, bool, np.float32, np.float64, np.int32, np.uint32, np.int64, np.uint64, np.bool_}
)


def _memo_shape(v: Any) -> bool:
    """Whether ``grid``/``groups`` can be compared with ``==`` safely (None, ints, int tuples)."""
    return v is None or type(v) is int or (type(v) is tuple and all(type(x) is int for x in v))


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _one_member_value(block: Block | None, v: np.ndarray) -> bool:
    """A numpy value for a one-member uniform block (packed like a list would be)."""
    if block is None or v.dtype == block.dtype or v.dtype == np.uint8:
        return False
    return len([m for m in block.members if m.array_length != 0]) == 1


def _uniform_from_array(name: str, b: Binding, v: np.ndarray) -> np.ndarray:
    block = b.block
    assert block is not None
    if v.dtype == block.dtype or v.dtype == np.uint8:
        return v
    raise TypeError(
        f"{name}: uniform block {b.name!r} takes a dict by member name, a scalar (one-member "
        f"block) or an array of dtype {block.dtype}; got an array of dtype {v.dtype}"
    )


def compile(  # noqa: A001 - the contract's name (vknb.compile)
    source: str | bytes | bytearray | memoryview,
    name: str | None = None,
    *,
    defines: Mapping[str, Any] | None = None,
    constants: Mapping[str | int, Any] | None = None,
    local_size: Sequence[int] | int | None = None,
    device: Device | None = None,
    include_dirs: Sequence[str] = (),
    optimize: bool = False,
    entry_point: str | None = None,
) -> Kernel:
    """Compile GLSL (or take SPIR-V bytes), reflect it, build the pipeline: a callable Kernel.

    Parameters
    ----------
    source : str or bytes
        GLSL compute source (``#version 450`` is added when missing), or SPIR-V from any front
        end (bytes starting with the SPIR-V magic).
    name : str, optional
        Shown in errors, reprs and timings.
    defines : dict, optional
        Preprocessor macros (``-DNAME=VALUE``).
    constants : dict, optional
        Specialization constants by name (or id).
    local_size : int or tuple, optional
        Overrides a workgroup size that the shader declares with ``local_size_x_id`` etc.
    device : Device, optional
        Default: the session device (the kernel follows ``vknb.use`` / ``vknb.reset``).
    optimize : bool
        Also run spirv-opt (``glslc -O``) for the pipeline's SPIR-V.  Off by default: drivers
        optimize anyway, and ``-O`` strips the names reflection needs, so it costs a second
        compile (the unoptimized module is still used for reflection).

    Raises
    ------
    ShaderCompileError
        With ``.diagnostics`` in the source's own line numbers.

    Example
    -------
    >>> k = vknb.compile('''
    ... layout(local_size_x_id = 0) in;
    ... layout(constant_id = 1) const float SCALE = 1.0;
    ... layout(binding = 0) buffer B { float b[]; };
    ... void main() { b[gl_GlobalInvocationID.x] *= SCALE; }''', name="scale",
    ...     constants={"SCALE": 3.0}, local_size=32)
    >>> k.local_size
    (32, 1, 1)
    """
    from ..shader.spirv import reflect

    info = None
    text = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        spirv = reflect_from = bytes(source)
        name = name or "spirv"
    elif isinstance(source, str):
        from ..shader.compiler import compile_glsl_info

        name = name or "kernel"
        text = source
        # Reflection always reads the unoptimized module: spirv-opt strips the names.
        info = compile_glsl_info(
            source, defines=defines, name=name, include_dirs=include_dirs, optimize=False
        )
        spirv = reflect_from = info.spirv
        if optimize:
            spirv = compile_glsl_info(
                source, defines=defines, name=name, include_dirs=include_dirs, optimize=True
            ).spirv
    else:
        raise TypeError(
            f"compile() takes GLSL source (str) or SPIR-V (bytes), got {type(source).__name__}"
        )
    refl = reflect(reflect_from, entry_point) if entry_point else reflect(reflect_from)
    if info is None:  # SPIR-V from outside: validate before a driver sees it (some crash)
        from ..shader.compiler import validate_spirv

        validate_spirv(spirv)
    return Kernel(
        spirv,
        refl,
        name=name,
        source=text,
        constants=constants,
        local_size=local_size,
        device=device,
        compile_info=info,
        defines=defines,
    )


# Weak registry of kernels by name, so tools can find the newest (magics update in place).
_registry: weakref.WeakValueDictionary[str, Kernel] = weakref.WeakValueDictionary()
