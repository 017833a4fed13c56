"""Tests of vknb.compiler against the real glslc (and glslangValidator), no mocks."""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import struct
import time
import warnings

import pytest
from vknb.compiler import (
    CacheWarning,
    ShaderWarning,
    clear_cache,
    compile_glsl,
    compile_glsl_info,
    find_compiler,
    format_diagnostics,
)

import vknb
from vknb import compiler
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


def test_the_compiler_probe_is_remembered_per_executable(monkeypatch, tmp_path):
    """A new process finds the compiler without running ``--version`` again (the answer is kept
    in the cache directory per real path, size and mtime); a changed executable, or a
    damaged record, is probed afresh."""
    log = tmp_path / "runs.log"
    wrapper = tmp_path / "glslc-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {shutil.which("glslc")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("VKNB_GLSLC", str(wrapper))

    def new_process() -> None:  # what a fresh interpreter knows: only the disk
        compiler._compiler_cache.clear()
        compiler._reset_memory_cache()

    def probes() -> int:
        return log.read_text().splitlines().count("--version") if log.exists() else 0

    first = find_compiler()
    assert first.kind == "glslc" and probes() == 1
    new_process()
    again = find_compiler()
    assert probes() == 1 and again == first
    st = wrapper.stat()
    os.utime(wrapper, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a reinstalled compiler
    new_process()
    assert find_compiler() == first and probes() == 2
    (tmp_path / "cache" / "compilers.json").write_text("{not json")
    new_process()
    assert find_compiler() == first and probes() == 3
    new_process()
    assert find_compiler() == first and probes() == 3  # rewritten whole
    assert compile_glsl(SAXPY)[:4] == b"\x03\x02\x23\x07"


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


# ------------------------------------------------------------------------------------------
# Include cycles and depth: refused before the compiler runs
# ------------------------------------------------------------------------------------------

MAIN = "layout(local_size_x = 1) in;\nvoid main() {}\n"


def _write(d, files: dict) -> None:
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)


@pytest.mark.parametrize(
    ("files", "chain"),
    [
        ({"self.glsl": '#include "self.glsl"\n'}, "self.glsl -> self.glsl"),
        (
            {"a.glsl": '// a\n#include "b.glsl"\n', "b.glsl": '#include "a.glsl"\n'},
            "a.glsl -> b.glsl -> a.glsl",
        ),
        (
            {
                "a.glsl": '#include "sub/b.glsl"\n',
                "sub/b.glsl": '#include "c.glsl"\n',  # next to b first
                "sub/c.glsl": "#include <a.glsl>\n",  # <...>: the include dirs
            },
            "a.glsl -> sub/b.glsl -> sub/c.glsl -> a.glsl",
        ),
    ],
    ids=["self", "two", "three"],
)
def test_include_cycle_is_refused_before_compiling(tmp_path, files, chain):
    _write(tmp_path, files)
    first = next(iter(files))
    src = f'// line 1\n\n   #include "{first}"\n' + MAIN
    before = runs()
    start = time.perf_counter()
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, include_dirs=[tmp_path], name="cyc")
    assert time.perf_counter() - start < 5
    assert runs() == before  # the compiler never ran
    err = info.value
    assert f"#include cycle {chain}" in str(err)
    assert err.diagnostics == [(3, 4, "error", err.diagnostics[0][3])]
    assert chain in err.diagnostics[0][3] and "include guard" in err.diagnostics[0][3]
    assert re.search(rf'^>>3 \|    #include "{first}"$', str(err), re.M)


def test_cycle_reached_through_other_files_names_the_whole_way(tmp_path):
    _write(
        tmp_path,
        {
            "top.glsl": '#include "mid.glsl"\n',
            "mid.glsl": '#ifndef MID\n#define MID\n#include "x.glsl"\n#endif\n',
            "x.glsl": '#include "y.glsl"\n',
            "y.glsl": '#include "x.glsl"\n',
        },
    )
    src = MAIN + '#include "top.glsl"\n'
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, include_dirs=[tmp_path], name="deep_cycle")
    assert info.value.diagnostics[0][:3] == (3, 1, "error")
    assert "top.glsl -> mid.glsl -> x.glsl -> y.glsl -> x.glsl" in str(info.value)


