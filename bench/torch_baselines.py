"""Plain-Torch baselines the benchmark entries measure sparkae against.

Holds the in-memory Torch network, training loop, reconstruction and scoring rate
(:func:`torch_network`, :func:`torch_train`, :func:`torch_reconstruct`,
:func:`torch_score_rate`), the measured matrix-multiply rates that serve as the machine's
ceiling (:func:`train_gemm_gflops`, :func:`train_gemm_flop`, :func:`matmul_gflops`), and
the runner of a baseline in fresh processes under each OpenMP wait policy and Torch
thread count (:data:`OMP_CONFIGS`, :func:`fresh_process_runs`).

Nothing here prints; progress goes to the ``bench`` logger.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bench.common import CORES, ROOT

log = logging.getLogger("bench")


def network_spec(images: np.ndarray, hidden: Sequence[int], standardize: str = "h2o"
                 ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The spec of sparkae's network for ``images`` (tanh, linear output) and its
    ``standardize`` scaling (default H2O's), computed in NumPy by the same
    :func:`sparkae.nn.scaling.compute_scaling`, as the scaler's tensors."""
    from sparkae.nn.scaling import FeatureStats, compute_scaling

    x = images.astype(np.float64)
    stats = FeatureStats(count=len(x), mean=x.mean(0), std=x.std(0, ddof=1), min=x.min(0),
                         max=x.max(0))
    scaling = compute_scaling(stats, standardize, True)
    spec = {"input_size": x.shape[1], "kept": int(len(scaling.keep)), "hidden": list(hidden),
            "activation": "tanh", "output_activation": "linear"}
    return spec, scaling.tensors()


def torch_network(images: np.ndarray, hidden: Sequence[int], seed: int = 123,
                  standardize: str = "h2o"):
    """sparkae's network class with the ``standardize`` scaling (default H2O's) computed
    from ``images`` (:func:`network_spec`), untrained, seeded."""
    import torch

    from sparkae.nn.models import build_network

    spec, scaling = network_spec(images, hidden, standardize)
    torch.manual_seed(seed)
    net = build_network(spec)
    net.scaler.set_statistics(**scaling)
    return net


def torch_train(images: np.ndarray, hidden: Sequence[int], epochs: int = 10,
                batch_size: int = 64, seed: int = 123, lr: float = 1e-3,
                standardize: str = "h2o", device: str = "cpu") -> Dict[str, Any]:
    """A plain in-memory Torch loop: the same network, Adam (Torch's fused kernel where it
    has one, as sparkae takes it: a plain loop's best configuration), MSE in the scaled space,
    shuffled mini-batches; the rows are scaled once before the loop (not timed). Returns
    the trained net (on the CPU), seconds (loop only), each epoch's seconds and rows/s.
    In-process: the benchmarks run it in fresh processes under each thread count and
    OpenMP wait policy (:func:`fresh_process_runs`). On a GPU (``device="cuda"``) the
    scaled rows, the shuffle and the steps stay on the device."""
    import torch

    from sparkae.train.optim import fused_adam

    dev = torch.device(device)
    net = torch_network(images, hidden, seed, standardize).to(dev)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=lr, **fused_adam(params))
    x = torch.from_numpy(images.astype(np.float32)).to(dev)
    with torch.no_grad():
        z_all = net.scaler(x)
    gen = torch.Generator(device=dev).manual_seed(seed)
    net.train()
    epoch_s = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(z_all), generator=gen, device=dev)
        for i in range(0, len(perm), batch_size):
            z = z_all[perm[i:i + batch_size]]
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((net.reconstruct(z) - z) ** 2)
            loss.backward()
            opt.step()
        sync(dev)
        epoch_s.append(time.perf_counter() - t0)
    secs = sum(epoch_s)
    net.eval()
    return {"net": net.cpu(), "seconds": secs, "epoch_seconds": epoch_s,
            "rows_per_s": len(images) * epochs / secs}


