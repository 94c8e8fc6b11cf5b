"""Replace one date partition of a scored table, all or nothing.

Three destinations:

- :class:`PathPartitions`, a Parquet directory laid out as ``<root>/<col>=<value>/``.
  A run writes into ``<root>/_staging/<col>=<value>.<id>/`` (Spark's readers skip names
  that start with ``_``) -- through Spark's writer, or through the Python workers
  (:meth:`PathPartitions.write_with`, :mod:`sparkae.scoring.parquet_files`) -- and only
  after the write job has succeeded moves the directory
  into place with two renames: the live partition (if any) to
  ``<root>/_replaced/<col>=<value>.<id>``, then the staged one to ``<root>/<col>=<value>``.
  A reader therefore sees the old partition, then (for the instant between the renames)
  none, then the new one; never a partial or doubled one. A failed write leaves only
  hidden staging files, which are moved aside in one rename (so that a task of the failed
  job still running cannot write into them) and deleted; a run killed between the two
  renames leaves
  the old partition under ``_replaced``, and the next run (or :meth:`recover`) puts it
  back. Renames are atomic on local and HDFS file systems, not on object stores (S3,
  GCS): write to a catalog table there.
- :class:`TablePartitions`, a catalog table partitioned by the column:
  ``INSERT OVERWRITE TABLE t PARTITION (run_date = DATE'...') SELECT ...`` replaces that
  one partition and no other, whatever ``spark.sql.sources.partitionOverwriteMode`` says
  (the ``partitionOverwriteMode`` write option is not honoured by ``insertInto``: measured
  on Spark 4.3, a static overwrite dropped the other dates). Spark stages the files and
  moves them at job commit, so a failed job leaves the table as it was. A table that does
  not exist yet is created (``saveAsTable``, partitioned by the column).
- :class:`DeltaPartitions`, a Delta table by path or catalog name: one overwrite with
  ``replaceWhere`` (``run_date = DATE'...'``) replaces that date's rows in a single commit,
  so readers see the previous version until the commit and a killed run leaves the table
  at its previous version (its unreferenced files are removed by ``VACUUM``). The schema
  of the run is compared with the table's first: a mismatch fails unless
  ``schema_mode="merge"`` (Delta's ``mergeSchema``). ``optimize=True`` compacts the written
  partition (``OPTIMIZE ... WHERE``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Tuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

import sparkae.delta as delta
from sparkae.tables import looks_like_table
from sparkae.io.dirs import LocalFiles, files_for
from sparkae.io.uri import parse

log = logging.getLogger("sparkae")

STAGING, REPLACED = "_staging", "_replaced"


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


class PathPartitions:
    """A Parquet directory partitioned by ``column``; see the module docstring.

    Parameters
    ----------
    spark : SparkSession
    root : str
        The table's directory (created when missing).
    column : str
        The partition column, e.g. ``run_date``.
    """

    def __init__(self, spark: SparkSession, root: str, column: str) -> None:
        self.root = parse(root, "output.path").text   # file:/x -> /x: local files, local ops
        self.column = column
        self.files = files_for(spark, self.root, "output.path")

    def location(self, value: str) -> str:
        """The live directory of partition ``value``."""
        return _join(self.root, f"{self.column}={value}")

    def recover(self, value: str) -> None:
        """Undo what a run of partition ``value`` killed mid-swap left: restore a replaced
        partition whose successor never arrived; drop stale staging and replaced copies."""
        name = f"{self.column}={value}"
        replaced = [n for n in self.files.listdir(_join(self.root, REPLACED))
                    if n.startswith(name + ".")]
        if replaced and not self.files.exists(self.location(value)):
            newest = replaced.pop()  # names sort by id, not age: any copy is a whole partition
            self.files.rename(_join(self.root, REPLACED, newest), self.location(value))
            log.warning("restored partition %s from an interrupted run", name)
        for n in replaced:
            self.files.delete(_join(self.root, REPLACED, n))
        for n in self.files.listdir(_join(self.root, STAGING)):
            if n.startswith(name + "."):
                self.files.delete(_join(self.root, STAGING, n))
        self._tidy()

    def write(self, df: DataFrame, value: str) -> bool:
        """Write ``df`` (without the partition column) as partition ``value``, replacing it
        whole. Returns True when a previous copy was replaced.

        On any failure the live partitions are left as they were and the staged files
        are removed; the exception propagates.
        """
        return self.write_with(lambda staged: df.write.parquet(staged), value)[0]

    @property
    def local(self) -> bool:
        """Whether the table lives on the driver's (local or shared) file system, where
        Python workers can write its files themselves."""
        return isinstance(self.files, LocalFiles)

    def write_with(self, produce: Callable[[str], Any], value: str) -> Tuple[bool, Any]:
        """Partition ``value`` replaced whole by what ``produce(staged)`` writes into the
        new directory ``staged`` (a Spark write, or the workers' files), as :meth:`write`.

        Returns
        -------
        (bool, object)
            Whether a previous copy was replaced, and what ``produce`` returned.
        """
        created = not self.files.exists(self.root)
        self.recover(value)
        name = f"{self.column}={value}"
        run = uuid.uuid4().hex[:12]
        staged = _join(self.root, STAGING, f"{name}.{run}")
        old = _join(self.root, REPLACED, f"{name}.{run}")
        live = self.location(value)
        self.files.makedirs(_join(self.root, STAGING))
        try:
            result = produce(staged)   # a Spark write fails if ``staged`` exists
            self._swap(staged, live, old)
        except BaseException:
            self._discard(staged)
            if not self.files.exists(live) and self.files.exists(old):
                self.files.rename(old, live)
            self._tidy()
            if created and not self.files.listdir(self.root):
                self.files.delete(self.root)
            raise
        replaced = self.files.exists(old)
        self.files.delete(old)
        self._tidy()
        return replaced, result

    def _discard(self, staged: str) -> None:
        """Delete a failed run's ``staged`` directory. On local file systems it is first
        moved aside in one rename, so that a task of the failed job still running (Spark
        does not wait for a killed task's Python worker) finds no directory to write into
        and cannot recreate one (see :mod:`sparkae.scoring.parquet_files`)."""
        if self.local and self.files.exists(staged):
            failed = f"{staged}.failed"
            self.files.rename(staged, failed)
            staged = failed
        self.files.delete(staged)

    def _tidy(self) -> None:
        """Remove the hidden work directories when nothing is left in them."""
        for d in (STAGING, REPLACED):
            path = _join(self.root, d)
            if self.files.exists(path) and not self.files.listdir(path):
                self.files.delete(path)

    def _swap(self, staged: str, live: str, old: str) -> None:
        if self.files.exists(live):
            self.files.makedirs(_join(self.root, REPLACED))
            self.files.rename(live, old)
        self.files.rename(staged, live)


class TablePartitions:
    """A catalog table partitioned by ``column``; see the module docstring."""

    def __init__(self, spark: SparkSession, table: str, column: str,
                 fmt: str = "parquet") -> None:
        self.spark, self.table, self.column, self.fmt = spark, table, column, fmt

    def location(self, value: str) -> str:
        return f"{self.table} ({self.column}={value})"

    def write(self, df: DataFrame, value: str) -> bool:
        """Replace partition ``value`` of the table with ``df`` (a partition column is
        added). Returns True when the partition held rows before."""
        data = df.withColumn(self.column, F.lit(value).cast("date"))
        if not self.spark.catalog.tableExists(self.table):
            log.info("creating table %s partitioned by %s", self.table, self.column)
            data.write.partitionBy(self.column).format(self.fmt).saveAsTable(self.table)
            return False
        target = self.spark.table(self.table)
        want, have = set(data.columns), set(target.columns)
        if want != have:
            raise ValueError(f"output table '{self.table}' has columns {sorted(have)}; this "
                             f"run writes {sorted(want)}: use another table or the same "
                             "--id-cols and --outputs")
        had = target.where(F.col(self.column) == F.lit(value).cast("date")).limit(1).count() > 0
        view = f"sparkae_scores_{uuid.uuid4().hex[:12]}"
        df.createOrReplaceTempView(view)
        try:
            cols = ", ".join(f"`{c}`" for c in target.columns if c != self.column)
            self.spark.sql(f"INSERT OVERWRITE TABLE {self.table} PARTITION "
                           f"(`{self.column}` = DATE'{value}') SELECT {cols} FROM `{view}`")
        finally:
            self.spark.catalog.dropTempView(view)
        return had


class DeltaPartitions:
    """A Delta table partitioned by ``column``, by path or catalog name; see the module
    docstring. After :meth:`write`, :attr:`version` is the version it committed.

    Parameters
    ----------
    spark : SparkSession
    target : str
        The table's path (any location Spark reaches) or catalog name.
    column : str
        The partition column, e.g. ``run_date``.
    by_name : bool
        ``target`` is a catalog name.
    schema_mode : {"strict", "merge"}
        ``merge`` lets a run add columns (Delta's ``mergeSchema``).
    optimize : bool
        Compact the written partition after the write.
    """

    def __init__(self, spark: SparkSession, target: str, column: str, by_name: bool = False,
                 schema_mode: str = "strict", optimize: bool = False) -> None:
        self.spark, self.column = spark, column
        self.ref = delta.DeltaRef(target if by_name else parse(target, "output.path").text,
                                  by_name)
        self.schema_mode, self.optimize = schema_mode, optimize
        self.version: "int | None" = None

    def location(self, value: str) -> str:
        return f"{self.ref.location} ({self.column}={value})"

    def _exists(self) -> bool:
        if self.ref.by_name:
            return self.spark.catalog.tableExists(self.ref.location)
        return delta.is_delta_path(self.ref.location, "output.path")

    def check(self, schema) -> None:
        """Fail, before any job, when the table exists and ``schema`` (the run's output
        without the partition column) differs from the table's, unless merging; or when
        the path holds something other than a Delta table."""
        if not self._exists():
            if not self.ref.by_name:
                files = files_for(self.spark, self.ref.location, "output.path")
                if files.exists(self.ref.location) and files.listdir(self.ref.location):
                    raise ValueError(f"output.path: '{self.ref.location}' holds files but no "
                                     "Delta table (no _delta_log); give an empty or new path, "
                                     "or output.format=parquet")
            return
        if self.ref.by_name and not delta.is_delta_table(self.spark, self.ref.location):
            raise ValueError(f"output.format is delta but catalog table '{self.ref.location}' "
                             "is not a Delta table")
        table = self.spark.read.table(self.ref.location) if self.ref.by_name else \
            self.spark.read.format("delta").load(self.ref.location)
        if self.column not in table.columns:
            raise ValueError(f"output table '{self.ref.location}' has no partition column "
                             f"'{self.column}' (output.partition_col); it has "
                             f"{sorted(table.columns)}")
        have = T.StructType([f for f in table.schema.fields if f.name != self.column])
        if self.schema_mode != "merge" and delta.schema_mismatch(have, schema):
            raise ValueError(
                f"output table '{self.ref.location}' has columns ({delta.describe_schema(have)})"
                f" but this run writes ({delta.describe_schema(schema)}): write to another "
                "table, give the same id columns, outputs and layer, or set "
                "output.schema_mode=merge to add the new columns")

    def write(self, df: DataFrame, value: str) -> bool:
        """Replace partition ``value`` with ``df`` in one Delta commit. Returns True when
        the partition held rows before."""
        self.check(df.schema)
        data = df.withColumn(self.column, F.lit(value).cast("date"))
        where = f"`{self.column}` = DATE'{value}'"
        if self.ref.by_name and not self._exists():
            # an empty table first, then the rows by its location: a write through the
            # catalog (saveAsTable) loses the job's observed counts (Observation)
            log.info("creating Delta table %s partitioned by %s", self.ref.location,
                     self.column)
            self.spark.createDataFrame([], data.schema).write.format("delta") \
                .partitionBy(self.column).saveAsTable(self.ref.location)
        writer = data.write.format("delta")
        had = False
        if self._exists():
            table = self.spark.read.table(self.ref.location) if self.ref.by_name else \
                self.spark.read.format("delta").load(self.ref.location)
            had = table.where(where).limit(1).count() > 0
            writer = writer.mode("overwrite").option("replaceWhere", where)
        else:
            log.info("creating Delta table %s partitioned by %s", self.ref.location,
                     self.column)
            writer = writer.partitionBy(self.column)
        if self.schema_mode == "merge":
            writer = writer.option("mergeSchema", "true")
        if self.ref.by_name:
            where_at = self.spark.sql(f"DESCRIBE DETAIL {self.ref.sql}").first()["location"]
            writer.save(where_at)
        else:
            writer.save(self.ref.location)
        if self.optimize:
            self.spark.sql(f"OPTIMIZE {self.ref.sql} WHERE {where}").collect()
        self.version = delta.latest_version(self.spark, self.ref)
        return had


def make_output(spark: SparkSession, target: str, fmt: str, column: str,
                schema_mode: str = "strict", optimize: bool = False):
    """:class:`PathPartitions`, :class:`TablePartitions` or :class:`DeltaPartitions` for
    ``target``.

    ``fmt`` ``auto``: a name without ``/`` is a catalog table (Delta when it is one, or
    when it is new and ``spark.sql.sources.default`` is delta), a path holding a Delta
    table is Delta, another path Parquet. ``delta``: a Delta table by path or name.
    """
    named = fmt == "table" or (fmt in ("auto", "delta") and looks_like_table(target))
    if fmt == "delta" or (fmt == "auto" and not named and
                          delta.is_delta_path(parse(target, "output.path").text,
                                              "output.path")):
        return DeltaPartitions(spark, target, column, named, schema_mode, optimize)
    if named:
        exists = spark.catalog.tableExists(target)
        if (exists and delta.is_delta_table(spark, target)) or (
                not exists and fmt == "auto" and
                spark.conf.get("spark.sql.sources.default", "parquet").lower() == "delta"):
            return DeltaPartitions(spark, target, column, True, schema_mode, optimize)
        return TablePartitions(spark, target, column)
    return PathPartitions(spark, target, column)
