"""The jobs' glue: settings, command lines and the runs behind ``jobs/*.py``.

``jobs/train.py``, ``jobs/score.py`` and ``jobs/tune.py`` are thin entry points into
:mod:`sparkae.jobs.cli`. The library (``sparkae`` outside this package) never imports it.
"""
