"""One rank's training loop (pure Torch; no Spark imports).

The loop takes callables that yield raw-feature batches (NumPy or Torch), so it runs the
same on the driver, inside a TorchDistributor rank, or in a unit test on in-memory data.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
import torch

from sparkae.nn import sparse
from sparkae.nn.families import adversarial_losses, generator_loss, mmd
from sparkae.nn.losses import (contractive_penalty, kl_sparsity, reconstruction_mse,
                               weight_penalty)
from sparkae.nn.models import AutoencoderNet
from sparkae.nn.noise import corrupt_batch
from sparkae.nn.sampling import sample_entries, sampled_mse
from sparkae.train.lazy import LazyStep, lazy_eligible

log = logging.getLogger("sparkae")

Batches = Callable[[int], Iterable]  # epoch -> iterable of raw feature batches


@dataclass
class TrainConfig:
    """Settings of the loop (a subset of the Autoencoder Params)."""

    epochs: int = 10
    optimizer: str = "adam"
    rate: float = 0.001
    rho: float = 0.99
    epsilon: float = 1e-8
    l1: float = 0.0
    l2: float = 0.0
    # sgd
    rate_annealing: float = 0.0
    momentum_start: float = 0.0
    momentum_ramp: float = 1e6
    momentum_stable: float = 0.0
    nesterov: bool = True
    max_w2: float = float("inf")
    # sparse autoencoder (on the coding layer, 1-based)
    sparsity_beta: float = 0.0
    average_activation: float = 0.0
    sparsity_method: str = "kl"
    activation: str = "tanh"
    coding_layer: int = 1
    # denoising
    input_dropout_ratio: float = 0.0
    noise: str = "none"
    noise_level: float = 0.0
    # early stopping
    stopping_rounds: int = 0
    stopping_tolerance: float = 0.0
    score_interval: int = 1
    overwrite_with_best_model: bool = True
    skip_missing: bool = False
    seed: int = 0
    # families beyond H2O (sparkae.nn.families)
    architecture: str = "dense"
    kl_beta: float = 1.0
    contractive_lambda: float = 0.0
    # sparse batches: stored columns plus this many sampled zero columns per row in the
    # training loss (None = the exact loss); see sparkae.nn.sampling
    reconstruction_sampling: Optional[int] = None


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig,
                   params: Optional[Iterable[torch.nn.Parameter]] = None) -> torch.optim.Optimizer:
    """Adam with ``rate``; H2O's ADADELTA (``rho``, ``epsilon``, unit learning rate); or SGD
    with momentum (its rate and momentum follow :func:`sgd_schedule`). ``params`` (default
    all of ``net``'s) are the parameters it updates."""
    params = list(net.parameters() if params is None else params)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.rate)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=1.0, rho=cfg.rho, eps=cfg.epsilon)
    if cfg.optimizer == "sgd":
        nesterov = cfg.nesterov and max(cfg.momentum_start, cfg.momentum_stable) > 0
        return torch.optim.SGD(params, lr=cfg.rate, nesterov=nesterov,
                               momentum=max(cfg.momentum_start, cfg.momentum_stable))
    raise ValueError(f"optimizer: got {cfg.optimizer!r}, expected 'adam', 'adadelta' or 'sgd'")


def sgd_schedule(cfg: TrainConfig, samples: int) -> tuple[float, float]:
    """H2O's schedule after ``samples`` training rows: ``rate / (1 + rate_annealing *
    samples)`` and a momentum ramped linearly from ``momentum_start`` to ``momentum_stable``
    over ``momentum_ramp`` rows."""
    lr = cfg.rate / (1.0 + cfg.rate_annealing * samples)
    frac = min(1.0, samples / cfg.momentum_ramp) if cfg.momentum_ramp > 0 else 1.0
    return lr, cfg.momentum_start + (cfg.momentum_stable - cfg.momentum_start) * frac


def _tensor(batch) -> torch.Tensor:
    return batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))


def penalty(net: AutoencoderNet, cfg: TrainConfig) -> torch.Tensor:
    """``l1 * sum|W| + l2 / 2 * sum W^2`` over weight matrices (H2O's decay, no biases)."""
    return weight_penalty(net.weight_matrices(), cfg.l1, cfg.l2)


