"""Tests of vknb.compiler against the real glslc (and glslangValidator), no mocks."""

from __future__ import annotations

import os
import re
import shutil
import struct
import warnings

import pytest

import vknb
from vknb import compiler
from vknb.compiler import (
    CacheWarning,
    ShaderWarning,
    clear_cache,
    compile_glsl,
    compile_glsl_info,
    find_compiler,
    format_diagnostics,
)
from vknb.errors import NotAvailable, ShaderCompileError

SPIRV_MAGIC = struct.pack("<I", 0x07230203)
GLSLANG = "/usr/bin/glslangValidator"

SAXPY = """\
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
"""


@pytest.fixture(autouse=True)
def _private_compiler_state(monkeypatch, tmp_path):
    """Real glslc is required (a failure, not a skip); every test gets its own cache."""
    if shutil.which("glslc") is None:
        pytest.fail(
            "glslc is not installed: the compiler tests need it. "
            "Install it with `apt-get install glslc` (Debian/Ubuntu).",
            pytrace=False,
        )
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VKNB_GLSLC", raising=False)
    compiler._reset_memory_cache()
    yield
    compiler._reset_memory_cache()


@pytest.fixture
def glslang(monkeypatch):
    if not os.path.exists(GLSLANG):
        pytest.fail(
            f"{GLSLANG} is missing: install it with `apt-get install glslang-tools`.",
            pytrace=False,
        )
    monkeypatch.setenv("VKNB_GLSLC", GLSLANG)
    return GLSLANG


def runs() -> int:
    return compiler._compiler_runs


def entries(tmp_path) -> list:
    d = tmp_path / "cache" / "spirv"
    return sorted(d.glob("*.vkspv")) if d.exists() else []


# ------------------------------------------------------------------------------------------
# Compiling and caching
# ------------------------------------------------------------------------------------------


def test_compile_then_memory_then_disk_cache(tmp_path):
    before = runs()
    first = compile_glsl_info(SAXPY, name="saxpy")
    assert first.spirv.startswith(SPIRV_MAGIC)
    assert len(first.spirv) % 4 == 0
    assert not first.cache_hit
    assert first.compile_ms > 0
    assert runs() == before + 1
    assert first.compiler.startswith("glslc ")
    assert "-fshader-stage=compute" in first.command
    assert len(entries(tmp_path)) == 1

    second = compile_glsl_info(SAXPY, name="saxpy")
    assert second.cache_hit
    assert second.spirv == first.spirv
    assert second.key == first.key
    assert runs() == before + 1  # no compiler process

    compiler._reset_memory_cache()
    third = compile_glsl_info(SAXPY, name="saxpy")
    assert third.cache_hit  # from disk
    assert third.spirv == first.spirv
    assert runs() == before + 1

    assert compile_glsl(SAXPY, name="saxpy") == first.spirv
    assert runs() == before + 1


def test_changed_define_or_source_recompiles():
    src = (
        "layout(local_size_x = 1) in;\nlayout(binding = 0) buffer B { int b[]; };\n"
        "void main() { b[0] = N; }\n"
    )
    a = compile_glsl_info(src, defines={"N": 1})
    n = runs()
    assert compile_glsl_info(src, defines={"N": 1}).cache_hit
    b = compile_glsl_info(src, defines={"N": 2})
    assert not b.cache_hit and runs() == n + 1
    assert b.spirv != a.spirv
    c = compile_glsl_info(src + "// edited\n", defines={"N": 1})
    assert not c.cache_hit and runs() == n + 2
    d = compile_glsl_info(src, defines={"N": 1}, optimize=True)
    assert not d.cache_hit and runs() == n + 3
    e = compile_glsl_info(src, defines={"N": 1}, target_env="vulkan1.2")
    assert not e.cache_hit and runs() == n + 4


