"""Weight averaging (EMA, SWA) with early stopping, batch norm, MC dropout and checkpoints.

Every expected value is computed here by hand from weights recorded during training (the EMA recursion, the
SWA mean, batch statistics), never read back from the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMA
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import (
    EarlyStopping,
    EMAWeightAveraging,
    StochasticWeightAveraging,
)
from reglight.nn import mc_predict

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")

N, D, BATCH = 64, 5, 16


def _data(seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    y = x @ torch.linspace(-1, 1, D) + 0.3 * torch.randn(N, generator=g)
    return x, y


class Regression(pl.LightningModule):
    """A small regression model; records the weights it validates with (first validation batch)."""

    def __init__(
        self, batch_norm: bool = False, lazy: bool = False, lr: float = 0.05, p: float = 0.2
    ) -> None:
        super().__init__()
        self.batch_norm, self.lr, self.p = batch_norm, lr, p
        self.net: nn.Module | None = None
        self.validated: list[dict[str, Tensor]] = []
        self.val_losses: list[float] = []
        if not lazy:
            self.configure_model()

    def configure_model(self) -> None:
        if self.net is not None:
            return
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.Linear(D, 8)]
        if self.batch_norm:
            layers.append(nn.BatchNorm1d(8))
        layers += [nn.Tanh(), nn.Dropout(self.p), nn.Linear(8, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        assert self.net is not None
        return self.net(x)[:, 0]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        if batch_idx == 0 and not self.trainer.sanity_checking:
            self.validated.append(_params(self))
            self.val_losses.append(float(loss))
        self.log("val/loss", loss)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _params(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class StepRecorder(Callback):
    """The trained weights after every optimizer step and at the start of every epoch."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Tensor]] = []
        self.epoch_starts: list[dict[str, Tensor]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        self.steps.append(_params(pl_module))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.epoch_starts.append(_params(pl_module))


def _loader(shuffle: bool = False) -> DataLoader[Any]:
    x, y = _data()
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=shuffle)


def _val_loader() -> DataLoader[Any]:
    x, y = _data(1)
    return DataLoader(TensorDataset(x, y), batch_size=N)


def _trainer(callbacks: list[Callback], max_epochs: int, **kw: Any) -> pl.Trainer:
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


def _ema_by_hand(steps: list[dict[str, Tensor]], decay: float) -> dict[str, Tensor]:
    avg = {k: v.clone() for k, v in steps[0].items()}
    for state in steps[1:]:
        for k, v in state.items():
            if v.is_floating_point():
                avg[k] = decay * avg[k] + (1 - decay) * v
            else:
                avg[k] = v.clone()  # num_batches_tracked: AveragedModel copies integer buffers
    return avg


def _close(a: dict[str, Tensor], b: dict[str, Tensor], keys: Any = None) -> bool:
    keys = keys or [k for k in a if a[k].is_floating_point()]
    return all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in keys)


@pytest.mark.parametrize("cls", [EMAWeightAveraging, LightningEMA])
def test_ema_final_weights_follow_the_recursion_over_the_logged_steps(cls: type) -> None:
    model, rec = Regression(batch_norm=True), StepRecorder()
    trainer = _trainer([rec, cls(decay=0.8)], max_epochs=3)
    trainer.fit(model, _loader(), _val_loader())
    assert len(rec.steps) == 3 * N // BATCH
    assert _close(_params(model), _ema_by_hand(rec.steps, 0.8))


@pytest.mark.parametrize("ema_first", [True, False])
def test_early_stopping_restores_the_validated_average_of_the_best_epoch(ema_first: bool) -> None:
    model, rec = Regression(lr=0.3), StepRecorder()
    stop = EarlyStopping("val/loss", patience=100, restore_best_weights=True, log_gap=False)
    ema = EMAWeightAveraging(decay=0.7)
    trainer = _trainer([rec, ema, stop] if ema_first else [rec, stop, ema], max_epochs=6)
    trainer.fit(model, _loader(), _val_loader())
    steps_per_epoch = N // BATCH
    best = min(range(6), key=lambda e: model.val_losses[e])
    assert stop.restored and stop.best_epoch == best
    # what validation saw is the EMA of the steps so far
    for epoch, seen in enumerate(model.validated):
        assert _close(seen, _ema_by_hand(rec.steps[: (epoch + 1) * steps_per_epoch], 0.7))
    assert _close(_params(model), model.validated[best])


