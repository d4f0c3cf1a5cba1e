"""PenaltyHook under DDP (2 CPU processes, gloo): identical weights on every rank, equal to one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Run as a script: Lightning's DDP launcher re-executes it for rank 1.
SCRIPT = r"""
import sys

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from reglight.callbacks import PenaltyHook
from reglight.penalties import L1, ElasticNet


class Net(pl.LightningModule):
    def __init__(self, dataset, global_batch):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
        self.dataset, self.global_batch = dataset, global_batch

    def train_dataloader(self):
        # the same global batch in order: rank r takes samples r, r + W, ... (W = world size)
        world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DistributedSampler(self.dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(self.dataset, batch_size=self.global_batch // world, sampler=sampler)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def main(out, devices):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g)
    y = x[:, :2].sum(1, keepdim=True) + 0.1 * torch.randn(64, 1, generator=g)
    model = Net(TensorDataset(x, y), global_batch=16)
    hooks = [
        PenaltyHook(L1(0.02), method="gradient", include="net.0.weight", name="l1"),
        PenaltyHook(ElasticNet(1.0, 0.9), method="proximal", include="net.2.weight", name="enet"),
    ]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=3,
        callbacks=hooks,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model)
    torch.save(model.state_dict(), f"{out}/devices{devices}_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
"""


@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_ddp_ranks_identical_and_equal_to_single_process(tmp_path: Path) -> None:
    script = tmp_path / "penalty_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    namespace: dict[str, object] = {"__name__": "penalty_ddp"}
    exec(compile(SCRIPT, str(script), "exec"), namespace)
    namespace["main"](str(tmp_path), 1)  # type: ignore[operator]

    rank0 = torch.load(tmp_path / "devices2_rank0.pt")
    rank1 = torch.load(tmp_path / "devices2_rank1.pt")
    single = torch.load(tmp_path / "devices1_rank0.pt")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key  # bitwise identical across ranks
        torch.testing.assert_close(rank0[key], single[key], rtol=1e-5, atol=1e-6, msg=key)
    assert int((single["net.2.weight"] == 0).sum()) > 0  # the proximal hook made exact zeros
    assert int((rank0["net.2.weight"] == 0).sum()) == int((single["net.2.weight"] == 0).sum())
