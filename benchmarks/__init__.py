"""vknb's benchmark suite: ``python -m benchmarks [--size smoke|cpu|gpu]``.

Every row is measured side by side in one process: vknb through its public API, a minimal
runtime written directly on the ``vulkan`` binding (:mod:`benchmarks.raw_vulkan`), and, when
installed, wgpu-py and CuPy.  Results are checked against numpy before they are timed.  See
:mod:`benchmarks.suite` for the rows and :mod:`benchmarks.report` for the outputs.

Example
-------
>>> from benchmarks import suite                                    # doctest: +SKIP
>>> rows = suite.run_all(suite.PRESETS["smoke"])                    # doctest: +SKIP
"""
