"""The Vulkan runtime core: devices, transfers, arrays, the allocator, errors, device lifetime,
the pipeline cache and the validation layer.

Everything runs on the real driver (lavapipe on CI).  Tests that need a fresh process (an
environment variable read at start-up, the validation layer) run a small script in a subprocess.
"""

from __future__ import annotations

import builtins
import dataclasses
import gc
import inspect
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import settle

import vknb
from vknb import _vk
from vknb import errors as E
from vknb.core.instance import GiB, select_device_index
from vknb.core.memory import _fmt_bytes as fmt_bytes

REPO = Path(__file__).resolve().parents[1]

DOUBLE = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer D { float d[]; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < d.length()) d[i] *= 2.0; }
"""

SAXPY_N = """
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
"""

PREFIXED = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer B { uint n; float data[]; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) data[i] += 1.0; }
"""


def run_python(
    code: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (cwd and cache in ``tmp_path``)."""
    full_env = dict(os.environ)
    full_env["VKNB_CACHE_DIR"] = str(tmp_path / "cache")
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
    )
    full_env.pop("VKNB_DEVICE", None)
    full_env.pop("VKNB_VALIDATION", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(out: str) -> Any:
    """The JSON object on the last line of a child's stdout."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines, "the child printed nothing"
    return json.loads(lines[-1])


def random_array(rng: np.random.Generator, n: int, dtype: Any) -> np.ndarray:
    """``n`` elements of ``dtype`` made of random bytes (every bit pattern, NaNs included)."""
    dt = np.dtype(dtype)
    raw = rng.integers(0, 256, n * dt.itemsize, dtype=np.uint8)
    return raw.view(dt)


def stats_tuple(dev: vknb.Device) -> tuple[int, int, int, int, int]:
    dev.trim()  # freed large allocations kept for reuse are not leaks
    return as_tuple(dev.memory_stats())


def as_tuple(s: vknb.core.memory.MemoryStats) -> tuple[int, int, int, int, int]:
    """The fields of ``stats_tuple`` from a snapshot taken earlier."""
    return (s.allocated, s.used, s.blocks, s.buffers, s.allocations)


def warm_up(dev: vknb.Device) -> None:
    """Do one upload/download so that lazily created staging buffers exist before a baseline."""
    vknb.asarray(np.zeros(4, np.float32), device=dev).numpy()
    settle()
    dev.synchronize()
    dev.trim()


# ---------------------------------------------------------------------------------------------
# Device listing and scoring
# ---------------------------------------------------------------------------------------------


def test_devices_listed_with_scores():
    infos = vknb.devices()
    assert infos, "no Vulkan device"
    assert [d.index for d in infos] == list(range(len(infos)))
    for d in infos:
        bonus = {"discrete": 1000, "integrated": 100}.get(d.type, 0)
        assert d.type in ("discrete", "integrated", "virtual", "cpu", "other")
        assert d.total_memory == sum(h.size for h in d.heaps if h.device_local)
        assert d.score_parts == {"type": bonus, "memory": d.total_memory // GiB}
        assert d.score == bonus + d.total_memory // GiB


def test_session_device_is_the_argmax():
    infos = vknb.devices()
    best = max(infos, key=lambda d: (d.score, -d.index))
    dev = vknb.device()
    assert dev is vknb.device()
    if os.environ.get("VKNB_DEVICE"):  # the override wins, and the reason says so
        assert "VKNB_DEVICE" in dev.reason
        return
    assert dev.index == best.index
    assert f"score {best.score}" in dev.reason
    assert dev.info.name in dev.label


def _fake(real: vknb.DeviceInfo, index: int, name: str, type_: str, gib: int) -> Any:
    bonus = {"discrete": 1000, "integrated": 100}.get(type_, 0)
    return dataclasses.replace(
        real,
        index=index,
        name=name,
        type=type_,
        score=bonus + gib,
        score_parts={"type": bonus, "memory": gib},
        total_memory=gib * GiB,
    )


def test_select_device_index_unit():
    real = vknb.devices()[0]
    infos = [
        _fake(real, 0, "llvmpipe (LLVM 15.0.6, 256 bits)", "cpu", 23),
        _fake(real, 1, "Intel(R) UHD Graphics 630", "integrated", 8),
        _fake(real, 2, "NVIDIA GeForce RTX 4090", "discrete", 24),
        _fake(real, 3, "NVIDIA H100 80GB HBM3", "discrete", 79),
    ]
    # The argmax of the score, whatever the order.
    assert select_device_index(infos, "")[0] == 3
    assert select_device_index(infos[::-1], "")[0] == 3
    i, reason = select_device_index(infos[:3], "")
    assert i == 2 and "1024" in reason and "discrete" in reason
    # An integrated GPU with little memory beats a CPU device with a lot.
    assert select_device_index(infos[:2], "")[0] == 1
    # Ties go to the lowest index.
    twins = [_fake(real, 0, "GPU A", "discrete", 8), _fake(real, 1, "GPU B", "discrete", 8)]
    assert select_device_index(twins, "")[0] == 0
    # By index, and by case-insensitive name substring (first match wins).
    assert select_device_index(infos, "0") == (0, "VKNB_DEVICE=0")
    assert select_device_index(infos, " 1 ")[0] == 1
    assert select_device_index(infos, "llvmpipe")[0] == 0
    assert select_device_index(infos, "rtx")[0] == 2
    assert select_device_index(infos, "nvidia")[0] == 2
    assert select_device_index(infos, "H100")[0] == 3
    # Blank means "no override".
    assert select_device_index(infos, "   ")[0] == 3


@pytest.mark.parametrize("spec", ["4", "99", "radeon", "-1"])
def test_select_device_index_bad_values_name_the_devices(spec):
    real = vknb.devices()[0]
    infos = [
        _fake(real, 0, "llvmpipe (LLVM 15.0.6, 256 bits)", "cpu", 23),
        _fake(real, 1, "NVIDIA GeForce RTX 4090", "discrete", 24),
    ]
    with pytest.raises(vknb.NoDeviceFound) as ei:
        select_device_index(infos, spec)
    msg = str(ei.value)
    assert "VKNB_DEVICE" in msg and spec in msg
    assert "0: llvmpipe" in msg and "1: NVIDIA GeForce RTX 4090" in msg
    assert isinstance(ei.value, vknb.VulkanError)


def test_select_device_index_without_devices():
    with pytest.raises(vknb.NoDeviceFound, match="mesa-vulkan-drivers"):
        select_device_index([], "")


def test_select_device_index_reads_the_environment(monkeypatch):
    monkeypatch.setenv("VKNB_DEVICE", "0")
    assert select_device_index(vknb.devices()) == (0, "VKNB_DEVICE=0")
    monkeypatch.setenv("VKNB_DEVICE", "no-such-gpu-anywhere")
    with pytest.raises(vknb.NoDeviceFound, match="no-such-gpu-anywhere"):
        select_device_index(vknb.devices())


_REASON_SCRIPT = """
import json, vknb
try:
    d = vknb.device()
    print(json.dumps({"index": d.index, "reason": d.reason}))
except vknb.NoDeviceFound as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


def _name_fragment() -> str:
    name = vknb.devices()[-1].name
    return name.split()[0][1:].upper()  # a case-changed substring of the last device's name


@pytest.mark.parametrize("kind", ["index", "name", "bad index", "bad name"])
def test_vknb_device_environment_end_to_end(tmp_path, kind):
    infos = vknb.devices()
    last = infos[-1]
    frag = _name_fragment()
    spec = {
        "index": str(last.index),
        "name": frag,
        "bad index": str(len(infos) + 5),
        "bad name": "definitely-not-a-gpu",
    }[kind]
    res = run_python(_REASON_SCRIPT, tmp_path, {"VKNB_DEVICE": spec})
    assert res.returncode == 0, res.stderr
    out = last_json(res.stdout)
    if kind.startswith("bad"):
        assert out["error"] == "NoDeviceFound"
        assert spec in out["message"]
        for d in infos:
            assert f"{d.index}: {d.name}" in out["message"]
    else:
        expected = min(d.index for d in infos if frag.lower() in d.name.lower())
        assert out["index"] == (last.index if kind == "index" else expected)
        assert out["reason"].startswith(f"VKNB_DEVICE={spec}") or spec in out["reason"]


@pytest.mark.parametrize("info", vknb.devices(), ids=lambda d: f"dev{d.index}")
def test_device_info_fields(info):
    assert info.name and info.vendor and info.driver
    major, minor, patch = (int(p) for p in info.api_version.split("."))
    assert (major, minor) >= (1, 0) and patch >= 0
    lim = info.limits
    for key in (
        "max_workgroup_size",
        "max_workgroup_count",
        "max_workgroup_invocations",
        "max_shared_memory",
        "max_storage_buffer_range",
        "max_uniform_buffer_range",
        "max_push_constants_size",
        "subgroup_size",
        "subgroup_operations",
        "timestamp_period_ns",
        "timestamp_valid_bits",
        "non_coherent_atom_size",
    ):
        assert key in lim, key
    assert len(lim["max_workgroup_size"]) == 3 and min(lim["max_workgroup_size"]) >= 1
    assert len(lim["max_workgroup_count"]) == 3 and min(lim["max_workgroup_count"]) >= 65535
    assert lim["max_workgroup_invocations"] >= 128  # the Vulkan minimum
    assert lim["max_push_constants_size"] >= 128
    assert lim["max_shared_memory"] >= 16384
    assert lim["timestamp_period_ns"] > 0 or not info.timestamps
    assert info.heaps and all(h.size > 0 for h in info.heaps)
    assert [h.index for h in info.heaps] == list(range(len(info.heaps)))
    assert info.memory_types
    for t in info.memory_types:
        assert 0 <= t.heap < len(info.heaps)
        assert isinstance(t.flag_names, list)
    assert any("host_visible" in t.flag_names for t in info.memory_types)
    assert info.queue_families
    assert any("compute" in q.capabilities for q in info.queue_families)
    assert all(q.count >= 1 for q in info.queue_families)
    assert isinstance(info.timestamps, bool)
    assert set(info.notable_extensions) <= set(info.extensions)
    assert all(info.has_extension(e) for e in info.notable_extensions)
    for key in (
        "float64",
        "int64",
        "int16",
        "float16",
        "int8",
        "storage_8bit",
        "storage_16bit",
        "atomic_int64",
        "atomic_float",
        "buffer_device_address",
    ):
        assert isinstance(info.features[key], bool), key
    assert len(info.pipeline_cache_uuid) == 16

    d = info.to_dict()
    again = json.loads(json.dumps(d))  # JSON-serializable, no handle
    assert again["name"] == info.name and again["score"] == info.score
    assert again["score_parts"] == info.score_parts
    assert again["total_memory"] == info.total_memory
    assert len(again["heaps"]) == len(info.heaps) and "size" in again["heaps"][0]
    assert len(again["memory_types"]) == len(info.memory_types)
    assert again["queue_families"][0]["capabilities"] == info.queue_families[0].capabilities
    assert "handle" not in again
    assert again["limits"]["max_workgroup_invocations"] == lim["max_workgroup_invocations"]


# ---------------------------------------------------------------------------------------------
# Transfers
# ---------------------------------------------------------------------------------------------

STRUCT = np.dtype([("a", "<f4"), ("b", "<i2"), ("c", "u1"), ("d", "<f8")])  # packed: 15 bytes
DTYPES = [
    np.uint8,
    np.int16,
    np.int32,
    np.uint32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    STRUCT,
]
SIZES = [1, 3, 4097, 3 * (1 << 20) + 5]  # bytes (rounded down to whole elements, at least one)


@pytest.mark.parametrize("nbytes", SIZES, ids=lambda n: f"{n}B")
@pytest.mark.parametrize(
    "dtype", DTYPES, ids=lambda d: np.dtype(d).name if np.dtype(d).names is None else "struct"
)
def test_round_trip_asarray_numpy(dev, rng, dtype, nbytes):
    dt = np.dtype(dtype)
    n = max(1, nbytes // dt.itemsize)
    host = random_array(rng, n, dt)
    a = vknb.asarray(host)
    assert a.dtype == dt and a.shape == (n,) and a.nbytes == n * dt.itemsize
    back = a.numpy()
    assert back.dtype == dt and back.shape == host.shape
    assert back.tobytes() == host.tobytes()  # bit for bit (NaN payloads included)
    # numpy(out=...) fills a caller's array.
    out = np.empty_like(host)
    assert a.numpy(out=out) is out
    assert out.tobytes() == host.tobytes()
    # Array.update replaces the contents.
    other = random_array(rng, n, dt)
    assert a.update(other) is a
    assert a.numpy().tobytes() == other.tobytes()
    a.close()


def test_round_trip_multidimensional(dev, rng):
    host = rng.standard_normal((7, 5, 3)).astype(np.float32)
    a = vknb.asarray(host)
    assert a.shape == (7, 5, 3) and a.size == 105 and a.ndim == 3 and len(a) == 7
    np.testing.assert_array_equal(a.numpy(), host)
    np.testing.assert_array_equal(np.asarray(a), host)
    # Non-contiguous input is copied in its logical order.
    t = host.transpose(2, 0, 1)
    np.testing.assert_array_equal(vknb.asarray(t).numpy(), t)
    np.testing.assert_array_equal(vknb.asarray(host[:, ::2]).numpy(), host[:, ::2])
    # A Python list goes through np.asarray.
    np.testing.assert_array_equal(
        vknb.asarray([[1, 2], [3, 4]], np.int32).numpy(), np.array([[1, 2], [3, 4]], np.int32)
    )


@pytest.mark.slow
def test_round_trip_256_mib(dev, rng):
    """The one large transfer: 256 MiB up and down (marked slow)."""
    n = 256 << 20
    host = rng.integers(0, 256, n, dtype=np.uint8)
    a = vknb.asarray(host)
    assert a.nbytes == n
    back = a.numpy()
    assert np.array_equal(back, host)
    a.close()
    del back, host


def test_buffer_write_read_with_offsets(dev, rng, no_leaks):
    size = 1000
    b = vknb.Buffer(size)
    assert b.nbytes == size and not b.closed
    model = np.zeros(size, np.uint8)
    b.write(model)
    for _ in range(60):
        off = int(rng.integers(0, size))
        n = int(rng.integers(0, size - off + 1))
        chunk = rng.integers(0, 256, n, dtype=np.uint8)
        b.write(chunk, offset=off)
        model[off : off + n] = chunk
        r_off = int(rng.integers(0, size))
        r_n = int(rng.integers(0, size - r_off + 1))
        np.testing.assert_array_equal(b.read(offset=r_off, nbytes=r_n), model[r_off : r_off + r_n])
    np.testing.assert_array_equal(b.read(), model)
    # Typed reads and writes, bytes, and reads into `out`.
    b.write(np.arange(10, dtype=np.int32), offset=40)
    np.testing.assert_array_equal(b.read(np.int32, offset=40, nbytes=40), np.arange(10))
    b.write(b"hello", offset=3)
    assert b.read(offset=3, nbytes=5).tobytes() == b"hello"
    out = np.empty(4, np.int32)
    assert b.read(out=out, offset=44) is out
    np.testing.assert_array_equal(out, [1, 2, 3, 4])
    # 2-D and non-contiguous sources are written in logical order.
    m = np.arange(12, dtype=np.int16).reshape(3, 4)
    b.write(m.T, offset=100)
    np.testing.assert_array_equal(b.read(np.int16, offset=100, nbytes=24), m.T.ravel())
    b.close()


def test_buffer_odd_and_zero_sizes(dev, no_leaks):
    for n in (0, 1, 3, 5, 17):
        b = vknb.Buffer(n)
        assert b.nbytes == n
        data = np.arange(n, dtype=np.uint8) + 7
        b.write(data)
        np.testing.assert_array_equal(b.read(), data)
        b.close()


@pytest.mark.parametrize("memory", ["upload", "readback", "device"])
def test_buffer_memory_kinds_and_mapped(dev, rng, memory, no_leaks):
    data = rng.standard_normal(64).astype(np.float32)
    b = vknb.Buffer(data.nbytes, memory=memory)
    assert b.memory_kind == memory and memory in repr(b)
    b.write(data)
    np.testing.assert_array_equal(b.read(np.float32), data)
    if not b.host_visible:
        with pytest.raises(vknb.NotMapped), b.mapped():
            pass
        b.close()
        return
    with b.mapped(np.float32) as v:
        np.testing.assert_array_equal(v, data)  # sees what write() put there
        v[:] = data * 2  # writes land in the buffer
    np.testing.assert_array_equal(b.read(np.float32), data * 2)
    with b.mapped() as raw:
        assert raw.dtype == np.uint8 and raw.size == data.nbytes
    b.close()
    with pytest.raises(vknb.ObjectClosed), b.mapped():
        pass


def _whole_bar_expected(info: vknb.DeviceInfo) -> bool:
    """From the device list alone: a mappable, coherent device-local type in the main heap."""
    local = [h.size for h in info.heaps if h.device_local]
    want = {"device_local", "host_visible", "host_coherent"}
    return bool(local) and any(
        want <= set(t.flag_names) and info.heaps[t.heap].size >= max(local)
        for t in info.memory_types
    )


@pytest.mark.parametrize("env", [None, "0", "1"])
def test_arrays_go_to_mappable_device_memory_where_all_of_it_is(dev, rng, env, monkeypatch):
    if env is None:
        monkeypatch.delenv("VKNB_BAR", raising=False)
        bar = dev.info.type == "discrete" and _whole_bar_expected(dev.info)
    else:
        monkeypatch.setenv("VKNB_BAR", env)
        bar = env == "1"
    assert dev.allocator.whole_bar() == _whole_bar_expected(dev.info)
    x = rng.standard_normal(10_000).astype(np.float32)
    y = rng.standard_normal(10_000).astype(np.float32)
    X, Y = vknb.asarray(x), vknb.asarray(y)
    assert Y.buffer.memory_kind == ("host_device" if bar else "device")
    assert Y.buffer.host_visible == (bar or dev.info.type in ("cpu", "integrated"))
    k = vknb.compile(SAXPY_N, name="saxpy_bar")
    s = k(X, Y, a=2.0, n=x.size, grid=x.size, wait=False)
    # Written while the dispatch may still run: the update lands after it, never under it.
    z = rng.standard_normal(10_000).astype(np.float32)
    Y.update(z)
    s.wait()
    np.testing.assert_array_equal(Y.numpy(), z)
    k(X, Y, a=0.5, n=x.size, grid=x.size)
    np.testing.assert_allclose(Y.numpy(), z + 0.5 * x, rtol=1e-6)
    for a in (X, Y):
        a.close()
    k.close()


def test_mapped_view_is_read_only_after_the_block(dev):
    b = vknb.Buffer(64, memory="upload")
    with b.mapped(np.float32) as v:
        v[:] = 1.0
        assert v.flags.writeable
    # Only the flags are inspected: the memory itself must not be touched here.
    writeable = v.flags.writeable
    del v
    assert not writeable
    np.testing.assert_array_equal(b.read(np.float32), np.ones(16))
    b.close()


_KEPT_VIEW = """
import numpy as np, vknb
b = vknb.Buffer(64, memory="upload")
with b.mapped(np.float32) as v:
    v[:] = 1.0
b.close()
try:
    print(float(v.sum()))
except Exception as e:
    print(type(e).__name__)
print("alive")
"""


def test_reading_a_kept_mapped_view_after_close_does_not_crash(tmp_path):
    res = run_python(_KEPT_VIEW, tmp_path)
    assert res.returncode == 0, f"the process died with exit code {res.returncode}"
    assert res.stdout.strip().endswith("alive")


def test_zeros_and_empty(dev, rng, no_leaks):
    # Dirty some memory first, free it, and check that zeros() really clears what it reuses.
    dirty = [vknb.asarray(rng.integers(1, 255, 4096, dtype=np.uint8)) for _ in range(8)]
    for d in dirty:
        d.close()
    cases = [
        ((4096,), np.uint8),
        ((3, 5), np.float32),
        ((7,), np.int64),
        ((2, 3, 4), np.float16),
        ((5,), np.complex64),
        ((9,), STRUCT),
        (3, np.int16),
    ]
    for shape, dtype in cases:
        z = vknb.zeros(shape, dtype)
        expected = np.zeros(shape, dtype)
        assert z.shape == expected.shape and z.dtype == np.dtype(dtype)
        assert z.numpy().tobytes() == expected.tobytes()
        e = vknb.empty(shape, dtype)
        assert e.shape == expected.shape and e.dtype == np.dtype(dtype)
        assert e.nbytes == expected.nbytes
        assert e.numpy().shape == expected.shape
        z.close()
        e.close()
    assert vknb.zeros(4).dtype == np.float32  # the default dtype


def test_numpy_out_and_update_check_shape_and_dtype(dev):
    a = vknb.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(ValueError, match="shape"):
        a.numpy(out=np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        a.numpy(out=np.empty((2, 3), np.float64))
    with pytest.raises(TypeError, match="float32"):
        a.update(np.zeros((2, 3), np.float64))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        a.update(np.zeros(6, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        a.buffer.read(out=np.empty((6, 2), np.float32)[:, 0])
    np.testing.assert_array_equal(a.numpy(), np.arange(6).reshape(2, 3))


# ---------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------


def test_array_attributes_and_repr(dev):
    a = vknb.asarray(np.zeros((4, 3), np.int16), label="my_array")
    assert (a.shape, a.dtype, a.nbytes, a.size, a.ndim, len(a)) == (
        (4, 3),
        np.dtype(np.int16),
        24,
        12,
        2,
        4,
    )
    assert a.device is dev
    r = repr(a)
    assert "my_array" in r and "(4, 3)" in r and "int16" in r and dev.info.name in r
    assert "closed" not in r
    a.close()
    assert a.closed and "closed" in repr(a)
    # An Array passed to asarray is returned as is.
    b = vknb.asarray(np.ones(3, np.float32))
    assert vknb.asarray(b) is b
    c = vknb.asarray(b, np.float64)  # another dtype: a converted copy
    assert c is not b and c.dtype == np.float64
    np.testing.assert_array_equal(c.numpy(), np.ones(3))


def test_zero_dimensional_and_empty_arrays(dev, no_leaks):
    s = vknb.asarray(np.float64(2.5))
    assert s.shape == () and s.size == 1 and s.nbytes == 8 and s.ndim == 0
    back = s.numpy()
    assert back.shape == () and back == 2.5
    with pytest.raises(TypeError, match="0-d"):
        len(s)
    s.update(np.float64(-1.0))
    assert s.numpy() == -1.0
    for shape in [(0,), (3, 0), (0, 5, 2)]:
        e = vknb.asarray(np.zeros(shape, np.int32))
        assert e.shape == shape and e.nbytes == 0 and e.size == 0
        assert e.numpy().shape == shape
        e.update(np.zeros(shape, np.int32))
        z = vknb.zeros(shape, np.float32)
        assert z.numpy().shape == shape
        e.close()
        z.close()
    with pytest.raises(ValueError, match="negative"):
        vknb.empty((-1, 3))
    with pytest.raises((TypeError, ValueError)):
        vknb.empty("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shape"):
        vknb.empty(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="object"):
        vknb.asarray(np.array([object()]))
    with pytest.raises(ValueError, match="non-negative"):
        vknb.Buffer(-1)


@pytest.mark.parametrize("shape", [(1.5,), (2, 3.0)])
def test_float_shape_is_rejected(dev, shape):
    with pytest.raises(TypeError):
        vknb.empty(shape)


def test_closed_array_raises_object_closed(dev, no_leaks):
    a = vknb.asarray(np.arange(10, dtype=np.float32))
    a.close()
    a.close()  # idempotent
    for use in (
        lambda: a.numpy(),
        lambda: a.update(np.zeros(10, np.float32)),
        lambda: a.buffer.read(),
        lambda: a.buffer.write(np.zeros(10, np.float32)),
        lambda: np.asarray(a),
    ):
        with pytest.raises(vknb.ObjectClosed, match=a.label):
            use()
    k = vknb.compile(DOUBLE, name="double")
    with pytest.raises(vknb.ObjectClosed):
        k(a, grid=10)
    k.close()


def test_with_blocks_close(dev, no_leaks):
    with vknb.asarray(np.ones(5, np.float32)) as a:
        np.testing.assert_array_equal(a.numpy(), np.ones(5))
    assert a.closed
    with vknb.Buffer(32) as b:
        b.write(np.arange(8, dtype=np.int32))
    assert b.closed
    with pytest.raises(vknb.ObjectClosed):
        b.read()


# ---------------------------------------------------------------------------------------------
# The allocator
# ---------------------------------------------------------------------------------------------


def test_small_buffers_churn_returns_to_baseline(any_device, rng):
    d = any_device
    warm_up(d)
    base = d.memory_stats()
    base_live = d.live_objects()
    sizes = rng.integers(1, 64 * 1024 + 1, 3000)
    bufs = [vknb.Buffer(int(n), device=d) for n in sizes]
    s = d.memory_stats()
    assert s.buffers == base.buffers + 3000
    assert s.allocations == base.allocations + 3000
    assert s.used - base.used >= int(sizes.sum())
    assert s.used <= s.allocated
    assert s.blocks > base.blocks
    assert s.allocated - base.allocated == (s.blocks - base.blocks) * d.allocator.block_size
    assert sum(h.allocated for h in s.heaps) == s.allocated
    assert sum(h.used for h in s.heaps) == s.used
    assert d.live_objects().get("Buffer", 0) == base_live.get("Buffer", 0) + 3000
    # Spot-check that the buffers do not overlap: write a tag into each, read them all back.
    sample = rng.choice(3000, 200, replace=False)
    for i in sample:
        bufs[i].write(np.full(int(sizes[i]), i % 251, np.uint8))
    for i in sample:
        assert (bufs[i].read() == i % 251).all()
    order = rng.permutation(3000)
    for j, i in enumerate(order):
        bufs[i].close()
        if j == 1500:
            half = d.memory_stats()
            assert half.buffers == base.buffers + 1499
            assert half.allocations == base.allocations + 1499
    del bufs
    settle()
    assert stats_tuple(d) == as_tuple(base)
    assert d.live_objects() == base_live


def test_a_buffer_collected_while_the_allocator_is_busy_is_freed_after(dev, no_leaks):
    """The garbage collector may run a Buffer's finalizer on the thread that holds the
    allocator's lock (inside an allocation): that free waits for the section to end instead of
    deadlocking or changing the blocks under it."""

    class Cycle:
        pass

    def garbage() -> None:
        c = Cycle()
        c.me = c  # only the cycle collector frees it
        c.buf = vknb.Buffer(4096, device=dev)

    alloc = dev.allocator
    gc.disable()
    try:
        garbage()
        before = alloc.allocations
        done = threading.Event()

        def collect_inside_a_section() -> None:
            with alloc._lock:  # what an allocation holds when a collection starts
                gc.collect()  # the finalizer only queues the release: no deadlock
                assert alloc.allocations == before
            done.set()

        t = threading.Thread(target=collect_inside_a_section, daemon=True)
        t.start()
        t.join(20)
        assert done.is_set(), "the finalizer's free deadlocked inside the allocator's lock"
        dev.collect()  # the device's next safe point
        assert alloc.allocations == before - 1
    finally:
        gc.enable()


def test_freed_large_allocations_are_recycled(any_device, rng, monkeypatch):
    """A freed dedicated allocation serves the next Array of about its size; trim() frees it."""
    d = any_device
    warm_up(d)
    base = d.memory_stats()
    assert base.cached == 0
    size = 3 * d.allocator.block_size // 2  # dedicated
    a = vknb.empty(size // 4, np.float32, device=d)
    handle = a.buffer.allocation.memory
    a.close()
    s = d.memory_stats()
    assert s.cached == size and s.allocated == base.allocated + size
    assert s.used == base.used and s.buffers == base.buffers
    # about the same size (within 1/8): the same VkDeviceMemory, with correct contents
    x = rng.random(size // 4 - 1000).astype(np.float32)
    b = vknb.asarray(x, device=d)
    assert b.buffer.allocation.memory == handle
    assert d.memory_stats().cached == 0
    np.testing.assert_array_equal(b.numpy(), x)
    b.close()
    # much smaller: not served from the cache (it would waste more than 1/8)
    c = vknb.empty(size // 16, np.float32, device=d)
    assert c.buffer.allocation.memory != handle
    c.close()
    cached = d.memory_stats().cached
    assert cached >= size  # the first block, and c's
    assert d.trim() == cached
    assert d.memory_stats().cached == 0
    assert stats_tuple(d) == as_tuple(base)
    # the limit: nothing is kept when it is 0, and the cache never exceeds it
    monkeypatch.setattr(d.allocator, "recycle_limit", size + size // 2)
    arrs = [vknb.empty(size // 4, np.float32, device=d) for _ in range(3)]
    for arr in arrs:
        arr.close()
    assert d.memory_stats().cached == size  # two would exceed the limit
    monkeypatch.setattr(d.allocator, "recycle_limit", 0)
    e = vknb.empty(size // 2, np.float32, device=d)  # 2x the size: a new allocation
    e.close()
    assert d.memory_stats().cached == size  # the 0 limit kept nothing new
    d.trim()


def test_recycle_cache_gives_way_under_memory_pressure(any_device):
    """Cached blocks are freed before an allocation would exceed the heap."""
    d = any_device
    warm_up(d)
    heap = max(d.info.heaps, key=lambda h: h.size if h.device_local else 0)
    piece = (heap.size // 3) & ~0xFFFF
    old = d.allocator.recycle_limit
    d.allocator.recycle_limit = heap.size  # keep everything
    try:
        held = [vknb.Buffer(piece, device=d) for _ in range(2)]
        for b in held:
            b.close()
        assert d.memory_stats().cached == 2 * piece
        # 2 pieces cached + 2 new ones > the heap: the cache must give way
        held = [vknb.Buffer(piece + piece // 4, device=d) for _ in range(2)]
        assert d.memory_stats().cached < 2 * piece
        for b in held:
            b.close()
    finally:
        d.allocator.recycle_limit = old
        d.trim()
    assert d.memory_stats().cached == 0


def test_recycle_limit_from_the_environment(monkeypatch):
    from vknb.core.memory import recycle_limit

    heaps = vknb.device().info.heaps
    monkeypatch.setenv("VKNB_RECYCLE_MB", "0")
    assert recycle_limit(heaps) == 0
    monkeypatch.setenv("VKNB_RECYCLE_MB", "64")
    assert recycle_limit(heaps) == 64 << 20
    monkeypatch.setenv("VKNB_RECYCLE_MB", "lots")
    with pytest.raises(ValueError, match="VKNB_RECYCLE_MB"):
        recycle_limit(heaps)
    monkeypatch.delenv("VKNB_RECYCLE_MB")
    assert 0 < recycle_limit(heaps) <= 1 << 30


def test_dedicated_allocations_return_to_baseline(any_device, rng, monkeypatch):
    """50 buffers larger than a block each get their own VkDeviceMemory (at most 4 alive)."""
    d = any_device
    monkeypatch.setattr(d.allocator, "recycle_limit", 0)  # no reuse (tested on its own below)
    warm_up(d)
    base = d.memory_stats()
    block = d.allocator.block_size
    alive: list[vknb.Buffer] = []
    for _ in range(50):
        size = block + int(rng.integers(1, 1 << 20))
        before = d.memory_stats()
        b = vknb.Buffer(size, device=d)
        after = d.memory_stats()
        assert after.blocks == before.blocks + 1  # a dedicated allocation
        assert after.allocated - before.allocated >= size
        assert after.allocated - before.allocated == after.used - before.used
        assert b.allocation is not None and b.allocation.block.dedicated
        alive.append(b)
        if len(alive) > 3:
            alive.pop(int(rng.integers(0, len(alive)))).close()
    last = alive[-1]
    last.write(np.full(16, 7, np.uint8), offset=last.nbytes - 16)
    assert (last.read(offset=last.nbytes - 16) == 7).all()
    for b in alive:
        b.close()
    settle()
    assert stats_tuple(d) == as_tuple(base)


def test_fragmentation_holes_are_reused_and_coalesced(any_device):
    d = any_device
    warm_up(d)
    base = d.memory_stats()
    n, size = 512, 4096
    bufs = [vknb.Buffer(size, device=d) for _ in range(n)]
    full = d.memory_stats()
    assert full.blocks == base.blocks + 1  # 2 MiB fit in one block
    offsets = [b.allocation.offset for b in bufs]
    # Free every other buffer: the block stays, half its bytes are free.
    for b in bufs[::2]:
        b.close()
    holey = d.memory_stats()
    assert holey.blocks == full.blocks and holey.allocated == full.allocated
    assert holey.used == full.used - (n // 2) * bufs[1].allocation.size
    # Allocating the same sizes again fills the holes: no new memory.
    again = [vknb.Buffer(size, device=d) for _ in range(n // 2)]
    refill = d.memory_stats()
    assert refill.allocated == full.allocated and refill.blocks == full.blocks
    assert refill.used == full.used
    assert sorted(b.allocation.offset for b in again) == sorted(offsets[::2])
    # Coalescing: free two neighbours, then a buffer of twice the size fits exactly there.
    i = 10
    neighbours = [again[i // 2], bufs[i + 1]]
    assert neighbours[0].allocation.offset == offsets[i]
    lo = offsets[i]
    for b in neighbours:
        b.close()
    big = vknb.Buffer(2 * size, device=d)
    assert big.allocation.offset == lo
    assert d.memory_stats().blocks == full.blocks
    for b in [*again, *bufs, big]:
        b.close()
    settle()
    assert stats_tuple(d) == as_tuple(base)


def test_memory_stats_to_dict_and_heaps(dev):
    s = dev.memory_stats()
    d = s.to_dict()
    json.dumps(d)
    assert set(d) >= {"heaps", "allocated", "used", "blocks", "buffers", "allocations"}
    assert len(s.heaps) == len(dev.info.heaps)
    for h, info in zip(s.heaps, dev.info.heaps, strict=True):
        assert h.size == info.size and h.device_local == info.device_local
        assert 0 <= h.used <= h.allocated
        assert (h.budget is None) == (h.usage is None)


# ---------------------------------------------------------------------------------------------
# Impossible allocations and too-small buffers
# ---------------------------------------------------------------------------------------------


def _largest_heap(dev: vknb.Device) -> int:
    return max(h.size for h in dev.info.heaps)


@pytest.mark.parametrize("factor", [1.5, 64])
def test_allocation_bigger_than_the_heap(dev, rng, factor, no_leaks):
    heap = _largest_heap(dev)
    size = int(heap * factor) // 4 * 4
    before = stats_tuple(dev)
    with pytest.raises(vknb.AllocationFailed) as ei:
        vknb.Buffer(size)
    msg = str(ei.value)
    assert str(size) in msg or fmt_bytes(size) in msg, msg
    assert "heap" in msg and (str(heap) in msg or fmt_bytes(heap) in msg), msg
    assert isinstance(ei.value, vknb.VulkanError)
    with pytest.raises(vknb.AllocationFailed, match="heap"):
        vknb.empty((size // 4,), np.float32)
    assert stats_tuple(dev) == before  # nothing leaked by the failed attempts
    # The session keeps working.
    x = rng.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)
    k = vknb.compile(DOUBLE, name="double")
    y = x.copy()
    k(y, grid=y.size)
    np.testing.assert_allclose(y, 2 * x, rtol=1e-6)
    k.close()


def test_buffer_too_small(dev, no_leaks):
    b = vknb.Buffer(16)
    with pytest.raises(vknb.BufferTooSmall, match="16 bytes"):
        b.write(np.zeros(5, np.float32))
    with pytest.raises(vknb.BufferTooSmall, match="offset 12"):
        b.write(np.zeros(2, np.float32), offset=12)
    with pytest.raises(vknb.BufferTooSmall):
        b.write(b"x", offset=-1)
    with pytest.raises(vknb.BufferTooSmall):
        b.read(np.float32, out=np.empty(5, np.float32))
    with pytest.raises(vknb.BufferTooSmall):
        b.read(offset=10, nbytes=7)
    assert issubclass(vknb.BufferTooSmall, vknb.BufferFailed)
    with pytest.raises(TypeError, match="numpy array or bytes"):
        b.write([1, 2, 3])  # type: ignore[arg-type]
    b.write(np.arange(4, dtype=np.float32))  # the buffer still works
    np.testing.assert_array_equal(b.read(np.float32), np.arange(4))
    b.close()


def test_kernel_binding_smaller_than_fixed_part(dev):
    k = vknb.compile(PREFIXED, name="prefixed")
    with pytest.raises(ValueError, match=r"'B'.*at least 4 bytes"):
        k(np.zeros(2, np.uint8), grid=1)
    # The right bytes work: n followed by the data.
    raw = np.zeros(4 + 4 * 10, np.uint8)
    raw[:4] = np.frombuffer(np.uint32(10).tobytes(), np.uint8)
    k(raw, grid=10)
    np.testing.assert_array_equal(raw[4:].view(np.float32), np.ones(10))
    k.close()


# ---------------------------------------------------------------------------------------------
# The errors module
# ---------------------------------------------------------------------------------------------


def test_every_error_is_a_vulkan_error():
    classes = [getattr(E, n) for n in E.__all__ if inspect.isclass(getattr(E, n))]
    assert len(classes) >= 19
    for cls in classes:
        assert issubclass(cls, vknb.VulkanError), cls
        assert getattr(vknb, cls.__name__) is cls  # exported at the top level
        assert cls.__name__ not in dir(builtins), f"{cls.__name__} shadows a builtin"
    assert issubclass(vknb.DeviceLost, vknb.ExecutionFailed)
    assert issubclass(vknb.NotMapped, vknb.BufferFailed)
    assert issubclass(vknb.SpirvError, ValueError)
    assert vknb.SpirvCompilationFailed is vknb.ShaderCompileError


def test_result_names():
    assert E.result_name(0) == "VK_SUCCESS"
    assert E.result_name(-2) == "VK_ERROR_OUT_OF_DEVICE_MEMORY"
    assert E.result_name(-4) == "VK_ERROR_DEVICE_LOST"
    assert E.result_name(2) == "VK_TIMEOUT"
    assert E.result_name(-1000069000) == "VK_ERROR_OUT_OF_POOL_MEMORY"
    assert E.result_name(12345) == "VkResult(12345)"
    err = vknb.VulkanError("x", function="vkFoo", label="L", result=-3)
    assert err.result_name == "VK_ERROR_INITIALIZATION_FAILED"
    assert vknb.VulkanError("x").result_name is None


@pytest.mark.parametrize(
    ("result", "function", "cls"),
    [
        (-2, "vkAllocateMemory", vknb.AllocationFailed),
        (-1, "vkCreateBuffer", vknb.AllocationFailed),
        (-3, "vkCreateBuffer", vknb.BufferFailed),
        (-4, "vkQueueSubmit", vknb.DeviceLost),
        (-4, "vkWaitForFences", vknb.DeviceLost),
        (-2, "vkQueueSubmit", vknb.ExecutionFailed),
        (-3, "vkCreateInstance", vknb.InitializationFailed),
        (-3, "vkCreateDevice", vknb.DeviceCreationFailed),
        (-13, "vkCreateComputePipelines", vknb.PipelineCreationFailed),
        (-1, "vkCreateShaderModule", vknb.PipelineCreationFailed),
        (-5, "vkMapMemory", vknb.NotMapped),
        (-1, "vkWaitForFences", vknb.SyncError),
        (-1, "vkBeginCommandBuffer", vknb.CommandBufferError),
        (-3, "vkSomethingElse", vknb.VulkanError),
    ],
)
def test_check_raises_the_right_class(result, function, cls):
    _vk.load()
    with pytest.raises(vknb.VulkanError) as ei:
        _vk.check(result, function, "my-label", "some detail")
    e = ei.value
    assert type(e) is cls
    assert (e.function, e.label, e.result) == (function, "my-label", result)
    msg = str(e)
    assert function in msg and "my-label" in msg and E.result_name(result) in msg
    assert "some detail" in msg
    if result == -2:
        assert "free Arrays" in msg  # says what to do next
    if result == -4:
        assert "vknb.reset()" in msg


@pytest.mark.parametrize("result", [0, 1, 2, 3, 5])
def test_check_returns_non_errors(result):
    assert _vk.check(result, "vkWaitForFences", "x") == result
    assert _vk.NOT_READY == 1 and _vk.TIMEOUT == 2 and _vk.INCOMPLETE == 5


# ---------------------------------------------------------------------------------------------
# Device lifetime
# ---------------------------------------------------------------------------------------------


def test_second_device_and_its_children(dev, rng):
    x = rng.standard_normal(100).astype(np.float32)
    d = vknb.Device(dev.index)
    assert d is not dev and d is not vknb.device()
    assert d.reason.startswith("chosen by index")
    a = vknb.asarray(x, device=d)
    z = vknb.zeros(100, device=d)
    buf = vknb.Buffer(64, device=d)
    k = vknb.compile(DOUBLE, name="double_d", device=d)
    assert k.device is d
    rec = k(a, grid=100)
    assert rec.bytes_in == rec.bytes_out == 0
    np.testing.assert_allclose(a.numpy(), 2 * x, rtol=1e-6)
    y = x.copy()
    k(y, grid=100)
    np.testing.assert_allclose(y, 2 * x, rtol=1e-6)
    live = d.live_objects()
    assert live.get("Buffer", 0) >= 3 and live.get("ComputePipeline", 0) == 1
    # The session device's memory is separate.
    assert d.memory_stats().buffers >= 3
    # An Array of one device cannot go to a kernel of another.
    with pytest.raises(ValueError, match="binding 'D'"):
        k(vknb.asarray(x), grid=100)

    d.close()
    assert d.closed and "closed" in repr(d)
    assert a.closed and z.closed and buf.closed
    for use in (
        lambda: a.numpy(),
        lambda: z.update(np.zeros(100, np.float32)),
        lambda: buf.write(b"1234"),
        lambda: buf.read(),
        lambda: k(y, grid=100),
        lambda: k(a, grid=100),
        lambda: d.memory_stats(),
        lambda: vknb.Buffer(16, device=d),
        lambda: vknb.asarray(x, device=d),
        lambda: vknb.compile(DOUBLE, name="late", device=d),
        lambda: d.submit(lambda cmd: None),
    ):
        with pytest.raises(vknb.ObjectClosed):
            use()
    d.close()  # idempotent
    a.close()
    k.close()
    k.close()
    # The session device is untouched.
    np.testing.assert_array_equal(vknb.asarray(x).numpy(), x)


def test_device_with_block_and_bad_index(dev):
    with vknb.Device(dev.index) as d:
        a = vknb.asarray(np.arange(3, dtype=np.int32), device=d)
        np.testing.assert_array_equal(a.numpy(), [0, 1, 2])
        d.synchronize()
        assert d.submit(lambda cmd: None, label="nothing").done
    assert d.closed and a.closed
    d.close()
    n = len(vknb.devices())
    for bad in (n, n + 7, -1):
        with pytest.raises(vknb.NoDeviceFound, match=re.escape(vknb.devices()[0].name)):
            vknb.Device(bad)
    assert vknb.use(dev.index) is dev  # choosing the current device changes nothing


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


# ---------------------------------------------------------------------------------------------
# The validation layer (subprocesses: the instance reads VKNB_VALIDATION once)
# ---------------------------------------------------------------------------------------------

_VALIDATED_WORKLOAD = """
import json, numpy as np, vknb
from vknb import _vk

rng = np.random.default_rng(1)
inst = vknb.device().instance
SAXPY = '''
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(binding = 2) uniform U { float bias; };
layout(push_constant) uniform P { float a; uint n; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < n) y[i] += a * x[i] + bias;
}
'''
k = vknb.compile(SAXPY, name="saxpy")
x = rng.standard_normal(1000).astype(np.float32)
y = rng.standard_normal(1000).astype(np.float32)
y0 = y.copy()
k(x, y, U=0.5, a=2.0, n=1000, grid=1000)
np.testing.assert_allclose(y, y0 + 2 * x + 0.5, rtol=1e-5, atol=1e-6)
ax, ay = vknb.asarray(x), vknb.asarray(y0)
for _ in range(3):
    k(ax, ay, U=0.0, a=1.0, n=1000, grid=1000)
s = k(ax, ay, U=0.0, a=1.0, n=1000, grid=1000, wait=False)
vknb.synchronize()
np.testing.assert_allclose(ay.numpy(), y0 + 4 * x, rtol=1e-5, atol=1e-5)
z = vknb.zeros((10, 10), np.int32)
assert not z.numpy().any()
b = vknb.Buffer(4096)
b.write(np.arange(100, dtype=np.int32), offset=100)
assert (b.read(np.int32, offset=100, nbytes=400) == np.arange(100)).all()
for kind in ("upload", "readback"):
    u = vknb.Buffer(256, memory=kind)
    with u.mapped(np.float32) as v:
        v[:] = 3.0
    del v  # a view kept past the device's close is covered by its own test
    assert (u.read(np.float32) == 3.0).all()
    u.close()
big = vknb.asarray(rng.integers(0, 255, 40 << 20, dtype=np.uint8))  # several staging chunks
assert big.numpy().sum() > 0
other = vknb.Device(0)
k2 = vknb.compile(SAXPY, name="saxpy2", device=other)
k2(vknb.asarray(x, device=other), vknb.zeros(1000, device=other), U=1.0, a=1.0, n=1000,
   grid=1000)
other.close()
k.close()
for o in (ax, ay, z, b, big):
    o.close()
vknb.device().close()
print(json.dumps({"validation": inst.validation, "messenger": inst._messenger is not None,
                  "counts": _vk.validation_counts}))
"""


def test_validation_layer_workload_is_clean(tmp_path):
    res = run_python(_VALIDATED_WORKLOAD, tmp_path, {"VKNB_VALIDATION": "1"}, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    out = last_json(res.stdout)
    print("validation counts:", out["counts"])
    assert out["validation"] is True and out["messenger"] is True
    assert out["counts"]["error"] == 0, res.stderr
    assert "Validation Error" not in res.stderr
    assert "Traceback" not in res.stderr


_VALIDATION_CATCHES = """
import json, vknb
from vknb import _vk
dev = vknb.device()
ffi, lib, vk = _vk.ffi, _vk.lib, _vk.vk
info = _vk.new("VkBufferCreateInfo", {"sType": vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                                       "size": 0, "usage": 0x20})
p = ffi.new("VkBuffer*")
res = lib.vkCreateBuffer(dev.handle, info, ffi.NULL, p)
out = {"res": res}
try:
    _vk.check(res, "vkCreateBuffer", "zero-size buffer")
    out["raised"] = None
except vknb.ValidationError as e:
    out.update(raised=type(e).__name__, message=str(e), function=e.function, label=e.label)
if res == 0:
    lib.vkDestroyBuffer(dev.handle, p[0], ffi.NULL)
out["counts"] = dict(_vk.validation_counts)
# The session still works after the error.
import numpy as np
out["after"] = vknb.asarray(np.arange(3, dtype=np.int32)).numpy().tolist()
print(json.dumps(out))
"""


def test_validation_error_is_raised_at_the_call(tmp_path):
    res = run_python(_VALIDATION_CATCHES, tmp_path, {"VKNB_VALIDATION": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    out = last_json(res.stdout)
    assert out["raised"] == "ValidationError", out
    assert "VUID-VkBufferCreateInfo-size-00912" in out["message"]
    assert "vkCreateBuffer" in out["message"] and "zero-size buffer" in out["message"]
    assert out["function"] == "vkCreateBuffer" and out["label"] == "zero-size buffer"
    assert out["counts"]["error"] == 1
    assert out["after"] == [0, 1, 2]


_KEPT_VIEW_DEVICE_CLOSE = """
import json, numpy as np, vknb
from vknb import _vk
b = vknb.Buffer(64, memory="upload")
with b.mapped(np.float32) as v:  # `v` stays bound, as users write it
    v[:] = 1.0
vknb.device().close()
print(json.dumps(_vk.validation_counts))
"""


def test_device_close_with_a_kept_mapped_view_is_clean(tmp_path):
    res = run_python(_KEPT_VIEW_DEVICE_CLOSE, tmp_path, {"VKNB_VALIDATION": "1"})
    assert res.returncode == 0, res.stderr
    assert last_json(res.stdout)["error"] == 0, res.stderr
    assert "Validation Error" not in res.stderr


def test_validation_off_by_default(tmp_path):
    res = run_python(
        "import json, vknb\ninst = vknb.device().instance\n"
        "print(json.dumps([inst.validation, inst._messenger is None]))",
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert last_json(res.stdout) == [False, True]
