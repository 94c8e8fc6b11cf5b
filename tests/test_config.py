"""YAML configs, --set overrides and their errors."""

from __future__ import annotations

import pytest

from sparkae.jobs import train_settings as config
from tests.conftest import ROOT


def test_default_config_file_and_overrides():
    s = config.load(str(ROOT / "conf" / "default.yaml"),
                    ["model.epochs=1", "model.hidden=[300, 100, 300]", "output.dir=/tmp/x",
                     "spark.conf.spark.sql.shuffle.partitions=4"])
    assert s["model"]["epochs"] == 1 and s["model"]["hidden"] == [300, 100, 300]
    assert s["model"]["activation"] == "tanh" and s["model"]["seed"] == 123
    assert s["output"]["dir"] == "/tmp/x"
    assert s["spark"]["conf"] == {"spark.sql.shuffle.partitions": 4}
    assert s["evaluation"] == {"source": "split", "fraction": 0.2, "path": None, "images": None,
                               "labels": None, "format": "auto", "version": None,
                               "timestamp": None}


def test_every_shipped_training_config_loads():
    paths = [p for p in sorted((ROOT / "conf").glob("*.yaml"))
             if not p.name.startswith(("score", "grid"))]
    assert len(paths) >= 7
    for path in paths:
        config.load(str(path))
    sparse = config.load(str(ROOT / "conf" / "sparse.yaml"))["model"]
    assert sparse["average_activation"] == -0.1 and sparse["sparsity_beta"] == 0.01
    noisy = config.load(str(ROOT / "conf" / "denoising.yaml"))["input"]["corrupt"]
    assert noisy == {"kind": "gaussian", "level": 50.0, "seed": 1}


def test_defaults_alone():
    s = config.load()
    assert s["model"]["hidden"] == [100] and s["input"]["source"] == "sample"


@pytest.mark.parametrize("overrides, message", [
    (["model.hiden=[5]"], r"unknown setting 'hiden'; did you mean 'hidden'\?"),
    (["modle.epochs=1"], r"unknown setting 'modle'; did you mean 'model'\?"),
    (["model.epochs=0"], r"'epochs': got 0, expected an integer >= 1"),
    (["model.hidden=ten"], r'model: Invalid param value given for param "hidden"'),
    (["epochs=3"], r"--set: key 'epochs' must name a section and a setting"),
    (["model.epochs"], r"--set: got 'model.epochs', expected section.key=value"),
    (["evaluation.fraction=1.5"], r"evaluation.fraction: got 1.5, expected a number in \(0, 1\)"),
    (["input.source=csv"], r"input.source: got 'csv', expected one of sample, mnist_idx"),
    (["input.source=parquet"], r"input: source parquet needs input.path"),
    (["evaluation.source=mnist_idx"], r"evaluation: source mnist_idx needs evaluation.images"),
    (["input.corrupt={kind: gaussian}"], r"input.corrupt: needs kind .* and level"),
    (["input.corrupt={kind: gaussian, levle: 1}"], r"unknown setting 'levle'; did you mean "
                                                   r"'level'\?"),
])
def test_bad_overrides(overrides, message):
    with pytest.raises(ValueError, match=message):
        config.load(None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config file '.*nope.yaml' does not exist"):
        config.load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        config.load(str(bad))
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        config.load(str(unsafe))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("model:\n  hidden: [10]\n  activaton: tanh\n")
    with pytest.raises(ValueError, match=r"section 'model': unknown setting 'activaton'; did you "
                                         r"mean 'activation'\?"):
        config.load(str(wrong))


def test_help_lists_every_setting_with_its_default():
    text = config.describe_defaults()
    assert "model.hidden = [100]" in text and "evaluation.fraction = 0.2" in text
    assert "model.mini_batch_size = 64" in text and "output.dir = out" in text
