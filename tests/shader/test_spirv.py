"""Tests of vknb.spirv: reflection against spirv-cross --reflect, numpy layouts, robustness.

Shaders are compiled with glslc into pytest's temporary directories. glslc, spirv-cross and
spirv-dis are required: where one is missing the tests fail (they never skip), naming the
Debian package to install.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import re
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import FUZZ, report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spirv_damage import mutations
from vknb.spirv import PAD_FIELD, Block, Member, Reflection, dtype_to_json, reflect

import vknb
from vknb.errors import SpirvError, VulkanError

HERE = Path(__file__).resolve().parent
CORPUS = sorted((HERE / "spirv_corpus").glob("*.comp"))
REPO_SHADERS = sorted((HERE.parents[1] / "vknb" / "library" / "shaders").glob("*.comp"))
ENVS = ("vulkan1.0", "vulkan1.1", "vulkan1.3")
TOOLS = {"glslc": "glslc", "spirv-cross": "spirv-cross", "spirv-dis": "spirv-tools"}

Compile = Callable[..., tuple[Path, bytes]]


# --- tools and compilation ------------------------------------------------------------------
@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    found: dict[str, str] = {}
    for exe, package in TOOLS.items():
        path = shutil.which(exe)
        if path is None:
            pytest.fail(
                f"{exe} is not on PATH and the SPIR-V tests need it: install the Debian package "
                f"'{package}' (apt-get install {package})",
                pytrace=False,
            )
        found[exe] = path
    return found


@pytest.fixture(scope="session")
def compile_glsl(tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Compile:
    """Compile GLSL (a path or source text) with glslc; cached per (source, env, stage)."""
    root = tmp_path_factory.mktemp("spirv")
    cache: dict[tuple[str, str, str], tuple[Path, bytes]] = {}
    counter = itertools.count()

    def compile_(
        source: str | Path, env: str = "vulkan1.1", stage: str = "comp"
    ) -> tuple[Path, bytes]:
        text = source.read_text() if isinstance(source, Path) else source
        if not re.search(r"^\s*#\s*version\b", text, re.M):
            # Like vknb.compiler: a source without #version (shaders/*.comp) gets 450.
            text = f"#version 450\n#line 1\n{text}"
        key = (text, env, stage)
        if key not in cache:
            work = root / str(next(counter))
            work.mkdir()
            src = work / f"shader.{stage}"
            src.write_text(text)
            out = work / "shader.spv"
            cmd = [tools["glslc"], f"-fshader-stage={stage}", f"--target-env={env}"]
            if isinstance(source, Path):
                cmd += ["-I", str(source.parent)]
            cmd += ["-o", str(out), str(src)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, timeout=60)
            if proc.returncode:
                name = source.name if isinstance(source, Path) else "<source>"
                pytest.fail(f"glslc failed on {name} ({env}):\n{proc.stderr}", pytrace=False)
            cache[key] = (out, out.read_bytes())
        return cache[key]

    return compile_


def spirv_cross_reflect(tools: dict[str, str], spv: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [tools["spirv-cross"], str(spv), "--reflect"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"spirv-cross --reflect failed on {spv}:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def spirv_dis(tools: dict[str, str], spv: Path) -> str:
    proc = subprocess.run(
        [tools["spirv-dis"], "--raw-id", str(spv)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --- comparison with spirv-cross ------------------------------------------------------------
SC_SCALAR_DTYPES: dict[str, Any] = {
    "bool": np.bool_,
    "int": "<i4",
    "uint": "<u4",
    "float": "<f4",
    "double": "<f8",
    "int64_t": "<i8",
    "uint64_t": "<u8",
    "float16_t": "<f2",
    "int16_t": "<i2",
    "uint16_t": "<u2",
    "int8_t": "i1",
    "uint8_t": "u1",
}
SC_CATEGORIES = (
    "ssbos",
    "ubos",
    "images",
    "textures",
    "separate_images",
    "separate_samplers",
    "acceleration_structures",
)


def local_size_id_literals(dis: str) -> list[int | None]:
    """The literal values of a LocalSizeId mode's operands, from spirv-dis --raw-id output."""
    mode = re.search(r"OpExecutionModeId %\d+ LocalSizeId %(\d+) %(\d+) %(\d+)", dis)
    assert mode, "expected a LocalSizeId execution mode"
    out: list[int | None] = []
    for cid in mode.groups():
        const = re.search(rf"^\s*%{cid} = OpConstant %\d+ (\d+)\s*$", dis, re.M)
        out.append(int(const.group(1)) if const else None)
    return out


def compare_members(
    ours: tuple[Member, ...],
    theirs: list[dict[str, Any]],
    types: dict[str, Any],
    spec_defaults: dict[int, Any],
    path: str,
) -> None:
    assert len(ours) == len(theirs), f"{path}: member count"
    for m, j in zip(ours, theirs, strict=True):
        where = f"{path}.{m.name}"
        assert m.name == j["name"], where
        assert m.offset == j["offset"], where
        dims = j.get("array", [])[::-1]  # spirv-cross lists the innermost dimension first
        literal = j.get("array_size_is_literal", [])[::-1]
        our_dims = [int(d) if d else 0 for d in re.findall(r"\[(\d*)\]", m.type)]
        assert len(our_dims) == len(dims), where
        for mine, theirs_d, lit in zip(our_dims, dims, literal, strict=True):
            # A specialization-constant length is given as the constant's <id>.
            expected = theirs_d if lit else spec_defaults[theirs_d]
            assert mine == expected, where
        if dims:
            assert m.array_length == our_dims[0], where
            assert m.array_stride is not None and m.array_stride == j["array_stride"], where
            assert m.size == m.array_stride * m.array_length, where
        else:
            assert m.array_length is None and m.array_stride is None, where
            assert m.size == m.dtype.itemsize, where
        if "matrix_stride" in j:
            assert m.matrix_stride == j["matrix_stride"], where
        assert m.row_major == j.get("row_major", False), where
        base = m.type.split("[")[0]
        pointer = types.get(j["type"], {}).get("physical_pointer", False)
        if j.get("physical_pointer") or pointer:
            # A buffer reference: an 8-byte address named after the block it points to.
            pointee = types[j["type"]]
            if pointer and "type" in pointee:
                pointee = types[pointee["type"]]
            assert base == pointee["name"], where
            assert struct_base(m.dtype) == np.dtype("<u8") and m.members == (), where
        elif j["type"] in types:
            struct_type = types[j["type"]]
            assert base == struct_type["name"], where
            compare_members(m.members, struct_type["members"], types, spec_defaults, where)
        else:
            assert base == j["type"], where
            assert m.members == (), where


