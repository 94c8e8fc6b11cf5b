"""The command lines of ``jobs/train.py``, ``jobs/score.py`` and ``jobs/tune.py``.

Every job takes ``--config FILE`` (YAML), ``--set section.key=value`` (repeatable),
``--log-level`` and ``--help`` (which lists every setting with its default). Exit codes:
0 done, 1 the run failed (one line on stderr says why), 2 bad settings or a missing tool,
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sparkae.jobs.settings import setup_logging

log = logging.getLogger("sparkae")

#: The checkout's conf/ folder (the jobs' default configs).
CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "conf")

Flag = Tuple[str, Dict[str, Any]]


def build_parser(prog: str, doc: str, default_config: str, settings_help: str,
                 flags: Sequence[Flag] = ()) -> argparse.ArgumentParser:
    """A job's parser: its own ``flags`` plus ``--config``, ``--set`` and ``--log-level``.

    Parameters
    ----------
    prog : str
        The script, e.g. ``jobs/train.py``.
    doc : str
        The script's docstring; its first paragraph is the description.
    default_config : str
        The file under ``conf/`` read when ``--config`` is not given.
    settings_help : str
        Every setting with its default (the job's ``describe_defaults()``).
    flags : sequence of (name, argparse keywords)
        The job's direct flags.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (section.key = default):\n" + settings_help)
    parser.add_argument("--config", default=os.path.join(CONF_DIR, default_config),
                        help=f"YAML config (default: conf/{default_config})")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting; VALUE is YAML (repeatable)")
    for name, kwargs in flags:
        parser.add_argument(name, **kwargs)
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def _session(settings: Dict[str, Any]) -> Any:
    from sparkae.session import get_session

    spark = settings["spark"]
    return get_session(spark["master"], spark["app_name"], spark["conf"])


def _in_session(settings: Dict[str, Any], body: Callable[[Any], Any],
                failed: Callable[[BaseException], Optional[str]]) -> Tuple[Any, int]:
    """Run ``body(spark)`` in the job's session, stopped after; ``failed(exc)`` turns an
    error into the line printed on stderr (None: not handled, re-raised). Returns
    ``(result, 0)`` or ``(None, 1)``."""
    spark = _session(settings)
    try:
        return body(spark), 0
    except Exception as exc:  # noqa: BLE001 - the job decides which errors are a failure
        line = failed(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return None, 1
    finally:
        spark.stop()


def _load(name: str, load: Callable[[], Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    try:
        return load()
    except (ValueError, FileNotFoundError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return None


def train_main(doc: str, argv: Optional[List[str]] = None) -> int:
    """``jobs/train.py``: train, evaluate, score the input, write model and report."""
    from sparkae.jobs import train_settings

    args = build_parser("jobs/train.py", doc, "default.yaml",
                        train_settings.describe_defaults(), [
        ("--resume", {"action": "store_true",
                      "help": "continue from the newest complete checkpoint in "
                              "model.checkpoint_dir (after a crash or a killed run)"})]
    ).parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level)
    settings = _load("train", lambda: train_settings.load(args.config, args.set))
    if settings is None:
        return 2
    from sparkae.jobs.train_job import format_summary, run_train
    from sparkae.train.distributed import RankFailedError

    summary, rc = _in_session(
        settings, lambda spark: run_train(spark, settings, resume=args.resume),
        lambda exc: f"train: {exc}" if isinstance(exc, (ValueError, OSError, RankFailedError))
        else None)
    if rc == 0:
        print(format_summary(summary))
    return rc


def score_main(doc: str, argv: Optional[List[str]] = None) -> int:
    """``jobs/score.py``: score a table with a saved model, write one date partition."""
    from sparkae.jobs import score_settings

    args = build_parser("jobs/score.py", doc, "score.yaml", score_settings.describe_defaults(), [
        ("--model", {"help": "model directory (model.path)"}),
        ("--input", {"help": "Parquet path, Delta path or catalog table (input.path)"}),
        ("--output", {"help": "output directory or catalog table (output.path)"}),
        ("--id-cols", {"help": "comma-separated columns carried into the output "
                               "(input.id_cols)"}),
        ("--outputs", {"help": "comma-separated score columns (scoring.outputs): "
                               "deep_features, reconstruction_mse, feature_errors, "
                               "reconstruction, is_anomaly"}),
        ("--run-date", {"help": "YYYY-MM-DD partition to write (run.date); default today"})]
    ).parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level)
    flags = {k: getattr(args, k) for k in score_settings.FLAGS}
    settings = _load("score", lambda: score_settings.load(args.config, args.set, flags))
    if settings is None:
        return 2
    from sparkae.io.uri import parse
    from sparkae.jobs.score_job import describe_error, format_summary, load_model, run_score

    model = None
    try:
        # a local model before Spark starts: fail fast. One on a file system (s3a://, ...)
        # after: its settings (spark.hadoop.fs.s3a.endpoint, ...) come with the session
        if parse(settings["model"]["path"], "model.path").is_local:
            model = load_model(settings["model"]["path"])
    except (ValueError, FileNotFoundError) as exc:
        print(f"score: failed: {describe_error(exc)}", file=sys.stderr)
        return 1
    def failed(exc: BaseException) -> str:   # every failure: one line, non-zero exit
        log.debug("scoring failed", exc_info=True)
        return f"score: failed: {describe_error(exc)}"

    summary, rc = _in_session(settings, lambda spark: run_score(spark, settings, model), failed)
    if rc == 0:
        print(format_summary(summary))
    return rc


def tune_main(doc: str, argv: Optional[List[str]] = None) -> int:
    """``jobs/tune.py``: a Ray Tune grid; leaderboard, report and the best model."""
    from sparkae.jobs import tune_settings

    args = build_parser("jobs/tune.py", doc, "grid_hidden.yaml",
                        tune_settings.describe_defaults()
                        ).parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level, quiet=("py4j", "pyspark", "ray", "filelock"))
    settings = _load("tune", lambda: tune_settings.load(args.config, args.set))
    if settings is None:
        return 2
    if importlib.util.find_spec("ray") is None:  # imported by the trials, not here
        print('tune: Ray Tune is not installed; pip install "ray[tune]>=2.9"', file=sys.stderr)
        return 2
    from sparkae.jobs import tune_job

    try:
        summary, rc = _in_session(
            settings, lambda spark: tune_job.run(spark, settings),
            lambda exc: f"tune: {exc}" if isinstance(
                exc, (ValueError, FileNotFoundError, FileExistsError)) else None)
    except KeyboardInterrupt as exc:
        print(f"tune: {exc or 'interrupted'} (rerun the same command: finished trials are "
              "kept)", file=sys.stderr)
        return 130
    if rc:
        return rc
    print(tune_job.format_summary(summary))
    return 0 if summary["best_model"] else 1
