"""The Kernel: a compiled, reflected compute shader that you call with numpy arrays.

Binding rules (see ``docs/binding.md``):

* positional arguments fill the descriptor bindings in (set, binding) order;
* keyword arguments name a binding (instance name, block name, or the name of its single array
  member), a push-constant member, or ``grid`` / ``groups``;
* ``grid`` counts invocations per dimension (int or tuple), ``groups`` counts workgroups;
* a numpy array bound to a binding the shader may write is written back in place after the
  dispatch; a ``readonly`` binding is never downloaded, a ``writeonly`` one never uploaded (the
  part of it the shader does not write comes back as zeros); a device :class:`~vknb.Array`
  moves no bytes at all;
* the same numpy array given to two bindings is one buffer on the device, as the same Array
  would be; two numpy arrays that overlap without being the same are refused;
* uniform blocks and push-constant blocks also take a dict by member name;
* a descriptor array (``buffer B {...} bufs[4];``) takes a list or tuple of that many arrays;
* every mismatch is a TypeError / ValueError naming the binding or member.

Thread safety: a Kernel may be called from any number of threads; calls of one Kernel prepare
and submit one at a time (under the kernel's lock) and wait for the GPU in parallel, each with
buffers of its own for numpy arguments, so results equal those of serial calls.

Matrices: numpy is row-major and GLSL column-major, so the bytes of a numpy ``(4, 4)`` array
``M`` are seen by the shader as ``transpose(M)``.  Pass ``M.T.copy()``, or declare the member
``layout(row_major)``, to see ``M`` itself.

Example
-------
>>> k = vknb.compile(SAXPY, name="saxpy")                    # doctest: +SKIP
>>> rec = k(x, y, a=2.0, grid=x.size)                        # doctest: +SKIP
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _vk
from .. import errors as E
from ..core.array import Array
from ..core.buffer import Buffer
from ..core.commands import push_cdata
from ..core.device import Device, Submission
from ..core.pipeline import ComputePipeline, Layout, Slot
from ..core.session import device as session_device
from ..core.session import prewarm, printf_device, session_generation
from .args import (
    binding_slots,
    pack_into,
    pack_spec_values,
    spec_check,
    workgroups,
)
from .batch import current as current_batch
from .bind import Binder, Prepared, read_back
from .timing import DispatchRecord, record

if TYPE_CHECKING:  # pragma: no cover
    from ..shader.compiler import CompileResult
    from ..shader.spirv import Reflection


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
        prep: Prepared,
        sets: Any,
        push: bytes,
        groups: tuple[int, int, int],
    ) -> None:
        self.pipe = pipe
        self.epoch = pipe.sets_epoch
        self.refs = [weakref.ref(a) for a in args]
        self.kw = kw  # (name, type, value), or (name, Array, weak reference)
        self.grid_arg = grid
        self.groups_arg = groups_arg
        self.reads = prep.reads
        self.writes = prep.writes
        self.kernel_bytes = prep.kernel_bytes
        self.sets = sets
        self.push = push
        self.cpush = push_cdata(push)
        self.groups = groups

    def match(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], grid: Any, groups: Any
    ) -> list[Buffer] | None:
        """The buffers of the call's Arrays if it repeats this one exactly (identity, type and
        value) and they are all still open."""
        refs = self.refs
        if len(refs) != len(args):
            return None
        bufs: list[Buffer] = []
        for r, a in zip(refs, args, strict=True):  # the Arrays first: they differ most often
            if r() is not a or a is None:
                return None
            buf = a.buffer
            if buf.allocation is None:
                return None
            bufs.append(buf)
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
                buf = x.buffer
                if buf.allocation is None:
                    return None
                bufs.append(buf)
            elif x != v:
                return None
        return bufs


class Kernel:
    """A compiled compute shader bound to a device; call it to dispatch.

    Create with :func:`vknb.compile`.  Attributes: ``name``, ``source``, ``spirv``,
    ``reflection``, ``constants``, ``local_size``, ``device``, ``compile_info``, ``slots``
    (the arguments a call takes, see :class:`~vknb.compute.args.BindingSlot`), ``extras`` (a
    dict for state that code built on the kernel keeps with it, such as the library's scratch
    buffers: it goes with the kernel, and :meth:`close` closes what in it has a ``close()``).

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
        self.base_reflection = reflection  # before specialization: what to_device() reuses
        self.compile_info = compile_info
        self.defines = dict(defines or {})
        self._local_size_arg = local_size
        self._constants_arg = dict(constants or {})
        self._follow_session = device is None
        self._spec_values, self.constants = self._resolve_constants(constants)
        self._apply_local_size(local_size)
        # Array lengths, block layouts and descriptor counts follow the constants given.
        try:
            self.reflection = reflection.specialize(self._spec_values)
        except E.SpirvError as e:
            raise E.SpirvError(f"{name}: {e}") from None
        self.local_size = self.reflection.local_size_for(self._spec_values)
        # Tells this kernel from an edited one of the same name (in timings and views).
        self.version = hashlib.sha1(
            self.spirv + repr(sorted(self._spec_values.items())).encode()
        ).hexdigest()[:8]
        self.slots = binding_slots(self.reflection, name, self._spec_values)
        pc = self.reflection.push_constants
        self._layout = Layout(
            tuple((s.set, s.binding, s.descriptor_type, s.count) for s in self.slots),
            pc.size if pc is not None else 0,
        )
        self._names = self._name_map()
        # A reentrant lock: the argument checks, uploads, descriptor sets, remembered calls and
        # submission of one call at a time (waits happen outside it).
        self._lock = threading.RLock()
        self._closed = False
        self.binder = Binder(name, self.slots)  # checks arguments, owns scratch resources
        self._push_memo: dict[Any, bytes] = {}
        self._fast: dict[tuple[int, ...], list[_Fast]] = {}  # see _fast_lookup
        self._last_fast: _Fast | None = None
        # What library code keeps with this kernel (vknb.library's scratch buffers): it lives
        # and goes with the kernel, and close() closes what has a close().
        self.extras: dict[str, Any] = {}
        self._pipeline: ComputePipeline | None = None
        self._generation = -1
        dev = device if device is not None else session_device()
        self.printf = self.reflection.uses_printf  # calls debugPrintfEXT
        if self.printf and device is None and not dev.instance.printf:
            # Its output needs the validation layer's debug printf: a device of that instance.
            try:
                dev = printf_device(dev.index)
                self._follow_session = False
            except E.InitializationFailed as e:
                warnings.warn(
                    f"{name}: {e}; its debugPrintfEXT calls will print nothing",
                    RuntimeWarning,
                    stacklevel=3,
                )
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
            values[spec.id] = spec_check(spec, v, what)
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
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
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
            sid = ids[d]
            assert sid is not None
            self._spec_values[sid] = int(v)

    def _name_map(self) -> dict[str, tuple[str, Any]]:
        names: dict[str, tuple[str, Any]] = {}
        for slot in self.slots:
            for n in slot.names:
                if n not in names:
                    names[n] = ("binding", slot)
        pc = self.reflection.push_constants
        if pc is not None:
            for m in pc.members:
                if m.name and m.name not in names:
                    names[m.name] = ("push", m)
            if pc.name and pc.name not in names:
                names[pc.name] = ("push_block", pc)
        return names

    def _check_limits(self, dev: Device) -> None:
        """What the device cannot run is refused here, before anything reaches the driver."""
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
        pc = self.reflection.push_constants
        if pc is not None and pc.size > lim["max_push_constants_size"]:
            raise ValueError(
                f"{self.name}: push-constant block {pc.name or '(unnamed)'!r} is {pc.size} bytes, "
                f"beyond {dev.info.name}'s maxPushConstantsSize of "
                f"{lim['max_push_constants_size']} bytes; move the larger members into a "
                "uniform or storage buffer"
            )
        shared = self.reflection.shared_memory
        if shared > lim["max_shared_memory"]:
            raise ValueError(
                f"{self.name}: its shared variables take {shared} bytes, beyond "
                f"{dev.info.name}'s maxComputeSharedMemorySize of {lim['max_shared_memory']} "
                "bytes; use smaller shared arrays (or a storage buffer)"
            )
        nsets = self._layout.nsets
        if nsets > lim["max_bound_descriptor_sets"]:
            raise ValueError(
                f"{self.name}: uses {nsets} descriptor sets, beyond {dev.info.name}'s "
                f"maxBoundDescriptorSets of {lim['max_bound_descriptor_sets']}"
            )

    def _build(self, dev: Device) -> None:
        self._check_limits(dev)
        old = self._pipeline
        t0 = time.perf_counter()
        self._pipeline = ComputePipeline(
            dev,
            self.spirv,
            self._layout,
            pack_spec_values(self.reflection, self._spec_values),
            entry_point=self.reflection.entry_point,
            label=self.name,
        )
        self.pipeline_ms = (time.perf_counter() - t0) * 1e3
        self._generation = session_generation()
        self.binder.drop()
        self._fast = {}  # remembered calls name the old pipeline
        self._last_fast = None
        if old is not None:
            old.close()

    @property
    def device(self) -> Device:
        """The device the kernel runs on."""
        return self.pipeline.device

    def to(self, device: Device) -> Kernel:
        """The same kernel (same SPIR-V, constants and workgroup size) built for ``device``.

        Nothing is compiled again.  The new kernel stays on ``device`` (it does not follow the
        session device).

        Example
        -------
        >>> k2 = k.to(vknb.Device(1))                        # doctest: +SKIP
        """
        return Kernel(
            self.spirv,
            self.base_reflection,
            name=self.name,
            source=self.source,
            constants=self._constants_arg,
            local_size=self._local_size_arg,
            device=device,
            compile_info=self.compile_info,
            defines=self.defines,
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """A Kernel pickles as its SPIR-V, reflection and options (no device): it is rebuilt
        on the receiving process's session device without compiling (Dask, multiprocessing,
        joblib ship kernels this way)."""
        return (
            _rebuild_kernel,
            (
                self.spirv,
                self.base_reflection,
                self.name,
                self.source,
                self._constants_arg,
                self._local_size_arg,
                self.defines,
            ),
        )

    @property
    def pipeline(self) -> ComputePipeline:
        """The compute pipeline (rebuilt on the new session device after ``vknb.use``/``reset``)."""
        p = self._pipeline
        if p is None or self._closed:
            raise E.ObjectClosed(f"kernel {self.name!r} is closed", label=self.name)
        dev = p.device
        if (
            p.closed
            or dev.closed
            or (self._follow_session and self._generation != session_generation())
        ):
            if not self._follow_session and dev.closed:
                raise dev.unusable_error(f"kernel {self.name!r}")
            with self._lock:
                p = self._pipeline
                if p is None or self._closed:
                    raise E.ObjectClosed(f"kernel {self.name!r} is closed", label=self.name)
                if (
                    p.closed
                    or p.device.closed
                    or (self._follow_session and self._generation != session_generation())
                ):
                    self._build(session_device())
                    p = self._pipeline
                    assert p is not None
        return p

    # -- calling -------------------------------------------------------------------------

    def _bind_args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        slots = self.slots
        if len(args) > len(slots):
            raise TypeError(
                f"{self.name}() takes {len(slots)} positional arguments (its bindings: "
                f"{', '.join(s.name for s in slots) or 'none'}), got {len(args)}"
            )
        vals: list[Any] = list(args) + [_MISSING] * (len(slots) - len(args))
        push: dict[str, Any] = {}
        given_by: dict[str, str] = {}
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
                if vals[ref.index] is not _MISSING:
                    before = given_by.get(f"#{ref.index}", "by position")
                    raise TypeError(
                        f"{self.name}() got binding {ref.name!r} twice: as {key!r} and "
                        f"{before} (its names: {', '.join(ref.names)})"
                    )
                vals[ref.index] = v
                given_by[f"#{ref.index}"] = f"as {key!r}"
            elif kind == "push":
                if ref.name in push:
                    raise TypeError(
                        f"{self.name}() got push-constant member {ref.name!r} twice (as "
                        f"{key}= and in {given_by[ref.name]})"
                    )
                push[ref.name] = v
                given_by[ref.name] = f"{key}="
            else:
                if not isinstance(v, Mapping):
                    raise TypeError(f"{self.name}: push-constant block {key!r} takes a dict")
                for m, x in v.items():
                    if m in push:
                        raise TypeError(
                            f"{self.name}() got push-constant member {m!r} twice (as "
                            f"{given_by[m]} and in {key}=)"
                        )
                    push[m] = x
                    given_by[m] = f"{key}="
        missing = [s.name for s, v in zip(slots, vals, strict=True) if v is _MISSING]
        if missing:
            raise TypeError(f"{self.name}() missing binding argument(s): {', '.join(missing)}")
        return vals, push

    def push_bytes(self, push: dict[str, Any]) -> bytes:
        """Push-constant bytes for member values (memoized by value and type)."""
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
        pack_into(target, pc.members, push, f"{self.name}: push constant")
        return target.tobytes()

    # -- the fast path: a repeated call with the same device Arrays and scalar values ----------

    def _fast_lookup(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        grid: Any,
        groups: Any,
        pipe: ComputePipeline,
    ) -> tuple[_Fast, list[Buffer]] | None:
        """The remembered call this call repeats, if any, and the buffers of its Arrays (all
        still open)."""
        last = self._last_fast  # the call before, checked first: loops repeat one call
        bufs = last.match(args, kwargs, grid, groups) if last is not None else None
        f = last
        if bufs is None:
            for f in self._fast.get(tuple(map(id, args)), ()):
                bufs = f.match(args, kwargs, grid, groups)
                if bufs is not None:
                    break
            else:
                return None
            self._last_fast = f
        assert f is not None
        if f.pipe is not pipe or f.epoch != pipe.sets_epoch:
            # Stale (the pipeline or its descriptor sets were rebuilt): forget every remembered
            # call; the call goes the long way, which remembers it afresh.
            self._fast = {}
            self._last_fast = None
            return None
        return f, bufs

    def _fast_store(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        grid: Any,
        groups: Any,
        pipe: ComputePipeline,
        prep: Prepared,
        sets: Any,
        push: bytes,
        grp: tuple[int, int, int],
    ) -> None:
        """Remember a call made with device Arrays and plain scalars only."""
        if prep.scratch or prep.writeback or prep.bytes_in:
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
        if len(fast) >= 256 and key not in fast:
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
    ) -> tuple[Prepared, Any, bytes, tuple[int, int, int]]:
        """The long way: bind, check and upload the arguments; remember the call if it can be.

        Call under the kernel's lock."""
        dev = pipe.device
        dev.check_usable()
        vals, push = self._bind_args(args, kwargs)
        grp = workgroups(
            self.local_size, grid, groups, dev.info.limits["max_workgroup_count"], self.name
        )
        push_bytes = self.push_bytes(push)
        prep = self.binder.prepare(vals, dev, private)
        try:
            sets = pipe.descriptor_sets(prep.resources)
        except BaseException:
            self.binder.give_back(prep.scratch, keep=False)
            raise
        self._fast_store(args, kwargs, grid, groups, pipe, prep, sets, push_bytes, grp)
        return prep, sets, push_bytes, grp

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
        b = current_batch()
        if b is not None:  # recorded, not run
            with self._lock:
                pipe = self.pipeline
                fast = self._fast_lookup(args, kwargs, grid, groups, pipe)
                if fast is not None:  # the hottest path: recording a repeated call
                    f, bufs = fast
                    return b.add(self, pipe, f.sets, f.cpush, f.groups, f.reads, f.writes, bufs, ())
                prep, sets, push_bytes, grp = self._resolve(
                    args, kwargs, grid, groups, pipe, private=True
                )
                return b.add(
                    self,
                    pipe,
                    sets,
                    push_cdata(push_bytes),
                    grp,
                    prep.reads,
                    prep.writes,
                    prep.buffers,
                    prep.writeback,
                )
        rslot: Slot | None = None  # the call's slot, once submitted, until someone owns it
        claimed: list[Slot] = []  # the slot, from its submission (see ComputePipeline.dispatch)
        serial = 0
        held: Prepared | None = None  # its scratch buffers (a call with numpy arguments)
        try:
            with self._lock:
                pipe = self.pipeline
                fast = self._fast_lookup(args, kwargs, grid, groups, pipe)
                if fast is not None:
                    f, bufs = fast
                    if wait:  # a repeated synchronous call: no scratch buffers, no write-back
                        t0 = time.perf_counter()
                        rslot = pipe.submit_repeated(f.sets, f.push, f.groups, bufs, claimed)
                        serial = rslot.serial
                        repeated = f
                    else:
                        repeated = None
                        t0 = time.perf_counter()
                        prep = Prepared()
                        prep.buffers = bufs
                        prep.reads, prep.writes = f.reads, f.writes
                        prep.kernel_bytes = f.kernel_bytes
                        sets, push_bytes, grp = f.sets, f.push, f.groups
                else:
                    repeated = None
                    t0 = time.perf_counter()
                    prep, sets, push_bytes, grp = self._resolve(args, kwargs, grid, groups, pipe)
                if repeated is None:
                    try:
                        slot = pipe.dispatch(sets, push_bytes, grp, prep.buffers, claimed)
                    except BaseException:
                        if claimed:  # submitted (Ctrl-C as the call returned): see below
                            held = prep
                        else:
                            self.binder.give_back(prep.scratch, keep=False)
                        raise
                    rslot, serial, held = slot, slot.serial, prep
            # The wait and the write-back run outside the kernel's lock: other threads' calls
            # of this kernel go on meanwhile.
            if repeated is not None:
                assert rslot is not None
                return self._finish_repeated(pipe, repeated, rslot, t0)
            if wait:
                return self._finish_call(pipe, slot, prep, grp, t0)
            # A wait=False call: the Submission takes the slot and the scratch buffers over.
            # Ctrl-C is held back during the hand-over, so the slot has exactly one owner: this
            # frame (which gives it up below) or the tracked Submission.
            with _vk.deferred_interrupt():
                sub = self._async_call(pipe, slot, prep, grp, t0)
                slot.finishing = None  # no call frame waits on it: give_up leaves it alone
                rslot = None
                claimed.clear()
            return sub
        except BaseException:
            # Ctrl-C or a failure between the submission and the wait: the slot (and scratch
            # buffers the GPU may still use) go back once the GPU is done.
            if rslot is None and claimed:  # Ctrl-C as the submitting call returned
                rslot = claimed[0]
                serial = rslot.serial
            if rslot is not None and pipe.give_up(rslot, serial) and held is not None:
                for _, buf in held.scratch:
                    buf.close()  # (retired: freed once the GPU is done)
                held.scratch.clear()
            raise

    def _finish_repeated(
        self, pipe: ComputePipeline, f: _Fast, slot: Slot, t0: float
    ) -> DispatchRecord:
        # Built while the GPU runs; its GPU time is read later (finish_repeated).  The caller
        # gives the slot up if anything here raises.
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
            1,
            self.version,
        )
        pipe.finish_repeated(slot, rec)
        rec.host_ms = (time.perf_counter() - t0) * 1e3
        record(rec)
        if self.printf:
            pipe.device.instance.flush_printf()
        return rec

    def _finish_call(
        self,
        pipe: ComputePipeline,
        slot: Slot,
        prep: Prepared,
        grp: tuple[int, int, int],
        t0: float,
    ) -> DispatchRecord:
        """Wait for a call, write numpy outputs back, give the scratch buffers back."""
        try:
            pipe.wait_slot(slot)
        except BaseException:  # Ctrl-C or a lost device: the GPU may still use the buffers
            for _, buf in prep.scratch:
                buf.close()  # (retired: freed once the GPU is done)
            prep.scratch.clear()
            raise
        try:
            gpu = slot.gpu_interval()
        finally:
            try:
                pipe.release(slot)
            except KeyboardInterrupt:  # (as it started: Python runs handlers at every call)
                pipe.release(slot)
                raise
        return self._write_back(prep, grp, gpu, t0, pipe.device)

    def _write_back(
        self,
        prep: Prepared,
        grp: tuple[int, int, int],
        gpu: tuple[float | None, float | None, float | None],
        t0: float,
        dev: Device,
    ) -> DispatchRecord:
        try:
            bytes_out = 0
            for arr, res in prep.writeback:
                read_back(arr, res)
                bytes_out += arr.nbytes
        except BaseException:
            with self._lock:
                self.binder.give_back(prep.scratch, keep=False)
            raise
        with self._lock:
            self.binder.give_back(prep.scratch)
        # The record is made once the results are back (after wait() for a wait=False call);
        # its time is when the call was made: now less the time since then.
        elapsed = time.perf_counter() - t0
        rec = DispatchRecord(
            kernel=self.name,
            groups=grp,
            local_size=self.local_size,
            gpu_ms=None,
            host_ms=elapsed * 1e3,
            time=time.time() - elapsed,
            bytes_in=prep.bytes_in,
            bytes_out=bytes_out,
            device=dev.info.name,
            kernel_bytes=prep.kernel_bytes,
            version=self.version,
        )
        rec.set_gpu(*gpu)
        record(rec)
        if self.printf:
            dev.instance.flush_printf()
        return rec

    def _async_call(
        self,
        pipe: ComputePipeline,
        slot: Slot,
        prep: Prepared,
        grp: tuple[int, int, int],
        t0: float,
    ) -> Submission:
        dev = pipe.device
        gpu: list[tuple[float | None, float | None, float | None]] = [(None, None, None)]

        def gpu_done() -> None:  # the GPU is done and no one waits on the slot's fence
            gpu[0] = slot.gpu_interval()
            pipe.release(slot)

        def finish() -> DispatchRecord:
            return self._write_back(prep, grp, gpu[0], t0, dev)

        sub = dev.submission(
            slot.serial,
            slot.fence,
            f"{self.name} dispatch",
            keep=(self, pipe, prep),
            on_gpu_done=gpu_done,
            on_done=finish,
        )
        dev.track(sub)
        return sub

    # -- lifetime and display ------------------------------------------------------------

    def close(self) -> None:
        """Release the pipeline and scratch buffers (idempotent).

        Calls still running finish first: a pending ``wait=False`` call's ``wait()`` still
        returns its result.  Calling the kernel afterwards raises ObjectClosed.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            p, self._pipeline = self._pipeline, None
            self.binder.drop()
            self._fast = {}
            self._last_fast = None
            extras = list(self.extras.values())
        for x in extras:
            if hasattr(x, "close"):
                x.close()
        if p is not None:
            p.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        pc = self.reflection.push_constants
        push = f", push {pc.size} B" if pc is not None else ""
        state = " closed" if self._closed else ""
        n = len(self.slots)
        return (
            f"<vknb.Kernel {self.name}: {n} binding{'s' if n != 1 else ''}{push}, "
            f"local_size={self.local_size}{state}>"
        )


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
        with kernel._lock:
            self._bind()

    def _bind(self) -> None:
        """Resolve the call (checking every argument) and keep what dispatching it needs."""
        k = self.kernel
        pipe = k.pipeline
        prep, sets, push, grp = k._resolve(self.args, self.kwargs, self.grid, self.groups, pipe)
        if prep.writeback or prep.bytes_in or prep.scratch:
            k.binder.give_back(prep.scratch, keep=False)
            raise TypeError(
                f"{k.name}.bind: a buffer is given as values, which a call uploads each time; "
                "pass a device Array (vknb.asarray(...)) for it"
            )
        self._fast = _Fast(pipe, (), [], self.grid, self.groups, prep, sets, push, grp)
        self._buffers = prep.buffers

    def _current(self) -> tuple[ComputePipeline, _Fast]:
        """The kernel's pipeline and the call's resolved form for it (under the kernel's lock);
        resolved again where the pipeline or its descriptor sets were rebuilt."""
        pipe = self.kernel.pipeline
        f = self._fast
        if f is None or f.pipe is not pipe or f.epoch != pipe.sets_epoch:
            self._bind()
            f = self._fast
            assert f is not None
        return pipe, f

    def _closed_error(self, label: str) -> E.ObjectClosed:
        return E.ObjectClosed(
            f"{self.kernel.name}: bound argument {label} was closed; bind the call again",
            label=label,
        )

    def batch_item(self) -> tuple[Any, ...]:
        """What a batch records for the call, after checking that it can still run."""
        k = self.kernel
        with k._lock:
            pipe, f = self._current()
            bufs = self._buffers
            for buf in bufs:
                if buf.allocation is None:
                    raise self._closed_error(buf.label)
            return (k, pipe, f.sets, f.cpush, f.groups, f.reads, f.writes, bufs, ())

    def __call__(self, *, wait: bool = True) -> Any:
        """Dispatch the call (see the class docstring for what it returns)."""
        b = current_batch()
        if b is not None:
            return b.add(*self.batch_item())
        k = self.kernel
        if wait:
            slot: Slot | None = None
            claimed: list[Slot] = []
            serial = 0
            try:
                # Submitted under the kernel's lock, as a Kernel call is: its descriptor sets
                # cannot be given up in between.  (Its buffers are checked open there too.)
                with k._lock:
                    pipe, f = self._current()
                    bufs = self._buffers
                    t0 = time.perf_counter()
                    slot = pipe.submit_repeated(f.sets, f.push, f.groups, bufs, claimed)
                    serial = slot.serial
                return k._finish_repeated(pipe, f, slot, t0)
            except BaseException as e:
                if slot is None and claimed:  # Ctrl-C as the submitting call returned
                    slot = claimed[0]
                    serial = slot.serial
                if slot is not None:  # Ctrl-C or a failure after the submission
                    pipe.give_up(slot, serial)
                elif isinstance(e, E.ObjectClosed):
                    closed = [b.label for b in self._buffers if b.allocation is None]
                    if closed:
                        raise self._closed_error(closed[0]) from e
                raise
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


def _rebuild_kernel(
    spirv: bytes,
    reflection: Reflection,
    name: str,
    source: str | None,
    constants: dict[Any, Any],
    local_size: Any,
    defines: dict[str, Any],
) -> Kernel:
    """Unpickle a Kernel onto this process's session device (see ``Kernel.__reduce__``).

    The same pickled kernel is built once per process: a task scheduler that ships it with every
    task (``client.submit(f, kernel)``) gets the kernel of the previous task back, open and on
    the session device, instead of a pipeline build per task.
    """
    key = (
        hashlib.sha256(spirv).hexdigest(),
        name,
        repr(sorted(constants.items(), key=repr)),
        repr(local_size),
        repr(sorted(defines.items())),
    )
    with _unpickled_lock:
        k = _unpickled.get(key)
        if k is not None and not k.closed and k.device is session_device():
            _unpickled.move_to_end(key)
            return k
        k = Kernel(
            spirv,
            reflection,
            name=name,
            source=source,
            constants=constants,
            local_size=local_size,
            defines=defines,
        )
        _unpickled[key] = k
        while len(_unpickled) > _UNPICKLED_MAX:
            _unpickled.popitem(last=False)
        return k


# Kernels rebuilt from pickles, by what they were pickled from (most recently used last).
_unpickled: collections.OrderedDict[tuple[str, ...], Kernel] = collections.OrderedDict()
_unpickled_lock = threading.Lock()
_UNPICKLED_MAX = 64


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


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
    if device is None:  # the driver starts up while glslc and the reflection run
        prewarm()
    from ..shader.spirv import reflect

    info = None
    text = None
    if name is not None and not isinstance(name, str):
        raise TypeError(f"compile(): name must be a str, got {type(name).__name__}")
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
