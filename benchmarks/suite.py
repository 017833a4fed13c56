"""The benchmark rows: vknb through its public API, next to the raw baseline and the peers.

Every row runs its sides in this one process, on the same device, one after the other, and
checks each side's result against numpy before timing it.  Methodology:

* host latencies: a warm-up, then ``repeat`` timed loops of ``inner`` calls
  (``time.perf_counter_ns``, the garbage collector paused), the median of the per-call times;
* GPU times: timestamp queries around the work (vknb's ``DispatchRecord.gpu_ms``, the raw
  baseline's own query pool, CUDA events for CuPy), a warm-up, the median of ``repeat`` runs;
* transfers: one warm-up run, then the best of three (as the issue asks);
* ``ratio`` is vknb / raw: below 1 is better for times, above 1 is better for rates.

Example
-------
>>> from benchmarks.suite import PRESETS, Suite                     # doctest: +SKIP
>>> rows = Suite(PRESETS["smoke"]).run()                            # doctest: +SKIP
>>> rows[0].id                                                      # doctest: +SKIP
'sync_dispatch'
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import shutil
import statistics
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import peers
from .raw_vulkan import RawBuffer, RawPipeline, RawVulkan, glslc_compile, pack

Cell = float | str | None

REPO = Path(__file__).resolve().parent.parent
SHADERS = REPO / "vknb" / "library" / "shaders"


@dataclass(frozen=True)
class Preset:
    """Problem sizes and repetition counts of one ``--size``.

    Example
    -------
    >>> PRESETS["gpu"].matmul
    4096
    """

    name: str
    repeat: int  # timed repeats (median)
    inner: int  # calls per timed repeat for host latencies
    batch: int  # dispatches recorded into one submission
    saxpy_log2: tuple[int, ...]
    transfer_mib: int
    matmul: int
    reduce_log2: int
    scan_log2: int
    histogram_log2: int
    sort_log2: int
    transpose: int
    blur: int
    image: int  # side of the square images of the image rows
    lib_extra_log2: tuple[int, ...] = ()  # more sizes of the reduce_sum and scan rows


PRESETS: dict[str, Preset] = {
    # CI smoke test on lavapipe: every code path, tiny sizes, no timing assertions.
    "smoke": Preset(
        "smoke",
        repeat=3,
        inner=20,
        batch=32,
        saxpy_log2=(12, 14, 16),
        transfer_mib=4,
        matmul=128,
        reduce_log2=16,
        scan_log2=14,
        histogram_log2=16,
        sort_log2=16,
        transpose=256,
        blur=256,
        image=256,
    ),
    # lavapipe on a few CPU cores: sizes that finish in a couple of minutes.
    "cpu": Preset(
        "cpu",
        repeat=7,
        inner=300,
        batch=1000,
        saxpy_log2=(18, 20, 22),
        transfer_mib=64,
        matmul=512,
        reduce_log2=22,
        scan_log2=20,
        histogram_log2=22,
        sort_log2=20,
        transpose=2048,
        blur=1024,
        image=1024,
    ),
    # A data-centre GPU (the H100 targets are stated at these sizes).
    "gpu": Preset(
        "gpu",
        repeat=10,
        inner=2000,
        batch=1000,
        saxpy_log2=(20, 24, 26),
        transfer_mib=256,
        matmul=4096,
        reduce_log2=26,
        scan_log2=24,
        histogram_log2=26,
        sort_log2=24,
        transpose=8192,
        blur=4096,
        image=2048,
        lib_extra_log2=(16, 28),
    ),
}


@dataclass
class Row:
    """One line of the table (and of the JSON).

    A cell holds a number, or a string saying why there is none (``"not installed"``,
    ``"n/a: ..."``).  ``check`` is ``"passed"``, ``"failed: ..."`` or ``"n/a: ..."``.

    Example
    -------
    >>> r = Row("x", "sync dispatch", "µs", "lower", vknb=10.0, raw=20.0)
    >>> r.ratio
    0.5
    """

    id: str
    metric: str
    unit: str
    better: str  # "lower" or "higher"
    vknb: Cell = None
    raw: Cell = None
    wgpu: Cell = None
    cupy: Cell = None
    target: str = ""
    met: bool | None = None
    met_note: str = ""
    check: str = "n/a"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """vknb / raw, where both are numbers."""
        if _num(self.vknb) and _num(self.raw) and self.raw:
            return float(self.vknb) / float(self.raw)  # type: ignore[arg-type]
        return None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ratio"] = self.ratio
        return d


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


class CheckFailed(AssertionError):
    """A result disagreed with numpy (the row is not timed)."""


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the block (vknb reads its variables when used)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _paths_since(dev: Any, before: dict[str, int]) -> dict[str, int]:
    """Transfers by path (``Device.transfer_stats()``) since ``before``: which path ran."""
    now = dev.transfer_stats()
    return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}


def _close_all(a: np.ndarray, b: np.ndarray, rtol: float, atol: float, what: str) -> None:
    try:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    except AssertionError as e:
        raise CheckFailed(f"{what}: {str(e).strip().splitlines()[-1]}") from None


# --- timing helpers -----------------------------------------------------------------------------


def per_call_us(fn: Callable[[], Any], inner: int, repeat: int) -> float:
    """Median over ``repeat`` loops of the per-call wall time of ``fn`` in microseconds.

    Example
    -------
    >>> per_call_us(lambda: None, 10, 3) < 100
    True
    """
    for _ in range(max(2, inner // 10)):
        fn()
    samples = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter_ns()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter_ns() - t0) / inner / 1e3)
    finally:
        if enabled:
            gc.enable()
    return statistics.median(samples)


def interleaved_us(
    sides: dict[str, Callable[[], Any]], inner: int, repeat: int
) -> dict[str, float]:
    """:func:`per_call_us` for several sides at once, their loops interleaved (A B C A B C ...)
    so that a slow phase of the machine affects every side alike; medians per side.

    Example
    -------
    >>> t = interleaved_us({"a": lambda: None, "b": lambda: None}, 10, 3)
    >>> sorted(t)
    ['a', 'b']
    """
    for fn in sides.values():
        for _ in range(max(2, inner // 10)):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in sides}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for name, fn in sides.items():
                t0 = time.perf_counter_ns()
                for _ in range(inner):
                    fn()
                samples[name].append((time.perf_counter_ns() - t0) / inner / 1e3)
    finally:
        if enabled:
            gc.enable()
    return {name: statistics.median(v) for name, v in samples.items()}


def interleaved(
    sides: dict[str, Callable[[], float]], repeat: int, warmup: int = 1
) -> dict[str, float]:
    """Medians of the values (e.g. GPU ms) the sides return, called in turn A B A B ...

    Example
    -------
    >>> interleaved({"a": lambda: 1.0, "b": lambda: 2.0}, 3)
    {'a': 1.0, 'b': 2.0}
    """
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, fn in sides.items():
            samples[name].append(fn())
    return {name: statistics.median(v) for name, v in samples.items()}


def median_of(fn: Callable[[], float], repeat: int, warmup: int = 1) -> float:
    """Median of ``repeat`` values returned by ``fn()`` after ``warmup`` discarded calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(fn() for _ in range(repeat))


def wall_s(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes (garbage collector paused)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) / 1e9
    finally:
        if enabled:
            gc.enable()


def peer_cell(fn: Callable[[], float]) -> Cell:
    """Run a peer measurement; an error becomes the cell's text instead of stopping the suite."""
    try:
        return fn()
    except Exception as e:
        return f"n/a: {type(e).__name__}: {str(e)[:120]}"


def _gbs(nbytes: float, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9


def _tuning_note(t: Any) -> str:
    """The per-device choice of a library kernel (``vknb.library.tuning``), in words."""
    how = "subgroup arithmetic" if t.subgroups else "shared memory"
    return f"tuned for this device: {how}; {t.reason.split('; ')[0]}"


# --- shaders ------------------------------------------------------------------------------------

TINY_SRC = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer XBuf { float x[]; };
layout(set = 0, binding = 1) buffer YBuf { float y[]; };
layout(push_constant) uniform Params { float a; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < y.length()) {
        y[i] += a * x[i];
    }
}
"""

# Used only when shaders/saxpy.comp is missing.
SAXPY_SRC = """
layout(local_size_x = 256, local_size_x_id = 0) in;
layout(set = 0, binding = 0) readonly buffer XBuf { float x[]; };
layout(set = 0, binding = 1) buffer YBuf { float y[]; };
layout(push_constant) uniform Params { float a; uint n; };
void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) {
        y[i] = a * x[i] + y[i];
    }
}
"""


def salted(src: str, salt: int) -> str:
    """A variant of the tiny kernel whose SPIR-V differs (a branch on an impossible index), so
    that neither the SPIR-V cache nor the driver's pipeline cache can serve it."""
    return src.replace(
        "    if (i < y.length()) {",
        f"    if (i == {salt}u) {{ return; }}\n    if (i < y.length()) {{",
    )


def load_library_kernel(name: str, defines: dict[str, Any] | None = None, **options: Any) -> Any:
    """A kernel from shaders/ through ``vknb.library.load`` (or ``vknb.compile`` of the file);
    ``options``: more arguments of ``vknb.compile`` (``constants``, ``local_size``)."""
    import vknb

    try:
        from vknb import library
    except ImportError:
        library = None
    if library is not None:
        if defines:
            options["defines"] = defines
        return library.load(name, **options)
    path = SHADERS / f"{name}.comp"
    return vknb.compile(
        path.read_text(), name=name, defines=defines, include_dirs=[str(SHADERS)], **options
    )


# --- multi-pass plans run identically by vknb and by the raw baseline ----------------------------


@dataclass
class Step:
    """One dispatch of a plan: kernel key, buffer names by binding, push members, groups."""

    kernel: str
    buffers: tuple[str, ...]
    push: tuple[tuple[str, str, Any], ...]  # (member, struct format char, value)
    groups: tuple[int, int, int]


@dataclass
class Plan:
    """A library algorithm as a list of dispatches over named buffers."""

    kernels: dict[str, tuple[str, dict[str, Any] | None]]  # key -> (shader, defines)
    buffers: dict[str, np.ndarray | tuple[int, Any]]  # initial data, or (count, dtype) for empty
    steps: list[Step]
    output: str
    check: Callable[[np.ndarray], None]
    # key -> more compile options (constants, local_size); the raw side specializes alike
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


class _VknbPlanRunner:
    def __init__(self, plan: Plan) -> None:
        import vknb

        self.plan = plan
        self.kernels = {
            k: load_library_kernel(s, d, **plan.options.get(k, {}))
            for k, (s, d) in plan.kernels.items()
        }
        self.arrays: dict[str, Any] = {}
        for name, b in plan.buffers.items():
            if isinstance(b, np.ndarray):
                self.arrays[name] = vknb.asarray(b)
            else:
                self.arrays[name] = vknb.empty(b[0], b[1])

    def run(self) -> float:
        total = 0.0
        for s in self.plan.steps:
            k = self.kernels[s.kernel]
            rec = k(
                *(self.arrays[b] for b in s.buffers),
                groups=s.groups,
                **{m: v for m, _, v in s.push},
            )
            if rec.gpu_ms is None:
                raise RuntimeError("vknb recorded no GPU time (no timestamps on this queue)")
            total += rec.gpu_ms
        return total

    def output(self) -> np.ndarray:
        return self.arrays[self.plan.output].numpy()

    def close(self) -> None:
        for a in self.arrays.values():
            a.close()


def _spec_of(k: Any) -> dict[int, int]:
    """The specialization a vknb kernel was built with (workgroup size and the constants it was
    given), by constant id, for the raw side."""
    refl = k.reflection
    spec = {
        sid: int(k.local_size[d]) for d, sid in enumerate(refl.local_size_ids) if sid is not None
    }
    for c in refl.spec_constants:
        if c.name and c.name in k.constants:
            spec[c.id] = int(k.constants[c.name])
    return spec


class _RawPlanRunner:
    def __init__(self, plan: Plan, rv: RawVulkan, vknb_kernels: dict[str, Any]) -> None:
        self.plan = plan
        self.rv = rv
        self.pipes: dict[str, RawPipeline] = {}
        for key, k in vknb_kernels.items():
            pc = k.reflection.push_constants
            slots = {(b.set, b.binding) for b in k.reflection.bindings}  # aliases share a slot
            self.pipes[key] = rv.pipeline(
                k.spirv, len(slots), pc.size if pc is not None else 0, spec=_spec_of(k)
            )
        self.bufs: dict[str, RawBuffer] = {}
        self.dtypes: dict[str, tuple[int, np.dtype]] = {}
        for name, b in plan.buffers.items():
            if isinstance(b, np.ndarray):
                self.bufs[name] = rv.buffer(b.nbytes)
                rv.upload(self.bufs[name], b)
                self.dtypes[name] = (b.size, b.dtype)
            else:
                dt = np.dtype(b[1])
                self.bufs[name] = rv.buffer(b[0] * dt.itemsize)
                self.dtypes[name] = (b[0], dt)
        self.sets: dict[tuple[str, tuple[str, ...]], Any] = {}
        self.pushes: list[bytes] = []
        for s in plan.steps:
            key = (s.kernel, s.buffers)
            if key not in self.sets:
                self.sets[key] = self.pipes[s.kernel].descriptor_set(
                    [self.bufs[b] for b in s.buffers]
                )
            fmt = "".join(f for _, f, _ in s.push)
            raw = pack(fmt, *(v for _, _, v in s.push))
            size = self.pipes[s.kernel].push_size
            self.pushes.append(raw + bytes(max(0, size - len(raw))))

    def run(self) -> float:
        total = 0.0
        for s, push in zip(self.plan.steps, self.pushes, strict=True):
            total += self.rv.dispatch_gpu_ms(
                self.pipes[s.kernel], self.sets[(s.kernel, s.buffers)], push, s.groups
            )
        return total

    def output(self) -> np.ndarray:
        n, dt = self.dtypes[self.plan.output]
        return self.rv.download(self.bufs[self.plan.output], np.empty(n, dt))

    def close(self) -> None:
        for b in self.bufs.values():
            b.destroy()
        for p in self.pipes.values():
            p.destroy()