def compare_with_spirv_cross(r: Reflection, spv: Path, tools: dict[str, str]) -> None:
    ref = spirv_cross_reflect(tools, spv)
    types = ref.get("types", {})

    entry = ref["entryPoints"][0]  # spirv-cross, like reflect(), takes the first entry point
    assert r.entry_point == entry["name"]
    literals: list[int | None] | None = None
    for dim in range(3):
        value = entry["workgroup_size"][dim]
        if entry["workgroup_size_is_spec_constant_id"][dim]:
            assert r.local_size_ids[dim] == value, f"local_size_ids[{dim}]"
            continue
        assert r.local_size_ids[dim] is None, f"local_size_ids[{dim}]"
        if value == 0:
            # spirv-cross reports 0 for a LocalSizeId operand that is a plain constant: read
            # the constant from the disassembly instead.
            if literals is None:
                literals = local_size_id_literals(spirv_dis(tools, spv))
            value = literals[dim]
        assert r.local_size[dim] == value, f"local_size[{dim}]"

    spec: dict[int, list[dict[str, Any]]] = {}
    for c in ref.get("specialization_constants", []):
        spec.setdefault(c["id"], []).append(c)
    assert [c.id for c in r.spec_constants] == sorted(spec)
    for c in r.spec_constants:
        # glslc may give one SpecId to several constants (local_size_x_id = N and
        # constant_id = N): reflect() reports the named one.
        candidates = spec[c.id]
        named = [j for j in candidates if j["name"]] or candidates
        j = named[0]
        assert c.name == j["name"], c
        assert c.dtype == np.dtype(SC_SCALAR_DTYPES[j["type"]]), c
        if "default_value" in j:
            if c.dtype.kind == "f":
                assert c.dtype.type(c.default) == c.dtype.type(j["default_value"]), c
            else:
                assert c.default == j["default_value"], c
            assert type(c.default) is type(j["default_value"]), c
    for dim, sid in enumerate(r.local_size_ids):
        if sid is not None:
            assert r.local_size[dim] in [j.get("default_value") for j in spec[sid]]
    spec_defaults = {
        c["variable_id"]: c.get("default_value") for c in ref.get("specialization_constants", [])
    }

    # Several bindings may share a (set, binding) (aliases): they are matched by name.
    theirs: dict[tuple[int, int, str], tuple[str, dict[str, Any]]] = {}
    for category in SC_CATEGORIES:
        for j in ref.get(category, []):
            theirs[(j["set"], j["binding"], j["name"])] = (category, j)
    ours = {(b.set, b.binding, b.block_name or b.name): b for b in r.bindings}
    assert len(ours) == len(r.bindings), "binding names are unique within a slot"
    assert sorted(ours) == sorted(theirs), "bindings"
    keys = [(b.set, b.binding) for b in r.bindings]
    assert keys == sorted(keys), "bindings are sorted by (set, binding)"
    slots: dict[tuple[int, int], list[str]] = {}
    for b in r.bindings:
        slots.setdefault((b.set, b.binding), []).append(b.name)
    for b in r.bindings:
        expected_aliases = [n for n in slots[(b.set, b.binding)] if n != b.name]
        assert list(b.aliases) == expected_aliases, f"aliases of {b.name!r}"
    assert set(r.aliases) == {k for k, v in slots.items() if len(v) > 1}
    for (dset, binding, _), b in ours.items():
        key = (dset, binding)
        category, j = theirs[(dset, binding, b.block_name or b.name)]
        where = f"binding {key} {b.name!r}"
        count = 1
        spec_sized = False
        for n, lit in zip(j.get("array", []), j.get("array_size_is_literal", []), strict=True):
            count *= n if lit else spec_defaults[n]
            spec_sized |= not lit
        assert b.count == count, where
        assert b.runtime_sized == (count == 0), where
        assert bool(b.count_spec_ids) == spec_sized, where
        is_buffer = "Buffer" in j["type"]
        expected_kind = {
            "ssbos": ("storage", 7),
            "ubos": ("uniform", 6),
            "images": ("storage_texel_buffer", 5) if is_buffer else ("storage_image", 3),
            "textures": (
                ("uniform_texel_buffer", 4) if is_buffer else ("combined_image_sampler", 1)
            ),
            "separate_images": ("uniform_texel_buffer", 4) if is_buffer else ("sampled_image", 2),
            "separate_samplers": ("sampler", 0),
            "acceleration_structures": ("acceleration_structure", 1000150000),
        }[category]
        assert (b.kind, b.descriptor_type) == expected_kind, where
        if category in ("ssbos", "ubos"):
            assert b.block is not None, where
            assert b.block_name == j["name"] == b.block.name, where
            assert b.block.size == j["block_size"], where
            assert b.readonly == (j.get("readonly", False) or category == "ubos"), where
            assert b.writeonly == j.get("writeonly", False), where
            assert b.members == b.block.members
            compare_members(
                b.block.members, types[j["type"]]["members"], types, spec_defaults, where
            )
            check_block_dtypes(b.block)
            runtime = b.block.runtime_array
            assert b.dtype == (b.block.dtype if runtime is None else runtime.dtype), where
        else:
            assert b.name == j["name"], where
            assert b.block is None and b.dtype is None and b.members == (), where
            assert b.block_name == "", where
            if category == "images":
                assert b.readonly == j.get("readonly", False), where
                assert b.writeonly == j.get("writeonly", False), where

    push = ref.get("push_constants", [])
    if r.push_constants is None:
        assert push == []
    else:
        assert len(push) == 1
        struct_type = types[push[0]["type"]]
        assert r.push_constants.name == struct_type["name"]
        compare_members(
            r.push_constants.members, struct_type["members"], types, spec_defaults, "push"
        )
        check_block_dtypes(r.push_constants)


# --- numpy layout checks --------------------------------------------------------------------
def struct_base(dt: np.dtype) -> np.dtype:
    while dt.subdtype is not None:
        dt = dt.subdtype[0]
    return dt