def test_lightning_ema_with_restoring_early_stopping_restores_never_validated_weights() -> None:
    """What the reglight subclass fixes: Lightning swaps back before the check, so the copy is the trained weights."""
    model, rec = Regression(lr=0.3), StepRecorder()
    stop = EarlyStopping("val/loss", patience=100, restore_best_weights=True, log_gap=False)
    trainer = _trainer([rec, LightningEMA(decay=0.7), stop], max_epochs=4)
    trainer.fit(model, _loader(), _val_loader())
    best = stop.best_epoch
    assert best is not None
    trained = rec.steps[(best + 1) * (N // BATCH) - 1]
    assert _close(_params(model), trained)
    assert not _close(_params(model), model.validated[best])


def test_update_bn_recomputes_the_statistics_of_the_final_average() -> None:
    model = Regression(batch_norm=True)
    trainer = _trainer([EMAWeightAveraging(decay=0.8, update_bn=True)], max_epochs=2)
    trainer.fit(model, _loader(), _val_loader())
    assert model.net is not None
    linear, bn = model.net[0], model.net[1]
    x, _ = _data()
    with torch.no_grad():
        h = linear(x).view(N // BATCH, BATCH, -1)  # the unshuffled batches, as update_bn sees them
    # update_bn: momentum None = cumulative average of the batch means and unbiased batch variances
    assert torch.allclose(bn.running_mean, h.mean(1).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, h.var(1, unbiased=True).mean(0), atol=1e-5)
    assert model.training is False or model.net.training == model.training


@pytest.mark.parametrize("cls", [StochasticWeightAveraging])
def test_swa_of_a_model_built_in_configure_model_is_the_mean_of_the_epoch_starts(cls: type) -> None:
    model, rec = Regression(lazy=True), StepRecorder()
    swa = cls(swa_lrs=0.01, swa_epoch_start=2, annealing_epochs=1)
    trainer = _trainer([rec, swa], max_epochs=4)
    trainer.fit(model, _loader(), _val_loader())
    # epochs 1..3 (0-based) are averaged, with the weights the epoch starts from
    starts = rec.epoch_starts[1:4]
    mean = {k: torch.stack([s[k] for s in starts]).mean(0) for k in starts[0]}
    assert _close(_params(model), mean)


def test_lightning_swa_averages_nothing_of_a_model_built_in_configure_model() -> None:
    from lightning.pytorch.callbacks import StochasticWeightAveraging as LightningSWA

    model, rec = Regression(lazy=True), StepRecorder()
    trainer = _trainer([rec, LightningSWA(swa_lrs=0.01, swa_epoch_start=2, annealing_epochs=1)], 4)
    trainer.fit(model, _loader(), _val_loader())
    assert _close(_params(model), rec.steps[-1])  # the last trained weights, no average


def test_swa_cut_short_by_early_stopping_loads_the_average_so_far() -> None:
    model, rec = Regression(lr=0.3), StepRecorder()
    stop = EarlyStopping("val/loss", stopping_threshold=1e9, log_gap=False)  # stops after epoch 0
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=1, annealing_epochs=1)
    trainer = _trainer([rec, swa, stop], max_epochs=5)
    trainer.fit(model, _loader(), _val_loader())
    assert trainer.current_epoch == 1 and swa.finished_early
    assert _close(
        _params(model), rec.epoch_starts[0]
    )  # averaged once: the weights epoch 0 started from


def test_mc_predict_on_an_averaged_model_equals_mc_predict_on_the_averaged_weights() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2)
    )
    avg = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
            net(torch.randn(8, D))  # moves the BN statistics
        avg.update_parameters(net)
    copy = nn.Sequential(
        nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2)
    )
    copy.load_state_dict(avg.module.state_dict())
    x = torch.randn(10, D)
    torch.manual_seed(1)
    mean_a, std_a = mc_predict(avg, x, samples=20)
    torch.manual_seed(1)
    mean_b, std_b = mc_predict(copy, x, samples=20)
    assert torch.allclose(mean_a, mean_b) and torch.allclose(std_a, std_b)
    assert float(std_a.max()) > 0  # dropout sampled, batch norm in evaluation mode
    assert avg.training and net.training


def test_checkpoint_holds_the_average_and_a_resumed_fit_ends_where_an_uninterrupted_one_does(
    tmp_path: Path,
) -> None:
    def fit(ckpt: str | None = None) -> tuple[Regression, StepRecorder]:
        model, rec = Regression(p=0.0), StepRecorder()  # no dropout: no RNG state to carry over
        check = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)
        trainer = _trainer(
            [rec, EMAWeightAveraging(decay=0.8), check], 4, enable_checkpointing=True
        )
        trainer.fit(model, _loader(), _val_loader(), ckpt_path=ckpt)
        return model, rec

    whole, rec = fit()
    assert _close(_params(whole), _ema_by_hand(rec.steps, 0.8))
    # written at the end of epoch 1, while the average is in the model: still Lightning's layout
    ckpt = torch.load(tmp_path / "epoch=1.ckpt", weights_only=False)
    steps = 2 * N // BATCH
    assert _close(ckpt["state_dict"], _ema_by_hand(rec.steps[:steps], 0.8))
    assert _close(ckpt["current_model_state"], rec.steps[steps - 1])
    resumed, rec_resumed = fit(str(tmp_path / "epoch=1.ckpt"))
    assert _close(_params(resumed), _params(whole))
    # the recursion continued from the saved average over the resumed steps
    assert _close(_params(resumed), _ema_by_hand([ckpt["state_dict"], *rec_resumed.steps], 0.8))


def test_lightning_ema_after_restoring_early_stopping_overwrites_the_restored_weights() -> None:
    model, rec = Regression(lr=0.3), StepRecorder()
    stop = EarlyStopping("val/loss", patience=100, restore_best_weights=True, log_gap=False)
    trainer = _trainer([rec, stop, LightningEMA(decay=0.7)], max_epochs=4)
    trainer.fit(model, _loader(), _val_loader())
    assert stop.restored
    assert _close(_params(model), _ema_by_hand(rec.steps, 0.7))  # the final average, not the best


@pytest.mark.parametrize("batch_norm", [True, False])
def test_swa_with_restoring_early_stopping_ends_with_the_best_validated_weights(
    batch_norm: bool,
) -> None:
    model = Regression(lr=0.3, batch_norm=batch_norm)
    stop = EarlyStopping("val/loss", patience=100, restore_best_weights=True, log_gap=False)
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=1)
    trainer = _trainer([stop, swa], max_epochs=4)
    trainer.fit(model, _loader(), _val_loader())
    # with batch norm, the extra epoch validates the average: 5 validations
    assert len(model.validated) == (5 if batch_norm else 4)
    best = min(range(len(model.val_losses)), key=model.val_losses.__getitem__)
    assert stop.best_epoch == best
    assert _close(_params(model), model.validated[best])
