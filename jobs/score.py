"""Score a table with a saved model and write one run-date partition of the scores.

Usage::

    ./spark-submit.sh jobs/score.py --model out/model --input data/events.parquet \\
        --output scores/ --id-cols id [--outputs reconstruction_mse,is_anomaly] \\
        [--run-date 2024-06-01] [--config conf/score.yaml] [--set section.key=value ...]

Re-running a date replaces exactly that partition; a failed run leaves every partition as
it was, exits non-zero and says why on stderr. A run summary (JSON) is written beside the
output.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout

from sparkae.jobs.cli import score_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(score_main(__doc__))