def check_struct_dtype(members: tuple[Member, ...], dt: np.dtype, path: str) -> None:
    """Every field of ``dt`` sits at its member's offset, with the member's size, recursively."""
    fixed = [m for m in members if m.array_length != 0]
    assert dt.names is not None and len(dt.names) == len(fixed), path
    assert dt.fields is not None
    for name, m in zip(dt.names, fixed, strict=True):
        where = f"{path}.{m.name}"
        field, offset = dt.fields[name][:2]
        assert offset == m.offset, where
        assert field.itemsize == m.size, where
        assert m.offset + m.size <= dt.itemsize, where
        if m.array_length:
            assert m.dtype.itemsize == m.array_stride, where
            assert field == np.dtype((m.dtype, (m.array_length,))), where
        else:
            assert field == m.dtype, where
        if m.members:
            check_struct_dtype(m.members, struct_base(m.dtype), where)
        else:
            check_value_dtype(m, where)


def check_value_dtype(m: Member, where: str) -> None:
    """A scalar, vector or matrix member has the shape its type promises (module docstring)."""
    if m.type.count("[") > 1:
        return  # the element of an array of arrays is an array: covered by the size checks
    dt = m.dtype
    if m.array_length is not None and dt.names == (PAD_FIELD,):
        assert dt.fields is not None
        dt = dt.fields[PAD_FIELD][0]
    match = re.fullmatch(r"[a-z0-9]*?(vec|mat)(\d)(?:x(\d))?", m.type.split("[")[0])
    if match is None:
        assert dt.subdtype is None and dt.names is None, where
        return
    assert dt.subdtype is not None, where
    if match.group(1) == "vec":
        assert dt.subdtype[1] == (int(match.group(2)),), where
        return
    cols = int(match.group(2))
    rows = int(match.group(3) or cols)
    outer, inner = (rows, cols) if m.row_major else (cols, rows)
    base, shape = dt.subdtype
    if shape == (outer, inner):
        assert m.matrix_stride in (None, inner * base.itemsize), where
    else:
        # Padded rows/columns: a one-field struct of `inner` values, `matrix_stride` long.
        assert shape == (outer,), where
        assert base.names == (PAD_FIELD,) and base.itemsize == m.matrix_stride, where
        assert base.fields is not None
        padded = base.fields[PAD_FIELD][0].subdtype
        assert padded is not None and padded[1] == (inner,), where


def check_block_dtypes(block: Block) -> None:
    assert block.dtype.itemsize == block.size, block.name
    check_struct_dtype(block.members, block.dtype, block.name)
    if block.runtime_array is not None:
        assert block.members[-1] is block.runtime_array
        assert block.runtime_array.size == 0
        assert block.runtime_array.dtype.itemsize == block.runtime_array.array_stride
        # The fixed part ends where the runtime array starts.
        assert block.size == block.runtime_array.offset


# --- corpus ---------------------------------------------------------------------------------
def corpus_cases() -> Iterator[Any]:
    for path in CORPUS:
        for env in ENVS:
            yield pytest.param(path, env, id=f"{path.stem}-{env}")
    for path in REPO_SHADERS:
        if path.stem in BEYOND_SPIRV_CROSS:
            continue  # checked by hand below
        for env in ("vulkan1.1", "vulkan1.3"):
            yield pytest.param(path, env, id=f"shaders/{path.stem}-{env}")


# Library shaders that the spirv-cross installed here (Debian's 2022 build) cannot parse: it
# stops on cooperative-matrix instructions ("Currently no block to insert opcode").  Their
# reflection is checked against what the source declares instead.
BEYOND_SPIRV_CROSS = {"matmul_fp16_coopmat"}


@pytest.mark.parametrize("env", ["vulkan1.1", "vulkan1.3"])
def test_cooperative_matrix_shader_reflects_what_it_declares(
    env: str, compile_glsl: Compile, tools: dict[str, str]
) -> None:
    path = HERE.parents[1] / "vknb" / "library" / "shaders" / "matmul_fp16_coopmat.comp"
    spv, data = compile_glsl(path, env)
    proc = subprocess.run(
        [tools["spirv-cross"], str(spv), "--reflect"], capture_output=True, text=True, timeout=60
    )
    if proc.returncode == 0:  # a newer spirv-cross: hold it to the same comparison as the rest
        compare_with_spirv_cross(reflect(data), spv, tools)
    r = reflect(data)
    assert r.local_size == (256, 1, 1)
    got = [
        (b.set, b.binding, b.kind, b.block.runtime_array.type, b.readonly, b.writeonly)
        for b in r.bindings
    ]
    assert got == [
        (0, 0, "storage", "uvec4[]", True, False),
        (0, 1, "storage", "uvec4[]", True, False),
        (0, 2, "storage", "uvec4[]", False, True),
    ]
    assert [(m.name, m.offset, m.type) for m in r.push_constants.members] == [
        ("M", 0, "uint"),
        ("N", 4, "uint"),
        ("K", 8, "uint"),
    ]


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 15


@pytest.mark.parametrize(("path", "env"), list(corpus_cases()))
def test_matches_spirv_cross(
    path: Path, env: str, compile_glsl: Compile, tools: dict[str, str]
) -> None:
    spv, data = compile_glsl(path, env)
    r = reflect(data)
    expected_version = {"vulkan1.0": (1, 0), "vulkan1.1": (1, 3), "vulkan1.3": (1, 6)}[env]
    assert r.spirv_version == expected_version
    assert r.bound == struct.unpack_from("<I", data, 12)[0]
    compare_with_spirv_cross(r, spv, tools)
    json.dumps(r.to_dict())


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_byteswapped_module_reflects_the_same(path: Path, compile_glsl: Compile) -> None:
    _, data = compile_glsl(path, "vulkan1.1")
    swapped = b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))
    assert reflect(swapped) == reflect(data)
    assert reflect(bytearray(data)) == reflect(memoryview(data)) == reflect(data)


def test_reflection_is_fast(compile_glsl: Compile) -> None:
    worst = 0.0
    for path in CORPUS:
        _, data = compile_glsl(path, "vulkan1.1")
        best = min(_timed(reflect, data) for _ in range(5))
        worst = max(worst, best)
    # A few ms at most, even on a slow CI machine (it is ~0.1-0.5 ms on a desktop).
    assert worst < 0.005, f"slowest corpus shader took {worst * 1e3:.2f} ms"


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


