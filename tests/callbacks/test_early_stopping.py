"""reglight.callbacks.EarlyStopping: restore-best, Prechelt's rules on scripted losses, resume, DDP."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import DropoutRate, EarlyStopping, RegularizationScheduler
from reglight.schedules import Linear

QUIET = dict(
    accelerator="cpu",
    enable_progress_bar=False,
    enable_model_summary=False,
    logger=False,
    enable_checkpointing=False,
    num_sanity_val_steps=0,
)


class Scripted(LightningModule):
    """Trains a small net for real but logs scripted validation / training losses, one per epoch.

    ``snapshots[e]`` holds the weights the model had when epoch ``e`` was validated.
    """

    def __init__(self, val: list[float], train: list[float] | None = None, dropout: float = 0.0):
        super().__init__()
        self.val, self.train_losses = val, train
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(dropout), nn.Linear(8, 1))
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.dropout_seen: dict[int, float] = {}

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(
            1000 + self.current_epoch
        )  # deterministic across an interrupted/resumed run
        self.dropout_seen[self.current_epoch] = self.net[1].p

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.train_losses is not None:
            self.log(
                "train/loss", self.train_losses[self.current_epoch], on_epoch=True, on_step=False
            )
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.val[self.current_epoch])

    def on_validation_epoch_end(self) -> None:
        self.snapshots[self.current_epoch] = {
            k: v.detach().clone() for k, v in self.state_dict().items()
        }

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=16)


def _fit(model: Scripted, callbacks: list, max_epochs: int, **kwargs) -> Trainer:
    trainer = Trainer(max_epochs=max_epochs, callbacks=callbacks, **{**QUIET, **kwargs})
    train, val = _loaders()
    trainer.fit(model, train, val)
    return trainer


def _assert_weights(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(state[k], v), k


def _assert_not_weights(model: nn.Module, other: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert any(not torch.equal(state[k], v) for k, v in other.items())


# ---------------------------------------------------------------- restore the best weights
def test_restores_best_weights_after_early_stop() -> None:
    model = Scripted(val=[1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1])
    stop = EarlyStopping("val/loss", patience=2, log_gap=False, restore_best_weights=True)
    trainer = _fit(model, [stop], max_epochs=8)
    # Lightning's rule: epochs 2 and 3 do not improve on 0.5 -> stop after epoch 3
    assert stop.stopped_epoch == 3 and trainer.current_epoch == 4
    assert stop.best_epoch == 1 and stop.restored
    _assert_weights(model, model.snapshots[1])
    _assert_not_weights(model, model.snapshots[3])


def test_restores_best_weights_without_early_stop() -> None:
    model = Scripted(val=[1.0, 0.4, 0.6, 0.5, 0.7])
    stop = EarlyStopping("val/loss", patience=10, log_gap=False, restore_best_weights=True)
    _fit(model, [stop], max_epochs=5)
    assert stop.stopped_epoch == 0 and stop.best_epoch == 1 and stop.restored
    _assert_weights(model, model.snapshots[1])
    _assert_not_weights(model, model.snapshots[4])


def test_restore_can_be_disabled() -> None:
    model = Scripted(val=[1.0, 0.4, 0.6])
    stop = EarlyStopping("val/loss", patience=10, log_gap=False)  # the default: no restore
    _fit(model, [stop], max_epochs=3)
    assert not stop.restored
    _assert_weights(model, model.snapshots[2])


# ---------------------------------------------------------------- Prechelt (1998) on scripted losses
def test_gl_stops_at_hand_computed_epoch() -> None:
    val = [1.0, 0.8, 0.7, 0.72, 0.75, 0.69, 0.6, 0.5]
    # E_opt = 0.7 from epoch 2; GL(3) = 100 (0.72/0.7 - 1) = 2.86 <= 5; GL(4) = 100 (0.75/0.7 - 1) = 7.14 > 5
    model = Scripted(val=val)
    stop = EarlyStopping(
        "val/loss",
        criterion="gl",
        criterion_threshold=5.0,
        log_gap=False,
        restore_best_weights=True,
    )
    _fit(model, [stop], max_epochs=8)
    assert stop.stopped_epoch == 4 and stop.stopped_by == "gl"
    assert stop.generalization_loss == pytest.approx(100 * (0.75 / 0.7 - 1))
    assert stop.best_epoch == 2
    _assert_weights(model, model.snapshots[2])


def test_pq_stops_at_hand_computed_epoch() -> None:
    train = [1.0, 0.9, 0.8, 0.78, 0.77, 0.765, 0.76, 0.758]
    val = [1.0, 0.9, 0.85, 0.86, 0.90, 0.87, 0.9, 0.95]
    # strips of k=2 end at epochs 1, 3, 5, 7 (checks 2, 4, 6, 8); E_opt = 0.85 from epoch 2
    # epoch 3: P = 1000 (0.79/0.78 - 1) = 12.82, GL = 100 (0.86/0.85 - 1) = 1.18, PQ = 0.092 <= 0.5
    # epoch 4: GL = 5.9 but no end of strip
    # epoch 5: P = 1000 (0.7675/0.765 - 1) = 3.268, GL = 100 (0.87/0.85 - 1) = 2.353, PQ = 0.72 > 0.5
    model = Scripted(val=val, train=train)
    stop = EarlyStopping(
        "val/loss",
        criterion="pq",
        criterion_threshold=0.5,
        strip_length=2,
        restore_best_weights=True,
    )
    _fit(model, [stop], max_epochs=8)
    assert stop.stopped_epoch == 5 and stop.stopped_by == "pq"
    assert stop.training_progress == pytest.approx(1000 * (0.7675 / 0.765 - 1))
    assert stop.generalization_loss == pytest.approx(100 * (0.87 / 0.85 - 1))
    _assert_weights(model, model.snapshots[2])


def test_up_stops_at_hand_computed_epoch() -> None:
    val = [1.0, 0.8, 0.75, 0.7, 0.72, 0.74, 0.7, 0.76, 0.8, 0.85]
    # strip ends (k=2): epochs 1, 3, 5, 7 -> 0.8, 0.7 (down), 0.74 (up 1), 0.76 (up 2) -> stop at 7 with s=2;
    # the rise at epoch 4 is not at the end of a strip and does not count
    model = Scripted(val=val)
    stop = EarlyStopping(
        "val/loss",
        criterion="up",
        strip_length=2,
        strips=2,
        log_gap=False,
        restore_best_weights=True,
    )
    _fit(model, [stop], max_epochs=10)
    assert stop.stopped_epoch == 7 and stop.stopped_by == "up"
    assert stop.best_epoch == 3  # 0.7 again at epoch 6 is no improvement
    _assert_weights(model, model.snapshots[3])


def test_logs_generalization_gap() -> None:
    val, train = [1.0, 0.9, 0.95], [0.8, 0.5, 0.3]
    model = Scripted(val=val, train=train)
    stop = EarlyStopping("val/loss", patience=5, gap_name="gap")
    trainer = _fit(model, [stop], max_epochs=3)
    assert trainer.callback_metrics["gap"].item() == pytest.approx(0.95 - 0.3)
    assert trainer.logged_metrics["gap"].item() == pytest.approx(0.95 - 0.3)


def test_gap_default_key_is_a_slash_key() -> None:
    val, train = [1.0, 0.9], [0.8, 0.5]
    stop = EarlyStopping("val/loss")
    assert (stop.train_monitor, stop.gap_name, stop.restore_best_weights) == (
        "train/loss",
        "val/gap",
        False,
    )
    trainer = _fit(Scripted(val=val, train=train), [stop], max_epochs=2)
    assert trainer.callback_metrics["val/gap"].item() == pytest.approx(0.9 - 0.5)


def test_verbose_restore_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    stop = EarlyStopping("val/loss", restore_best_weights=True, verbose=True, log_gap=False)
    with caplog.at_level(logging.INFO, logger="reglight.callbacks.early_stopping"):
        _fit(Scripted(val=[1.0, 0.5, 0.7]), [stop], max_epochs=3)
    assert "Restored the weights of epoch 1." in caplog.messages


def test_nothing_to_restore_warns() -> None:
    stop = EarlyStopping("val/loss", restore_best_weights=True, check_finite=False, log_gap=False)
    with pytest.warns(RuntimeWarning, match="no best weights to restore"):
        _fit(Scripted(val=[math.nan] * 2), [stop], max_epochs=2)
    assert not stop.restored and stop.best_epoch is None


# ---------------------------------------------------------------- errors
def test_missing_monitor_lists_logged_metrics() -> None:
    model = Scripted(val=[1.0] * 3, train=[1.0] * 3)
    with pytest.raises(RuntimeError, match=r"`val_acc`.*not available.*`val/loss`.*`train/loss`"):
        _fit(model, [EarlyStopping("val_acc")], max_epochs=2)


def test_missing_train_metric_for_pq_is_explained() -> None:
    model = Scripted(val=[1.0] * 3)
    stop = EarlyStopping(
        "val/loss", criterion="pq", criterion_threshold=1.0, train_monitor="tr_loss"
    )
    with pytest.raises(RuntimeError, match=r"needs the training loss.*'tr_loss'.*on_epoch=True"):
        _fit(model, [stop], max_epochs=2)


def test_missing_train_metric_for_gap_warns() -> None:
    model = Scripted(val=[1.0] * 2)
    with pytest.warns(RuntimeWarning, match="generalization gap.*`train/loss` is not logged"):
        _fit(model, [EarlyStopping("val/loss")], max_epochs=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(criterion="prechelt"), "criterion"),
        (dict(criterion="gl"), "criterion_threshold"),
        (dict(criterion="pq", criterion_threshold=-1.0), "criterion_threshold"),
        (dict(criterion="gl", criterion_threshold=1.0, mode="max"), "mode='min'"),
        (dict(mode="maximum"), "mode"),
        (dict(criterion="up", strip_length=0), "strip_length"),
        (dict(criterion="up", strips=0), "strips"),
        (dict(patience=-1), "patience"),
        (dict(min_delta=-0.1), "min_delta"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as error:
        EarlyStopping("val/loss", **kwargs)
    assert isinstance(error.value, MisconfigurationException)  # what Lightning's callers catch


# ---------------------------------------------------------------- resume
def test_resume_stops_at_same_epoch_with_same_weights_and_schedule(tmp_path: Path) -> None:
    val = [1.0, 0.9, 0.7, 0.75, 0.72, 0.8, 0.85, 0.9, 0.95, 1.0]

    def callbacks() -> list:
        return [
            EarlyStopping(
                "val/loss",
                criterion="up",
                strip_length=2,
                strips=2,
                log_gap=False,
                restore_best_weights=True,
            ),
            RegularizationScheduler([DropoutRate(Linear(0.0, 0.5, duration=5))]),
        ]

    torch.manual_seed(0)
    full = Scripted(val=val, dropout=0.1)
    cbs = callbacks()
    _fit(full, cbs, max_epochs=10)
    # strip ends 1, 3, 5, 7: 0.9, 0.75 (down), 0.8 (up), 0.9 (up) -> stop after epoch 7; best epoch 2
    assert cbs[0].stopped_epoch == 7 and cbs[0].best_epoch == 2

    torch.manual_seed(0)
    first = Scripted(val=val, dropout=0.1)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    Trainer(
        max_epochs=4, callbacks=[*callbacks(), ckpt], **{**QUIET, "enable_checkpointing": True}
    ).fit(first, *_loaders())
    resumed = Scripted(val=val, dropout=0.1)
    cbs2 = callbacks()
    Trainer(max_epochs=10, callbacks=cbs2, **QUIET).fit(
        resumed, *_loaders(), ckpt_path=str(tmp_path / "last.ckpt")
    )
    assert cbs2[0].stopped_epoch == 7 and cbs2[0].best_epoch == 2 and cbs2[0].restored
    assert {**first.dropout_seen, **resumed.dropout_seen} == full.dropout_seen
    assert [full.dropout_seen[e] for e in range(8)] == pytest.approx(
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5]
    )
    _assert_weights(resumed, full.state_dict())
    _assert_weights(resumed, full.snapshots[2])


# ---------------------------------------------------------------- DDP
DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset, TensorDataset
    from lightning.pytorch import LightningModule, Trainer
    from reglight.callbacks import (
        AugmentationScheduler, DropoutRate, EarlyStopping, RegularizationScheduler,
    )
    from reglight.transforms import ScheduledTransform
    from reglight.schedules import Linear

    VAL = {0: [1.0, 0.8, 0.9, 0.95, 1.0, 1.1], 1: [1.0, 0.9, 0.7, 0.95, 1.0, 1.1]}

    class Noise:
        def __init__(self):
            self._m = 1.0
        @property
        def magnitude(self):
            return self._m
        @magnitude.setter
        def magnitude(self, value):
            self._m = value
        def __call__(self, x):
            return x + 0.1 * self._m * torch.randn_like(x)

    class Data(Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x, self.y = torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)
            self.aug = ScheduledTransform(Noise())
        def __len__(self):
            return 32
        def __getitem__(self, i):
            return self.aug(self.x[i]), self.y[i], torch.tensor(self.aug.transform.magnitude)

    class M(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.0), nn.Linear(8, 1))
            self.snaps, self.seen = {}, {}
        def training_step(self, batch, i):
            x, y, m = batch
            seen = self.seen.setdefault(self.current_epoch, {"p": set(), "m": set()})
            seen["p"].add(round(self.net[2].p, 6))
            seen["m"].update(round(v, 6) for v in m.tolist())
            return nn.functional.mse_loss(self.net(x), y)
        def validation_step(self, batch, i):
            # deliberately not synced: rank 1 sees its best at epoch 2, rank 0 at epoch 1
            self.log("val/loss", VAL[self.global_rank][self.current_epoch])
        def on_validation_epoch_end(self):
            self.snaps[self.current_epoch] = {k: v.clone() for k, v in self.state_dict().items()}
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    if __name__ == "__main__":
        out = sys.argv[1]
        torch.manual_seed(0)
        model = M()
        stop = EarlyStopping("val/loss", patience=2, log_gap=False, restore_best_weights=True)
        callbacks = [
            stop,
            RegularizationScheduler([DropoutRate(Linear(0.0, 0.3, duration=3))]),
            AugmentationScheduler(magnitude=Linear(1.0, 0.0, duration=4)),
        ]
        trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=6, callbacks=callbacks,
                          logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0)
        val = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
        train = DataLoader(Data(), batch_size=4, num_workers=1, persistent_workers=True)
        trainer.fit(model, train, DataLoader(val, batch_size=8))
        r = trainer.global_rank
        torch.save({"stopped": stop.stopped_epoch, "best": stop.best_epoch, "state": model.state_dict(),
                    "snaps": model.snaps, "seen": model.seen}, os.path.join(out, f"rank{r}.pt"))
    """
)


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_ranks_stop_together_and_restore_the_same_weights(tmp_path: Path) -> None:
    script = tmp_path / "ddp_es.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # rank 0 stops after epoch 3 (no improvement at 2, 3); rank 1 would stop after 4: the OR-reduction stops both
    assert r0["stopped"] == r1["stopped"] == 3
    assert r0["best"] == r1["best"] == 1  # rank 0 decides which epoch is best
    _assert_weights_equal(r0["state"], r1["state"])
    _assert_weights_equal(r0["state"], r0["snaps"][1])
    # rank 1's own best was epoch 2; it holds rank 0's choice instead
    assert any(not torch.equal(r1["state"][k], v) for k, v in r1["snaps"][2].items())
    # both schedulers: the same values on both ranks (and in each rank's DataLoader worker), per epoch:
    # dropout p = 0.1 e, augmentation magnitude = 1 - e / 4
    expected = {e: {"p": {round(0.1 * e, 6)}, "m": {round(1 - e / 4, 6)}} for e in range(4)}
    assert r0["seen"] == r1["seen"] == expected


def _assert_weights_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