def test_changed_include_recompiles(tmp_path):
    inc = tmp_path / "inc"
    inc.mkdir()
    lib = inc / "lib.glsl"
    lib.write_text("int value() { return 1; }\n")
    src = (
        'layout(local_size_x = 1) in;\n#include "lib.glsl"\n'
        "layout(binding = 0) buffer B { int b[]; };\nvoid main() { b[0] = value(); }\n"
    )
    first = compile_glsl_info(src, include_dirs=[inc])
    assert first.includes == [str(lib.resolve())]
    n = runs()
    assert compile_glsl_info(src, include_dirs=[inc]).cache_hit

    lib.write_text("int value() { return 12345; }\n")  # memory cache must notice
    second = compile_glsl_info(src, include_dirs=[inc])
    assert not second.cache_hit and runs() == n + 1
    assert second.spirv != first.spirv
    assert second.key == first.key  # same key, re-validated by content

    lib.write_text("int value() { return 7; }\n")  # disk cache must notice too
    compiler._reset_memory_cache()
    third = compile_glsl_info(src, include_dirs=[inc])
    assert not third.cache_hit and runs() == n + 2
    assert third.spirv not in (first.spirv, second.spirv)

    compiler._reset_memory_cache()
    assert compile_glsl_info(src, include_dirs=[inc]).cache_hit
    assert runs() == n + 2


def test_no_temp_files_in_cwd(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    compile_glsl(SAXPY, name="in cwd/../odd name")
    with pytest.raises(ShaderCompileError):
        compile_glsl("void main() { nope = 1; }")
    assert list(cwd.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Diagnostics in the user's line numbers
# ------------------------------------------------------------------------------------------


def _source_with_error_at(n: int, preamble: str = "") -> str:
    """A shader whose line ``n`` is an error; lines before are ``preamble`` + comments/blanks."""
    lines = preamble.splitlines()
    filler = ["", "// a comment", "/* a block comment */", "   "]
    while len(lines) < n - 2:
        if len(lines) % 7 == 5 and len(lines) < n - 3:
            lines += ["/* a comment", "   over two lines */"]
        else:
            lines.append(filler[len(lines) % len(filler)])
    lines += ["void main() {", "    undeclared_thing = 1;", "}", "layout(local_size_x = 1) in;"]
    assert lines[n - 1] == "    undeclared_thing = 1;"
    return "\n".join(lines) + "\n"


def _check_error_at(err: ShaderCompileError, n: int, name: str) -> None:
    line, _col, severity, message = err.diagnostics[0]
    assert (line, severity) == (n, "error"), err.diagnostics
    assert "undeclared_thing" in message and "undeclared identifier" in message
    text = str(err)
    assert repr(name) in text
    assert re.search(rf"^>>\s*{n} \|     undeclared_thing = 1;$", text, re.M), text
    assert re.search(
        r"^\s+\|     \^ error: 'undeclared_thing' : undeclared identifier", text, re.M
    ), text
    assert re.search(rf"^  \s*{n - 1} \| void main\(\) {{$", text, re.M), text
    assert "-fshader-stage=compute" in text or "-S comp" in text
    assert err.command and err.name == name


@pytest.mark.parametrize("n", [2, 3, 5, 9, 17, 120])
def test_error_line_without_version(n):
    src = _source_with_error_at(n)
    assert "#version" not in src
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, name=f"err{n}")
    _check_error_at(info.value, n, f"err{n}")
    assert info.value.source == src


@pytest.mark.parametrize("n", [3, 6, 40])
def test_error_line_with_own_version(n):
    src = _source_with_error_at(n, "#version 450\n")
    assert src.startswith("#version 450\n")
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, name="versioned")
    _check_error_at(info.value, n, "versioned")


def test_error_line_with_version_after_comments():
    src = _source_with_error_at(8, "// header comment\n\n#version 460\n")
    assert src.splitlines()[2] == "#version 460"
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, name="late_version")
    _check_error_at(info.value, 8, "late_version")


def test_error_line_with_crlf_source():
    src = _source_with_error_at(6).replace("\n", "\r\n")
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, name="crlf")
    _check_error_at(info.value, 6, "crlf")


def test_several_errors_all_reported():
    src = "layout(local_size_x = 1) in;\nvoid main() {\n    a = 1;\n    int x = 1 +;\n}\n"
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, name="two")
    lines = [d[0] for d in info.value.diagnostics]
    assert 3 in lines and 4 in lines
    assert all(d[2] == "error" for d in info.value.diagnostics)
    assert not any("generated" in d[3] for d in info.value.diagnostics)
    assert re.search(r"^>>3 \|", str(info.value), re.M)
    assert re.search(r"^>>4 \|", str(info.value), re.M)


