"""Compute pipelines: the pipeline cache persisted on disk (written, reloaded, damaged,
unusable), and SPIR-V modules that the driver or the reflection rejects (an error, never a
crash or a hang: damaged modules are compiled in a worker process).

Numbers worth reading are printed (run with ``-s``) and recorded with ``record_property``.
"""

from __future__ import annotations

import binascii
import collections
import selectors
import struct
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import DOUBLE, DOUBLE_A, FUZZ, check_double, child_env, last_json, report, run_python
from hypothesis import Phase, given, settings
from spirv_damage import (
    function_type_is_void,
    mutations,
    non_utf8_import_name,
    store_of_wrong_type,
    without_return,
)

import vknb
from vknb import compiler

# ---------------------------------------------------------------------------------------------
# The pipeline cache
# ---------------------------------------------------------------------------------------------


def _cache_kernel_run(d: vknb.Device) -> None:
    k = vknb.compile(DOUBLE, name="cached", device=d)
    x = np.arange(64, dtype=np.float32)
    k(x, grid=64)
    np.testing.assert_array_equal(x, 2 * np.arange(64))


def test_pipeline_cache_written_on_close_and_reloaded(dev, tmp_path, monkeypatch):
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path))
    d = vknb.Device(dev.index)
    path = d.pipeline_cache_path()
    assert str(path).startswith(str(tmp_path))
    assert not path.exists()
    assert d.pipeline_cache_loaded == 0
    _cache_kernel_run(d)
    d.close()
    assert path.exists()
    data = path.read_bytes()
    assert len(data) >= 32
    _size, version, vendor, device_id = struct.unpack_from("<IIII", data)
    assert (version, vendor, device_id) == (1, d.info.vendor_id, d.info.device_id)
    assert data[16:32] == d.info.pipeline_cache_uuid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d2 = vknb.Device(dev.index)
    assert d2.pipeline_cache_loaded == len(data) > 0
    _cache_kernel_run(d2)
    d2.close()
    assert not list(path.parent.glob("*.tmp"))  # written atomically, no leftovers


def _corrupt_caches(good: bytes, uuid: bytes) -> dict[str, bytes]:
    wrong_uuid = good[:16] + bytes(b ^ 0xFF for b in uuid) + good[32:]
    wrong_version = good[:4] + struct.pack("<I", 2) + good[8:]
    wrong_vendor = good[:8] + struct.pack("<I", 0xDEAD) + good[12:]
    return {
        "garbage": bytes(range(256)) * 4,
        "truncated": good[:20],
        "empty": b"",
        "wrong uuid": wrong_uuid,
        "wrong version": wrong_version,
        "wrong vendor": wrong_vendor,
    }


def test_corrupt_pipeline_cache_is_ignored_and_rebuilt(dev, tmp_path, monkeypatch):
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path))
    d = vknb.Device(dev.index)
    _cache_kernel_run(d)
    d.close()
    path = d.pipeline_cache_path()
    good = path.read_bytes()
    for label, bad in _corrupt_caches(good, d.info.pipeline_cache_uuid).items():
        path.write_bytes(bad)
        with pytest.warns(RuntimeWarning, match="pipeline cache"):
            d2 = vknb.Device(dev.index)
        assert d2.pipeline_cache_loaded == 0, label
        _cache_kernel_run(d2)
        d2.close()
        rebuilt = path.read_bytes()
        assert rebuilt[:32] == good[:32], label  # a valid cache replaced the bad file


def test_pipeline_cache_with_valid_header_and_junk_payload(dev, tmp_path, monkeypatch):
    """The header passes, the rest is junk: the driver must cope (or vknb retries empty)."""
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path))
    d = vknb.Device(dev.index)
    _cache_kernel_run(d)
    d.close()
    path = d.pipeline_cache_path()
    good = path.read_bytes()
    path.write_bytes(good[:32] + bytes(range(256)) * 16)
    d2 = vknb.Device(dev.index)
    _cache_kernel_run(d2)
    d2.close()


def test_unreadable_pipeline_cache_path(dev, tmp_path, monkeypatch):
    """A directory where the cache file should be: logged, never raised."""
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path))
    d = vknb.Device(dev.index)
    path = d.pipeline_cache_path()
    d.close()
    if path.exists():
        path.unlink()
    path.mkdir(parents=True)
    d2 = vknb.Device(dev.index)
    assert d2.pipeline_cache_loaded == 0
    _cache_kernel_run(d2)
    d2.close()  # saving fails quietly
    assert path.is_dir()


def test_both_caches_damaged_on_a_new_device(dev, tmp_path, monkeypatch, rng):
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path))
    compiler._reset_memory_cache()
    d = vknb.Device(dev.index)
    k = vknb.compile(DOUBLE_A, name="both", device=d)
    check_double(k, rng)
    d.close()
    (entry,) = list((tmp_path / "spirv").iterdir())
    entry.write_bytes(entry.read_bytes()[:40])
    d.pipeline_cache_path().write_bytes(b"\xff" * 64)
    compiler._reset_memory_cache()
    with pytest.warns(RuntimeWarning, match="pipeline cache"):
        d2 = vknb.Device(dev.index)
    k = vknb.compile(DOUBLE_A, name="both", device=d2)
    assert not k.compile_info.cache_hit
    check_double(k, rng)
    d2.close()


