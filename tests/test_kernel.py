"""Kernels: argument binding (ARCHITECTURE.md "Argument binding"), dispatch, records, errors.

Every result is checked against numpy on fresh random inputs.  Every bad call must raise a
TypeError or ValueError that names the binding or member at fault, and the kernel must still
give the right answer afterwards.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import BUSY_SRC

import vknb
from vknb import timing

REPO = Path(__file__).resolve().parents[1]

SAXPY = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; } xs;
layout(set = 0, binding = 1) buffer Y { float y[]; } ys;
layout(push_constant) uniform P { float a; uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < n) ys.y[i] += a * xs.x[i];
}
"""

WRITEONLY = """
layout(local_size_x = 32) in;
layout(binding = 0) readonly buffer In { int src[]; };
layout(binding = 1) writeonly buffer Out { int dst[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < src.length()) dst[i] = 3 * src[i] - 1;
}
"""

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


@pytest.fixture(scope="module")
def saxpy() -> vknb.Kernel:
    return vknb.compile(SAXPY, name="saxpy")


def _saxpy_data(rng: np.random.Generator, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    return x, y


def check_saxpy(k: vknb.Kernel, rng: np.random.Generator, n: int = 777) -> None:
    """A good call gives the right answer."""
    x, y = _saxpy_data(rng, n)
    y0 = y.copy()
    k(x, y, a=1.5, n=n, grid=n)
    np.testing.assert_allclose(y, y0 + np.float32(1.5) * x, rtol=1e-5, atol=1e-6)


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
    x, y = _saxpy_data(rng, n)
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


def test_readonly_not_downloaded_and_write_back_in_place(saxpy, rng):
    x, y = _saxpy_data(rng)
    x.setflags(write=False)  # a readonly binding accepts a read-only array
    y0 = y.copy()
    y_id = id(y)
    rec = saxpy(x, y, a=2.0, n=y.size, grid=y.size)
    assert id(y) == y_id
    np.testing.assert_allclose(y, y0 + 2 * x, rtol=1e-5, atol=1e-6)
    assert rec.bytes_in == x.nbytes + y.nbytes
    assert rec.bytes_out == y.nbytes  # x is readonly: never downloaded
    # A contiguous view into a larger array writes back into its base.
    big = np.zeros(3000, np.float32)
    view = big[1000:2000]
    saxpy(x, view, a=1.0, n=1000, grid=1000)
    np.testing.assert_allclose(big[1000:2000], x, rtol=1e-6)
    assert not big[:1000].any() and not big[2000:].any()


def test_writeonly_not_uploaded(rng):
    k = vknb.compile(WRITEONLY, name="wo")
    b_in, b_out = k.reflection.bindings
    assert b_in.readonly and b_out.writeonly
    src = rng.integers(-1000, 1000, 500, dtype=np.int32)
    dst = np.full(500, 12345, np.int32)
    rec = k(src, dst, grid=500)
    np.testing.assert_array_equal(dst, 3 * src - 1)
    assert rec.bytes_in == src.nbytes  # dst is writeonly: never uploaded
    assert rec.bytes_out == dst.nbytes  # src is readonly: never downloaded
    k.close()


def test_device_arrays_move_no_bytes(saxpy, rng):
    x, y = _saxpy_data(rng)
    ax, ay = vknb.asarray(x), vknb.asarray(y)
    rec = saxpy(ax, ay, a=3.0, n=x.size, grid=x.size)
    assert rec.bytes_in == 0 and rec.bytes_out == 0
    np.testing.assert_allclose(ay.numpy(), y + 3 * x, rtol=1e-5, atol=1e-5)
    # Mixing: only the numpy side moves.
    y2 = y.copy()
    rec = saxpy(ax, y2, a=1.0, n=x.size, grid=x.size)
    assert rec.bytes_in == y2.nbytes and rec.bytes_out == y2.nbytes
    np.testing.assert_allclose(y2, y + x, rtol=1e-5, atol=1e-6)
    # A raw Buffer binds too.
    buf = vknb.Buffer(x.nbytes)
    buf.write(y)
    saxpy(ax, buf, a=1.0, n=x.size, grid=x.size)
    np.testing.assert_allclose(buf.read(np.float32), y + x, rtol=1e-5, atol=1e-6)
    for o in (ax, ay, buf):
        o.close()


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
# Grids, groups, records
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


def test_dispatch_record_fields(saxpy, rng, dev):
    x, y = _saxpy_data(rng, 5000)
    t0 = time.time()
    rec = saxpy(x, y, a=1.0, n=5000, grid=5000)
    assert rec.kernel == "saxpy"
    assert rec.groups == (79, 1, 1) and rec.local_size == (64, 1, 1)
    assert rec.invocations == 79 * 64
    assert rec.device == dev.info.name
    if dev.info.timestamps:
        assert rec.gpu_ms is not None and rec.gpu_ms >= 0
    assert rec.host_ms > 0
    assert t0 - 1 <= rec.time <= time.time() + 1
    assert rec.bytes_in == 2 * x.nbytes and rec.bytes_out == y.nbytes
    assert rec.kernel_bytes == 3 * x.nbytes  # x read; y read and written
    assert rec.bandwidth_gbs is None or rec.bandwidth_gbs > 0
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["kernel"] == "saxpy" and d["groups"] == [79, 1, 1]


def test_gpu_times_wherever_the_queue_has_timestamps(saxpy, rng, dev):
    if dev.info.type == "cpu":
        assert dev.info.timestamps  # lavapipe has them: CI must measure GPU times
    x, y = _saxpy_data(rng)
    rec = saxpy(x, y, a=1.0, n=x.size, grid=x.size)
    if dev.info.timestamps:
        assert rec.gpu_ms is not None and rec.gpu_ms >= 0
    else:
        assert rec.gpu_ms is None


def test_timings_append_and_filter(saxpy, rng):
    x, y = _saxpy_data(rng, 100)
    seen: list[vknb.DispatchRecord] = []
    timing.add_listener(seen.append)
    try:
        before = len(vknb.timings())
        recs = [saxpy(x, y, a=1.0, n=100, grid=100) for _ in range(3)]
    finally:
        timing.remove_listener(seen.append)
    after = vknb.timings()
    assert len(after) == min(before + 3, timing.MAX_RECORDS)
    assert after[-3:] == recs and seen == recs
    assert vknb.timings(last=1) == [recs[-1]]
    assert vknb.timings(last=0) == []
    assert all(r.kernel == "saxpy" for r in vknb.timings(kernel="saxpy"))
    assert vknb.timings(kernel="no-such-kernel") == []
    saxpy(x, y, a=1.0, n=100, grid=100)
    assert seen == recs  # the listener was removed


def test_async_dispatch_on_device_arrays(saxpy, rng):
    x, y = _saxpy_data(rng)
    ax, ay = vknb.asarray(x), vknb.asarray(y)
    n_before = len(vknb.timings(kernel="saxpy"))
    sub = saxpy(ax, ay, a=2.0, n=x.size, grid=x.size, wait=False)
    assert isinstance(sub, vknb.Submission)
    vknb.synchronize()
    assert sub.done
    assert len(vknb.timings(kernel="saxpy")) == n_before + 1
    np.testing.assert_allclose(ay.numpy(), y + 2 * x, rtol=1e-5, atol=1e-5)
    rec = saxpy(ax, ay, a=1.0, n=x.size, grid=x.size, wait=False).wait()
    assert isinstance(rec, vknb.DispatchRecord) and rec.kernel == "saxpy"
    np.testing.assert_allclose(ay.numpy(), y + 3 * x, rtol=1e-5, atol=1e-5)
    # Many asynchronous dispatches run in order (more than the pipeline's ring of slots).
    subs = [saxpy(ax, ay, a=1.0, n=x.size, grid=x.size, wait=False) for _ in range(12)]
    vknb.synchronize()
    assert all(s.done for s in subs)
    np.testing.assert_allclose(ay.numpy(), y + 15 * x, rtol=1e-4, atol=1e-4)
    ax.close()
    ay.close()


_ASYNC_WRITE_BACK = """
import json, numpy as np, vknb
k = vknb.compile(SRC, name="saxpy")
rng = np.random.default_rng(3)
x = rng.standard_normal(1000).astype(np.float32)
y = rng.standard_normal(1000).astype(np.float32)
y0 = y.copy()
sub = k(x, y, a=2.0, n=1000, grid=1000, wait=False)
vknb.synchronize()
ok1 = bool(sub.done) and bool(np.allclose(y, y0 + 2 * x, rtol=1e-5, atol=1e-6))
y1 = y0.copy()
rec = k(x, y1, a=1.0, n=1000, grid=1000, wait=False).wait()
ok2 = rec is not None and rec.kernel == "saxpy" and bool(np.allclose(y1, y0 + x, rtol=1e-5))
print(json.dumps([ok1, ok2]))
"""


def test_async_dispatch_writes_numpy_arrays_back(tmp_path):
    """Run in a subprocess with a time limit: the bug is an endless loop."""
    code = _ASYNC_WRITE_BACK.replace("SRC", repr(SAXPY))
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, VKNB_CACHE_DIR=str(tmp_path))
    try:
        res = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=12,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("an asynchronous dispatch with numpy arrays did not finish within 12 s")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1]) == [True, True]


