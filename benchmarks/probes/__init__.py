"""Probes: measurements the benchmark suite (``python -m benchmarks``) does not make.

Each runs from the repository root as a module and uses vknb's public API only:

* ``python -m benchmarks.probes.coopmat [SIZE]``: tile configurations of the fp16
  tensor-core matmul (``matmul_fp16_coopmat.comp``), each timed next to CuPy's fp16 GEMM;
* ``python -m benchmarks.probes.placement [--cpus LIST]``: the synchronous call's latency in
  one process pinned to each CPU, with the CPUs that serve the GPU's interrupts marked.

The findings that decided vknb's design are in ``docs/performance.md``.
"""