def test_error_without_line_is_kept():
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl("layout(local_size_x = 1) in;\nvoid not_main() {}\n", name="noentry")
    (line, _col, sev, msg), *_ = info.value.diagnostics
    assert (line, sev) == (0, "error")
    assert "entry point" in msg
    assert "entry point" in str(info.value)


def test_format_diagnostics_columns_and_tabs():
    src = "a\nb\nc\n\tint x = y;\nd\ne\nf\ng\nh\ni\nj\n"
    text = format_diagnostics(
        src,
        [(4, 10, "error", "'y' : undeclared"), (11, 0, "warning", "w"), (0, 0, "error", "no line")],
        context=1,
    )
    assert text.splitlines() == [
        "   3 | c",
        ">> 4 | \tint x = y;",
        "     | \t        ^ error: 'y' : undeclared",
        "   5 | d",
        "     ...",
        "  10 | i",
        ">>11 | j",
        "     | ^ warning: w",
        "error: no line",
    ]


# ------------------------------------------------------------------------------------------
# Warnings
# ------------------------------------------------------------------------------------------

WARNS = (
    "layout(local_size_x = 1) in;\n#extension GL_vknb_not_a_real_extension : warn\nvoid main() {}\n"
)


def test_warning_becomes_shader_warning():
    with pytest.warns(ShaderWarning, match=r"warny:2: .*GL_vknb_not_a_real_extension") as rec:
        result = compile_glsl_info(WARNS, name="warny")
    assert result.spirv.startswith(SPIRV_MAGIC)
    assert [(w[0], w[2]) for w in result.warnings] == [(2, "warning")]
    shader_warnings = [r for r in rec if issubclass(r.category, ShaderWarning)]
    assert len(shader_warnings) == 1
    assert shader_warnings[0].message.line == 2
    assert shader_warnings[0].filename == __file__  # attributed to the caller, not to vknb

    # A cache hit repeats the warning: a re-run cell would otherwise hide it.
    with pytest.warns(ShaderWarning, match="warny:2:"):
        assert compile_glsl_info(WARNS, name="warny").cache_hit


# ------------------------------------------------------------------------------------------
# Defines
# ------------------------------------------------------------------------------------------


def test_defines_values_true_false_none():
    src = """\
layout(local_size_x = 1) in;
#if N != 4
#error N should be 4
#endif
#if ON != 1 || OFF != 0
#error booleans should be 1 and 0
#endif
#ifndef BARE
#error BARE should be defined
#endif
layout(binding = 0) buffer B { float b[]; };
void main() { b[0] = SCALE * float(N); }
"""
    spirv = compile_glsl(
        src, defines={"N": 4, "ON": True, "OFF": False, "BARE": None, "SCALE": 2.5}
    )
    assert spirv.startswith(SPIRV_MAGIC)
    with pytest.raises(ShaderCompileError, match="N should be 4"):
        compile_glsl(src, defines={"N": 5, "ON": True, "OFF": False, "BARE": None, "SCALE": 2.5})
    with pytest.raises(ShaderCompileError, match="BARE should be defined"):
        compile_glsl(src, defines={"N": 4, "ON": True, "OFF": False, "SCALE": 2.5})