GUARDED = {
    "classic": "// a comment first\n#ifndef G_H\n#define G_H\n{body}#endif\n// trailing\n",
    "if_not_defined": "#if !defined(G_H)\n#define G_H 1\n{body}#endif\n",
    "pragma_once": "/* header */\n#pragma once\n{body}",
    "guard_around_include": (
        "#ifndef PING\n#define PING\n{include}#else\nfloat guarded_fn() {{ return 2.0; }}\n#endif\n"
    ),
}


@pytest.mark.parametrize("style", list(GUARDED))
def test_guarded_self_include_compiles(tmp_path, style):
    include = '#include "g.glsl"\n'
    body = include + "float guarded_fn() { return 2.0; }\n"
    _write(tmp_path, {"g.glsl": GUARDED[style].format(body=body, include=include)})
    # A guard around the include alone lets the file in twice: include it once.
    includes = '#include "g.glsl"\n' * (1 if style == "guard_around_include" else 2)
    src = (
        includes + "layout(local_size_x = 1) in;\n"
        "layout(binding = 0) buffer B { float b[]; };\nvoid main() { b[0] = guarded_fn(); }\n"
    )
    result = compile_glsl_info(src, include_dirs=[tmp_path], name=f"guard_{style}")
    assert result.spirv.startswith(SPIRV_MAGIC)
    assert result.includes == [str((tmp_path / "g.glsl").resolve())]


def test_pragma_once_errors_keep_the_file_and_its_lines(tmp_path):
    _write(
        tmp_path,
        {
            "lib/once.glsl": (
                '// one\n#pragma once\n#include "other.glsl"\nfloat f() { return nope; }\n'
            ),
            "lib/other.glsl": '#include "once.glsl"\n',
        },
    )
    src = MAIN + '#include "lib/once.glsl"\n'
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, include_dirs=[tmp_path], name="once_err")
    line, _col, sev, msg = info.value.diagnostics[0]
    assert (line, sev) == (3, "error")
    assert msg.startswith("lib/once.glsl:4: ") and "nope" in msg
    assert "vknb-glsl" not in str(info.value)  # no temporary path shows


def test_pragma_once_include_is_recorded_and_edits_recompile(tmp_path):
    _write(tmp_path, {"k.glsl": "#pragma once\nconst float K = 1.0;\n"})
    src = (
        '#include "k.glsl"\n#include "k.glsl"\nlayout(local_size_x = 1) in;\n'
        "layout(binding = 0) buffer B { float b[]; };\nvoid main() { b[0] = K; }\n"
    )
    first = compile_glsl_info(src, include_dirs=[tmp_path])
    assert first.includes == [str((tmp_path / "k.glsl").resolve())]
    assert compile_glsl_info(src, include_dirs=[tmp_path]).cache_hit
    (tmp_path / "k.glsl").write_text("#pragma once\nconst float K = 2.0;\n")
    second = compile_glsl_info(src, include_dirs=[tmp_path])
    assert not second.cache_hit and second.spirv != first.spirv


def test_cycle_through_a_guarded_file_ends_and_is_left_to_the_compiler(tmp_path):
    # main -> a -> g(guarded) -> a -> g (skipped): it ends; a is included twice.
    _write(
        tmp_path,
        {
            "a.glsl": '#include "g.glsl"\nfloat twice() { return 1.0; }\n',
            "g.glsl": '#ifndef G\n#define G\n#include "a.glsl"\n#endif\n',
        },
    )
    before = runs()
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(MAIN + '#include "a.glsl"\n', include_dirs=[tmp_path], name="dup")
    assert runs() == before + 1
    assert "#include cycle" not in str(info.value)
    assert "already has a body" in str(info.value)


def test_includes_in_comments_and_if_0_are_not_followed(tmp_path):
    _write(
        tmp_path,
        {
            "c.glsl": (
                '#if 0\n#include "c.glsl"\n#endif\n/* #include "c.glsl"\n*/\n'
                '// #include "c.glsl"\nconst float C = 3.0;\n'
            )
        },
    )
    src = (
        '#include "c.glsl"\nlayout(local_size_x = 1) in;\n'
        "layout(binding = 0) buffer B { float b[]; };\nvoid main() { b[0] = C; }\n"
    )
    assert compile_glsl(src, include_dirs=[tmp_path]).startswith(SPIRV_MAGIC)


