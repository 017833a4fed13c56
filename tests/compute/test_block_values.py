"""Values of uniform and push-constant blocks (arrays of vectors and matrices, std140 padding,
std430 and scalar layouts, arrays of structs) and kernels whose layouts follow their
specialization constants, all run on the device and checked against numpy on random data.

Conventions checked here (see the args module's docstring): an array member takes a numpy array
or nested lists of its natural shape, ``(n,) + value shape``; a matrix is indexed like its
reflected dtype, ``[column][row]`` (``[row][column]`` for ``row_major``), as a single ``mat4``
member is; std140 padding never shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import vknb

F4 = np.float32

UBO = """
layout(local_size_x = 1) in;
struct Light { vec3 pos; float radius; };
layout(std140, binding = 0) uniform U {
    vec4 planes[6];
    vec2 p[3];
    mat2 m2[2];
    mat3 m3[2];
    float w[3];
    ivec2 iv[3];
    uint u4[4];
    vec3 v3[2];
    layout(row_major) mat3x2 rm[2];
    Light lights[2];
    bool flags[3];
    mat4 one;
} u;
layout(std430, binding = 1) writeonly buffer O { float o[]; };
uint k = 0;
void put(float x) { o[k++] = x; }
void main() {
    for (int i = 0; i < 6; ++i) for (int j = 0; j < 4; ++j) put(u.planes[i][j]);
    for (int i = 0; i < 3; ++i) for (int j = 0; j < 2; ++j) put(u.p[i][j]);
    for (int i = 0; i < 2; ++i) for (int c = 0; c < 2; ++c) for (int r = 0; r < 2; ++r)
        put(u.m2[i][c][r]);
    for (int i = 0; i < 2; ++i) for (int c = 0; c < 3; ++c) for (int r = 0; r < 3; ++r)
        put(u.m3[i][c][r]);
    for (int i = 0; i < 3; ++i) put(u.w[i]);
    for (int i = 0; i < 3; ++i) for (int j = 0; j < 2; ++j) put(float(u.iv[i][j]));
    for (int i = 0; i < 4; ++i) put(float(u.u4[i]));
    for (int i = 0; i < 2; ++i) for (int j = 0; j < 3; ++j) put(u.v3[i][j]);
    for (int i = 0; i < 2; ++i) for (int r = 0; r < 2; ++r) for (int c = 0; c < 3; ++c)
        put(u.rm[i][c][r]);
    for (int i = 0; i < 2; ++i) {
        put(u.lights[i].pos.x); put(u.lights[i].pos.y); put(u.lights[i].pos.z);
        put(u.lights[i].radius);
    }
    for (int i = 0; i < 3; ++i) put(u.flags[i] ? 1.0 : 0.0);
    for (int c = 0; c < 4; ++c) for (int r = 0; r < 4; ++r) put(u.one[c][r]);
    // what the shader computes with them
    for (int i = 0; i < 2; ++i) { vec2 y = u.m2[i] * vec2(1.0, -2.0); put(y.x); put(y.y); }
    for (int i = 0; i < 2; ++i) {
        vec3 y = u.m3[i] * vec3(0.5, 1.0, 2.0); put(y.x); put(y.y); put(y.z);
    }
    for (int i = 0; i < 2; ++i) { vec2 y = u.rm[i] * vec3(1.0, 2.0, 3.0); put(y.x); put(y.y); }
}
"""

UBO_ORDER = ("planes", "p", "m2", "m3", "w", "iv", "u4", "v3", "rm", "lights", "flags", "one")


def _ubo_values(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "planes": rng.standard_normal((6, 4)).astype(F4),
        "p": rng.standard_normal((3, 2)).tolist(),  # nested lists work too
        "m2": rng.standard_normal((2, 2, 2)).astype(F4),
        "m3": rng.standard_normal((2, 3, 3)).astype(F4),
        "w": rng.standard_normal(3).astype(F4),
        "iv": rng.integers(-1000, 1000, (3, 2), dtype=np.int32),
        "u4": [int(v) for v in rng.integers(0, 1 << 20, 4)],
        "v3": rng.standard_normal((2, 3)).astype(F4),
        "rm": rng.standard_normal((2, 2, 3)).astype(F4),  # row_major: [row][column]
        "lights": [
            {"pos": rng.standard_normal(3).astype(F4), "radius": float(rng.random())}
            for _ in range(2)
        ],
        "flags": [bool(v) for v in rng.integers(0, 2, 3)],
        "one": rng.standard_normal((4, 4)).astype(F4),
    }


def _expected_ubo(v: dict[str, Any]) -> np.ndarray:
    parts = []
    for name in UBO_ORDER:
        if name == "lights":
            parts += [np.r_[d["pos"], d["radius"]] for d in v["lights"]]
        else:
            parts.append(np.asarray(v[name], np.float64).ravel())
    m2, m3, rm = (np.asarray(v[n], np.float64) for n in ("m2", "m3", "rm"))
    # GLSL's m * x with m[c][r] = A[c][r] is A.T @ x; row_major rm[c][r] = A[r][c] is A @ x
    parts += [m2[i].T @ [1.0, -2.0] for i in range(2)]
    parts += [m3[i].T @ [0.5, 1.0, 2.0] for i in range(2)]
    parts += [rm[i] @ [1.0, 2.0, 3.0] for i in range(2)]
    return np.concatenate(parts).astype(F4)


@pytest.fixture(scope="module")
def ubo() -> vknb.Kernel:
    return vknb.compile(UBO, name="ubo")


@pytest.mark.parametrize("seed", range(4))
def test_std140_uniform_block_from_a_dict(ubo: vknb.Kernel, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = _ubo_values(rng)
    want = _expected_ubo(values)
    out = np.full(want.size + 4, np.nan, F4)
    ubo(values, out, grid=1)
    np.testing.assert_allclose(out[: want.size], want, rtol=1e-5, atol=1e-5)
    # the same by keyword, and from an array of the block's dtype packed by hand
    out2 = np.zeros_like(out)
    ubo(u=values, o=out2, grid=1)
    np.testing.assert_array_equal(out2, out)


def test_std140_padding_is_where_the_dtype_says(ubo: vknb.Kernel) -> None:
    from vknb.compute.args import pack_block

    block = ubo.reflection.binding("u").block
    assert block is not None
    values = _ubo_values(np.random.default_rng(9))
    packed = np.frombuffer(pack_block(block, values, "u"), block.dtype)[0]
    assert block.dtype.fields["w"][0].itemsize == 48  # type: ignore[index]
    np.testing.assert_array_equal(packed["w"]["v"], values["w"])  # 16-byte stride, padded
    np.testing.assert_array_equal(packed["m3"]["v"], values["m3"])  # columns padded to 16
    np.testing.assert_array_equal(packed["p"]["v"], np.asarray(values["p"], F4))
    raw = np.frombuffer(pack_block(block, values, "u"), np.uint8)
    off = block.dtype.fields["w"][1]  # type: ignore[index]
    assert raw[off + 4 : off + 16].tolist() == [0] * 12  # the padding stays zero


PUSH = """
layout(local_size_x = 1) in;
layout(push_constant) uniform P {
    vec2 p[3];
    mat2 m[2];
    float w[3];
    vec3 v[2];
    ivec2 iv[2];
} pc;
layout(std430, binding = 0) writeonly buffer O { float o[]; };
uint k = 0;
void put(float x) { o[k++] = x; }
void main() {
    for (int i = 0; i < 3; ++i) for (int j = 0; j < 2; ++j) put(pc.p[i][j]);
    for (int i = 0; i < 2; ++i) for (int c = 0; c < 2; ++c) for (int r = 0; r < 2; ++r)
        put(pc.m[i][c][r]);
    for (int i = 0; i < 3; ++i) put(pc.w[i]);
    for (int i = 0; i < 2; ++i) for (int j = 0; j < 3; ++j) put(pc.v[i][j]);
    for (int i = 0; i < 2; ++i) for (int j = 0; j < 2; ++j) put(float(pc.iv[i][j]));
}
"""


@pytest.mark.parametrize("layout", ["std430", "scalar"])
@pytest.mark.parametrize("seed", range(3))
def test_push_constants_by_keyword(layout: str, seed: int) -> None:
    src = PUSH
    if layout == "scalar":
        src = "#extension GL_EXT_scalar_block_layout : require\n" + src.replace(
            "layout(push_constant)", "layout(scalar, push_constant)"
        )
    k = vknb.compile(src, name=f"push_{layout}")
    pc = k.reflection.push_constants
    assert pc is not None
    strides = {m.name: m.array_stride for m in pc.members}
    assert strides["v"] == (16 if layout == "std430" else 12)
    rng = np.random.default_rng(seed)
    v = {
        "p": rng.standard_normal((3, 2)).astype(F4),
        "m": rng.standard_normal((2, 2, 2)).tolist(),
        "w": rng.standard_normal(3).tolist(),
        "v": rng.standard_normal((2, 3)).astype(F4),
        "iv": rng.integers(-99, 99, (2, 2)).astype(np.int32),
    }
    want = np.concatenate([np.asarray(v[n], np.float64).ravel() for n in v]).astype(F4)
    out = np.zeros(want.size, F4)
    k(out, grid=1, **v)
    np.testing.assert_allclose(out, want, rtol=1e-6)
    out[:] = 0
    k(out, grid=1, P=v)  # the block by name, as a dict
    np.testing.assert_allclose(out, want, rtol=1e-6)


ONE_MEMBER = """
layout(local_size_x = 4) in;
layout(std140, binding = 0) uniform W { float w[3]; };
layout(std430, binding = 1) buffer O { float o[]; };
void main() { uint i = gl_GlobalInvocationID.x; o[i] = w[i % 3u] * float(i); }
"""


def test_one_member_uniform_array_from_a_list_or_1d_array() -> None:
    k = vknb.compile(ONE_MEMBER, name="one_member")
    rng = np.random.default_rng(1)
    for w in (rng.standard_normal(3).astype(F4), rng.standard_normal(3).tolist()):
        out = np.zeros(8, F4)
        k(w, out, grid=8)
        want = np.asarray(w, F4)[np.arange(8) % 3] * np.arange(8, dtype=F4)
        np.testing.assert_allclose(out, want, rtol=1e-6)


def test_wrong_values_name_the_member_and_the_shape(ubo: vknb.Kernel) -> None:
    good = _ubo_values(np.random.default_rng(2))
    out = np.zeros(256, F4)

    def call(**change: Any) -> None:
        ubo({**good, **change}, out, grid=1)

    with pytest.raises(ValueError, match=r"member 'planes' .*vec4\[6\].*expected shape \(6, 4\)"):
        call(planes=np.zeros((4, 6), F4))
    with pytest.raises(
        ValueError, match=r"member 'm3' .*expected shape \(2, 3, 3\).*\[column\]\[row\]"
    ):
        call(m3=np.zeros((2, 9), F4))
    with pytest.raises(
        ValueError, match=r"member 'rm' .*expected shape \(2, 2, 3\).*\[row\]\[column\]"
    ):
        call(rm=np.zeros((2, 3, 2), F4))
    with pytest.raises(ValueError, match=r"member 'p' .*expected .*\(3, 2\).*uneven"):
        call(p=[[1.0, 2.0], [3.0], [4.0, 5.0]])
    with pytest.raises(TypeError, match=r"member 'planes' .*float32.*float64"):
        call(planes=np.zeros((6, 4)))
    with pytest.raises(TypeError, match=r"member 'iv' .*int32.*float"):
        call(iv=[[1.5, 2.0]] * 3)
    with pytest.raises(ValueError, match=r"member 'u4' .*outside"):
        call(u4=[-1, 0, 0, 0])
    with pytest.raises(ValueError, match=r"member 'w' .*overflows"):
        call(w=[1e39, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"member 'lights' .*expected 2 elements, got 4"):
        call(lights=good["lights"] * 2)
    with pytest.raises(TypeError, match=r"missing value for .*'lights'\[1\] member 'radius'"):
        call(lights=[good["lights"][0], {"pos": [0.0, 0.0, 0.0]}])
    with pytest.raises(TypeError, match=r"member 'lights' .*list of 2 dicts"):
        call(lights=5)
    # still right after the refusals
    ubo(good, out, grid=1)
    want = _expected_ubo(good)
    np.testing.assert_allclose(out[: want.size], want, rtol=1e-5, atol=1e-5)


def test_array_of_structs_from_an_array_of_its_dtype(ubo: vknb.Kernel) -> None:
    block = ubo.reflection.binding("u").block
    assert block is not None
    lights_dt = block.dtype.fields["lights"][0].base  # type: ignore[index]
    rng = np.random.default_rng(4)
    values = _ubo_values(rng)
    arr = np.zeros(2, lights_dt)
    for i, d in enumerate(values["lights"]):
        arr[i]["pos"], arr[i]["radius"] = d["pos"], d["radius"]
    out_a, out_b = np.zeros(256, F4), np.zeros(256, F4)
    ubo(values, out_a, grid=1)
    ubo({**values, "lights": arr}, out_b, grid=1)
    np.testing.assert_array_equal(out_a, out_b)


# --- layouts that follow specialization constants ------------------------------------------
HIST = """
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint N = 4;
layout(std430, binding = 0) readonly buffer X { uint x[]; };
layout(std430, binding = 1) buffer H { uint hist[N + 1]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < x.length()) atomicAdd(hist[min(x[i], N)], 1u);
}
"""


@pytest.mark.parametrize("n", [10, 37])
def test_spec_sized_storage_array_is_written_past_the_default(n: int) -> None:
    k = vknb.compile(HIST, name=f"hist{n}", constants={"N": n})
    h = k.reflection.binding("H")
    assert h.block is not None and h.block.size == 4 * (n + 1)
    assert h.members[0].type == f"uint[{n + 1}]"
    assert k.reflection.specialization == ((0, n),)
    rng = np.random.default_rng(n)
    x = rng.integers(0, n + 8, 5000, dtype=np.uint32)
    hist = np.zeros(1, h.dtype)
    k(x, hist, grid=x.size)
    want = np.bincount(np.minimum(x, n), minlength=n + 1)
    np.testing.assert_array_equal(hist["hist"][0], want)
    # a buffer laid out for the default is refused, not written past its end
    small = np.zeros(1, vknb.reflect(k.spirv).binding("H").dtype)
    assert small.dtype == np.dtype([("hist", "<u4", (5,))])
    with pytest.raises(TypeError, match=rf"'H'.*expects .*\({n + 1},\)"):
        k(x, small, grid=x.size)


SPEC_BLOCKS = """
layout(local_size_x = 32) in;
layout(constant_id = 0) const uint TAPS = 3;
layout(constant_id = 1) const int NB = 2;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(std140, binding = 2) uniform U { vec4 scale; float bias[NB]; } u;
layout(push_constant) uniform P { uint n; float w[TAPS]; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
    float acc = 0.0;
    for (uint j = 0; j < TAPS; ++j) acc += pc.w[j] * x[i + j];
    float b = 0.0;
    for (int j = 0; j < NB; ++j) b += u.bias[j] * float(j + 1);
    y[i] = acc * u.scale.x + b;
}
"""


@pytest.mark.parametrize(("taps", "nb"), [(3, 2), (7, 5), (12, 1)])
def test_spec_sized_push_and_uniform_members(taps: int, nb: int) -> None:
    k = vknb.compile(SPEC_BLOCKS, name="spec_blocks", constants={"TAPS": taps, "NB": nb})
    pc = k.reflection.push_constants
    assert pc is not None and pc.size == 4 + 4 * taps
    assert k.reflection.binding("u").members[1].type == f"float[{nb}]"
    rng = np.random.default_rng(taps)
    n = 100
    x = rng.standard_normal(n + taps).astype(F4)
    w = rng.standard_normal(taps).astype(F4)
    bias = rng.standard_normal(nb).astype(F4)
    scale = rng.standard_normal(4).astype(F4)
    y = np.zeros(n, F4)
    k(x, y, {"scale": scale, "bias": bias}, n=n, w=w, grid=n)
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), taps)[:n]
    want = windows @ w * scale[0] + bias @ np.arange(1, nb + 1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError, match=rf"member 'w' .*float\[{taps}\].*expected shape \({taps},\)"
    ):
        k(x, y, {"scale": scale, "bias": bias}, n=n, w=w[:-1], grid=n)


DESCRIPTOR_ARRAY = """
layout(local_size_x = 16) in;
layout(constant_id = 0) const uint NB = 2;
layout(std430, binding = 0) buffer B { float d[]; } bufs[NB];
void main() {
    uint i = gl_GlobalInvocationID.x;
    for (uint j = 0; j < NB; ++j) if (i < bufs[j].d.length()) bufs[j].d[i] *= float(j + 1);
}
"""


def test_spec_sized_descriptor_array() -> None:
    k = vknb.compile(DESCRIPTOR_ARRAY, name="bufs", constants={"NB": 4})
    assert k.reflection.binding("bufs").count == 4
    assert k.slots[0].count == 4
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(int(rng.integers(10, 40))).astype(F4) for _ in range(4)]
    want = [a * (j + 1) for j, a in enumerate(arrays)]
    k(arrays, grid=64)
    for got, exp in zip(arrays, want, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-6)
    with pytest.raises(ValueError, match="bufs"):
        k(arrays[:2], grid=64)


def test_workgroup_size_constants_still_work() -> None:
    src = """
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WX = 32;
layout(constant_id = 1) const uint N = 2;
layout(std430, binding = 0) buffer B { float b[]; };
layout(push_constant) uniform P { float s[N]; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < b.length()) b[i] *= s[i % N]; }
"""
    k = vknb.compile(src, name="wg", constants={"N": 3}, local_size=16)
    assert k.local_size == (16, 1, 1) and k.reflection.local_size == (16, 1, 1)
    k2 = vknb.compile(src, name="wg2")
    assert k2.local_size == (32, 1, 1)
    b = np.arange(50, dtype=F4)
    s = np.array([1.0, -1.0, 2.0], F4)
    k(b, s=s, grid=b.size)
    np.testing.assert_array_equal(b, np.arange(50, dtype=F4) * s[np.arange(50) % 3])


def test_constants_that_break_the_layout_are_refused_at_compile() -> None:
    with pytest.raises(vknb.SpirvError, match=r"hist0: specialized with N=0.*array length 0"):
        vknb.compile(HIST.replace("N + 1", "N"), name="hist0", constants={"N": 0})


def test_spirv_from_outside_with_scalar_layout_runs() -> None:
    src = """
