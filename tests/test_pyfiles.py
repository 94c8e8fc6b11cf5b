"""Jars that Spark lists as Python files but that hold no Python come off the Python path
(sparkae.io.pyfiles); those that hold Python stay. Real zip files, no Spark; the session
with S3A's jars is checked in tests/test_s3a.py."""

from __future__ import annotations

import json
import os
import sys
import zipfile

import pytest

from sparkae.io import pyfiles


def _jar(path, names):
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            z.writestr(name, b"x")
    return str(path)


@pytest.fixture
def jars(tmp_path, monkeypatch):
    monkeypatch.setattr(pyfiles, "_CACHE", str(tmp_path / "cache" / "jar-python.json"))
    java = _jar(tmp_path / "org.example_sdk-1.0.jar", ["META-INF/MANIFEST.MF", "a/B.class",
                                                      "lib/native.so"])
    python = _jar(tmp_path / "io.delta_delta-spark-4.4.0.jar", ["delta/__init__.py",
                                                               "io/delta/X.class"])
    return java, python


def test_only_jars_without_python_modules_are_named(jars, tmp_path):
    java, python = jars
    broken = tmp_path / "broken.jar"
    broken.write_bytes(b"not a zip")
    assert not pyfiles.holds_python(java)          # a native library is no Python module
    assert pyfiles.holds_python(python)
    assert pyfiles.holds_python(str(broken))       # unreadable: left as Spark put it
    plain = str(tmp_path)
    assert pyfiles.python_free([java, python, str(broken), plain, "/nowhere/x.jar"]) == {java}
    known = json.loads(open(pyfiles._CACHE).read())
    assert known == {"org.example_sdk-1.0.jar:" + str(os.path.getsize(java)): False,
                     "io.delta_delta-spark-4.4.0.jar:" + str(os.path.getsize(python)): True,
                     "broken.jar:9": True}


def test_scans_are_remembered_by_name_and_size(jars, tmp_path, monkeypatch):
    java, _ = jars
    assert pyfiles.python_free([java]) == {java}
    copy = tmp_path / "files"
    copy.mkdir()
    copied = str(copy / os.path.basename(java))   # the driver's SparkFiles copy
    with open(java, "rb") as src, open(copied, "wb") as dst:
        dst.write(src.read())
    monkeypatch.setattr(pyfiles, "holds_python", lambda path: pytest.fail("scanned again"))
    assert pyfiles.python_free([copied]) == {copied}


def test_the_python_path_and_file_settings_lose_only_the_java_jars(jars, tmp_path, monkeypatch):
    java, python = jars
    monkeypatch.setattr(sys, "path", [str(tmp_path), java, python])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([java, python, str(tmp_path)]))
    assert pyfiles.prune_python_path() == [os.path.basename(java)]
    assert sys.path == [str(tmp_path), python]
    assert os.environ["PYTHONPATH"] == os.pathsep.join([python, str(tmp_path)])
    assert pyfiles.prune_python_path() == []
    user_jar = _jar(tmp_path / "users-own.jar", ["a/C.class"])   # given as a plain file
    assert pyfiles.prune_submitted(f"{java},{python}",
                                   f"{java},{python},/data/lookup.csv,{user_jar}") == \
        (python, f"{python},/data/lookup.csv,{user_jar}")
    assert pyfiles.prune_submitted("", "") == ("", "")
