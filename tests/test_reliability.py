"""Reliability (issue 8): malformed SPIR-V, argument fuzzing, leaks, out of memory, runaway
kernels, reset, concurrency, damaged caches and shutdown.

Sizes are chosen for CI on lavapipe (the whole file runs in well under two minutes).  Numbers
worth reading (examples tried, counters before/after, operations per second) are printed (run
with ``-s``) and recorded with ``record_property``.
"""

from __future__ import annotations

import binascii
import collections
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import settle
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import vknb
from vknb import compiler

REPO = Path(__file__).resolve().parents[1]

SAXPY = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; } xs;
layout(set = 0, binding = 1) buffer Y { float y[]; } ys;
layout(push_constant) uniform P { float a; uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < n && i < xs.x.length() && i < ys.y.length()) ys.y[i] += a * xs.x[i];
}
"""

RICH = """
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const float SCALE = 1.0;
struct Particle { vec3 pos; float mass; int id; };
layout(std430, set = 0, binding = 0) buffer Parts { Particle parts[]; };
layout(std140, set = 0, binding = 1) uniform U { mat4 m; uint count; } u;
layout(set = 1, binding = 0) writeonly buffer Out { vec4 res[]; };
layout(push_constant) uniform PC { float dt; int bias; } pc;
shared float tile[64];
void main() {
    uint i = gl_GlobalInvocationID.x;
    tile[gl_LocalInvocationID.x] = float(i);
    barrier();
    if (i >= u.count) return;
    Particle p = parts[i];
    p.pos += vec3(pc.dt * SCALE) + tile[gl_LocalInvocationID.x % 64u];
    parts[i] = p;
    res[i] = u.m * vec4(p.pos, float(p.id + pc.bias));
}
"""

DOUBLE = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer D { float d[]; };
layout(push_constant) uniform P { float a; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < d.length()) d[i] *= a; }
"""

FUZZ = settings(
    database=None,  # never write .hypothesis/ into the working directory
    derandomize=True,  # the same examples on every run (xfail(strict) markers stay stable)
    deadline=None,  # per-example bounds are enforced explicitly below
    suppress_health_check=list(HealthCheck),
)