def test_spirv_bytes_input(rng):
    # An optimized module keeps no names: bindings go by position.
    spirv = vknb.compile_glsl(WRITEONLY, name="wo_spv", optimize=True)
    k = vknb.compile(spirv)
    assert k.name == "spirv" and k.source is None and k.spirv == spirv
    src = rng.integers(-1000, 1000, 300, dtype=np.int32)
    dst = np.zeros(300, np.int32)
    k(src, dst, grid=300)
    np.testing.assert_array_equal(dst, 3 * src - 1)
    # Unoptimized SPIR-V keeps the names: everything binds by name.
    k2 = vknb.compile(vknb.compile_glsl(SAXPY, optimize=False), name="named")
    x, y = _saxpy_data(rng, 300)
    y0 = y.copy()
    k2(x=x, y=y, a=-1.0, n=300, grid=300)
    np.testing.assert_allclose(y, y0 - x, rtol=1e-5, atol=1e-6)
    with pytest.raises(vknb.SpirvError):
        vknb.compile(b"\x03\x02\x23\x07" + b"\x00" * 16)
    with pytest.raises(TypeError, match="GLSL source"):
        vknb.compile(12345)  # type: ignore[arg-type]
    k.close()
    k2.close()


def test_compile_cache_hit_on_second_compile():
    src = SAXPY + "\n// cache test " + str(time.time_ns()) + "\n"
    k1 = vknb.compile(src, name="cached")
    k2 = vknb.compile(src, name="cached")
    assert not k1.compile_info.cache_hit
    assert k2.compile_info.cache_hit
    assert k1.spirv == k2.spirv
    assert k2.pipeline_ms >= 0
    k1.close()
    k2.close()


