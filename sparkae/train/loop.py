"""One rank's training loop (pure Torch; no Spark imports).

The loop takes callables that yield raw-feature batches (NumPy or Torch), so it runs the
same on the driver, inside a TorchDistributor rank, or in a unit test on in-memory data.
Its parts: settings (:mod:`sparkae.train.config`), optimizers and weight rules
(:mod:`sparkae.train.optim`), batch preparation (:mod:`sparkae.train.inputs`), the
families' extra terms (:mod:`sparkae.train.family`), scoring and early stopping
(:mod:`sparkae.train.validation`) and the lazy sparse step (:mod:`sparkae.train.lazy`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch

from sparkae.nn import sparse
from sparkae.nn.dense import AutoencoderNet
from sparkae.nn.losses import kl_sparsity, reconstruction_mse
from sparkae.nn.noise import corrupt_batch
from sparkae.nn.sampling import sample_entries, sampled_mse
from sparkae.train.config import TrainConfig
from sparkae.train.family import FitTerms
from sparkae.train.inputs import EpochGenerators, noise_generator, prepare, scaled_batch
from sparkae.train.lazy import LazyStep, lazy_eligible
from sparkae.train.lean import LeanStep, fused_update, lean_eligible
from sparkae.train.optim import apply_max_w2, make_optimizer, penalty, sgd_schedule
from sparkae.train.validation import Stopper, evaluate

__all__ = ["Batches", "TrainConfig", "apply_max_w2", "evaluate", "make_optimizer",
           "noise_generator", "penalty", "scaled_batch", "sgd_schedule", "train"]

log = logging.getLogger("sparkae")

Batches = Callable[[int], Iterable]  # epoch -> iterable of raw feature batches


class _EpochSums:
    """An epoch's running sums, kept as tensors on the batches' device: the batch MSEs
    weighted by their rows (float64, added in batch order: the same value as summing
    ``float(mse) * rows`` in Python) and the coding activations. Nothing waits for the
    device until :meth:`loss` at the end of the epoch."""

    def __init__(self) -> None:
        self.rows = 0
        self.act: Optional[torch.Tensor] = None
        self._loss: Optional[torch.Tensor] = None

    def add(self, mse: torch.Tensor, rows: int, act: torch.Tensor) -> None:
        """Add one batch: its MSE (a 0-d tensor), rows and coding activations (rows x units)."""
        weighted = mse.double() * rows
        if self._loss is None:
            self._loss = weighted
        else:
            self._loss.add_(weighted)
        batch_act = act.sum(dim=0)
        if self.act is None:
            self.act = batch_act
        else:
            self.act.add_(batch_act)
        self.rows += rows

    def loss(self) -> float:
        """The epoch's sum of MSE x rows."""
        return float(self._loss) if self._loss is not None else 0.0


