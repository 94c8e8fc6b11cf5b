"""Training progress: log lines, the bar, rank 0 only, the Param's validation."""

from __future__ import annotations

import io
import logging
import re

import pytest

from sparkae import Autoencoder
from sparkae.validation import validate
from sparkae.progress import EpochProgress, format_eta, resolve_mode

LINE = re.compile(r"epoch (\d+)/(\d+)  train_mse=[0-9.]+(  validation_mse=[0-9.]+)?  "
                  r"\d+ rows/s  ETA \d+:\d\d:\d\d$")


def _entry(epoch: int, valid: float = None) -> dict:
    return {"epoch": epoch, "train_mse": 0.5 / epoch, "validation_mse": valid, "rows": 1000,
            "seconds": 2.0, "rows_per_s": 500.0}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _epoch_lines(caplog) -> list:
    return [r.getMessage() for r in caplog.records
            if r.name == "sparkae" and r.getMessage().startswith("epoch ")]


def test_fit_with_progress_log_emits_one_line_per_epoch(small_dense, caplog):
    _, df = small_dense
    caplog.set_level(logging.INFO, logger="sparkae")
    Autoencoder(features_col="vec", hidden=[3], epochs=2, seed=1, progress="log").fit(
        df, validation_df=df)
    lines = _epoch_lines(caplog)
    assert len(lines) == 2, lines
    for i, line in enumerate(lines, start=1):
        m = LINE.match(line)
        assert m, line
        assert int(m.group(1)) == i and int(m.group(2)) == 2 and m.group(3)
    assert lines[-1].endswith("ETA 0:00:00")


def test_log_mode_eta_counts_the_epochs_left(caplog):
    caplog.set_level(logging.INFO, logger="sparkae")
    hook = EpochProgress("log", epochs=4)
    hook(_entry(1))
    hook(_entry(2, valid=0.3))
    hook.close()
    lines = _epoch_lines(caplog)
    assert lines[0].endswith("ETA 0:00:06") and lines[1].endswith("ETA 0:00:04")
    assert "validation_mse=0.300000" in lines[1] and "500 rows/s" in lines[0]
    assert all(LINE.match(line) for line in lines)


def test_bar_goes_to_the_given_stream_and_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="sparkae")
    out = io.StringIO()
    hook = EpochProgress("bar", epochs=3, stream=out)
    for epoch in (1, 2, 3):
        hook(_entry(epoch, valid=0.2))
    hook.close()
    text = out.getvalue()
    assert "3/3" in text and "mse=0.16667" in text and "val_mse=0.2" in text
    assert "rows/s=500" in text and "epoch" in text
    assert not _epoch_lines(caplog)


@pytest.mark.parametrize("mode", ["log", "bar", "auto"])
def test_ranks_other_than_0_stay_quiet(mode, caplog):
    caplog.set_level(logging.DEBUG, logger="sparkae")
    out = _Tty()
    hook = EpochProgress(mode, epochs=2, rank=1, stream=out)
    hook(_entry(1))
    hook(_entry(2))
    hook.close()
    assert out.getvalue() == "" and not caplog.records


def test_none_reports_nothing(caplog):
    caplog.set_level(logging.INFO, logger="sparkae")
    out = io.StringIO()
    hook = EpochProgress("none", epochs=1, stream=out)
    hook(_entry(1))
    assert out.getvalue() == "" and not caplog.records


def test_auto_picks_log_under_spark_submit_or_without_a_terminal(monkeypatch):
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert resolve_mode("auto", io.StringIO()) == "log"
    assert resolve_mode("auto", _Tty()) == "bar"
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "12345")
    assert resolve_mode("auto", _Tty()) == "log"
    assert resolve_mode("bar", io.StringIO()) == "bar"


def test_bar_without_tqdm_falls_back_to_log_lines(monkeypatch, caplog):
    import builtins

    real = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    caplog.set_level(logging.INFO, logger="sparkae")
    hook = EpochProgress("bar", epochs=1, stream=io.StringIO())
    hook(_entry(1))
    assert hook.mode == "log" and len(_epoch_lines(caplog)) == 1


def test_bad_progress_values_name_the_param():
    with pytest.raises(ValueError, match=r"'progress': got 'fancy', expected one of 'auto', "
                                         r"'bar', 'log', 'none'"):
        validate({"progress": "fancy"})
    with pytest.raises(ValueError, match=r"'progress': got 'fancy'"):
        resolve_mode("fancy")
    assert format_eta(3725) == "1:02:05" and format_eta(float("nan")) == "?"
