"""README's "Why the missed targets are missed", the GPU bullet: training over every epoch
at batch 256 and 1024, and GPU scoring, over the stored runs on the current GPU code."""

from __future__ import annotations

from typing import Any, Dict, List

from bench.passages import MissingResult, Records, files, span, target, times

#: GPU runs on the current training and scoring path (commit cbf196a: pinned copies, one
#: copy of an epoch's row ids, sparse rows scattered on the GPU).
GPU_SINCE = "2026-12-04T14:58"
#: GPU runs since a GPU worker checks dense rows on the GPU (commit df71bda).
GPU_CHECK_SINCE = "2026-12-04T18:02"
#: GPU runs made back to back on one warm machine.
GPU_SAME_MACHINE = (("gpu-20261204-180336.json", "gpu-20261204-180458.json"),
                    ("gpu-20261204-180942.json", "gpu-20261204-181111.json"))


def _gpu_cells(rec: Dict[str, Any], epochs: int = 3) -> Dict[int, Dict[str, Any]]:
    return {c["batch"]: c for c in rec["result"]["training"]
            if (c.get("epochs") or 3) == epochs}


def gpu(r: Records) -> str:
    """GPU training over every epoch at batch 256 and 1024, and GPU scoring."""
    runs = r.need("gpu", since=GPU_SINCE)
    c3 = [_gpu_cells(x) for x in runs]
    ten = [x for x in runs if _gpu_cells(x, 10)]
    c10 = [_gpu_cells(x, 10) for x in ten]
    first = [c[1024]["sparkae_first_epoch_s"] for c in c3 if "sparkae_first_epoch_s" in c[1024]]
    pfirst = [c[1024]["plain_first_epoch_s"] for c in c3 if "plain_first_epoch_s" in c[1024]]
    after = {b: [c[b]["after_first_ratio"] for c in c3] for b in (64, 256, 1024)}
    every = {b: [c[b]["loop_ratio"] for c in c3] for b in (256, 1024)}
    tens = {b: [c[b]["loop_ratio"] for c in c10] for b in (256, 1024)}
    plain64 = [c[64]["plain"]["rows_per_s"] for c in c3]
    pair = []
    for a, b in GPU_SAME_MACHINE:
        ca, cb = r.named(a)["result"]["training"], r.named(b)["result"]["training"]
        pair += [max(x["plain"]["rows_per_s"], y["plain"]["rows_per_s"])
                 / min(x["plain"]["rows_per_s"], y["plain"]["rows_per_s"])
                 for x, y in zip(ca, cb)]
    checked = r.runs("gpu", since=GPU_CHECK_SINCE)
    gpus = {(x["result"].get("device") or {}).get("gpus") for x in runs}
    two_ranks = (" The 2-rank (nccl) run needs a second GPU; every machine had one."
                 if gpus == {1} else "")

    def score(lay: str, cpu: bool = False) -> List[float]:
        key = f"{lay} batch=1024" + (", checked on the CPU" if cpu else "")
        return [x["result"]["scoring"]["sparkae"][key] / x["result"]["scoring"]["plain_best"]
                for x in checked if key in x["result"]["scoring"]["sparkae"]]

    met10 = sum(1 for x in ten if target(x, "training loop, batch 1024, 10 epochs (the "
                                            "estimators' default), every epoch: sparkae / "
                                            "plain Torch on the GPU").get("met"))
    paths = [x for x in runs if x["result"].get("paths")]
    agree = [x for x in paths if all(p.get("ok") for p in x["result"]["paths"])]
    return (
        f"- **GPU training over every epoch, batch 256 and 1024** (`python -m bench gpu` on "
        f"an H200; the {len(runs)} stored runs on the current GPU code: {files(runs)}; "
        "docs/DESIGN.md section 8 has the earlier ones): the rank's first epoch also reads "
        "its 60,000 rows from Parquet and decodes them on the CPU (3 row groups: training "
        "waits for the first to be read whole). At batch 1024 that epoch took "
        f"{span(first, '{:.2f}')} s; the plain loop starts with the rows already scaled on "
        f"the GPU, and its first epoch took {span(pfirst, '{:.2f}')} s. Over the epochs "
        f"after the first, sparkae's loop is at {span(after[1024])}x (batch 1024), "
        f"{span(after[256])}x (256) and {span(after[64])}x (64) of the plain loop, with the "
        f"same test MSE; over 3 epochs it is at {span(every[1024])}x at 1024 and "
        f"{span(every[256])}x at 256. Over the estimators' default of 10 epochs (the "
        f"{len(ten)} runs that measure it, where the first epoch's reading weighs what it "
        f"weighs in a default fit) it is at {span(tens[256])}x at batch 256 and "
        f"{span(tens[1024])}x at batch 1024 (0.8x met in {met10} of the {len(ten)}). The "
        f"plain loop's own rate at batch 64 spans {times(max(plain64) / min(plain64))} over "
        f"these runs, and moved by up to {times(max(pair))} between two runs on one warm machine "
        "(" + ", ".join(f"`{a}` and `{b}`" for a, b in GPU_SAME_MACHINE) + "). Proposed: "
        "measure the loop target over the estimators' default 10 epochs, or over the epochs "
        "after the first as for the CPU loop above; the first epoch's reading belongs to the "
        "whole fit's measure. Scoring: since a GPU worker checks and casts dense rows on the "
        f"GPU ({len(checked)} runs, {files(checked)}), dense vectors scored at "
        f"{span(score('dense'))}x, arrays at {span(score('array'))}x and sparse vectors at "
        f"{span(score('sparse'))}x of the plain GPU forward; each run also measured the check "
        f"on the CPU beside it: dense vectors {span(score('dense', True))}x, arrays "
        f"{span(score('array', True))}x. The wide sparse paths (CSR training with the exact "
        "and the sampled loss, CSR scoring with every output and `clip`) ran on the GPU in "
        f"{files(paths)} and agreed with the CPU in {len(agree)} of {len(paths)} "
        "(`bench/gpu_paths.py`)." + two_ranks)
