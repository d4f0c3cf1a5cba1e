"""Models and helpers shared by the compatibility tests (module level, so DDP spawn can pickle them)."""

from __future__ import annotations

import atexit
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

LIGHTNING_ES_LOGGER = "lightning.pytorch.callbacks.early_stopping"

QUIET: dict[str, Any] = dict(
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
)


def loaders(n: int = 4, batch_size: int = 2) -> tuple[DataLoader, DataLoader]:
    """A tiny fixed regression set, as training and validation loaders."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g))
    return DataLoader(data, batch_size=batch_size), DataLoader(data, batch_size=n)


class Scripted(LightningModule):
    """Trains a 3-4-1 net for real and logs scripted values, one per epoch, under each key of ``keys``.

    ``values`` is one sequence, or a dict ``{key: sequence}``, or a dict ``{rank: either}``; ``where`` picks the hook that
    logs (``"validation"``: ``on_validation_epoch_end``, ``"train"``: ``on_train_epoch_end``).
    ``snapshots[epoch]`` holds the weights at the end of that epoch's validation. With ``out`` set, each
    rank saves its results (weights, snapshots, the callbacks' attributes) to ``out/rank{r}.pt`` at the end
    of training, after the callbacks' own ``on_train_end``.
    """

    def __init__(
        self,
        values: Sequence[float] | dict[int, Sequence[float]],
        keys: Sequence[str] = ("val/x", "ref/x"),
        where: str = "validation",
        out: str | None = None,
    ) -> None:
        super().__init__()
        self.values, self.keys, self.where, self.out = values, tuple(keys), where, out
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.messages: list[str] = []
        self._handler: logging.Handler | None = None

    def on_fit_start(self) -> None:
        if self.out is not None:  # collect this rank's early-stopping messages
            self._handler = logging.Handler(logging.INFO)
            self._handler.emit = lambda record: self.messages.append(record.getMessage())  # type: ignore[method-assign]
            logger = logging.getLogger(LIGHTNING_ES_LOGGER)
            logger.addHandler(self._handler)
            logger.setLevel(logging.INFO)

    def _value(self, key: str) -> float:
        values = self.values
        if isinstance(values, dict) and self.global_rank in values:  # {rank: ...}
            values = values[self.global_rank]
        if isinstance(values, dict):  # {key: sequence}
            values = values[key]
        return float(values[min(self.current_epoch, len(values) - 1)])

    def _log_values(self) -> None:
        for key in self.keys:
            self.log(key, self._value(key))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val/mse", nn.functional.mse_loss(self.net(x), y))

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.snapshots[self.current_epoch] = {
                k: v.detach().clone() for k, v in self.state_dict().items()
            }
        if self.where == "validation":
            self._log_values()

    def on_train_epoch_end(self) -> None:
        if self.where == "train":
            self._log_values()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self) -> None:
        if self.out is None:
            return
        if self._handler is not None:
            logging.getLogger(LIGHTNING_ES_LOGGER).removeHandler(self._handler)
            self._handler = None
        stops = [cb for cb in self.trainer.callbacks if isinstance(cb, LightningEarlyStopping)]
        torch.save(
            {
                "epoch": self.trainer.current_epoch,
                "state": {k: v.detach().clone() for k, v in self.state_dict().items()},
                "snapshots": self.snapshots,
                "callbacks": [summary(cb) for cb in stops],
                "messages": self.messages,
            },
            Path(self.out) / f"rank{self.global_rank}.pt",
        )


def summary(stop: LightningEarlyStopping) -> dict[str, Any]:
    """What the compatibility tests compare between Lightning's and our early stopping, as plain values."""
    return {
        "monitor": stop.monitor,
        "stopped_epoch": stop.stopped_epoch,
        "wait_count": stop.wait_count,
        "best_score": float(stop.best_score),
        "stopping_reason": stop.stopping_reason,
        "stopping_reason_message": stop.stopping_reason_message,
        "best_epoch": getattr(stop, "best_epoch", None),
        "stopped_by": getattr(stop, "stopped_by", None),
        "restored": getattr(stop, "restored", None),
    }


def same_as(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    """Assert that two summaries agree, the monitor names aside (the messages name the monitor)."""
    fields = ("stopped_epoch", "wait_count", "best_score", "stopping_reason")
    assert {f: ours[f] for f in fields} == {f: ref[f] for f in fields}
    msg = ref["stopping_reason_message"]
    expected = None if msg is None else msg.replace(ref["monitor"], ours["monitor"])
    assert ours["stopping_reason_message"] == expected


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DestroyProcessGroupAtExit(Callback):
    """Destroys the (gloo) process group when a DDP process exits, before the interpreter finalizes.

    Lightning registers this clean-up only for NCCL. A gloo process group left alive at interpreter
    finalization can abort the process (SIGABRT, "terminate called without an active exception"): gloo's
    worker threads still hold the last collective's work, whose tensors are freed after the interpreter
    is gone. Every spawned process of these tests runs its collectives to the end first, so destroying
    the group at exit changes nothing else.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if dist.is_available() and dist.is_initialized():
            atexit.register(_destroy_process_group)


def fit(model: LightningModule, callbacks: list, **kwargs: Any) -> Trainer:
    """Fit ``model`` on the tiny loaders with a quiet CPU Trainer (``kwargs`` override).

    Under a DDP strategy, the process group is destroyed at each process's exit (see
    `DestroyProcessGroupAtExit`).
    """
    if str(kwargs.get("strategy", "")).startswith("ddp"):
        callbacks = [*callbacks, DestroyProcessGroupAtExit()]
    trainer = Trainer(callbacks=callbacks, **{**QUIET, "max_epochs": 10, **kwargs})
    trainer.fit(model, *loaders())
    return trainer
