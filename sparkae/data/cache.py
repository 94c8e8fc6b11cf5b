"""The materialized-data cache: prepared features written once as Parquet, keyed by plan.

An entry is a directory ``<root>/<key>`` holding the Parquet files and ``_sparkae.json``,
written after Spark's job has committed the files (object stores cannot rename a
directory into place), so only an entry with that marker is complete and reused. The key hashes the prepared DataFrame's plan (``semanticHash``, the canonical
plan text where the JVM is reachable, its input files) together with a fingerprint of
its statistics (row count, per-feature sums, minima and maxima, which the fit computes
anyway), so a table whose files changed under the same path gets a new entry.

``root`` is any location :mod:`sparkae.io` reaches: the ``cache_dir`` Param, else the Spark
conf ``spark.sparkae.cacheDir``, else on a local master ``<system temp>/sparkae-cache-<uid>``
(mode 0700), else (on a cluster) ``_cache`` under the fit's ``checkpoint_dir``. On a cluster it
must be a location every executor reads (``s3a://``, ``hdfs://``, ``dbfs:/``, ...): a
non-local master with none of these set is an error before any Spark job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
from pyspark.sql import DataFrame

import sparkae.spark_private as spark_private
from sparkae.data import held
from sparkae.data.converter import forget_open_files, materialize
from sparkae.io import fs
from sparkae.io.uri import join, parse

log = logging.getLogger("sparkae")

#: Spark conf naming the cache directory.
CACHE_DIR_CONF = "spark.sparkae.cacheDir"
#: Marker file of a complete entry.
META = "_sparkae.json"
#: Bumped when the materialized layout changes (old entries are then ignored).
FORMAT = 1
_PRIVATE = "fit-"


def is_local_master(spark: Any) -> bool:
    """A local master (or a session whose master cannot be read: Spark Connect)."""
    try:
        return str(spark.sparkContext.master).startswith("local")
    except Exception:  # noqa: BLE001 - Spark Connect: the server's files are checked later
        return True


def cache_root(spark: Any = None, cache_dir: Optional[str] = None,
               fallback: Optional[str] = None) -> str:
    """The cache location (see the module docstring for the order).

    Parameters
    ----------
    spark : SparkSession, optional
    cache_dir : str, optional
        The ``cache_dir`` Param.
    fallback : str, optional
        A location derived from the fit's own outputs (``checkpoint_dir/_cache``), used
        on a non-local master only.

    Raises
    ------
    ValueError
        A non-local master and no location every executor can read.
    """
    root, source = cache_dir, "cache_dir"
    if not root and spark is not None:
        try:
            root, source = spark.conf.get(CACHE_DIR_CONF, None), CACHE_DIR_CONF
        except Exception:  # noqa: BLE001 - no conf access (e.g. a stopped session)
            root = None
    local_master = spark is None or is_local_master(spark)
    if not root and fallback and not local_master:
        root, source = fallback, "checkpoint_dir"
    if root:
        uri = parse(root, source)
        if uri.is_local:
            os.makedirs(uri.path, exist_ok=True)
        return uri.text
    if not local_master:
        raise ValueError(
            f"cache_dir: the master is {spark.sparkContext.master} and no cache location is "
            "set; the training data is materialized where every executor reads it: set the "
            f"cache_dir Param or the Spark conf {CACHE_DIR_CONF} (e.g. s3a://bucket/cache, "
            "hdfs:///tmp/sparkae, dbfs:/tmp/sparkae), or checkpoint_dir")
    return private_tmp("sparkae-cache")


def private_tmp(name: str) -> str:
    """``<tmp>/<name>-<uid>``: a directory only this user can read (mode 0700), created when
    missing. Refuses one owned by another user or open to others (someone could read the
    data or plant files there)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    root = os.path.join(tempfile.gettempdir(), f"{name}-{uid}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise PermissionError(f"cache_dir: the default '{root}' is not a directory owned by "
                              "this user; set cache_dir (or spark.sparkae.cacheDir) to a "
                              "private directory")
    if st.st_mode & 0o077:
        os.chmod(root, 0o700)
    return root


