"""Search a grid of autoencoder settings with Ray Tune; write a leaderboard and the best model.

Usage::

    ./spark-submit.sh jobs/tune.py --config conf/grid_hidden.yaml [--set section.key=value ...]

Each trial fits one Autoencoder (the ``model`` section, overridden by one combination of
the ``grid`` section) in a Ray worker: a local Ray on 127.0.0.1 for a local master, Ray on
Spark for a cluster. Results under ``output.dir``: leaderboard.csv, leaderboard.md,
leaderboard.png, report.html, best_params.json, best_model/. Running it again resumes the grid.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout

from sparkae.jobs.cli import tune_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(tune_main(__doc__))