COPY_SRC = """
layout(local_size_x = 256) in;
layout(binding = 0) readonly buffer S { uvec4 s[]; };
layout(binding = 1) writeonly buffer D { uvec4 d[]; };
layout(push_constant) uniform P { uint n; };
void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) d[i] = s[i];
}
"""
_UVEC4 = np.dtype((np.uint32, (4,)))

# Bilinear resize of an rgba8 image held in a storage buffer (one uint per texel), by hand: the
# same arithmetic as a linear sampler with clamp to edge (texel centres at +0.5), in float32.
RESIZE_BUFFER_SRC = """
layout(local_size_x = 16, local_size_y = 16) in;
layout(binding = 0) readonly buffer S { uint src[]; };
layout(binding = 1) writeonly buffer D { uint dst[]; };
layout(push_constant) uniform P {
    uint w_in; uint h_in; uint w_out; uint h_out; float sx; float sy;
};
vec4 texel(int x, int y) {
    x = clamp(x, 0, int(w_in) - 1);
    y = clamp(y, 0, int(h_in) - 1);
    return unpackUnorm4x8(src[uint(y) * w_in + uint(x)]);
}
void main() {
    uvec2 o = gl_GlobalInvocationID.xy;
    if (o.x >= w_out || o.y >= h_out) return;
    vec2 t = (vec2(o) + 0.5) * vec2(sx, sy) - 0.5;
    vec2 f = floor(t);
    ivec2 i = ivec2(f);
    vec2 a = t - f;
    vec4 top = mix(texel(i.x, i.y), texel(i.x + 1, i.y), a.x);
    vec4 bottom = mix(texel(i.x, i.y + 1), texel(i.x + 1, i.y + 1), a.x);
    dst[o.y * w_out + o.x] = packUnorm4x8(mix(top, bottom, a.y));
}
"""


