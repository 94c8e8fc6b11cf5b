"""Train an autoencoder, evaluate it, score the input and write model, scores and summary.

Usage::

    ./spark-submit.sh jobs/train.py [--config conf/default.yaml] [--set section.key=value ...]

With no arguments: local Spark, the bundled MNIST sample, a 100-unit Tanh autoencoder,
results under out/.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout

from sparkae.jobs.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main(__doc__))
