"""sparkae benchmarks against the systems users would pick instead (H2O-3, PCA, PyOD, plain
Torch), the machine itself, and data size.

``python -m bench NAME [--quick]`` runs one entry (``all``: every entry but the ``load``
soak test and the ``loaders`` comparison (it needs the legacy environment), which run only
by name, in under 30 minutes on 2 quiet cores; ``smoke``: the
quick subset CI runs; ``list``; ``report``: only regenerate ``BENCHMARKS.md``). An entry
is a module ``bench/bench_NAME.py`` with ``def run(quick: bool = False) -> dict``; the
harness (:mod:`bench.harness`) finds it, records the machine, versions, date and load
around the run in ``bench/results/NAME-DATE[-quick].json`` and regenerates
``BENCHMARKS.md`` and ``bench/charts/*.png`` (:mod:`bench.report`).
"""