@pytest.mark.parametrize("bad", ["1X", "A-B", "", "A B", "X=1", "é"])
def test_bad_define_name(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        compile_glsl(SAXPY, defines={bad: 1})


def test_bad_arguments():
    with pytest.raises(ValueError, match="target_env"):
        compile_glsl(SAXPY, target_env="vulkan")
    with pytest.raises(TypeError, match="flags"):
        compile_glsl(SAXPY, flags="-g")


# ------------------------------------------------------------------------------------------
# Includes
# ------------------------------------------------------------------------------------------

RNG = """\
layout(local_size_x = 64) in;
#include "random.glsl"
#include "random.glsl"
layout(binding = 0) buffer U { float u[]; };
layout(binding = 1) buffer Bits { uint bits[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    uint state = hash2(uvec2(i, 1234u)) ^ pcg_hash(i);
    u[i] = rng_uniform(state);
    bits[i] = rng_next(state);
}
"""


def test_include_random_glsl_from_shader_dir():
    shader_dir = vknb.config.shader_dir()
    assert (shader_dir / "random.glsl").is_file()
    result = compile_glsl_info(RNG, name="rng")
    assert result.spirv.startswith(SPIRV_MAGIC)
    assert result.includes == [str((shader_dir / "random.glsl").resolve())]


def test_missing_include_names_the_file():
    src = 'layout(local_size_x = 1) in;\n\n#include "vknb_nonexistent_lib.glsl"\nvoid main() {}\n'
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, name="noinc")
    assert "vknb_nonexistent_lib.glsl" in str(info.value)
    assert info.value.diagnostics[0][0] == 3
    assert "vknb_nonexistent_lib.glsl" in info.value.diagnostics[0][3]


def test_error_inside_included_file_points_at_the_include(tmp_path):
    inc = tmp_path / "inc"
    (inc / "sub").mkdir(parents=True)
    (inc / "outer.glsl").write_text('#include "sub/inner.glsl"\n')
    (inc / "sub" / "inner.glsl").write_text("// inner\nfloat f() {\n    return missing_x;\n}\n")
    src = (
        'layout(local_size_x = 1) in;\n// two\n#include "outer.glsl"\n'
        "void main() { float y = f(); }\n"
    )
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, include_dirs=[str(inc)], name="nested")
    line, _col, sev, msg = info.value.diagnostics[0]
    assert (line, sev) == (3, "error")
    assert msg.startswith("sub/inner.glsl:3: ") and "missing_x" in msg
    assert re.search(r'^>>3 \| #include "outer.glsl"$', str(info.value), re.M)


def test_user_include_dirs_come_before_shader_dir(tmp_path):
    (tmp_path / "random.glsl").write_text("uint pcg_hash(uint v) { return v; }\n")
    src = (
        'layout(local_size_x = 1) in;\n#include "random.glsl"\n'
        "layout(binding = 0) buffer B { uint b[]; };\nvoid main() { b[0] = pcg_hash(3u); }\n"
    )
    result = compile_glsl_info(src, include_dirs=[tmp_path])
    assert result.includes == [str((tmp_path / "random.glsl").resolve())]


# ------------------------------------------------------------------------------------------
# Cache robustness
# ------------------------------------------------------------------------------------------