#extension GL_EXT_scalar_block_layout : require
layout(local_size_x = 8) in;
layout(scalar, binding = 0) buffer P { vec3 p[]; };
layout(scalar, push_constant) uniform C { vec3 offset; float s; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < p.length()) p[i] = p[i] * s + offset; }
"""
    spv = vknb.compile_glsl(src)
    k = vknb.compile(spv, name="scalar_spv")  # validated by spirv-val with the scalar layout
    rng = np.random.default_rng(11)
    p = rng.standard_normal((20, 3)).astype(F4)
    offset = rng.standard_normal(3).astype(F4)
    want = p * F4(0.5) + offset
    k(p, offset=offset, s=0.5, grid=20)
    np.testing.assert_allclose(p, want, rtol=1e-6)


FIXED = """
layout(local_size_x = 8) in;
layout(binding = 0) readonly buffer C { float c[3]; };
layout(binding = 1) buffer V { vec4 v[2]; };
layout(binding = 2) buffer O { float o[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < 3) o[i] = c[i] * 2.0;
    if (i < 2) v[i] = v[i] + c[0];
}
"""


def test_fixed_one_member_block_from_plain_data(rng) -> None:
    # A block of one tightly laid-out member has the bytes of plain data of its element type.
    k = vknb.compile(FIXED, name="fixed")
    c = rng.standard_normal(3).astype(np.float32)
    v = rng.standard_normal((2, 4)).astype(np.float32)
    want_v = v + c[0]
    o = np.zeros(3, np.float32)
    k(c, v, o, grid=8)
    np.testing.assert_allclose(o, 2 * c, rtol=1e-6)
    np.testing.assert_allclose(v, want_v, rtol=1e-6)
    dv = vknb.asarray(v)  # device Arrays too
    k(vknb.asarray(c), dv, o, grid=8)
    np.testing.assert_allclose(dv.numpy(), want_v + c[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"'V' holds 8 float32 values .*\(7,\)"):
        k(c, np.zeros(7, np.float32), o, grid=8)
    with pytest.raises(TypeError, match=r"'C'.*float64"):
        k(c.astype(np.float64), v, o, grid=8)


def test_padded_one_member_block_still_wants_its_dtype() -> None:
    # std140 strides float c[3] by 16 bytes: plain float32 data does not have its bytes.
    k = vknb.compile(
        FIXED.replace("readonly buffer C", "layout(std140) readonly buffer C"), name="padded"
    )
    with pytest.raises(TypeError, match=r"build it with dtype=k\.reflection\.binding\('C'\)"):
        k(np.zeros(3, np.float32), np.zeros((2, 4), np.float32), np.zeros(3, np.float32), grid=8)