@pytest.mark.parametrize("n", [compiler._MAX_INCLUDE_DEPTH, compiler._MAX_INCLUDE_DEPTH + 8])
def test_include_depth_limit(tmp_path, n):
    files = {f"c{i}.glsl": f'#include "c{i + 1}.glsl"\n' for i in range(n - 1)}
    files[f"c{n - 1}.glsl"] = "const float DEEP = 1.0;\n"
    _write(tmp_path, files)
    src = MAIN + '\n#include "c0.glsl"\n'
    if n <= compiler._MAX_INCLUDE_DEPTH:
        assert compile_glsl(src, include_dirs=[tmp_path]).startswith(SPIRV_MAGIC)
        return
    before = runs()
    with pytest.raises(ShaderCompileError, match=rf"nests {n} files deep") as info:
        compile_glsl(src, include_dirs=[tmp_path], name="deep")
    assert runs() == before
    assert info.value.diagnostics[0][:3] == (4, 1, "error")
    assert "c0.glsl -> c1.glsl" in str(info.value) and f"c{n - 1}.glsl" in str(info.value)


def _expands_forever(graph: dict, guard: dict, start: list) -> bool:
    """Simulate the preprocessor on files made only of guards and includes."""
    defined: set = set()

    def expand(f: int, depth: int) -> bool:
        if depth > 64:
            return True
        if guard[f]:
            if f in defined:
                return False
            defined.add(f)
        return any(expand(c, depth + 1) for c in graph[f])

    return any(expand(f, 1) for f in start)


@pytest.mark.parametrize("seed", range(12))
def test_random_include_graphs(tmp_path, monkeypatch, seed):
    """Refused exactly when the preprocessor would never end; else the real compiler runs."""
    monkeypatch.setenv("VKNB_COMPILE_TIMEOUT_S", "30")  # a wrong answer fails, not hangs
    rng = random.Random(seed)
    n = rng.randint(2, 6)
    graph = {f: rng.sample(range(n), rng.randint(0, 2)) for f in range(n)}
    guard = {f: rng.random() < 0.5 for f in range(n)}
    styles = ("#ifndef F{f}_H\n#define F{f}_H\n{body}#endif\n", "#pragma once\n{body}")
    for f in range(n):
        body = "".join(f'#include "f{c}.glsl"\n' for c in graph[f]) + f"// file {f}\n"
        text = rng.choice(styles).format(f=f, body=body) if guard[f] else body
        (tmp_path / f"f{f}.glsl").write_text(text)
    start = rng.sample(range(n), rng.randint(1, n))
    src = "".join(f'#include "f{f}.glsl"\n' for f in start) + MAIN
    if _expands_forever(graph, guard, start):
        with pytest.raises(ShaderCompileError, match="#include cycle"):
            compile_glsl(src, include_dirs=[tmp_path], name=f"g{seed}")
    else:
        assert compile_glsl(src, include_dirs=[tmp_path]).startswith(SPIRV_MAGIC)


def test_kernel_named_like_the_file_it_includes():
    # The source file in the temporary directory must not be what it includes.
    src = '#include "saxpy.comp"\n'
    assert (vknb.config.shader_dir() / "saxpy.comp").is_file()
    assert compile_glsl(src, name="saxpy").startswith(SPIRV_MAGIC)


# ------------------------------------------------------------------------------------------
# Time and memory limits of the compiler process
# ------------------------------------------------------------------------------------------


def _macro_bomb(n: int = 26) -> str:
    lines = ["#define A0 1.0"] + [f"#define A{i} (A{i - 1} + A{i - 1})" for i in range(1, n + 1)]
    return "\n".join(lines) + f"\n{MAIN}float x() {{ return A{n}; }}\n"