def _corruptions(good: bytes) -> dict[str, bytes]:
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    header_flip = bytearray(good)
    header_flip[3] ^= 0x01
    bogus_spirv = compiler._encode_entry(compiler._Entry(b"\x00" * 64, [], [], [], "x"))
    odd_length = compiler._encode_entry(
        compiler._Entry(SPIRV_MAGIC + b"\x00" * 21, [], [], [], "x")
    )
    return {
        "truncated": good[: len(good) // 2],
        "header only": good[:20],
        "empty": b"",
        "flipped byte": bytes(flipped),
        "bad magic": bytes(header_flip),
        "garbage": os.urandom(len(good)),
        "not spir-v": bogus_spirv,
        "length not multiple of 4": odd_length,
    }


def test_corrupt_cache_entries_are_rebuilt(tmp_path):
    original = compile_glsl(SAXPY, name="saxpy")
    (entry,) = entries(tmp_path)
    good = entry.read_bytes()
    for label, bad in _corruptions(good).items():
        entry.write_bytes(bad)
        compiler._reset_memory_cache()
        n = runs()
        result = compile_glsl_info(SAXPY, name="saxpy")
        assert not result.cache_hit, label
        assert runs() == n + 1, label
        assert result.spirv == original, label
        assert entry.read_bytes() == good, label  # the bad file was replaced
    assert [p.name for p in (tmp_path / "cache" / "spirv").iterdir()] == [entry.name]


def test_unusable_cache_dir_warns_once_and_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("VKNB_CACHE_DIR", str(blocker / "cache"))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a = compile_glsl(SAXPY, name="one")
        b = compile_glsl(SAXPY.replace("64", "32"), name="two")
        n = runs()
        assert compile_glsl(SAXPY, name="one") == a  # the memory cache still works
        assert runs() == n
    assert a.startswith(SPIRV_MAGIC) and b.startswith(SPIRV_MAGIC)
    cache_warnings = [r for r in rec if issubclass(r.category, CacheWarning)]
    assert len(cache_warnings) == 1, [str(r.message) for r in rec]
    assert "VKNB_CACHE_DIR" in str(cache_warnings[0].message)
    assert not [r for r in rec if not issubclass(r.category, CacheWarning)]


def test_clear_cache(tmp_path):
    compile_glsl(SAXPY)
    compile_glsl(SAXPY, defines={"UNUSED": 1})
    assert len(entries(tmp_path)) == 2
    assert clear_cache() == 2
    assert entries(tmp_path) == []
    assert clear_cache() == 0
    n = runs()
    assert not compile_glsl_info(SAXPY).cache_hit  # the memory cache was cleared too
    assert runs() == n + 1


def test_cache_dir_environment(tmp_path, monkeypatch):
    assert compiler.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("VKNB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiler.cache_dir() == tmp_path / "xdg" / "vknb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compiler.cache_dir() == tmp_path / "home" / ".cache" / "vknb"


# ------------------------------------------------------------------------------------------
# Choosing the compiler
# ------------------------------------------------------------------------------------------


def test_find_compiler_prefers_glslc():
    info = find_compiler()
    assert info.kind == "glslc"
    assert os.path.basename(info.path) == "glslc"
    assert re.match(r"\d+\.\d+", info.version)
    assert find_compiler() is info  # cached


def test_vknb_glslc_nonexistent(monkeypatch, tmp_path):
    monkeypatch.setenv("VKNB_GLSLC", str(tmp_path / "no-such-glslc"))
    with pytest.raises(NotAvailable, match="VKNB_GLSLC"):
        find_compiler()
    with pytest.raises(NotAvailable, match="VKNB_GLSLC"):
        compile_glsl(SAXPY)


def test_no_compiler_names_debian_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(compiler, "_compiler_cache", {})
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NotAvailable) as info:
        find_compiler()
    assert "apt-get install glslc" in str(info.value)
    assert "glslang-tools" in str(info.value)


def test_glslangvalidator_fallback(glslang):
    info = find_compiler()
    assert (info.kind, info.path) == ("glslangValidator", glslang)
    result = compile_glsl_info(SAXPY, name="saxpy")
    assert result.spirv.startswith(SPIRV_MAGIC)
    assert result.compiler.startswith("glslangValidator")
    assert "-S" in result.command
    assert compile_glsl_info(SAXPY, name="saxpy").cache_hit


@pytest.mark.parametrize("n", [2, 7, 30])
def test_glslangvalidator_error_lines(glslang, n):
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(_source_with_error_at(n), name="gv")
    _check_error_at(info.value, n, "gv")
    assert not any(
        "compilation terminated" in d[3] or "compilation errors" in d[3] or "Linking" in d[3]
        for d in info.value.diagnostics
    )


@pytest.mark.parametrize("preamble", ["", "#version 450\n", "// c\n#version 450\n// d\n"])
def test_glslangvalidator_include_keeps_lines(glslang, preamble):
    ok = preamble + RNG
    assert compile_glsl_info(ok, name="rng").spirv.startswith(SPIRV_MAGIC)
    bad = preamble + RNG.replace("u[i] = rng_uniform(state);", "u[i] = oops;")
    n = bad.splitlines().index("    u[i] = oops;") + 1
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(bad, name="rng")
    assert info.value.diagnostics[0][:3] == (n, 0, "error"), info.value.diagnostics
    assert re.search(rf"^>>\s*{n} \|     u\[i\] = oops;$", str(info.value), re.M)


def test_glslangvalidator_warning(glslang):
    with pytest.warns(ShaderWarning, match=r"gvwarn:2: .*GL_vknb_not_a_real_extension"):
        compile_glsl(WARNS, name="gvwarn")