def fingerprint(stats: Any) -> str:
    """A digest of a table's statistics (row count; per-feature mean, min and max as
    float32, so that the order of a distributed sum does not change it). The same data
    gives the same digest in any session; checkpoints use it to recognize their data."""
    h = hashlib.sha256(str(int(stats.count)).encode())
    for name in ("mean", "min", "max"):
        h.update(np.ascontiguousarray(getattr(stats, name), dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


def plan_key(df: DataFrame, stats: Any = None, extra: str = "") -> Optional[str]:
    """A key for ``df``'s content: plan identity + statistics fingerprint, or None when the
    plan cannot be identified (then nothing is shared)."""
    parts: List[str] = [f"format={FORMAT}", extra]
    try:
        parts.append(f"semantic={df.semanticHash()}")
    except Exception:  # noqa: BLE001 - very old or unusual sessions
        return None
    plan = spark_private.analyzed_plan(df)   # None under Spark Connect
    if plan is not None:
        parts.append(plan)
    try:
        parts.extend(sorted(df.inputFiles()))
    except Exception:  # noqa: BLE001
        pass
    if stats is not None:
        parts.append(fingerprint(stats))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@dataclass
class Materialized:
    """A materialized table: its directory (or file URLs) and whether the fit owns it."""

    path: str
    key: Optional[str]
    owned: bool
    files: List[str] = field(default_factory=list)
    cleanup: List[Any] = field(default_factory=list)

    def release(self) -> None:
        """Delete the data when this fit owns it (``keep_cache`` off)."""
        if not self.owned:
            return
        if held.is_held(self.path):
            held.release(self.path)
            return
        for fn in self.cleanup:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - best effort
                log.debug("cache cleanup failed: %s", exc)
        forget_open_files(self.path)
        try:
            fs.delete(self.path, "cache_dir")
        except OSError as exc:
            log.warning("could not delete the materialized data %s: %s", self.path, exc)


def lookup(root: str, key: Optional[str]) -> Optional[str]:
    """The path of a complete entry for ``key`` under ``root``, or None."""
    if not key:
        return None
    path = join(root, key)
    return path if fs.isfile(join(path, META), "cache_dir") else None


def materialize_cached(df: DataFrame, root: str, key: Optional[str], keep: bool,
                       role: str = "training data", info: Optional[Dict] = None) -> Materialized:
    """Materialize ``df`` (a prepared ``features`` column) under ``root``, or reuse an entry.

    Parameters
    ----------
    df : DataFrame
        Prepared features.
    root : str
        Cache directory.
    key : str, optional
        :func:`plan_key` of ``df``; None disables sharing.
    keep : bool
        Write a shared entry that outlives the fit (``keep_cache``); otherwise a private
        directory that :meth:`Materialized.release` deletes. An existing shared entry is
        reused either way.
    role : str
        For the log.
    info : dict, optional
        Extra JSON stored in the entry's metadata.
    """
    found = lookup(root, key)
    if found:
        log.info("%s: reusing materialized data %s", role, found)
        return Materialized(found, key, owned=False)
    shared = bool(keep and key)
    target = join(root, key if shared else f"{_PRIVATE}{uuid.uuid4().hex}")
    meta = {"key": key, "format": FORMAT, "created": time.time(), "role": role, **(info or {})}
    t0 = time.perf_counter()
    try:
        materialize(df, target, meta=(META, json.dumps(meta)))
    except OSError:
        found = lookup(root, key) if shared else None
        if found:  # another fit wrote the same entry meanwhile
            return Materialized(found, key, owned=False)
        raise
    log.info("%s: materialized to %s in %.1f s%s", role, target, time.perf_counter() - t0,
             " (kept for later fits)" if shared else "")
    return Materialized(target, key, owned=not shared)


def clear_cache(cache_dir: Optional[str] = None) -> int:
    """Delete every materialized entry under the cache directory; return how many.

    Parameters
    ----------
    cache_dir : str, optional
        Default: the active session's ``spark.sparkae.cacheDir``, else the default root.
    """
    spark = None
    if cache_dir is None:
        try:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession()
        except Exception:  # noqa: BLE001
            spark = None
    root = cache_root(spark, cache_dir)
    removed = 0
    for name in fs.listdir(root, "cache_dir"):
        path = join(root, name)
        if fs.isdir(path, "cache_dir") and (fs.isfile(join(path, META), "cache_dir") or
                                            name.startswith(_PRIVATE) or ".tmp-" in name or
                                            name == "petastorm"):
            fs.delete(path, "cache_dir")
            removed += 1
    from sparkae.data.petastorm import forget_converters

    forget_converters()
    log.info("cleared %d cache entries under %s", removed, root)
    return removed
