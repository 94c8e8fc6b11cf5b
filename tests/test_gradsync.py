"""sparkae.train.gradsync in two real gloo ranks (processes on 127.0.0.1, a file store):
rank 0's weights on every rank, gradients averaged before each optimizer step, parameters
without a gradient anywhere left without one; and no torch._dynamo import on the way."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

_RANK = r"""
import json, os, sys
import torch
import torch.distributed as dist
from sparkae.train.gradsync import averaged_gradients, broadcast_parameters
from sparkae.train.lean import fused_update
from sparkae.train.optim import SGD, Adam

rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2)
torch.manual_seed(rank)                     # different weights on each rank at first
net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1), torch.nn.Linear(1, 1))
broadcast_parameters(net)
start = [p.detach().clone() for p in net.parameters()]
a, b, c = net[0], net[1], net[2]
opt = SGD(net.parameters(), lr=1.0)
with averaged_gradients(2):
    opt.zero_grad(set_to_none=True)
    a.weight.grad = torch.full_like(a.weight, float(rank + 1))   # both ranks: 1 and 2
    a.bias.grad = torch.full_like(a.bias, 4.0)
    if rank == 0:                                                # rank 0 only
        b.weight.grad = torch.full_like(b.weight, 2.0)
    # b.bias and layer c: no gradient on any rank
    opt.step()
    grads = {name: None if p.grad is None else p.grad.tolist()
             for name, p in net.named_parameters()}
    # the loop's direct call of Adam's fused kernel would skip the averaging: refused
    adam = Adam(c.parameters(), lr=0.1, fused=True)
    for p in c.parameters():
        p.grad = torch.ones_like(p)
    adam.step()
    fused_inside = fused_update(adam)
opt.zero_grad(set_to_none=True)
b.weight.grad = torch.full_like(b.weight, float(rank))
opt.step()                                    # outside the block: no averaging
for p in c.parameters():
    p.grad = torch.ones_like(p)
json.dump({"start": [t.tolist() for t in start], "grads": grads,
           "fused": [fused_inside, fused_update(adam)],
           "after": b.weight.grad.tolist(),
           "dynamo": "torch._dynamo" in sys.modules}, open(out, "w"))
dist.destroy_process_group()
"""


def test_two_ranks_start_alike_and_average_their_gradients(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), GLOO_SOCKET_IFNAME="lo",
               OMP_NUM_THREADS="1")
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(store),
                               str(tmp_path / f"rank{r}.json")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["start"] == r1["start"]                 # rank 0's weights everywhere
    for res in (r0, r1):
        g = res["grads"]
        assert g["0.weight"] == [[1.5] * 3] * 2      # (1 + 2) / 2
        assert g["0.bias"] == [4.0, 4.0]
        assert g["1.weight"] == [[1.0, 1.0]]          # rank 0's 2.0, averaged with zero
        assert g["1.bias"] is None and g["2.weight"] is None and g["2.bias"] is None
        assert res["dynamo"] is False
        assert res["fused"] == [False, True]
    assert r0["after"] == [[0.0, 0.0]] and r1["after"] == [[1.0, 1.0]]   # hook removed