def test_unusable_cache_dir_at_kernel_level(dev, tmp_path, monkeypatch, rng):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("VKNB_CACHE_DIR", str(blocker / "cache"))
    compiler._reset_memory_cache()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = vknb.Device(dev.index)
        k = vknb.compile(DOUBLE_A + "// unusable cache dir\n", name="nocache", device=d)
        check_double(k, rng)
        d.close()  # saving the pipeline cache fails quietly
    assert all("VKNB_CACHE_DIR" in str(r.message) for r in rec), [str(r.message) for r in rec]
    compiler._reset_memory_cache()


# ---------------------------------------------------------------------------------------------
# Damaged SPIR-V modules: an error, never a crash
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_spirv() -> bytes:
    return vknb.compile_glsl(DOUBLE_A, name="double")


_COMPILE_WORKER = r"""
import binascii, sys
import vknb
for line in sys.stdin:
    data = binascii.unhexlify(line.strip())
    try:
        k = vknb.compile(data, name="fuzzed")
        k.close()
        out = "ok"
    except vknb.VulkanError as e:
        out = "vulkan " + type(e).__name__
    except BaseException as e:
        out = "other " + type(e).__name__ + ": " + str(e).replace("\n", " ")[:200]
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
"""


class CompileWorker:
    """A child process that compiles SPIR-V modules it is sent, so that a driver crash or hang
    is observed (and survived) by the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _COMPILE_WORKER],
                cwd=self.tmp_path,
                env=child_env(self.tmp_path),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
            self.restarts += 1
        return self.proc

    def compile(self, data: bytes, timeout: float = 20.0) -> str:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(binascii.hexlify(data).decode() + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            return f"crash (exit {proc.wait()})"
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        if not ready:
            self.close()
            return "hang"
        line = proc.stdout.readline()
        if not line:
            return f"crash (exit {proc.wait()})"
        return line.strip()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[CompileWorker]:
    w = CompileWorker(tmp_path)
    yield w
    w.close()


def test_malformed_spirv_compile_raises_never_crashes(rich_spirv, worker, record_property):
    """vknb.compile(bytes) of damaged modules: a VulkanError (SpirvError, PipelineCreationFailed)
    or a kernel; never a crash, a hang or another exception (checked in a worker process)."""
    outcomes: collections.Counter[str] = collections.Counter()
    bad: list[tuple[str, str]] = []

    @settings(FUZZ, max_examples=200, phases=[Phase.explicit, Phase.generate])
    @given(mutation=mutations(rich_spirv))
    def run(mutation: tuple[str, bytes]) -> None:
        what, data = mutation
        result = worker.compile(data)
        key = result.split(":")[0] if result.startswith("other") else result
        outcomes[key] += 1
        if not (result == "ok" or result.startswith("vulkan ")):
            bad.append((what, result))

    assert worker.compile(rich_spirv) == "ok"
    run()
    report(record_property, "spirv_compile_fuzz", dict(outcomes))
    report(record_property, "spirv_compile_fuzz_worker_starts", worker.restarts)
    assert sum(outcomes.values()) == 200
    assert not bad, f"{len(bad)} of 200 damaged modules crashed or hung the process: {bad[:5]}"


@pytest.mark.parametrize(
    "damage", [function_type_is_void, without_return], ids=["function-type-void", "no-OpReturn"]
)
def test_invalid_spirv_that_reflects_is_rejected_not_crashing(small_spirv, tmp_path, damage):
    bad = damage(small_spirv)
    vknb.reflect(bad)  # reflection alone cannot tell
    code = f"""
    import json, vknb
    try:
        vknb.compile({bad!r}, name="damaged")
        print(json.dumps(None))
    except vknb.VulkanError as e:
        print(json.dumps([type(e).__name__, str(e)]))
    """
    res = run_python(code, tmp_path, timeout=60)
    assert res.returncode == 0, f"the process died with exit code {res.returncode}"
    out = last_json(res.stdout)
    assert out is not None and out[0] in ("SpirvError", "PipelineCreationFailed"), out


def test_non_utf8_string_in_spirv_raises_spirv_error(small_spirv):
    bad = non_utf8_import_name(small_spirv)
    with pytest.raises(vknb.SpirvError):
        vknb.compile(bad, name="non_utf8")


def test_driver_rejected_module_raises_pipeline_creation_failed(small_spirv, rng):
    bad = store_of_wrong_type(small_spirv)
    refl = vknb.reflect(bad)
    assert refl.bindings  # reflection is happy
    with pytest.raises(vknb.VulkanError) as ei:
        vknb.compile(bad, name="wrong_store")
    e = ei.value
    # lavapipe: VK_ERROR_UNKNOWN from vkCreateComputePipelines; a validating core may say
    # SpirvError first.  Either way the message has context.
    assert isinstance(e, (vknb.PipelineCreationFailed, vknb.SpirvError)), type(e)
    if isinstance(e, vknb.PipelineCreationFailed):
        assert e.function in ("vkCreateComputePipelines", "vkCreateShaderModule")
        assert e.function in str(e) and "wrong_store" in str(e) and e.result_name in str(e)
    # The session keeps working.
    k = vknb.compile(small_spirv)
    d = rng.standard_normal(100).astype(np.float32)
    d0 = d.copy()
    pc = k.reflection.push_constants.members[0].name
    k(d, **{pc: 3.0}, grid=100)
    np.testing.assert_allclose(d, 3 * d0, rtol=1e-6)
    k.close()
