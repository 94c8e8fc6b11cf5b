"""Compatibility of :mod:`sparkae.spark_private` with the installed PySpark.

Every function there reaches into PySpark's private API; each is called here against a real
local session, so that a PySpark upgrade that moves one fails here, by name. Runs in the main
environment (PySpark 4.x) and in the legacy one (PySpark 3.5, ``scripts/test_legacy.sh``).
"""

from __future__ import annotations

import inspect
import operator
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

import sparkae.spark_private as spark_private


def test_every_function_is_checked_here():
    """A function added to spark_private needs its check in this file."""
    source = Path(__file__).read_text()
    names = [name for name, obj in vars(spark_private).items()
             if inspect.isfunction(obj) and obj.__module__ == spark_private.__name__
             and not name.startswith("_")]
    missing = [name for name in names if f"spark_private.{name}(" not in source]
    assert not missing, f"spark_private functions without a check here: {missing}"


# -- the JVM side of a classic session ------------------------------------------------------

def test_jvm_context_and_jvm(spark):
    assert spark_private.is_classic(spark)
    jsc = spark_private.jvm_context(spark)
    assert jsc.sc().appName() == spark.sparkContext.appName
    version = spark_private.jvm(spark).java.lang.System.getProperty("java.version")
    assert version


def test_no_jvm_is_said_so():
    class Connect:   # what a Spark Connect session looks like here: no sparkContext
        @property
        def sparkContext(self):
            raise RuntimeError("[JVM_ATTRIBUTE_NOT_SUPPORTED]")

    with pytest.raises(spark_private.NoJvmError):
        spark_private.jvm_context(Connect())
    with pytest.raises(spark_private.NoJvmError):
        spark_private.jvm(Connect())
    assert not spark_private.is_classic(Connect())
    assert spark_private.analyzed_plan(object()) is None


def test_hadoop_conf(spark):
    conf = spark_private.hadoop_conf(spark)
    assert str(conf.get("fs.defaultFS")).startswith("file:")
    assert conf.get("sparkae.no.such.key") is None


def test_scala_context_and_its_status(spark):
    sc = spark_private.scala_context(spark)
    assert sc.master() == spark.sparkContext.master
    infos = spark_private.executor_infos(spark)
    assert infos, "the driver is one of the executors"
    assert all(int(e.numRunningTasks()) >= 0 for e in infos)
    assert spark_private.max_concurrent_tasks(spark) >= 1


def test_analyzed_plan(spark):
    df = spark.range(5).selectExpr("id * 2 AS x")
    plan = spark_private.analyzed_plan(df)
    assert isinstance(plan, str) and "Range" in plan
    # canonicalized: the same query built twice has the same text, another query another
    assert spark_private.analyzed_plan(spark.range(5).selectExpr("id * 2 AS x")) == plan
    assert spark_private.analyzed_plan(spark.range(6).selectExpr("id * 2 AS x")) != plan


def test_collect_arrow(spark):
    batches = spark_private.collect_arrow(spark.range(7).selectExpr("id * 2 AS x"))
    assert sum(b.num_rows for b in batches) == 7
    assert sorted(v for b in batches for v in b.column(0).to_pylist()) == list(range(0, 14, 2))


def test_known_row_count(spark):
    rows = [(i, 2 * i) for i in range(9)]
    query = lambda: spark.createDataFrame(rows, "a long, b long")  # noqa: E731
    assert spark_private.known_row_count(query()) is None       # local rows: a job would tell
    assert spark_private.known_row_count(spark.range(9).selectExpr("id * 2 AS x")) == 9
    cached = query().cache()
    try:
        assert spark_private.known_row_count(cached) is None    # cached, not loaded yet
        cached.count()
        assert spark_private.known_row_count(cached) == 9
        assert spark_private.known_row_count(cached.select("b")) == 9    # a projection
        assert spark_private.known_row_count(cached.where("a > 3")) is None   # a filter
    finally:
        cached.unpersist()


