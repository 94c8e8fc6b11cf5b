"""The H2O-3 side of the H2O entries (:mod:`bench.bench_h2o`, :mod:`bench.bench_h2o_large`):
a backend on 127.0.0.1 owned by this process, the frames imported through CSV, every
architecture trained once (singles one by one, the chapter's grid in one ``h2o.grid``) and
the test set reconstructed by each model."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bench import common

log = logging.getLogger("bench")

#: Optional cap on H2O's training seconds (all models together); unset = train to the end.
BUDGET_ENV = "SPARKAE_BENCH_H2O_BUDGET_S"
MIN_CAP_S = 15.0


def arch(h) -> str:
    return "[" + ", ".join(str(int(v)) for v in h) + "]"


class H2OBackend:
    """An H2O-3 server on 127.0.0.1 owned by this process; a context manager."""

    def __init__(self, nthreads: int, workdir: str) -> None:
        self.nthreads, self.workdir, self.server, self.pid = nthreads, workdir, None, None

    def __enter__(self):
        import h2o
        from h2o.backend import H2OLocalServer

        t0 = time.perf_counter()
        os.makedirs(self.workdir, exist_ok=True)
        self.server = H2OLocalServer.start(nthreads=self.nthreads, max_mem_size=4 << 30,
                                           enable_assertions=False, ice_root=self.workdir,
                                           log_dir=self.workdir, bind_to_localhost=True,
                                           verbose=False)
        self.pid = self.server._process.pid
        h2o.connect(server=self.server, verbose=False, telemetry=False)
        h2o.no_progress()
        self.start_s = time.perf_counter() - t0
        log.info("H2O %s started on 127.0.0.1:%s (pid %s) in %.1f s", h2o.__version__,
                 self.server.port, self.pid, self.start_s)
        return self

    def __exit__(self, *exc) -> None:
        import h2o

        try:
            h2o.cluster().shutdown()
        except Exception as err:  # noqa: BLE001 - fall through to the kill
            log.warning("H2O shutdown request failed: %s", err)
        proc = self.server._process if self.server is not None else None
        if proc is not None:
            try:
                proc.wait(timeout=20)
            except Exception:  # noqa: BLE001 - still alive: kill it by pid
                log.warning("killing H2O's java process %s", self.pid)
                try:
                    os.kill(self.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                except OSError:
                    pass
            self.server._process = None


def _h2o_frame(h2o, images: np.ndarray, path: str, name: str):
    """Import ``images`` (pixels 0-255) into H2O through a CSV file the server reads."""
    cols = [f"p{i}" for i in range(images.shape[1])]
    np.savetxt(path, images, fmt="%d", delimiter=",", header=",".join(cols), comments="")
    return h2o.import_file(path, destination_frame=name, header=1,
                           col_types=["numeric"] * len(cols)), cols


def _h2o_reconstruction(model, frame, train: np.ndarray,
                        cols: List[str]) -> Tuple[np.ndarray, float]:
    """H2O's reconstruction of ``frame`` at full width (a pixel H2O dropped as constant in
    training gets its constant training value) and the seconds predict + download took."""
    t0 = time.perf_counter()
    pdf = model.predict(frame).as_data_frame(use_pandas=True)
    secs = time.perf_counter() - t0
    out = np.tile(train[0].astype(np.float64), (len(pdf), 1))
    index = {c: i for i, c in enumerate(cols)}
    for name in pdf.columns:
        out[:, index[name[len("reconstr_"):]]] = pdf[name].to_numpy(dtype=np.float64)
    return out, secs


def budget_s() -> Optional[float]:
    """``$SPARKAE_BENCH_H2O_BUDGET_S`` in seconds, or None when unset."""
    value = os.environ.get(BUDGET_ENV)
    return float(value) if value else None


def run_h2o(singles: List[List[int]], grid_archs: List[List[int]], epochs: int,
             train: np.ndarray, test: np.ndarray, work: str,
             budget: Optional[float]) -> Dict[str, Any]:
    """Train H2O once per architecture: each of ``singles`` as one model, then
    ``grid_archs`` in one ``h2o.grid``; reconstruct ``test`` with every model."""
    import warnings

    import h2o
    from h2o.estimators import H2OAutoEncoderEstimator
    from h2o.grid.grid_search import H2OGridSearch

    warnings.filterwarnings("ignore", message="Dropping bad and constant columns")
    warnings.filterwarnings("ignore", message="Converting H2O frame to pandas")
    out: Dict[str, Any] = {"models": {}, "not_run": [], "grid_wall_s": None,
                           "grid_rank": [], "grid_rank_by": None, "budget_s": budget}
    with H2OBackend(common.CORES, os.path.join(work, "h2o")) as backend:
        out["start_s"] = backend.start_s
        t0 = time.perf_counter()
        train_fr, cols = _h2o_frame(h2o, train, os.path.join(work, "train.csv"), "train")
        test_fr, _ = _h2o_frame(h2o, test, os.path.join(work, "test.csv"), "test")
        out["import_s"] = time.perf_counter() - t0
        # stopping_rounds=0: every model trains all its epochs (H2O's default early stopping
        # ended [300, 100, 300] and [250, 100, 50, 100, 250] after about 5 of 10 epochs)
        params = dict(activation="Tanh", epochs=epochs, sparse=True, seed=123,
                      stopping_rounds=0)
        remaining, left = budget, len(singles) + len(grid_archs)

        def cap() -> float:
            # an equal share of what is left of the budget (0 = no cap, H2O's default)
            return 0.0 if remaining is None else max(remaining / max(left, 1), 0.0)

        models = []
        for hidden in singles:
            if budget is not None and cap() < MIN_CAP_S:
                out["not_run"].append(arch(hidden))
                continue
            est = H2OAutoEncoderEstimator(hidden=hidden, max_runtime_secs=cap(), **params)
            t0 = time.perf_counter()
            est.train(x=cols, training_frame=train_fr)
            wall = time.perf_counter() - t0
            if remaining is not None:
                remaining -= wall
            left -= 1
            models.append((hidden, est, "single model"))
            log.info("H2O %s (single model) trained in %.1f s", arch(hidden), wall)
        if grid_archs and budget is not None and cap() < MIN_CAP_S:
            out["not_run"] += [arch(h) for h in grid_archs]
        elif grid_archs:
            grid = H2OGridSearch(H2OAutoEncoderEstimator(max_runtime_secs=cap(), **params),
                                 hyper_params={"hidden": grid_archs},
                                 grid_id="sparkae_bench_grid",
                                 search_criteria={"strategy": "Cartesian"})
            t0 = time.perf_counter()
            grid.train(x=cols, training_frame=train_fr)
            out["grid_wall_s"] = time.perf_counter() - t0
            log.info("h2o.grid of %d architectures trained in %.1f s", len(grid_archs),
                     out["grid_wall_s"])
            trained = [(list(m.actual_params["hidden"]), m) for m in grid.models]
            models += [(h, m, "h2o.grid") for h, m in trained]
            out["not_run"] += [arch(h) for h in grid_archs
                               if arch(h) not in {arch(t) for t, _ in trained}]
            try:    # the chapter's h2o.getGrid(sort_by = "mse"): training MSE, ascending
                ranked = grid.get_grid(sort_by="mse", decreasing=False).models
                out["grid_rank_by"] = 'grid.get_grid(sort_by="mse")'
            except Exception as err:  # noqa: BLE001 - rank here by the same numbers
                log.warning("get_grid(sort_by='mse') failed (%s); ranking by model.mse()", err)
                ranked = sorted((m for _, m in trained), key=lambda m: m.mse())
                out["grid_rank_by"] = "model.mse() (get_grid failed)"
            out["grid_rank"] = [arch(m.actual_params["hidden"]) for m in ranked]
        for hidden, m, source in models:
            rec, pred_s = _h2o_reconstruction(m, test_fr, train, cols)
            run_s = m._model_json["output"]["run_time"] / 1000.0
            done = float(m._model_json["output"]["scoring_history"]["epochs"][-1])
            complete = done >= 0.98 * epochs
            out["models"][arch(hidden)] = {
                "fit_s": run_s if complete else run_s * epochs / max(done, 1e-9),
                "run_s": run_s, "epochs_done": done, "complete": complete, "source": source,
                "max_runtime_s": m.actual_params.get("max_runtime_secs"),
                "samples_per_s": done * len(train) / max(run_s, 1e-9),
                "predict_s": pred_s, "test_mse": common.pixel_mse(test, rec),
                "train_mse_scaled": float(m.mse())}
            log.info("H2O %s (%s): %.2f of %d epochs in %.1f s, test MSE %.5f", arch(hidden),
                     source, done, epochs, run_s, out["models"][arch(hidden)]["test_mse"])
    return out
