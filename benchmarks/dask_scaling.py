"""``python -m benchmarks.dask_scaling [--size smoke|cpu|gpu] [--workers 1,2,4] [--json PATH]``.

Throughput of :func:`vknb.dask.map_blocks` against the number of workers of a
:class:`vknb.dask.LocalVulkanCluster` (one worker process per device; on a host with one device
the workers share it):

- ``saxpy``: ``y + a * x`` over float32 dask arrays, bandwidth-bound (12 bytes per element);
- ``mandelbrot``: escape-time counts over a 2-D grid of blocks, compute-bound (the window's
  coordinates are a row and a column broadcast against each other, so no input is large);
- ``overhead``: tiny blocks (1 024 elements), where the time per block is the cost of a task
  and a kernel call, against ``dask.array.map_blocks`` of the same SAXPY in numpy on the same
  cluster.

Inputs are generated on the workers and persisted before the clock starts; each timing is the
best of ``--repeat`` runs of ``persist`` + ``wait`` (results stay on the workers, nothing is
gathered).  Every result is checked against numpy.  Prints a markdown table; ``--json PATH``
writes the rows as JSON.  Sizes: ``smoke`` (seconds, for CI), ``cpu`` (lavapipe), ``gpu``.

Example
-------
$ python -m benchmarks.dask_scaling --size smoke --workers 1,2 --json /tmp/dask.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Escape-time counts at c = re[x] + i im[y]; `precise` float32, as vknb's library shader.
MANDELBROT = """
layout(local_size_x = 16, local_size_y = 16) in;
layout(binding = 0) readonly buffer Re { float re[]; };
layout(binding = 1) readonly buffer Im { float im[]; };
layout(binding = 2) writeonly buffer It { uint it[]; };
layout(push_constant) uniform P { uint w; uint h; uint max_iter; };
void main() {
    uint x = gl_GlobalInvocationID.x, y = gl_GlobalInvocationID.y;
    if (x >= w || y >= h) return;
    precise float cr = re[x];
    precise float ci = im[y];
    precise float zr = 0.0;
    precise float zi = 0.0;
    uint i = 0u;
    for (; i < max_iter; ++i) {
        precise float zr2 = zr * zr;
        precise float zi2 = zi * zi;
        if (zr2 + zi2 > 4.0) break;
        precise float zri = zr * zi;
        zi = zri + zri + ci;
        zr = zr2 - zi2 + cr;
    }
    it[y * w + x] = i;
}
"""

# elements, chunk; mandelbrot side, chunk side, max_iter; overhead blocks
SIZES: dict[str, dict[str, int]] = {
    "smoke": {"n": 1 << 21, "chunk": 1 << 18, "side": 256, "tile": 64, "iters": 64, "tiny": 32},
    "cpu": {"n": 1 << 24, "chunk": 1 << 21, "side": 1024, "tile": 256, "iters": 256, "tiny": 128},
    "gpu": {"n": 1 << 28, "chunk": 1 << 24, "side": 8192, "tile": 2048, "iters": 1024, "tiny": 512},
}
DEFAULT_WORKERS = {"smoke": "1,2", "cpu": "1,2,4", "gpu": "1,2,4"}
A = 2.0


def numpy_saxpy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The baseline's block function (runs on the workers)."""
    return y + np.float32(A) * x


