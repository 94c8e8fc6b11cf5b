"""Train an autoencoder, evaluate it, score the input and write model, scores and summary.

Usage::

    ./spark-submit.sh jobs/train.py [--config conf/default.yaml] [--set section.key=value ...]

With no arguments: local Spark, the bundled MNIST sample, a 100-unit Tanh autoencoder,
results under out/.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

from sparkae import config  # noqa: E402
from sparkae.config import setup_logging  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="jobs/train.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (section.key = default):\n" + config.describe_defaults())
    parser.add_argument("--config", default=os.path.join(os.path.dirname(HERE), "conf",
                                                         "default.yaml"),
                        help="YAML config (default: conf/default.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting; VALUE is YAML (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete checkpoint in "
                             "model.checkpoint_dir (after a crash or a killed run)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level)
    try:
        settings = config.load(args.config, args.set)
    except (ValueError, FileNotFoundError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    from sparkae.runner import format_summary, run_train
    from sparkae.train.distributed import RankFailedError
    from sparkae.session import get_session

    spark = get_session(settings["spark"]["master"], settings["spark"]["app_name"],
                        settings["spark"]["conf"])
    try:
        summary = run_train(spark, settings, resume=args.resume)
    except (ValueError, OSError, RankFailedError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