# --- specific expectations ------------------------------------------------------------------
def test_saxpy(compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "saxpy.comp")[1])
    assert r.entry_point == "main"
    assert r.local_size == (64, 1, 1) and r.local_size_ids == (None, None, None)
    x, y = r.bindings
    assert (x.set, x.binding, x.name, x.block_name, x.kind) == (0, 0, "X", "X", "storage")
    assert x.readonly and not x.writeonly and not y.readonly and not y.writeonly
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert x.count == 1 and x.descriptor_type == 7
    assert x.block is not None and x.block.size == 0 and x.block.dtype.itemsize == 0
    pc = r.push_constants
    assert pc is not None and pc.name == "Params" and pc.size == 8
    assert [(m.name, m.offset, m.type) for m in pc.members] == [("a", 0, "float"), ("n", 4, "uint")]
    assert pc.dtype == np.dtype({"names": ["a", "n"], "formats": ["<f4", "<u4"]})
    assert r.spec_constants == ()


def test_binding_dtypes_follow_the_documented_rules(compile_glsl: Compile) -> None:
    src = """#version 450
    layout(local_size_x = 1) in;
    struct Particle { vec3 pos; float mass; vec2 vel; };
    layout(std430, binding = 0) buffer F { float data[]; } f;
    layout(std430, binding = 1) buffer V4 { vec4 v[]; };
    layout(std430, binding = 2) buffer P { Particle p[]; };
    layout(std140, binding = 3) uniform U { float a; int n; } u;
    layout(std430, binding = 4) buffer V3 { vec3 v3[]; };
    layout(std140, binding = 5) uniform M { mat3 m; float arr[2]; bool flag; } mu;
    layout(std430, binding = 6) buffer RM { layout(row_major) mat2x3 rm; mat2x3 cm; } rmb;
    void main() {}
    """
    r = reflect(compile_glsl(src)[1])
    b = {x.binding: x for x in r.bindings}
    assert b[0].dtype == np.dtype(np.float32)
    assert b[1].dtype == np.dtype((np.float32, (4,)))
    particle = b[2].dtype
    assert particle is not None and particle.names == ("pos", "mass", "vel")
    assert particle.itemsize == 32 == b[2].members[0].array_stride
    assert particle.fields is not None and particle.fields["vel"][1] == 16
    assert b[3].dtype == np.dtype({"names": ["a", "n"], "formats": ["<f4", "<i4"]})
    assert b[3].dtype.itemsize == b[3].block.size == 8  # type: ignore[union-attr]
    # vec3 array elements (stride 16) are wrapped in a padded one-field struct.
    assert b[4].dtype == np.dtype(
        {"names": [PAD_FIELD], "formats": [("<f4", (3,))], "offsets": [0], "itemsize": 16}
    )
    arr = np.zeros(3, b[4].dtype)
    assert arr[PAD_FIELD].shape == (3, 3)
    # std140 mat3: 3 padded columns; the `v` view is [column][row].
    m_member, arr_member, flag = b[5].members
    col = np.dtype({"names": [PAD_FIELD], "formats": [("<f4", (3,))], "itemsize": 16})
    assert m_member.dtype == np.dtype((col, (3,))) and m_member.size == 48
    assert arr_member.dtype == np.dtype({"names": [PAD_FIELD], "formats": ["<f4"], "itemsize": 16})
    assert (flag.type, flag.dtype) == ("uint", np.dtype("<u4"))  # glslc stores bool as uint
    ubo = np.zeros((), b[5].dtype)
    assert ubo["m"][PAD_FIELD].shape == (3, 3)
    # row_major mat2x3 (2 columns, 3 rows) in std430: 3 rows of 2; column-major: 2 columns of 3.
    rm, cm = b[6].members
    assert rm.row_major and rm.dtype == np.dtype(("<f4", (3, 2))) and rm.size == 24
    assert not cm.row_major and cm.dtype.itemsize == 32  # 2 columns of vec3, stride 16


def test_bool_member_type_is_bool_uint32() -> None:
    # glslc lowers bool to uint in blocks, so assemble a block with an OpTypeBool member.
    words = _module(
        [
            _op(21, 10, 32, 0),  # %10 uint
            _op(20, 11),  # %11 bool
            _op(30, 12, 11, 10),  # %12 struct { bool; uint; }
            _op(32, 13, 12, 12),  # %13 ptr StorageBuffer
            _op(59, 13, 14, 12),  # %14 variable
            _op(5, 12, *_str("S")),
            _op(72, 12, 0, 35, 0),
            _op(72, 12, 1, 35, 4),
            _op(71, 12, 2),
            _op(71, 14, 33, 0),
            _op(71, 14, 34, 0),
        ]
    )
    (b,) = reflect(words).bindings
    assert [(m.type, m.dtype, m.size) for m in b.members] == [
        ("bool", np.dtype("<u4"), 4),
        ("uint", np.dtype("<u4"), 4),
    ]


def test_spec_constants(compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "spec_constants.comp")[1])
    got = {c.name: (c.id, c.dtype, c.default) for c in r.spec_constants}
    assert got == {
        "USE_FAST_PATH": (0, np.dtype(np.bool_), True),
        "ITERATIONS": (1, np.dtype(np.int32), -7),
        "TILE": (2, np.dtype(np.uint32), 16),
        "SCALE": (3, np.dtype(np.float32), 0.5),
        "PRECISE": (4, np.dtype(np.float64), 3.25),
        "DEBUG": (10, np.dtype(np.bool_), False),
        "TAPS": (11, np.dtype(np.int32), 4),
    }
    assert [c.id for c in r.spec_constants] == sorted(c.id for c in r.spec_constants)
    (w,) = r.binding("kern").members
    assert (w.type, w.array_length, w.size) == ("float[4]", 4, 64)


def test_wide_and_narrow_spec_constants(compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "arithmetic_types.comp")[1])
    got = {c.name: (c.dtype, c.default) for c in r.spec_constants}
    assert got == {
        "BIG": (np.dtype("<i8"), -5000000000),
        "UBIG": (np.dtype("<u8"), 9000000000),
        "HALF": (np.dtype("<f2"), 1.5),
        "SHORT": (np.dtype("<i2"), -12),
        "BYTE": (np.dtype("u1"), 200),
        "SBYTE": (np.dtype("i1"), -3),
    }


