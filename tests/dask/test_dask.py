"""vknb.dask on a real cluster: LocalVulkanCluster with 2 worker processes (spawned, each with
its own Vulkan instance on the host's device), one per module; nothing is mocked.

map_blocks and map_overlap are checked against numpy on random data of several chunks; kernels
and Arrays go through ``client.submit`` and back; each worker builds a kernel once however many
blocks it runs; a worker killed in the middle of a computation is restarted on its device and
Dask reruns its tasks.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client

import vknb
import vknb.dask
from vknb.dask import LocalVulkanCluster, VulkanPlugin

SAXPY = """
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform P { float a; uint n; };
void main() { uint i = gl_GlobalInvocationID.x; if (i < n) y[i] += a * x[i]; }
"""

# Four elements per invocation, a push constant from the block (its offset in the grid is not
# known to the kernel: `scale` comes from the block's own data), a broadcast numpy array.
POLY4 = """
layout(local_size_x = 32) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer C { float c[]; };
layout(binding = 2) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint n; float scale; };
void main() {
    for (uint k = 0; k < 4; ++k) {
        uint i = gl_GlobalInvocationID.x * 4 + k;
        if (i < n) y[i] = scale * (c[0] + c[1] * x[i] + c[2] * x[i] * x[i]);
    }
}
"""

# 2-D five-point Laplacian; indices clamped at the block's edges (what boundary="none" needs).
LAPLACE = """
layout(local_size_x = 8, local_size_y = 8) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P { uint w; uint h; };
void main() {
    uint i = gl_GlobalInvocationID.x, j = gl_GlobalInvocationID.y;
    if (i >= w || j >= h) return;
    uint l = max(i, 1) - 1, r = min(i + 1, w - 1), u = max(j, 1) - 1, d = min(j + 1, h - 1);
    y[j * w + i] = x[j * w + l] + x[j * w + r] + x[u * w + i] + x[d * w + i] - 4.0 * x[j * w + i];
}
"""


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # Functions and lambdas of this module travel by value (the workers need not import it).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with (
            LocalVulkanCluster(
                n_workers=2, dashboard_address=":0", silence_logs=logging.CRITICAL
            ) as cluster,
            Client(cluster) as c,
        ):
            yield c
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def saxpy() -> vknb.Kernel:
    return vknb.compile(SAXPY, name="saxpy")


def _laplace_reference(a: np.ndarray, boundary: Any) -> np.ndarray:
    mode = {"reflect": "symmetric", "periodic": "wrap", "nearest": "edge", "none": "edge"}
    if boundary in mode:
        p = np.pad(a, 1, mode=mode[boundary])  # type: ignore[call-overload]
    else:
        p = np.pad(a, 1, mode="constant", constant_values=boundary)
    return p[1:-1, :-2] + p[1:-1, 2:] + p[:-2, 1:-1] + p[2:, 1:-1] - 4 * p[1:-1, 1:-1]


# --- the cluster ------------------------------------------------------------------------------


def test_workers_are_pinned_and_report_their_device(client: Client) -> None:
    infos = {d.index: d for d in vknb.devices()}
    rows = client.run(vknb.dask.worker_device)
    assert len(rows) == 2
    for row in rows.values():
        assert row["vknb_device"] is not None and int(row["vknb_device"]) == row["index"]
        assert row["name"] == infos[row["index"]].name
        assert row["score"] == infos[row["index"]].score
        assert row["total_memory"] == infos[row["index"]].total_memory > 0
        assert row["pid"] != os.getpid()
    assert len({r["pid"] for r in rows.values()}) == 2
    # one worker per device in turn: worker i on device i % number of devices
    n = len(infos)
    report = vknb.dask.cluster_report(client)
    assert [r["worker"] for r in report] == ["0", "1"]
    assert [r["index"] for r in report] == [0 % n, 1 % n]
    text = vknb.dask.format_report(report)
    assert text.splitlines()[0].split()[:3] == ["worker", "device", "score"]
    assert len(text.splitlines()) == 3 and infos[0].name in text


def _pin_as_the_cluster_does(dask_worker: Any) -> None:
    index = int(dask_worker.name) % len(vknb.devices())
    os.environ["VKNB_DEVICE"] = str(index)
    vknb.use(index)


def test_plugin_gives_any_worker_its_device(client: Client) -> None:
    last = max(vknb.devices(), key=lambda d: d.index).index
    client.register_plugin(VulkanPlugin(device=lambda worker: last))
    try:
        rows = client.run(vknb.dask.worker_device)
        assert {r["index"] for r in rows.values()} == {last}
        assert {r["vknb_device"] for r in rows.values()} == {str(last)}
    finally:
        # back to the cluster's own pinning
        client.unregister_worker_plugin(VulkanPlugin.name)
        client.run(_pin_as_the_cluster_does)
    with pytest.raises(TypeError, match="VulkanPlugin"):
        VulkanPlugin(device=1.5)  # type: ignore[arg-type]


# --- map_blocks -------------------------------------------------------------------------------


def test_map_blocks_saxpy_matches_numpy(
    client: Client, saxpy: vknb.Kernel, rng: np.random.Generator
) -> None:
    xn = rng.random(10_007, dtype=np.float32)
    yn = rng.random(10_007, dtype=np.float32)
    keep = yn.copy()
    x = da.from_array(xn, chunks=1_500)
    y = da.from_array(yn, chunks=2_000)  # other chunks: unified like dask.array.map_blocks
    r = vknb.dask.map_blocks(saxpy, x, y, a=2.5, n=lambda x, y: x.size)
    assert r.name.startswith("vknb-saxpy-") and r.dtype == np.float32
    assert r.numblocks[0] > 4
    np.testing.assert_allclose(r.compute(), yn + np.float32(2.5) * xn, rtol=1e-6)
    np.testing.assert_array_equal(yn, keep)  # the input y is never written
    np.testing.assert_array_equal(y.compute(), keep)
    # 2-D arrays, a 1-D workgroup: grid="auto" is the block's size
    x2 = da.from_array(xn[:10_000].reshape(100, 100), chunks=(30, 40))
    y2 = da.from_array(yn[:10_000].reshape(100, 100), chunks=(30, 40))
    r2 = vknb.dask.map_blocks(saxpy, x2, y2, a=-1.0, n=lambda x, y: x.size)
    np.testing.assert_allclose(r2.compute(), y2.compute() - x2.compute(), rtol=1e-6)


def test_map_blocks_callables_and_broadcast_values(
    client: Client, rng: np.random.Generator
) -> None:
    k = vknb.compile(POLY4, name="poly4")
    xn = rng.random(5_003, dtype=np.float32)
    c = np.array([0.5, -2.0, 3.0], np.float32)  # numpy: the same for every block
    x = da.from_array(xn, chunks=700)
    r = vknb.dask.map_blocks(
        k,
        x,
        c,
        grid=lambda x, c: -(-x.size // 4),  # 4 elements per invocation
        n=lambda x, c: x.size,
        scale=lambda x, c: float(x[0] > 0.5) + 1.0,  # from each block's data
    )
    blocks = [xn[i : i + 700] for i in range(0, xn.size, 700)]
    want = np.concatenate(
        [(float(b[0] > 0.5) + 1.0) * (c[0] + c[1] * b + c[2] * b * b) for b in blocks]
    )
    np.testing.assert_allclose(r.compute(), want, rtol=1e-5)


def test_map_blocks_errors_name_the_binding(saxpy: vknb.Kernel) -> None:
    x = da.zeros(100, chunks=10, dtype=np.float32)
    with pytest.raises(TypeError, match=r"'X' holds float32.*float64"):
        vknb.dask.map_blocks(saxpy, x.astype(np.float64), x)
    with pytest.raises(ValueError, match=r"no binding 'z'.*X, Y"):
        vknb.dask.map_blocks(saxpy, x, x, out="z")
    with pytest.raises(ValueError, match="'X' is readonly"):
        vknb.dask.map_blocks(saxpy, x, x, out="x")
    with pytest.raises(TypeError, match=r"missing binding argument\(s\): C"):
        vknb.dask.map_blocks(vknb.compile(POLY4, name="poly4"), x)  # Y is allocated, C missing
    two = vknb.compile(SAXPY.replace("readonly buffer X", "buffer X"), name="two")
    with pytest.raises(ValueError, match=r"may write 2 bindings \(X, Y\); name the output"):
        vknb.dask.map_blocks(two, x, x)
    with pytest.raises(TypeError, match="no dask array"):
        vknb.dask.map_blocks(saxpy, np.zeros(4, np.float32), np.zeros(4, np.float32))


def test_map_blocks_on_the_threaded_scheduler_uses_the_kernel_itself(no_leaks: None) -> None:
    vknb.dask.clear_kernel_cache()
    # X writable but not the output: a private copy per block (the dask block stays as it is)
    with vknb.compile(SAXPY.replace("readonly buffer X", "buffer X"), name="saxpy_rw") as k:
        x = da.ones(1_000, chunks=100, dtype=np.float32)
        with dask.config.set(scheduler="threads"):
            r = vknb.dask.map_blocks(k, x, da.zeros_like(x), out="y", a=3.0, n=lambda x, y: x.size)
            assert (r.compute() == 3.0).all()
    info = vknb.dask.kernel_cache_info()
    assert (info["blocks"], info["builds"]) == (10, 0)


# --- map_overlap ------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["reflect", "periodic", "nearest", 0.25, "none"])
def test_map_overlap_stencil_matches_numpy(
    client: Client, boundary: Any, rng: np.random.Generator
) -> None:
    k = vknb.compile(LAPLACE, name="laplace")
    an = rng.random((50, 70), dtype=np.float32)
    a = da.from_array(an, chunks=(20, 30))
    r = vknb.dask.map_overlap(
        k, a, depth=1, boundary=boundary, w=lambda x: x.shape[1], h=lambda x: x.shape[0]
    )
    assert r.chunks == a.chunks
    np.testing.assert_allclose(r.compute(), _laplace_reference(an, boundary), atol=1e-5)


# --- pickling, the per-process cache ----------------------------------------------------------


def _run_on_worker(k: vknb.Kernel, x: np.ndarray) -> tuple[np.ndarray, vknb.Kernel, int]:
    y = np.zeros_like(x)
    k(x, y, a=2.0, n=x.size, grid=x.size)
    return y, k, vknb.device().index


def _array_on_worker(a: vknb.Array) -> tuple[vknb.Array, float, int]:
    return vknb.asarray(a.numpy() * 2), float(a.numpy().sum()), a.device.index


def test_kernels_and_arrays_round_trip_through_submit(
    client: Client, saxpy: vknb.Kernel, rng: np.random.Generator
) -> None:
    xn = rng.random(1_000, dtype=np.float32)
    y, k2, index = client.submit(_run_on_worker, saxpy, xn, pure=False).result()
    np.testing.assert_allclose(y, 2 * xn, rtol=1e-6)
    assert index in {d.index for d in vknb.devices()}
    assert isinstance(k2, vknb.Kernel) and k2 is not saxpy
    assert k2.spirv == saxpy.spirv and k2.name == "saxpy" and k2.device is vknb.device()
    y2 = np.ones_like(xn)
    k2(xn, y2, a=1.0, n=xn.size, grid=xn.size)  # rebuilt here, and it runs
    np.testing.assert_allclose(y2, 1 + xn, rtol=1e-6)
    a = vknb.asarray(xn)
    back, total, _ = client.submit(_array_on_worker, a, pure=False).result()
    assert isinstance(back, vknb.Array)
    np.testing.assert_allclose(back.numpy(), 2 * xn, rtol=1e-6)
    assert total == pytest.approx(float(xn.sum()), rel=1e-5)


def test_each_worker_builds_a_kernel_once(client: Client, rng: np.random.Generator) -> None:
    client.run(vknb.dask.clear_kernel_cache)
    k = vknb.compile(SAXPY, name="saxpy_once", constants={})
    x = da.from_array(rng.random(16_000, dtype=np.float32), chunks=1_000)
    for a in (1.0, 2.0):  # two graphs, 16 blocks each
        r = vknb.dask.map_blocks(k, x, da.zeros_like(x), a=a, n=lambda x, y: x.size)
        np.testing.assert_allclose(r.compute(), a * x.compute(), rtol=1e-6)
    info = client.run(vknb.dask.kernel_cache_info)
    assert sum(i["blocks"] for i in info.values()) == 32
    for i in info.values():
        assert i["builds"] == (1 if i["blocks"] else 0), info
        assert i["hits"] == i["blocks"] - i["builds"]
        assert i["kernels"] == ([vknb.dask.kernel_key(k)] if i["blocks"] else [])


# --- a worker dies ------------------------------------------------------------------------------


def test_a_killed_worker_is_restarted_and_its_blocks_rerun(
    client: Client, saxpy: vknb.Kernel, tmp_path: Path, rng: np.random.Generator
) -> None:
    flag = str(tmp_path / "killed-once")

    def n_or_die(x: np.ndarray, y: np.ndarray) -> int:
        try:  # the first block to get here (O_EXCL: one only) kills its worker
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return x.size
        os._exit(1)

    import vknb.widgets

    xn = rng.random(8_000, dtype=np.float32)
    yn = rng.random(8_000, dtype=np.float32)
    x, y = da.from_array(xn, chunks=1_000), da.from_array(yn, chunks=1_000)
    pids = {r["pid"] for r in client.run(vknb.dask.worker_device).values()}
    # A ClusterView polled from another thread all the while: a worker dying under a poll is
    # said in the view, never raised, and the view shows the new worker once it is up.
    view = vknb.widgets.ClusterView(client, interval=0.1)
    stop, errors, polls = threading.Event(), [], [0]

    def poll() -> None:
        while not stop.is_set():
            try:
                view.update()
                polls[0] += 1
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        r = vknb.dask.map_blocks(saxpy, x, y, a=0.5, n=n_or_die)
        np.testing.assert_allclose(r.compute(), yn + 0.5 * xn, rtol=1e-6)
        assert os.path.exists(flag)
        client.wait_for_workers(2, timeout=60)
    finally:
        stop.set()
        poller.join(30)
    assert not errors, errors
    assert polls[0] >= 3, polls  # the view was polled while the computation ran
    rows = client.run(vknb.dask.worker_device)
    assert len({r["pid"] for r in rows.values()} - pids) == 1  # one new process
    assert all(r["vknb_device"] == str(r["index"]) for r in rows.values())  # pinned again
    end = time.monotonic() + 10
    while {r["pid"] for r in view.rows()} != {r["pid"] for r in rows.values()}:
        assert time.monotonic() < end, (view.rows(), rows)
        view.update()
        time.sleep(0.05)
    assert "last poll failed" not in view.text()
    view.close()


def test_cluster_view_follows_the_blocks_as_they_finish(
    client: Client, saxpy: vknb.Kernel, rng: np.random.Generator
) -> None:
    """vknb.widgets.ClusterView: one row per worker with its device and what it ran; displayed
    in a shell that publishes updates (as a Jupyter kernel does), its output follows the
    blocks the workers finish, and it says when a poll fails instead of raising."""
    import vknb.widgets
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display

    ip = InteractiveShell.instance()
    old, ip.display_pub = ip.display_pub, CapturingDisplayPublisher()
    try:
        view = vknb.widgets.ClusterView(client, interval=0.2)
        rows = view.rows()
        assert [r["worker"] for r in rows] == ["0", "1"]
        for r in rows:
            assert f"{r['index']}: {r['name']}" in view.text()
        blocks = sum(r["blocks"] for r in rows)
        display(view)

        def last_html() -> str:
            outs = [
                o
                for o in ip.display_pub.outputs
                if (o.get("transient") or {}).get("display_id") == view.display_id
            ]
            return str(outs[-1]["data"]["text/html"])

        assert f"{blocks} block" in last_html() and "<table" in last_html()
        xn = rng.random(12_000, dtype=np.float32)
        yn = rng.random(12_000, dtype=np.float32)
        x, y = da.from_array(xn, chunks=1_000), da.from_array(yn, chunks=1_000)
        r = vknb.dask.map_blocks(saxpy, x, y, a=1.5, n=lambda x, y: x.size)
        np.testing.assert_allclose(r.compute(), yn + np.float32(1.5) * xn, rtol=1e-6)
        want = f"{blocks + 12} blocks run"
        end = time.monotonic() + 10
        while want not in last_html() and time.monotonic() < end:
            time.sleep(0.05)
        assert want in last_html(), last_html()[:500]
        assert sum(r["blocks"] for r in view.rows()) == blocks + 12
        # Four threads refreshing at once, beside the live thread: no error, same rows.
        errors: list[BaseException] = []

        def refresh() -> None:
            try:
                for _ in range(5):
                    view.update()
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=refresh) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert sum(r["blocks"] for r in view.rows()) == blocks + 12
        view.close()
        assert view.update() is False and not view.live  # closed: nothing is sent again
    finally:
        vknb.widgets.close_all()
        ip.display_pub = old
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        vknb.widgets.ClusterView(object())
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match=r"interval must be > 0"):
            vknb.widgets.ClusterView(client, interval=bad)
    other = Client(client.scheduler.address, set_as_default=False)
    gone = vknb.widgets.ClusterView(other)
    other.close()
    gone.update()  # a poll of a closed client: said in the view, not raised
    assert "last poll failed: the client is closed" in gone.text()
    assert [r["worker"] for r in gone.rows()] == ["0", "1"]  # the last rows stay


# --- the scaling benchmark --------------------------------------------------------------------


def test_scaling_benchmark_smoke(tmp_path: Path) -> None:
    """``python -m benchmarks.dask_scaling --size smoke``: every row, checked against numpy."""
    out = tmp_path / "dask.json"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "benchmarks.dask_scaling", "--size", "smoke", "--workers", "1",
         "--repeat", "1", "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
        env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["workload"] for r in rows] == [
        "saxpy",
        "saxpy (numpy)",
        "mandelbrot",
        "overhead (1024-element blocks)",
    ]
    assert all(r["ok"] and r["seconds"] > 0 and r["workers"] == 1 for r in rows)
    assert "| saxpy | 1 |" in p.stdout
