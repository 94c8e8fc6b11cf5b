"""sparkae benchmarks against the systems users would pick instead (H2O-3, PCA, PyOD, plain
Torch), the machine itself, and data size.

``python -m bench NAME [--quick]`` runs one entry (``all``: every entry but those that
run only by name -- the ``load`` soak test, the ``loaders`` comparison (it needs the legacy
environment), ``anomaly_scale``, ``h2o_large``, ``anomaly_odds`` and ``gpu`` -- in under
30 minutes on 2 quiet cores; ``smoke``: the
quick subset CI runs; ``list``; ``report``: only regenerate ``BENCHMARKS.md``). An entry
is a module ``bench/bench_NAME.py`` with ``def run(quick: bool = False) -> dict``; the
harness (:mod:`bench.harness`) finds it, records the machine, versions, date and load
around the run in ``bench/results/NAME-DATE[-quick].json`` and regenerates
``BENCHMARKS.md`` and ``bench/charts/*.png`` (:mod:`bench.report`).
"""
