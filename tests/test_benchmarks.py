"""The benchmark suite's smoke run: ``python -m benchmarks --size smoke`` on the real driver.

It checks that every row is produced, with numbers (or an explicit reason where a side does not
apply or an optional peer is missing), that every correctness check against numpy passed, and
that the run imported nothing from IPython, ipywidgets or matplotlib.  No timing assertions:
on lavapipe and a shared CI machine the numbers mean little.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import vknb

REPO = Path(__file__).resolve().parent.parent

# Rows every run must have (the library rows need their shaders, which the repo ships).
EXPECTED = {
    "sync_dispatch",
    "sync_resubmit",
    "batch_record",
    "batch_total",
    "batch_replay",
    "batch_replay_update",
    "batch_gpu",
    "batch_indep_total",
    "batch_indep_replay",
    "h2d",
    "h2d_update",
    "d2h",
    "h2d_import",
    "d2h_import",
    "h2d_import_first",
    "d2h_import_first",
    "h2d_staging",
    "d2h_staging",
    "compile_cold",
    "compile_cached",
    "cold_start",
    "cold_start_warm",
    "lib_matmul",
    "lib_matmul_odd",
    "lib_matmul_flat",
    "lib_reduce_sum",
    "lib_scan",
    "lib_histogram",
    "lib_transpose",
    "lib_blur",
    "lib_map",
    "lib_softmax",
    "lib_radix_sort",
    "lib_radix_sort_pairs",
    "img_h2d_rgba8",
    "img_h2d_rgba32f",
    "img_d2h_rgba8",
    "img_d2h_rgba32f",
    "img_resize_sampled",
    "img_resize_buffer",
}
# Cells that may hold a reason instead of a number, by column.
REASON_OK = ("n/a", "not installed")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    tmp = tmp_path_factory.mktemp("bench")
    json_path, md_path = tmp / "bench.json", tmp / "bench.md"
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into the working tree
    env["VKNB_CACHE_DIR"] = str(tmp / "cache")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--size",
            "smoke",
            "--json",
            str(json_path),
            "--md",
            str(md_path),
            "--quiet",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(json_path.read_text()), proc.stdout, md_path


def test_every_row_has_numbers(smoke_run: tuple[dict, str, Path]) -> None:
    data, _, _ = smoke_run
    rows = {r["id"]: r for r in data["rows"]}
    assert EXPECTED <= set(rows), f"missing rows: {sorted(EXPECTED - set(rows))}"
    assert any(i.startswith("saxpy_share_") for i in rows)
    for rid, r in rows.items():
        if rid == "lib_matmul_fp16":  # tensor cores: vknb only, and only where the device has them
            assert "VK_NV_cooperative_matrix" in r["raw"]
            if vknb.device().cooperative_matrix:
                assert _is_number(r["vknb"]) and r["vknb"] > 0, r
            else:
                assert r["vknb"].startswith("n/a: no cooperative matrices"), r
            continue
        # the copy-buffer ceiling is measured by the raw side only, the compute copy by vknb
        if rid.startswith("copy_"):
            sides: tuple[str, ...] = ("raw",)
        elif rid.startswith("kcopy_"):
            sides = ("vknb",)
        else:
            sides = ("vknb", "raw")
        for side in sides:
            assert _is_number(r[side]), f"{rid}: {side} = {r[side]!r}"
            assert r[side] >= 0, f"{rid}: {side} = {r[side]!r}"
        for side in ("wgpu", "cupy"):
            v = r[side]
            assert _is_number(v) or (isinstance(v, str) and v.startswith(REASON_OK)), (
                f"{rid}: {side} = {v!r}"
            )
        if _is_number(r["vknb"]) and _is_number(r["raw"]) and r["raw"]:
            assert r["ratio"] == pytest.approx(r["vknb"] / r["raw"])


def test_cold_start_rows_have_their_stages(smoke_run: tuple[dict, str, Path]) -> None:
    """Each side of a cold-start row is a fresh process with its stages adding up."""
    data, _, _ = smoke_run
    rows = {r["id"]: r for r in data["rows"]}
    for rid in ("cold_start", "cold_start_warm"):
        stages = rows[rid]["extra"]["stages"]
        for side in ("vknb", "raw"):
            m = stages[side]
            parts = [m[k] for k in ("interpreter_ms", "import_ms", "ready_ms", "first_call_ms")]
            assert all(_is_number(p) and p >= 0 for p in parts), (rid, side, m)
            assert m["ok"] is True, (rid, side, m)
            # medians of each stage need not add up to the median total; within 25 %
            assert sum(parts) == pytest.approx(m["total_ms"], rel=0.25), (rid, side, m)
        assert "compile+device" in rows[rid]["notes"]


def test_correctness_checks_passed(smoke_run: tuple[dict, str, Path]) -> None:
    data, _, _ = smoke_run
    assert data["meta"]["failures"] == []
    checked = [r for r in data["rows"] if not r["check"].startswith("n/a")]
    assert len(checked) >= len(EXPECTED)
    for r in checked:
        assert r["check"] == "passed", f"{r['id']}: {r['check']}"


def test_report_and_imports(smoke_run: tuple[dict, str, Path]) -> None:
    data, stdout, md_path = smoke_run
    meta = data["meta"]
    assert meta["size"] == "smoke"
    assert meta["device"]["name"] and meta["versions"]["vknb"]
    assert meta["ui_modules_imported"] == []  # no IPython / ipywidgets / matplotlib
    md = md_path.read_text(encoding="utf-8")
    header = "| metric | vknb | raw vulkan baseline | ratio | wgpu | cupy | target | met? |"
    assert header in md and header in stdout
    assert meta["device"]["name"] in md
    # targets are judged only where they apply; a smoke run on lavapipe judges the lavapipe one
    for r in data["rows"]:
        assert r["met"] in (True, False, None)


def test_placement_names_the_gpu_interrupt_cpu(smoke_run: tuple[dict, str, Path]) -> None:
    """The header says where the run's thread ran and which CPU serves the GPU's interrupts
    (a thread sharing that CPU pays for them: see docs/performance.md)."""
    sys.path.insert(0, str(REPO))
    from benchmarks.__main__ import _gpu_irq_cpus

    # The lent H100's /proc/interrupts, abridged to 4 CPUs: interrupt 42 served by CPU 2.
    text = (
        "           CPU0       CPU1       CPU2       CPU3\n"
        " 42:          0          0     787683          0 PCI-MSIX-0000:00:06.0   0-edge  nvidia\n"
        " 44:         12          0          0          0 PCI-MSIX-0000:00:06.0   2-edge  nvidia\n"
        " 50:      99999      99999      99999      99999 PCI-MSI 1-edge  eth0\n"
    )
    assert _gpu_irq_cpus(text) == [2]
    assert _gpu_irq_cpus("           CPU0\n  1:  5  IO-APIC  i8042\n") == []
    # The run keeps its threads off those CPUs (os.sched_setaffinity acts on the calling
    # thread, and the threads it starts inherit it: checked in a thread of our own).
    from benchmarks.__main__ import _keep_off_irq_cpus

    seen: list[object] = []

    def pinned() -> None:
        allowed = sorted(os.sched_getaffinity(0))
        kept = _keep_off_irq_cpus([allowed[0]])
        seen.extend([kept, allowed[0] in os.sched_getaffinity(0), len(allowed)])

    t = threading.Thread(target=pinned)
    t.start()
    t.join()
    kept, still, ncpu = seen
    if ncpu > 1:
        assert kept and not still, seen
    else:  # one CPU: nowhere else to go, nothing changed
        assert kept == [] and still, seen
    data, _, md_path = smoke_run
    placement = data["meta"]["placement"]
    assert placement.startswith("main thread on CPU") or placement.startswith("unknown")
    assert f"- placement: {placement}" in md_path.read_text(encoding="utf-8")