@pytest.mark.parametrize("env", ENVS)
def test_local_size_from_spec_constants(env: str, compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "local_size_id.comp", env)[1])
    # glslang gives local_size_x_id its own constant (default 1), apart from WG_X (default 32)
    # that has the same SpecId: unspecialized, the module runs with (1, 1, 2).
    assert r.local_size == (1, 1, 2)
    assert r.local_size_ids == (3, 7, None)
    assert [(c.id, c.name, c.default) for c in r.spec_constants] == [
        (3, "WG_X", 32),
        (7, "WG_Y", 4),
    ]
    assert r.local_size_for({c.id: c.default for c in r.spec_constants}) == (32, 4, 2)
    assert r.local_size_for() == (1, 1, 2)
    assert r.local_size_for({3: 8}) == (8, 1, 2)
    assert r.local_size_for({"WG_Y": 2, 99: 5}) == (1, 2, 2)
    assert r.local_size_for({3: np.uint32(16), 7: 1}) == (16, 1, 2)
    with pytest.raises(ValueError, match="local_size"):
        r.local_size_for({3: 0})
    with pytest.raises(TypeError, match="expected an int"):
        r.local_size_for({7: 1.5})

    r = reflect(compile_glsl(HERE / "spirv_corpus" / "local_size_id_default.comp", env)[1])
    assert r.local_size == (1, 1, 1) and r.local_size_ids == (0, None, None)
    assert r.local_size_for({0: 256}) == (256, 1, 1)


def test_binding_lookup(compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "access_qualifiers.comp")[1])
    assert r.binding("src").binding == 0
    assert r.binding("In").binding == 0  # block name
    assert r.binding("values").binding == 2  # the runtime-array member
    assert r.binding("ro_img").kind == "storage_image"
    with pytest.raises(KeyError, match="ambiguous"):
        r.binding("data")  # both In and OutBuf end in `data[]`
    with pytest.raises(KeyError, match=r"available: .*src"):
        r.binding("nope")
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "anonymous_blocks.comp")[1])
    assert r.binding("counts") is r.binding("Counts")
    assert r.binding("bins").block_name == "Histogram"  # its only member is a fixed array
    assert r.binding("Counts").name == "Counts"  # anonymous instance: the block's name


def test_access_qualifiers(compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "access_qualifiers.comp")[1])
    flags = {b.name: (b.readonly, b.writeonly) for b in r.bindings}
    assert flags == {
        "src": (True, False),
        "dst": (False, True),
        "partial": (False, False),  # only some members are readonly
        "all_members": (True, False),  # every member is readonly
        "rw": (False, False),
        "ro_img": (True, False),
        "wo_img": (False, True),
    }


def test_descriptor_kinds_and_counts(compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "images.comp")[1])
    kinds = {b.name: (b.kind, b.descriptor_type) for b in r.bindings}
    assert kinds == {
        "src_img": ("storage_image", 3),
        "dst_img": ("storage_image", 3),
        "volume": ("storage_image", 3),
        "combined": ("combined_image_sampler", 1),
        "separate_tex": ("sampled_image", 2),
        "separate_smp": ("sampler", 0),
        "uniform_texels": ("uniform_texel_buffer", 4),
        "storage_texels": ("storage_texel_buffer", 5),
        "plain_texels": ("uniform_texel_buffer", 4),
        "layers": ("storage_image", 3),
    }
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "descriptor_arrays.comp")[1])
    counts = {b.name: (b.count, b.runtime_sized, b.count_spec_ids) for b in r.bindings}
    assert counts == {
        "bufs": (4, False, ()),
        "params": (3, False, ()),
        "textures": (0, True, ()),  # unsized: the runtime must refuse or size it
        "images": (8, False, ()),
        "spec_textures": (5, False, (0,)),  # constant_id = 0, default 5
    }
    assert r.aliases == {}
    assert r.check_layout() == r.bindings
    d = r.binding("spec_textures").to_dict()
    assert d["count_spec_ids"] == [0] and d["aliases"] == []


def test_spec_constant_expression_descriptor_count(compile_glsl: Compile) -> None:
    _, data = compile_glsl(
        "#version 450\nlayout(local_size_x = 1) in;\n"
        "layout(constant_id = 3) const uint A = 2;\nlayout(constant_id = 7) const uint B = 3;\n"
        "layout(set = 0, binding = 0) uniform sampler2D t[A * B + 1];\n"
        "layout(set = 0, binding = 1) buffer O { float o[]; };\n"
        "void main() { o[0] = texture(t[6], vec2(0.5)).x; }\n"
    )
    t = reflect(data).binding("t")
    assert (t.count, t.count_spec_ids) == (7, (3, 7))


# --- aliases: several bindings in one descriptor slot ---------------------------------------
def test_aliases_of_one_descriptor_type(compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "aliased_bindings.comp")[1])
    groups = {k: sorted(b.name for b in v) for k, v in r.aliases.items()}
    assert groups == {
        (0, 0): ["InF", "OutU"],
        (0, 1): ["header", "raw"],
        (0, 2): ["params", "params_int"],
        (1, 0): ["img_f", "img_u"],
    }
    assert r.binding("InF").aliases == ("OutU",) and r.binding("OutU").aliases == ("InF",)
    assert r.binding("Lonely").aliases == ()
    slots = r.check_layout()
    assert [(b.set, b.binding) for b in slots] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    by_slot = {(b.set, b.binding): b for b in slots}
    # readonly InF + writeonly OutU: the descriptor is both read and written.
    assert (by_slot[(0, 0)].readonly, by_slot[(0, 0)].writeonly) == (False, False)
    assert by_slot[(0, 0)].kind == "storage"
    # The slot is the alias with the largest fixed part (header's 8 bytes; raw has none).
    assert by_slot[(0, 1)].name == "header" and by_slot[(0, 1)].aliases == ("raw",)
    assert by_slot[(0, 2)].readonly and by_slot[(0, 2)].kind == "uniform"
    assert by_slot[(1, 1)] is r.binding("Lonely")
    # Lookup by any alias's name still finds that alias.
    assert r.binding("raw").block_name == "Bytes" and r.binding("params_int").binding == 2


