"""``debugPrintfEXT`` in kernels: what they print reaches the cell's output, one line per
invocation that printed, tagged with the kernel's name and the invocation's global id.

In this process the validation layer is on (the test command sets ``VKNB_VALIDATION=1``), so
printf rides on the session instance; the children check the printf-only instance a kernel gets
without validation, the ``%%glsl`` magic, and what happens where the layer is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import last_json, run_python

import vknb

PRINTER = """
#extension GL_EXT_debug_printf : enable
layout(local_size_x = 16) in;
layout(binding = 0) buffer B { float b[]; };
layout(push_constant) uniform P { uint n; uint every; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= n) return;
    b[i] = b[i] * 2.0;
    if (i % every == 0) debugPrintfEXT("i=%u v=%f", i, b[i]);
}
"""

LINE = re.compile(r"^\[(?P<name>\w+) \((?P<x>\d+), 0, 0\)\] i=(?P<i>\d+) v=(?P<v>-?[\d.]+)$")


def _parse(out: str, name: str) -> dict[int, float]:
    """The printed lines of ``name`` as {invocation: value}; every line must parse."""
    got: dict[int, float] = {}
    for line in out.splitlines():
        if not line.startswith(f"[{name} "):
            continue
        m = LINE.match(line)
        assert m is not None, f"unexpected printf line: {line!r}"
        assert m["name"] == name and m["x"] == m["i"]  # the tag is the invocation that printed
        got[int(m["i"])] = float(m["v"])
    return got


def test_reflection_knows_which_kernels_print() -> None:
    k = vknb.compile(PRINTER, name="printer")
    assert k.printf and k.reflection.uses_printf
    assert "NonSemantic.DebugPrintf" in k.reflection.ext_inst_imports
    plain = vknb.compile("layout(local_size_x = 1) in; void main() {}", name="plain")
    assert not plain.printf and not plain.reflection.uses_printf


def test_printed_lines_carry_kernel_and_invocation(capsys, rng) -> None:
    k = vknb.compile(PRINTER, name="printer")
    n, every = int(rng.integers(40, 90)), int(rng.integers(3, 7))
    x = rng.standard_normal(n).astype(np.float32)
    a = vknb.asarray(x, device=k.device)
    k(a, n=n, every=every, grid=n)
    got = _parse(capsys.readouterr().out, "printer")
    want = {i: float(2 * x[i]) for i in range(0, n, every)}
    assert sorted(got) == sorted(want)
    for i, v in got.items():
        assert v == pytest.approx(want[i], abs=1e-5)
    np.testing.assert_allclose(a.numpy(), 2 * x, rtol=1e-6)


def test_numpy_arguments_and_repeated_calls_print_each_call(capsys, rng) -> None:
    k = vknb.compile(PRINTER, name="printer")
    x = rng.standard_normal(32).astype(np.float32)
    for _ in range(3):
        k(x, n=32, every=8, grid=32)  # x is written back: doubles each call
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("[printer ")]
    assert len(lines) == 3 * 4, out


def test_batch_prints_after_its_submission(capsys, rng) -> None:
    k = vknb.compile(PRINTER, name="printer")
    x = rng.standard_normal(48).astype(np.float32)
    a = vknb.asarray(x, device=k.device)
    with vknb.batch(device=k.device):
        k(a, n=48, every=16, grid=48)
        k(a, n=48, every=16, grid=48)
        assert "[printer " not in capsys.readouterr().out  # nothing ran yet
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[printer ")]
    assert len(lines) == 6
    np.testing.assert_allclose(a.numpy(), 4 * x, rtol=1e-6)


def test_without_validation_a_printing_kernel_gets_its_own_device(tmp_path: Path) -> None:
    r = run_python(
        f"""
        import json, sys, numpy as np, vknb
        k = vknb.compile({PRINTER!r}, name="printer")
        plain = vknb.compile("layout(local_size_x = 1) in; void main() {{}}", name="plain")
        x = np.arange(20, dtype=np.float32)
        k(x, n=20, every=5, grid=20)
        err = ""
        try:
            k(vknb.asarray(x), n=20, every=5, grid=20)  # an Array of the session device
        except ValueError as e:
            err = str(e)
        sys.stdout.flush()
        print(json.dumps({{
            "own": k.device is not vknb.device(), "plain": plain.device is vknb.device(),
            "validation": vknb.device().instance.validation, "err": err,
            "x": x.tolist(),
        }}))
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    res = last_json(r.stdout)
    assert res["own"] and res["plain"] and not res["validation"]
    assert "make its Arrays with device=kernel.device" in res["err"]
    got = _parse(r.stdout, "printer")
    assert got == {i: 2.0 * i for i in range(0, 20, 5)}
    assert res["x"] == [2.0 * i for i in range(20)]


def test_glsl_magic_cell_shows_what_the_kernel_printed(tmp_path: Path) -> None:
    r = run_python(
        f"""
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.utils.capture import capture_output
        from traitlets.config import Config
        cfg = Config(); cfg.HistoryManager.hist_file = ":memory:"
        ip = InteractiveShell.instance(config=cfg)
        ip.run_line_magic("load_ext", "vknb")
        ip.run_cell_magic("glsl", "printer", {PRINTER!r})
        with capture_output() as cap:
            ip.run_cell("import numpy as np; x = np.ones(8, np.float32); "
                        "printer(x, n=8, every=4, grid=8)")
        print("CELL:" + cap.stdout.replace(chr(10), "|"))
        """,
        tmp_path,
        env={"IPYTHONDIR": str(tmp_path / "ipython")},
    )
    assert r.returncode == 0, r.stderr
    cell = [ln for ln in r.stdout.splitlines() if ln.startswith("CELL:")][-1]
    got = _parse(cell[5:].replace("|", "\n"), "printer")
    assert got == {0: 2.0, 4: 2.0}


def test_missing_layer_warns_and_the_kernel_still_runs(tmp_path: Path) -> None:
    r = run_python(
        f"""
        import json, warnings, numpy as np, vknb
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            k = vknb.compile({PRINTER!r}, name="printer")
        x = np.arange(8, dtype=np.float32)
        k(x, n=8, every=2, grid=8)
        print(json.dumps({{"warn": [str(m.message) for m in w], "x": x.tolist(),
                           "session": k.device is vknb.device()}}))
        """,
        tmp_path,
        env={"VK_LAYER_PATH": str(tmp_path / "no-layers")},  # the loader finds no layer here
    )
    assert r.returncode == 0, r.stderr
    res = last_json(r.stdout)
    assert any("needs the Khronos validation layer" in m for m in res["warn"]), res
    assert res["x"] == [2.0 * i for i in range(8)] and res["session"]
    assert "[printer " not in r.stdout


def test_thousands_of_lines_fit_the_layers_buffer(capsys) -> None:
    k = vknb.compile(PRINTER, name="printer")
    n = 3000
    k(np.ones(n, np.float32), n=n, every=1, grid=n)
    out = capsys.readouterr().out
    assert "truncated" not in out
    assert _parse(out, "printer") == {i: 2.0 for i in range(n)}
