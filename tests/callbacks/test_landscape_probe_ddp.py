"""LossLandscapeProbe under DDP (2 CPU processes, gloo): the same numbers on every rank, equal to one process
on all the probe batches, and to the dense Hessian."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

# Run as a script: Lightning's DDP launcher re-executes it for rank 1.
SCRIPT = r"""
import sys

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from reglight.callbacks import LossLandscapeProbe

BATCH = 8


class Blocks(Sampler):
    # rank r of W takes the contiguous blocks r, r + W, r + 2W, ... of BATCH samples: its i-th batch is
    # the global batch j = i * W + r
    def __init__(self, n, world, rank):
        self.order = [k for j in range(rank, n // BATCH, world) for k in range(j * BATCH, (j + 1) * BATCH)]

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, generator=g)
    y = torch.tanh(x[:, :2].sum(1, keepdim=True)) + 0.1 * torch.randn(64, 1, generator=g)
    return TensorDataset(x, y)


def loss_fn(module, batch):
    x, y = batch
    return nn.functional.mse_loss(module(x), y)


class Net(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 1))
        self.dataset = data()

    def forward(self, x):
        return self.net(x)

    def train_dataloader(self):
        world, rank = self.trainer.world_size, self.trainer.global_rank
        return DataLoader(self.dataset, batch_size=BATCH, sampler=Blocks(64, world, rank))

    def training_step(self, batch, batch_idx):
        loss = loss_fn(self, batch)
        self.log("train/loss", loss, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(out):
    torch.set_num_threads(1)
    probe = LossLandscapeProbe(every_n_epochs=2, batches=4, metrics=("top_eigenvalue", "trace"), max_iter=40,
                               tol=1e-6, trace_samples=20,
                               max_overhead=1e9)  # the budget decision (broadcast from rank 0) always says yes
    model = Net()
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, callbacks=[probe],
        enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model)
    # the probe ran at the end of the last epoch: the final weights are the probed ones
    torch.save(
        {"history": probe.history, "batches": probe.state_dict()["batches"], "state": model.state_dict(),
         "logged": {k: float(v) for k, v in trainer.callback_metrics.items()}},
        f"{out}/rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1])
"""


def _dense_hessian_eigenvalues(
    namespace: dict[str, object], state: dict[str, Tensor], batches: list
) -> Tensor:
    """Eigenvalues of the exact Hessian of the mean loss over `batches`, at the weights `state`."""
    model = namespace["Net"]()  # type: ignore[operator]
    names = list(state)

    def mean_loss(*params: Tensor) -> Tensor:
        values = dict(zip(names, params, strict=True))
        return torch.stack(
            [F.mse_loss(torch.func.functional_call(model, values, (x,)), y) for x, y in batches]
        ).mean()

    blocks = torch.autograd.functional.hessian(mean_loss, tuple(state.values()))
    sizes = [v.numel() for v in state.values()]
    dense = torch.cat(
        [
            torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(len(sizes))], 1)
            for i in range(len(sizes))
        ]
    )
    return torch.linalg.eigvalsh(dense.double())


@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_ddp_ranks_agree_and_equal_one_process_on_all_batches(tmp_path: Path) -> None:
    script = tmp_path / "landscape_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)

    # every rank logged the same numbers (the times aside), from the same weights
    for key in rank0["state"]:
        assert torch.equal(rank0["state"][key], rank1["state"][key]), key

    def strip(hist: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in h.items() if k not in ("seconds", "overhead")} for h in hist]

    assert strip(rank0["history"]) == strip(rank1["history"])
    assert len(rank0["history"]) == 1 and rank0["history"][0]["epoch"] == 1
    assert rank0["logged"]["landscape/trace"] == pytest.approx(rank0["history"][0]["trace"])

    # the probe set is the union of both ranks' first two batches, in global order: the blocks 0..3
    namespace: dict[str, object] = {"__name__": "landscape_ddp"}
    exec(compile(SCRIPT, str(script), "exec"), namespace)
    x, y = namespace["data"]().tensors  # type: ignore[operator]
    blocks = [(x[j * 8 : (j + 1) * 8], y[j * 8 : (j + 1) * 8]) for j in range(4)]
    for gathered in (rank0["batches"], rank1["batches"]):
        assert len(gathered) == 4
        for (bx, by), (ex, ey) in zip(gathered, blocks, strict=True):
            assert torch.equal(bx, ex) and torch.equal(by, ey)

    # one process on all four batches, at the same weights: the same numbers
    from reglight.callbacks import LossLandscapeProbe

    model = namespace["Net"]()  # type: ignore[operator]
    model.load_state_dict(rank0["state"])
    single = LossLandscapeProbe(
        batches=4,
        metrics=("top_eigenvalue", "trace"),
        max_iter=40,
        tol=1e-6,
        trace_samples=20,
        loss_fn=namespace["loss_fn"],
    ).probe(model, blocks)  # type: ignore[arg-type]
    ddp = rank0["history"][0]
    for key in ("top_eigenvalue", "trace", "trace_std_error"):
        assert ddp[key] == pytest.approx(single[key], rel=1e-5), key

    # and the dense Hessian agrees
    eig = _dense_hessian_eigenvalues(namespace, rank0["state"], blocks)
    assert ddp["top_eigenvalue"] == pytest.approx(float(eig[-1]), rel=1e-4)
    assert abs(ddp["trace"] - float(eig.sum())) <= 4 * ddp["trace_std_error"] + 1e-6