@pytest.mark.parametrize(
    ("decls", "match"),
    [
        (
            "layout(binding = 0) buffer S { float s[]; };\n"
            "layout(binding = 0) uniform U { vec4 u; };\n",
            r"'[SU]' \((storage|uniform), count 1\) and '[SU]' .* share set=0, binding=0 with "
            r"different descriptor types",
        ),
        (
            "layout(binding = 0, r32f) uniform image2D img;\n"
            "layout(binding = 0) uniform sampler2D tex;\n",
            r"'(img|tex)' .* and '(img|tex)' .*different descriptor types",
        ),
        (
            "layout(binding = 0) buffer S { float s[]; } many[2];\n"
            "layout(binding = 0) buffer T { float t[]; } one;\n",
            r"'(many|one)' \(storage, count [12]\) and .*different descriptor counts",
        ),
    ],
    ids=["buffer-kinds", "image-kinds", "counts"],
)
def test_check_layout_refuses_aliases_of_different_types(
    decls: str, match: str, compile_glsl: Compile
) -> None:
    src = f"#version 450\nlayout(local_size_x = 1) in;\n{decls}void main() {{}}\n"
    r = reflect(compile_glsl(src)[1])
    assert len(r.aliases[(0, 0)]) == 2
    with pytest.raises(SpirvError, match=match) as info:
        r.check_layout()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("seed", range(8))
def test_random_aliases_match_spirv_cross_and_check_layout(
    seed: int, compile_glsl: Compile, tools: dict[str, str]
) -> None:
    rng = random.Random(seed)
    kinds = {
        "storage": (
            "layout(std430, set = {s}, binding = {b}) buffer B{i} {{ {t} v{i}[]; }} r{i};",
            "r{i}.v{i}[0]",
        ),
        "uniform": (
            "layout(std140, set = {s}, binding = {b}) uniform U{i} {{ {t} v{i}; }} r{i};",
            "r{i}.v{i}",
        ),
        "storage_image": (
            "layout(set = {s}, binding = {b}, r32f) uniform image2D r{i};",
            "imageLoad(r{i}, ivec2(0)).x",
        ),
        "combined_image_sampler": (
            "layout(set = {s}, binding = {b}) uniform sampler2D r{i};",
            "texture(r{i}, vec2(0)).x",
        ),
    }
    decls, uses, declared = [], [], []
    for i in range(rng.randint(2, 7)):
        kind = rng.choice(list(kinds))
        s, b = rng.randint(0, 1), rng.randint(0, 2)
        decl, use = kinds[kind]
        decls.append(decl.format(s=s, b=b, i=i, t=rng.choice(["float", "vec4", "uint"])))
        uses.append(f"float({use.format(i=i)})")
        declared.append((s, b, f"r{i}", kind))
    src = (
        "#version 450\nlayout(local_size_x = 1) in;\n"
        + "\n".join(decls)
        + "\nlayout(set = 2, binding = 0) buffer Out { float o[]; };\n"
        + f"void main() {{ o[0] = {' + '.join(uses)}; }}\n"
    )
    spv, data = compile_glsl(src)
    r = reflect(data)
    compare_with_spirv_cross(r, spv, tools)
    slots: dict[tuple[int, int], set[str]] = {}
    for s, b, _, kind in declared:
        slots.setdefault((s, b), set()).add(kind)
    assert {k for k, v in r.aliases.items()} == {
        k for k in slots if sum(1 for d in declared if (d[0], d[1]) == k) > 1
    }
    if any(len(v) > 1 for v in slots.values()):
        with pytest.raises(SpirvError, match="different descriptor types"):
            r.check_layout()
        return
    merged = r.check_layout()
    assert [(b.set, b.binding) for b in merged] == sorted(set(slots) | {(2, 0)})
    for slot in merged:
        group = [b for b in r.bindings if (b.set, b.binding) == (slot.set, slot.binding)]
        assert slot.readonly == all(b.readonly for b in group)
        assert slot.writeonly == all(b.writeonly for b in group)
        assert sorted((*slot.aliases, slot.name)) == sorted(b.name for b in group)


def test_entry_points(compile_glsl: Compile) -> None:
    _, vert = compile_glsl("#version 450\nvoid main() { gl_Position = vec4(0); }", stage="vert")
    with pytest.raises(SpirvError, match=r"no compute .*found: 'main' \(Vertex\)"):
        reflect(vert)
    _, comp = compile_glsl(HERE / "spirv_corpus" / "saxpy.comp")
    with pytest.raises(SpirvError, match=r"named 'other'; found: 'main' \(GLCompute\)"):
        reflect(comp, "other")
    assert reflect(comp, "main").entry_point == "main"


def test_to_dict_is_json(compile_glsl: Compile) -> None:
    r = reflect(compile_glsl(HERE / "spirv_corpus" / "std140_ubo.comp")[1])
    d = json.loads(json.dumps(r.to_dict()))
    assert d["local_size"] == [8, 8, 1]
    scene = d["bindings"][0]
    assert scene["name"] == "scene" and scene["block"]["size"] == r.bindings[0].block.size  # type: ignore[union-attr]
    assert dtype_to_json(np.dtype(("<f4", (3,)))) == {"base": "<f4", "shape": [3]}


def test_errors_are_vulkan_and_value_errors() -> None:
    with pytest.raises(SpirvError) as info:
        reflect(b"")
    assert isinstance(info.value, VulkanError) and isinstance(info.value, ValueError)
    with pytest.raises(TypeError):
        reflect("not bytes")  # type: ignore[arg-type]