def run_python(
    code: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (cwd and cache in ``tmp_path``)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=_child_env(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _child_env(tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    full = dict(os.environ)
    full["VKNB_CACHE_DIR"] = str(tmp_path / "cache")
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full.get("PYTHONPATH", "")) if p)
    full.pop("VKNB_VALIDATION", None)
    full.update(env or {})
    return full


def last_json(out: str) -> Any:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines, "the child printed nothing"
    return json.loads(lines[-1])


def report(record_property: Any, name: str, value: Any) -> None:
    print(f"\n[{name}] {value}")
    record_property(name, value)


@pytest.fixture(scope="module")
def saxpy() -> Iterator[vknb.Kernel]:
    k = vknb.compile(SAXPY, name="saxpy_fuzz")
    yield k
    k.close()


def check_saxpy(k: vknb.Kernel, rng: np.random.Generator, n: int = 333) -> None:
    """A good call gives the right answer."""
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    y0 = y.copy()
    k(x, y, a=0.5, n=n, grid=n)
    np.testing.assert_allclose(y, y0 + np.float32(0.5) * x, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# SPIR-V words
# ---------------------------------------------------------------------------------------------

OP_EXT_INST_IMPORT, OP_TYPE_INT, OP_FUNCTION, OP_LOAD, OP_STORE, OP_FMUL, OP_RETURN = (
    11,
    21,
    54,
    61,
    62,
    133,
    253,
)


def to_words(b: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(b) // 4}I", b[: len(b) // 4 * 4]))


def to_bytes(words: list[int]) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


def instructions(words: list[int]) -> Iterator[tuple[int, int, list[int]]]:
    """(word index, opcode, operands) of each instruction after the 5-word header."""
    i = 5
    while i < len(words):
        count, op = words[i] >> 16, words[i] & 0xFFFF
        if count == 0:
            return
        yield i, op, words[i + 1 : i + count]
        i += count


def function_type_is_void(spirv: bytes) -> bytes:
    """OpFunction's function type replaced by its return type (%void): spirv-val rejects it."""
    w = to_words(spirv)
    i, _, ops = next((i, op, ops) for i, op, ops in instructions(w) if op == OP_FUNCTION)
    w[i + 4] = ops[0]
    return to_bytes(w)


def without_return(spirv: bytes) -> bytes:
    """The entry point's OpReturn removed: a block without a terminator."""
    w = to_words(spirv)
    i = next(i for i, op, _ in instructions(w) if op == OP_RETURN)
    return to_bytes(w[:i] + w[i + 1 :])


def store_of_wrong_type(spirv: bytes) -> bytes:
    """The float store gets a uint value (OpStore type mismatch): lavapipe rejects it."""
    w = to_words(spirv)
    insts = list(instructions(w))
    uint_ids = {ops[0] for _, op, ops in insts if op == OP_TYPE_INT and ops[1:] == [32, 0]}
    uint_load = next(ops[1] for _, op, ops in insts if op == OP_LOAD and ops[0] in uint_ids)
    products = {ops[1] for _, op, ops in insts if op == OP_FMUL}
    (store,) = [i for i, op, ops in insts if op == OP_STORE and ops[1] in products]
    w[store + 2] = uint_load
    return to_bytes(w)


@pytest.fixture(scope="module")
def rich_spirv() -> bytes:
    return vknb.compile_glsl(RICH, name="rich", optimize=False)


@pytest.fixture(scope="module")
def small_spirv() -> bytes:
    return vknb.compile_glsl(DOUBLE, name="double")


@st.composite
def mutations(draw: Any, spirv: bytes) -> tuple[str, bytes]:
    """A damaged copy of ``spirv``: bit flips, truncation, word overwrites or deletions."""
    nbytes, nwords = len(spirv), len(spirv) // 4
    kind = draw(st.sampled_from(["flip", "truncate", "word", "delete", "header"]))
    if kind == "flip":
        flips = draw(
            st.lists(
                st.tuples(st.integers(0, nbytes - 1), st.integers(0, 7)), min_size=1, max_size=4
            )
        )
        b = bytearray(spirv)
        for pos, bit in flips:
            b[pos] ^= 1 << bit
        return f"flip {flips}", bytes(b)
    if kind == "truncate":
        k = draw(st.integers(0, nbytes - 1))
        return f"truncate to {k}", spirv[:k]
    w = to_words(spirv)
    special = st.sampled_from([0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFF0000])
    value = st.one_of(special, st.integers(0, 2**32 - 1), st.integers(0, 64))
    if kind == "word":
        edits = draw(st.lists(st.tuples(st.integers(5, nwords - 1), value), min_size=1, max_size=3))
        for at, v in edits:
            w[at] = v
        return f"words {edits}", to_bytes(w)
    if kind == "header":
        at, v = draw(st.integers(0, 4)), draw(value)
        w[at] = v
        return f"header word {at} = {v:#x}", to_bytes(w)
    at, n = draw(st.integers(5, nwords - 1)), draw(st.integers(1, 4))
    return f"delete {n} words at {at}", to_bytes(w[:at] + w[at + n :])


class _Alarm:
    """Raise TimeoutError if the block runs longer than ``seconds`` (main thread only)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def _fire(self, *_: Any) -> None:
        raise TimeoutError(f"took longer than {self.seconds} s")

    def __enter__(self) -> _Alarm:
        self._old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)


def test_malformed_spirv_reflection_never_misbehaves(rich_spirv, record_property):
    """Reflection of damaged SPIR-V: a SpirvError or a result; never another error, never a hang."""
    outcomes: collections.Counter[str] = collections.Counter()

    @settings(FUZZ, max_examples=400)
    @given(mutation=mutations(rich_spirv))
    def run(mutation: tuple[str, bytes]) -> None:
        what, data = mutation
        with _Alarm(5.0):
            try:
                vknb.reflect(data)
                outcomes["reflected"] += 1
            except vknb.SpirvError as e:
                assert str(e), what
                outcomes["SpirvError"] += 1

    run()
    report(record_property, "spirv_reflect_fuzz", dict(outcomes))
    assert sum(outcomes.values()) >= 300
    assert outcomes["SpirvError"] > 0 and outcomes["reflected"] > 0


_COMPILE_WORKER = r"""
import binascii, sys
import vknb
for line in sys.stdin:
    data = binascii.unhexlify(line.strip())
    try:
        k = vknb.compile(data, name="fuzzed")
        k.close()
        out = "ok"
    except vknb.VulkanError as e:
        out = "vulkan " + type(e).__name__
    except BaseException as e:
        out = "other " + type(e).__name__ + ": " + str(e).replace("\n", " ")[:200]
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
"""


class CompileWorker:
    """A child process that compiles SPIR-V modules it is sent, so that a driver crash or hang
    is observed (and survived) by the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _COMPILE_WORKER],
                cwd=self.tmp_path,
                env=_child_env(self.tmp_path),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
            self.restarts += 1
        return self.proc

    def compile(self, data: bytes, timeout: float = 20.0) -> str:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(binascii.hexlify(data).decode() + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            return f"crash (exit {proc.wait()})"
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        if not ready:
            self.close()
            return "hang"
        line = proc.stdout.readline()
        if not line:
            return f"crash (exit {proc.wait()})"
        return line.strip()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[CompileWorker]:
    w = CompileWorker(tmp_path)
    yield w
    w.close()


def test_malformed_spirv_compile_raises_never_crashes(rich_spirv, worker, record_property):
    """vknb.compile(bytes) of damaged modules: a VulkanError (SpirvError, PipelineCreationFailed)
    or a kernel; never a crash, a hang or another exception (checked in a worker process)."""
    outcomes: collections.Counter[str] = collections.Counter()
    bad: list[tuple[str, str]] = []

    @settings(FUZZ, max_examples=200, phases=[Phase.explicit, Phase.generate])
    @given(mutation=mutations(rich_spirv))
    def run(mutation: tuple[str, bytes]) -> None:
        what, data = mutation
        result = worker.compile(data)
        key = result.split(":")[0] if result.startswith("other") else result
        outcomes[key] += 1
        if not (result == "ok" or result.startswith("vulkan ")):
            bad.append((what, result))

    assert worker.compile(rich_spirv) == "ok"
    run()
    report(record_property, "spirv_compile_fuzz", dict(outcomes))
    report(record_property, "spirv_compile_fuzz_worker_starts", worker.restarts)
    assert sum(outcomes.values()) == 200
    assert not bad, f"{len(bad)} of 200 damaged modules crashed or hung the process: {bad[:5]}"


@pytest.mark.parametrize(
    "damage", [function_type_is_void, without_return], ids=["function-type-void", "no-OpReturn"]
)
def test_invalid_spirv_that_reflects_is_rejected_not_crashing(small_spirv, tmp_path, damage):
    bad = damage(small_spirv)
    vknb.reflect(bad)  # reflection alone cannot tell
    code = f"""
    import json, vknb
    try:
        vknb.compile({bad!r}, name="damaged")
        print(json.dumps(None))
    except vknb.VulkanError as e:
        print(json.dumps([type(e).__name__, str(e)]))
    """
    res = run_python(code, tmp_path, timeout=60)
    assert res.returncode == 0, f"the process died with exit code {res.returncode}"
    out = last_json(res.stdout)
    assert out is not None and out[0] in ("SpirvError", "PipelineCreationFailed"), out


def non_utf8_import_name(spirv: bytes) -> bytes:
    """The OpExtInstImport string "GLSL.std.450" with a byte that is not UTF-8 (0xD3)."""
    w = to_words(spirv)
    i = next(i for i, op, _ in instructions(w) if op == OP_EXT_INST_IMPORT)
    b = bytearray(spirv)
    b[(i + 2) * 4 + 2] = 0xD3  # "GL\xd3L.std.450"
    return bytes(b)


def test_non_utf8_string_in_spirv_raises_spirv_error(small_spirv):
    bad = non_utf8_import_name(small_spirv)
    with pytest.raises(vknb.SpirvError):
        vknb.compile(bad, name="non_utf8")


def test_driver_rejected_module_raises_pipeline_creation_failed(small_spirv, rng):
    bad = store_of_wrong_type(small_spirv)
    refl = vknb.reflect(bad)
    assert refl.bindings  # reflection is happy
    with pytest.raises(vknb.VulkanError) as ei:
        vknb.compile(bad, name="wrong_store")
    e = ei.value
    # lavapipe: VK_ERROR_UNKNOWN from vkCreateComputePipelines; a validating core may say
    # SpirvError first.  Either way the message has context.
    assert isinstance(e, (vknb.PipelineCreationFailed, vknb.SpirvError)), type(e)
    if isinstance(e, vknb.PipelineCreationFailed):
        assert e.function in ("vkCreateComputePipelines", "vkCreateShaderModule")
        assert e.function in str(e) and "wrong_store" in str(e) and e.result_name in str(e)
    # The session keeps working.
    k = vknb.compile(small_spirv)
    d = rng.standard_normal(100).astype(np.float32)
    d0 = d.copy()
    pc = k.reflection.push_constants.members[0].name
    k(d, **{pc: 3.0}, grid=100)
    np.testing.assert_allclose(d, 3 * d0, rtol=1e-6)
    k.close()


# ---------------------------------------------------------------------------------------------
# Argument fuzzing
# ---------------------------------------------------------------------------------------------

WRONG_DTYPES = [
    np.float64,
    np.float16,
    np.int32,
    np.uint32,
    np.int8,
    np.uint8,
    np.complex64,
    np.dtype(">f4"),
    np.dtype([("f", "<f4")]),
]
NAMES = {"x": ["xs", "X", "x"], "y": ["ys", "Y", "y"]}


class Call:
    """One fuzzed call: arguments, and the names an error may blame (none: it must work)."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self.kwargs: dict[str, Any] = {}
        self.culprits: list[str] = []
        self.x: Any = None
        self.y: Any = None
        self.a = 0.0
        self.n = 0
        self.invocations = 0

    def __repr__(self) -> str:
        def short(v: Any) -> str:
            if isinstance(v, np.ndarray):
                return f"ndarray{v.shape}:{v.dtype}:c={v.flags.c_contiguous}:w={v.flags.writeable}"
            if isinstance(v, vknb.Array):
                return f"Array{v.shape}:{v.dtype}"
            return repr(v)[:40]

        kw = {k: short(v) for k, v in self.kwargs.items()}
        return f"Call(args={[short(a) for a in self.args]}, kwargs={kw}, culprits={self.culprits})"


GOOD_BINDINGS = ["f32", "2d", "0d", "readonly", "array", "strided-1"]
BAD_BINDINGS = ["dtype", "strided", "transposed", "empty", "list", "none", "scalar", "bytes"]
FAULTS = ["x", "y", "binding style", "a", "n", "push style", "launch"]


def _binding_value(
    draw: Any, rng: np.random.Generator, which: str, call: Call, faulty: bool
) -> Any:
    name = NAMES[which][0]
    n = draw(st.integers(1, 700))
    # A read-only numpy array is fine for the readonly x, a fault for y (it is written back).
    good = GOOD_BINDINGS if which == "x" else [v for v in GOOD_BINDINGS if v != "readonly"]
    bad = BAD_BINDINGS if which == "x" else [*BAD_BINDINGS, "readonly"]
    variant = draw(st.sampled_from(bad if faulty else good))
    if variant in ("f32", "readonly", "array", "empty"):
        v: Any = rng.standard_normal(0 if variant == "empty" else n).astype(np.float32)
        if variant == "readonly":
            v.setflags(write=False)
        if draw(st.booleans()) and variant != "readonly":
            v = vknb.asarray(v)
    elif variant == "2d":
        v = rng.standard_normal((2, n // 2 + 1)).astype(np.float32)
    elif variant == "0d":
        v = np.array(rng.standard_normal(), np.float32)
    elif variant == "strided-1":
        v = rng.standard_normal(2).astype(np.float32)[::2]  # one element: still contiguous
    elif variant == "dtype":
        dt = draw(st.sampled_from(WRONG_DTYPES))
        v = vknb.asarray(np.zeros(n, dt)) if draw(st.booleans()) else np.zeros(n, dt)
    elif variant in ("strided", "transposed"):
        base = rng.standard_normal((n + 1) * 3).astype(np.float32)
        v = (
            base[:: draw(st.integers(2, 3))]
            if variant == "strided"
            else (base[: (n + 1) * 2].reshape(n + 1, 2).T)
        )
    else:
        v = {"list": [1.0] * 3, "none": None, "scalar": 1.5, "bytes": b"\0" * 16}[variant]
    if faulty:
        call.culprits.append(name)
    return v


@st.composite
def fuzzed_calls(draw: Any) -> Call:
    """A call with 0 (about 40% of calls), 1 or 2 faults."""
    call = Call()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    faults: set[str] = set()
    if draw(st.integers(0, 9)) >= 4:
        faults = set(draw(st.lists(st.sampled_from(FAULTS), min_size=1, max_size=2)))
    call.x = _binding_value(draw, rng, "x", call, "x" in faults)
    call.y = _binding_value(draw, rng, "y", call, "y" in faults)

    # Bindings: by position or by one of their names; or missing, doubled, extra.
    style = draw(
        st.sampled_from(
            ["missing y", "duplicate", "extra positional"]
            if "binding style" in faults
            else ["positional", "named", "mixed"]
        )
    )
    if style == "positional":
        call.args = [call.x, call.y]
    elif style == "named":
        call.kwargs[draw(st.sampled_from(NAMES["x"]))] = call.x
        call.kwargs[draw(st.sampled_from(NAMES["y"]))] = call.y
    elif style == "mixed":
        call.args = [call.x]
        call.kwargs[draw(st.sampled_from(NAMES["y"]))] = call.y
    elif style == "missing y":
        call.args = [call.x]
        call.culprits.append("ys")
    elif style == "duplicate":
        call.args = [call.x, call.y]
        dup = draw(st.sampled_from(NAMES["y"]))
        call.kwargs[dup] = call.y
        call.culprits.append(dup)
    else:
        call.args = [call.x, call.y, call.y]
        call.culprits.append("positional")

    # Push constants.
    if "a" in faults:
        call.culprits.append("a")
        kind = draw(st.sampled_from(["str", "none", "bool", "overflow", "list", "complex"]))
        call.a = {
            "str": "1.0",
            "none": None,
            "bool": True,
            "list": [1.0],
            "complex": 1j,
            "overflow": draw(st.floats(1e39, 1e300)),
        }[kind]
    else:
        kind = draw(st.sampled_from(["float", "np", "int"]))
        f = draw(st.floats(-100, 100, allow_nan=False))
        call.a = {"float": f, "np": np.float32(f), "int": draw(st.integers(-1000, 1000))}[kind]
    if "n" in faults:
        call.culprits.append("n")
        kind = draw(st.sampled_from(["negative", "huge", "float", "bool", "str"]))
        call.n = {
            "negative": draw(st.integers(-(2**40), -1)),
            "str": "7",
            "huge": draw(st.integers(2**32, 2**70)),
            "float": 3.0,
            "bool": False,
        }[kind]
    else:
        kind = draw(st.sampled_from(["small", "small", "big", "np"]))
        small = draw(st.integers(0, 800))
        call.n = {"small": small, "big": draw(st.integers(0, 2**32 - 1)), "np": np.uint32(small)}[
            kind
        ]
    push_style = draw(
        st.sampled_from(
            ["missing a", "unknown", "not a dict"]
            if "push style" in faults
            else ["members", "dict"]
        )
    )
    if push_style == "members":
        call.kwargs.update(a=call.a, n=call.n)
    elif push_style == "dict":
        call.kwargs["P"] = {"a": call.a, "n": call.n}
    elif push_style == "missing a":
        call.kwargs["n"] = call.n
        call.culprits.append("a")
    elif push_style == "not a dict":
        call.kwargs["P"] = [call.a, call.n]
        call.culprits.append("P")
    else:
        call.kwargs.update(a=call.a, n=call.n, zz=1)
        call.culprits.append("zz")

    # Launch size.
    g = draw(st.integers(1, 1000))
    launch = draw(
        st.sampled_from(
            ["zero", "negative", "float", "both", "neither", "too many"]
            if "launch" in faults
            else ["grid", "grid tuple", "groups"]
        )
    )
    call.invocations = -(-g // 64) * 64
    if launch == "grid":
        call.kwargs["grid"] = g
    elif launch == "grid tuple":
        call.kwargs["grid"] = (g, 1)
    elif launch == "groups":
        call.kwargs["groups"] = -(-g // 64)
    else:
        call.culprits.append("grid" if launch != "too many" else "groups")
        call.kwargs.update(
            {
                "zero": {"grid": 0},
                "negative": {"grid": (g, -g)},
                "float": {"grid": float(g)},
                "both": {"grid": g, "groups": 1},
                "neither": {},
                "too many": {"groups": (1, 1 << 20)},  # y beyond 65535 on every device
            }[launch]
        )
    return call


def _flat(v: Any) -> np.ndarray:
    return (v.numpy() if isinstance(v, vknb.Array) else np.asarray(v)).reshape(-1)


def test_argument_fuzzing(saxpy, rng, dev, record_property):
    outcomes: collections.Counter[str] = collections.Counter()
    unexpected: list[str] = []

    @settings(FUZZ, max_examples=300)
    @given(call=fuzzed_calls())
    def run(call: Call) -> None:
        x0, y0 = _flat(call.x).copy(), _flat(call.y).copy()
        try:
            saxpy(*call.args, **call.kwargs)
        except (TypeError, ValueError) as e:
            outcomes[type(e).__name__] += 1
            msg = str(e)
            if not call.culprits:
                unexpected.append(f"{call}: raised {e!r}")
            elif not any(c in msg for c in call.culprits):
                unexpected.append(f"{call}: {e!r} names none of {call.culprits}")
        except BaseException as e:  # any other exception type is a failure
            unexpected.append(f"{call}: {type(e).__name__}: {e}")
        else:
            outcomes["ok"] += 1
            if call.culprits:
                unexpected.append(f"{call}: accepted, expected an error about {call.culprits}")
            else:
                m = min(int(call.n), x0.size, y0.size, call.invocations)
                expected = y0.copy()
                expected[:m] = y0[:m] + np.float32(call.a) * x0[:m]
                np.testing.assert_allclose(
                    _flat(call.y), expected, rtol=1e-5, atol=1e-4 * max(1.0, abs(float(call.a)))
                )
        finally:
            for v in (call.x, call.y):
                if isinstance(v, vknb.Array):
                    v.close()
        check_saxpy(saxpy, rng)  # after every example, a good call still works

    run()
    report(record_property, "argument_fuzz", dict(outcomes))
    assert not unexpected, "\n".join(unexpected[:10])
    assert sum(outcomes.values()) == 300
    assert outcomes["ok"] >= 60 and outcomes["TypeError"] >= 30 and outcomes["ValueError"] >= 10


# ---------------------------------------------------------------------------------------------
# Leaks
# ---------------------------------------------------------------------------------------------


def _snapshot(dev: vknb.Device) -> dict[str, Any]:
    settle()
    dev.synchronize()
    dev.trim()
    s = dev.memory_stats()
    return {
        "allocated": s.allocated,
        "used": s.used,
        "blocks": s.blocks,
        "buffers": s.buffers,
        "allocations": s.allocations,
        "live": dev.live_objects(),
    }


def _warm(dev: vknb.Device) -> None:
    vknb.asarray(np.zeros(4, np.float32), device=dev).numpy()


def test_leaks_buffer_and_array_loops(dev, rng, record_property):
    _warm(dev)
    before = _snapshot(dev)
    k = vknb.compile(DOUBLE, name="leak_double")
    k_live = _snapshot(dev)
    for i in range(1000):
        n = int(rng.integers(1, 20000))
        if i % 3 == 0:
            b = vknb.Buffer(n * 4)
            b.write(np.ones(n, np.float32))
            if i % 2:
                b.close()  # half closed explicitly, half dropped
        elif i % 3 == 1:
            a = vknb.asarray(rng.standard_normal(n).astype(np.float32))
            k(a, a=2.0, grid=n)
            if i % 2:
                a.close()
        else:
            z = vknb.zeros(n, np.int32)
            assert z.numpy()[-1] == 0
    del b, a, z
    after_loop = _snapshot(dev)
    k.close()
    del k
    after = _snapshot(dev)
    report(
        record_property,
        "leaks_1000_buffers",
        {"before": before, "kernel alive": k_live, "after loop": after_loop, "after": after},
    )
    assert after == before


def test_leaks_kernels_compiled_dispatched_dropped(dev, rng, record_property):
    _warm(dev)
    before = _snapshot(dev)
    dropped: list[Any] = []
    for i in range(100):
        src = DOUBLE.replace("d[i] *= a;", f"d[i] = d[i] * a + float({i % 10});")
        k = vknb.compile(src, name=f"leak_k{i}", local_size=None)
        x = rng.standard_normal(64 + i).astype(np.float32)
        x0 = x.copy()
        k(x, a=2.0, grid=x.size)
        np.testing.assert_allclose(x, 2 * x0 + (i % 10), rtol=1e-5, atol=1e-5)
        dropped.append(weakref.ref(k))
        del k  # dropped, not closed: the garbage collector frees it
    after = _snapshot(dev)
    report(record_property, "leaks_100_kernels", {"before": before, "after": after})
    assert after == before
    assert all(r() is None for r in dropped)  # no Kernel is kept alive by vknb


def test_leaks_recompiling_the_same_source(dev, rng, record_property):
    _warm(dev)
    k0 = vknb.compile(SAXPY, name="recompiled")
    k0.close()
    del k0
    before = _snapshot(dev)
    hits = 0
    x = rng.standard_normal(100).astype(np.float32)
    for _ in range(200):
        k = vknb.compile(SAXPY, name="recompiled")
        hits += k.compile_info.cache_hit
        y = np.zeros(100, np.float32)
        k(x, y, a=1.0, n=100, grid=100)
        np.testing.assert_allclose(y, x, rtol=1e-6)
    del k
    after = _snapshot(dev)
    report(
        record_property,
        "leaks_200_recompiles",
        {"before": before, "after": after, "cache hits": hits},
    )
    assert hits == 200
    assert after == before


# ---------------------------------------------------------------------------------------------
# Out of device memory
# ---------------------------------------------------------------------------------------------


def test_more_than_the_heap_raises_and_the_session_survives(dev, rng, no_leaks):
    heap = max(h.size for h in dev.info.heaps)
    for size in (heap + 4, 2 * heap, 1 << 50):
        with pytest.raises(vknb.AllocationFailed) as ei:
            vknb.Buffer(size)
        msg = str(ei.value)
        assert "heap" in msg and str(heap) in msg and str((size + 3) // 4 * 4) in msg, msg
    x = rng.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)


def test_filling_the_heap_in_pieces_fails_cleanly(dev, rng, record_property):
    """Allocate 30% of the heap at a time: the 4th piece (120%) must fail (<= 2.4 GiB here)."""
    heap = max(h.size for h in dev.info.heaps)
    piece = int(heap * 0.3) // 4096 * 4096
    held: list[vknb.Buffer] = []
    error: vknb.AllocationFailed | None = None
    try:
        for _ in range(4):
            try:
                held.append(vknb.Buffer(piece))
            except vknb.AllocationFailed as e:
                error = e
                break
        report(
            record_property,
            "heap_pieces",
            {"heap": heap, "piece": piece, "allocated before failing": len(held)},
        )
    finally:
        for b in held:
            b.close()
        settle()
    # The session keeps working either way.
    x = rng.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
    assert error is not None, "4 pieces of 30% of the heap were all allocated"
    msg = str(error)
    assert "heap" in msg and ("GiB" in msg or "MiB" in msg or str(piece) in msg), msg


# ---------------------------------------------------------------------------------------------
# Runaway kernel and reset
# ---------------------------------------------------------------------------------------------

_RUNAWAY = """
import json, os, time, numpy as np, vknb
# lavapipe stops any one invocation after 65535 loop iterations, so the runaway is made of
# many invocations, each looping while a push constant says so.
k = vknb.compile('''
layout(local_size_x = 256) in;
layout(binding = 0) buffer D { float data[]; };
layout(push_constant) uniform P { uint flag; } p;
void main() {
    uint i = gl_GlobalInvocationID.x & 3u;
    while (p.flag != 0u) { data[i] += 1.0; }
}''', name="runaway")
d = np.zeros(4, np.float32)
k(d, flag=0, groups=1)  # terminates
t = time.perf_counter()
try:
    k(d, flag=1, groups=65535)
    out = {"raised": None}
except Exception as e:
    out = {"raised": type(e).__name__, "message": str(e),
           "vulkan": isinstance(e, vknb.VulkanError)}
out["elapsed"] = time.perf_counter() - t
print(json.dumps(out), flush=True)
os._exit(0)  # the driver cannot abort the shader: leave without waiting for it
"""


def test_runaway_kernel_times_out(tmp_path, record_property):
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUNAWAY],
        cwd=tmp_path,
        env=_child_env(tmp_path, {"VKNB_TIMEOUT_S": "2"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the runaway kernel did not raise within 60 s: {stdout} {stderr}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = last_json(stdout)
    report(record_property, "runaway", out)
    assert out["raised"] == "DeviceLost" and out["vulkan"], (out, stderr)
    assert "VKNB_TIMEOUT_S" in out["message"] and "2 s" in out["message"]
    assert "vknb.reset()" in out["message"]
    assert 1.5 <= out["elapsed"] < 30


_RESET = """
import json, numpy as np, vknb
out = {}
k = vknb.compile('''
layout(local_size_x = 64) in;
layout(binding = 0) buffer D { float d[]; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < d.length()) d[i] *= 2.0; }''', name="k")
old = vknb.device()
a = vknb.asarray(np.arange(10, dtype=np.float32))
k(a, grid=10)
pinned = vknb.compile(k.source, name="pinned", device=old)
new = vknb.reset()
out["new_device"] = new is vknb.device() and new is not old and old.closed
out["old_closed"] = a.closed
try:
    a.numpy()
    out["old_array"] = "no error"
except vknb.ObjectClosed as e:
    out["old_array"] = "ObjectClosed"
try:
    pinned(np.ones(4, np.float32), grid=4)
    out["pinned"] = "no error"
except vknb.ObjectClosed:
    out["pinned"] = "ObjectClosed"
x = np.arange(100, dtype=np.float32)
k(x, grid=100)  # rebuilt on the new device
out["kernel_after_reset"] = bool((x == 2 * np.arange(100)).all()) and k.device is new
b = vknb.asarray(np.arange(5, dtype=np.float32))
k(b, grid=5)
out["array_after_reset"] = b.numpy().tolist()
s = new.memory_stats()
out["stats"] = [s.buffers, s.allocations]
print(json.dumps(out))
"""


def test_reset_rebuilds_kernels_and_closes_old_arrays(tmp_path):
    res = run_python(_RESET, tmp_path)
    assert res.returncode == 0, res.stderr
    out = last_json(res.stdout)
    assert out["new_device"] and out["old_closed"]
    assert out["old_array"] == "ObjectClosed"
    assert out["pinned"] == "ObjectClosed"
    assert out["kernel_after_reset"]
    assert out["array_after_reset"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert "Traceback" not in res.stderr


# ---------------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------------


class Poller(threading.Thread):
    """Reads statistics and timings in a loop, as a widget refreshing from another thread."""

    def __init__(self, dev: vknb.Device) -> None:
        super().__init__(daemon=True)
        self.dev = dev
        self.stop = threading.Event()
        self.polls = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                s = self.dev.memory_stats()
                assert s.allocated >= s.used >= 0
                recs = vknb.timings(last=20)
                assert all(r.host_ms >= 0 for r in recs)
                self.dev.live_objects()
                self.polls += 1
                time.sleep(0.0005)
        except BaseException as e:
            self.errors.append(e)


def test_polling_while_dispatching(dev, rng, saxpy, record_property):
    poller = Poller(dev)
    poller.start()
    t0 = time.perf_counter()
    try:
        for i in range(200):
            n = 100 + i
            x = rng.standard_normal(n).astype(np.float32)
            y = rng.standard_normal(n).astype(np.float32)
            y0 = y.copy()
            rec = saxpy(x, y, a=2.0, n=n, grid=n)
            assert rec.kernel == "saxpy_fuzz"
            np.testing.assert_allclose(y, y0 + 2 * x, rtol=1e-5, atol=1e-5)
    finally:
        poller.stop.set()
        poller.join(10)
    dt = time.perf_counter() - t0
    report(
        record_property,
        "poll_while_dispatch",
        {"dispatches": 200, "polls": poller.polls, "seconds": round(dt, 2)},
    )
    assert not poller.errors, poller.errors
    assert poller.polls > 0


def test_two_threads_dispatching_their_own_kernels(dev, record_property):
    _warm(dev)
    before = _snapshot(dev)
    errors: list[BaseException] = []
    done = collections.Counter()

    def worker(seed: int, scale: float) -> None:
        try:
            r = np.random.default_rng(seed)
            k = vknb.compile(DOUBLE, name=f"thread{seed}")
            for i in range(100):
                n = int(r.integers(1, 5000))
                x = r.standard_normal(n).astype(np.float32)
                if i % 2:
                    a = vknb.asarray(x)
                    k(a, a=scale, grid=n)
                    got = a.numpy()
                    a.close()
                else:
                    got = x.copy()
                    k(got, a=scale, grid=n)
                np.testing.assert_allclose(got, scale * x, rtol=1e-6, atol=1e-6)
                done[seed] += 1
            k.close()
        except BaseException as e:
            errors.append(e)

    poller = Poller(dev)
    poller.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(s, float(s + 2))) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    poller.stop.set()
    poller.join(10)
    dt = time.perf_counter() - t0
    report(
        record_property,
        "two_threads",
        {"dispatches": dict(done), "polls": poller.polls, "seconds": round(dt, 2)},
    )
    assert not errors, errors
    assert not poller.errors, poller.errors
    assert done == {1: 100, 2: 100}
    assert _snapshot(dev) == before  # counters were updated consistently by both threads


# ---------------------------------------------------------------------------------------------
# Damaged caches (compile_glsl-level cases live in test_compiler.py)
# ---------------------------------------------------------------------------------------------


def _check_double(k: vknb.Kernel, rng: np.random.Generator) -> None:
    d = rng.standard_normal(300).astype(np.float32)
    d0 = d.copy()
    k(d, a=-3.0, grid=300)
    np.testing.assert_allclose(d, -3 * d0, rtol=1e-6)


def test_damaged_spirv_cache_entry_at_kernel_level(dev, tmp_path, monkeypatch, rng):
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path))
    compiler._reset_memory_cache()
    src = DOUBLE + "// kernel-level cache test\n"
    k = vknb.compile(src, name="cache_k")
    k.close()
    entries = list((tmp_path / "spirv").iterdir())
    assert len(entries) == 1
    good = entries[0].read_bytes()
    damaged = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "garbage": bytes(range(256)) * 8,
        "flipped": good[:-9] + bytes([good[-9] ^ 0x40]) + good[-8:],
    }
    for label, bad in damaged.items():
        entries[0].write_bytes(bad)
        compiler._reset_memory_cache()
        k = vknb.compile(src, name="cache_k")
        assert not k.compile_info.cache_hit, label
        _check_double(k, rng)
        k.close()
        assert entries[0].read_bytes() == good, label  # rebuilt
    compiler._reset_memory_cache()
    k = vknb.compile(src, name="cache_k")
    assert k.compile_info.cache_hit
    k.close()


def test_both_caches_damaged_on_a_new_device(dev, tmp_path, monkeypatch, rng):
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path))
    compiler._reset_memory_cache()
    d = vknb.Device(dev.index)
    k = vknb.compile(DOUBLE, name="both", device=d)
    _check_double(k, rng)
    d.close()
    (entry,) = list((tmp_path / "spirv").iterdir())
    entry.write_bytes(entry.read_bytes()[:40])
    d.pipeline_cache_path().write_bytes(b"\xff" * 64)
    compiler._reset_memory_cache()
    with pytest.warns(RuntimeWarning, match="pipeline cache"):
        d2 = vknb.Device(dev.index)
    k = vknb.compile(DOUBLE, name="both", device=d2)
    assert not k.compile_info.cache_hit
    _check_double(k, rng)
    d2.close()


def test_unusable_cache_dir_at_kernel_level(dev, tmp_path, monkeypatch, rng):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("VKNB_CACHE_DIR", str(blocker / "cache"))
    compiler._reset_memory_cache()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = vknb.Device(dev.index)
        k = vknb.compile(DOUBLE + "// unusable cache dir\n", name="nocache", device=d)
        _check_double(k, rng)
        d.close()  # saving the pipeline cache fails quietly
    assert all("VKNB_CACHE_DIR" in str(r.message) for r in rec), [str(r.message) for r in rec]
    compiler._reset_memory_cache()


# ---------------------------------------------------------------------------------------------
# Shutdown with live objects
# ---------------------------------------------------------------------------------------------

_LIVE_AT_EXIT = """
import numpy as np, vknb
SAXPY = '''
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
'''
k = vknb.compile(SAXPY, name="saxpy")
x = np.ones(1000, np.float32)
y = np.zeros(1000, np.float32)
k(x, y, a=1.0, n=1000, grid=1000)
ax, ay = vknb.asarray(x), vknb.asarray(y)
k(ax, ay, a=1.0, n=1000, grid=1000)
bufs = [vknb.Buffer(n) for n in (1, 100, 1 << 20, 100 << 20)]
up = vknb.Buffer(64, memory="upload")
rb = vknb.Buffer(64, memory="readback")
other = vknb.Device(0)
k2 = vknb.compile(SAXPY, name="saxpy2", device=other)
bx, by = vknb.asarray(x, device=other), vknb.asarray(y, device=other)
k2(bx, by, a=1.0, n=1000, grid=1000)
cycle = {"kernel": k, "array": ax}
cycle["self"] = cycle
PENDING
print("done", flush=True)
"""

_PENDING = """
pending = [k(ax, ay, a=1.0, n=1000, grid=1000, wait=False) for _ in range(3)]
pending2 = k2(bx, by, a=1.0, n=1000, grid=1000, wait=False)
"""


def _assert_clean_exit(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("done")
    for bad in ("Traceback", "Exception ignored", "Error", "Segmentation", "Fatal"):
        assert bad not in res.stderr, res.stderr


@pytest.mark.parametrize("validation", ["0", "1"], ids=["plain", "validation"])
def test_exit_with_live_objects_is_clean(tmp_path, validation):
    res = run_python(
        _LIVE_AT_EXIT.replace("PENDING", ""), tmp_path, {"VKNB_VALIDATION": validation}
    )
    _assert_clean_exit(res)


def test_exit_with_pending_submissions_is_clean(tmp_path):
    res = run_python(_LIVE_AT_EXIT.replace("PENDING", _PENDING), tmp_path)
    _assert_clean_exit(res)


def test_exit_with_pending_submissions_is_clean_under_validation(tmp_path):
    res = run_python(_LIVE_AT_EXIT.replace("PENDING", _PENDING), tmp_path, {"VKNB_VALIDATION": "1"})
    _assert_clean_exit(res)