def sync(device) -> None:
    """Wait for ``device``'s queued work (a GPU's kernels run after the call returns)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_reconstruct(net, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Reconstruction (input units, full width) of ``images`` by a Torch net."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            z = net.scaler(torch.from_numpy(images[i:i + batch_size].astype(np.float32)))
            out.append(net.scaler.unscale(net.reconstruct(z)).numpy())
    return np.concatenate(out).astype(np.float64)


def torch_score_rate(net, images: np.ndarray, batch_size: int = 1024,
                     repeats: int = 1, device: str = "cpu") -> float:
    """Rows/s of a plain Torch forward computing what ``transform`` computes by default
    (codings of the coding layer and the per-row reconstruction MSE), uint8 -> float32
    conversion included; on a GPU each batch goes to the device and its outputs come back
    as NumPy arrays."""
    import torch

    from sparkae.nn.models import coding_layer

    dev = torch.device(device)
    net = net.to(dev)
    layer = coding_layer(net.hidden)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(repeats):
            for i in range(0, len(images), batch_size):
                x = torch.from_numpy(images[i:i + batch_size].astype(np.float32))
                z = net.scaler(x.to(dev))
                acts = net.hidden_activations(z)
                codes = acts[layer - 1].cpu().numpy()
                mse = ((net.decode_from_last(acts[-1]) - z) ** 2).mean(dim=1).cpu().numpy()
    del codes, mse
    return len(images) * repeats / (time.perf_counter() - t0)


def train_gemm_gflops(batch: int, kept: int, hidden: int, threads: Optional[int] = None,
                      seconds: float = 2.0) -> float:
    """Measured float32 rate (GFLOP/s) of the matrix multiplies one training step of a
    ``kept -> hidden -> kept`` network makes on ``batch`` rows, as a plain ``torch.mm``
    loop at the same shapes and layouts: the two forward products, and the backward's
    output-layer input and weight gradients and first-layer weight gradient (the inputs
    need no gradient); 5 x 2 x batch x kept x hidden FLOP a step (:func:`train_gemm_flop`).
    The median of repeated timings over ``seconds`` on ``threads`` Torch threads (default:
    as set): on shared cores a best-of would compare the loop's average with a burst."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        z, w1 = torch.randn(batch, kept, generator=gen), torch.randn(hidden, kept, generator=gen)
        h, w2 = torch.randn(batch, hidden, generator=gen), torch.randn(kept, hidden, generator=gen)
        dy, dh = torch.randn(batch, kept, generator=gen), torch.randn(batch, hidden, generator=gen)

        def step() -> None:
            torch.mm(z, w1.t())          # first layer: batch x hidden
            torch.mm(h, w2.t())          # output layer: batch x kept
            torch.mm(dy, w2)             # gradient of the hidden activations
            torch.mm(dy.t(), h)          # output layer's weight gradient
            torch.mm(dh.t(), z)          # first layer's weight gradient
        for _ in range(3):
            step()
        flop = train_gemm_flop(batch, kept, hidden)
        reps = max(1, int(5e7 / flop))          # time blocks of about 0.05 GFLOP or more
        rates, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end or len(rates) < 3:
            t0 = time.perf_counter()
            for _ in range(reps):
                step()
            rates.append(flop * reps / (time.perf_counter() - t0))
        return float(np.median(rates)) / 1e9
    finally:
        torch.set_num_threads(old)


def train_gemm_flop(batch: int, kept: int, hidden: int) -> float:
    """FLOP of the matrix multiplies of one training step (see :func:`train_gemm_gflops`)."""
    return 5 * 2.0 * batch * kept * hidden


#: Configurations the plain Torch baselines run under, each in a fresh process (the
#: OpenMP wait policy is read once, when Torch loads): (OMP_WAIT_POLICY or "default" for
#: unset, Torch threads).
OMP_CONFIGS: List[Tuple[str, int]] = [("default", 1), ("default", 2), ("PASSIVE", 1),
                                      ("PASSIVE", 2)]


