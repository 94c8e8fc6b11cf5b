"""Search a grid of autoencoder settings with Ray Tune; write a leaderboard and the best model.

Usage::

    ./spark-submit.sh jobs/tune.py --config conf/grid_hidden.yaml [--set section.key=value ...]

Each trial fits one Autoencoder (the ``model`` section, overridden by one combination of
the ``grid`` section) in a Ray worker: a local Ray on 127.0.0.1 for a local master, Ray on
Spark for a cluster. Results under ``output.dir``: leaderboard.csv, leaderboard.md,
leaderboard.png, report.html, best_params.json, best_model/. Running it again resumes the grid.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

from sparkae import tune_config  # noqa: E402
from sparkae.config import setup_logging  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="jobs/tune.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (section.key = default):\n" + tune_config.describe_defaults())
    parser.add_argument("--config", default=os.path.join(os.path.dirname(HERE), "conf",
                                                         "grid_hidden.yaml"),
                        help="YAML config (default: conf/grid_hidden.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting; VALUE is YAML (repeatable)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level, quiet=("py4j", "pyspark", "ray", "filelock"))
    try:
        settings = tune_config.load(args.config, args.set)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tune: {exc}", file=sys.stderr)
        return 2
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not imported here: see sparkae.tune.ray_for
        print('tune: Ray Tune is not installed; pip install "ray[tune]>=2.9"', file=sys.stderr)
        return 2
    from sparkae.session import get_session

    spark = get_session(settings["spark"]["master"], settings["spark"]["app_name"],
                        settings["spark"]["conf"])
    try:
        summary = tune_config.run(spark, settings)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"tune: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"tune: {exc or 'interrupted'} (rerun the same command: finished trials are "
              "kept)", file=sys.stderr)
        return 130
    finally:
        spark.stop()
    print(tune_config.format_summary(summary))
    return 0 if summary["best_model"] else 1


if __name__ == "__main__":
    sys.exit(main())
