"""The synchronous call's latency in one process pinned to each CPU.

A thread that runs on the CPU serving the GPU's interrupts pays for them on every synchronous
call (the driver raises about one interrupt per submission).  This starts one process per CPU,
pinned there with ``os.sched_setaffinity``, times the suite's tiny kernel through ``k(...)``
(500 warm-up calls, then the median of 9 rounds of 500) and prints one line per CPU, marking
the CPUs that served most of the GPU driver's interrupts (``/proc/interrupts``).  Linux only.
``VKNB_SPIN_US`` and the other ``VKNB_*`` variables pass through to every process.

    python -m benchmarks.probes.placement [--cpus 0,3,14] [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks.__main__ import _gpu_irq_cpus, _this_cpu


def child(cpu: int, calls: int) -> None:
    """Pinned to ``cpu``: time ``calls`` synchronous calls 9 times; print one JSON line."""
    os.sched_setaffinity(0, {cpu})
    import numpy as np

    import vknb
    from benchmarks.suite import TINY_SRC

    k = vknb.compile(TINY_SRC, name="tiny")
    X = vknb.asarray(np.ones(256, np.float32))
    Y = vknb.asarray(np.zeros(256, np.float32))
    for _ in range(calls):
        k(X, Y, a=1.0, grid=256)
    rounds = []
    for _ in range(9):
        t = time.perf_counter()
        for _ in range(calls):
            k(X, Y, a=1.0, grid=256)
        rounds.append((time.perf_counter() - t) / calls * 1e6)
    out = {"cpu": _this_cpu(), "median": statistics.median(rounds)}
    out.update(min=min(rounds), max=max(rounds), device=vknb.device().info.name)
    print(json.dumps(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.probes.placement", description=__doc__)
    ap.add_argument("--cpus", default=None, help="comma-separated CPUs (default: all allowed)")
    ap.add_argument("--calls", type=int, default=500, help="calls per round (default 500)")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not hasattr(os, "sched_setaffinity"):
        print("needs Linux (os.sched_setaffinity)")
        return 1
    if args.child is not None:
        child(args.child, args.calls)
        return 0
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else sorted(os.sched_getaffinity(0))
    irq = set(_gpu_irq_cpus())
    print("GPU interrupts served by CPU " + (", ".join(map(str, sorted(irq))) or "? (none found)"))
    failed = 0
    for cpu in cpus:
        cmd = [sys.executable, "-m", "benchmarks.probes.placement", "--child", str(cpu)]
        proc = subprocess.run(
            [*cmd, "--calls", str(args.calls)], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            failed += 1
            print(f"CPU {cpu:3d}: failed\n{proc.stderr.strip()}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        mark = "  <- serves the GPU's interrupts" if cpu in irq else ""
        print(
            f"CPU {cpu:3d}: sync call median {r['median']:6.1f} µs "
            f"(rounds {r['min']:.1f}-{r['max']:.1f}) on {r['device']}{mark}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
