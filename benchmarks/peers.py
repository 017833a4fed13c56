"""Optional peers, measured in the same process when installed: wgpu-py and CuPy.

Each peer is written the way its documentation shows, without tuning.  A peer that is not
importable reports ``"not installed"``; one that fails reports the error, and the suite goes on.

* wgpu-py: the tiny kernel in WGSL (``a`` in a uniform buffer written with
  ``queue.write_buffer`` before each call, as WebGPU has no push constants in its core API);
  a sync call is encode + submit + ``on_submitted_work_done_sync()``; a batch is N dispatches in
  one compute pass of one command encoder.  WebGPU command buffers are single-use: no replay.
* CuPy: SAXPY as an ``ElementwiseKernel`` (in place, 12 bytes per element), fp32 matmul
  (``cupy.matmul`` with ``CUPY_TF32=0``, set before CuPy is imported), ``cupy.sort`` (and
  ``cupy.argsort`` with a gather for key-value pairs), ``cupy.asarray`` /
  ``cupy.asnumpy(out=)``; GPU times from CUDA events.

Example
-------
>>> from benchmarks import peers
>>> ok, why = peers.wgpu_status()
>>> isinstance(ok, bool) and isinstance(why, str)
True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

NOT_INSTALLED = "not installed"


def wgpu_status() -> tuple[bool, str]:
    """(importable, version or reason)."""
    try:
        import wgpu
    except ImportError:
        return False, NOT_INSTALLED
    except Exception as e:  # a broken install (missing native library)
        return False, f"n/a: import failed ({type(e).__name__}: {e})"
    return True, str(getattr(wgpu, "__version__", "?"))


def cupy_status() -> tuple[bool, str]:
    """(importable and a CUDA device present, version or reason)."""
    os.environ.setdefault("CUPY_TF32", "0")
    try:
        import cupy
    except ImportError:
        return False, NOT_INSTALLED
    except Exception as e:
        return False, f"n/a: import failed ({type(e).__name__}: {e})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False, "n/a: no CUDA device"
    except Exception as e:
        return False, f"n/a: no CUDA device ({type(e).__name__})"
    return True, str(cupy.__version__)


# --- wgpu-py -----------------------------------------------------------------------------------

TINY_WGSL = """
struct Params { a: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i < arrayLength(&y)) {
        y[i] = y[i] + p.a * x[i];
    }
}
"""


class WgpuTiny:
    """The tiny kernel (``y += a * x`` on 256 floats) in wgpu-py.

    Example
    -------
    >>> w = WgpuTiny(np.ones(256, np.float32), np.zeros(256, np.float32))   # doctest: +SKIP
    >>> w.call(2.0); w.read_y()[:2]                                         # doctest: +SKIP
    array([2., 2.], dtype=float32)
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        import wgpu

        self.wgpu = wgpu
        adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
        self.adapter_name = str(adapter.info.get("device", "?"))
        self.device = adapter.request_device_sync()
        d = self.device
        usage = wgpu.BufferUsage
        self.x = d.create_buffer_with_data(data=x, usage=usage.STORAGE)
        self.y = d.create_buffer_with_data(
            data=y, usage=usage.STORAGE | usage.COPY_SRC | usage.COPY_DST
        )
        self.u = d.create_buffer(size=16, usage=usage.UNIFORM | usage.COPY_DST)
        module = d.create_shader_module(code=TINY_WGSL)
        self.pipeline = d.create_compute_pipeline(
            layout="auto", compute={"module": module, "entry_point": "main"}
        )
        self.bind_group = d.create_bind_group(
            layout=self.pipeline.get_bind_group_layout(0),
            entries=[
                {"binding": 0, "resource": {"buffer": self.x}},
                {"binding": 1, "resource": {"buffer": self.y}},
                {"binding": 2, "resource": {"buffer": self.u}},
            ],
        )
        self.groups = -(-y.size // 64)
        self._a = np.zeros(4, np.float32)
        # The documented wait; some wgpu-py releases break it (a callback signature that the
        # bundled wgpu-native rejects), and then the blocking device poll they use inside.
        self.wait_method = "queue.on_submitted_work_done_sync()"
        self._wait: Callable[[], Any] = d.queue.on_submitted_work_done_sync
        try:
            self._wait()
        except TypeError:
            self._wait = d._poll_wait
            self.wait_method = "device._poll_wait() (on_submitted_work_done_sync is broken)"

    def call(self, a: float) -> None:
        """One synchronous dispatch: write ``a``, encode, submit, wait."""
        d = self.device
        self._a[0] = a
        d.queue.write_buffer(self.u, 0, self._a)
        enc = d.create_command_encoder()
        cp = enc.begin_compute_pass()
        cp.set_pipeline(self.pipeline)
        cp.set_bind_group(0, self.bind_group)
        cp.dispatch_workgroups(self.groups)
        cp.end()
        d.queue.submit([enc.finish()])
        self._wait()

    def record(self, n: int) -> Any:
        """Encode ``n`` dispatches in one compute pass; return the finished command buffer."""
        enc = self.device.create_command_encoder()
        cp = enc.begin_compute_pass()
        for _ in range(n):
            cp.set_pipeline(self.pipeline)
            cp.set_bind_group(0, self.bind_group)
            cp.dispatch_workgroups(self.groups)
        cp.end()
        return enc.finish()

    def submit(self, cb: Any) -> None:
        """Submit a command buffer and wait."""
        self.device.queue.submit([cb])
        self._wait()

    def set_a(self, a: float) -> None:
        self._a[0] = a
        self.device.queue.write_buffer(self.u, 0, self._a)

    def read_y(self) -> np.ndarray:
        return np.frombuffer(self.device.queue.read_buffer(self.y), np.float32).copy()

    def close(self) -> None:
        for b in (self.x, self.y, self.u):
            b.destroy()
        self.device.destroy()


# --- CuPy ----------------------------------------------------------------------------------------


def cupy_gpu_ms(fn: Callable[[], Any]) -> float:
    """GPU time of ``fn()`` between two CUDA events."""
    import cupy

    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    fn()
    end.record()
    end.synchronize()
    return float(cupy.cuda.get_elapsed_time(start, end))


class CupySaxpy:
    """``y = a * x + y`` in place with an ElementwiseKernel."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        import cupy

        self.cp = cupy
        self.x = cupy.asarray(x)
        self.y = cupy.asarray(y)
        self.kernel = cupy.ElementwiseKernel(
            "float32 a, float32 x", "float32 y", "y = a * x + y", "bench_saxpy"
        )

    def run(self, a: float) -> None:
        self.kernel(np.float32(a), self.x, self.y)

    def gpu_ms(self, a: float) -> float:
        return cupy_gpu_ms(lambda: self.run(a))

    def y_host(self) -> np.ndarray:
        return self.cp.asnumpy(self.y)


class CupyMatmul:
    """``C = A @ B`` with ``cupy.matmul`` in the inputs' dtype (fp32: TF32 off through
    ``CUPY_TF32=0``; fp16: cuBLAS on tensor cores, float16 result)."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        import cupy

        self.cp = cupy
        self.a = cupy.asarray(a)
        self.b = cupy.asarray(b)
        self.c = cupy.empty((a.shape[0], b.shape[1]), a.dtype)

    def run(self) -> None:
        self.cp.matmul(self.a, self.b, out=self.c)

    def gpu_ms(self) -> float:
        return cupy_gpu_ms(self.run)

    def c_host(self) -> np.ndarray:
        return self.cp.asnumpy(self.c)