def mandelbrot_reference(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
    """numpy float32, each operation rounded once, as the shader's ``precise`` arithmetic."""
    cr = np.broadcast_to(re.astype(np.float32)[None, :], (im.size, re.size))
    ci = np.broadcast_to(im.astype(np.float32)[:, None], (im.size, re.size))
    zr = np.zeros(cr.shape, np.float32)
    zi = np.zeros(cr.shape, np.float32)
    it = np.zeros(cr.shape, np.uint32)
    live = np.ones(cr.shape, bool)
    for _ in range(max_iter):
        zr2, zi2 = zr * zr, zi * zi
        live &= ~(zr2 + zi2 > np.float32(4.0))
        if not live.any():
            break
        zri = zr * zi
        zi = np.where(live, zri + zri + ci, zi)
        zr = np.where(live, zr2 - zi2 + cr, zr)
        it += live
    return it


def _best(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _timed_persist(arr: Any, inputs: list[Any], repeat: int) -> float:
    """Best time to compute ``arr`` into worker memory, from ``inputs`` already there.  Each
    run computes a clone of the graph (new keys, same ``inputs``): persisting the same keys
    again would find them computed."""
    from dask.graph_manipulation import clone
    from distributed import wait

    seed = [0]

    def run() -> None:
        seed[0] += 1
        out = clone(arr, omit=inputs, seed=seed[0]).persist()
        wait(out)
        del out

    run()  # warm: kernels built on every worker, pipelines cached
    return _best(run, repeat)


def run_workers(workers: int, cfg: dict[str, int], repeat: int, log: Any) -> list[dict[str, Any]]:
    """Every workload on a LocalVulkanCluster of ``workers`` workers: one row each."""
    import dask.array as da
    from distributed import Client, wait

    import vknb
    import vknb.dask
    import vknb.library

    saxpy = vknb.library.load("saxpy")  # y = a * x + y, a grid-stride loop
    mandel = vknb.compile(MANDELBROT, name="mandelbrot")
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:  # each row as it is measured: a partial run says
        rows.append(row)  # how far it got, and what it measured until then
        log(
            f"  {row['workload']}, {row['workers']} worker(s): {row['seconds']:.3g} s, "
            f"{row['throughput']:.3g} {row['unit']}{'' if row['ok'] else ', FAILED'}"
        )

    t0 = time.perf_counter()
    with (
        vknb.dask.LocalVulkanCluster(
            n_workers=workers, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster),
    ):
        startup = time.perf_counter() - t0
        log(f"{workers} worker(s) up in {startup:.1f} s")
        rng = da.random.default_rng(0)

        # -- saxpy: bandwidth-bound
        log("  saxpy ...")
        n, chunk = cfg["n"], cfg["chunk"]
        x = rng.random(n, chunks=chunk, dtype=np.float32).persist()
        y = rng.random(n, chunks=chunk, dtype=np.float32).persist()
        wait([x, y])
        r = vknb.dask.map_blocks(saxpy, x, y, a=A, n=lambda x, y: x.size)
        t = _timed_persist(r, [x, y], repeat)
        err = float(abs(r - (y + np.float32(A) * x)).max().compute())
        add(
            {
                "workload": "saxpy",
                "workers": workers,
                "blocks": r.npartitions,
                "elements": n,
                "seconds": t,
                "throughput": 12 * n / t / 1e9,
                "unit": "GB/s",
                "ms_per_block": t / r.npartitions * 1e3,
                "ok": err <= 1e-6 * 4,
                "startup_s": startup,
            }
        )
        rn = da.map_blocks(numpy_saxpy, x, y, dtype=np.float32)
        tn = _timed_persist(rn, [x, y], repeat)
        add(
            {
                "workload": "saxpy (numpy)",
                "workers": workers,
                "blocks": rn.npartitions,
                "elements": n,
                "seconds": tn,
                "throughput": 12 * n / tn / 1e9,
                "unit": "GB/s",
                "ms_per_block": tn / rn.npartitions * 1e3,
                "ok": True,
            }
        )
        del x, y, r, rn

        # -- mandelbrot: compute-bound
        log("  mandelbrot ...")
        side, tile, iters = cfg["side"], cfg["tile"], cfg["iters"]
        re_np = np.linspace(-2.0, 0.6, side, dtype=np.float32)
        im_np = np.linspace(1.2, -1.2, side, dtype=np.float32)
        re = da.from_array(re_np, chunks=tile)
        im = da.from_array(im_np[:, None], chunks=(tile, 1))
        m = vknb.dask.map_blocks(
            mandel,
            re,
            im,
            w=lambda re, im: re.shape[-1],
            h=lambda re, im: im.shape[0],
            max_iter=iters,
        )
        t = _timed_persist(m, [re, im], repeat)
        rows_check = slice(0, side, max(1, side // 16))
        got = m[rows_check].compute()
        want = mandelbrot_reference(re_np, im_np[rows_check], iters)
        add(
            {
                "workload": "mandelbrot",
                "workers": workers,
                "blocks": m.npartitions,
                "elements": side * side,
                "seconds": t,
                "throughput": side * side / t / 1e6,
                "unit": "Mpixel/s",
                "ms_per_block": t / m.npartitions * 1e3,
                "ok": bool(np.mean(got != want) < 1e-3),
            }
        )

        # -- overhead: tiny blocks
        log("  overhead ...")
        tiny = cfg["tiny"]
        xs = rng.random(tiny * 1024, chunks=1024, dtype=np.float32).persist()
        ys = rng.random(tiny * 1024, chunks=1024, dtype=np.float32).persist()
        wait([xs, ys])
        rv = vknb.dask.map_blocks(saxpy, xs, ys, a=A, n=lambda x, y: x.size)
        rn = da.map_blocks(numpy_saxpy, xs, ys, dtype=np.float32)
        tv = _timed_persist(rv, [xs, ys], repeat)
        tn = _timed_persist(rn, [xs, ys], repeat)
        ok = bool(np.allclose(rv.compute(), rn.compute(), rtol=1e-6))
        add(
            {
                "workload": "overhead (1024-element blocks)",
                "workers": workers,
                "blocks": tiny,
                "elements": tiny * 1024,
                "seconds": tv,
                "throughput": (tv - tn) / tiny * 1e3,
                "unit": "ms/block more than numpy",
                "ms_per_block": tv / tiny * 1e3,
                "numpy_ms_per_block": tn / tiny * 1e3,
                "ok": ok,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    """The rows as a markdown table under ``header``."""
    out = [
        header,
        "",
        "| workload | workers | blocks | time (s) | throughput | ms / block | checked |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        tp = f"{r['throughput']:.3g} {r['unit']}"
        per = f"{r['ms_per_block']:.3g}"
        if "numpy_ms_per_block" in r:
            per += f" (numpy {r['numpy_ms_per_block']:.3g})"
        out.append(
            f"| {r['workload']} | {r['workers']} | {r['blocks']} | {r['seconds']:.3g} | {tp} | "
            f"{per} | {'ok' if r['ok'] else 'FAILED'} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dask_scaling", description=__doc__)
    p.add_argument("--size", choices=sorted(SIZES), default="smoke")
    p.add_argument("--workers", help="worker counts, comma-separated (default: 1,2,4)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path, help="write the rows and the set-up as JSON here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    import vknb

    counts = [int(w) for w in (args.workers or DEFAULT_WORKERS[args.size]).split(",")]
    cfg = SIZES[args.size]

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    rows: list[dict[str, Any]] = []
    for w in counts:
        rows += run_workers(w, cfg, args.repeat, log)
    infos = vknb.devices()
    devices = ", ".join(f"{d.index}: {d.name}" for d in infos)
    header = (
        f"## vknb.dask scaling, size {args.size} ({devices}; "
        f"{platform.node() or 'host'}, {len(infos)} device(s))"
    )
    print(markdown(rows, header))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"size": args.size, "config": cfg, "devices": devices, "rows": rows}, indent=1
            )
            + "\n",
            encoding="utf-8",
        )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