def test_compile_timeout(monkeypatch):
    monkeypatch.setenv("VKNB_COMPILE_TIMEOUT_S", "1")
    start = time.perf_counter()
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(_macro_bomb(), name="bomb")
    assert time.perf_counter() - start < 15
    text = str(info.value)
    assert "ran out of time" in text and "VKNB_COMPILE_TIMEOUT_S" in text
    assert info.value.command and info.value.name == "bomb"
    monkeypatch.setenv("VKNB_COMPILE_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="VKNB_COMPILE_TIMEOUT_S"):
        compile_glsl(SAXPY + "// new\n")


def test_compiler_memory_is_capped(monkeypatch):
    # Linux (CI and the GPU machine) has prlimit; a platform without it fails here, loudly.
    assert hasattr(resource, "prlimit"), "resource.prlimit is missing: the cap cannot work"
    monkeypatch.setattr(compiler, "_COMPILER_ADDRESS_SPACE", 256 << 20)
    start = time.perf_counter()
    with pytest.raises(ShaderCompileError, match="address space at 256 MiB"):
        compile_glsl(_macro_bomb(), name="bomb")
    assert time.perf_counter() - start < 30  # uncapped, it runs into the 60 s time limit


# ------------------------------------------------------------------------------------------
# What a careless caller can pass
# ------------------------------------------------------------------------------------------


def _random_source(rng: random.Random) -> str:
    words = ["float", "x", "=", "1.0;", "//", "é", "中文", "\t", "/*", "*/", "\n", "\r\n", " "]
    return "".join(rng.choice(words) for _ in range(rng.randint(0, 60)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bad", ["\ud800", "\udfff", "\udc80", "\x00"])
def test_unencodable_or_nul_character_names_line_and_column(seed, bad):
    rng = random.Random(seed)
    before, after = _random_source(rng), _random_source(rng)
    src = before + bad + after + "\n" + MAIN
    line = len(re.findall(r"\r\n|\r|\n", before)) + 1
    column = len(re.split(r"\r\n|\r|\n", before)[-1]) + 1
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src, name="odd")
    err = info.value
    assert err.diagnostics[0][:3] == (line, column, "error")
    assert f"line {line}, column {column}" in str(err)
    assert ("NUL" if bad == "\x00" else f"U+{ord(bad):04X}") in str(err)
    str(err).encode("utf-8")  # printable, and sendable to a notebook
    err.source.encode("utf-8")
    assert len(err.source) == len(src)


@pytest.mark.parametrize(
    "name",
    [
        "k" * 300,
        "a/b/c",
        "../../etc/passwd",
        "with space",
        "ünïcødé 中文",
        "-O",
        ".",
        "",
        "é" * 200,
    ],
)
def test_any_kernel_name_compiles(name):
    result = compile_glsl_info(SAXPY + f"// {len(name)}\n", name=name)
    assert result.spirv.startswith(SPIRV_MAGIC)
    src_file = result.command[-1]
    assert len(src_file) <= 48 and re.fullmatch(r"[A-Za-z0-9_]+\.vknb\.comp", src_file)
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl("void main() { undeclared_q = 1; }\n", name=name)
    assert info.value.name == name and repr(name) in str(info.value)


@pytest.mark.parametrize("seed", range(4))
def test_random_kernel_names(seed):
    rng = random.Random(seed)
    alphabet = "abcXYZ09_/\\ .-:*?\"'<>|\t中é🙂"
    name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400)))
    assert compile_glsl(SAXPY + f"// {seed}\n", name=name).startswith(SPIRV_MAGIC)


@pytest.mark.parametrize("src", ["", "   \n\t\n", "// only a comment\n", "/* block */\n"])
def test_empty_source(src):
    before = runs()
    with pytest.raises(ShaderCompileError, match="the source is empty"):
        compile_glsl(src)
    assert runs() == before


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("#version 450\n", True),
        ("#version 460\n", True),
        ("#version 310 es\n", True),
        ("#version 330\n", False),
        ("#version 140\n", False),
        ("#version abc\n", False),
    ],
)
def test_versions(header, ok):
    src = header + SAXPY
    if ok:
        assert compile_glsl(src).startswith(SPIRV_MAGIC)
        return
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl(src)
    assert "#version" in str(info.value)


def test_version_after_code_points_at_it():
    with pytest.raises(ShaderCompileError) as info:
        compile_glsl("// ok\nfloat x = 1.0;\n#version 450\n" + MAIN)
    assert any(d[0] == 3 and "#version" in d[3] for d in info.value.diagnostics)