# --- random layouts -------------------------------------------------------------------------
class LayoutGenerator:
    """Random blocks of scalars, vectors, matrices, arrays and nested structs."""

    SCALARS = ("float", "int", "uint", "double", "bool")
    VECTORS: ClassVar[dict[str, str]] = {
        "float": "vec",
        "int": "ivec",
        "uint": "uvec",
        "double": "dvec",
        "bool": "bvec",
    }

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.structs: list[str] = []
        self.names = itertools.count()

    def value_type(self, depth: int) -> tuple[str, bool]:
        """A type name and whether it is a matrix."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return rng.choice(self.SCALARS), False
        if roll < 0.6:
            return f"{self.VECTORS[rng.choice(self.SCALARS)]}{rng.randint(2, 4)}", False
        if roll < 0.8:
            cols, rows = rng.randint(2, 4), rng.randint(2, 4)
            prefix = "dmat" if rng.random() < 0.25 else "mat"
            return (f"{prefix}{cols}" if cols == rows else f"{prefix}{cols}x{rows}"), True
        if depth < 2:
            return self.struct(depth + 1), False
        return rng.choice(self.SCALARS), False

    def arrays(self) -> str:
        roll = self.rng.random()
        if roll < 0.65:
            return ""
        if roll < 0.9:
            return f"[{self.rng.randint(1, 4)}]"
        return f"[{self.rng.randint(1, 3)}][{self.rng.randint(1, 3)}]"

    def struct(self, depth: int) -> str:
        name = f"S{next(self.names)}"  # numbered before its members make their own structs
        members = [
            f"{self.value_type(depth)[0]} f{k}{self.arrays()};"
            for k in range(self.rng.randint(1, 4))
        ]
        self.structs.append(f"struct {name} {{ {' '.join(members)} }};")
        return name

    def block(self, index: int) -> str:
        rng = self.rng
        layout, kind = rng.choice(
            [("std140", "uniform"), ("std140", "buffer"), ("std430", "buffer")]
        )
        members = []
        for k in range(rng.randint(1, 6)):
            type_name, matrix = self.value_type(0)
            qualifier = ""
            if matrix and rng.random() < 0.4:
                qualifier = "layout(row_major) "
            members.append(f"{qualifier}{type_name} m{k}{self.arrays()};")
        if kind == "buffer" and rng.random() < 0.4:
            members.append(f"{self.value_type(0)[0]} tail[];")
        body = " ".join(members)
        return f"layout({layout}, binding = {index}) {kind} B{index} {{ {body} }} b{index};"

    def shader(self, blocks: int) -> str:
        decls = [self.block(i) for i in range(blocks)]
        return "\n".join(
            [
                "#version 450",
                "layout(local_size_x = 1) in;",
                *self.structs,
                *decls,
                "void main() {}",
            ]
        )


@pytest.mark.parametrize("seed", range(10))
def test_random_layouts_match_spirv_cross(
    seed: int, compile_glsl: Compile, tools: dict[str, str]
) -> None:
    source = LayoutGenerator(seed).shader(blocks=5)  # 10 seeds x 5 blocks = 50 random blocks
    env = ENVS[seed % len(ENVS)]
    spv, data = compile_glsl(source, env)
    r = reflect(data)
    assert len(r.bindings) == 5, source
    compare_with_spirv_cross(r, spv, tools)


# --- malformed modules ----------------------------------------------------------------------
def _op(opcode: int, *operands: int) -> list[int]:
    return [(len(operands) + 1) << 16 | opcode, *operands]


def _str(text: str) -> list[int]:
    raw = text.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 4)
    return list(struct.unpack(f"<{len(raw) // 4}I", raw))


def _module(
    body: list[list[int]], version: int = 0x00010000, bound: int = 100, local_size: bool = True
) -> bytes:
    """A compute module: entry point %1 "main", LocalSize 1 1 1, then ``body``."""
    words = [0x07230203, version, 0, bound, 0]
    words += _op(17, 1)  # OpCapability Shader
    words += _op(14, 0, 1)  # OpMemoryModel Logical GLSL450
    words += _op(15, 5, 1, *_str("main"))
    if local_size:
        words += _op(16, 1, 17, 1, 1, 1)
    for inst in body:
        words += inst
    return struct.pack(f"<{len(words)}I", *words)


@pytest.fixture(scope="session")
def real_module(compile_glsl: Compile) -> bytes:
    return compile_glsl(HERE / "spirv_corpus" / "std430_particles.comp", "vulkan1.1")[1]


def _instruction_starts(data: bytes) -> list[int]:
    words = struct.unpack(f"<{len(data) // 4}I", data)
    starts, i = [], 5
    while i < len(words):
        starts.append(i)
        i += words[i] >> 16
    return starts


def _reflect_or_spirv_error(data: bytes) -> Reflection | None:
    """reflect(), which may fail only with SpirvError, and only quickly."""
    t0 = time.perf_counter()
    try:
        return reflect(data)
    except SpirvError:
        return None
    finally:
        assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "too short"),
        (b"\x03\x02\x23", "multiple of 4"),
        (b"\0" * 20, "magic"),
        (struct.pack("<5I", 0x07230203, 0x00010000, 0, 10, 0), None),  # no entry point
        (struct.pack("<5I", 0x07230203, 0x00020000, 0, 10, 0), "version"),
        (struct.pack("<5I", 0x07230203, 0x00010000, 0, 0, 0), "bound"),
    ],
)
def test_bad_headers(data: bytes, match: str | None) -> None:
    with pytest.raises(SpirvError, match=match):
        reflect(data)


def test_truncated_at_every_word(real_module: bytes) -> None:
    starts = set(_instruction_starts(real_module))
    for n in range(len(real_module) // 4):
        cut = real_module[: 4 * n]
        if n < 5 or n not in starts:
            # Inside the header or inside an instruction: always an error.
            with pytest.raises(SpirvError):
                reflect(cut)
        else:
            _reflect_or_spirv_error(cut)
        with pytest.raises(SpirvError):
            reflect(real_module[: 4 * n + 2])


def test_word_count_zero_and_past_end(real_module: bytes) -> None:
    starts = _instruction_starts(real_module)
    for index in (starts[0], starts[len(starts) // 2], starts[-1]):
        words = bytearray(real_module)
        struct.pack_into("<H", words, 4 * index + 2, 0)
        with pytest.raises(SpirvError, match=f"word count 0.*|at word {index}"):
            reflect(bytes(words))
        struct.pack_into("<H", words, 4 * index + 2, 0xFFFF)
        with pytest.raises(SpirvError, match="past the end"):
            reflect(bytes(words))


def test_unterminated_string() -> None:
    data = _module([_op(5, 1, *struct.unpack("<I", b"main"))])  # OpName with no nul
    with pytest.raises(SpirvError, match="not nul-terminated"):
        reflect(data)


def test_huge_bound(real_module: bytes) -> None:
    data = bytearray(real_module)
    struct.pack_into("<I", data, 12, 0xFFFFFFFF)
    with pytest.raises(SpirvError, match="bound"):
        reflect(bytes(data))
    struct.pack_into("<I", data, 12, 5)  # ids above the bound
    with pytest.raises(SpirvError, match="bound"):
        reflect(bytes(data))


def _storage_buffer(struct_id: int) -> list[list[int]]:
    return [
        _op(32, 90, 12, struct_id),  # %90 = pointer StorageBuffer
        _op(59, 90, 91, 12),  # %91 = variable
        _op(71, 91, 33, 0),
        _op(71, 91, 34, 0),
        _op(71, struct_id, 2),
    ]


def test_type_cycle() -> None:
    body = [_op(30, 10, 11), _op(30, 11, 10), _op(72, 10, 0, 35, 0), _op(72, 11, 0, 35, 0)]
    with pytest.raises(SpirvError, match="contains itself"):
        reflect(_module(body + _storage_buffer(10), version=0x00010300))


def test_deep_nesting() -> None:
    body = [_op(22, 10, 32), _op(30, 11, 10), _op(72, 11, 0, 35, 0)]
    for k in range(12, 400):
        body += [_op(30, k, k - 1), _op(72, k, 0, 35, 0)]
    data = _module(body + _storage_buffer(399), version=0x00010300, bound=1000)
    with pytest.raises(SpirvError, match="nest more than 64"):
        reflect(data)


@pytest.mark.parametrize(
    ("length", "match"), [(60, "not a positive integer"), (300, "nests more than 64 deep")]
)
def test_exponential_spec_constant_chain_is_fast(length: int, match: str) -> None:
    body = [_op(21, 10, 32, 0), _op(50, 10, 11, 1)]  # %11 = OpSpecConstant uint 1
    for k in range(12, 12 + length):
        body.append(_op(52, 10, k, 128, k - 1, k - 1))  # %k = IAdd %k-1 %k-1
    body.append(_op(331, 1, 38, 11 + length, 11, 11))  # LocalSizeId %last %11 %11
    data = _module(body, version=0x00010300, bound=1000, local_size=False)
    t0 = time.perf_counter()
    with pytest.raises(SpirvError, match=match):
        reflect(data)  # 2**60 wraps to 0 in 32 bits; unmemoized it would never finish
    assert time.perf_counter() - t0 < 0.5


def test_spec_constant_op_array_length() -> None:
    body = [
        _op(22, 10, 32),
        _op(21, 11, 32, 0),
        _op(50, 11, 12, 3),  # %12 = spec uint 3 (SpecId 7)
        _op(43, 11, 13, 2),  # %13 = constant 2
        _op(52, 11, 14, 132, 12, 13),  # %14 = IMul %12 %13
        _op(28, 15, 10, 14),  # float[%14]
        _op(30, 16, 15),
        _op(71, 12, 1, 7),
        _op(71, 15, 6, 4),
        _op(72, 16, 0, 35, 0),
    ]
    r = reflect(_module(body + _storage_buffer(16), version=0x00010300))
    (m,) = r.bindings[0].members
    assert (m.type, m.array_length, m.size) == ("float[6]", 6, 24)
    assert r.spec_constants[0].id == 7 and r.spec_constants[0].default == 3


def test_decoration_groups() -> None:
    body = [
        _op(73, 20),  # %20 = OpDecorationGroup
        _op(71, 20, 34, 3),  # group: DescriptorSet 3
        _op(74, 20, 91),  # OpGroupDecorate %20 %91
        _op(22, 10, 32),
        _op(29, 11, 10),
        _op(71, 11, 6, 4),
        _op(30, 12, 11),
        _op(72, 12, 0, 35, 0),
        _op(32, 90, 12, 12),
        _op(59, 90, 91, 12),
        _op(71, 91, 33, 2),
        _op(71, 12, 2),
    ]
    (b,) = reflect(_module(body, version=0x00010300)).bindings
    assert (b.set, b.binding, b.dtype) == (3, 2, np.dtype("<f4"))


def test_entry_point_interfaces_from_spirv_1_4() -> None:
    words = [0x07230203, 0x00010400, 0, 100, 0]
    words += _op(17, 1) + _op(14, 0, 1)
    words += _op(15, 5, 1, *_str("a"), 31) + _op(15, 5, 2, *_str("b"), 32)
    words += _op(16, 1, 17, 8, 1, 1) + _op(16, 2, 17, 4, 4, 1)
    body = [_op(22, 10, 32), _op(29, 11, 10), _op(71, 11, 6, 4), _op(30, 12, 11)]
    body += [_op(72, 12, 0, 35, 0), _op(71, 12, 2), _op(32, 13, 12, 12)]
    for var, binding in ((31, 0), (32, 1)):
        body += [_op(59, 13, var, 12), _op(71, var, 33, binding), _op(71, var, 34, 0)]
    for inst in body:
        words += inst
    data = struct.pack(f"<{len(words)}I", *words)
    a, b = reflect(data), reflect(data, "b")
    assert (a.entry_point, a.local_size, [x.binding for x in a.bindings]) == ("a", (8, 1, 1), [0])
    assert (b.entry_point, b.local_size, [x.binding for x in b.bindings]) == ("b", (4, 4, 1), [1])


def test_missing_workgroup_size() -> None:
    words = [0x07230203, 0x00010000, 0, 10, 0, *_op(15, 5, 1, *_str("main"))]
    with pytest.raises(SpirvError, match="no workgroup size"):
        reflect(struct.pack(f"<{len(words)}I", *words))


# Derandomized: the same 300 cases every run (reproducible in CI, and no example database
# written into the working directory).
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 31)), min_size=1, max_size=8))
def test_random_bit_flips(real_module: bytes, flips: list[tuple[float, int]]) -> None:
    data = bytearray(real_module)
    n = len(data) // 4
    for where, bit in flips:
        # Half the flips land in the first third, where the declarations are.
        index = int(where * where * (n - 1))
        word = struct.unpack_from("<I", data, 4 * index)[0] ^ (1 << bit)
        struct.pack_into("<I", data, 4 * index, word)
    _reflect_or_spirv_error(bytes(data))


_FUZZ_OPS = (
    *(5, 6, 15, 16, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 32, 41, 43, 44, 46, 48),
    *(50, 51, 52, 54, 59, 71, 72, 73, 74, 75, 331, 5341, 0, 1),
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    instructions=st.lists(
        st.tuples(
            st.sampled_from(_FUZZ_OPS),
            st.lists(st.integers(0, 40) | st.integers(0, 2**32 - 1), max_size=7),
        ),
        max_size=40,
    )
)
def test_random_instruction_streams(instructions: list[tuple[int, list[int]]]) -> None:
    body = [_op(op, *operands) for op, operands in instructions]
    _reflect_or_spirv_error(_module(body, version=0x00010300, bound=64))


# --- malformed modules (fuzzed) -------------------------------------------------------------


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
