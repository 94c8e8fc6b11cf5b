"""Score a table with a saved model and write one run-date partition of the scores.

Usage::

    ./spark-submit.sh jobs/score.py --model out/model --input data/events.parquet \\
        --output scores/ --id-cols id [--outputs reconstruction_mse,is_anomaly] \\
        [--run-date 2024-06-01] [--config conf/score.yaml] [--set section.key=value ...]

Re-running a date replaces exactly that partition; a failed run leaves every partition as
it was, exits non-zero and says why on stderr. A run summary (JSON) is written beside the
output.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

from sparkae import score_config  # noqa: E402
from sparkae.config import setup_logging  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="jobs/score.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (section.key = default):\n" + score_config.describe_defaults())
    parser.add_argument("--config", default=os.path.join(os.path.dirname(HERE), "conf",
                                                         "score.yaml"),
                        help="YAML config (default: conf/score.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting; VALUE is YAML (repeatable)")
    parser.add_argument("--model", help="model directory (model.path)")
    parser.add_argument("--input", help="Parquet path, Delta path or catalog table (input.path)")
    parser.add_argument("--output", help="output directory or catalog table (output.path)")
    parser.add_argument("--id-cols", help="comma-separated columns carried into the output "
                                          "(input.id_cols)")
    parser.add_argument("--outputs", help="comma-separated score columns (scoring.outputs): "
                                          "deep_features, reconstruction_mse, feature_errors, "
                                          "reconstruction, is_anomaly")
    parser.add_argument("--run-date", help="YYYY-MM-DD partition to write (run.date); "
                                           "default today")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level)
    flags = {k: getattr(args, k) for k in score_config.FLAGS}
    try:
        settings = score_config.load(args.config, args.set, flags)
    except (ValueError, FileNotFoundError) as exc:
        print(f"score: {exc}", file=sys.stderr)
        return 2
    from sparkae.io.uri import parse
    from sparkae.nightly import describe_error, format_summary, load_model, run_score
    from sparkae.session import get_session

    model = None
    try:
        # a local model before Spark starts: fail fast. One on a file system (s3a://, ...)
        # after: its settings (spark.hadoop.fs.s3a.endpoint, ...) come with the session
        if parse(settings["model"]["path"], "model.path").is_local:
            model = load_model(settings["model"]["path"])
    except (ValueError, FileNotFoundError) as exc:
        print(f"score: failed: {describe_error(exc)}", file=sys.stderr)
        return 1
    spark = get_session(settings["spark"]["master"], settings["spark"]["app_name"],
                        settings["spark"]["conf"])
    try:
        summary = run_score(spark, settings, model)
    except Exception as exc:  # every failure: one line on stderr, non-zero exit
        logging.getLogger("sparkae").debug("scoring failed", exc_info=True)
        print(f"score: failed: {describe_error(exc)}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