@pytest.mark.parametrize("stage", ["fragment", "vertex", "frag", "tesscontrol", "mesh"])
def test_non_compute_stage_pragma(stage):
    src = f"// a comment\n #pragma shader_stage({stage})\nvoid main() {{}}\n"
    before = runs()
    with pytest.raises(ShaderCompileError, match=r"line 2: #pragma shader_stage") as info:
        compile_glsl(src)
    assert runs() == before
    assert info.value.diagnostics[0][:3] == (2, 2, "error")
    assert compile_glsl("#pragma shader_stage(compute)\n" + MAIN).startswith(SPIRV_MAGIC)


def test_non_compute_stage_from_flags():
    with pytest.raises(ShaderCompileError, match=r"not a compute shader .*Vertex"):
        compile_glsl("void main() { gl_Position = vec4(0.0); }\n", flags=["-fshader-stage=vert"])


@pytest.mark.parametrize("seed", range(6))
def test_binary_garbage(seed):
    data = random.Random(seed).randbytes(rng_len := 64 + 97 * seed)
    assert len(data) == rng_len
    with pytest.raises(TypeError, match="bytes"):
        compile_glsl(data)  # type: ignore[arg-type]
    text = data.decode("latin-1")
    with pytest.raises(ShaderCompileError):
        compile_glsl(text)
    with pytest.raises(ShaderCompileError):
        compile_glsl(text.replace("\x00", " "))  # no NUL: the compiler's own errors


def test_define_limits():
    with pytest.raises(ValueError, match=r"define 'BIG' is 1000000 bytes long"):
        compile_glsl(SAXPY, defines={"BIG": "1" * 1_000_000})
    with pytest.raises(ValueError, match=r"define 'Z' has a NUL"):
        compile_glsl(SAXPY, defines={"Z": "1\x002"})
    with pytest.raises(ValueError, match=r"define 'S' has a character .*\\ud800"):
        compile_glsl(SAXPY, defines={"S": "\ud800"})
    for text in ("1\n2", "1\r2", "1\r\n"):
        with pytest.raises(ValueError, match="several lines"):
            compile_glsl(SAXPY, defines={"NL": text})
    with pytest.raises(TypeError, match="mapping"):
        compile_glsl(SAXPY, defines=[("N", 1)])  # type: ignore[arg-type]
    # Many defines, each allowed, that together overflow the command line.
    many = {f"D{i}": "1" * 90_000 for i in range(60)}
    with pytest.raises(ValueError, match="command line is too long"):
        compile_glsl(SAXPY, defines=many)
    # Thousands of small ones are fine.
    assert compile_glsl(SAXPY, defines={f"D{i}": i for i in range(5000)}).startswith(SPIRV_MAGIC)


def test_argument_types():
    with pytest.raises(TypeError, match="include_dirs"):
        compile_glsl(SAXPY, include_dirs="/tmp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a str"):
        compile_glsl(SAXPY, name=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_env"):
        compile_glsl(SAXPY, target_env=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        compile_glsl(SAXPY, flags=["-g\x00"])


def test_glslangvalidator_pragma_once_and_cycles(glslang, tmp_path):
    _write(
        tmp_path,
        {
            "once.glsl": '#pragma once\n#include "once.glsl"\nconst float ONCE = 1.0;\n',
            "loop.glsl": '#include "loop.glsl"\n',
        },
    )
    src = (
        '#include "once.glsl"\n#include "once.glsl"\nlayout(local_size_x = 1) in;\n'
        "layout(binding = 0) buffer B { float b[]; };\nvoid main() { b[0] = ONCE; }\n"
    )
    result = compile_glsl_info(src, include_dirs=[tmp_path])
    assert "-S" in result.command and result.spirv.startswith(SPIRV_MAGIC)
    assert result.includes == [str((tmp_path / "once.glsl").resolve())]
    with pytest.raises(ShaderCompileError, match=r"#include cycle loop\.glsl -> loop\.glsl"):
        compile_glsl(MAIN + '#include "loop.glsl"\n', include_dirs=[tmp_path])
