"""Every job's --help lists every setting with its default (no Spark is started)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from sparkae.jobs import score_settings, train_settings, tune_settings
from tests.conftest import ROOT


def _help(job: str) -> str:
    proc = subprocess.run([sys.executable, f"jobs/{job}.py", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _expected(defaults: dict, model: bool) -> list:
    lines = []
    for section, values in defaults.items():
        if section == "model" and model:
            values = train_settings.model_defaults()
        for key, value in values.items():
            lines.append(f"  {section}.{key} = {_flow(value)}")
    return lines


@pytest.mark.parametrize("job, defaults", [("train", train_settings.DEFAULTS),
                                           ("score", score_settings.DEFAULTS),
                                           ("tune", tune_settings.DEFAULTS)])
def test_help_lists_every_setting_and_its_default(job, defaults):
    text = _help(job).splitlines()
    expected = _expected(defaults, model=job != "score")
    missing = [line for line in expected if line not in text]
    assert not missing, f"jobs/{job}.py --help lacks: {missing}"
    assert "--set SECTION.KEY=VALUE" in "\n".join(text)
    if job != "score":   # every Autoencoder Param, by name, with its default
        for name, value in train_settings.model_defaults().items():
            assert f"  model.{name} = {_flow(value)}" in text, name
        assert "  model.progress = auto" in text and "  model.hidden = [100]" in text
    if job == "tune":
        assert "  grid.<Autoencoder Param> = [candidates] (list-valued Params: a list of lists)" \
            in text
