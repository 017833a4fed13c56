"""Several devices in one process, and what pickles (Kernels, Arrays, Images)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

import vknb

SCALE = """
layout(local_size_x = 64) in;
layout(binding = 0) buffer B { float b[]; };
layout(push_constant) uniform P { float s; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) b[i] = b[i] * s + float(i); }
"""


@pytest.fixture
def second() -> vknb.Device:
    d = vknb.Device(0)  # a second logical device (on lavapipe: the same physical one)
    yield d
    d.close()


def test_kernel_and_arrays_moved_to_another_device(second, rng) -> None:
    k = vknb.compile(SCALE, name="scale")
    k2 = k.to(second)
    assert k2.device is second and k.device is vknb.device()
    assert k2.spirv == k.spirv and k2.local_size == k.local_size
    x = rng.random(300, dtype=np.float32)
    a = vknb.asarray(x)
    b = a.to(second)
    assert b.device is second and a.to(vknb.device()) is a
    k2(b, s=3.0, n=300, grid=300)
    np.testing.assert_allclose(b.numpy(), x * 3 + np.arange(300), rtol=1e-6)
    np.testing.assert_array_equal(a.numpy(), x)  # the original is untouched


def test_mixing_devices_is_an_error_naming_both(second, rng) -> None:
    k = vknb.compile(SCALE, name="scale")
    b = vknb.asarray(rng.random(8, dtype=np.float32), device=second)
    with pytest.raises(ValueError, match=r"#\d+.*runs on Device\(0"):
        k(b, s=1.0, n=8, grid=8)
    with vknb.batch(second) as bt:
        with pytest.raises(ValueError, match="batch records for"):
            k(vknb.asarray(np.ones(8, np.float32)), s=1.0, n=8, grid=8)
        k.to(second)(b, s=1.0, n=8, grid=8)
    assert len(bt) == 1


def test_two_devices_driven_from_two_threads(second, rng) -> None:
    devs = [vknb.device(), second]
    kernels = [vknb.compile(SCALE, name="scale", device=d) for d in devs]
    errors: list[BaseException] = []
    results: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {0: [], 1: []}

    def work(i: int) -> None:
        r = np.random.default_rng(i)
        try:
            for _ in range(20):
                x = r.random(1000, dtype=np.float32)
                y = x.copy()
                kernels[i](y, s=2.0, n=1000, grid=1000)
                a = vknb.asarray(x, device=devs[i])
                kernels[i](a, s=2.0, n=1000, grid=1000)
                results[i].append((x, y))
                np.testing.assert_array_equal(a.numpy(), y)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i in (0, 1):
        assert len(results[i]) == 20
        for x, y in results[i]:
            np.testing.assert_allclose(y, x * 2 + np.arange(1000), rtol=1e-6)


def test_kernels_arrays_and_images_pickle(rng) -> None:
    k = vknb.compile(SCALE, name="scale", constants={})
    x = rng.random(100, dtype=np.float32)
    for kernel in (k, vknb.compile(k.spirv, name="from_spirv")):
        k2 = pickle.loads(pickle.dumps(kernel))
        assert k2 is not kernel and k2.name == kernel.name and k2.spirv == kernel.spirv
        y = x.copy()
        k2(y, s=0.5, n=100, grid=100)
        np.testing.assert_allclose(y, x * 0.5 + np.arange(100), rtol=1e-6)
    a = vknb.asarray(x, label="data")
    a2 = pickle.loads(pickle.dumps(a))
    assert a2 is not a and a2.label == "data"
    np.testing.assert_array_equal(a2.numpy(), x)
    img = vknb.asimage(rng.random((5, 6, 4), dtype=np.float32))
    img2 = pickle.loads(pickle.dumps(img))
    assert (img2.format, img2.shape) == (img.format, img.shape)
    np.testing.assert_array_equal(img2.numpy(), img.numpy())


def test_a_pickled_kernel_runs_in_another_process_without_compiling(tmp_path, rng) -> None:
    """The receiving process needs no compiler: the SPIR-V travels."""
    k = vknb.compile(SCALE, name="scale", local_size=None)
    data = pickle.dumps((k, vknb.asarray(np.arange(10, dtype=np.float32))))
    script = tmp_path / "child.py"
    script.write_text(
        "import pickle, sys, numpy as np\n"
        "import vknb.shader.compiler as c\n"
        "c.find_compiler = None  # any compile would fail\n"
        "k, a = pickle.loads(sys.stdin.buffer.read())\n"
        "k(a, s=2.0, n=10, grid=10)\n"
        "print(a.numpy().tolist())\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], input=data, capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()
    assert eval(out.stdout.decode()) == [i * 2.0 + i for i in range(10)]


def test_a_kernel_unpickled_twice_is_built_once() -> None:
    # A scheduler that ships the kernel with every task must not pay a pipeline build per task.
    k = vknb.compile(SCALE, name="scale_once")
    data = pickle.dumps(k)
    k1, k2 = pickle.loads(data), pickle.loads(data)
    assert k1 is k2 and k1 is not k
    k1.close()
    k3 = pickle.loads(data)  # a closed one is not handed out again
    assert k3 is not k1 and not k3.closed
    other = pickle.loads(pickle.dumps(vknb.compile(SCALE, name="scale_once", constants={})))
    assert other is k3  # same SPIR-V, name and options
    k4 = pickle.loads(pickle.dumps(vknb.compile(SCALE, name="scale_twice")))
    assert k4 is not k3
