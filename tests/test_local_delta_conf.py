"""Delta's snapshot partitions on a local master: sized to its cores by get_session's
settings and by spark-submit.sh's (read from ``sparkae/io/jars.py conf MASTER``), unless
the user sets them; nothing without Delta or on a cluster master. No Spark started."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sparkae.io import jars
from sparkae.session import LOOPBACK_CONF, local_settings
from tests.conftest import ROOT, unavailable

KEY = jars.SNAPSHOT_PARTITIONS_KEY


@pytest.mark.parametrize("master, cores", [
    ("local", 1), ("local[3]", 3), ("local[*]", 6), ("local[4,2]", 4), ("local[*, 3]", 6),
    (" local[2] ", 2), ("local[0]", None), ("local-cluster[2,1,1024]", None),
    ("spark://127.0.0.1:7077", None), ("yarn", None), ("k8s://https://h:443", None),
    (None, None)])
def test_local_cores(master, cores):
    assert jars.local_cores(master, cpu_count=6) == cores


def test_local_star_uses_the_usable_cpus():
    want = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert jars.local_cores("local[*]") == want


def _jars_dir(tmp_path, spark_version):
    folder = tmp_path / f"jars-{spark_version}"
    folder.mkdir()
    for name in (f"spark-core_2.13-{spark_version}.jar", "hadoop-client-api-3.4.1.jar"):
        (folder / name).write_bytes(b"")
    return str(folder)


def test_get_session_sizes_delta_snapshots_for_a_local_master(tmp_path):
    with_delta, no_delta = _jars_dir(tmp_path, "4.2.0"), _jars_dir(tmp_path, "4.3.0")
    on, off = {}, {"SPARKAE_NO_PACKAGES": "1"}

    def settings(master, conf=None, environ=on, jars_dir=with_delta):
        return local_settings(master, conf, environ=environ, jars_dir=jars_dir)

    out = settings("local[3]")
    assert out[KEY] == "3" and "io.delta" in out[jars.PACKAGES_KEY]
    assert {k: out[k] for k in LOOPBACK_CONF} == LOOPBACK_CONF
    assert settings("local[2]", {KEY: 7})[KEY] == 7                     # the user's value wins
    assert settings("local[2]", {"spark.master": "local[5]"})[KEY] == "5"   # conf's master wins
    assert settings("local")[KEY] == "1"
    assert KEY not in settings("spark://127.0.0.1:7077")                # a cluster: Delta's own
    assert KEY not in settings("local[2]", environ=off)                  # no Delta added
    assert settings("local[2]", {"a": 1}, environ=off) == dict(LOOPBACK_CONF, a=1)
    assert KEY not in settings("local[2]", jars_dir=no_delta)          # no Delta for Spark 4.3
    assert jars.with_packages({}, environ=on, jars_dir=with_delta).get(KEY) is None  # no master


def test_jars_py_conf_prints_it_for_a_local_master():
    """What spark-submit.sh passes as --conf (before the user's arguments, so a --conf of
    the user's wins); tests/test_delta.py's killed run checks that a real spark-submit got
    it."""
    env = {k: v for k, v in os.environ.items() if k != "SPARKAE_NO_PACKAGES"}

    def conf(master, **extra):
        proc = subprocess.run([sys.executable, "sparkae/io/jars.py", "conf", master], cwd=ROOT,
                              env=dict(env, **extra), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    if jars.delta_package() is None:
        unavailable("this Spark has no Delta release")
    assert f"{KEY}=3" in conf("local[3]")
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in conf("local[3]")
    assert not any(line.startswith(KEY) for line in conf("spark://127.0.0.1:7077"))
    assert conf("local[3]", SPARKAE_NO_PACKAGES="1") == []