def fresh_process_runs(code: str, args: Sequence[str],
                       configs: Sequence[Tuple[str, int]] = tuple(OMP_CONFIGS),
                       timeout: float = 900, what: str = "plain Torch baseline",
                       allow_failure: bool = False) -> Dict[str, Any]:
    """Run ``python -c code ROOT THREADS *args`` once per configuration of ``configs``,
    each in a fresh process with ``OMP_WAIT_POLICY`` set to the policy (unset for
    ``default``); the child sets its Torch threads from ``THREADS`` and prints one JSON
    value as its last line. Returns ``{"omp=POLICY threads=N": value}``; a configuration
    whose process fails is logged and left out.

    Raises
    ------
    RuntimeError
        Every configuration failed (unless ``allow_failure``: then ``{}``).
    """
    import subprocess
    import sys

    out: Dict[str, Any] = {}
    errors = []
    for policy, threads in configs:
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(threads),
                               *map(str, args)], env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            log.warning("%s omp=%s threads=%d failed: %s", what, policy, threads,
                        proc.stderr[-1000:])
            errors.append(proc.stderr[-300:])
            continue
        out[f"omp={policy} threads={threads}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out and not allow_failure:
        raise RuntimeError(f"{what}: every configuration failed; last error: {errors[-1]}")
    return out


def matmul_gflops(n: int = 2048, threads: int = CORES, seconds: float = 2.0,
                  m: Optional[int] = None, k: Optional[int] = None) -> float:
    """Measured float32 matrix-multiply rate (GFLOP/s) of (m x k) @ (k x n) on ``threads``
    Torch threads (square n x n by default), best of repeated timings over ``seconds``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m, k = m or n, k or n
        a, b = torch.randn(m, k), torch.randn(k, n)
        c = torch.empty(m, n)
        for _ in range(3):
            torch.mm(a, b, out=c)
        flop = 2.0 * m * k * n
        reps = max(1, int(2e8 / flop))          # time blocks of about 0.2 GFLOP or more
        best, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b, out=c)
            best = max(best, flop * reps / (time.perf_counter() - t0))
        return best / 1e9
    finally:
        torch.set_num_threads(old)


#: The plain loop on the bundled sample in a fresh process (:func:`sample_train_best`):
#: argv = ROOT THREADS HIDDEN(json) EPOCHS BATCH TEST_LIMIT (-1: no test MSE, 0: the whole
#: test set); a warm-up epoch on 500 rows first; prints rows/s, seconds [, test_mse].
_SAMPLE_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[2]))
from bench import common, torch_baselines
hidden, epochs, batch = json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
test_limit = int(sys.argv[6])
x, _ = common.sample_arrays()
torch_baselines.torch_train(x[:500], hidden, epochs=1, batch_size=batch)
run = torch_baselines.torch_train(x, hidden, epochs=epochs, batch_size=batch)
out = {"rows_per_s": run["rows_per_s"], "seconds": run["seconds"]}
if test_limit >= 0:
    test = common.test_arrays(test_limit or None)
    out["test_mse"] = common.pixel_mse(
        test.images, torch_baselines.torch_reconstruct(run["net"], test.images))
print(json.dumps(out))
"""


def sample_train_best(hidden: Sequence[int], epochs: int, batch: int = 64,
                      test_limit: Optional[int] = -1, quick: bool = False
                      ) -> Tuple[str, Dict[str, Any]]:
    """The plain loop on the bundled sample in its best configuration: one fresh process per
    thread count and OpenMP wait policy (:data:`OMP_CONFIGS`; ``quick``: the default policy
    on 2 threads only, for smoke runs). ``test_limit``: -1 for no test MSE, None for the
    whole MNIST test set, else its first rows. Returns the fastest configuration's name and
    every configuration's ``{rows_per_s, seconds[, test_mse]}``."""
    limit = 0 if test_limit is None else test_limit
    runs = fresh_process_runs(_SAMPLE_CHILD, [json.dumps(list(hidden)), epochs, batch, limit],
                              configs=[("default", CORES)] if quick else OMP_CONFIGS,
                              what="plain Torch training loop (bundled sample)")
    return max(runs, key=lambda k: runs[k]["rows_per_s"]), runs
