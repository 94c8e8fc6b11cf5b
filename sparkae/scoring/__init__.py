"""Score a DataFrame with the model rebuilt once per Python worker, one pass per batch.

The model travels as bytes (architecture JSON + safetensors tensors): broadcast with
``sc.broadcast`` on classic Spark, captured in the function's closure where no
SparkContext is available (Spark Connect). Each Python worker rebuilds the network once,
on its GPU when it has one, and keeps a few in a bounded cache. Rows reach the worker as
Arrow batches, without a Python object per row and without densifying in Spark; one
forward pass per ``batch_size`` rows computes every requested output.

Modules, in the order a scoring call goes through them:

- :mod:`~sparkae.scoring.payload`: the model as bytes (:func:`pack`, :func:`unpack`).
- :mod:`~sparkae.scoring.transport`: :func:`score` -- driver-side checks, then
  ``arrow_udf`` or ``mapInArrow`` over a DataFrame.
- :mod:`~sparkae.scoring.parquet`: :func:`score_parquet` -- workers read a local Parquet
  table's row groups themselves.
- :mod:`~sparkae.scoring.parquet_files`: :func:`write_parquet_files` -- the same, with the
  workers also writing the scored rows as Parquet files (the nightly job).
- :mod:`~sparkae.scoring.broadcasts`: the driver's bounded registry of broadcast payloads.
- :mod:`~sparkae.scoring.worker`: the workers' bounded network cache and per-batch call.
- :mod:`~sparkae.scoring.encode`: one Arrow column in, the score columns out.
- :mod:`~sparkae.scoring.forward`: the forward pass (pure Torch/NumPy, no Spark),
  :func:`score_matrix` for in-memory rows.
- :mod:`~sparkae.scoring.faults`: fault injection for tests, inert unless its confs are set.
"""

from sparkae.scoring.broadcasts import payload_source
from sparkae.scoring.encode import OUTPUT_TYPES
from sparkae.scoring.faults import DELAY_CONF, FAIL_CONF
from sparkae.scoring.faults import from_session as fault_hook
from sparkae.scoring.forward import (PASS_ELEMENTS, SPARSE_DENSITY, SPARSE_DENSITY_ENCODER,
                                     Scorer, score_matrix)
from sparkae.data.parquet_scan import parquet_pieces
from sparkae.scoring.parquet import score_parquet, task_threads
from sparkae.scoring.parquet_files import parquet_codec, write_parquet_files
from sparkae.scoring.payload import pack, unpack
from sparkae.scoring.worker import BatchScorer
from sparkae.scoring.transport import ENGINES, check_request, has_udt, score, score_with

__all__ = ["OUTPUT_TYPES", "PASS_ELEMENTS", "SPARSE_DENSITY", "SPARSE_DENSITY_ENCODER", "ENGINES", "FAIL_CONF",
           "DELAY_CONF", "Scorer", "pack", "unpack", "score", "score_parquet",
           "parquet_pieces", "parquet_codec", "write_parquet_files", "score_matrix",
           "check_request", "has_udt", "score_with", "BatchScorer", "payload_source",
           "fault_hook", "task_threads"]