def test_kernel_repr_mentions_bindings(saxpy):
    text = vknb.display.kernel_text(saxpy)
    html = vknb.display.kernel_html(saxpy)
    assert "saxpy" in repr(saxpy) and "2 bindings" in repr(saxpy)
    for name in ("saxpy", "xs", "ys", "a", "n", "readonly"):
        assert name in text, name
        assert name in html, name
    assert "float32" in text
    assert html.lstrip().startswith("<")


def test_kernel_close_and_with_block(rng):
    with vknb.compile(SAXPY, name="saxpy_with") as k:
        check_saxpy(k, rng)
    with pytest.raises(vknb.ObjectClosed, match="saxpy_with"):
        check_saxpy(k, rng)
    k.close()  # idempotent


def test_kernel_scratch_buffers_are_reused(dev, rng):
    k = vknb.compile(SAXPY, name="saxpy_scratch")
    check_saxpy(k, rng, 500)
    buffers = dev.memory_stats().buffers
    for _ in range(20):
        check_saxpy(k, rng, 500)
    assert dev.memory_stats().buffers == buffers
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


@pytest.mark.parametrize("readout", ["copy", "host"])
def test_gpu_time_tracks_the_work(readout, dev, monkeypatch):
    """Timestamps measure the dispatch itself: 100x the loop gives several times the GPU time,
    and the GPU time of a long dispatch is most of its wall time (both readout modes)."""
    if not dev.info.timestamps:
        pytest.fail(f"{dev.info.name} has no timestamps on its compute queue")
    monkeypatch.setenv("VKNB_TS_READOUT", readout)
    # A distinct source per mode: a fresh pipeline built under this readout.
    k = vknb.compile(BUSY_SRC + f"// {readout}\n", name=f"busy_{readout}")
    if readout == "host" and dev.host_query_reset:
        assert k.pipeline.timestamps.host_reset
    n = 2048
    iters = 5000 if dev.info.type == "cpu" else 500_000  # tens of ms on lavapipe, ~1 ms on a GPU
    y = vknb.zeros(n, np.float32)
    small = min(k(y, n=n, iters=iters // 100, grid=n).gpu_ms for _ in range(5))
    recs = [k(y, n=n, iters=iters, grid=n) for _ in range(3)]
    big = min(r.gpu_ms for r in recs)
    assert big > 5 * small, (small, big)
    r = max(recs, key=lambda r: r.gpu_ms)
    assert 0.5 * r.host_ms <= r.gpu_ms <= r.host_ms * 1.05, (r.gpu_ms, r.host_ms)
    # the loop ran: s_k = 1000 (1 - 0.999^k) after k iterations from 0
    got = y.numpy()
    assert np.all(np.isfinite(got)) and got.min() > 0
    k.close()
    y.close()


@pytest.mark.parametrize("readout", ["copy", "host"])
def test_gpu_times_read_late_belong_to_their_own_call(readout, dev, monkeypatch):
    """Repeated calls read their timestamps later, from alternating slots: records read only
    at the end still carry their own GPU time (light and heavy calls interleaved), also when a
    call with numpy arguments reuses a slot in between and when the kernel is closed first."""
    if not dev.info.timestamps:
        pytest.fail(f"{dev.info.name} has no timestamps on its compute queue")
    monkeypatch.setenv("VKNB_TS_READOUT", readout)
    k = vknb.compile(BUSY_SRC + f"// late {readout}\n", name=f"late_{readout}")
    n = 1024
    heavy = 10_000 if dev.info.type == "cpu" else 300_000
    y = vknb.zeros(n, np.float32)
    k(y, n=n, iters=1, grid=n)
    k(y, n=n, iters=heavy, grid=n)  # both calls now take the repeated-call path
    recs = []
    for i in range(12):
        iters = heavy if i % 3 == 2 else 1  # a pattern that does not follow the two slots
        recs.append((iters, k(y, n=n, iters=iters, grid=n)))
        if i == 6:  # numpy arguments: the general path takes a slot, reading what it held
            k(np.zeros(n, np.float32), n=n, iters=1, grid=n)
    pending = [r for _, r in recs if r.pending is not None]
    assert pending, "repeated calls should leave their GPU time to be read later"
    times = [(it, r.gpu_ms) for it, r in recs]
    light = statistics.median(t for it, t in times if it == 1)
    least_heavy = min(t for it, t in times if it == heavy)
    assert least_heavy > 5 * light, times  # no heavy call got a light call's time
    assert all(t < least_heavy / 2 for it, t in times if it == 1), times  # nor the reverse
    last = k(y, n=n, iters=heavy, grid=n)
    k.close()  # the pipeline's queries go: the waiting record reads them first
    assert last.pending is None and last.gpu_ms > 5 * light
    y.close()


def test_gpu_times_stay_with_their_call_when_threads_share_a_kernel(dev):
    """Two threads call one kernel (heavy and light calls) while a third reads the records:
    every record keeps its own call's GPU time (each record reads the slot its call ran on)."""
    if not dev.info.timestamps:
        pytest.fail(f"{dev.info.name} has no timestamps on its compute queue")
    k = vknb.compile(BUSY_SRC + "// threads\n", name="busy_threads")
    n = 1024
    heavy = 10_000 if dev.info.type == "cpu" else 300_000
    ys = {it: vknb.zeros(n, np.float32) for it in (1, heavy)}
    recs: dict[int, list[vknb.DispatchRecord]] = {1: [], heavy: []}
    errors: list[BaseException] = []
    stop = threading.Event()

    def caller(it: int) -> None:
        try:
            for _ in range(12):
                recs[it].append(k(ys[it], n=n, iters=it, grid=n))
        except BaseException as e:  # surfaced below
            errors.append(e)

    def reader() -> None:
        while not stop.is_set():
            for lst in list(recs.values()):
                for r in list(lst):
                    _ = r.gpu_ms

    threads = [threading.Thread(target=caller, args=(it,)) for it in (1, heavy)]
    rt = threading.Thread(target=reader)
    rt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    rt.join(30)
    assert not errors, errors
    light = [r.gpu_ms for r in recs[1]]
    heavy_t = [r.gpu_ms for r in recs[heavy]]
    assert None not in light and None not in heavy_t
    # No heavy call may show a light call's time (what mixing up slots would give). A light
    # call may show more than its own work: on a CPU driver its timestamps can span work of
    # the other thread that the queue ran in between, so only its median is checked.
    assert min(heavy_t) > 5 * statistics.median(light), (light, heavy_t)
    k.close()
    for y in ys.values():
        y.close()


def test_dispatch_record_is_plain_data():
    a = vknb.DispatchRecord("k", (2, 1, 1), (64, 1, 1), 0.5, 1.0, kernel_bytes=1000)
    b = vknb.DispatchRecord("k", (2, 1, 1), (64, 1, 1), 0.5, 1.0, kernel_bytes=1000, time=a.time)
    assert a == b and a != vknb.DispatchRecord("k", (2, 1, 1), (64, 1, 1), 0.6, 1.0)
    assert a.to_dict()["gpu_ms"] == 0.5 and list(a.to_dict())[:5] == [
        "kernel",
        "groups",
        "local_size",
        "gpu_ms",
        "host_ms",
    ]
    assert "gpu_ms=0.5" in repr(a) and a.invocations == 128
    assert a.bandwidth_gbs == pytest.approx(1000 / 0.5e-3 / 1e9)
    a.gpu_ms = None
    assert a.gpu_ms is None and a.bandwidth_gbs is None


def test_repeated_call_memo_never_serves_a_different_call(saxpy, rng):
    """The last-call shortcut must miss on any change: a value, a type, an Array, the grid."""
    n = 512
    x, y = _saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    saxpy(X, Y, a=1.0, n=n, grid=n)
    saxpy(X, Y, a=1.0, n=n, grid=n)  # served by the memo
    want = y + 2 * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    saxpy(X, Y, a=3.0, n=n, grid=n)  # another value
    want = want + 3 * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    saxpy(X, Y, a=3.0, n=n // 2, grid=n)  # another push constant: only half is updated
    want[: n // 2] += 3 * x[: n // 2]
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    saxpy(X, Y, a=3.0, n=n, grid=n // 2)  # another grid: the first 448 (7 groups of 64)
    groups = -(-(n // 2) // 64) * 64
    want[:groups] += 3 * x[:groups]
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    X2 = vknb.asarray(2 * x)  # another Array in the same place
    saxpy(X2, Y, a=3.0, n=n, grid=n)
    want += 6 * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)
    X2.close()
    with pytest.raises(vknb.ObjectClosed):
        saxpy(X2, Y, a=3.0, n=n, grid=n)  # a closed Array: an error, not a stale dispatch
    with pytest.raises(TypeError):
        saxpy(X, Y, a="3", n=n, grid=n)  # another type: checked again, and refused
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-4)


def test_repeated_calls_stay_fast_after_the_descriptor_sets_are_rebuilt(saxpy, rng):
    """A remembered call made stale (new descriptor-set epoch) is replaced, not missed forever."""
    n = 256
    X, Y = vknb.asarray(rng.random(n, dtype=np.float32)), vknb.zeros(n, np.float32)
    saxpy(X, Y, a=1.0, n=n, grid=n)
    pipe = saxpy.pipeline
    assert saxpy._fast_lookup((X, Y), {"a": 1.0, "n": n}, n, None, pipe) is not None
    pipe.sets_epoch += 1  # what a descriptor-pool reset does
    assert saxpy._fast_lookup((X, Y), {"a": 1.0, "n": n}, n, None, pipe) is None
    saxpy(X, Y, a=1.0, n=n, grid=n)  # the slow path remembers the call again
    assert saxpy._fast_lookup((X, Y), {"a": 1.0, "n": n}, n, None, pipe) is not None


# ---------------------------------------------------------------------------------------------
# Bound calls (Kernel.bind)
# ---------------------------------------------------------------------------------------------


def test_bound_call_dispatches_like_the_call_it_fixes(saxpy, rng, no_leaks):
    n = 1000
    x, y = _saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    step = saxpy.bind(X, ys=Y, a=1.5, n=n, grid=n)
    assert repr(step) == f"<vknb.BoundCall saxpy({X.label}, ys={Y.label}, a=1.5, n={n}, grid={n})>"
    want = y.copy()
    for _ in range(3):
        rec = step()
        want += np.float32(1.5) * x
        assert rec.kernel == "saxpy" and rec.groups == (-(-n // 64), 1, 1)
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-6)
    assert rec.gpu_ms is None or rec.gpu_ms >= 0
    assert vknb.timings("saxpy")[-1] is rec
    sub = step(wait=False)  # asynchronous: a Submission, finished by vknb.synchronize()
    assert isinstance(sub, vknb.Submission)
    vknb.synchronize()
    want += np.float32(1.5) * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-6)
    assert sub.wait().kernel == "saxpy"
    del step, sub
    X.close()
    Y.close()


def test_bound_calls_recorded_in_a_batch_get_the_same_barriers(saxpy, rng):
    n = 256
    x, y = _saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    outs = [vknb.zeros(n, np.float32) for _ in range(4)]
    chain = saxpy.bind(X, Y, a=0.25, n=n, grid=n)
    fans = [saxpy.bind(X, o, a=2.0, n=n, grid=n) for o in outs]
    with vknb.batch() as b:
        first = chain()
        for _ in range(4):
            chain()  # each repeat reads and writes Y: a barrier before it
        for f in fans:
            f()  # independent of each other and of Y
        fans[0]()  # writes outs[0] again: one barrier
    assert first == 0 and len(b) == 10
    assert b.barriers == 5
    want = y + np.float32(5 * 0.25) * x
    np.testing.assert_allclose(Y.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0].numpy(), 4 * x, rtol=1e-6)
    for o in outs[1:]:
        np.testing.assert_allclose(o.numpy(), 2 * x, rtol=1e-6)
    b.replay()
    np.testing.assert_allclose(Y.numpy(), want + np.float32(5 * 0.25) * x, rtol=1e-5, atol=1e-5)
    b.close()
    for a in (X, Y, *outs):
        a.close()


def test_bound_call_errors_name_the_argument_and_leave_the_kernel_working(saxpy, rng):
    n = 64
    x, y = _saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    with pytest.raises(TypeError, match=r"saxpy\.bind: argument 1 is a numpy array"):
        saxpy.bind(X, y, a=1.0, n=n, grid=n)
    with pytest.raises(TypeError, match=r"ys= is a numpy array"):
        saxpy.bind(X, ys=y, a=1.0, n=n, grid=n)
    with pytest.raises(TypeError, match="float32"):  # what a call would raise, at bind time
        saxpy.bind(X, vknb.zeros(n, np.int32), a=1.0, n=n, grid=n)
    with pytest.raises(TypeError, match="push constant member 'a'"):
        saxpy.bind(X, Y, a=[1.0], n=n, grid=n)
    step = saxpy.bind(X, Y, a=1.0, n=n, grid=n)
    Y.close()
    with pytest.raises(vknb.ObjectClosed, match=f"{Y.label} was closed"):
        step()
    Y2 = vknb.asarray(y)
    saxpy.bind(X, Y2, a=1.0, n=n, grid=n)()
    np.testing.assert_allclose(Y2.numpy(), y + x, rtol=1e-6)
    X.close()
    Y2.close()


def test_bound_call_survives_a_rebuild_of_the_descriptor_sets(saxpy, rng, monkeypatch):
    """More distinct calls than the pipeline caches sets for: the pool is reset and the bound
    call, whose sets went with it, binds again instead of using freed sets."""
    monkeypatch.setattr(vknb.core.pipeline, "DESCRIPTOR_CACHE", 4)
    n = 128
    x, y = _saxpy_data(rng, n)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    step = saxpy.bind(X, Y, a=1.0, n=n, grid=n)
    epoch = saxpy.pipeline.sets_epoch
    others = [vknb.zeros(n, np.float32) for _ in range(6)]
    for o in others:
        saxpy(X, o, a=1.0, n=n, grid=n)
    assert saxpy.pipeline.sets_epoch > epoch
    step()
    np.testing.assert_allclose(Y.numpy(), y + x, rtol=1e-6)
    for a in (X, Y, *others):
        a.close()