@torch.no_grad()
def apply_max_w2(net: AutoencoderNet, max_w2: float) -> None:
    """Scale each unit's incoming weights so that their squared norm is at most ``max_w2``."""
    for w in net.weight_matrices():
        norms = (w * w).sum(dim=1, keepdim=True)
        w.mul_(torch.where(norms > max_w2, torch.sqrt(max_w2 / norms), torch.ones_like(norms)))


def _drop_missing(x: torch.Tensor) -> torch.Tensor:
    return x[~torch.isnan(x).any(dim=1)] if not x.is_sparse and x.layout == torch.strided else x


def noise_generator(seed: int, rank: int, epoch: int, device: torch.device,
                    stream: int = 0) -> torch.Generator:
    """The input-noise generator of one rank and epoch, on the batches' device.

    Seeded from ``(seed, rank, epoch)``: every rank corrupts its rows differently, and a
    fit resumed at any epoch draws exactly the noise an uninterrupted fit would have.
    ``stream`` > 0 gives other independent draws (1: reconstruction sampling)."""
    gen = torch.Generator(device=device)
    entropy = [seed, rank, epoch] + ([stream] if stream else [])
    gen.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return gen


def scaled_batch(net: torch.nn.Module, x: torch.Tensor, skip_missing: bool) -> torch.Tensor:
    """Scale a raw batch for ``net``; CSR batches stay sparse unless the network needs
    dense rows (``dense_input``: the convolutional, variational and adversarial families,
    which densify each batch)."""
    z = net.scaler(_drop_missing(x) if skip_missing else x)
    if getattr(net, "dense_input", False) and sparse.is_sparse(z):
        z = sparse.densify(z, sparse.offset(net.scaler))
    return z


@torch.no_grad()
def evaluate(net: AutoencoderNet, batches: Iterable, skip_missing: bool = False) -> float:
    """Mean over rows of the per-row reconstruction MSE in the scaled space."""
    net.eval()
    total, rows = 0.0, 0
    for batch in batches:
        z = scaled_batch(net, _tensor(batch), skip_missing)
        y = net.reconstruct(z)
        total += float(sparse.row_mse(y, z).sum() if sparse.is_sparse(z)
                       else ((y - z) ** 2).mean(dim=1).sum())
        rows += z.shape[0]
    return total / rows if rows else float("nan")


#: Rows per rank whose codings are compared with the prior after each adversarial epoch.
PRIOR_CHECK_ROWS = 1024


