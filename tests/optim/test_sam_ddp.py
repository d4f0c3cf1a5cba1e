"""SAM under DDP (2 CPU processes, gloo): identical weights on both ranks, equal to one-process references.

SAMCallback (local ascent): each rank's perturbation comes from its own half of the batch (m-sharpness, m = the
per-rank batch), also with gradient accumulation (m = the rank's micro-batches of a step). The SAM optimizer:
both passes are all-reduced (m = the global batch).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _sam_reference import grads_at, perturbation
from torch import Tensor

SCRIPT = r"""
import sys

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from reglight.callbacks import SAMCallback
from reglight.optim import SAM


class Net(pl.LightningModule):
    def __init__(self, dataset, use_sam_optimizer):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).double()
        self.dataset, self.use_sam_optimizer = dataset, use_sam_optimizer

    def train_dataloader(self):
        world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DistributedSampler(self.dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(self.dataset, batch_size=8, sampler=sampler)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        if self.use_sam_optimizer:
            return SAM(self.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def main(out):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.sin(x[:, :2]) + 0.1 * torch.randn(32, 2, generator=g, dtype=torch.float64)
    for name, use_sam_optimizer, accumulate in (
        ("callback", False, 1), ("optimizer", True, 1), ("callback_accumulate", False, 2)
    ):
        model = Net(TensorDataset(x, y), use_sam_optimizer)
        trainer = pl.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
            callbacks=[] if use_sam_optimizer else [SAMCallback(rho=0.1)],
            accumulate_grad_batches=accumulate,
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            use_distributed_sampler=False,
        )
        trainer.fit(model)
        torch.save(model.net.state_dict(), f"{out}/{name}_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
"""


def reference(local: bool, per_rank: int = 8) -> list[Tensor]:
    """SAM steps of SGD(momentum 0.9) on 2 x `per_rank` samples, 2 epochs of 32 samples; local: one perturbation
    per rank's part of the batch."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.sin(x[:, :2]) + 0.1 * torch.randn(32, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()
    w = [p.detach().clone() for p in net.parameters()]
    buf: list[Tensor] | None = None
    per_epoch = 16 // per_rank
    for step in range(2 * per_epoch):
        j = step % per_epoch  # step within the epoch
        # DistributedSampler(shuffle=False): rank r holds samples r, r + 2, ...; its step j takes per_rank of them
        halves = [
            torch.tensor([2 * (per_rank * j + i) + r for i in range(per_rank)]) for r in (0, 1)
        ]

        def loss_on(idx: Tensor):
            def loss_fn(params: list[Tensor], _: int) -> Tensor:
                w1, b1, w2, b2 = params
                return F.mse_loss(torch.tanh(x[idx] @ w1.T + b1) @ w2.T + b2, y[idx])

            return loss_fn

        if local:
            descent = None
            for idx in halves:
                gr = grads_at(w, loss_on(idx), 0)
                e = perturbation(w, gr, 0.1, False, 0.0)
                gs = grads_at([a + b for a, b in zip(w, e)], loss_on(idx), 0)
                descent = gs if descent is None else [(a + b) / 2 for a, b in zip(descent, gs)]
        else:
            both = torch.cat(halves)
            gr = grads_at(w, loss_on(both), 0)
            e = perturbation(w, gr, 0.1, False, 0.0)
            descent = grads_at([a + b for a, b in zip(w, e)], loss_on(both), 0)
        assert descent is not None
        buf = descent if buf is None else [0.9 * b + d for b, d in zip(buf, descent)]
        w = [p - 0.1 * b for p, b in zip(w, buf)]
    return w


@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_ddp_local_and_global_ascent_match_references(tmp_path: Path) -> None:
    script = tmp_path / "sam_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    local_ref, global_ref = reference(local=True), reference(local=False)
    accumulated_ref = reference(local=True, per_rank=16)  # 2 micro-batches of 8 per rank and step
    for name, expected in (
        ("callback", local_ref),
        ("optimizer", global_ref),
        ("callback_accumulate", accumulated_ref),
    ):
        ranks = [torch.load(tmp_path / f"{name}_rank{r}.pt") for r in (0, 1)]
        for k in ranks[0]:
            torch.testing.assert_close(ranks[0][k], ranks[1][k], rtol=0, atol=0)
        for got, want in zip(ranks[0].values(), expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # the two references differ: the test can tell m-sharpness from global-batch SAM
    assert max((a - b).abs().max().item() for a, b in zip(local_ref, global_ref)) > 1e-6