def test_listed_files(spark, tmp_path):
    """A file scan's files as Spark listed them: URI, bytes and modification time (ms) as
    the file system has them; None for a plan that is not one file relation."""
    import os

    spark.range(20).selectExpr("id", "id * 2 AS x").coalesce(2).write.parquet(
        str(tmp_path / "t"))
    scan = spark.read.parquet(str(tmp_path / "t"))
    listed = spark_private.listed_files(scan)
    names = sorted(n for n in os.listdir(tmp_path / "t") if n.endswith(".parquet"))
    assert listed is not None and len(listed) == len(names) >= 1
    for uri, (size, mtime_ms) in listed.items():
        path = uri[len("file:"):]
        st = os.stat(path)
        assert os.path.basename(path) in names
        assert (size, mtime_ms) == (st.st_size, st.st_mtime_ns // 1_000_000)
    assert spark_private.listed_files(scan.cache()) == listed     # the cache's plan too
    scan.unpersist()
    assert spark_private.listed_files(scan.where("id > 3")) is None
    assert spark_private.listed_files(spark.range(3)) is None


# -- pyspark.ml -----------------------------------------------------------------------------

def test_dummy_parent():
    from pyspark.ml.param import Param, TypeConverters

    parent = spark_private.dummy_parent()
    param = Param(parent, "width", "a width", TypeConverters.toInt)
    assert param.parent == parent.uid


def test_reset_uid(spark):
    from pyspark.ml.feature import VectorAssembler

    assembler = VectorAssembler(inputCols=["a", "b"], outputCol="v")
    spark_private.reset_uid(assembler, "VectorAssembler_saved0001")
    assert assembler.uid == "VectorAssembler_saved0001"
    assert assembler.getParam("outputCol").parent == "VectorAssembler_saved0001"
    assert assembler.getOutputCol() == "v"


# -- TorchDistributor -----------------------------------------------------------------------

def test_torchrun_command_local_and_barrier(monkeypatch):
    cmd = spark_private.torchrun_command({"local_mode": True, "num_processes": 2},
                                         "/tmp/train.py", "--epochs", 3)
    assert cmd[0] == sys.executable and cmd[-3:] == ["/tmp/train.py", "--epochs", "3"]
    assert "pyspark.ml.torch.torch_run_process_wrapper" in cmd
    assert "--nproc_per_node=2" in cmd and "--standalone" in cmd
    # a barrier task: the rendezvous TorchDistributor set up in the task's environment
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.7")
    monkeypatch.setenv("MASTER_PORT", "29511")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cmd = spark_private.torchrun_command({"local_mode": False, "num_processes": 2},
                                         "/tmp/train.py")
    assert cmd[-1] == "/tmp/train.py"
    assert {"--nnodes=2", "--node_rank=1", "--rdzv_endpoint=10.0.0.7:29511",
            "--nproc_per_node=1"} <= set(cmd)


def test_execute_command_streams_and_reports_the_code(capsys):
    seen: List[str] = []
    code, tail = spark_private.execute_command(
        [sys.executable, "-c", "import sys; print('one'); sys.stdout.flush(); "
         "sys.stdout.buffer.write(b'two \\xff\\n'); sys.exit(3)"],
        on_line=seen.append, tail_lines=1)
    assert code == 3   # returned, not raised
    assert seen == ["one\n", "two \ufffd\n"]
    assert tail == "two \ufffd\n"
    assert capsys.readouterr().out == "one\ntwo \ufffd\n"


class _LogServer:
    """A loopback server for TorchDistributor's LogStreamingClient (length-prefixed UTF-8
    messages), which keeps what it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.messages: List[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rb") as f:
            while True:
                head = f.read(4)
                if len(head) < 4:
                    return
                self.messages.append(f.read(struct.unpack(">i", head)[0]).decode("utf-8"))


def test_execute_command_sends_to_the_log_streaming_client(capsys):
    from pyspark.ml.torch.log_communication import LogStreamingClient

    server = _LogServer()
    client = LogStreamingClient("127.0.0.1", server.port)
    code, _ = spark_private.execute_command(
        [sys.executable, "-c", "print('alpha'); print('beta')"], client)
    client.close()
    server.thread.join(timeout=10)
    server.sock.close()
    assert code == 0 and server.messages == ["alpha", "beta"]
    # the first line goes to stdout too (the client had not connected yet); once it knows
    # the server is on this host, the server prints the lines instead
    assert capsys.readouterr().out == "alpha\n"


def test_run_distributor_with_our_runner_in_local_mode(spark):
    from pyspark.ml.torch.distributor import TorchDistributor

    calls: List[Dict[str, Any]] = []

    def runner(input_params: Dict[str, Any], train_path: str, *args: Any) -> None:
        calls.append(dict(input_params, train_path=train_path, args=args))
        code, tail = spark_private.execute_command([sys.executable, train_path])
        assert code == 0, tail

    distributor = TorchDistributor(num_processes=1, local_mode=True, use_gpu=False)
    assert spark_private.run_distributor(distributor, operator.add, runner, 2, 3) == 5
    assert len(calls) == 1
    assert calls[0]["local_mode"] is True and calls[0]["num_processes"] == 1
    assert calls[0]["train_path"].endswith(".py") and calls[0]["args"] == ()


def test_drop_python_includes(spark):
    """The files PySpark sends to the Python workers as path entries lose the named ones."""
    sc = spark.sparkContext
    saved = list(sc._python_includes)
    try:
        sc._python_includes[:] = saved + ["org.example_sdk-1.0.jar", "helpers.zip"]
        spark_private.drop_python_includes(spark, ["org.example_sdk-1.0.jar"])
        assert sc._python_includes == saved + ["helpers.zip"]
        spark_private.drop_python_includes(spark, [])
        assert sc._python_includes == saved + ["helpers.zip"]
    finally:
        sc._python_includes[:] = saved
