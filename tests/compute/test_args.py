"""Kernel arguments (ARCHITECTURE.md "Argument binding"): binding by position and by name,
uniform and push-constant blocks, structs, vectors, matrices, specialization constants,
launch sizes, and bad calls.

Every bad call must raise a TypeError or ValueError that names the binding or member at
fault, and the kernel must still give the right answer afterwards (random calls: see
test_args_fuzz.py).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import SAXPY, check_saxpy, saxpy_data

import vknb

STRUCTS = """
layout(local_size_x = 32) in;
struct Particle { vec3 pos; float mass; int id; };
layout(std430, binding = 0) readonly buffer Parts { Particle parts[]; } inp;
layout(std430, binding = 1) writeonly buffer Res { vec4 res[]; };
layout(push_constant) uniform PC { uint n; int bias; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    Particle p = inp.parts[i];
    res[i] = vec4(p.pos * p.mass, float(p.id + pc.bias));
}
"""


VEC4 = """
layout(local_size_x = 16) in;
layout(binding = 0) buffer V { vec4 v[]; };
layout(binding = 1) uniform Scale { vec4 s; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < v.length()) v[i] = v[i].wzyx * s;
}
"""


MATRIX = """
layout(local_size_x = 16) in;
layout(std140, binding = 0) uniform M { mat4 m; float scale; } u;
layout(binding = 1) readonly buffer In { vec4 vin[]; };
layout(binding = 2) writeonly buffer Out { vec4 vout[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < vin.length()) vout[i] = u.m * vin[i] * u.scale;
}
"""


MATRIX_ROW_MAJOR = MATRIX.replace(
    "layout(std140, binding = 0) uniform", "layout(std140, row_major, binding = 0) uniform"
)


SPEC = """
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const float SCALE = 1.0;
layout(constant_id = 2) const int OFFSET = 0;
layout(constant_id = 3) const bool NEGATE = false;
layout(binding = 0) buffer D { float d[]; };
layout(binding = 1) uniform U { float u; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < d.length()) {
        float v = d[i] * SCALE + float(OFFSET) + u;
        d[i] = NEGATE ? -v : v;
    }
}
"""


LITERAL_SIZE = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer D { float d[]; };
void main() { d[gl_GlobalInvocationID.x] += 1.0; }
"""


GRID2D = """
layout(local_size_x = 8, local_size_y = 8) in;
layout(binding = 0) writeonly buffer O { uint o[]; };
layout(push_constant) uniform P { uint w; uint h; };
void main() {
    uvec3 g = gl_GlobalInvocationID;
    if (g.x < w && g.y < h) o[g.y * w + g.x] = g.x + 1000u * g.y;
}
"""


GRID3D = """
layout(local_size_x = 4, local_size_y = 4, local_size_z = 2) in;
layout(binding = 0) buffer O { uint o[]; };
layout(push_constant) uniform P { uint w; uint h; uint d; };
void main() {
    uvec3 g = gl_GlobalInvocationID;
    if (g.x < w && g.y < h && g.z < d)
        o[(g.z * h + g.y) * w + g.x] = g.x + 100u * g.y + 10000u * g.z;
}
"""


GROUP_IDS = """
layout(local_size_x = 4) in;
layout(binding = 0) buffer O { uint o[]; };
void main() {
    uvec3 w = gl_WorkGroupID;
    uvec3 n = gl_NumWorkGroups;
    uint flat_ = (w.z * n.y + w.y) * n.x + w.x;
    o[flat_ * 4u + gl_LocalInvocationID.x] = 1u;
}
"""


PREFIXED = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer B { uint n; float data[]; };
layout(binding = 1) uniform U { vec4 pad; float add; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) data[i] += add; }
"""


# A block with only a uint before its runtime array (no uniform).
PREFIXED_PLAIN = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer B { uint n; float data[]; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) data[i] += 1.0; }
"""


# ---------------------------------------------------------------------------------------------
# Binding by position and by name
# ---------------------------------------------------------------------------------------------


