"""The tiny recipe: an MLP with dropout on synthetic two-moons data.

A smoke test of the whole stack (CLI, Trainer, loggers) that runs in seconds on one CPU:
`reglight run tiny`. It is also the smallest example of what a recipe is: a LightningModule and a
LightningDataModule, both built from a YAML config by LightningCLI.

It logs `train/loss`, `val/loss`, `val/acc`, `test/loss` and `test/acc`.

Examples:
    >>> import lightning.pytorch as pl
    >>> data = TwoMoonsDataModule(n_samples=256, batch_size=64)
    >>> model = TinyClassifier(hidden=16)
    >>> trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False,
    ...                      enable_model_summary=False, enable_checkpointing=False)
    >>> trainer.fit(model, datamodule=data)
    >>> sorted(trainer.callback_metrics)
    ['train/loss', 'val/acc', 'val/loss']
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAccuracy

from reglight._validation import check_positive, check_positive_int, check_probability
from reglight.nn import Dropout

__all__ = ["TinyClassifier", "TwoMoonsDataModule", "two_moons"]


def two_moons(n: int, noise: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles in 2-D with Gaussian noise (scikit-learn's `make_moons` shape).

    Args:
        n: Number of points (half per class).
        noise: Standard deviation of the Gaussian noise added to each coordinate.
        seed: Seed of the generator.

    Returns:
        `(x, y)`: float32 points of shape `(n, 2)` and float32 labels in {0, 1} of shape `(n,)`.

    Examples:
        >>> x, y = two_moons(100, noise=0.1)
        >>> x.shape, y.shape, int(y.sum())
        (torch.Size([100, 2]), torch.Size([100]), 50)
    """
    g = torch.Generator().manual_seed(seed)
    n0 = n // 2
    t0 = torch.rand(n0, generator=g) * math.pi
    t1 = torch.rand(n - n0, generator=g) * math.pi
    outer = torch.stack([torch.cos(t0), torch.sin(t0)], dim=1)
    inner = torch.stack([1 - torch.cos(t1), 0.5 - torch.sin(t1)], dim=1)
    x = torch.cat([outer, inner]) + noise * torch.randn(n, 2, generator=g)
    y = torch.cat([torch.zeros(n0), torch.ones(n - n0)])
    perm = torch.randperm(n, generator=g)
    return x[perm].float(), y[perm]


class TwoMoonsDataModule(pl.LightningDataModule):
    """Train/val/test splits (60/20/20) of [`two_moons`][reglight.recipes.tiny.two_moons] data.

    Args:
        n_samples: Total number of points.
        noise: Noise level of the moons.
        batch_size: Minibatch size of every loader.
        seed: Seed of the data generator (independent of the training seed).
    """

    def __init__(
        self, n_samples: int = 1000, noise: float = 0.2, batch_size: int = 64, seed: int = 0
    ) -> None:
        super().__init__()
        self.n_samples = check_positive_int("n_samples", n_samples, minimum=10)
        self.noise = check_positive("noise", noise) if noise else 0.0
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        x, y = two_moons(self.n_samples, self.noise, self.seed)
        n_train, n_val = int(0.6 * self.n_samples), int(0.2 * self.n_samples)
        self.train_set = TensorDataset(x[:n_train], y[:n_train])
        self.val_set = TensorDataset(x[n_train : n_train + n_val], y[n_train : n_train + n_val])
        self.test_set = TensorDataset(x[n_train + n_val :], y[n_train + n_val :])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size)


class TinyClassifier(pl.LightningModule):
    """A two-hidden-layer MLP with dropout for binary classification of 2-D points.

    Args:
        hidden: Width of the hidden layers.
        dropout: Drop probability `p` of the [`Dropout`][reglight.nn.Dropout] after each hidden layer.
        lr: Learning rate of Adam.
        weight_decay: Decoupled weight decay of AdamW.
    """

    def __init__(
        self, hidden: int = 64, dropout: float = 0.1, lr: float = 1e-2, weight_decay: float = 0.0
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_positive_int("hidden", hidden)
        check_probability("dropout", dropout)
        check_positive("lr", lr)
        self.net = nn.Sequential(
            nn.Linear(2, hidden),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        self.loss = nn.BCEWithLogitsLoss()
        self.val_acc = BinaryAccuracy()
        self.test_acc = BinaryAccuracy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", self.loss(logits, y), prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_acc(logits, y)
        self.log("test/loss", self.loss(logits, y), sync_dist=True)
        self.log("test/acc", self.test_acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