class _Fit:
    """The state of one :func:`train` call and its steps: one epoch, one batch."""

    def __init__(self, net: torch.nn.Module, cfg: TrainConfig, model: torch.nn.Module,
                 reduce: Callable[[List[float]], List[float]], rank: int,
                 resume_state: Optional[Dict[str, Any]], distributed: bool = False) -> None:
        self.net, self.cfg, self.model, self.reduce = net, cfg, model, reduce
        self.resume_state = resume_state
        self.terms = FitTerms(net, cfg)
        self.k = cfg.reconstruction_sampling
        self.lazy_off = lazy_eligible(net, cfg, distributed) if self.k else "off"
        # with sampling, the lazy step for sparse batches; replaced at the first batch by
        # the usual optimizer when the batches turn out dense
        self.opt: Any = (LazyStep(net, cfg, lambda ps: make_optimizer(net, cfg, ps))
                         if self.lazy_off is None else
                         make_optimizer(net, cfg, self.terms.parameters()))
        lean_off = lean_eligible(net, cfg, model, distributed, bool(self.terms.terms))
        # the plain dense step with hand-written gradients (dense batches only)
        self.lean = LeanStep(net) if lean_off is None else None
        log.debug("training step: %s", "gradients written out (sparkae.train.lean)"
                  if lean_off is None else f"autograd ({lean_off})")
        self.checked = False
        self.history: List[Dict] = []
        self.stopper = Stopper(cfg)
        # a checkpoint of dense batches holds the usual optimizer's state: it is loaded when
        # the first batch shows the batches are dense (optimizer())
        self.deferred = bool(resume_state and isinstance(self.opt, LazyStep)
                             and not resume_state["optimizer"].get("lazy"))
        if resume_state:
            if not self.deferred:
                self.opt.load_state_dict(resume_state["optimizer"])
            self.history = list(resume_state["history"])
            self.stopper = Stopper.resumed(cfg, resume_state, net, len(self.history))
            self.terms.resume(resume_state.get("family_optimizers"))
        self.gens = EpochGenerators(cfg.seed, rank)
        self.noisy = cfg.noise != "none" or cfg.input_dropout_ratio > 0
        self.c = cfg.coding_layer - 1
        self.samples = sum(h["rows"] for h in self.history)
        self.avg_act: Optional[torch.Tensor] = None

    def optimizer(self, z: torch.Tensor) -> Any:
        """The optimizer for scaled batch ``z``: at the first batch, the lazy step gives
        way to the usual optimizer when the batches are dense."""
        if not self.checked:
            self.checked = True
            if isinstance(self.opt, LazyStep) and not sparse.is_sparse(z):
                self.opt.close()
                self.opt = make_optimizer(self.net, self.cfg, self.terms.parameters())
                if self.resume_state:
                    self.opt.load_state_dict(self.resume_state["optimizer"])
            elif self.deferred:   # sparse batches, but the state was not the lazy step's
                self.opt.load_state_dict(self.resume_state["optimizer"])   # a clear error
            if self.k and sparse.is_sparse(z):
                log.info("reconstruction_sampling=%d: %s", self.k,
                         "lazy row-wise updates of the wide layers" if self.lazy_off is None
                         else f"sampled loss with dense gradients ({self.lazy_off})")
        return self.opt

    def corrupt(self, z: torch.Tensor, epoch: int) -> torch.Tensor:
        """The network input for clean scaled batch ``z``: ``z`` itself, or its noisy copy."""
        if not self.noisy:
            return z
        cfg, scaler = self.cfg, self.net.scaler
        return corrupt_batch(z, cfg.noise, cfg.noise_level, cfg.input_dropout_ratio,
                             scaler.lo, scaler.hi, self.gens.get(epoch, z.device))

    def reconstruct(self, z: torch.Tensor, inp: torch.Tensor,
                    epoch: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``(reconstruction MSE against z, hidden activations)`` for network input
        ``inp``; sparse batches with ``reconstruction_sampling`` get the sampled loss."""
        if self.k and sparse.is_sparse(z) and sparse.is_sparse(inp):
            entries = sample_entries(z, self.k,
                                     self.gens.get(epoch, z.device, EpochGenerators.SAMPLING))
            if isinstance(self.opt, LazyStep):
                return self.opt.forward(inp, entries)
            y, acts = self.model(inp, entries=(entries.rows, entries.cols))
            return sampled_mse(y, entries), acts
        y, acts = self.model(inp)
        return reconstruction_mse(y, z), acts

    def loss(self, mse: torch.Tensor, inp: torch.Tensor, acts: List[torch.Tensor],
             rows: int) -> torch.Tensor:
        """The step's loss: the MSE, the family's terms, the weight penalty and the
        KL sparsity of the coding layer."""
        cfg, loss = self.cfg, mse
        extra = self.terms.loss(inp, acts, rows)
        if extra is not None:
            loss = loss + extra
        if cfg.l1 or cfg.l2:
            loss = loss + penalty(self.net, cfg)
        if cfg.sparsity_beta and cfg.sparsity_method == "kl":
            loss = loss + cfg.sparsity_beta * kl_sparsity(acts[self.c], cfg.average_activation,
                                                          cfg.activation)
        return loss

    def update(self, loss: Optional[torch.Tensor], z: torch.Tensor,
               acts: List[torch.Tensor]) -> None:
        """The step's parameter updates: the optimizer's, the family's own phases, the
        ``max_w2`` constraint and H2O's sparsity bias update. ``loss`` None: the
        gradients are set already (:class:`~sparkae.train.lean.LeanStep`)."""
        cfg, opt = self.cfg, self.opt
        if cfg.optimizer == "sgd":
            lr, momentum = sgd_schedule(cfg, self.samples)
            for group in opt.param_groups:
                group["lr"], group["momentum"] = lr, momentum
        if loss is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
        if not fused_update(opt):    # a fused Adam's kernel without the rest of step()
            opt.step()
        self.terms.after_step(self.model, z)
        if cfg.max_w2 < float("inf"):
            apply_max_w2(self.net, cfg.max_w2)
        if cfg.sparsity_beta and cfg.sparsity_method == "h2o_bias":
            mean = acts[self.c].detach().mean(dim=0)
            self.avg_act = mean if self.avg_act is None else 0.9 * self.avg_act + 0.1 * mean
            with torch.no_grad():
                self.net.layers[self.c].bias -= cfg.sparsity_beta * (self.avg_act -
                                                                     cfg.average_activation)

    def step(self, batch: Any, epoch: int, sums: "_EpochSums") -> None:
        """Train on one batch (raw, or a :class:`~sparkae.train.inputs.ScaledBatch`) and add
        its MSE sum, rows and coding activation sums to ``sums``."""
        z = prepare(self.net, batch, self.cfg.skip_missing)
        self.optimizer(z)
        if self.lean is not None and not sparse.is_sparse(z):
            mse, acts = self.lean.gradients(z)
            self.update(None, z, acts)
        else:
            inp = self.corrupt(z, epoch)
            mse, acts = self.reconstruct(z, inp, epoch)
            self.update(self.loss(mse, inp, acts, z.shape[0]), z, acts)
        rows = z.shape[0]
        self.samples += rows
        sums.add(mse.detach(), rows, acts[self.c].detach())

    def epoch(self, epoch: int, train_batches: Batches,
              valid_batches: Optional[Callable[[], Iterable]]) -> Tuple[Dict, bool]:
        """Train one epoch over ``train_batches(epoch)``; return its history entry and
        whether to stop."""
        self.net.train()
        t0 = time.perf_counter()
        sums = _EpochSums()
        self.terms.start_epoch()
        if isinstance(self.opt, LazyStep):
            self.opt.refresh()
        for batch in train_batches(epoch):
            self.step(batch, epoch, sums)
        entry = self.summarize(epoch, sums.loss(), sums.rows, sums.act)
        scored = (epoch + 1) % self.cfg.score_interval == 0 or epoch + 1 == self.cfg.epochs
        valid = (evaluate(self.net, valid_batches(), self.cfg.skip_missing)
                 if valid_batches and scored else None)
        seconds = time.perf_counter() - t0
        entry.update(validation_mse=valid, seconds=seconds,
                     rows_per_s=entry["rows"] / max(seconds, 1e-9))
        self.history.append(entry)
        stop = scored and self.stopper.update(
            epoch + 1, valid if valid is not None else entry["train_mse"], self.net,
            last=epoch + 1 == self.cfg.epochs)
        return entry, stop

    def summarize(self, epoch: int, loss_sum: float, rows: int,
                  act_sum: Optional[torch.Tensor]) -> Dict[str, Any]:
        """The epoch's sums over every rank, as a history entry (validation and timing
        still to come)."""
        n_act = self.net.hidden[self.c]
        totals = self.reduce([loss_sum, float(rows)]
                             + (act_sum.tolist() if act_sum is not None else [0.0] * n_act)
                             + self.terms.totals())
        loss_sum, rows = totals[0], int(totals[1])
        family_totals, totals = totals[2 + n_act:], totals[:2 + n_act]
        if rows == 0:
            raise ValueError("the training data yielded no rows")
        train_mse = loss_sum / rows
        if not np.isfinite(train_mse):
            raise FloatingPointError(f"training diverged in epoch {epoch + 1}: the loss is "
                                     f"{train_mse}; lower 'rate' or check the input scaling")
        return {"epoch": epoch + 1, "train_mse": train_mse, "validation_mse": None,
                "rows": rows, "seconds": 0.0, "rows_per_s": 0.0,
                "coding_activations": [v / rows for v in totals[2:]], "best": False,
                **self.terms.entry(family_totals, rows)}

    def checkpoint_state(self) -> Dict[str, Any]:
        """What a checkpoint after an epoch holds (see :func:`train`)."""
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "history": self.history, "stopper": self.stopper.state(),
                "best_model": self.stopper.weights, "family_optimizers": self.terms.state()}

    def finish(self) -> List[Dict]:
        """Keep the best weights, mark their epoch and return the history."""
        if isinstance(self.opt, LazyStep):
            self.opt.close()
        cfg, stopper = self.cfg, self.stopper
        if cfg.overwrite_with_best_model and stopper.weights is not None:
            self.net.load_state_dict(stopper.weights)
        best = stopper.best_epoch if cfg.overwrite_with_best_model else len(self.history)
        for entry in self.history:
            entry["best"] = entry["epoch"] == best
        self.net.eval()
        return self.history


def train(net: AutoencoderNet, train_batches: Batches, cfg: TrainConfig,
          valid_batches: Optional[Callable[[], Iterable]] = None,
          on_epoch: Optional[Callable[[Dict], None]] = None, *,
          model: Optional[torch.nn.Module] = None,
          reduce: Optional[Callable[[List[float]], List[float]]] = None,
          start_epoch: int = 0, resume_state: Optional[Dict[str, Any]] = None,
          checkpoint: Optional[Callable[[int, Dict[str, Any]], None]] = None,
          rank: int = 0) -> List[Dict]:
    """Train ``net`` in place and return the per-epoch history.

    Parameters
    ----------
    net : AutoencoderNet
        Network whose scaler already holds the training statistics.
    train_batches : callable
        ``train_batches(epoch)`` yields the raw feature batches of that epoch.
    cfg : TrainConfig
        Optimizer, penalty, noise and early-stopping settings.
    valid_batches : callable, optional
        ``valid_batches()`` yields validation batches, scored every ``score_interval``
        epochs; early stopping uses the validation MSE, else the training MSE.
    on_epoch : callable, optional
        Called with each epoch's history entry (for progress reporting).
    model : Module, optional
        Module for the forward pass (default ``net``).
    reduce : callable, optional
        Sums a list of floats across ranks (loss sums, row counts, activation sums);
        given, the fit is one rank of several (the gradients are averaged by the caller,
        :mod:`sparkae.train.gradsync`).
    start_epoch, resume_state : optional
        Continue from a checkpoint: ``resume_state`` is what ``checkpoint`` received.
    checkpoint : callable, optional
        ``checkpoint(epoch, state)`` after every epoch; ``state`` holds ``model``,
        ``optimizer``, ``history``, ``stopper``, ``best_model`` (the best weights so
        far, or None) and ``family_optimizers`` (the family's own optimizers' states, or
        None) entries.

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, ``train_mse`` (row-weighted mean of the epoch's
        batch losses; with ``reconstruction_sampling``, of their unbiased sampled
        estimates), ``validation_mse`` (None when not scored), ``rows``, ``seconds``,
        ``rows_per_s``, ``coding_activations`` (mean activation of each coding unit),
        ``best`` (True on the epoch whose weights the model keeps).

    Raises
    ------
    FloatingPointError
        When the loss becomes NaN or infinite.
    """
    fit = _Fit(net, cfg, model if model is not None else net,
               reduce or (lambda values: values), rank, resume_state,
               distributed=reduce is not None or (model is not None and model is not net))
    if resume_state:
        start_epoch = len(fit.history)
    for epoch in range(start_epoch, cfg.epochs):
        entry, stop = fit.epoch(epoch, train_batches, valid_batches)
        if on_epoch:
            on_epoch(entry)
        if checkpoint:
            checkpoint(epoch + 1, fit.checkpoint_state())
        if stop:
            log.info("early stopping after epoch %d: no improvement in %d scoring rounds "
                     "(best epoch %d)", epoch + 1, cfg.stopping_rounds, fit.stopper.best_epoch)
            break
    return fit.finish()
