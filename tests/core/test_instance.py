"""The Vulkan instance and the physical devices it sees: the device list and its scores,
choosing a device (``VKNB_DEVICE``), device properties, and the validation layer.

Tests that need a fresh process (an environment variable read at start-up, the validation
layer) run a small script in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from helpers import last_json, run_python

import vknb
from vknb.core.instance import GiB, select_device_index

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
    res = run_python(_REASON_SCRIPT, tmp_path, {"VKNB_DEVICE": spec}, keep_device=False)
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
    res = run_python(
        _VALIDATED_WORKLOAD, tmp_path, {"VKNB_VALIDATION": "1"}, timeout=300, keep_device=False
    )
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
    res = run_python(_VALIDATION_CATCHES, tmp_path, {"VKNB_VALIDATION": "1"}, keep_device=False)
    assert res.returncode == 0, res.stdout + res.stderr
    out = last_json(res.stdout)
    assert out["raised"] == "ValidationError", out
    assert "VUID-VkBufferCreateInfo-size-00912" in out["message"]
    assert "vkCreateBuffer" in out["message"] and "zero-size buffer" in out["message"]
    assert out["function"] == "vkCreateBuffer" and out["label"] == "zero-size buffer"
    assert out["counts"]["error"] == 1
    assert out["after"] == [0, 1, 2]


def test_validation_off_by_default(tmp_path):
    res = run_python(
        "import json, vknb\ninst = vknb.device().instance\n"
        "print(json.dumps([inst.validation, inst._messenger is None]))",
        tmp_path,
        keep_device=False,
    )
    assert res.returncode == 0, res.stderr
    assert last_json(res.stdout) == [False, True]
