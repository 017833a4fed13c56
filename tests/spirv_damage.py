"""Damaged SPIR-V for robustness tests: word surgery on compiled modules and a hypothesis
strategy of random damage (bit flips, truncation, overwritten or deleted words, header words).

Used by the reflection fuzzer (``shader/test_spirv.py``) and the pipeline-creation tests
(``core/test_pipeline.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

# A shader with most kinds of declarations (compiled unoptimized, names kept).
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


def non_utf8_import_name(spirv: bytes) -> bytes:
    """The OpExtInstImport string "GLSL.std.450" with a byte that is not UTF-8 (0xD3)."""
    w = to_words(spirv)
    i = next(i for i, op, _ in instructions(w) if op == OP_EXT_INST_IMPORT)
    b = bytearray(spirv)
    b[(i + 2) * 4 + 2] = 0xD3  # "GL\xd3L.std.450"
    return bytes(b)


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
