"""Reflection that follows specialization constants (``Reflection.specialize``), floats of other
encodings (bfloat16, FP8) as specialization constants, and ``validate_spirv``'s options.

The oracle for specialization is the compiler itself: the same shader with the constants
written as plain ``const`` values (through defines) must reflect exactly like the specialized
module.  bfloat16 / FP8 modules are built word by word here (the glslc and spirv-as installed
here predate SPV_KHR_bfloat16 and SPV_EXT_float8), and their encodings are checked against a
brute-force nearest-value search.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vknb.compute.args import pack_spec_values, spec_check
from vknb.errors import SpirvError
from vknb.shader.compiler import compile_glsl, validate_spirv, validator_options
from vknb.shader.spirv import (
    Reflection,
    SpecConstant,
    decode_float,
    encode_float,
    float_max,
    reflect,
)

HERE = Path(__file__).resolve().parent
CORPUS = sorted((HERE / "spirv_corpus").glob("*.comp"))
ENCODINGS = ("bfloat16", "float8_e4m3", "float8_e5m2")

# One array sized by a specialization-constant expression per block, last in its block (see
# test_spec_sized_array_before_another_member_is_refused), built from the operations glslang
# emits: IAdd, IMul, UDiv, shifts, UMod, ISub, SGreaterThan + Select, and int/uint casts.
SIZED = """
#version 450
layout(local_size_x_id = 2, local_size_y = 2) in;
#ifdef SPEC
layout(constant_id = 0) const uint N = 4u;
layout(constant_id = 1) const int M = 3;
layout(constant_id = 2) const uint WX = 8u;
#else
const uint N = N_VALUE;
const int M = M_VALUE;
#endif
layout(std430, binding = 0) buffer H { uint hist[N + 1u]; };
layout(std430, binding = 1) buffer G { uint count; uint g[N * 2u]; } gg;
layout(std140, binding = 2) uniform U { vec4 bias; float w[M > 2 ? M - 1 : 1]; } u;
layout(std140, binding = 3) uniform V { uint k; vec3 v[(N >> 1u) + uint(M)]; } vv;
layout(std430, binding = 4) buffer S { float f; mat3 ms[N % 3u + 1u]; } ss;
layout(std140, binding = 5) uniform T { int t; mat2 tm[uint(M) * 3u - (N / 2u)]; } tt;
layout(push_constant) uniform P { uint n; vec2 pw[N / 2u + (N << 1u)]; } pc;
void main() {
    hist[0] = gg.g[1] + uint(u.w[0]) + uint(pc.pw[0].x) + uint(vv.v[0].x) + uint(ss.ms[0][0][0])
        + uint(tt.tm[0][0][0]);
}
"""


def _literal(n: int, m: int) -> Reflection:
    return reflect(compile_glsl(SIZED, defines={"N_VALUE": f"{n}u", "M_VALUE": str(m)}))


@pytest.fixture(scope="module")
def sized() -> Reflection:
    return reflect(compile_glsl(SIZED, defines={"SPEC": 1}))


def _layouts(r: Reflection) -> Any:
    return [(b.name, b.block) for b in r.bindings], r.push_constants


def test_defaults_match_the_literal_shader(sized: Reflection) -> None:
    assert sized.specialization == ()
    assert _layouts(sized) == _layouts(_literal(4, 3))


@pytest.mark.parametrize("seed", range(6))
def test_specialized_layouts_match_the_literal_shader(sized: Reflection, seed: int) -> None:
    rnd = random.Random(seed)
    n, m = rnd.randint(1, 40), rnd.randint(2, 20)
    spec = sized.specialize({"N": n, "M": m})
    assert spec.specialization == ((0, n), (1, m))
    assert _layouts(spec) == _layouts(_literal(n, m))
    h = spec.binding("H")
    assert h.block is not None and h.block.size == 4 * (n + 1)
    assert h.dtype == np.dtype([("hist", "<u4", (n + 1,))])
    assert spec.binding("u").members[1].type == f"float[{m - 1 if m > 2 else 1}]"
    assert spec.push_constants is not None
    assert spec.push_constants.size == 8 + 8 * (n // 2 + (n << 1))
    # the defaults stay the module's
    assert [(c.name, c.default) for c in spec.spec_constants] == [
        ("N", 4),
        ("M", 3),
        ("WX", 8),
    ]


def test_specialize_by_id_composes_and_keeps_the_rest(sized: Reflection) -> None:
    a = sized.specialize({0: 10})
    b = a.specialize({"M": 5})
    assert b.specialization == ((0, 10), (1, 5))
    assert b.binding("H").block.size == 44  # type: ignore[union-attr]
    assert b.binding("u").members[1].type == "float[4]"
    assert sized.specialize({}) is sized and sized.specialize(None) is sized
    # workgroup size follows too, and local_size_for still works on either
    assert sized.local_size == (1, 2, 1)  # glslang's own constant for local_size_x_id
    assert sized.specialize({"WX": 32}).local_size == (32, 2, 1)
    assert sized.local_size_for({"WX": 16}) == (16, 2, 1)
    assert sized.specialize({"WX": 32}).local_size_for({2: 4}) == (4, 2, 1)
    d = json.loads(json.dumps(b.to_dict()))
    assert d["specialization"] == [[0, 10], [1, 5]]


def test_specialize_checks_values(sized: Reflection) -> None:
    with pytest.raises(KeyError, match=r"no specialization constant 'K'.*N \(id 0\)"):
        sized.specialize({"K": 1})
    with pytest.raises(KeyError, match="99"):
        sized.specialize({99: 1})
    with pytest.raises(TypeError, match=r"'N'.*integer.*float"):
        sized.specialize({"N": 2.0})
    with pytest.raises(ValueError, match=r"'N'.*-1 is outside"):
        sized.specialize({"N": -1})
    # N = 0 makes g[N * 2] empty: the message names the value and the array
    with pytest.raises(SpirvError, match=r"specialized with N=0.*array length 0"):
        sized.specialize({"N": 0})


def test_a_reflection_without_its_module_cannot_be_specialized(sized: Reflection) -> None:
    bare = Reflection(
        entry_point=sized.entry_point,
        local_size=sized.local_size,
        local_size_ids=sized.local_size_ids,
        bindings=sized.bindings,
        push_constants=sized.push_constants,
        spec_constants=sized.spec_constants,
        spirv_version=sized.spirv_version,
        bound=sized.bound,
        ext_inst_imports=sized.ext_inst_imports,
    )
    assert bare == sized
    with pytest.raises(SpirvError, match="without its module"):
        bare.specialize({"N": 5})


def test_descriptor_array_counts_follow() -> None:
    r = reflect(compile_glsl((HERE / "spirv_corpus" / "descriptor_arrays.comp").read_text()))
    t = r.binding("spec_textures")
    assert (t.count, t.count_spec_ids) == (5, (0,))
    s = r.specialize({"NT": 9}).binding("spec_textures")
    assert (s.count, s.count_spec_ids) == (9, (0,))
    expr = reflect(
        compile_glsl(
            "layout(local_size_x = 1) in;\n"
            "layout(constant_id = 3) const uint A = 2;\nlayout(constant_id = 7) const uint B = 3;\n"
            "layout(set = 0, binding = 0) uniform sampler2D t[A * B + 1];\n"
            "layout(set = 0, binding = 1) buffer O { float o[]; };\n"
            "void main() { o[0] = texture(t[6], vec2(0.5)).x; }\n"
        )
    )
    assert expr.specialize({"A": 5, "B": 4}).binding("t").count == 21


@pytest.mark.parametrize(
    ("expr", "fn"),
    [
        ("N - 3", lambda n, m: n - 3),
        ("(N * 3) / 2", lambda n, m: n * 3 // 2),
        ("N % 5 + 1", lambda n, m: n % 5 + 1),
        ("M > N ? M : N", lambda n, m: max(n, m)),
        ("(N & 6) | 1", lambda n, m: (n & 6) | 1),
        ("(N ^ M) + 1", lambda n, m: (n ^ m) + 1),
        ("abs(M - N) + 1", None),  # not a constant expression glslang can specialize
        ("(M - N) < 0 ? N - M : M - N + 1", lambda n, m: n - m if m < n else m - n + 1),
        ("-(M - N - 1)", lambda n, m: n + 1 - m),
        ("int(uint(N) >> 1) + 1", lambda n, m: (n >> 1) + 1),
        ("(N == M || N > 30) ? 2 : 3", lambda n, m: 2 if n == m or n > 30 else 3),
        ("!(N != M) ? 4 : 5", lambda n, m: 4 if n == m else 5),
    ],
)
def test_spec_constant_arithmetic(expr: str, fn: Any) -> None:
    src = (
        "layout(local_size_x = 1) in;\n"
        "layout(constant_id = 0) const int N = 7;\nlayout(constant_id = 1) const int M = 3;\n"
        f"layout(binding = 0) buffer B {{ float a[{expr}]; }};\n"
        "void main() { a[0] = 1.0; }\n"
    )
    if fn is None:
        with pytest.raises(Exception):  # noqa: B017 - glslc refuses it
            compile_glsl(src)
        return
    r = reflect(compile_glsl(src))
    rnd = random.Random(expr)
    for n, m in [(7, 3), *((rnd.randint(4, 40), rnd.randint(0, 40)) for _ in range(8))]:
        want = fn(n, m)
        if want < 1:
            continue
        assert r.specialize({"N": n, "M": m}).binding("B").members[0].array_length == want


def test_spec_sized_array_before_another_member_is_refused() -> None:
    # The offsets are literal: glslang lays the next member out for the default length of a
    # plain constant, and for one element of an expression, so a longer array overlaps it.
    src = (
        "layout(local_size_x = 1) in;\nlayout(constant_id = 0) const uint N = 4;\n"
        "layout(binding = 0) buffer G { uint g[LENGTH]; uint after; };\n"
        "void main() { g[0] = after; }\n"
    )
    r = reflect(compile_glsl(src.replace("LENGTH", "N")))
    assert [(m.name, m.offset) for m in r.binding("G").members] == [("g", 0), ("after", 16)]
    assert r.specialize({"N": 3}).binding("G").members[0].size == 12
    with pytest.raises(SpirvError, match=r"N=5.*'g' \(uint\[5\]\).*'after'.*last member"):
        r.specialize({"N": 5})
    with pytest.raises(SpirvError, match=r"'g'.*'after'.*last member"):
        reflect(compile_glsl(src.replace("LENGTH", "N * 2")))


# --- bfloat16 and FP8 -------------------------------------------------------------------------
def _all_values(encoding: str) -> list[tuple[int, float]]:
    width = 16 if encoding == "bfloat16" else 8
    return [(b, decode_float(b, encoding)) for b in range(1 << width)]


_TABLES: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _reference_encode(x: float, encoding: str) -> int:
    """Brute force over every bit pattern: the nearest finite value (a zero of x's sign),
    ties to the even pattern."""
    if encoding not in _TABLES:
        pairs = [(b, v) for b, v in _all_values(encoding) if math.isfinite(v)]
        _TABLES[encoding] = (
            np.array([b for b, _ in pairs], np.int64),
            np.array([v for _, v in pairs], np.float64),
        )
    bits, vals = _TABLES[encoding]
    width = 16 if encoding == "bfloat16" else 8
    ok = (vals != 0) | ((bits >> (width - 1)) == int(math.copysign(1, x) < 0))
    diff = np.where(ok, np.abs(vals - x), np.inf)
    best = np.flatnonzero(diff == diff.min())
    even = [int(bits[i]) for i in best if bits[i] % 2 == 0]
    return even[0] if even else int(bits[best[0]])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_bit_pattern_round_trips(encoding: str) -> None:
    for bits, v in _all_values(encoding):
        if math.isnan(v):
            assert math.isnan(decode_float(encode_float(v, encoding), encoding))
        else:
            assert encode_float(v, encoding) == bits, (hex(bits), v)


def test_known_values() -> None:
    assert decode_float(0x3F80, "bfloat16") == 1.0
    assert float_max("bfloat16") == float(np.finfo(np.float32).max) * (1 - 2**-8) / (1 - 2**-24)
    assert (float_max("float8_e4m3"), float_max("float8_e5m2")) == (448.0, 57344.0)
    assert decode_float(0x7F, "float8_e4m3") != decode_float(0x7F, "float8_e4m3")  # NaN
    assert decode_float(0x7C, "float8_e5m2") == math.inf
    assert decode_float(0x01, "float8_e4m3") == 2.0**-9  # smallest subnormal
    assert decode_float(0x01, "float8_e5m2") == 2.0**-16
    with pytest.raises(ValueError, match="no infinity"):
        encode_float(math.inf, "float8_e4m3")
    assert encode_float(-math.inf, "float8_e5m2") == 0xFC
    with pytest.raises(ValueError, match="overflows float8_e4m3"):
        encode_float(449.0, "float8_e4m3")
    with pytest.raises(TypeError):
        encode_float(True, "bfloat16")
    with pytest.raises(ValueError, match="unknown floating-point encoding"):
        encode_float(1.0, "float8_e3m4")


@pytest.mark.parametrize("encoding", ["float8_e4m3", "float8_e5m2"])
def test_fp8_rounding_matches_brute_force(encoding: str) -> None:
    rng = np.random.default_rng(8)
    top = float_max(encoding)
    values = list(rng.uniform(-top, top, 300)) + list(rng.normal(0, 1e-2, 300))
    # exact midpoints between neighbours: ties go to the even pattern
    finite = sorted({v for _, v in _all_values(encoding) if math.isfinite(v) and v >= 0})
    values += [(a + b) / 2 for a, b in itertools.pairwise(finite)][::3]
    for x in values:
        assert encode_float(float(x), encoding) == _reference_encode(float(x), encoding), x


def test_bfloat16_rounding_matches_float32_bits() -> None:
    rng = np.random.default_rng(16)
    x = np.concatenate(
        [rng.normal(0, 1e3, 2000), rng.normal(0, 1e-30, 200), rng.uniform(-1e38, 1e38, 200)]
    ).astype(np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    # round to nearest even on the low 16 bits (exact for float32 inputs)
    ref = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32)
    got = [encode_float(float(v), "bfloat16") for v in x]
    assert got == ref.tolist()


# A module built word by word: bfloat16 / FP8 spec constants and block members.
def _inst(op: int, *operands: int) -> list[int]:
    return [(len(operands) + 1) << 16 | op, *operands]


def _str(s: str) -> list[int]:
    raw = s.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 4)
    return list(struct.unpack(f"<{len(raw) // 4}I", raw))


def _encoded_module(bf: int, e4: int, e5: int) -> bytes:
    (main, void, fn, bf16, fe4, fe5, uint, c_bf, c_e4, c_e5, c_n, one, length, arr, blk, ptr, var,
     label, v2, vblk, vptr, vvar) = range(1, 23)  # fmt: skip
    w: list[int] = []
    w += _inst(17, 1) + _inst(17, 5116) + _inst(17, 4212)  # Shader, BFloat16TypeKHR, Float8EXT
    w += _inst(10, *_str("SPV_KHR_bfloat16")) + _inst(10, *_str("SPV_EXT_float8"))
    w += _inst(14, 0, 1)  # Logical GLSL450
    w += _inst(15, 5, main, *_str("main"))
    w += _inst(16, main, 17, 1, 1, 1)  # LocalSize 1 1 1
    for cid, name in ((c_bf, "BF"), (c_e4, "E4"), (c_e5, "E5"), (c_n, "N")):
        w += _inst(5, cid, *_str(name))
    w += _inst(5, blk, *_str("H")) + _inst(6, blk, 0, *_str("hist"))
    w += _inst(5, vblk, *_str("V")) + _inst(6, vblk, 0, *_str("b2")) + _inst(6, vblk, 1, *_str("f"))
    for sid, cid in enumerate((c_bf, c_e4, c_e5, c_n)):
        w += _inst(71, cid, 1, sid)  # SpecId
    w += _inst(71, arr, 6, 4) + _inst(71, blk, 2) + _inst(72, blk, 0, 35, 0)
    w += _inst(71, var, 34, 0) + _inst(71, var, 33, 0)
    w += _inst(71, vblk, 2) + _inst(72, vblk, 0, 35, 0) + _inst(72, vblk, 1, 35, 4)
    w += _inst(71, vvar, 34, 0) + _inst(71, vvar, 33, 1)
    w += _inst(19, void) + _inst(33, fn, void)
    w += _inst(22, bf16, 16, 0) + _inst(22, fe4, 8, 4214) + _inst(22, fe5, 8, 4215)
    w += _inst(21, uint, 32, 0)
    w += _inst(50, bf16, c_bf, bf) + _inst(50, fe4, c_e4, e4) + _inst(50, fe5, c_e5, e5)
    w += _inst(50, uint, c_n, 3) + _inst(43, uint, one, 1)
    w += _inst(52, uint, length, 128, c_n, one)  # N + 1
    w += _inst(28, arr, uint, length) + _inst(30, blk, arr)
    w += _inst(32, ptr, 12, blk) + _inst(59, ptr, var, 12)
    w += _inst(23, v2, bf16, 2) + _inst(30, vblk, v2, fe4)
    w += _inst(32, vptr, 12, vblk) + _inst(59, vptr, vvar, 12)
    w += _inst(54, void, main, 0, fn) + _inst(248, label) + _inst(253) + _inst(56)
    header = [0x07230203, 0x00010300, 0, 23, 0]
    return struct.pack(f"<{len(header) + len(w)}I", *header, *w)


def test_encoded_spec_constants_are_reflected() -> None:
    data = _encoded_module(0x3FC0, 0x44, 0xC1)  # 1.5, 3.0, -2.5
    r = reflect(data)
    got = {c.name: (c.id, c.dtype, c.default, c.encoding) for c in r.spec_constants}
    assert got == {
        "BF": (0, np.dtype("<u2"), 1.5, "bfloat16"),
        "E4": (1, np.dtype("u1"), 3.0, "float8_e4m3"),
        "E5": (2, np.dtype("u1"), -2.5, "float8_e5m2"),
        "N": (3, np.dtype("<u4"), 3, None),
    }
    assert r.binding("H").block.size == 16  # type: ignore[union-attr]
    assert r.specialize({"N": 9, "BF": -0.375}).binding("H").block.size == 40  # type: ignore[union-attr]
    v = r.binding("V")
    assert [(m.name, m.type, m.dtype) for m in v.members] == [
        ("b2", "bf16vec2", np.dtype(("<u2", (2,)))),
        ("f", "floate4m3_t", np.dtype("u1")),
    ]
    assert r.to_dict()["spec_constants"][1]["encoding"] == "float8_e4m3"
    # either byte order
    swapped = b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))
    assert reflect(swapped) == r


def test_encoded_spec_constants_are_packed_by_their_encoding() -> None:
    r = reflect(_encoded_module(0x3FC0, 0x44, 0xC1))
    rng = np.random.default_rng(3)
    by_name = {c.name: c for c in r.spec_constants}
    for _ in range(20):
        bf, e4, e5 = rng.normal(0, 50), rng.uniform(-448, 448), rng.uniform(-57344, 57344)
        values = {
            0: spec_check(by_name["BF"], bf, "BF"),
            1: spec_check(by_name["E4"], e4, "E4"),
            2: spec_check(by_name["E5"], e5, "E5"),
            3: spec_check(by_name["N"], 7, "N"),
        }
        data, entries = pack_spec_values(r, values)
        assert entries == [(0, 0, 2), (1, 2, 1), (2, 3, 1), (3, 4, 4)]
        assert int.from_bytes(data[0:2], "little") == _reference_encode(bf, "bfloat16")
        assert data[2] == _reference_encode(e4, "float8_e4m3")
        assert data[3] == _reference_encode(e5, "float8_e5m2")
        assert int.from_bytes(data[4:8], "little") == 7
        # the bits the driver gets decode to the nearest value
        got = decode_float(int.from_bytes(data[0:2], "little"), "bfloat16")
        assert abs(got - bf) <= abs(bf) * 2**-8
    with pytest.raises(ValueError, match=r"E4 is float8_e4m3.*overflows"):
        spec_check(by_name["E4"], 500.0, "E4")
    with pytest.raises(ValueError, match="no infinity"):
        spec_check(by_name["E4"], math.inf, "E4")
    with pytest.raises(TypeError, match="BF is bfloat16"):
        spec_check(by_name["BF"], "1.0", "BF")
    assert spec_check(by_name["E5"], -math.inf, "E5") == -math.inf
    with pytest.raises(ValueError, match=r"'E4'.*overflows"):
        r.specialize({"E4": 1e6})


def test_spec_constant_type_unknown_encoding_is_refused() -> None:
    data = bytearray(_encoded_module(0x3FC0, 0x44, 0xC1))
    words = list(struct.unpack(f"<{len(data) // 4}I", data))
    at = next(
        i for i in range(5, len(words)) if words[i] == (4 << 16 | 22) and words[i + 3] == 4214
    )
    words[at + 3] = 4299
    with pytest.raises(SpirvError, match="encoding 4299"):
        reflect(struct.pack(f"<{len(words)}I", *words))


# --- validate_spirv -----------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["vulkan1.0", "vulkan1.1", "vulkan1.2", "vulkan1.3"])
@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_every_corpus_module_validates(path: Path, env: str) -> None:
    data = compile_glsl(path.read_text(), target_env=env)
    assert validate_spirv(data) is True
    swapped = b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))
    assert validate_spirv(swapped) is True


def test_validator_options_follow_the_module() -> None:
    scalar = (HERE / "spirv_corpus" / "scalar_layout.comp").read_text()
    envs = {"vulkan1.0": "vulkan1.0", "vulkan1.1": "vulkan1.1", "vulkan1.2": "vulkan1.2"}
    envs["vulkan1.3"] = "vulkan1.3"
    for env, want in envs.items():
        assert validator_options(compile_glsl(scalar, target_env=env)) == [
            "--target-env",
            want,
            "--scalar-block-layout",
        ]
    plain = compile_glsl("layout(local_size_x = 1) in; void main() {}", target_env="vulkan1.2")
    assert validator_options(plain) == ["--target-env", "vulkan1.2"]
    assert validator_options(plain, "vulkan1.3") == ["--target-env", "vulkan1.3"]
    # LocalSizeId (glslang's choice for SPIR-V 1.6) in a Vulkan 1.2 module needs maintenance4
    lsid = compile_glsl(
        (HERE / "spirv_corpus" / "local_size_id.comp").read_text(), target_env="vulkan1.3"
    )
    assert validator_options(lsid) == ["--target-env", "vulkan1.3"]
    as_15 = lsid[:4] + struct.pack("<I", 0x00010500) + lsid[8:]
    assert validator_options(as_15) == ["--target-env", "vulkan1.2", "--allow-localsizeid"]
    assert validate_spirv(as_15)


def test_a_stripped_scalar_module_validates_with_the_layout_it_needs() -> None:
    data = compile_glsl((HERE / "spirv_corpus" / "scalar_layout.comp").read_text())
    words = list(struct.unpack(f"<{len(data) // 4}I", data))
    out, i = words[:5], 5
    while i < len(words):  # drop OpSourceExtension: nothing says "scalar" any more
        n = words[i] >> 16
        if words[i] & 0xFFFF != 4:
            out += words[i : i + n]
        i += n
    stripped = struct.pack(f"<{len(out)}I", *out)
    assert "--scalar-block-layout" not in validator_options(stripped)
    assert validate_spirv(stripped)


def _set_member_offset(data: bytes, struct_name: str, member: int, offset: int) -> bytes:
    r = reflect(data)
    assert r  # the module reflects before the damage
    words = list(struct.unpack(f"<{len(data) // 4}I", data))
    names = {}
    i = 5
    while i < len(words):
        n, op = words[i] >> 16, words[i] & 0xFFFF
        if op == 5:
            raw = struct.pack(f"<{n - 2}I", *words[i + 2 : i + n])
            names[raw.split(b"\0")[0].decode()] = words[i + 1]
        if op == 72 and words[i + 1] == names.get(struct_name) and words[i + 2] == member:
            if words[i + 3] == 35:
                words[i + 4] = offset
        i += n
    return struct.pack(f"<{len(words)}I", *words)


def test_invalid_modules_are_still_refused() -> None:
    good = compile_glsl(
        "#extension GL_EXT_scalar_block_layout : require\n"
        "layout(local_size_x = 1) in;\n"
        "layout(scalar, binding = 0) buffer B { float a; float b; vec3 c[]; };\n"
        "void main() { b = a + c[0].x; }\n"
    )
    assert validate_spirv(good)
    # 'b' at offset 2: not even scalar block layout allows a misaligned float
    bad = _set_member_offset(good, "B", 1, 2)
    with pytest.raises(SpirvError, match=r"invalid SPIR-V \(spirv-val .*--scalar-block-layout\)"):
        validate_spirv(bad)
    # a structural fault: the first OpFunction's type replaced by its return type
    words = list(struct.unpack(f"<{len(good) // 4}I", good))
    at = next(i for i in range(5, len(words)) if words[i] & 0xFFFF == 54)
    words[at + 4] = words[at + 1]
    with pytest.raises(SpirvError, match="invalid SPIR-V"):
        validate_spirv(struct.pack(f"<{len(words)}I", *words))


def test_spec_constant_objects_compare_with_their_encoding() -> None:
    a = SpecConstant(id=0, name="X", dtype=np.dtype("<u2"), default=1.0, encoding="bfloat16")
    assert a != SpecConstant(id=0, name="X", dtype=np.dtype("<u2"), default=1.0)