class _Family:
    """The families' extra training terms and their per-epoch sums (history entries):
    ``kl`` (variational), ``contractive`` (the encoder's ``||J||_F^2``),
    ``wta_active_fraction`` (share of non-zero coding activations, or of non-zero coding
    maps for convolutional networks), ``discriminator_loss``, ``generator_loss`` and
    ``prior_mmd`` (squared MMD between codings and prior draws; adversarial; the first
    epoch also has ``prior_mmd_initial``, the untrained encoder's on the same rows)."""

    def __init__(self, net: torch.nn.Module, cfg: TrainConfig) -> None:
        self.net, self.cfg = net, cfg
        self.variational = cfg.architecture == "variational"
        self.adversarial = cfg.architecture == "adversarial"
        self.wta = bool(getattr(net, "wta_sparsity", None))
        self.names = ((["kl"] if self.variational else []) +
                      (["contractive"] if cfg.contractive_lambda else []) +
                      (["wta_active_fraction"] if self.wta else []) +
                      (["discriminator_loss", "generator_loss"] if self.adversarial else []))
        self.opt_d = self.opt_g = None
        self.initial: Optional[torch.nn.Module] = None
        if self.adversarial:
            self.initial = copy.deepcopy(net)
            self.opt_d = make_optimizer(net, cfg, net.discriminator.parameters())
            self.opt_g = make_optimizer(net, cfg, net.encoder_parameters())
        self.start_epoch()

    def parameters(self) -> Optional[List[torch.nn.Parameter]]:
        """What the main (reconstruction) optimizer updates; None = every parameter."""
        return self.net.autoencoder_parameters() if self.adversarial else None

    def start_epoch(self) -> None:
        self.sums = {n: 0.0 for n in self.names}
        self.kept: List[torch.Tensor] = []

    def loss_terms(self, inp: torch.Tensor, acts: List[torch.Tensor],
                   rows: int) -> Optional[torch.Tensor]:
        """The extra loss of a reconstruction step (recording its terms); None when the
        network has none."""
        cfg, extra = self.cfg, None
        if self.variational:
            kl = self.net.last_kl
            extra = cfg.kl_beta * kl / self.net.scaler.keep.numel()
            self.sums["kl"] += float(kl.detach()) * rows
        if cfg.contractive_lambda:
            jac = contractive_penalty(self.net, inp, acts, cfg.coding_layer, cfg.activation)
            term = cfg.contractive_lambda * jac
            extra = term if extra is None else extra + term
            self.sums["contractive"] += float(jac.detach()) * rows
        if self.wta:
            h = acts[cfg.coding_layer - 1].detach()
            shapes = getattr(self.net, "shapes", None)
            if shapes is not None:  # convolutional: a map is active when any value is
                h = h.reshape(h.shape[0], shapes[self.net.coding - 1][0], -1).abs().amax(dim=2)
            self.sums["wta_active_fraction"] += float((h != 0).float().mean()) * rows
        return extra

    def adversarial_step(self, model: torch.nn.Module, z: torch.Tensor) -> None:
        """The regularization phase: a discriminator update, then an encoder update, each
        one forward and backward of ``model`` (DistributedDataParallel-safe)."""
        if not self.adversarial:
            return
        real, fake = model(z, phase="discriminator")
        d_loss = adversarial_losses(real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        g_loss = generator_loss(model(z, phase="generator"))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.sums["discriminator_loss"] += float(d_loss.detach()) * z.shape[0]
        self.sums["generator_loss"] += float(g_loss.detach()) * z.shape[0]
        have = sum(t.shape[0] for t in self.kept)
        if have < PRIOR_CHECK_ROWS:
            self.kept.append(z.detach()[:PRIOR_CHECK_ROWS - have])

    def totals(self) -> List[float]:
        """The sums to reduce across ranks (adversarial: the rank's MMD and a count last)."""
        values = [self.sums[n] for n in self.names]
        if self.adversarial:
            values += self._prior_mmd()
        return values

    @torch.no_grad()
    def _prior_mmd(self) -> List[float]:
        if not self.kept:
            return [0.0, 0.0, 0.0]
        rows = torch.cat(self.kept)
        gen = torch.Generator().manual_seed(self.cfg.seed + 17)
        prior = self.net.sample_prior(rows.shape[0], generator=gen).cpu()
        was = self.net.training
        self.net.eval()
        out = [mmd(self.net.encode(rows).cpu(), prior), 1.0]
        self.net.train(was)
        initial, self.initial = self.initial, None   # the untrained encoder, first epoch only
        out.append(mmd(initial.eval().encode(rows).cpu(), prior) if initial is not None else 0.0)
        return out

    def entry(self, totals: List[float], rows: int) -> Dict[str, float]:
        out = {n: v / rows for n, v in zip(self.names, totals)}
        if self.adversarial:
            mmd_sum, ranks, initial = totals[len(self.names):len(self.names) + 3]
            out["prior_mmd"] = mmd_sum / ranks if ranks else None
            if initial and ranks:
                out["prior_mmd_initial"] = initial / ranks
        return out

    def state(self) -> Optional[List[Dict[str, Any]]]:
        return [self.opt_d.state_dict(), self.opt_g.state_dict()] if self.adversarial else None

    def load_state(self, states: Optional[List[Dict[str, Any]]]) -> None:
        if self.adversarial and states:
            self.opt_d.load_state_dict(states[0])
            self.opt_g.load_state_dict(states[1])


def copy_state(net: torch.nn.Module) -> Dict[str, Any]:
    """A copy of ``net``'s state dict, each tensor contiguous and its own (a parameter that
    is a view of a larger buffer, as in :mod:`sparkae.train.lazy`, copies its elements
    only)."""
    return {k: v.detach().clone(memory_format=torch.contiguous_format)
            if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in net.state_dict().items()}


class _Stopper:
    """Early stopping on the scored metric, and the best weights seen."""

    def __init__(self, cfg: TrainConfig, state: Optional[Dict] = None) -> None:
        self.cfg = cfg
        state = state or {}
        self.best = state.get("best_metric", float("inf"))
        self.best_epoch = state.get("best_epoch", 0)
        self.since = state.get("since", 0)
        self.weights: Optional[Dict[str, torch.Tensor]] = None

    def update(self, epoch: int, metric: float, net: AutoencoderNet, last: bool = False) -> bool:
        """Record a scoring event; return True when training should stop. On the ``last``
        epoch a best model is the network itself: no copy (``weights`` None)."""
        if metric < self.best * (1.0 - self.cfg.stopping_tolerance) or self.best_epoch == 0:
            self.best, self.best_epoch, self.since = metric, epoch, 0
            if self.cfg.overwrite_with_best_model:
                self.weights = None if last else copy_state(net)
        else:
            self.since += 1
        return self.cfg.stopping_rounds > 0 and self.since >= self.cfg.stopping_rounds

    def state(self) -> Dict[str, Any]:
        return {"best_metric": self.best, "best_epoch": self.best_epoch, "since": self.since}


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
        Module for the forward pass (e.g. ``net`` wrapped in DistributedDataParallel).
    reduce : callable, optional
        Sums a list of floats across ranks (loss sums, row counts, activation sums).
    start_epoch, resume_state : optional
        Continue from a checkpoint: ``resume_state`` is what ``checkpoint`` received.
    checkpoint : callable, optional
        ``checkpoint(epoch, state)`` after every epoch; ``state`` holds ``model``,
        ``optimizer``, ``history``, ``stopper`` and ``best_model`` (the best weights
        so far, or None) entries.

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
    model = model if model is not None else net
    reduce = reduce or (lambda values: values)
    family = _Family(net, cfg)
    k = cfg.reconstruction_sampling
    lazy_off = lazy_eligible(net, model, cfg) if k else "off"
    # with sampling, the lazy step for sparse batches; replaced at the first batch by the
    # usual optimizer when the batches turn out dense
    opt: Any = (LazyStep(net, cfg, lambda ps: make_optimizer(net, cfg, ps))
                if lazy_off is None else make_optimizer(net, cfg, family.parameters()))
    checked = False

    def optimizer(z: torch.Tensor) -> Any:
        nonlocal opt, checked
        if not checked:
            checked = True
            if isinstance(opt, LazyStep) and not sparse.is_sparse(z):
                opt.close()
                opt = make_optimizer(net, cfg, family.parameters())
                if resume_state:
                    opt.load_state_dict(resume_state["optimizer"])
            elif k and sparse.is_sparse(z):
                log.info("reconstruction_sampling=%d: %s", k,
                         "lazy row-wise updates of the wide layers" if lazy_off is None else
                         f"sampled loss with dense gradients ({lazy_off})")
        return opt

    history: List[Dict] = []
    stopper = _Stopper(cfg)
    if resume_state:
        opt.load_state_dict(resume_state["optimizer"])
        history = list(resume_state["history"])
        stopper = _Stopper(cfg, resume_state.get("stopper"))
        stopper.weights = resume_state.get("best_model")
        if (stopper.weights is None and cfg.overwrite_with_best_model
                and 0 < stopper.best_epoch == len(history)):
            # the checkpoint's own model was the best (saved on what was the last epoch)
            stopper.weights = copy_state(net)
        family.load_state(resume_state.get("family_optimizers"))
        family.initial = None   # prior_mmd_initial belongs to a fit's first epoch only
        start_epoch = len(history)
    gen: Optional[torch.Generator] = None
    gen_epoch = -1
    sample_gen: Optional[torch.Generator] = None
    sample_epoch = -1
    noisy = cfg.noise != "none" or cfg.input_dropout_ratio > 0
    c = cfg.coding_layer - 1
    samples = sum(h["rows"] for h in history)
    avg_act: Optional[torch.Tensor] = None
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        t0 = time.perf_counter()
        loss_sum, rows = 0.0, 0
        act_sum: Optional[torch.Tensor] = None
        family.start_epoch()
        if isinstance(opt, LazyStep):
            opt.refresh()
        for batch in train_batches(epoch):
            z = scaled_batch(net, _tensor(batch), cfg.skip_missing)
            opt = optimizer(z)
            if noisy and gen_epoch != epoch:
                gen, gen_epoch = noise_generator(cfg.seed, rank, epoch, z.device), epoch
            inp = corrupt_batch(z, cfg.noise, cfg.noise_level, cfg.input_dropout_ratio,
                                net.scaler.lo, net.scaler.hi, gen) if noisy else z
            if k and sparse.is_sparse(z) and sparse.is_sparse(inp):
                if sample_gen is None or sample_epoch != epoch:
                    sample_gen = noise_generator(cfg.seed, rank, epoch, z.device, stream=1)
                    sample_epoch = epoch
                entries = sample_entries(z, k, sample_gen)
                if isinstance(opt, LazyStep):
                    mse, acts = opt.forward(inp, entries)
                else:
                    y, acts = model(inp, entries=(entries.rows, entries.cols))
                    mse = sampled_mse(y, entries)
            else:
                y, acts = model(inp)
                mse = reconstruction_mse(y, z)
            loss = mse
            extra = family.loss_terms(inp, acts, z.shape[0])
            if extra is not None:
                loss = loss + extra
            if cfg.l1 or cfg.l2:
                loss = loss + penalty(net, cfg)
            if cfg.sparsity_beta and cfg.sparsity_method == "kl":
                loss = loss + cfg.sparsity_beta * kl_sparsity(acts[c], cfg.average_activation,
                                                              cfg.activation)
            if cfg.optimizer == "sgd":
                lr, momentum = sgd_schedule(cfg, samples)
                for group in opt.param_groups:
                    group["lr"], group["momentum"] = lr, momentum
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            family.adversarial_step(model, z)
            if cfg.max_w2 < float("inf"):
                apply_max_w2(net, cfg.max_w2)
            coding = acts[c].detach()
            if cfg.sparsity_beta and cfg.sparsity_method == "h2o_bias":
                mean = coding.mean(dim=0)
                avg_act = mean if avg_act is None else 0.9 * avg_act + 0.1 * mean
                with torch.no_grad():
                    net.layers[c].bias -= cfg.sparsity_beta * (avg_act - cfg.average_activation)
            batch_sum = coding.sum(dim=0)
            act_sum = batch_sum if act_sum is None else act_sum + batch_sum
            loss_sum += float(mse.detach()) * z.shape[0]
            rows += z.shape[0]
            samples += z.shape[0]
        n_act = net.hidden[c]
        totals = reduce([loss_sum, float(rows)] + (act_sum.tolist() if act_sum is not None
                                                   else [0.0] * n_act) + family.totals())
        loss_sum, rows = totals[0], int(totals[1])
        family_totals, totals = totals[2 + n_act:], totals[:2 + n_act]
        if rows == 0:
            raise ValueError("the training data yielded no rows")
        train_mse = loss_sum / rows
        if not np.isfinite(train_mse):
            raise FloatingPointError(f"training diverged in epoch {epoch + 1}: the loss is "
                                     f"{train_mse}; lower 'rate' or check the input scaling")
        scored = (epoch + 1) % cfg.score_interval == 0 or epoch + 1 == cfg.epochs
        valid = (evaluate(net, valid_batches(), cfg.skip_missing)
                 if valid_batches and scored else None)
        seconds = time.perf_counter() - t0
        entry = {"epoch": epoch + 1, "train_mse": train_mse, "validation_mse": valid,
                 "rows": rows, "seconds": seconds, "rows_per_s": rows / max(seconds, 1e-9),
                 "coding_activations": [v / rows for v in totals[2:]], "best": False,
                 **family.entry(family_totals, rows)}
        history.append(entry)
        stop = scored and stopper.update(epoch + 1, valid if valid is not None else train_mse,
                                         net, last=epoch + 1 == cfg.epochs)
        if on_epoch:
            on_epoch(entry)
        if checkpoint:
            checkpoint(epoch + 1, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                   "history": history, "stopper": stopper.state(),
                                   "best_model": stopper.weights,
                                   "family_optimizers": family.state()})
        if stop:
            log.info("early stopping after epoch %d: no improvement in %d scoring rounds "
                     "(best epoch %d)", epoch + 1, cfg.stopping_rounds, stopper.best_epoch)
            break
    if isinstance(opt, LazyStep):
        opt.close()
    if cfg.overwrite_with_best_model and stopper.weights is not None:
        net.load_state_dict(stopper.weights)
    best = stopper.best_epoch if cfg.overwrite_with_best_model else len(history)
    for entry in history:
        entry["best"] = entry["epoch"] == best
    net.eval()
    return history
