"""Argument fuzzing: 300 random calls of a bounds-checked saxpy (hypothesis, derandomized),
with no fault (about 40%), one or two: wrong dtypes, layouts and types of bindings, missing,
doubled or unknown arguments, bad push-constant values, bad launch sizes.

A call with a fault must raise a TypeError or ValueError naming one of its culprits; one
without must give numpy's answer; after every call a good call still works.  The module
has its own ``saxpy`` (the bounds-checked one) and ``check_saxpy``: the source of the
function that hypothesis runs seeds its examples, so it is kept as it was written.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from helpers import FUZZ, SAXPY_BOUNDED, report
from hypothesis import given, settings
from hypothesis import strategies as st

import vknb


@pytest.fixture(scope="module")
def saxpy() -> Iterator[vknb.Kernel]:
    k = vknb.compile(SAXPY_BOUNDED, name="saxpy_fuzz")
    yield k
    k.close()


def check_saxpy(k: vknb.Kernel, rng: np.random.Generator, n: int = 333) -> None:
    """A good call gives the right answer."""
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    y0 = y.copy()
    k(x, y, a=0.5, n=n, grid=n)
    np.testing.assert_allclose(y, y0 + np.float32(0.5) * x, rtol=1e-5, atol=1e-6)


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
        # (a bool is not a fault: GLSL keeps a block's bool as a 32-bit integer, so integer
        # members take True/False as 1/0)
        kind = draw(st.sampled_from(["negative", "huge", "float", "npfloat", "str"]))
        call.n = {
            "negative": draw(st.integers(-(2**40), -1)),
            "str": "7",
            "huge": draw(st.integers(2**32, 2**70)),
            "float": 3.0,
            "npfloat": np.float32(3.0),
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
