"""The training summary a model carries: per-epoch history and totals (JSON-able)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class TrainingSummary:
    """What happened during ``fit``.

    Attributes
    ----------
    history : list of dict
        One entry per epoch: ``epoch``, ``train_mse``, ``validation_mse``, ``rows``,
        ``seconds``, ``rows_per_s``.
    train_rows, validation_rows : int
        Rows in the training and validation data.
    seed : int
        The seed used (drawn when the ``seed`` Param was None).
    wall_time_s : float
        Wall time of the whole fit, preparation and materialization included.
    """

    history: List[Dict[str, Any]] = field(default_factory=list)
    train_rows: int = 0
    validation_rows: int = 0
    seed: int = 0
    wall_time_s: float = 0.0

    @property
    def epochs(self) -> int:
        """Epochs trained."""
        return len(self.history)

    @property
    def train_mse(self) -> Optional[float]:
        """Training MSE of the last epoch."""
        return self.history[-1]["train_mse"] if self.history else None

    @property
    def validation_mse(self) -> Optional[float]:
        """Validation MSE of the last epoch, or None without validation data."""
        return self.history[-1]["validation_mse"] if self.history else None

    @property
    def rows_per_s(self) -> Optional[float]:
        """Training throughput over all epochs (rows seen / training seconds)."""
        secs = sum(h["seconds"] for h in self.history)
        return sum(h["rows"] for h in self.history) / secs if secs else None

    @property
    def coding_activations(self) -> Optional[List[float]]:
        """Average activation of each coding unit in the last epoch (rho-hat, the chapter's
        Figures 19.5/19.6)."""
        return self.history[-1].get("coding_activations") if self.history else None

    @property
    def mean_coding_activation(self) -> Optional[float]:
        """Mean over coding units of their average activation."""
        acts = self.coding_activations
        return sum(acts) / len(acts) if acts else None

    @property
    def model_epoch(self) -> Optional[int]:
        """The epoch whose weights the model holds (the best one with
        ``overwrite_with_best_model``)."""
        best = [h["epoch"] for h in self.history if h.get("best")]
        return best[0] if best else (self.history[-1]["epoch"] if self.history else None)

    def as_pandas(self):
        """The history as a pandas DataFrame, one row per epoch."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in h.items() if k != "coding_activations"}
                             for h in self.history])

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "TrainingSummary":
        return cls(**{k: d[k] for k in ("history", "train_rows", "validation_rows", "seed",
                                        "wall_time_s") if k in d})

    def __repr__(self) -> str:
        v = self.validation_mse
        return (f"TrainingSummary(epochs={self.epochs}, train_mse={self.train_mse:.6g}, "
                f"validation_mse={'None' if v is None else format(v, '.6g')}, "
                f"rows={self.train_rows}, wall_time_s={self.wall_time_s:.2f})")
