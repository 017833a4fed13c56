"""The IPython extension, driven through a real IPython shell (no notebook, no mocks).

``%%glsl`` (define, run, re-define, compile errors, every option, splicing, re-run leaks) and
every ``%vknb`` subcommand, through ``run_cell_magic`` / ``run_line_magic`` / ``run_cell``.
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import vknb
from vknb import display, magics

SAXPY = """
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < x.length()) y[i] += a * x[i];
}
"""

# Same interface, different body: y = a * x (assignment instead of accumulation).
SAXPY_ASSIGN = SAXPY.replace("y[i] += a * x[i]", "y[i] = a * x[i]")


def _settle() -> None:
    for _ in range(3):
        gc.collect()


@pytest.fixture(scope="module")
def ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real IPython shell with the extension loaded (history in memory, profile in tmp)."""
    os.environ.setdefault("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=cfg)
    shell.run_line_magic("load_ext", "vknb")
    yield shell


@pytest.fixture
def data(ip: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Fresh random float32 inputs bound in the user namespace as x, y, n, alpha."""
    n = int(rng.integers(300, 3000))
    d = {
        "x": rng.standard_normal(n).astype(np.float32),
        "y": rng.standard_normal(n).astype(np.float32),
        "n": n,
        "alpha": float(rng.uniform(-3, 3)),
    }
    ip.user_ns.update(d)
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def glsl(ip: Any, line: str, cell: str) -> Any:
    """Run a %%glsl cell, returning what it displayed and printed."""
    with capture_output() as cap:
        ret = ip.run_cell_magic("glsl", line, cell)
    assert ret is None  # nothing lands in Out / _ (it would keep old kernels alive)
    return cap


def vknb_line(ip: Any, line: str) -> Any:
    with capture_output() as cap:
        ip.run_line_magic("vknb", line)
    return cap


def _mimes(cap: Any) -> list[dict[str, Any]]:
    """What was displayed (not the live views' later updates)."""
    return [o.data for o in cap.outputs if not o.update]


# --- loading ---------------------------------------------------------------------------------


def test_load_ext_registers_magics_and_nothing_else(tmp_path: Path) -> None:
    # A fresh process: nothing else may have created a device or loaded the Vulkan binding.
    script = textwrap.dedent("""
        import contextlib, io, sys
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
        cfg = Config(); cfg.HistoryManager.hist_file = ":memory:"
        sh = InteractiveShell.instance(config=cfg)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            sh.run_line_magic("load_ext", "vknb")
        import vknb, vknb.core.instance
        assert vknb.current_device() is None, "a device was created on load"
        assert vknb.core.instance.current_instance() is None, "an instance was created on load"
        for mod in ("vulkan", "ipywidgets", "matplotlib"):
            assert mod not in sys.modules, mod + " imported on load"
        assert "glsl" in sh.magics_manager.magics["cell"]
        assert "vknb" in sh.magics_manager.magics["line"]
        assert buf.getvalue() == "", repr(buf.getvalue())
        print("OK")
    """)
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


def test_unload_and_reload(ip: Any) -> None:
    ip.run_line_magic("unload_ext", "vknb")
    assert "glsl" not in ip.magics_manager.magics["cell"]
    assert "vknb" not in ip.magics_manager.magics["line"]
    ip.run_line_magic("load_ext", "vknb")
    assert "glsl" in ip.magics_manager.magics["cell"]
    assert "vknb" in ip.magics_manager.magics["line"]


def test_load_ext_registers_display_formatters(ip: Any, data: dict[str, Any]) -> None:
    glsl(ip, "saxpy --quiet", SAXPY)
    k = ip.user_ns["saxpy"]
    rec = k(data["x"], data["y"], a=1.0, grid=data["n"])
    dev = vknb.device()
    with pytest.raises(vknb.ShaderCompileError) as info:
        vknb.compile(BAD, name="bad")
    fmt = ip.display_formatter
    shown = fmt.format(k)[0]
    assert shown["text/html"] == display.kernel_html(k)
    assert shown["text/plain"] == display.kernel_text(k)
    assert fmt.format(rec)[0]["text/html"] == display.dispatch_html(rec)
    assert fmt.format(dev)[0]["text/html"] == display.device_html(dev)
    assert fmt.format(info.value)[0]["text/html"] == display.compile_error_html(info.value)

    ip.run_line_magic("unload_ext", "vknb")
    try:
        html = fmt.formatters["text/html"]
        for cls in (vknb.Kernel, vknb.Device, vknb.DispatchRecord, vknb.ShaderCompileError):
            with pytest.raises(KeyError):
                html.lookup_by_type(cls)
    finally:
        ip.run_line_magic("load_ext", "vknb")
    assert fmt.format(k)[0]["text/plain"] == display.kernel_text(k)


# --- %%glsl: define, run, re-define ----------------------------------------------------------


def test_define_binds_kernel_and_shows_card(ip: Any, data: dict[str, Any]) -> None:
    cap = glsl(ip, "saxpy", SAXPY)
    k = ip.user_ns["saxpy"]
    assert isinstance(k, vknb.Kernel) and k.name == "saxpy"
    (card,) = _mimes(cap)
    html, text = card["text/html"], card["text/plain"]
    for expected in (
        "saxpy",
        "readonly",
        "float32",
        "push constants",
        "SPIR-V",
        vknb.device().info.name,
    ):
        assert expected in html, expected
    assert "local_size=(64, 1, 1)" in text and "compile" in text and "X" in text

    res = ip.run_cell("rec = saxpy(x, y, a=alpha, grid=n)")
    assert res.success, res.error_in_exec
    expected = data["y"] + np.float32(data["alpha"]) * data["x"]
    np.testing.assert_allclose(ip.user_ns["y"], expected, rtol=1e-5, atol=1e-6)
    assert ip.user_ns["rec"].kernel == "saxpy"


def test_run_option_dispatches_with_namespace_args(ip: Any, data: dict[str, Any]) -> None:
    cap = glsl(ip, 'saxpy --run "x, y, a=alpha, grid=n"', SAXPY)
    expected = data["y"] + np.float32(data["alpha"]) * data["x"]
    np.testing.assert_allclose(ip.user_ns["y"], expected, rtol=1e-5, atol=1e-6)
    card, rec = _mimes(cap)
    assert "saxpy" in card["text/html"]
    groups = -(-data["n"] // 64)
    assert f"saxpy: {groups}x1x1 groups of 64x1x1" in rec["text/plain"]
    assert "gpu" in rec["text/html"]
    # Braces in --run are Python, not IPython's {expr} expansion; single quotes work too.
    ip.user_ns["y"][:] = data["y"]
    glsl(ip, "saxpy --quiet --run 'x, y, P={\"a\": alpha}, grid=(n,)'", SAXPY)
    np.testing.assert_allclose(ip.user_ns["y"], expected, rtol=1e-5, atol=1e-6)


def test_redefine_replaces_kernel_and_old_reference_keeps_working(
    ip: Any, data: dict[str, Any]
) -> None:
    glsl(ip, "saxpy", SAXPY)
    ip.run_cell("old_saxpy = saxpy")
    glsl(ip, "saxpy", SAXPY_ASSIGN)
    new, old = ip.user_ns["saxpy"], ip.user_ns["old_saxpy"]
    assert new is not old
    a = np.float32(data["alpha"])
    assert ip.run_cell("saxpy(x, y, a=alpha, grid=n)").success
    np.testing.assert_allclose(ip.user_ns["y"], a * data["x"], rtol=1e-5, atol=1e-6)
    # The kernel kept under another name was not closed by the re-run.
    assert ip.run_cell("old_saxpy(x, y, a=alpha, grid=n)").success
    np.testing.assert_allclose(ip.user_ns["y"], 2 * a * data["x"], rtol=1e-5, atol=1e-6)
    ip.run_cell("del old_saxpy")


def test_rerun_200_times_does_not_leak(ip: Any, data: dict[str, Any]) -> None:
    line = 'saxpy --run "x, y, a=alpha, grid=n"'
    glsl(ip, line, SAXPY)  # warm up: compile cache, scratch buffers, device
    dev = vknb.device()
    _settle()
    dev.synchronize()
    dev.trim()
    live0, mem0 = dev.live_objects(), dev.memory_stats()
    kernels0 = sum(isinstance(o, vknb.Kernel) for o in gc.get_objects())
    for i in range(200):
        glsl(ip, line if i % 2 else "saxpy --quiet", SAXPY)
    _settle()
    dev.synchronize()
    dev.trim()
    live1, mem1 = dev.live_objects(), dev.memory_stats()
    assert live1 == live0
    assert (mem1.allocated, mem1.used, mem1.buffers, mem1.blocks, mem1.allocations) == (
        mem0.allocated,
        mem0.used,
        mem0.buffers,
        mem0.blocks,
        mem0.allocations,
    )
    assert sum(isinstance(o, vknb.Kernel) for o in gc.get_objects()) == kernels0
    expected = data["y"] + 101 * np.float32(data["alpha"]) * data["x"]
    np.testing.assert_allclose(ip.user_ns["y"], expected, rtol=1e-4, atol=1e-4)


# --- %%glsl: compile errors --------------------------------------------------------------------


BAD = SAXPY.replace("if (i < x.length())", "if (i < undeclared_thing)")


def _line_of(cell_text: str, needle: str) -> int:
    """1-based line number of ``needle`` in a whole cell (line 1 = the %%glsl line)."""
    return next(i for i, s in enumerate(cell_text.splitlines(), 1) if needle in s)


def test_compile_error_fails_cell_and_keeps_previous_kernel(ip: Any) -> None:
    glsl(ip, "saxpy", SAXPY)
    before = ip.user_ns["saxpy"]
    cell = "%%glsl saxpy\n" + BAD
    with capture_output() as cap:
        res = ip.run_cell(cell)
    assert res.success is False
    err = res.error_in_exec
    assert isinstance(err, vknb.ShaderCompileError)
    assert ip.user_ns["saxpy"] is before

    line = _line_of(cell, "undeclared_thing")
    assert err.diagnostics[0][0] == line and err.diagnostics[0][2] == "error"
    assert "undeclared_thing" in err.diagnostics[0][3]
    assert err.source.splitlines()[line - 1] == cell.splitlines()[line - 1]
    assert f"line {line}:" in str(err)

    (view,) = _mimes(cap)
    page = view["text/html"]
    # The marked line is the offending one (one block per line: no table rows for a theme's
    # striping to fall on), tinted translucently, in the theme's own text colour.
    marked = re.findall(r"<div class='vknb-error-line'[^>]*>(.*?)</div>", page)
    assert len(marked) == 1 and "undeclared_thing" in marked[0]
    assert re.search(rf"<span[^>]*>\s*{line}</span>", marked[0])
    assert "<tr" not in page.split("vknb-listing", 1)[1]
    assert "background:rgba(" in page and not re.search(r"background:\s*(#f|white)", page)
    assert "still holds the previous kernel" in page
    assert re.search(rf"^>> *{line} \| .*undeclared_thing", view["text/plain"], re.M)
    # A short traceback: the listing is already on screen.
    assert "ShaderCompileError" in cap.stdout and "Traceback" not in cap.stdout
    assert len(err._render_traceback_()) == 1

    # Called directly, the magic raises; a new name stays undefined.
    with capture_output(), pytest.raises(vknb.ShaderCompileError):
        ip.run_cell_magic("glsl", "never_defined", BAD)
    assert "never_defined" not in ip.user_ns


def test_compile_error_inside_spliced_block_points_at_its_line(ip: Any) -> None:
    ip.user_ns["BLOCK"] = "float a1 = 1.0;\nfloat a2 = oops_here;\nfloat a3 = 3.0;"
    cell = textwrap.dedent("""\
        %%glsl blocky
        layout(local_size_x = 1) in;
        layout(binding = 0) buffer B { float b[]; };
        void main() {
            $BLOCK
            b[0] = a1 + a2 + a3 + after_block;
        }
    """)
    with capture_output():
        res = ip.run_cell(cell)
    err = res.error_in_exec
    assert isinstance(err, vknb.ShaderCompileError)
    lines = {d[0]: d[3] for d in err.diagnostics}
    block_line = _line_of(cell, "$BLOCK")
    after_line = _line_of(cell, "after_block")
    assert (
        "oops_here" in lines[block_line]
        and "line 2 of the text spliced from $BLOCK" in (lines[block_line])
    )
    assert "after_block" in lines[after_line]
    assert "blocky" not in ip.user_ns


def test_compiler_warning_in_cell_lines(ip: Any) -> None:
    from vknb.compiler import ShaderWarning

    ip.user_ns["BLOCK2"] = "// one\n// two"
    cell = (
        "%%glsl warned\n$BLOCK2\nlayout(local_size_x = 1) in;\n"
        "#extension GL_EXT_nonexistent_thing : warn\nvoid main() {}\n"
    )
    with pytest.warns(ShaderWarning) as rec:
        res = ip.run_cell(cell)
    assert res.success
    (w,) = [r.message for r in rec if isinstance(r.message, ShaderWarning)]
    line = _line_of(cell, "GL_EXT_nonexistent_thing")
    assert w.line == line and str(w).startswith(f"warned:{line}: ")


def test_usage_errors(ip: Any) -> None:
    with capture_output(), pytest.raises(UsageError, match="Python name"):
        ip.run_cell_magic("glsl", "", SAXPY)
    with capture_output(), pytest.raises(UsageError, match="Python name"):
        ip.run_cell_magic("glsl", "1abc", SAXPY)
    with capture_output(), pytest.raises(UsageError, match="cell body"):
        ip.run_line_magic("glsl", "saxpy")
    with capture_output(), pytest.raises(UsageError, match="local-size"):
        ip.run_cell_magic("glsl", "saxpy --local-size 8x8", SAXPY)
    with capture_output(), pytest.raises(UsageError, match="NAME=VALUE"):
        ip.run_cell_magic("glsl", "saxpy --constant X", SAXPY)
    with capture_output(), pytest.raises(UsageError, match="unrecognized"):
        ip.run_cell_magic("glsl", "saxpy --bogus", SAXPY)


# --- %%glsl: options -------------------------------------------------------------------------


def test_defines(ip: Any, data: dict[str, Any]) -> None:
    src = """
    layout(local_size_x = 64) in;
    layout(binding = 0) readonly buffer X { float x[]; };
    layout(binding = 1) writeonly buffer Y { float y[]; };
    void main() {
        uint i = gl_GlobalInvocationID.x;
        if (i >= x.length()) return;
    #ifdef NEGATE
        y[i] = -SCALE * x[i];
    #else
        y[i] = SCALE * x[i];
    #endif
    }
    """
    glsl(ip, "scaled -D SCALE=3.0 -D NEGATE", src)
    k = ip.user_ns["scaled"]
    assert k.defines == {"SCALE": "3.0", "NEGATE": None}
    assert ip.run_cell("scaled(x, y, grid=n)").success
    np.testing.assert_allclose(ip.user_ns["y"], -3 * data["x"], rtol=1e-5, atol=1e-6)
    glsl(ip, "scaled -D SCALE=0.5", src)
    assert ip.run_cell("scaled(x, y, grid=n)").success
    np.testing.assert_allclose(ip.user_ns["y"], 0.5 * data["x"], rtol=1e-5, atol=1e-6)


SPEC = """
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const float FACTOR = 1.0;
layout(constant_id = 2) const int OFFSET = 0;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) writeonly buffer Y { float y[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < x.length()) y[i] = FACTOR * x[i] + float(OFFSET);
}
"""


def test_constants_and_local_size(ip: Any, data: dict[str, Any]) -> None:
    ip.user_ns["off"] = 7
    cap = glsl(ip, "spec --constant FACTOR=2.5 --constant OFFSET=off --local-size 32", SPEC)
    k = ip.user_ns["spec"]
    assert k.constants == {"FACTOR": 2.5, "OFFSET": 7}
    assert k.local_size == (32, 1, 1)
    assert "FACTOR" in _mimes(cap)[0]["text/plain"]
    assert ip.run_cell("spec(x, y, grid=n)").success
    np.testing.assert_allclose(ip.user_ns["y"], 2.5 * data["x"] + 7, rtol=1e-5, atol=1e-5)
    assert vknb.timings()[-1].groups == (-(-data["n"] // 32), 1, 1)

    glsl(ip, "spec --local-size 128,1,1 --constant OFFSET=-2", SPEC)
    assert ip.user_ns["spec"].local_size == (128, 1, 1)
    assert ip.run_cell("spec(x, y, grid=n)").success
    np.testing.assert_allclose(ip.user_ns["y"], data["x"] - 2, rtol=1e-5, atol=1e-5)

    with capture_output(), pytest.raises(TypeError, match="NOPE"):
        ip.run_cell_magic("glsl", "spec --constant NOPE=1", SPEC)
    with capture_output(), pytest.raises(TypeError):
        ip.run_cell_magic("glsl", "spec --constant OFFSET=1.5", SPEC)  # int: nothing converted
    assert ip.user_ns["spec"].local_size == (128, 1, 1)  # failures leave the name alone


def test_device_option(ip: Any, data: dict[str, Any]) -> None:
    glsl(ip, "saxpy --device 0", SAXPY)
    k = ip.user_ns["saxpy"]
    assert k.device.index == 0
    if vknb.device().index == 0:
        assert k.device is vknb.device()
    assert ip.run_cell("saxpy(x, y, a=alpha, grid=n)").success
    np.testing.assert_allclose(
        ip.user_ns["y"], data["y"] + np.float32(data["alpha"]) * data["x"], rtol=1e-5, atol=1e-6
    )
    with capture_output(), pytest.raises(vknb.NoDeviceFound):
        ip.run_cell_magic("glsl", f"saxpy --device {len(vknb.devices())}", SAXPY)


def test_quiet(ip: Any, data: dict[str, Any]) -> None:
    cap = glsl(ip, 'saxpy --quiet --run "x, y, a=alpha, grid=n"', SAXPY)
    assert cap.outputs == [] and cap.stdout == ""
    np.testing.assert_allclose(
        ip.user_ns["y"], data["y"] + np.float32(data["alpha"]) * data["x"], rtol=1e-5, atol=1e-6
    )


def test_save(ip: Any, tmp_path: Path) -> None:
    ip.user_ns["WG"] = 32
    path = tmp_path / "with space" / "saxpy.comp"
    glsl(ip, f'saxpy --quiet --save "{path}"', SAXPY.replace("= 64", "= $WG"))
    text = path.read_text()
    assert text.startswith("#version 450\n")
    assert "layout(local_size_x = 32) in;" in text
    assert vknb.compile(text, name="from_file").local_size == (32, 1, 1)
    # Saved before compiling: a failing shader can be tried in a terminal.
    bad = tmp_path / "bad.comp"
    with capture_output(), pytest.raises(vknb.ShaderCompileError):
        ip.run_cell_magic("glsl", f"bad_one --save {bad}", BAD)
    assert "undeclared_thing" in bad.read_text()


def test_help(ip: Any) -> None:
    with capture_output() as cap:
        ip.run_line_magic("glsl", "--help")
    for opt in (
        "-D",
        "--constant",
        "--local-size",
        "--device",
        "--quiet",
        "--run",
        "--save",
        "--no-splice",
        "$NAME",
        "$$",
        "ShaderCompileError",
    ):
        assert opt in cap.stdout, opt
    with capture_output() as cap2:
        ip.run_cell_magic("glsl", "whatever --help", SAXPY)
    assert cap2.stdout == cap.stdout
    assert "whatever" not in ip.user_ns


# --- %%glsl: splicing ------------------------------------------------------------------------


def test_splicing_from_namespace(ip: Any, data: dict[str, Any]) -> None:
    ip.user_ns.update(N=48, K=np.float32(0.5), FLAG=True, arr=np.zeros(3))
    cell = """
    layout(local_size_x = $N) in;
    layout(binding = 0) buffer Y { float y[]; };
    // literal: $$N; unknown: $NOT_DEFINED_ANYWHERE; array: $arr
    void main() {
        uint i = gl_GlobalInvocationID.x;
        if (${FLAG} && i < y.length()) y[i] *= ${K};
    }
    """
    with pytest.warns(UserWarning, match=r"\$arr is a ndarray"):
        glsl(ip, "spliced -D WG=$N", cell)
    k = ip.user_ns["spliced"]
    assert k.local_size == (48, 1, 1)
    assert k.defines == {"WG": "48"}
    assert "// literal: $N; unknown: $NOT_DEFINED_ANYWHERE; array: $arr" in k.source
    assert "if (true && i < y.length()) y[i] *= 0.5;" in k.source
    assert ip.run_cell("spliced(y, grid=n)").success
    np.testing.assert_allclose(ip.user_ns["y"], 0.5 * data["y"], rtol=1e-5, atol=1e-6)


def test_no_splice(ip: Any) -> None:
    ip.user_ns["N"] = 48
    cell = "layout(local_size_x = 16) in;\n// $N stays\nvoid main() {}\n"
    glsl(ip, "raw --no-splice --quiet", cell)
    assert "// $N stays" in ip.user_ns["raw"].source
    glsl(ip, "raw --quiet", cell)
    assert "// 48 stays" in ip.user_ns["raw"].source


def test_splice_function() -> None:
    s = magics.splice("a $X ${X}y $$X $Y $", {"X": 2, "Z": 1})
    assert s.text == "a 2 2y $X $Y $"
    assert s.values == {"X": "2"} and s.skipped == {}
    s = magics.splice("1\n$B\n3", {"B": "b1\nb2"})
    assert s.text == "1\nb1\nb2\n3"
    assert s.map_diagnostics(
        [(1, 0, "error", "m"), (3, 0, "error", "m"), (4, 2, "error", "m")], offset=1
    ) == [
        (2, 0, "error", "m"),
        (3, 0, "error", "m (line 2 of the text spliced from $B)"),
        (4, 2, "error", "m"),
    ]
    assert magics.splice_value(np.int64(3)) == "3"
    assert magics.splice_value(np.bool_(False)) == "false"
    assert magics.splice_value(1.5) == "1.5"
    assert magics.splice_value(object()) is None


# --- %vknb -------------------------------------------------------------------------------------


def test_vknb_help(ip: Any) -> None:
    for line in ("", "help", "--help"):
        out = vknb_line(ip, line).stdout
        for cmd in (
            "devices",
            "use",
            "memory",
            "timings",
            "--last",
            "--plot",
            "info",
            "clear-cache",
            "--text",
        ):
            assert cmd in out, (line, cmd)
    with capture_output(), pytest.raises(UsageError, match="unknown command"):
        ip.run_line_magic("vknb", "bogus")
    with capture_output(), pytest.raises(UsageError, match="timings"):
        ip.run_line_magic("vknb", "devices --last 3")
    with capture_output(), pytest.raises(UsageError, match="no argument"):
        ip.run_line_magic("vknb", "memory 3")


def test_vknb_devices(ip: Any) -> None:
    infos = vknb.devices()
    out = vknb_line(ip, "devices --text").stdout
    for d in infos:
        assert d.name in out and str(d.score) in out
    assert "score" in out
    (rich,) = _mimes(vknb_line(ip, "devices"))
    assert "<table" in rich["text/html"] and infos[0].name in rich["text/plain"]


def test_vknb_use(ip: Any) -> None:
    dev = vknb.device()
    out = vknb_line(ip, f"use {dev.index}").stdout
    assert f"using device {dev.index}: {dev.info.name}" in out
    assert vknb.device() is dev  # same index: the session device is kept
    with capture_output(), pytest.raises(UsageError, match="index"):
        ip.run_line_magic("vknb", "use")


def test_vknb_memory(ip: Any, data: dict[str, Any]) -> None:
    ip.user_ns["arr_on_gpu"] = vknb.asarray(data["x"])
    dev = vknb.device()
    stats = dev.memory_stats()
    out = vknb_line(ip, "memory --text").stdout
    assert dev.info.name in out
    for h in stats.heaps:
        assert display.fmt_bytes(h.size) in out
    assert f"used by {stats.buffers} live buffer" in out
    (rich,) = _mimes(vknb_line(ip, "memory"))
    assert (
        "<table" in rich["text/html"]
        and display.fmt_bytes(stats.heaps[0].size) in rich["text/html"]
    )
    del ip.user_ns["arr_on_gpu"]


def test_vknb_timings(ip: Any, data: dict[str, Any]) -> None:
    vknb.clear_timings()
    assert "no dispatches recorded yet" in vknb_line(ip, "timings --text").stdout
    glsl(ip, 'saxpy --quiet --run "x, y, a=alpha, grid=n"', SAXPY)
    glsl(
        ip,
        'scale2 --quiet --run "x, y, grid=n"',
        SAXPY.replace("layout(push_constant) uniform P { float a; };", "const float a = 2.0;"),
    )
    assert ip.run_cell("saxpy(x, y, a=alpha, grid=n)").success
    out = vknb_line(ip, "timings --text").stdout
    assert "3 dispatches recorded" in out
    assert "saxpy" in out and "scale2" in out
    assert out.count("saxpy") == 3  # summary row + two dispatch rows
    last1 = vknb_line(ip, "timings --last 1 --text").stdout
    assert "showing the last 1" in last1 and "scale2" not in last1
    only = vknb_line(ip, "timings --kernel scale2 --text").stdout
    assert "scale2" in only and "saxpy" not in only
    (rich,) = _mimes(vknb_line(ip, "timings"))
    assert "scale2" in rich["text/html"] and "<table" in rich["text/html"]
    (plot,) = _mimes(vknb_line(ip, "timings --plot"))
    assert plot["image/png"][:4] in (b"\x89PNG", "iVBO")  # bytes, or base64 text
    with capture_output(), pytest.raises(UsageError, match=">= 0"):
        ip.run_line_magic("vknb", "timings --last -1")


def test_vknb_timings_plot_honours_last(
    ip: Any, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    from vknb.ui import plots

    drawn: list[Any] = []
    real = plots.plot_timings

    def spy(*args: Any, **kwargs: Any) -> Any:
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(plots, "plot_timings", spy)
    glsl(ip, 'saxpy --quiet --run "x, y, a=alpha, grid=n"', SAXPY)
    for _ in range(3):
        assert ip.run_cell("saxpy(x, y, a=alpha, grid=n)").success
    (out,) = _mimes(vknb_line(ip, "timings --plot --last 2 --kernel saxpy"))
    assert "<svg" in out["text/html"] and "currentColor" in out["text/html"]
    png = out["image/png"]
    assert (png if isinstance(png, bytes) else base64.b64decode(png)).startswith(b"\x89PNG")
    (fig,) = drawn
    assert len(fig.axes) == 4 and len(fig.axes[0].patches) == 2  # two bars on the timeline
    hist = fig.axes[2]
    assert sum(p.get_height() for p in hist.patches) == 2


def test_figures_keep_their_theme_neutral_png_under_matplotlib_inline(ip: Any) -> None:
    """`%matplotlib inline` registers a PNG formatter for every Figure; vknb's figures keep
    their own (ink recoloured for dark themes)."""
    from matplotlib.figure import Figure

    from vknb.ui import plots

    png = ip.display_formatter.formatters["image/png"]
    png.for_type(Figure, lambda fig: b"inline backend")
    try:
        fig = plots.plot_timings([], kind="timeline")
        data = ip.display_formatter.format(fig)[0]
        assert data["image/png"] == plots.figure_bytes(fig, "png")
        assert "<svg" in data["text/html"]
    finally:
        png.pop(Figure)


def test_vknb_info(ip: Any) -> None:
    from vknb.compiler import cache_dir, find_compiler

    out = vknb_line(ip, "info --text").stdout
    for expected in (
        vknb.__version__,
        importlib.metadata.version("vulkan"),
        "Vulkan loader",
        vknb.device().info.name,
        vknb.device().info.driver,
        find_compiler().kind,
        str(cache_dir()),
        np.__version__,
    ):
        assert expected in out, expected
    (rich,) = _mimes(vknb_line(ip, "info"))
    assert "<table" in rich["text/html"] and "Vulkan loader" in rich["text/html"]


def test_vknb_clear_cache(ip: Any) -> None:
    from vknb.compiler import cache_dir

    glsl(ip, "saxpy --quiet", SAXPY)
    n = len(list((cache_dir() / "spirv").glob("*.vkspv")))
    assert n >= 1
    out = vknb_line(ip, "clear-cache").stdout
    assert f"removed {n} cached SPIR-V entr" in out
    assert not list((cache_dir() / "spirv").glob("*.vkspv"))
    glsl(ip, "saxpy --quiet", SAXPY)
    assert ip.user_ns["saxpy"].compile_info.cache_hit is False


def test_vknb_views_are_live_html(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """devices, memory and timings show ordinary HTML outputs with a display id (what a saved
    notebook and nbconvert keep), the ipywidgets only when asked."""
    import ipywidgets  # noqa: F401 - a dependency of vknb: its absence must fail, not skip

    widget_mime = "application/vnd.jupyter.widget-view+json"
    for cmd in ("devices", "memory", "timings"):
        cap = vknb_line(ip, cmd)
        (out,) = [o for o in cap.outputs if not o.update]
        assert set(out.data) == {"text/html", "text/plain"}, cmd
        assert out.transient["display_id"].startswith("vknb-"), cmd
        (widget,) = _mimes(vknb_line(ip, cmd + " --interactive"))
        assert widget_mime in widget and "text/html" in widget, cmd
    monkeypatch.setattr(magics, "use_widgets", True)
    (widget,) = _mimes(vknb_line(ip, "memory"))
    assert widget_mime in widget
    # --text never shows a widget.
    assert vknb.devices()[0].name in vknb_line(ip, "devices --text").stdout
    with capture_output(), pytest.raises(UsageError, match="interactive"):
        ip.run_line_magic("vknb", "info --interactive")
    vknb.widgets.close_all()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _traceback_of(ip: Any, cell: str) -> str:
    with capture_output() as cap:
        res = ip.run_cell(cell)
    assert res.success is False
    return _ANSI.sub("", cap.stdout + cap.stderr)


def test_usage_errors_end_at_the_users_frame(ip: Any, data: dict[str, Any]) -> None:
    glsl(ip, "saxpy", SAXPY)
    tb = _traceback_of(ip, "y64 = y.astype('float64')\nsaxpy(x, y64, a=1.0, grid=n)")
    assert "TypeError" in tb and "expects float32" in tb
    assert "saxpy(x, y64, a=1.0, grid=n)" in tb  # the user's own line
    assert "vknb/compute" not in tb and "kernel.py" not in tb, tb
    tb = _traceback_of(ip, "saxpy(x, y, a=1.0, grid=0)")
    assert "ValueError" in tb and "args.py" not in tb
    # In a user's function: the user's frames stay, vknb's go.
    tb = _traceback_of(ip, "def run():\n    return saxpy(x, grid=n)\nrun()")
    assert "run()" in tb and "return saxpy(x, grid=n)" in tb and "vknb/" not in tb
    # %debug still reaches the frame that raised.
    import sys

    frames = []
    t = sys.last_traceback
    while t is not None:
        frames.append(t.tb_frame.f_code.co_filename)
        t = t.tb_next
    assert any("vknb" in f for f in frames)
    # IPython's switch for hidden frames shows them all.
    ip.run_line_magic("xmode", "--show")
    try:
        assert "vknb/compute" in _traceback_of(ip, "saxpy(x, y, a=1.0, grid=0)")
    finally:
        ip.run_line_magic("xmode", "--hide")


def test_internal_errors_keep_their_frames(ip: Any) -> None:
    """An exception vknb did not raise on purpose (a bug) shows every frame."""
    tb = _traceback_of(ip, "import vknb\nvknb.display.fmt_bytes('not a number')")
    assert "TypeError" in tb and "display.py" in tb, tb
    assert magics.usage_error_frames(None) is None


def test_the_handler_is_removed_with_the_extension(ip: Any) -> None:
    assert ip.custom_exceptions == (TypeError, ValueError, vknb.VulkanError)
    ip.run_line_magic("unload_ext", "vknb")
    try:
        assert ip.custom_exceptions == ()
    finally:
        ip.run_line_magic("load_ext", "vknb")
    assert ip.custom_exceptions == (TypeError, ValueError, vknb.VulkanError)