def bilinear_resize_ref(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize as a Vulkan linear sampler does it (texel centres at +0.5, clamp to
    edge), in float64, in the image's units."""
    H, W = img.shape[:2]
    h, w = shape
    a = img.astype(np.float64)
    tx = (np.arange(w) + 0.5) * (W / w) - 0.5
    ty = (np.arange(h) + 0.5) * (H / h) - 0.5
    x0, y0 = np.floor(tx).astype(int), np.floor(ty).astype(int)
    fx, fy = (tx - x0)[None, :, None], (ty - y0)[:, None, None]
    xa, xb = np.clip(x0, 0, W - 1), np.clip(x0 + 1, 0, W - 1)
    ya, yb = np.clip(y0, 0, H - 1), np.clip(y0 + 1, 0, H - 1)
    top = (1 - fx) * a[ya][:, xa] + fx * a[ya][:, xb]
    bottom = (1 - fx) * a[yb][:, xa] + fx * a[yb][:, xb]
    return (1 - fy) * top + fy * bottom


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


# --- the suite ----------------------------------------------------------------------------------


class Suite:
    """Runs the rows of one preset; ``run()`` returns them.

    Parameters
    ----------
    preset : Preset
    repeat : int, optional
        Overrides the preset's number of timed repeats.
    only : sequence of str, optional
        Groups to run: ``dispatch``, ``batch``, ``saxpy``, ``transfer``, ``compile``,
        ``library``, ``images`` (default: all).

    Example
    -------
    >>> s = Suite(PRESETS["smoke"], only=["dispatch"])              # doctest: +SKIP
    >>> [r.id for r in s.run()]                                     # doctest: +SKIP
    ['sync_dispatch', 'sync_resubmit']
    """

    GROUPS = ("dispatch", "batch", "saxpy", "transfer", "compile", "library", "images")

    def __init__(
        self,
        preset: Preset,
        repeat: int | None = None,
        only: Sequence[str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        import vknb

        self.vknb = vknb
        self.p = preset
        self.repeat = int(repeat or preset.repeat)
        self.only = list(only or self.GROUPS)
        self.log = log or (lambda msg: None)
        self.rng = np.random.default_rng(20241105)
        self.dev = vknb.device()
        self.info = self.dev.info
        self.is_h100 = "H100" in self.info.name
        self.is_cpu = self.info.type == "cpu"
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.wgpu_ok, self.wgpu_why = peers.wgpu_status()
        self.cupy_ok, self.cupy_why = peers.cupy_status()
        feats = self.info.features
        self.rv = RawVulkan(
            device_name=self.info.name,
            int64_atomics=bool(feats.get("int64") and feats.get("atomic_int64")),
        )
        self._salt = (time.time_ns() ^ os.getpid()) % (1 << 30)

    # -- plumbing -------------------------------------------------------------------------

    def run(self) -> list[Row]:
        """Run the selected groups; a group that raises leaves an error row and goes on."""
        benches = {
            "dispatch": self.bench_dispatch,
            "batch": self.bench_batch,
            "saxpy": self.bench_saxpy,
            "transfer": self.bench_transfers,
            "compile": self.bench_compile,
            "library": self.bench_library,
            "images": self.bench_images,
        }
        try:
            for g in self.only:
                self.log(f"[{g}]")
                t0 = time.perf_counter()
                try:
                    benches[g]()
                except Exception as e:
                    msg = f"{type(e).__name__}: {e}"
                    self.failures.append(f"{g}: {msg}")
                    self.rows.append(
                        Row(
                            f"{g}_error",
                            f"{g}: benchmark raised",
                            "",
                            "lower",
                            vknb=f"error: {msg[:200]}",
                            raw="n/a: see error",
                            check=f"failed: {msg[:300]}",
                            notes=traceback.format_exc(limit=4),
                        )
                    )
                self.log(f"  {g} done in {time.perf_counter() - t0:.1f} s")
        finally:
            self.rv.close()
        return self.rows

    def add(self, row: Row) -> Row:
        if row.check.startswith("failed"):
            self.failures.append(f"{row.id}: {row.check}")
        self.rows.append(row)
        self.log(f"  {row.id}: vknb={_short(row.vknb)} raw={_short(row.raw)} check={row.check}")
        return row

    def checked(self, what: str, fn: Callable[[], None]) -> str:
        """Run a correctness check; return 'passed' or raise CheckFailed naming ``what``."""
        try:
            fn()
        except CheckFailed as e:
            raise CheckFailed(f"{what}: {e}") from None
        return "passed"

    def judge_h100(self, row: Row, ok: bool | None, sized: bool = True) -> None:
        """Apply an H100 target: only on an H100 and (for sized rows) at the gpu preset."""
        if not self.is_h100:
            row.met, row.met_note = None, "H100 target"
        elif not sized:
            row.met, row.met_note = None, f"H100 target at --size gpu (ran {self.p.name})"
        elif ok is None:
            row.met, row.met_note = None, "not measured"
        else:
            row.met = bool(ok)

    def _judge_vs_cupy(self, row: Row, share: float, sized: bool) -> None:
        """An H100 target of at least ``share`` of CuPy's rate in the same run."""
        ok = None
        if _num(row.cupy) and _num(row.vknb):
            ratio = float(row.vknb) / float(row.cupy)  # type: ignore[arg-type]
            row.extra["vknb_over_cupy"] = ratio
            ok = ratio >= share
        self.judge_h100(row, ok, sized)

    def _salted(self) -> str:
        self._salt += 1
        return salted(TINY_SRC, (1 << 31) + self._salt)

    # -- sync dispatch --------------------------------------------------------------------

    def _tiny_setup(self) -> None:
        vknb = self.vknb
        n = 256
        self.n_tiny = n
        self.x_tiny = self.rng.integers(0, 8, n).astype(np.float32)
        self.y_tiny = self.rng.integers(0, 8, n).astype(np.float32)
        self.k_tiny = vknb.compile(TINY_SRC, name="tiny")
        self.X = vknb.asarray(self.x_tiny)
        self.Y = vknb.asarray(self.y_tiny)
        rv = self.rv
        self.rx, self.ry = rv.buffer(n * 4), rv.buffer(n * 4)
        rv.upload(self.rx, self.x_tiny)
        rv.upload(self.ry, self.y_tiny)
        self.rp = rv.pipeline(self.k_tiny.spirv, 2, 4)
        self.rds = self.rp.descriptor_set([self.rx, self.ry])
        self.tiny_groups = (n // 64, 1, 1)

    def bench_dispatch(self) -> None:
        """Sync dispatch of the tiny kernel: vknb ``k(X, Y, a=, grid=)``, raw record+submit+wait."""
        self._tiny_setup()
        k, X, Y, n = self.k_tiny, self.X, self.Y, self.n_tiny
        x, y0 = self.x_tiny, self.y_tiny
        rv, rp, rds, g = self.rv, self.rp, self.rds, self.tiny_groups
        p = self.p

        def check_vknb() -> None:
            Y.update(y0)
            k(X, Y, a=2.0, grid=n)
            _check(np.array_equal(Y.numpy(), y0 + 2 * x), "vknb tiny kernel result")

        def check_raw() -> None:
            rv.upload(self.ry, y0)
            rv.sync_dispatch(rp, rds, pack("f", 2.0), g)
            out = rv.download(self.ry, np.empty(n, np.float32))
            _check(np.array_equal(out, y0 + 2 * x), "raw tiny kernel result")

        check = self.checked("sync dispatch", check_vknb)
        self.checked("sync dispatch (raw)", check_raw)
        sides: dict[str, Callable[[], Any]] = {
            "vknb": lambda: k(X, Y, a=1.0, grid=n),
            "raw": lambda: rv.sync_dispatch(rp, rds, pack("f", 1.0), g),
        }
        w = None
        w_us: Cell = self.wgpu_why
        if self.wgpu_ok:

            def wgpu_setup() -> Any:
                wt = peers.WgpuTiny(x, y0)
                wt.call(2.0)
                _check(np.array_equal(wt.read_y(), y0 + 2 * x), "wgpu tiny kernel result")
                return wt

            try:
                w = wgpu_setup()
                sides["wgpu"] = lambda: w.call(1.0)
            except Exception as e:
                w_us = f"n/a: {type(e).__name__}: {str(e)[:120]}"
        try:
            t = interleaved_us(sides, p.inner, self.repeat)
        finally:
            if w is not None:
                w.close()
        v_us, r_us = t["vknb"], t["raw"]
        if "wgpu" in t:
            w_us = t["wgpu"]
        row = Row(
            "sync_dispatch",
            "sync dispatch, tiny kernel (256 floats, device Arrays)",
            "µs/call",
            "lower",
            vknb=v_us,
            raw=r_us,
            wgpu=w_us,
            cupy="n/a: not measured",
            target="≤ 25 µs (H100); ≤ 0.7× raw (lavapipe)",
            check=check,
            notes="vknb: k(X, Y, a=1.0, grid=256). raw: per call record bind + push "
            "constants + dispatch, submit with a fence, wait.",
        )
        if self.is_cpu:
            row.met = row.ratio is not None and row.ratio <= 0.7
            row.met_note = "lavapipe: ≤ 0.7× raw"
        else:
            self.judge_h100(row, v_us <= 25.0)
        self.add(row)

        if hasattr(k, "bind"):  # a call with its arguments fixed (Kernel.bind)
            step = k.bind(X, Y, a=1.0, grid=n)

            def check_bound() -> None:
                Y.update(y0)
                k.bind(X, Y, a=2.0, grid=n)()
                _check(np.array_equal(Y.numpy(), y0 + 2 * x), "vknb bound call result")

            checkb = self.checked("sync bound call", check_bound)
            t = interleaved_us(
                {"vknb": step, "raw": lambda: rv.sync_dispatch(rp, rds, pack("f", 1.0), g)},
                p.inner,
                self.repeat,
            )
            row = Row(
                "sync_bound",
                "sync dispatch through a bound call (`k.bind(...)`, then `step()`)",
                "µs/call",
                "lower",
                vknb=t["vknb"],
                raw=t["raw"],
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                target="≤ 25 µs (H100); ≤ 0.7× raw (lavapipe)",
                check=checkb,
                notes="vknb: step = k.bind(X, Y, a=1.0, grid=256); step(). raw: as above.",
            )
            if self.is_cpu:
                row.met = row.ratio is not None and row.ratio <= 0.7
                row.met_note = "lavapipe: ≤ 0.7× raw"
            else:
                self.judge_h100(row, t["vknb"] <= 25.0)
            self.add(row)

        # The floor: a pre-recorded submission resubmitted (vknb: a 1-dispatch batch replayed).
        has_batch = _has_batch(self.vknb)
        cmd = rv.prerecord(rp, rds, pack("f", 1.0), g)
        if has_batch:
            Y.update(y0)
            with self.vknb.batch() as b1:
                k(X, Y, a=1.0, grid=n)

            def check_replay() -> None:
                before = Y.numpy()
                b1.replay()
                _check(np.array_equal(Y.numpy(), before + x), "vknb 1-dispatch replay result")

            check = self.checked("resubmit", check_replay)
            t = interleaved_us(
                {"vknb": b1.replay, "raw": lambda: rv.resubmit(cmd)}, p.inner, self.repeat
            )
            v2: Cell = t["vknb"]
            r2 = t["raw"]
            b1.close()
        else:
            check, v2 = "n/a: vknb.batch missing", "n/a (vknb.batch missing)"
            r2 = per_call_us(lambda: rv.resubmit(cmd), p.inner, self.repeat)
        self.add(
            Row(
                "sync_resubmit",
                "sync resubmit of a pre-recorded dispatch",
                "µs/call",
                "lower",
                vknb=v2,
                raw=r2,
                wgpu="n/a: WebGPU command buffers are single-use",
                cupy="n/a: not measured",
                check=check,
                notes="vknb: b.replay() of a 1-dispatch batch. raw: vkQueueSubmit of the "
                "recorded command buffer + wait, the floor of a sync call. vknb's side goes "
                "through the batch machinery (a Submission, write-back, the timestamps read after "
                "the wait), so it can cost more than a repeated Kernel call, which reads them "
                "while the next call runs.",
            )
        )

    # -- batches --------------------------------------------------------------------------

    def bench_batch(self) -> None:
        """N dispatches recorded into one submission; replay; replay with new push constants."""
        if not hasattr(self, "k_tiny"):
            self._tiny_setup()
        vknb = self.vknb
        k, X, Y, n = self.k_tiny, self.X, self.Y, self.n_tiny
        x, y0 = self.x_tiny, self.y_tiny
        rv, rp, rds, g = self.rv, self.rp, self.rds, self.tiny_groups
        N = self.p.batch
        R = self.repeat
        ids = ("batch_record", "batch_total", "batch_replay", "batch_replay_update", "batch_gpu")
        if not _has_batch(vknb):
            for i in ids:
                self.add(
                    Row(
                        i,
                        f"{i} (vknb.batch missing)",
                        "µs/dispatch",
                        "lower",
                        vknb="n/a (vknb.batch missing)",
                        raw="n/a (vknb.batch missing)",
                        check="n/a: vknb.batch missing",
                    )
                )
            return

        def vknb_batch() -> tuple[Any, float, float]:
            t0 = time.perf_counter_ns()
            with vknb.batch() as b:
                for _ in range(N):
                    k(X, Y, a=1.0, grid=n)
                t1 = time.perf_counter_ns()
            t2 = time.perf_counter_ns()
            return b, (t1 - t0) / N / 1e3, (t2 - t0) / N / 1e3

        bc = rv.command_buffer()

        def raw_batch() -> tuple[float, float]:
            t0 = time.perf_counter_ns()
            pushes = [pack("f", 1.0) for _ in range(N)]
            rv.record_batch(bc, rp, rds, pushes, g)
            t1 = time.perf_counter_ns()
            rv.submit_and_wait(bc)
            t2 = time.perf_counter_ns()
            return (t1 - t0) / N / 1e3, (t2 - t0) / N / 1e3

        # correctness first (integer-valued floats: exact)
        def check_vknb() -> Any:
            Y.update(y0)
            b, _, _ = vknb_batch()
            _check(np.array_equal(Y.numpy(), y0 + N * x), f"vknb batch of {N}")
            return b

        def check_raw() -> None:
            rv.upload(self.ry, y0)
            raw_batch()
            out = rv.download(self.ry, np.empty(n, np.float32))
            _check(np.array_equal(out, y0 + N * x), f"raw batch of {N}")

        holder: list[Any] = []
        check = self.checked("batch", lambda: holder.append(check_vknb()))
        holder[0].close()
        self.checked("batch (raw)", check_raw)

        enabled = gc.isenabled()
        gc.disable()
        try:
            vk_runs = []
            raw_runs = []
            for _ in range(R):  # interleaved, as in interleaved_us
                b, rec_us, tot_us = vknb_batch()
                vk_runs.append((rec_us, tot_us, b.gpu_ms))
                b.close()
                raw_runs.append(raw_batch())
        finally:
            if enabled:
                gc.enable()
        v_rec = statistics.median(r[0] for r in vk_runs)
        v_tot = statistics.median(r[1] for r in vk_runs)
        gpu = [r[2] for r in vk_runs if r[2] is not None]
        v_gpu: Cell = statistics.median(gpu) * 1e3 / N if gpu else "n/a: no timestamps"
        r_rec = statistics.median(r[0] for r in raw_runs)
        r_tot = statistics.median(r[1] for r in raw_runs)

        w_rec: Cell = self.wgpu_why
        w_tot: Cell = self.wgpu_why
        if self.wgpu_ok:

            def wgpu_batch() -> tuple[float, float]:
                w = peers.WgpuTiny(x, y0)
                try:
                    w.set_a(1.0)

                    def once() -> tuple[float, float]:
                        t0 = time.perf_counter_ns()
                        cb = w.record(N)
                        t1 = time.perf_counter_ns()
                        w.submit(cb)
                        t2 = time.perf_counter_ns()
                        return (t1 - t0) / N / 1e3, (t2 - t0) / N / 1e3

                    once()
                    _check(np.array_equal(w.read_y(), y0 + N * x), "wgpu batch")
                    runs = [once() for _ in range(R)]
                    return (
                        statistics.median(r[0] for r in runs),
                        statistics.median(r[1] for r in runs),
                    )
                finally:
                    w.close()

            try:
                w_rec, w_tot = wgpu_batch()
            except Exception as e:
                w_rec = w_tot = f"n/a: {type(e).__name__}: {str(e)[:120]}"

        self.add(
            Row(
                "batch_record",
                f"batch of {N}: Python recording only",
                "µs/dispatch",
                "lower",
                vknb=v_rec,
                raw=r_rec,
                wgpu=w_rec,
                cupy="n/a: not measured",
                check=check,
                notes="vknb: `with vknb.batch(): k(X, Y, a=1.0, grid=256)` up to the end "
                "of the block body. raw: vkCmdBindPipeline + BindDescriptorSets + "
                "PushConstants + Dispatch + PipelineBarrier per dispatch.",
            )
        )
        row = self.add(
            Row(
                "batch_total",
                f"batch of {N}: recording + submit + wait",
                "µs/dispatch",
                "lower",
                vknb=v_tot,
                raw=r_tot,
                wgpu=w_tot,
                cupy="n/a: not measured",
                target="≤ 3 µs (H100; wgpu-py 4.5)",
                check=check,
                notes="The whole `with vknb.batch()` block, divided by N.",
            )
        )
        self.judge_h100(row, v_tot <= 3.0)
        if hasattr(k, "bind"):
            self._bench_batch_bound(r_tot)

        # replay, as is
        Y.update(y0)
        b = vknb_batch()[0]

        def check_replay() -> None:
            before = Y.numpy()
            b.replay()
            _check(np.array_equal(Y.numpy(), before + N * x), "vknb replay")

        check_r = self.checked("replay", check_replay)

        def check_raw_replay() -> None:
            rv.upload(self.ry, y0)
            raw_batch()
            rv.submit_and_wait(bc)
            out = rv.download(self.ry, np.empty(n, np.float32))
            _check(np.array_equal(out, y0 + 2 * N * x), "raw replay")

        self.checked("replay (raw)", check_raw_replay)
        t = interleaved_us({"vknb": b.replay, "raw": lambda: rv.submit_and_wait(bc)}, 1, R)
        v_rep, r_rep = t["vknb"] / N, t["raw"] / N
        row = self.add(
            Row(
                "batch_replay",
                f"replay of the recorded batch of {N} (submit + wait)",
                "µs/dispatch",
                "lower",
                vknb=v_rep,
                raw=r_rep,
                wgpu="n/a: WebGPU command buffers are single-use",
                cupy="n/a: not measured",
                target="≤ 1.5 µs (H100; raw 2.1, CUDA graph 1.0)",
                check=check_r,
                notes="vknb: b.replay(). raw: vkQueueSubmit of the same command buffer + wait.",
            )
        )
        self.judge_h100(row, v_rep <= 1.5)

        # replay with one dispatch's push constants changed
        mid = N // 2

        def check_update() -> None:
            before = Y.numpy()
            b.replay({mid: {"a": 2.0}})
            _check(
                np.array_equal(Y.numpy(), before + (N + 1) * x),
                "vknb replay with dispatch N/2 at a=2.0",
            )

        check_u = self.checked("replay with update", check_update)
        flip = [1.0]

        def upd() -> None:
            flip[0] = 3.0 - flip[0]
            b.replay({mid: {"a": flip[0]}})

        def raw_upd() -> None:
            pushes = [pack("f", 1.0) for _ in range(N)]
            pushes[mid] = pack("f", 2.0)
            rv.record_batch(bc, rp, rds, pushes, g)
            rv.submit_and_wait(bc)

        t = interleaved_us({"vknb": upd, "raw": raw_upd}, 1, R)
        v_upd, r_upd = t["vknb"] / N, t["raw"] / N
        self.add(
            Row(
                "batch_replay_update",
                f"replay of the batch of {N} with new push constants for one dispatch",
                "µs/dispatch",
                "lower",
                vknb=v_upd,
                raw=r_upd,
                wgpu="n/a: WebGPU command buffers are single-use",
                cupy="n/a: not measured",
                check=check_u,
                notes="vknb: b.replay({N//2: {'a': 2.0}}). raw: re-record the command "
                "buffer with the new constant, submit, wait.",
            )
        )

        # GPU time of the batch per dispatch
        def raw_gpu() -> float:
            pushes = [pack("f", 1.0) for _ in range(N)]
            return rv.gpu_ms(lambda cmd: rv.record_dispatches(cmd, rp, rds, pushes, g))

        r_gpu = median_of(raw_gpu, R) * 1e3 / N
        self.add(
            Row(
                "batch_gpu",
                f"batch of {N}: GPU time (timestamps)",
                "µs/dispatch",
                "lower",
                vknb=v_gpu,
                raw=r_gpu,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check=check,
                notes="vknb: b.gpu_ms / N. raw: timestamps around the same N dispatches "
                "and barriers.",
            )
        )
        b.close()
        self._bench_batch_independent()

    def _bench_batch_bound(self, r_tot: float) -> None:
        """The dependent batch recorded through a bound call: one call per dispatch, or all of
        them with ``Batch.extend``."""
        vknb = self.vknb
        k, X, Y, n, x, y0 = self.k_tiny, self.X, self.Y, self.n_tiny, self.x_tiny, self.y_tiny
        N, R = self.p.batch, self.repeat
        step = k.bind(X, Y, a=1.0, grid=n)

        def loop() -> Any:
            with vknb.batch() as b:
                for _ in range(N):
                    step()
            return b

        def extend() -> Any:
            with vknb.batch() as b:
                b.extend([step] * N)
            return b

        for rid, what, fn, how in (
            ("batch_bound_total", "one bound call per dispatch", loop, "for _ in range(N): step()"),
            ("batch_extend_total", "`Batch.extend`", extend, "b.extend([step] * N)"),
        ):

            def check_it(fn: Callable[[], Any] = fn, what: str = what) -> None:
                Y.update(y0)
                b = fn()
                _check(np.array_equal(Y.numpy(), y0 + N * x), f"vknb batch of {N}, {what}")
                _check(b.barriers == N - 1, f"{b.barriers} barriers for a chain of {N}")
                b.close()

            check = self.checked(rid, check_it)
            v = median_of(lambda fn=fn: _timed_close(fn) / N * 1e6, R)
            row = self.add(
                Row(
                    rid,
                    f"batch of {N}, {what}: recording + submit + wait",
                    "µs/dispatch",
                    "lower",
                    vknb=v,
                    raw=r_tot,
                    wgpu="n/a: not measured",
                    cupy="n/a: not measured",
                    target="≤ 3 µs (H100; wgpu-py 4.5)",
                    check=check,
                    notes=f"vknb: step = k.bind(X, Y, a=1.0, grid=256); in the block, `{how}`. "
                    "raw: the batch_total baseline of this run.",
                )
            )
            self.judge_h100(row, v <= 3.0)

    def _bench_batch_independent(self) -> None:
        """N dispatches that write 64 different Arrays in turn: a barrier every 64 only."""
        vknb, rv = self.vknb, self.rv
        k, X, n, x = self.k_tiny, self.X, self.n_tiny, self.x_tiny
        rp, g = self.rp, self.tiny_groups
        N, R, M = self.p.batch, self.repeat, 64
        y0s = [self.rng.integers(0, 8, n).astype(np.float32) for _ in range(M)]
        outs = [vknb.asarray(y) for y in y0s]
        routs = [rv.buffer(n * 4) for _ in range(M)]
        for rb, y in zip(routs, y0s, strict=True):
            rv.upload(rb, y)
        rsets = [rp.descriptor_set([self.rx, rb]) for rb in routs]
        push = pack("f", 1.0)
        bc = rv.command_buffer()
        vk = rv.vk

        def vknb_batch() -> tuple[Any, float]:
            t0 = time.perf_counter_ns()
            with vknb.batch() as b:
                for i in range(N):
                    k(X, outs[i % M], a=1.0, grid=n)
            return b, (time.perf_counter_ns() - t0) / N / 1e3

        def raw_record() -> None:
            vk.vkBeginCommandBuffer(bc, rv.begin_info)
            for i in range(N):
                rv.record_dispatch(bc, rp, rsets[i % M], push, g)
                if i % M == M - 1:
                    rv.record_barrier(bc)
            vk.vkEndCommandBuffer(bc)

        def raw_batch() -> float:
            t0 = time.perf_counter_ns()
            raw_record()
            rv.submit_and_wait(bc)
            return (time.perf_counter_ns() - t0) / N / 1e3

        writes = [len(range(j, N, M)) for j in range(M)]

        def check_vknb() -> Any:
            b, _ = vknb_batch()
            for j in (0, M - 1):
                _check(
                    np.array_equal(outs[j].numpy(), y0s[j] + writes[j] * x),
                    f"vknb batch of {N} over {M} outputs",
                )
            _check(b.barriers == (N - 1) // M, f"{b.barriers} barriers for {N} over {M}")
            return b

        def check_raw() -> None:
            raw_batch()
            for j in (0, M - 1):
                out = rv.download(routs[j], np.empty(n, np.float32))
                _check(np.array_equal(out, y0s[j] + writes[j] * x), f"raw batch over {M}")

        holder: list[Any] = []
        check = self.checked("independent batch", lambda: holder.append(check_vknb()))
        if holder:
            holder[0].close()
        self.checked("independent batch (raw)", check_raw)
        enabled = gc.isenabled()
        gc.disable()
        try:
            v_tot, r_tot = [], []
            for _ in range(R):
                b, us = vknb_batch()
                v_tot.append(us)
                b.close()
                r_tot.append(raw_batch())
        finally:
            if enabled:
                gc.enable()
        row = self.add(
            Row(
                "batch_indep_total",
                f"batch of {N} over {M} outputs (a barrier every {M}): recording + submit + wait",
                "µs/dispatch",
                "lower",
                vknb=statistics.median(v_tot),
                raw=statistics.median(r_tot),
                wgpu="not installed" if not self.wgpu_ok else "n/a: not measured",
                cupy="n/a: not measured",
                target="≤ 3 µs (H100; wgpu-py 4.5)",
                check=check,
                notes=f"vknb: `k(X, outs[i % {M}], a=1.0, grid=256)` in a batch; hazard "
                f"tracking puts a barrier before every {M}th dispatch. raw: the same dispatches "
                "and barriers recorded through the binding.",
            )
        )
        self.judge_h100(row, row.vknb <= 3.0 if isinstance(row.vknb, float) else None)
        if hasattr(k, "bind"):
            steps = [k.bind(X, o, a=1.0, grid=n) for o in outs]

            def extend() -> Any:
                with vknb.batch() as b:
                    b.extend(steps[i % M] for i in range(N))
                return b

            def check_extend() -> None:
                before = [outs[j].numpy() for j in (0, M - 1)]
                b = extend()
                for j, y in zip((0, M - 1), before, strict=True):
                    _check(
                        np.array_equal(outs[j].numpy(), y + writes[j] * x),
                        f"vknb batch over {M} outputs with Batch.extend",
                    )
                _check(b.barriers == (N - 1) // M, f"{b.barriers} barriers for {N} over {M}")
                b.close()

            check_e = self.checked("independent batch, extend", check_extend)
            v = median_of(lambda: _timed_close(extend) / N * 1e6, R)
            row = self.add(
                Row(
                    "batch_indep_extend_total",
                    f"batch of {N} over {M} outputs, `Batch.extend`: recording + submit + wait",
                    "µs/dispatch",
                    "lower",
                    vknb=v,
                    raw=statistics.median(r_tot),
                    wgpu="n/a: not measured",
                    cupy="n/a: not measured",
                    target="≤ 3 µs (H100; wgpu-py 4.5)",
                    check=check_e,
                    notes=f"vknb: steps = [k.bind(X, o, a=1.0, grid=256) for o in outs]; in the "
                    f"block, `b.extend(steps[i % {M}] for i in range(N))`. raw: the "
                    "batch_indep_total baseline of this run.",
                )
            )
            self.judge_h100(row, v <= 3.0)
        b, _ = vknb_batch()
        raw_record()

        def check_replay() -> None:
            before = outs[0].numpy()
            b.replay()
            _check(np.array_equal(outs[0].numpy(), before + writes[0] * x), "vknb replay")

        check_r = self.checked("independent replay", check_replay)
        t = interleaved_us({"vknb": b.replay, "raw": lambda: rv.submit_and_wait(bc)}, 1, R)
        row = self.add(
            Row(
                "batch_indep_replay",
                f"replay of the batch of {N} over {M} outputs (submit + wait)",
                "µs/dispatch",
                "lower",
                vknb=t["vknb"] / N,
                raw=t["raw"] / N,
                wgpu="n/a: WebGPU command buffers are single-use",
                cupy="n/a: not measured",
                target="≤ 1.5 µs (H100; raw 2.1, CUDA graph 1.0)",
                check=check_r,
                notes="vknb: b.replay(). raw: vkQueueSubmit of the same command buffer + wait.",
            )
        )
        self.judge_h100(row, t["vknb"] / N <= 1.5)
        b.close()
        for o in outs:
            o.close()

    # -- SAXPY and the copy ceiling -------------------------------------------------------

    def bench_saxpy(self) -> None:
        """SAXPY GPU time and GB/s at three sizes, next to vkCmdCopyBuffer of the same bytes."""
        vknb = self.vknb
        rv = self.rv
        if (SHADERS / "saxpy.comp").exists():
            ks = load_library_kernel("saxpy")
            src_note = "shaders/saxpy.comp"
        else:
            ks = vknb.compile(SAXPY_SRC, name="saxpy")
            src_note = "embedded saxpy (shaders/saxpy.comp missing)"
        pc = ks.reflection.push_constants
        rp = rv.pipeline(ks.spirv, 2, pc.size if pc is not None else 8)
        largest = max(self.p.saxpy_log2)
        try:
            for log2 in self.p.saxpy_log2:
                self._saxpy_size(ks, rp, log2, src_note, log2 == largest)
        finally:
            rp.destroy()

    def _copy_kernel(self) -> Any:
        k = getattr(self, "_kcopy", None)
        if k is None:
            k = self._kcopy = self.vknb.compile(COPY_SRC, name="copy_uvec4")
        return k

    def _saxpy_size(
        self, ks: Any, rp: RawPipeline, log2: int, src_note: str, largest: bool
    ) -> None:
        vknb, rv, R = self.vknb, self.rv, self.repeat
        a = 2.0
        N = 1 << log2
        groups = min(_ceil(N, ks.local_size[0]), int(self.info.limits["max_workgroup_count"][0]))
        x = self.rng.random(N, dtype=np.float32)
        y0 = self.rng.random(N, dtype=np.float32)
        ref = np.float32(a) * x + y0
        push = pack("fI", a, N)
        X, Y = vknb.asarray(x), vknb.asarray(y0)
        rx, ry = rv.buffer(4 * N), rv.buffer(4 * N)
        cbytes = 6 * N  # copy 6N bytes: 6N read + 6N written = the 12N bytes SAXPY moves
        src, dst = rv.buffer(cbytes), rv.buffer(cbytes)
        try:

            def check_vknb() -> None:
                ks(X, Y, a=a, n=N, groups=groups)
                _close_all(Y.numpy(), ref, 1e-5, 1e-6, f"vknb saxpy 2^{log2}")

            rv.upload(rx, x)
            rv.upload(ry, y0)
            ds = rp.descriptor_set([rx, ry])

            def check_raw() -> None:
                rv.dispatch_gpu_ms(rp, ds, push, (groups, 1, 1))
                out = rv.download(ry, np.empty(N, np.float32))
                _close_all(out, ref, 1e-5, 1e-6, f"raw saxpy 2^{log2}")

            check = self.checked(f"saxpy 2^{log2}", check_vknb)
            self.checked(f"saxpy 2^{log2} (raw)", check_raw)

            def vk_ms() -> float:
                rec = ks(X, Y, a=a, n=N, groups=groups)
                if rec.gpu_ms is None:
                    raise RuntimeError("no GPU time (no timestamps)")
                return float(rec.gpu_ms)

            # A second ceiling: a compute-shader copy of the same bytes (uvec4 loads/stores).
            # vkCmdCopyBuffer may run on a copy engine that is slower than the shader cores.
            kc = self._copy_kernel()
            CS = vknb.empty(cbytes // 16, _UVEC4)
            CD = vknb.empty(cbytes // 16, _UVEC4)
            cgroups = min(_ceil(cbytes // 16, 256), int(self.info.limits["max_workgroup_count"][0]))

            def kcopy_ms() -> float:
                rec = kc(CS, CD, n=cbytes // 16, groups=cgroups)
                return float(rec.gpu_ms)

            t = interleaved(
                {
                    "vknb": vk_ms,
                    "raw": lambda: rv.dispatch_gpu_ms(rp, ds, push, (groups, 1, 1)),
                    "copy": lambda: rv.copy_gpu_ms(src, dst, cbytes),
                    "kcopy": kcopy_ms,
                },
                R,
            )
            v_ms, r_ms, c_ms = t["vknb"], t["raw"], t["copy"]
            kc_ms = t["kcopy"]
            CS.close()
            CD.close()
            c_ms_cupy: Cell = self.cupy_why
            if self.cupy_ok:

                def cupy_saxpy() -> float:
                    cs = peers.CupySaxpy(x, y0)
                    cs.run(a)
                    _close_all(cs.y_host(), ref, 1e-5, 1e-6, "cupy saxpy")
                    return median_of(lambda: cs.gpu_ms(a), R)

                c_ms_cupy = peer_cell(cupy_saxpy)
        finally:
            X.close()
            Y.close()
            for buf in (rx, ry, src, dst):
                buf.destroy()
        bytes_ = 12 * N
        copy_gbs = _gbs(2 * cbytes, c_ms)
        v_gbs, r_gbs = _gbs(bytes_, v_ms), _gbs(bytes_, r_ms)
        cu_gbs: Cell = _gbs(bytes_, float(c_ms_cupy)) if _num(c_ms_cupy) else c_ms_cupy
        size = f"2^{log2}"
        self.add(
            Row(
                f"saxpy_{log2}",
                f"SAXPY {size} floats ({src_note})",
                "GB/s",
                "higher",
                vknb=v_gbs,
                raw=r_gbs,
                wgpu="n/a: not measured",
                cupy=cu_gbs,
                check=check,
                notes="12 bytes per element (x and y read, y written) / GPU time "
                "from timestamps; same SPIR-V on both sides.",
                extra={"vknb_gpu_ms": v_ms, "raw_gpu_ms": r_ms, "groups": groups},
            )
        )
        self.add(
            Row(
                f"copy_{log2}",
                f"vkCmdCopyBuffer of 6×{size} bytes (ceiling)",
                "GB/s",
                "higher",
                vknb="n/a: measured by the raw side",
                raw=copy_gbs,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check="n/a: no computation",
                notes="device-local -> device-local; counted as read + write "
                "(2 × 6N bytes), the same bytes SAXPY moves.",
                extra={"gpu_ms": c_ms, "bytes": cbytes},
            )
        )
        kcopy_gbs = _gbs(2 * cbytes, kc_ms)
        self.add(
            Row(
                f"kcopy_{log2}",
                f"compute-shader copy of 6×{size} bytes (ceiling)",
                "GB/s",
                "higher",
                vknb=kcopy_gbs,
                raw="n/a: measured by the vknb side",
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check="n/a: no computation",
                notes="uvec4 loads and stores, grid-stride loop; counted as read + write.",
                extra={"gpu_ms": kc_ms, "bytes": cbytes},
            )
        )
        self.add(
            Row(
                f"saxpy_kshare_{log2}",
                f"SAXPY {size}: share of the compute-copy bandwidth",
                "%",
                "higher",
                vknb=100 * v_gbs / kcopy_gbs,
                raw=100 * r_gbs / kcopy_gbs,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check=check,
                notes="SAXPY GB/s / compute-copy GB/s, both measured in this run.",
            )
        )
        cu_share: Cell = (100 * float(cu_gbs) / copy_gbs) if _num(cu_gbs) else cu_gbs
        row = self.add(
            Row(
                f"saxpy_share_{log2}",
                f"SAXPY {size}: share of copy bandwidth",
                "%",
                "higher",
                vknb=100 * v_gbs / copy_gbs,
                raw=100 * r_gbs / copy_gbs,
                wgpu="n/a: not measured",
                cupy=cu_share,
                target="≥ 90% at 2^26 (H100)" if largest else "",
                check=check,
                notes="SAXPY GB/s / vkCmdCopyBuffer GB/s, both measured in this run.",
            )
        )
        if largest:
            self.judge_h100(row, 100 * v_gbs / copy_gbs >= 90.0, sized=log2 == 26)

    # -- transfers ------------------------------------------------------------------------

    def bench_transfers(self) -> None:
        """numpy -> device and device -> numpy, end to end."""
        vknb = self.vknb
        rv = self.rv
        mib = self.p.transfer_mib
        nbytes = mib << 20
        a = self.rng.random(nbytes // 4, dtype=np.float32)
        out = np.empty_like(a)
        best = 3
        sized = mib >= 256
        dev = vknb.device()
        paths0 = dev.transfer_stats()

        # vknb.asarray (new Array each time)
        first = vknb.asarray(a)
        check = self.checked(
            "numpy->device",
            lambda: _check(np.array_equal(first.numpy(), a), "vknb.asarray round trip"),
        )
        first.close()
        times = []
        for _ in range(best):
            t0 = time.perf_counter_ns()
            fresh = vknb.asarray(a)
            times.append((time.perf_counter_ns() - t0) / 1e9)
            fresh.close()
        v_h2d = nbytes / min(times) / 1e9
        # Array.update (existing Array)
        arr = vknb.empty(a.shape, np.float32)
        arr.update(a)
        v_upd = nbytes / min(wall_s(lambda: arr.update(a)) for _ in range(best)) / 1e9
        # Array.numpy(out=)
        arr.numpy(out=out)
        check_d = self.checked(
            "device->numpy", lambda: _check(np.array_equal(out, a), "Array.numpy(out=) round trip")
        )
        v_d2h = nbytes / min(wall_s(lambda: arr.numpy(out=out)) for _ in range(best)) / 1e9
        paths = _paths_since(dev, paths0)
        arr.close()

        # raw: one staging buffer + vkCmdCopyBuffer, single-threaded memcpy
        rb = rv.buffer(nbytes)
        try:
            rv.upload(rb, a)
            out2 = np.empty_like(a)
            rv.download(rb, out2)
            self.checked(
                "raw transfers", lambda: _check(np.array_equal(out2, a), "raw staging round trip")
            )
            r_h2d = nbytes / min(wall_s(lambda: rv.upload(rb, a)) for _ in range(best)) / 1e9
            r_d2h = nbytes / min(wall_s(lambda: rv.download(rb, out2)) for _ in range(best)) / 1e9
        finally:
            rb.destroy()

        cu_h2d: Cell = self.cupy_why
        cu_d2h: Cell = self.cupy_why
        if self.cupy_ok:

            def cupy_t() -> tuple[float, float]:
                _, d = peers.cupy_h2d_s(a)
                o = np.empty_like(a)
                peers.cupy_d2h_s(d, o)
                _check(np.array_equal(o, a), "cupy round trip")
                h = min(peers.cupy_h2d_s(a)[0] for _ in range(best))
                dd = min(peers.cupy_d2h_s(d, o) for _ in range(best))
                return nbytes / h / 1e9, nbytes / dd / 1e9

            try:
                cu_h2d, cu_d2h = cupy_t()
            except Exception as e:
                cu_h2d = cu_d2h = f"n/a: {type(e).__name__}: {str(e)[:120]}"

        note_raw = (
            "raw: memcpy into one host-visible staging buffer, vkCmdCopyBuffer, wait "
            "(single-threaded, like the peers)."
        )
        row = self.add(
            Row(
                "h2d",
                f"numpy -> device, {mib} MiB (vknb.asarray)",
                "GB/s",
                "higher",
                vknb=v_h2d,
                raw=r_h2d,
                wgpu="n/a: not measured",
                cupy=cu_h2d,
                target="≥ 45 GB/s at 256 MiB (H100; peers ~9)",
                check=check,
                notes="Best of 3 after a warm-up; includes allocating the Array; the default "
                "path (VKNB_HOST_IMPORT=auto: memory that moves again is imported). " + note_raw,
                extra={"paths": paths},
            )
        )
        self.judge_h100(row, v_h2d >= 45.0, sized)
        self.add(
            Row(
                "h2d_update",
                f"numpy -> existing device Array, {mib} MiB (Array.update)",
                "GB/s",
                "higher",
                vknb=v_upd,
                raw=r_h2d,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check=check,
                notes="Best of 3; no allocation. " + note_raw,
            )
        )
        row = self.add(
            Row(
                "d2h",
                f"device -> numpy, {mib} MiB (Array.numpy(out=))",
                "GB/s",
                "higher",
                vknb=v_d2h,
                raw=r_d2h,
                wgpu="n/a: not measured",
                cupy=cu_d2h,
                target="≥ 45 GB/s at 256 MiB (H100; peers ~9)",
                check=check_d,
                notes="Best of 3 after a warm-up; the default path. " + note_raw,
                extra={"paths": paths},
            )
        )
        self.judge_h100(row, v_d2h >= 45.0, sized)
        self._transfer_paths(a, mib, r_h2d, r_d2h, note_raw)

    def _transfer_paths(
        self, a: np.ndarray, mib: int, r_h2d: float, r_d2h: float, note_raw: str
    ) -> None:
        """The same transfers through each path, forced: numpy's pages imported (kept from an
        earlier transfer, and made for each one), and staging / mapped copies (no import)."""
        from vknb.core.hostimport import HOST_IMPORT_MIN_BYTES

        vknb = self.vknb
        dev = vknb.device()
        nbytes = a.nbytes
        best = 3
        arr = vknb.asarray(a)
        out = np.zeros_like(a)  # pages touched: the first-touch cost is not a transfer's
        got: dict[str, tuple[float, float, dict[str, int], str]] = {}
        for path, env in (("import", "1"), ("import_first", "1"), ("staging", "0")):
            with _env("VKNB_HOST_IMPORT", env):
                p0 = dev.transfer_stats()
                if path == "import_first":  # fresh memory each call; its release included

                    def up_first() -> float:
                        b = a.copy()
                        t0 = time.perf_counter_ns()
                        arr.update(b)
                        del b
                        dev.collect()
                        return (time.perf_counter_ns() - t0) / 1e9

                    def down_first() -> float:
                        o = np.zeros_like(a)
                        t0 = time.perf_counter_ns()
                        arr.numpy(out=o)
                        t1 = time.perf_counter_ns()
                        _check(np.array_equal(o, a), "imported download (fresh memory)")
                        t2 = time.perf_counter_ns()
                        del o
                        dev.collect()
                        return (t1 - t0 + time.perf_counter_ns() - t2) / 1e9

                    up = min(up_first() for _ in range(best))
                    down = min(down_first() for _ in range(best))
                    chk = self.checked(
                        f"{path} transfers",
                        lambda p=path: _check(np.array_equal(arr.numpy(), a), p),
                    )
                else:
                    arr.update(a)
                    arr.numpy(out=out)
                    out[:1] = -1.0
                    arr.update(a)
                    arr.numpy(out=out)
                    chk = self.checked(
                        f"{path} transfers", lambda p=path: _check(np.array_equal(out, a), p)
                    )
                    up = min(wall_s(lambda: arr.update(a)) for _ in range(best))
                    down = min(wall_s(lambda: arr.numpy(out=out)) for _ in range(best))
                got[path] = (nbytes / up / 1e9, nbytes / down / 1e9, _paths_since(dev, p0), chk)
        arr.close()
        dev.trim()
        what = {
            "import": "numpy's pages imported (VKNB_HOST_IMPORT=1), the import kept from the "
            "warm-up: the copy engine reads or writes the array directly",
            "import_first": "numpy's pages imported for each call (fresh memory each time, "
            "VKNB_HOST_IMPORT=1): pinning and unpinning included",
            "staging": "no import (VKNB_HOST_IMPORT=0): staging buffers, or mapped memory "
            "where the device's is host-visible",
        }
        small = (
            f" Below {HOST_IMPORT_MIN_BYTES >> 20} MiB nothing is imported: this size measures "
            "the fallback."
            if nbytes < HOST_IMPORT_MIN_BYTES
            else ""
        )
        for path, (up_gbs, down_gbs, paths, chk) in got.items():
            for direction, v, r in (("h2d", up_gbs, r_h2d), ("d2h", down_gbs, r_d2h)):
                self.add(
                    Row(
                        f"{direction}_{path}",
                        f"{'numpy -> existing Array' if direction == 'h2d' else 'device -> numpy'}"
                        f", {mib} MiB, path: {path.replace('_', ' ')}",
                        "GB/s",
                        "higher",
                        vknb=v,
                        raw=r,
                        wgpu="n/a: not measured",
                        cupy="n/a: not measured",
                        check=chk,
                        notes=f"Best of 3; {what[path]}.{small} " + note_raw,
                        extra={"paths": paths},
                    )
                )

    # -- compile --------------------------------------------------------------------------

    def bench_compile(self) -> None:
        """Cold compile of a cell (cache cleared, new source) and a re-run of an unchanged one."""
        vknb = self.vknb
        rv = self.rv
        R = self.repeat
        n = 256
        x = self.rng.integers(0, 8, n).astype(np.float32)
        y0 = self.rng.integers(0, 8, n).astype(np.float32)

        def check_kernel(k: Any) -> None:
            y = y0.copy()
            k(x, y, a=2.0, grid=n)
            _check(np.array_equal(y, y0 + 2 * x), "compiled cell result")

        def cold() -> float:
            vknb.clear_cache()
            src = self._salted()
            t0 = time.perf_counter_ns()
            k = vknb.compile(src, name="cell")
            dt = (time.perf_counter_ns() - t0) / 1e6
            k.close()
            return dt

        k0 = vknb.compile(self._salted(), name="cell")
        check = self.checked("compiled cell", lambda: check_kernel(k0))
        k0.close()
        v_cold = median_of(cold, R)

        cell = self._salted()
        vknb.compile(cell, name="cell").close()
        kept: list[Any] = []

        def cached() -> float:
            t0 = time.perf_counter_ns()
            k = vknb.compile(cell, name="cell")
            dt = (time.perf_counter_ns() - t0) / 1e6
            kept.append(k)  # closed after the loop: freeing is not part of a re-run
            return dt

        v_cached = median_of(cached, R)
        for k in kept:
            k.close()

        glslc = shutil.which("glslc")
        r_cold: Cell
        r_cached: Cell
        if glslc is None:
            r_cold = r_cached = "n/a: glslc not on PATH"
        else:

            def raw_once(src: str) -> float:
                t0 = time.perf_counter_ns()
                spirv = glslc_compile("#version 450\n" + src, glslc)
                p = rv.pipeline(spirv, 2, 4)
                dt = (time.perf_counter_ns() - t0) / 1e6
                p.destroy()
                return dt

            r_cold = median_of(lambda: raw_once(self._salted()), R)
            r_cached = median_of(lambda: raw_once(cell), R)
        self.add(
            Row(
                "compile_cold",
                "cold compile of a cell (glslc + reflect + pipeline)",
                "ms",
                "lower",
                vknb=v_cold,
                raw=r_cold,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check=check,
                notes="vknb: vknb.clear_cache() then vknb.compile(new source). raw: glslc "
                "subprocess + shader module + layouts + pipeline. Sources differ "
                "in a constant, so no cache (SPIR-V or driver) can serve them.",
            )
        )
        row = self.add(
            Row(
                "compile_cached",
                "re-run of an unchanged cell (compile + pipeline)",
                "ms",
                "lower",
                vknb=v_cached,
                raw=r_cached,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                target="≤ 10 ms",
                check=check,
                notes="vknb: vknb.compile(same source) again, as a re-run %%glsl cell "
                "does. raw: a minimal runtime has no cache: glslc + pipeline "
                "again.",
            )
        )
        row.met = v_cached <= 10.0
        row.met_note = "any device"
        for cold in (True, False):
            self._cold_start(cold)

    def _cold_start(self, cold: bool) -> None:
        """A new process to the first result on 1 MiB (benchmarks.coldstart), stage by stage."""
        from . import coldstart

        R = max(3, self.repeat)
        v = coldstart.measure("vknb", R, cold)
        r = peer_cell(lambda: coldstart.measure("raw", R, cold, self.info.name))
        c: Any = "not installed"
        if self.cupy_ok:
            c = peer_cell(lambda: coldstart.measure("cupy", R, cold))
        elif self.cupy_why != peers.NOT_INSTALLED:
            c = self.cupy_why
        ok = v["ok"] and all(isinstance(m, str) or m["ok"] for m in (r, c))
        stages = {"vknb": coldstart.stages_text(v)}
        for side, m in (("raw", r), ("cupy", c)):
            if isinstance(m, dict):
                stages[side] = coldstart.stages_text(m)
        which = "empty caches" if cold else "caches of a previous process"
        row = self.add(
            Row(
                "cold_start" if cold else "cold_start_warm",
                f"new process to the first result on 1 MiB ({which})",
                "ms",
                "lower",
                vknb=v["total_ms"],
                raw=r["total_ms"] if isinstance(r, dict) else r,
                wgpu="n/a: not measured",
                cupy=c["total_ms"] if isinstance(c, dict) else c,
                target="≤ CuPy" if cold else "",
                check="passed" if ok else "failed: a result differs from numpy",
                notes="; ".join(f"{k}: {s}" for k, s in stages.items())
                + ". vknb makes the device on a thread while the kernel compiles.",
                extra={"stages": {k: m for k, m in (("vknb", v), ("raw", r), ("cupy", c))}},
            )
        )
        if cold:
            if isinstance(c, dict):
                row.met, row.met_note = v["total_ms"] <= c["total_ms"], "any device with CuPy"
            else:
                row.met, row.met_note = None, "needs CuPy in the same run"

    # -- library kernels ------------------------------------------------------------------

    def bench_library(self) -> None:
        """shaders/ kernels at the preset's sizes: GPU time of vknb vs the same SPIR-V raw."""
        for name, fn in (
            ("matmul", self._plan_matmul),
            ("reduce_sum", self._plan_reduce),
            ("scan", self._plan_scan),
            ("histogram", self._plan_histogram),
            ("transpose", self._plan_transpose),
            ("convolve2d", self._plan_blur),
            ("map", self._plan_map),
            ("softmax", self._plan_softmax),
        ):
            if not (SHADERS / f"{name}.comp").exists():
                self.add(
                    Row(
                        f"lib_{name}",
                        f"{name} (shaders/{name}.comp missing)",
                        "",
                        "higher",
                        vknb=f"n/a (shaders/{name}.comp missing)",
                        raw=f"n/a (shaders/{name}.comp missing)",
                        check=f"n/a: shaders/{name}.comp missing",
                    )
                )
                continue
            self.log(f"  library: {name}")
            fn()
        self._matmul_fp16()
        for pairs in (False, True):
            self.log(f"  library: radix sort{' pairs' if pairs else ''}")
            self._plan_radix_sort(pairs)

    def _matmul_fp16(self) -> None:
        """fp16 matmul on tensor cores (shaders/matmul_fp16_coopmat.comp) next to CuPy's fp16
        GEMM; no raw side: its device does not enable VK_NV_cooperative_matrix."""
        vknb = self.vknb
        n = _ceil(self.p.matmul, 256) * 256
        rid, metric = "lib_matmul_fp16", f"matmul fp16 {n}×{n}×{n} on tensor cores"
        metric += " (shaders/matmul_fp16_coopmat.comp)"
        target = "stretch: ≥ 30% of CuPy fp16 (H100, 4096³)"
        no_raw = "n/a: the raw baseline's device does not enable VK_NV_cooperative_matrix"
        dev = vknb.device()
        if not (SHADERS / "matmul_fp16_coopmat.comp").exists() or not getattr(
            dev, "cooperative_matrix", ()
        ):
            why = "n/a: no cooperative matrices on this device (VK_NV_cooperative_matrix)"
            self.add(
                Row(
                    rid, metric, "GFLOP/s", "higher", vknb=why, raw=no_raw, target=target, check=why
                )
            )
            return
        from vknb import library

        a = (self.rng.random((n, n), dtype=np.float32) - 0.5).astype(np.float16)
        b = (self.rng.random((n, n), dtype=np.float32) - 0.5).astype(np.float16)
        ref = a.astype(np.float32) @ b.astype(np.float32)
        mm, nn, kk = library.coopmat_shape()
        k = library.load("matmul_fp16_coopmat", defines={"MMA_M": mm, "MMA_N": nn, "MMA_K": kk})
        A, B = vknb.asarray(a.view(np.uint32)), vknb.asarray(b.view(np.uint32))
        C = vknb.empty((n, n // 2), np.uint32)
        step = k.bind(A, B, C, M=n, N=n, K=n, groups=(n // 256, n // 128))

        def check_c(c: np.ndarray) -> None:
            err = float(np.abs(c.astype(np.float32) - ref).max())
            bound = 2e-3 * float(np.abs(ref).max()) + 1e-2  # float16 rounding of the result
            _check(err <= bound, f"matmul_fp16 {n}: max error {err:.4g} > {bound:.4g}")

        def check_vknb() -> None:
            step()
            check_c(C.numpy().view(np.float16))

        check = self.checked(metric, check_vknb)
        c_cell: Cell = self.cupy_why if not self.cupy_ok else "n/a: not measured"
        cm = None
        if self.cupy_ok:
            cm = peers.CupyMatmul(a, b)
            cm.run()
            self.checked(metric + " (cupy)", lambda: check_c(cm.c_host()))
        v_ms, c_ms = [], []
        for _ in range(self.repeat):  # interleaved: the GPU's clocks move with its load
            v_ms.append(step().gpu_ms)
            if cm is not None:
                c_ms.append(cm.gpu_ms())
        work = 2.0 * n**3 / 1e9
        v = work / (statistics.median(v_ms) * 1e-3)
        if c_ms:
            c_cell = work / (statistics.median(c_ms) * 1e-3)
        row = Row(
            rid,
            metric,
            "GFLOP/s",
            "higher",
            vknb=v,
            raw=no_raw,
            wgpu="n/a: not measured",
            cupy=c_cell,
            target=target,
            check=check,
            notes="2n³ flops; float16 inputs and result, float32 sums; cooperative-matrix "
            f"shape {mm}×{nn}×{kk}; CuPy: cupy.matmul on float16 (cuBLAS). GPU times "
            "from timestamps and CUDA events, vknb and CuPy alternating.",
        )
        ok = None
        if _num(c_cell):
            row.extra["vknb_over_cupy"] = v / float(c_cell)  # type: ignore[arg-type]
            ok = v / float(c_cell) >= 0.3  # type: ignore[arg-type]
        self.judge_h100(row, ok, n == 4096)
        self.add(row)
        for x in (A, B, C):
            x.close()

    def _run_plan(
        self,
        rid: str,
        metric: str,
        unit: str,
        plan: Plan,
        work: float,
        cupy_ms: Callable[[], float] | None = None,
        target: str = "",
        judge: Callable[[Row], None] | None = None,
        notes: str = "",
    ) -> Row:
        vr = _VknbPlanRunner(plan)
        rr = None
        try:
            rr = _RawPlanRunner(plan, self.rv, vr.kernels)
            vr.run()
            check = self.checked(metric, lambda: plan.check(vr.output()))
            rr.run()
            self.checked(metric + " (raw)", lambda: plan.check(rr.output()))
            t = interleaved({"vknb": vr.run, "raw": rr.run}, self.repeat, 0)
            v_ms, r_ms = t["vknb"], t["raw"]
        finally:
            vr.close()
            if rr is not None:
                rr.close()
        c: Cell = "n/a: not measured"
        if cupy_ms is not None:
            c = peer_cell(cupy_ms) if self.cupy_ok else self.cupy_why
        row = Row(
            rid,
            metric,
            unit,
            "higher",
            vknb=work / (v_ms * 1e-3),
            raw=work / (r_ms * 1e-3),
            wgpu="n/a: not measured",
            cupy=work / (float(c) * 1e-3) if _num(c) else c,
            target=target,
            check=check,
            notes=notes + f" {len(plan.steps)} dispatch(es); GPU time from timestamps, "
            "summed over the dispatches.",
            extra={"vknb_gpu_ms": v_ms, "raw_gpu_ms": r_ms, "dispatches": len(plan.steps)},
        )
        if unit == "GB/s":  # work is the bytes moved: compare with a copy moving as many
            self._share_of_copy(row, int(work * 1e9))
        if judge is not None:
            judge(row)
        return self.add(row)

    def _copy_ceiling(self, moved: int) -> tuple[float, str]:
        """GB/s (read + write counted) of a compute-shader copy moving ``moved`` bytes, the best
        of vknb and the same SPIR-V raw; measured once per size, with its own row."""
        cache: dict[int, tuple[float, str]] = self.__dict__.setdefault("_ceilings", {})
        if moved in cache:
            return cache[moved]
        vknb, rv = self.vknb, self.rv
        n16 = max(1, _ceil(moved, 32))  # uvec4s copied: 16 bytes read and 16 written each
        groups = min(_ceil(n16, 256), int(self.info.limits["max_workgroup_count"][0]))
        kc = self._copy_kernel()
        src, dst = vknb.empty(n16, _UVEC4), vknb.empty(n16, _UVEC4)
        rp = rv.pipeline(kc.spirv, 2, 4)
        rs, rd = rv.buffer(16 * n16), rv.buffer(16 * n16)
        try:
            ds = rp.descriptor_set([rs, rd])
            push = pack("I", n16)
            t = interleaved(
                {
                    "vknb": lambda: float(kc(src, dst, n=n16, groups=groups).gpu_ms),
                    "raw": lambda: rv.dispatch_gpu_ms(rp, ds, push, (groups, 1, 1)),
                },
                self.repeat,
            )
        finally:
            src.close()
            dst.close()
            rs.destroy()
            rd.destroy()
            rp.destroy()
        v, r = _gbs(32 * n16, t["vknb"]), _gbs(32 * n16, t["raw"])
        size = f"2^{moved.bit_length() - 1}" if moved & (moved - 1) == 0 else str(moved)
        rid = f"kcopy_lib_{size.replace('^', '')}"
        self.add(
            Row(
                rid,
                f"compute-shader copy moving {size} bytes (ceiling of the library rows)",
                "GB/s",
                "higher",
                vknb=v,
                raw=r,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check="n/a: no computation",
                notes="uvec4 loads and stores, grid-stride loop, the same SPIR-V on both sides; "
                "read + write counted, as the library rows count what they read and write.",
                extra={"bytes_moved": 32 * n16, "vknb_gpu_ms": t["vknb"], "raw_gpu_ms": t["raw"]},
            )
        )
        cache[moved] = (max(v, r), rid)
        return cache[moved]

    def _share_of_copy(self, row: Row, moved: int) -> None:
        """Note a library row's bandwidth as a share of the copy ceiling at its size."""
        ceiling, rid = self._copy_ceiling(moved)
        row.extra["copy_ceiling_gbs"] = ceiling
        if _num(row.vknb):
            share = 100 * float(row.vknb) / ceiling  # type: ignore[arg-type]
            row.extra["share_of_copy_pct"] = share
            row.notes = f"{share:.0f}% of the copy ceiling ({rid}). " + row.notes
            self.log(f"  {row.id}: {float(row.vknb):.4g} GB/s = {share:.0f}% of {rid}")

    def _add_copy_share_row(self, row: Row, target: str, sized: bool) -> None:
        """A row of a library row's bandwidth as a share of the copy ceiling (in %)."""
        ceiling = float(row.extra["copy_ceiling_gbs"])

        def pct(v: Cell) -> Cell:
            return 100 * float(v) / ceiling if _num(v) else v  # type: ignore[arg-type]

        share = self.add(
            Row(
                f"{row.id}_kshare",
                f"{row.metric.split(' (')[0]}: share of the compute-copy bandwidth",
                "%",
                "higher",
                vknb=pct(row.vknb),
                raw=pct(row.raw),
                wgpu="n/a: not measured",
                cupy=pct(row.cupy),
                target=target,
                check=row.check,
                notes="GB/s of the row / GB/s of a compute-shader copy moving the same bytes, "
                "both measured in this run.",
            )
        )
        if target:
            ok = _num(share.vknb) and float(share.vknb) >= 75.0  # type: ignore[arg-type]
            self.judge_h100(share, ok if _num(share.vknb) else None, sized)

    def _plan_matmul(self) -> None:
        """fp32 matmul at the preset's n³ (4096³ on a GPU), then at shapes that are not tile
        multiples: (125 n / 128)³ and (n/4 - 24) × (3n/4 - 72) × (n/8 - 12), i.e. 4000³ and
        1000 × 3000 × 500 (M × N × K) on a GPU; each through the kernel library.matmul picks."""
        n = self.p.matmul
        self._plan_matmul_at(n, n, n, "lib_matmul", 0.7, "≥ 70% of CuPy fp32, TF32 off")
        odd = "≥ 63% of CuPy fp32 (within 10% of the 4096³ target)"
        m = n * 125 // 128
        self._plan_matmul_at(m, m, m, "lib_matmul_odd", 0.63, odd)
        q = n // 4
        self._plan_matmul_at(q - 24, 3 * q - 72, n // 8 - 12, "lib_matmul_flat", 0.63, odd)

    def _plan_matmul_at(self, M: int, N: int, K: int, rid: str, share: float, target: str) -> None:
        A = self.rng.random((M, K), dtype=np.float32)
        B = self.rng.random((K, N), dtype=np.float32)
        ref = (A.astype(np.float64) @ B.astype(np.float64)) if M * N * K <= 1 << 30 else A @ B

        def check(c: np.ndarray) -> None:
            _close_all(c.reshape(M, N), ref, 1e-4, 1e-3, f"matmul {M}×{N}×{K}")

        from vknb import library

        name, defines, groups = library._matmul_choice(M, N, K, self.info.type)
        plan = Plan(
            {"mm": (name, defines)},
            {"A": A.reshape(-1), "B": B.reshape(-1), "C": (M * N, np.float32)},
            [
                Step(
                    "mm",
                    ("A", "B", "C"),
                    (("M", "I", M), ("N", "I", N), ("K", "I", K)),
                    (*groups, 1),
                )
            ],
            "C",
            check,
        )

        def cupy_ms() -> float:
            cm = peers.CupyMatmul(A, B)
            cm.run()
            check(cm.c_host())
            return median_of(cm.gpu_ms, self.repeat)

        sized = self.p.matmul == 4096
        vec = " VEC4" if defines else ""
        self._run_plan(
            rid,
            f"matmul fp32 {M}×{N}×{K} (M×N×K; shaders/{name}.comp{vec})",
            "GFLOP/s",
            plan,
            2.0 * M * N * K / 1e9,
            cupy_ms,
            target=f"{target} (H100, --size gpu)",
            judge=lambda row: self._judge_vs_cupy(row, share, sized),
            notes="2MNK flops.",
        )

    def _lib_sizes(self, main: int) -> list[tuple[int, str]]:
        """(log2, row-id suffix) of a reduce/scan row: the preset's size, then the extra sizes
        that fit in a quarter of the device memory."""
        out = [(main, "")]
        for log2 in self.p.lib_extra_log2:
            if log2 != main and 64 << log2 <= self.info.total_memory:
                out.append((log2, f"_{log2}"))
        return out

    def _plan_reduce(self) -> None:
        for log2, suffix in self._lib_sizes(self.p.reduce_log2):
            self._plan_reduce_at(log2, suffix)

    def _plan_reduce_at(self, log2: int, suffix: str) -> None:
        """One dispatch of reduce_sum.comp with the device's tuning, as library.reduce_sum."""
        from vknb.library import _scan_reduce

        n = 1 << log2
        x = self.rng.random(n, dtype=np.float32)
        ref = float(x.astype(np.float64).sum())
        t = _scan_reduce.tuning("reduce_sum", self.dev)
        groups = _scan_reduce.reduce_groups(t, n)
        opts = {"constants": {"ITEMS": t.items, "VEC4": t.vec4}, "local_size": t.local_size}
        plan = Plan(
            {"r": ("reduce_sum", {"T": "float", "SUBGROUPS": int(t.subgroups)})},
            {"x": x, "sums": (groups + 1, np.float32), "state": np.zeros(1, np.uint32)},
            [Step("r", ("x", "sums", "state"), (("n", "I", n),), (groups, 1, 1))],
            "sums",
            lambda o: _close_all(np.float64(o[0]), ref, 1e-5, 0.0, f"reduce_sum 2^{log2}"),
            {"r": opts},
        )

        def cupy_ms() -> float:
            import cupy

            xd = cupy.asarray(x)
            _close_all(np.float64(float(cupy.sum(xd))), ref, 1e-5, 0.0, "cupy.sum")
            return median_of(lambda: peers.cupy_gpu_ms(lambda: cupy.sum(xd)), self.repeat)

        main = suffix == ""
        row = self._run_plan(
            "lib_reduce_sum" + suffix,
            f"reduce_sum fp32 2^{log2} (shaders/reduce_sum.comp)",
            "GB/s",
            plan,
            4.0 * n / 1e9,
            cupy_ms,
            notes=f"4 bytes per element read; one pass, {groups} workgroups of {t.local_size} "
            f"× {t.items} per step ({_tuning_note(t)}). CuPy: cupy.sum.",
        )
        row.extra["tuning"] = t.as_dict()
        sized = main and self.p.name == "gpu"
        self._add_copy_share_row(row, "≥ 75% (H100, 2^26)" if main else "", sized)

    def _plan_scan(self) -> None:
        for log2, suffix in self._lib_sizes(self.p.scan_log2):
            self._plan_scan_at(log2, suffix)

    def _plan_scan_at(self, log2: int, suffix: str) -> None:
        """The scan as library.scan runs it with the device's tuning: one dispatch of
        scan_lookback.comp, or the multi-pass scan.comp where there are no 64-bit atomics."""
        from vknb.library import _scan_reduce

        n = 1 << log2
        x = self.rng.integers(0, 4, n, dtype=np.uint32)
        ref = np.cumsum(x, dtype=np.uint32)
        t = _scan_reduce.tuning("scan", self.dev)
        defines = {"T": "uint", "SUBGROUPS": int(t.subgroups)}
        bufs: dict[str, Any] = {"x": x}
        steps: list[Step] = []
        opts: dict[str, dict[str, Any]] = {}
        if t.single_pass:
            tiles = _ceil(n, t.tile)
            groups = _scan_reduce.scan_groups(t, n)
            bufs.update(
                y=(n, np.uint32),
                status=np.zeros(tiles, np.uint64),
                state=np.zeros(4, np.uint32),
            )
            steps.append(
                Step(
                    "s",
                    ("x", "y", "status", "state"),
                    (("n", "I", n), ("exclusive", "I", 0)),
                    (groups, 1, 1),
                )
            )
            out = "y"
            opts["s"] = {
                "constants": {"ITEMS": t.items, "SPINS": t.spins},
                "local_size": t.local_size,
            }
            how = f"one pass, tiles of {t.local_size} × {t.items}, {groups} workgroups"
        else:
            block = 256 * 4  # scan.comp's defaults

            def scan(src: str, m: int, exclusive: bool, lvl: int) -> str:
                nb = _ceil(m, block)
                y, sums = f"y{lvl}", f"s{lvl}"
                bufs[y] = (m, np.uint32)
                bufs[sums] = (nb, np.uint32)
                push = (("n", "I", m), ("exclusive", "I", int(exclusive)), ("mode", "I", 0))
                steps.append(Step("s", (src, y, sums), push, (nb, 1, 1)))
                if nb > 1:
                    offs = scan(sums, nb, True, lvl + 1)
                    push = (("n", "I", m), ("exclusive", "I", 0), ("mode", "I", 1))
                    steps.append(Step("s", (y, y, offs), push, (nb, 1, 1)))
                return y

            out = scan("x", n, False, 0)
            how = "multi-pass (no 64-bit atomics)"
        plan = Plan(
            {"s": (t.kernel, defines)},
            bufs,
            steps,
            out,
            lambda o: _check(np.array_equal(o, ref), f"scan uint32 2^{log2}"),
            opts,
        )

        def cupy_ms() -> float:
            import cupy

            xd = cupy.asarray(x)
            u32 = cupy.uint32  # as vknb writes (numpy's default for uint32 would be uint64)
            _check(np.array_equal(cupy.asnumpy(cupy.cumsum(xd, dtype=u32)), ref), "cupy.cumsum")
            return median_of(
                lambda: peers.cupy_gpu_ms(lambda: cupy.cumsum(xd, dtype=u32)), self.repeat
            )

        main = suffix == ""
        row = self._run_plan(
            "lib_scan" + suffix,
            f"inclusive scan uint32 2^{log2} (shaders/{t.kernel}.comp)",
            "GB/s",
            plan,
            8.0 * n / 1e9,
            cupy_ms,
            notes=f"8 bytes per element (input read, output written); {how} "
            f"({_tuning_note(t)}). CuPy: cupy.cumsum, uint32.",
        )
        row.extra["tuning"] = t.as_dict()
        sized = main and self.p.name == "gpu"
        self._add_copy_share_row(row, "≥ 75% (H100, 2^24)" if main else "", sized)

    def _plan_histogram(self) -> None:
        log2 = self.p.histogram_log2
        n = 1 << log2
        bins = 256
        x = self.rng.integers(0, bins, n, dtype=np.uint32)
        ref = np.bincount(x, minlength=bins).astype(np.uint32)
        from vknb import library

        k = library.load("histogram")  # as library.histogram runs it
        g = library._histogram_groups(k, n)

        def check(o: np.ndarray) -> None:
            _check(np.array_equal(o, ref), f"histogram 2^{log2}")

        plan = Plan(
            {"h": ("histogram", None)},
            {"x": x, "bins": np.zeros(bins, np.uint32)},
            [Step("h", ("x", "bins"), (("n", "I", n), ("num_bins", "I", bins)), (g, 1, 1))],
            "bins",
            check,
        )
        self._run_plan(
            "lib_histogram",
            f"histogram uint32 2^{log2}, {bins} bins (shaders/histogram.comp)",
            "GB/s",
            plan,
            4.0 * n / 1e9,
            notes="4 bytes per element read. Checked on the first run (bins "
            "accumulate afterwards).",
        )

    def _plan_radix_sort(self, pairs: bool) -> None:
        """LSD radix sort of uint32 keys (shaders/radix_sort_*.comp) as vknb.library.sort runs
        it: the digit totals, then 4 passes of count, scan and scatter; with ``pairs``, uint32
        values move with the keys (vknb.library.sort_pairs)."""
        from vknb.library import _radix

        log2 = self.p.sort_log2
        n = 1 << log2
        keys = self.rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
        vals = self.rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
        order = np.argsort(keys, kind="stable")
        tune = _radix.tuning(self.dev)
        # The shaders' default ITEMS and SUBGROUPS (the raw side cannot specialize): the
        # library's tuning on lavapipe and on NVIDIA/AMD GPUs with >= 19 KiB of shared memory.
        tile = 256 * 16
        nb = _ceil(n, tile)
        flags: dict[str, Any] = {"KEY": "uint"}
        if tune.arithmetic:
            flags["SUBGROUP_ARITHMETIC"] = 1
        xdefs = dict(flags, **({"SUBGROUP_BALLOT": 1} if tune.ballot else {}))
        if pairs:
            xdefs.update(WITH_VALUES=1, VALUE="uint")
        bufs: dict[str, Any] = {
            "k0": keys,
            "k1": (n, np.uint32),
            "k2": (n, np.uint32),
            "counts": (256 * nb, np.uint32),
            "totals": (1024, np.uint32),
        }
        if pairs:
            bufs.update(v0=vals, v1=(n, np.uint32), v2=(n, np.uint32))
        count = ("counts", "totals")
        first = (("n", "I", n), ("shift", "I", 0))
        steps = [  # zero the totals; pass 0's counts with all four digits' totals
            Step("c", ("k0", *count), (*first, ("mode", "I", 2)), (1, 1, 1)),
            Step("c", ("k0", *count), (*first, ("mode", "I", 1)), (nb, 1, 1)),
        ]
        scan_groups = 1 if nb <= _radix.SCAN_ONE_GROUP_MAX else 256
        for p in range(4):
            src, dst = ("k0", "k1", "k2", "k1")[p], ("k1", "k2", "k1", "k2")[p]
            push = (("n", "I", n), ("shift", "I", 8 * p))
            if p:
                steps.append(Step("c", (src, *count), (*push, ("mode", "I", 0)), (nb, 1, 1)))
            steps.append(
                Step("s", count, (("nblocks", "I", nb), ("shift", "I", 8 * p)), (scan_groups, 1, 1))
            )
            binds: tuple[str, ...] = (src, dst, "counts")
            if pairs:
                binds += ("v" + src[1], "v" + dst[1])
            steps.append(Step("x", binds, (*push, ("iota", "I", 0)), (nb, 1, 1)))

        def check(o: np.ndarray) -> None:
            ref = vals[order] if pairs else keys[order]
            _check(np.array_equal(o, ref), f"radix sort{' pairs' if pairs else ''} 2^{log2}")

        plan = Plan(
            {
                "c": ("radix_sort_count", {"KEY": "uint"}),
                "s": ("radix_sort_scan", flags if tune.arithmetic else None),
                "x": ("radix_sort_scatter", xdefs),
            },
            bufs,
            steps,
            "v2" if pairs else "k2",
            check,
        )

        def cupy_ms() -> float:
            cs = peers.CupySort(keys, vals if pairs else None)
            cs.run()
            check(cs.result())
            return median_of(cs.gpu_ms, self.repeat)

        how = "ballot ranking" if tune.ballot else "portable ranking (no subgroup ballots)"
        self._run_plan(
            "lib_radix_sort_pairs" if pairs else "lib_radix_sort",
            f"radix sort uint32 {'key-value pairs' if pairs else 'keys'} 2^{log2} "
            "(shaders/radix_sort_*.comp)",
            "Mkeys/s",
            plan,
            n / 1e6,
            cupy_ms,
            target="≥ 50% of CuPy (H100, 2^24)",
            judge=lambda row: self._judge_vs_cupy(row, 0.5, log2 == 24),
            notes=f"Stable LSD radix sort, 8-bit digits, 4 passes, tiles of {tile} keys, {how}. "
            + (
                "CuPy: cupy.argsort (stable) and a gather of keys and values."
                if pairs
                else "CuPy: cupy.sort."
            ),
        )

    def _plan_transpose(self) -> None:
        n = self.p.transpose
        A = self.rng.random((n, n), dtype=np.float32)
        ref = np.ascontiguousarray(A.T)

        def check(o: np.ndarray) -> None:
            _check(np.array_equal(o.reshape(n, n), ref), f"transpose {n}²")

        plan = Plan(
            {"t": ("transpose", None)},
            {"A": A.reshape(-1), "T": (n * n, np.float32)},
            [
                Step(
                    "t",
                    ("A", "T"),
                    (("rows", "I", n), ("cols", "I", n)),
                    (_ceil(n, 32), _ceil(n, 32), 1),
                )
            ],
            "T",
            check,
        )
        self._run_plan(
            "lib_transpose",
            f"transpose fp32 {n}×{n} (shaders/transpose.comp)",
            "GB/s",
            plan,
            8.0 * n * n / 1e9,
            notes="8 bytes per element.",
        )

    def _plan_map(self) -> None:
        """library.elementwise("add", a, b) at the reduce rows' size: 12 bytes per element."""
        log2 = self.p.reduce_log2
        n = 1 << log2
        a = self.rng.random(n, dtype=np.float32)
        b = self.rng.random(n, dtype=np.float32)
        ref = a + b
        groups = min(_ceil(n, 256), int(self.info.limits["max_workgroup_count"][0]))

        def check(o: np.ndarray) -> None:
            _check(np.array_equal(o, ref), f"map add 2^{log2}")

        plan = Plan(
            {"m": ("map", None)},
            {"a": a, "b": b, "out": (n, np.float32)},
            [Step("m", ("a", "b", "out"), (("n", "I", n), ("alpha", "f", 0.0)), (groups, 1, 1))],
            "out",
            check,
            {"m": {"constants": {"OP": 0}}},
        )

        def cupy_ms() -> float:
            import cupy

            ad, bd = cupy.asarray(a), cupy.asarray(b)
            od = cupy.empty_like(ad)
            cupy.add(ad, bd, out=od)
            check(cupy.asnumpy(od))
            return median_of(
                lambda: peers.cupy_gpu_ms(lambda: cupy.add(ad, bd, out=od)), self.repeat
            )

        row = self._run_plan(
            "lib_map",
            f"elementwise add fp32 2^{log2} (shaders/map.comp, OP 0)",
            "GB/s",
            plan,
            12.0 * n / 1e9,
            cupy_ms,
            notes="12 bytes per element (two read, one written). CuPy: cupy.add with out=.",
        )
        self._add_copy_share_row(row, "≥ 75% (H100, 2^26)", self.p.name == "gpu")

    def _plan_softmax(self) -> None:
        """library.softmax of a (2^(log2-12), 4096) matrix at the reduce rows' size: 8 bytes
        per element (each row is read from memory once; its re-reads hit the cache)."""
        log2 = self.p.reduce_log2
        cols = min(4096, 1 << log2)
        rows = (1 << log2) // cols
        x = (self.rng.standard_normal((rows, cols)) * 4).astype(np.float32)
        e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
        ref = e / e.sum(axis=1, keepdims=True)

        def check(o: np.ndarray) -> None:
            _close_all(o.reshape(rows, cols), ref, 1e-5, 1e-7, f"softmax {rows}×{cols}")

        plan = Plan(
            {"s": ("softmax", None)},
            {"x": x.reshape(-1), "y": (rows * cols, np.float32)},
            [Step("s", ("x", "y"), (("rows", "I", rows), ("cols", "I", cols)), (rows, 1, 1))],
            "y",
            check,
        )

        def cupy_ms() -> float:
            import cupy
            from cupyx.scipy.special import softmax

            xd = cupy.asarray(x)
            check(cupy.asnumpy(softmax(xd, axis=1)))
            return median_of(lambda: peers.cupy_gpu_ms(lambda: softmax(xd, axis=1)), self.repeat)

        row = self._run_plan(
            "lib_softmax",
            f"softmax fp32 {rows}×{cols}, row-wise (shaders/softmax.comp)",
            "GB/s",
            plan,
            8.0 * rows * cols / 1e9,
            cupy_ms,
            notes="8 bytes per element (read once from memory, written once); one workgroup "
            "per row. CuPy: cupyx.scipy.special.softmax(x, axis=1).",
        )
        self._add_copy_share_row(row, "≥ 75% (H100, 2^26)", self.p.name == "gpu")

    def _plan_blur(self) -> None:
        n = self.p.blur
        sigma, truncate = 2.0, 3.0
        radius = int(np.ceil(truncate * sigma))
        t = np.arange(-radius, radius + 1, dtype=np.float64)
        g = np.exp(-0.5 * (t / sigma) ** 2)
        g = (g / g.sum()).astype(np.float32)
        img = self.rng.random((n, n), dtype=np.float32)
        ref = _separable_ref(img, g)
        grid = (_ceil(n, 16), _ceil(n, 16), 1)
        K = g.size

        def check(o: np.ndarray) -> None:
            _close_all(o.reshape(n, n), ref, 1e-5, 1e-6, f"blur {n}²")

        plan = Plan(
            {"c": ("convolve2d", None)},
            {
                "img": img.reshape(-1),
                "gx": g.copy(),
                "gy": g.copy(),
                "tmp": (n * n, np.float32),
                "out": (n * n, np.float32),
            },
            [
                Step(
                    "c",
                    ("img", "gx", "tmp"),
                    (("width", "I", n), ("height", "I", n), ("kw", "I", K), ("kh", "I", 1)),
                    grid,
                ),
                Step(
                    "c",
                    ("tmp", "gy", "out"),
                    (("width", "I", n), ("height", "I", n), ("kw", "I", 1), ("kh", "I", K)),
                    grid,
                ),
            ],
            "out",
            check,
        )
        self._run_plan(
            "lib_blur",
            f"Gaussian blur fp32 {n}×{n}, σ=2 ({K} taps, 2 passes of shaders/convolve2d.comp)",
            "Mpixel/s",
            plan,
            n * n / 1e6,
            notes="Separable: a 1×K pass then a K×1 pass, clamp-to-edge.",
        )

    # -- images ---------------------------------------------------------------------------

    def bench_images(self) -> None:
        """Image transfers (numpy <-> vknb.Image) and a bilinear resize through a sampler next
        to the same resize done by hand on storage buffers."""
        n = self.p.image
        for fmt, dtype in (("rgba8", np.uint8), ("rgba32f", np.float32)):
            self._image_transfers(n, fmt, np.dtype(dtype))
        self._image_resize(n)

    def _image_transfers(self, n: int, fmt: str, dtype: np.dtype) -> None:
        vknb, rv = self.vknb, self.rv
        vk = rv.vk
        if dtype == np.uint8:
            a = self.rng.integers(0, 256, (n, n, 4), dtype=np.uint8)
            vk_format, texel = vk.VK_FORMAT_R8G8B8A8_UNORM, 4
        else:
            a = self.rng.random((n, n, 4), dtype=np.float32)
            vk_format, texel = vk.VK_FORMAT_R32G32B32A32_SFLOAT, 16
        nbytes = a.nbytes
        mib = nbytes / (1 << 20)
        best = 3
        out = np.empty_like(a)
        img = vknb.asimage(a)
        try:
            img.numpy(out=out)
            check = self.checked(
                f"{fmt} image round trip",
                lambda: _check(np.array_equal(out, a), "vknb.asimage / Image.numpy round trip"),
            )
            img.update(a)  # warm-up
            v_up = nbytes / min(wall_s(lambda: img.update(a)) for _ in range(best)) / 1e9
            v_down = nbytes / min(wall_s(lambda: img.numpy(out=out)) for _ in range(best)) / 1e9
            self.checked(
                f"{fmt} Image.update", lambda: _check(np.array_equal(out, a), "Image.update")
            )
        finally:
            img.close()

        ri = rv.image(n, n, vk_format, texel)
        try:
            out2 = np.empty_like(a)
            rv.upload_image(ri, a)
            rv.download_image(ri, out2)
            self.checked(
                f"{fmt} raw image round trip",
                lambda: _check(np.array_equal(out2, a), "raw image round trip"),
            )
            r_up = nbytes / min(wall_s(lambda: rv.upload_image(ri, a)) for _ in range(best)) / 1e9
            r_down = (
                nbytes / min(wall_s(lambda: rv.download_image(ri, out2)) for _ in range(best)) / 1e9
            )
        finally:
            ri.destroy()
        note_raw = (
            "raw: one memcpy into a host-visible staging buffer, vkCmdCopyBufferToImage / "
            "vkCmdCopyImageToBuffer (image in the general layout), wait."
        )
        tag = "rgba8" if dtype == np.uint8 else "rgba32f"
        self.add(
            Row(
                f"img_h2d_{tag}",
                f"numpy -> vknb.Image {n}×{n} {fmt}, {mib:.3g} MiB (Image.update)",
                "GB/s",
                "higher",
                vknb=v_up,
                raw=r_up,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check=check,
                notes="Best of 3 after a warm-up; no allocation. " + note_raw,
            )
        )
        self.add(
            Row(
                f"img_d2h_{tag}",
                f"vknb.Image -> numpy {n}×{n} {fmt}, {mib:.3g} MiB (Image.numpy(out=))",
                "GB/s",
                "higher",
                vknb=v_down,
                raw=r_down,
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check=check,
                notes="Best of 3 after a warm-up. " + note_raw,
            )
        )

    def _image_resize(self, n: int) -> None:
        """rgba8 n×n -> (3n/2)² bilinear: resample.comp through a sampler2D, and
        RESIZE_BUFFER_SRC on storage buffers; each side against the same SPIR-V run raw."""
        vknb, rv = self.vknb, self.rv
        vk = rv.vk
        h = w = n * 3 // 2
        a = self.rng.integers(0, 256, (n, n, 4), dtype=np.uint8)
        ref = bilinear_resize_ref(a, (h, w))
        # A linear sampler may round its fractions to subTexelPrecisionBits (8 on lavapipe for
        # unorm8 and on most GPUs): two lerps, each off by up to 2^-bits of 255, then the
        # store's rounding.  The buffer kernel computes fractions in float32 (rounding only).
        bits = int(rv.props.limits.subTexelPrecisionBits)
        tol_sampled = 1.0 + 2 * 255 * 2.0**-bits
        mpix = h * w / 1e6
        groups = (_ceil(w, 16), _ceil(h, 16), 1)

        def check_u8(o: np.ndarray, tol: float, what: str) -> None:
            err = float(np.abs(o.reshape(h, w, 4).astype(np.float64) - ref).max())
            _check(err <= tol, f"{what}: max error {err:.3g} steps > {tol:.3g}")

        # sampled: vknb through the library kernel, raw with the same SPIR-V
        try:
            from vknb import library

            ks = library.load("resample", defines={"FORMAT": "rgba8"})
        except ImportError:  # pragma: no cover - the library ships with vknb
            ks = vknb.compile(
                (SHADERS / "resample.comp").read_text(),
                name="resample",
                defines={"FORMAT": "rgba8"},
            )
        m = np.array([n / w, 0, 0, 0, n / h, 0], np.float32)
        border = np.zeros(4, np.float32)
        src = vknb.asimage(a)
        dst = vknb.Image((h, w, 4), "rgba8")
        sampler = vknb.Sampler()  # linear, clamp to edge, normalized
        push = pack("6fII4f", *m, 0, 2, *border)
        rp = rv.pipeline(
            ks.spirv,
            2,
            48,
            types=[
                vk.VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER,
                vk.VK_DESCRIPTOR_TYPE_STORAGE_IMAGE,
            ],
        )
        rsrc = rv.image(n, n, vk.VK_FORMAT_R8G8B8A8_UNORM, 4)
        rdst = rv.image(w, h, vk.VK_FORMAT_R8G8B8A8_UNORM, 4)
        try:
            rv.upload_image(rsrc, a)
            rset = rp.descriptor_set([(rsrc, rv.sampler(linear=True)), rdst])

            def v_sampled() -> float:
                rec = ks((src, sampler), dst, m=m, cubic=0, address=2, border=border, grid=(w, h))
                if rec.gpu_ms is None:
                    raise RuntimeError("vknb recorded no GPU time (no timestamps on this queue)")
                return float(rec.gpu_ms)

            v_sampled()
            check = self.checked(
                "sampled resize",
                lambda: check_u8(dst.numpy(), tol_sampled, "resample.comp (vknb)"),
            )
            rv.dispatch_gpu_ms(rp, rset, push, groups)
            self.checked(
                "sampled resize (raw)",
                lambda: check_u8(
                    rv.download_image(rdst, np.empty((h, w, 4), np.uint8)),
                    tol_sampled,
                    "resample.comp (raw)",
                ),
            )
            t = interleaved(
                {"vknb": v_sampled, "raw": lambda: rv.dispatch_gpu_ms(rp, rset, push, groups)},
                self.repeat,
            )
            vs_ms, rs_ms = t["vknb"], t["raw"]
        finally:
            src.close()
            dst.close()
            rsrc.destroy()
            rdst.destroy()
            rp.destroy()

        # buffer: the same resize by hand on storage buffers
        kb = vknb.compile(RESIZE_BUFFER_SRC, name="resize_buffer")
        packed = a.view(np.uint32).reshape(-1)
        bsrc = vknb.asarray(packed)
        bdst = vknb.empty(h * w, np.uint32)
        bpush = pack("4I2f", n, n, w, h, n / w, n / h)
        rb_pipe = rv.pipeline(kb.spirv, 2, 24)
        rb_src, rb_dst = rv.buffer(packed.nbytes), rv.buffer(h * w * 4)
        try:
            rv.upload(rb_src, packed)
            rb_set = rb_pipe.descriptor_set([rb_src, rb_dst])
            step = kb.bind(
                bsrc, bdst, w_in=n, h_in=n, w_out=w, h_out=h, sx=n / w, sy=n / h, groups=groups
            )

            def v_buffer() -> float:
                rec = step()
                if rec.gpu_ms is None:
                    raise RuntimeError("vknb recorded no GPU time (no timestamps on this queue)")
                return float(rec.gpu_ms)

            v_buffer()
            check_b = self.checked(
                "buffer resize",
                lambda: check_u8(bdst.numpy().view(np.uint8), 1.0 + 1e-3, "buffer kernel (vknb)"),
            )
            rv.dispatch_gpu_ms(rb_pipe, rb_set, bpush, groups)
            self.checked(
                "buffer resize (raw)",
                lambda: check_u8(
                    rv.download(rb_dst, np.empty(h * w, np.uint32)).view(np.uint8),
                    1.0 + 1e-3,
                    "buffer kernel (raw)",
                ),
            )
            t = interleaved(
                {
                    "vknb": v_buffer,
                    "raw": lambda: rv.dispatch_gpu_ms(rb_pipe, rb_set, bpush, groups),
                },
                self.repeat,
            )
            vb_ms, rb_ms = t["vknb"], t["raw"]
        finally:
            bsrc.close()
            bdst.close()
            rb_src.destroy()
            rb_dst.destroy()
            rb_pipe.destroy()

        sampled_over_buffer = vb_ms / vs_ms
        self.add(
            Row(
                "img_resize_sampled",
                f"bilinear resize rgba8 {n}² -> {w}² through a sampler2D (shaders/resample.comp)",
                "Mpixel/s",
                "higher",
                vknb=mpix / (vs_ms * 1e-3),
                raw=mpix / (rs_ms * 1e-3),
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check=check,
                notes=f"Output pixels per second of GPU time (timestamps). Linear sampler, clamp "
                f"to edge, rgba8 storage image out; {sampled_over_buffer:.2f}× the "
                "storage-buffer version (img_resize_buffer). Checked against numpy within "
                f"{tol_sampled:.2f} steps (subTexelPrecisionBits = {bits}).",
                extra={
                    "vknb_gpu_ms": vs_ms,
                    "raw_gpu_ms": rs_ms,
                    "sampled_over_buffer": sampled_over_buffer,
                },
            )
        )
        self.add(
            Row(
                "img_resize_buffer",
                f"bilinear resize rgba8 {n}² -> {w}² by hand on storage buffers",
                "Mpixel/s",
                "higher",
                vknb=mpix / (vb_ms * 1e-3),
                raw=mpix / (rb_ms * 1e-3),
                wgpu="n/a: not measured",
                cupy="n/a: not measured",
                check=check_b,
                notes="The same resize as img_resize_sampled: one uint per texel, four reads, "
                "unpackUnorm4x8, two mix() per row, packUnorm4x8; float32 fractions (checked "
                "within 1 step of numpy).",
                extra={"vknb_gpu_ms": vb_ms, "raw_gpu_ms": rb_ms},
            )
        )


def _separable_ref(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Clamp-to-edge separable convolution in float64 (numpy only)."""
    r = g.size // 2
    a = img.astype(np.float64)
    gf = g.astype(np.float64)[::-1]  # a true convolution flips the filter (symmetric anyway)
    p = np.pad(a, ((0, 0), (r, r)), mode="edge")
    h = sum(gf[j] * p[:, j : j + a.shape[1]] for j in range(g.size))
    p = np.pad(h, ((r, r), (0, 0)), mode="edge")
    return sum(gf[i] * p[i : i + a.shape[0], :] for i in range(g.size))


def _timed_close(fn: Callable[[], Any]) -> float:
    """Seconds that ``fn()`` takes (see :func:`wall_s`); closes the batch it returns after."""
    out: list[Any] = []
    dt = wall_s(lambda: out.append(fn()))
    out[0].close()
    return dt


def _has_batch(vknb: Any) -> bool:
    """Whether this vknb has the batch API (``vknb.batch``)."""
    try:
        vknb.batch  # noqa: B018 (a lazy attribute: importing it is the test)
    except (ImportError, AttributeError):
        return False
    return True


def _short(v: Cell) -> str:
    if _num(v):
        return f"{float(v):.4g}"  # type: ignore[arg-type]
    return str(v)[:40]
