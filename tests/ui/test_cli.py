"""The command line: ``python -m vknb devices|info|compile|reflect``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import vknb

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vknb", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_devices_table_names_every_device_and_its_score() -> None:
    p = run("devices")
    assert p.returncode == 0, p.stderr
    for d in vknb.devices():
        assert d.name in p.stdout
        assert f"{d.score} ({d.score_parts['type']}+{d.score_parts['memory']})" in p.stdout
    assert "session device:" in p.stdout and "score" in p.stdout


def test_devices_json_is_complete() -> None:
    p = run("devices", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert [d["name"] for d in data] == [d.name for d in vknb.devices()]
    assert {"limits", "heaps", "queue_families", "score_parts"} <= set(data[0])


def test_info_lists_versions_and_cache() -> None:
    p = run("info")
    assert p.returncode == 0, p.stderr
    for word in ("vknb", "vulkan (Python binding)", "Vulkan loader", "compiler", "cache directory"):
        assert word in p.stdout


def test_compile_and_reflect(tmp_path: Path) -> None:
    src = tmp_path / "k.comp"
    src.write_text(
        "layout(local_size_x = 8) in;\n"
        "layout(binding = 0) buffer B { float b[]; };\n"
        "void main() { b[gl_GlobalInvocationID.x] *= 2.0; }\n"
    )
    out = tmp_path / "k.spv"
    p = run("compile", str(src), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:4] == b"\x03\x02\x23\x07"
    for f in (src, out):
        r = run("reflect", str(f))
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["local_size"] == [8, 1, 1]
        assert data["bindings"][0]["name"] == "B"


def test_compile_error_exits_nonzero_with_the_line(tmp_path: Path) -> None:
    src = tmp_path / "bad.comp"
    src.write_text("layout(local_size_x = 1) in;\nvoid main() {\n  nope = 1;\n}\n")
    p = run("compile", str(src))
    assert p.returncode == 1
    assert ">>3 |" in p.stderr and "nope" in p.stderr
