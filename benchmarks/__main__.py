"""``python -m benchmarks [--size smoke|cpu|gpu] [--json PATH] [--md PATH] [--repeat N]``.

Prints a markdown table (metric | vknb | raw vulkan baseline | ratio | wgpu | cupy | target |
met?) under a header naming the device, driver, date and versions.  A whole-suite run writes
itself as JSON to ``benchmarks/results/<device-slug>-<size>.json`` and the markdown next to it,
replacing that device's current result (the date is inside the files; history stays in git);
``--json`` / ``--md`` write elsewhere.  A partial run (``--only``) or a smoke run writes only
where ``--json`` / ``--md`` say, so it never replaces a device's result.  Exits 1 when a
correctness check failed or a vknb or raw measurement raised; optional peers that are missing or
fail never change the exit code.

The run uses a private, temporary vknb cache (the cold-compile row clears the cache), so your
own cache is never touched.  Imports nothing from IPython, ipywidgets or matplotlib.

Example
-------
$ python -m benchmarks --size smoke --json /tmp/b.json --md /tmp/b.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
UI_MODULES = ("IPython", "ipywidgets", "matplotlib")


def _versions() -> dict[str, str]:
    from importlib import metadata

    import numpy

    import vknb

    from . import peers

    out = {
        "vknb": vknb.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }
    try:
        out["vulkan (PyPI)"] = metadata.version("vulkan")
    except metadata.PackageNotFoundError:
        out["vulkan (PyPI)"] = "?"
    glslc = shutil.which("glslc")
    if glslc:
        try:
            first = subprocess.run(
                [glslc, "--version"], capture_output=True, text=True, timeout=30
            ).stdout.splitlines()
            out["glslc"] = first[0] if first else "?"
        except (OSError, subprocess.SubprocessError):
            out["glslc"] = "?"
    out["wgpu"] = peers.wgpu_status()[1]
    out["cupy"] = peers.cupy_status()[1]
    return out


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _this_cpu() -> int | None:
    """The CPU the calling thread last ran on (Linux), else None."""
    try:
        with open("/proc/thread-self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def _gpu_irq_cpus(text: str | None = None) -> list[int]:
    """The CPUs that served most of the GPU driver's interrupts (Linux ``/proc/interrupts``).

    A thread on one of them shares it with those interrupts: on the H100 host a synchronous call
    measured 52-64 µs there against 19-23 µs on any other CPU (``python -m
    benchmarks.probes.placement`` measures it per CPU).
    """
    if text is None:
        try:
            with open("/proc/interrupts") as f:
                text = f.read()
        except OSError:
            return []
    lines = text.splitlines()
    if not lines:
        return []
    ncpu = len(lines[0].split())
    counts = [0] * ncpu
    for line in lines[1:]:
        if not any(name in line for name in ("nvidia", "amdgpu", "i915")):
            continue
        fields = line.split()[1 : 1 + ncpu]
        for i, v in enumerate(fields):
            if v.isdigit():
                counts[i] += int(v)
    total = sum(counts)
    return [i for i, c in enumerate(counts) if total and c >= total / 10]


def _keep_off_irq_cpus(irq: list[int] | None = None) -> list[int]:
    """Keep this process off the CPUs that serve the GPU's interrupts (the threads it makes
    later inherit the mask); return those CPUs, or [] where nothing was changed.

    Left to the scheduler, the main thread moved onto the interrupt CPU in the middle of an H100
    run, and every row measured after that paid 5-50 µs more per synchronous call: a row then
    told where the thread ran, not what the code costs.
    """
    irq = _gpu_irq_cpus() if irq is None else irq
    if not irq or not hasattr(os, "sched_setaffinity"):
        return []
    allowed = os.sched_getaffinity(0)
    rest = allowed - set(irq)
    if not rest or rest == allowed:
        return []
    os.sched_setaffinity(0, rest)
    return irq


def _placement(start: int | None, kept_off: list[int] | None = None) -> str:
    end, irq = _this_cpu(), _gpu_irq_cpus()
    if start is None and end is None:
        return "unknown (not Linux)"
    text = f"main thread on CPU {start} at start, {end} at end"
    if kept_off:
        text += f"; kept off CPU {', '.join(map(str, kept_off))}, which serve the GPU's interrupts"
    elif irq:
        text += f"; GPU interrupts served by CPU {', '.join(map(str, irq))}"
        if start in irq or end in irq:
            text += " (the same CPU: synchronous calls pay for the interrupts)"
    return text


def _outputs(
    json_arg: Path | None, md_arg: Path | None, slug: str, size: str, only: list[str] | None
) -> tuple[Path | None, Path | None]:
    """Where a run is written: ``--json`` / ``--md`` where given (the markdown beside the JSON
    when only ``--json`` is), else ``results/<slug>-<size>.json`` / ``.md`` for a whole-suite
    run, overwriting that device's current result, and nowhere for a partial or smoke run.

    Example
    -------
    >>> [p.name for p in _outputs(None, None, "nvidia-h100-80gb-hbm3", "gpu", None)]
    ['nvidia-h100-80gb-hbm3-gpu.json', 'nvidia-h100-80gb-hbm3-gpu.md']
    >>> _outputs(None, None, "llvmpipe", "cpu", ["batch"]), _outputs(None, None, "x", "smoke", None)
    ((None, None), (None, None))
    """
    if json_arg is not None:
        return json_arg, md_arg or json_arg.with_suffix(".md")
    if only or size == "smoke":
        return None, md_arg
    return RESULTS / f"{slug}-{size}.json", md_arg or RESULTS / f"{slug}-{size}.md"


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return the exit code."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="vknb's benchmark suite: every row side by side with a raw `vulkan` baseline "
        "(and wgpu-py / CuPy when installed), checked against numpy before timing.",
    )
    ap.add_argument(
        "--size",
        choices=("smoke", "cpu", "gpu"),
        default=None,
        help="problem sizes (default: gpu on a GPU, cpu on a CPU driver)",
    )
    ap.add_argument("--json", type=Path, default=None, help="where to write the JSON")
    ap.add_argument("--md", type=Path, default=None, help="where to write the markdown")
    ap.add_argument("--repeat", type=int, default=None, help="timed repeats (median)")
    ap.add_argument(
        "--only",
        default=None,
        help="comma-separated groups: dispatch,batch,saxpy,transfer,compile,library,images",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)

    # A private cache: the cold-compile row clears it, and the user's must stay as it is.
    cache = tempfile.mkdtemp(prefix="vknb-bench-cache-")
    os.environ["VKNB_CACHE_DIR"] = cache
    os.environ.setdefault("CUPY_TF32", "0")  # before CuPy is imported: fp32 matmul without TF32
    t_start = time.perf_counter()
    load_start = _load()
    kept_off = _keep_off_irq_cpus()
    cpu_start = _this_cpu()
    try:
        import vknb

        from . import report
        from .suite import PRESETS, Suite

        dev = vknb.device()
        size = args.size or ("cpu" if dev.info.type == "cpu" else "gpu")
        only = [g.strip() for g in args.only.split(",")] if args.only else None
        if only:
            bad = [g for g in only if g not in Suite.GROUPS]
            if bad:
                ap.error(f"unknown group(s) {bad}; choose from {', '.join(Suite.GROUPS)}")

        def log(msg: str) -> None:
            if not args.quiet:
                print(msg, file=sys.stderr, flush=True)

        log(f"vknb benchmarks on {dev.info.name} ({dev.info.type}), --size {size}")
        suite = Suite(PRESETS[size], repeat=args.repeat, only=only, log=log)
        rows = suite.run()
        checks = [r for r in rows if r.check != "n/a" and not r.check.startswith("n/a")]
        passed = sum(r.check == "passed" for r in checks)
        now = _dt.datetime.now(_dt.timezone.utc)
        info = dev.info
        meta: dict[str, Any] = {
            "date": now.isoformat(timespec="seconds"),
            "size": size,
            "repeat": suite.repeat,
            "argv": sys.argv[1:] if argv is None else list(argv),
            "device": {
                "name": info.name,
                "type": info.type,
                "vendor": info.vendor,
                "driver": info.driver,
                "driver_info": info.driver_info,
                "api_version": info.api_version,
                "total_memory": info.total_memory,
            },
            "host": f"{platform.platform()}, {os.cpu_count()} CPUs, load average "
            f"{load_start} at start, {_load()} at end",
            "placement": _placement(cpu_start, kept_off),
            "versions": _versions(),
            "checks": f"{passed}/{len(checks)} checks against numpy passed"
            + (f"; FAILURES: {'; '.join(suite.failures)}" if suite.failures else ""),
            "failures": suite.failures,
            "method": "warm-up, then the median of the repeats (perf_counter_ns, GC paused); "
            "GPU times from timestamp queries; transfers best of 3 after a warm-up; "
            "every side checked against numpy before it is timed.",
            "runtime_s": time.perf_counter() - t_start,
            "ui_modules_imported": sorted(m for m in UI_MODULES if m in sys.modules),
        }
        json_path, md_path = _outputs(args.json, args.md, report.device_slug(info.name), size, only)
        report.write(meta, rows, json_path, md_path)
        print(report.to_markdown(meta, rows))
        written = [str(p) for p in (json_path, md_path) if p is not None]
        print(
            f"wrote {' and '.join(written)}"
            if written
            else "a partial or smoke run is not written to benchmarks/results/: "
            "pass --json / --md to keep it",
            file=sys.stderr,
        )
        dev.close()  # saves its pipeline cache into the private cache before it is removed
        return 1 if suite.failures else 0
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
