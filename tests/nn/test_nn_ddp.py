"""Two CPU processes (gloo) train a model with our layers under DDP.

(SyncBatchNorm itself needs GPUs under DDP; that our norms are left alone by its conversion is tested in
test_nn_convert.py.)"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from reglight.nn import BatchRenorm2d, DropBlock2d, DropPath, GhostBatchNorm2d, LayerNorm2d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # same initial weights; DDP also broadcasts them
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        GhostBatchNorm2d(8, virtual_batch_size=2),
        DropBlock2d(0.2, 3),
        BatchRenorm2d(8, r_max=2.0, d_max=1.0),
        LayerNorm2d(8),
        DropPath(0.2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    model = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(100 + rank)  # different data and masks on each rank
    for _ in range(3):
        x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 2, (6,))
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # parameters: all-reduced gradients keep them identical; buffers are rank 0's at each forward
    # (DDP broadcasts them) and then updated locally, so only their finiteness is compared
    state = [p.detach().clone() for p in net.parameters()]
    assert all(torch.isfinite(b).all() for b in net.buffers())
    gathered: list[list[torch.Tensor]] = [[] for _ in range(world)]
    dist.all_gather_object(gathered, state)
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


@pytest.mark.ddp
def test_ddp_two_processes_keep_identical_weights(tmp_path: Path) -> None:
    out = tmp_path / "states.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    states = torch.load(out)
    assert len(states) == 2 and len(states[0]) == len(states[1]) > 10
    for a, b in zip(states[0], states[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