BINDING_FORMS: dict[str, Callable[..., Any]] = {
    "positional": lambda k, x, y, a, n: k(x, y, a=a, n=n, grid=n),
    "instance names": lambda k, x, y, a, n: k(xs=x, ys=y, a=a, n=n, grid=n),
    "block names": lambda k, x, y, a, n: k(X=x, Y=y, a=a, n=n, grid=n),
    "member names": lambda k, x, y, a, n: k(x=x, y=y, a=a, n=n, grid=n),
    "mixed": lambda k, x, y, a, n: k(x, ys=y, a=a, n=n, grid=n),
    "push dict by block name": lambda k, x, y, a, n: k(x, y, P={"a": a, "n": n}, grid=n),
    "push dict and member": lambda k, x, y, a, n: k(x, y, P={"a": a}, n=n, grid=n),
    "numpy scalars": lambda k, x, y, a, n: k(x, y, a=np.float32(a), n=np.uint32(n), grid=n),
    "groups": lambda k, x, y, a, n: k(x, y, a=a, n=n, groups=-(-n // 64)),
    "grid tuple": lambda k, x, y, a, n: k(x, y, a=a, n=n, grid=(n, 1, 1)),
}


@pytest.mark.parametrize("form", list(BINDING_FORMS))
def test_binding_forms(saxpy, rng, form):
    n = int(rng.integers(1, 3000))
    x, y = saxpy_data(rng, n)
    y0 = y.copy()
    a = float(rng.standard_normal())
    rec = BINDING_FORMS[form](saxpy, x, y, a, n)
    assert isinstance(rec, vknb.DispatchRecord)
    np.testing.assert_allclose(y, y0 + np.float32(a) * x, rtol=1e-5, atol=1e-5)


def test_reflection_names(saxpy):
    r = saxpy.reflection
    assert [b.name for b in r.bindings] == ["xs", "ys"]
    assert r.binding("xs") is r.binding("X") is r.binding("x")
    assert r.bindings[0].readonly and not r.bindings[1].readonly
    assert [m.name for m in r.push_constants.members] == ["a", "n"]
    assert saxpy.local_size == (64, 1, 1)
    assert saxpy.name == "saxpy" and saxpy.source == SAXPY
    assert saxpy.spirv[:4] == b"\x03\x02\x23\x07"


# ---------------------------------------------------------------------------------------------
# Uniform blocks, structs, vectors, matrices
# ---------------------------------------------------------------------------------------------


def test_uniform_block_from_dict_scalar_and_array(rng):
    k = vknb.compile(SPEC, name="uni")
    u_dtype = k.reflection.binding("U").block.dtype
    for value in (0.25, np.float32(0.25), {"u": 0.25}, np.array((0.25,), dtype=u_dtype)):
        d = rng.standard_normal(100).astype(np.float32)
        d0 = d.copy()
        k(d, U=value, grid=100)
        np.testing.assert_allclose(d, d0 + 0.25, rtol=1e-6, atol=1e-6)
    d = rng.standard_normal(100).astype(np.float32)
    d0 = d.copy()
    k(d, np.float32(-2.0), grid=100)  # positional too
    np.testing.assert_allclose(d, d0 - 2, rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="'U' has no member 'v'"):
        k(d, U={"v": 1.0}, grid=100)
    with pytest.raises(TypeError, match="'u'"):
        k(d, U={}, grid=100)
    with pytest.raises(TypeError, match="'U'"):
        k(d, U=np.zeros(4, np.float64), grid=100)
    with pytest.raises(TypeError, match="'u'"):
        k(d, U="fast", grid=100)
    k.close()


def test_struct_array_fields(rng):
    k = vknb.compile(STRUCTS, name="structs")
    dt = k.reflection.binding("parts").dtype
    assert dt.names == ("pos", "mass", "id")
    assert dt.fields["pos"][1] == 0 and dt.fields["mass"][1] == 12 and dt.fields["id"][1] == 16
    assert dt.itemsize == 32  # std430: the struct is aligned to 16 bytes
    assert k.reflection.binding("inp") is k.reflection.binding("Parts")
    n = 200
    parts = np.zeros(n, dtype=dt)
    parts["pos"] = rng.standard_normal((n, 3)).astype(np.float32)
    parts["mass"] = rng.random(n, dtype=np.float32)
    parts["id"] = rng.integers(-500, 500, n, dtype=np.int32)
    res = np.zeros((n, 4), np.float32)
    rec = k(parts, res, n=n, bias=7, grid=n)
    np.testing.assert_allclose(
        res[:, :3], parts["pos"] * parts["mass"][:, None], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(res[:, 3], (parts["id"] + 7).astype(np.float32))
    assert rec.bytes_in == parts.nbytes and rec.bytes_out == res.nbytes
    # Push constants by the block name (the instance name is `pc`).
    res2 = np.zeros_like(res)
    k(parts=parts, res=res2, PC={"n": n, "bias": 7}, grid=n)
    np.testing.assert_array_equal(res2, res)
    # A struct array of the wrong dtype says how to build the right one.
    bad = np.zeros(n, dtype=[("pos", "<f4", 3), ("mass", "<f4"), ("id", "<i4")])  # packed: 20 B
    with pytest.raises(TypeError, match=r"'inp'.*reflection\.binding"):
        k(bad, res, n=n, bias=0, grid=n)
    k.close()


def test_vec4_arrays(rng):
    k = vknb.compile(VEC4, name="vec4")
    assert k.reflection.binding("v").dtype == np.dtype(("<f4", (4,)))
    v = rng.standard_normal((50, 4)).astype(np.float32)
    v0 = v.copy()
    s = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    k(v, Scale={"s": s}, grid=50)
    np.testing.assert_allclose(v, v0[:, ::-1] * s, rtol=1e-6)
    flat = v0.ravel().copy()  # a flat float32 array of 4*N elements is accepted too
    k(flat, Scale=s.tolist(), grid=50)  # a one-member block takes the member's value
    np.testing.assert_allclose(flat.reshape(50, 4), v0[:, ::-1] * s, rtol=1e-6)
    with pytest.raises(ValueError, match=r"'V'.*groups of 4"):
        k(np.zeros((5, 3), np.float32), Scale={"s": s}, grid=5)
    with pytest.raises(ValueError, match=r"'s'.*shape"):
        k(v, Scale={"s": s[:3]}, grid=50)
    with pytest.raises(TypeError, match="'V'"):
        k(v.astype(np.float64), Scale={"s": s}, grid=50)
    k.close()


@pytest.mark.parametrize("row_major", [False, True], ids=["column_major", "row_major"])
def test_mat4_uniform_layout(rng, row_major):
    """GLSL is column-major: the numpy bytes of M are seen as transpose(M) (unless row_major)."""
    k = vknb.compile(MATRIX_ROW_MAJOR if row_major else MATRIX, name="mat4")
    m_member = k.reflection.binding("u").block.members[0]
    assert m_member.name == "m" and m_member.row_major == row_major
    M = rng.standard_normal((4, 4)).astype(np.float32)
    vin = rng.standard_normal((64, 4)).astype(np.float32)
    vout = np.zeros_like(vin)
    k(u={"m": M, "scale": 2.0}, vin=vin, vout=vout, grid=64)
    seen = M if row_major else M.T
    expected = (seen @ vin.T).T * 2.0  # the shader computes m * v for each v
    np.testing.assert_allclose(vout, expected, rtol=1e-5, atol=1e-5)
    if not row_major:
        # Passing M.T gives M * v.
        k(u={"m": M.T.copy(), "scale": 1.0}, vin=vin, vout=vout, grid=64)
        np.testing.assert_allclose(vout, (M @ vin.T).T, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"'m'.*shape"):
        k(u={"m": np.eye(3, dtype=np.float32), "scale": 1.0}, vin=vin, vout=vout, grid=64)
    with pytest.raises(TypeError, match="'scale'"):
        k(u={"m": M}, vin=vin, vout=vout, grid=64)
    k.close()


# ---------------------------------------------------------------------------------------------
# Specialization constants and workgroup size
# ---------------------------------------------------------------------------------------------


def test_spec_constants_by_name(rng):
    k = vknb.compile(
        SPEC, name="spec", constants={"SCALE": 3.0, "OFFSET": -2, "NEGATE": True}, local_size=32
    )
    assert k.local_size == (32, 1, 1)
    assert k.constants == {"SCALE": 3.0, "OFFSET": -2, "NEGATE": True}
    d = rng.standard_normal(100).astype(np.float32)
    d0 = d.copy()
    rec = k(d, U=0.5, grid=100)
    assert rec.groups == (4, 1, 1) and rec.local_size == (32, 1, 1)
    np.testing.assert_allclose(d, -(d0 * 3 - 2 + 0.5), rtol=1e-5, atol=1e-5)
    # The defaults, and another local size from the same source.
    k2 = vknb.compile(SPEC, name="spec2", local_size=(16,))
    assert k2.local_size == (16, 1, 1)
    d = d0.copy()
    rec = k2(d, U=0.0, grid=100)
    assert rec.groups == (7, 1, 1)
    np.testing.assert_allclose(d, d0, rtol=1e-6)
    # By id, and bool from 0/1 ints.
    k3 = vknb.compile(SPEC, name="spec3", constants={1: 2.0, 3: 1}, local_size=64)
    d = d0.copy()
    k3(d, U=0.0, grid=100)
    np.testing.assert_allclose(d, -2 * d0, rtol=1e-6)
    for kk in (k, k2, k3):
        kk.close()


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"constants": {"NOPE": 1}}, TypeError, "NOPE.*SCALE"),
        ({"constants": {"SCALE": "x"}}, TypeError, "SCALE"),
        ({"constants": {"OFFSET": 1.5}}, TypeError, "OFFSET"),
        ({"constants": {"OFFSET": 2**40}}, ValueError, "OFFSET"),
        ({"constants": {"NEGATE": 2}}, TypeError, "NEGATE"),
        ({"local_size": 0}, ValueError, "local_size"),
        ({"local_size": (32, 2)}, ValueError, "local_size_y"),
        ({"local_size": 4096}, ValueError, "workgroup size"),
        ({"local_size": (1, 2, 3, 4)}, TypeError, "local_size"),
    ],
)
def test_bad_constants_and_local_size(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        vknb.compile(SPEC, name="spec_bad", **kwargs)


def test_local_size_on_a_literal_size_is_an_error():
    with pytest.raises(ValueError, match=r"local_size_x = 64.*local_size_x_id"):
        vknb.compile(LITERAL_SIZE, name="literal", local_size=32)
    k = vknb.compile(LITERAL_SIZE, name="literal", local_size=64)  # the same size is fine
    assert k.local_size == (64, 1, 1)
    k.close()


# ---------------------------------------------------------------------------------------------
# Grids and groups
# ---------------------------------------------------------------------------------------------


def test_grid_2d():
    k = vknb.compile(GRID2D, name="grid2d")
    w, h = 20, 13
    o = np.zeros(w * h, np.uint32)
    rec = k(o, w=w, h=h, grid=(w, h))
    assert rec.groups == (3, 2, 1) and rec.local_size == (8, 8, 1)
    assert rec.invocations == 3 * 2 * 64
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    np.testing.assert_array_equal(o.reshape(h, w), gx + 1000 * gy)
    o[:] = 0
    rec = k(o, w=w, h=h, groups=(3, 2))
    assert rec.groups == (3, 2, 1)
    np.testing.assert_array_equal(o.reshape(h, w), gx + 1000 * gy)
    k.close()


def test_grid_3d():
    k = vknb.compile(GRID3D, name="grid3d")
    w, h, d = 5, 6, 7
    o = np.zeros(w * h * d, np.uint32)
    rec = k(o, w=w, h=h, d=d, grid=(w, h, d))
    assert rec.groups == (2, 2, 4)
    z, y, x = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    np.testing.assert_array_equal(o.reshape(d, h, w), x + 100 * y + 10000 * z)
    k.close()


@pytest.mark.parametrize("groups", [1, 5, (3, 2), (2, 3, 4), [4, 1, 2]])
def test_groups_count_workgroups(groups):
    k = vknb.compile(GROUP_IDS, name="groups")
    g = (groups,) if isinstance(groups, int) else tuple(groups)
    g = g + (1,) * (3 - len(g))
    total = g[0] * g[1] * g[2]
    o = np.zeros(total * 4 + 8, np.uint32)
    rec = k(o, groups=groups)
    assert rec.groups == g and rec.invocations == total * 4
    np.testing.assert_array_equal(o[: total * 4], 1)
    assert not o[total * 4 :].any()
    k.close()


# ---------------------------------------------------------------------------------------------
# Bad inputs: TypeError / ValueError naming the binding or member, then a good call works
# ---------------------------------------------------------------------------------------------


X0 = np.ones(100, np.float32)


def _y() -> np.ndarray:
    return np.zeros(100, np.float32)


BAD_CALLS: list[tuple[str, Callable[[vknb.Kernel], Any], type[Exception], str]] = [
    (
        "wrong dtype",
        lambda k: k(X0.astype(np.float64), _y(), a=1.0, n=100, grid=100),
        TypeError,
        "'xs'.*float32.*float64",
    ),
    (
        "wrong dtype int",
        lambda k: k(X0, _y().astype(np.int32), a=1.0, n=100, grid=100),
        TypeError,
        "'ys'.*int32",
    ),
    ("big-endian", lambda k: k(X0.astype(">f4"), _y(), a=1.0, n=100, grid=100), TypeError, "'xs'"),
    (
        "structured for float",
        lambda k: k(np.zeros(100, [("f", "<f4")]), _y(), a=1.0, n=100, grid=100),
        TypeError,
        "'xs'",
    ),
    (
        "non-contiguous",
        lambda k: k(np.ones(200, np.float32)[::2], _y(), a=1.0, n=100, grid=100),
        ValueError,
        "'xs'.*contiguous",
    ),
    (
        "fortran order",
        lambda k: k(np.asfortranarray(np.ones((10, 10), np.float32)), _y(), a=1.0, n=100, grid=100),
        ValueError,
        "'xs'.*contiguous",
    ),
    (
        "empty",
        lambda k: k(np.ones(0, np.float32), _y(), a=1.0, n=100, grid=100),
        ValueError,
        "'xs'.*empty",
    ),
    (
        "read-only output",
        lambda k: k(X0, np.frombuffer(bytes(400), np.float32), a=1.0, n=100, grid=100),
        ValueError,
        "'ys'.*read-only",
    ),
    ("unknown kwarg", lambda k: k(X0, _y(), a=1.0, n=100, b=3, grid=100), TypeError, "'b'.*xs"),
    ("missing binding", lambda k: k(X0, a=1.0, n=100, grid=100), TypeError, "missing.*ys"),
    (
        "duplicate binding",
        lambda k: k(X0, _y(), y=_y(), a=1.0, n=100, grid=100),
        TypeError,
        "'ys' twice: as 'y'",
    ),
    (
        "too many positional",
        lambda k: k(X0, _y(), _y(), a=1.0, n=100, grid=100),
        TypeError,
        "2 positional.*xs, ys",
    ),
    ("missing push constant", lambda k: k(X0, _y(), n=100, grid=100), TypeError, "'a'"),
    (
        "unknown push member",
        lambda k: k(X0, _y(), P={"a": 1.0, "n": 1, "z": 2}, grid=100),
        TypeError,
        "'z'.*a, n",
    ),
    ("push block not a dict", lambda k: k(X0, _y(), P=3.0, grid=100), TypeError, "'P'"),
    ("float for uint", lambda k: k(X0, _y(), a=1.0, n=100.0, grid=100), TypeError, "'n'.*uint"),
    ("negative uint", lambda k: k(X0, _y(), a=1.0, n=-1, grid=100), ValueError, "'n'.*-1"),
    ("uint too big", lambda k: k(X0, _y(), a=1.0, n=2**32, grid=100), ValueError, "'n'"),
    ("bool for float", lambda k: k(X0, _y(), a=True, n=100, grid=100), TypeError, "'a'"),
    ("str for float", lambda k: k(X0, _y(), a="1", n=100, grid=100), TypeError, "'a'"),
    ("None for float", lambda k: k(X0, _y(), a=None, n=100, grid=100), TypeError, "'a'"),
    ("array for float", lambda k: k(X0, _y(), a=np.ones(2), n=100, grid=100), TypeError, "'a'"),
    ("grid 0", lambda k: k(X0, _y(), a=1.0, n=100, grid=0), ValueError, "grid"),
    ("grid negative", lambda k: k(X0, _y(), a=1.0, n=100, grid=(4, -1)), ValueError, "grid"),
    ("grid float", lambda k: k(X0, _y(), a=1.0, n=100, grid=100.0), TypeError, "grid"),
    ("grid 4-d", lambda k: k(X0, _y(), a=1.0, n=100, grid=(1, 1, 1, 1)), TypeError, "grid"),
    ("grid bool", lambda k: k(X0, _y(), a=1.0, n=100, grid=True), TypeError, "grid"),
    (
        "grid beyond limit",
        lambda k: k(X0, _y(), a=1.0, n=100, grid=(1, 1 << 22)),
        ValueError,
        "maxComputeWorkGroupCount",
    ),
    (
        "groups beyond limit",
        lambda k: k(X0, _y(), a=1.0, n=100, groups=(1, 1 << 31)),
        ValueError,
        "maxComputeWorkGroupCount",
    ),
    ("groups 0", lambda k: k(X0, _y(), a=1.0, n=100, groups=0), ValueError, "groups"),
    (
        "grid and groups",
        lambda k: k(X0, _y(), a=1.0, n=100, grid=100, groups=2),
        TypeError,
        "not both",
    ),
    ("neither grid nor groups", lambda k: k(X0, _y(), a=1.0, n=100), TypeError, "grid="),
    (
        "list for binding",
        lambda k: k([1.0] * 100, _y(), a=1.0, n=100, grid=100),
        TypeError,
        "'xs'.*list",
    ),
    (
        "bytes for binding",
        lambda k: k(bytes(400), _y(), a=1.0, n=100, grid=100),
        TypeError,
        "'xs'.*bytes",
    ),
    ("scalar for binding", lambda k: k(1.0, _y(), a=1.0, n=100, grid=100), TypeError, "'xs'"),
    ("None for binding", lambda k: k(None, _y(), a=1.0, n=100, grid=100), TypeError, "'xs'"),
    (
        "Array of wrong dtype",
        lambda k: k(vknb.asarray(np.ones(100, np.int32)), _y(), a=1.0, n=100, grid=100),
        TypeError,
        "'xs'",
    ),
]


@pytest.mark.parametrize(
    ("what", "call", "exc", "pattern"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS]
)
def test_bad_call_raises_and_kernel_still_works(saxpy, rng, what, call, exc, pattern):
    with pytest.raises(exc) as ei:
        call(saxpy)
    assert type(ei.value) in (TypeError, ValueError), what
    assert re.search(pattern, str(ei.value)), f"{what}: {ei.value}"
    check_saxpy(saxpy, rng)


def test_binding_smaller_than_the_block_fixed_part(rng):
    k = vknb.compile(PREFIXED, name="prefixed")
    u = {"pad": np.zeros(4, np.float32), "add": 1.0}
    with pytest.raises(ValueError, match=r"'B'.*at least 4 bytes"):
        k(np.zeros(3, np.uint8), U=u, grid=1)
    with pytest.raises(ValueError, match=r"'U'.*at least 20 bytes"):
        k(np.zeros(8, np.uint8), np.zeros(8, np.uint8), grid=1)
    # Raw bytes: the uint n, then the floats.
    raw = np.zeros(4 + 4 * 50, np.uint8)
    raw[:4] = np.frombuffer(np.uint32(50).tobytes(), np.uint8)
    data = rng.standard_normal(50).astype(np.float32)
    raw[4:] = data.view(np.uint8)
    k(raw, U=u, grid=50)
    np.testing.assert_allclose(raw[4:].view(np.float32), data + 1, rtol=1e-6)
    k.close()


def test_kernel_binding_smaller_than_fixed_part(dev):
    k = vknb.compile(PREFIXED_PLAIN, name="prefixed")
    with pytest.raises(ValueError, match=r"'B'.*at least 4 bytes"):
        k(np.zeros(2, np.uint8), grid=1)
    # The right bytes work: n followed by the data.
    raw = np.zeros(4 + 4 * 10, np.uint8)
    raw[:4] = np.frombuffer(np.uint32(10).tobytes(), np.uint8)
    k(raw, grid=10)
    np.testing.assert_array_equal(raw[4:].view(np.float32), np.ones(10))
    k.close()


def test_float_overflow_raises_without_a_numpy_warning(saxpy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"'a'.*overflows"):
            saxpy(X0, _y(), a=1e300, n=100, grid=100)


def test_array_on_another_device_is_rejected(saxpy, rng, dev):
    with vknb.Device(dev.index) as other:
        a = vknb.asarray(X0, device=other)
        with pytest.raises(ValueError, match=r"'xs'.*another|'xs'.*on"):
            saxpy(a, _y(), a=1.0, n=100, grid=100)
    check_saxpy(saxpy, rng)