class CupySort:
    """``cupy.sort`` of keys; with values, the key-value equivalent: ``cupy.argsort`` (stable)
    and a gather of the keys and the values."""

    def __init__(self, keys: np.ndarray, values: np.ndarray | None = None) -> None:
        import cupy

        self.cp = cupy
        self.k = cupy.asarray(keys)
        self.v = None if values is None else cupy.asarray(values)
        self.out: Any = None

    def run(self) -> None:
        cp = self.cp
        if self.v is None:
            self.out = cp.sort(self.k)
        else:
            i = cp.argsort(self.k)
            self.out = (self.k[i], self.v[i])

    def gpu_ms(self) -> float:
        return cupy_gpu_ms(self.run)

    def result(self) -> np.ndarray:
        """The sorted keys, or (with values) the values in key order."""
        return self.cp.asnumpy(self.out if self.v is None else self.out[1])


def cupy_h2d_s(a: np.ndarray) -> tuple[float, Any]:
    """Seconds for ``cupy.asarray(a)`` (synchronized); returns (seconds, device array)."""
    import cupy

    t0 = time.perf_counter()
    d = cupy.asarray(a)
    cupy.cuda.runtime.deviceSynchronize()
    return time.perf_counter() - t0, d


def cupy_d2h_s(d: Any, out: np.ndarray) -> float:
    """Seconds for ``cupy.asnumpy(d, out=out)``."""
    import cupy

    t0 = time.perf_counter()
    cupy.asnumpy(d, out=out)
    cupy.cuda.runtime.deviceSynchronize()
    return time.perf_counter() - t0
