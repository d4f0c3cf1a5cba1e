"""LossLandscapeProbe: it never changes training, its numbers match a dense Hessian, its history resumes."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import LossLandscapeProbe

BATCH = 16


def _data(n: int = 96, seed: int = 1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] - x[:, 1] + 0.3 * torch.randn(n, generator=g) > 0).long()
    return TensorDataset(x, y)


class Net(pl.LightningModule):
    """Dropout and batch norm (random and stateful layers), a logged loss, a shuffled loader."""

    def __init__(self, shuffle: bool = True, dropout: float = 0.3, norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(5, 8)]
        if norm:
            layers.append(nn.BatchNorm1d(8))
        layers += [nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 2)]
        self.net = nn.Sequential(*layers)
        self.shuffle = shuffle
        self.dataset = _data()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", F.cross_entropy(self(x), y))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=BATCH, shuffle=self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_data(32, seed=2), batch_size=BATCH)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)


def _trainer(
    tmp_path: Path, callbacks: list[Callback], max_epochs: int = 2, **kwargs: Any
) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "max_epochs": max_epochs,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "deterministic": True,
        "default_root_dir": tmp_path,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 1,
    }
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **options)


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_is_bit_exact_with_and_without_the_probe(tmp_path: Path) -> None:
    """Shuffled loader, dropout, batch norm, momentum: same weights, buffers, RNG and logged loss."""
    runs = []
    for probes in ([], "probe"):
        pl.seed_everything(0, verbose=False)
        model = Net()
        callbacks: list[Callback] = []
        if probes:
            callbacks = [
                # the default loss (training_step, which logs), every metric and a slice figure
                LossLandscapeProbe(
                    max_overhead=None,
                    batches=2,
                    metrics=("top_eigenvalue", "trace", "sharpness"),
                    max_iter=5,
                    trace_samples=3,
                    figures=("slice_1d",),
                    slice_points=5,
                ),
                # validation batches, a given loss, batch statistics
                LossLandscapeProbe(
                    max_overhead=None,
                    batches=1,
                    source="val",
                    train_mode=True,
                    trace_samples=2,
                    max_iter=3,
                    loss_fn=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
                    name="val_landscape",
                ),
            ]
        trainer = _trainer(tmp_path, callbacks, max_epochs=3)
        trainer.fit(model)
        runs.append(
            (_state(model), torch.get_rng_state(), float(trainer.callback_metrics["train/loss"]))
        )
        if probes:
            assert [len(cb.history) for cb in callbacks] == [3, 3]  # type: ignore[attr-defined]
            assert "landscape/top_eigenvalue" in trainer.callback_metrics
    (plain, rng_plain, loss_plain), (probed, rng_probed, loss_probed) = runs
    assert plain.keys() == probed.keys()
    for key in plain:
        assert torch.equal(plain[key], probed[key]), key
    assert torch.equal(rng_plain, rng_probed)
    assert loss_plain == loss_probed  # the probe's training_step calls were not logged


class DenseReference(Callback):
    """At the same moment as the probe: the exact Hessian of the mean loss over the first `n` batches."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.eigenvalues: list[Tensor] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, Net)
        x, y = pl_module.dataset.tensors
        batches = [
            (x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]) for i in range(self.n)
        ]
        names = [n for n, _ in pl_module.named_parameters()]
        values = tuple(p.detach().clone() for p in pl_module.parameters())
        was_training = pl_module.training
        pl_module.eval()

        def mean_loss(*params: Tensor) -> Tensor:
            state = dict(zip(names, params, strict=True))
            losses = [
                F.cross_entropy(torch.func.functional_call(pl_module, state, (bx,)), by)
                for bx, by in batches
            ]
            return torch.stack(losses).mean()

        blocks = torch.autograd.functional.hessian(mean_loss, values)
        sizes = [v.numel() for v in values]
        dense = torch.cat(
            [
                torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(len(sizes))], 1)
                for i in range(len(sizes))
            ]
        )
        pl_module.train(was_training)
        self.eigenvalues.append(torch.linalg.eigvalsh(dense.double()))


def test_values_match_the_dense_hessian(tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    model = Net(shuffle=False, dropout=0.0, norm=False)
    probe = LossLandscapeProbe(
        max_overhead=None,
        batches=3,
        metrics=("top_eigenvalue", "trace"),
        max_iter=60,
        tol=1e-6,
        trace_samples=60,
    )
    reference = DenseReference(3)  # after the probe: the same weights
    _trainer(tmp_path, [probe, reference], max_epochs=2, limit_val_batches=0).fit(model)
    assert len(probe.history) == len(reference.eigenvalues) == 2
    for h, eig in zip(probe.history, reference.eigenvalues, strict=True):
        torch.testing.assert_close(h["top_eigenvalue"], float(eig[-1]), rtol=1e-4, atol=1e-6)
        exact = float(eig.sum())
        assert abs(h["trace"] - exact) <= 4 * h["trace_std_error"] + 1e-6, (h, exact)
        assert h["trace_std_error"] > 0
        assert h["seconds"] > 0


def test_probe_runs_in_float32_under_autocast() -> None:
    model = Net(shuffle=False, dropout=0.0, norm=False)
    x, y = model.dataset.tensors
    batches = [(x[:BATCH], y[:BATCH])]
    probe = LossLandscapeProbe(loss_fn=lambda m, b: F.cross_entropy(m(b[0]), b[1]), max_iter=10)
    plain = probe.probe(model, batches)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = probe.probe(model, batches)
    assert plain == under_autocast


def test_history_and_batches_survive_resume(tmp_path: Path) -> None:
    """Two epochs, a checkpoint, two more epochs: the history equals that of four uninterrupted epochs."""

    def fit(
        max_epochs: int, ckpt_path: Path | None = None, save: bool = False
    ) -> LossLandscapeProbe:
        pl.seed_everything(0, verbose=False)
        probe = LossLandscapeProbe(
            max_overhead=None,
            batches=2,
            metrics=("top_eigenvalue", "trace"),
            max_iter=10,
            trace_samples=4,
        )
        callbacks: list[Callback] = [probe]
        if save or ckpt_path:
            callbacks.append(
                ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
            )
        trainer = _trainer(
            tmp_path,
            callbacks,
            max_epochs=max_epochs,
            limit_val_batches=0,
            enable_checkpointing=save or ckpt_path is not None,
        )
        trainer.fit(Net(shuffle=False, dropout=0.0), ckpt_path=ckpt_path)
        return probe

    whole = fit(4)
    first = fit(2, save=True)
    resumed = fit(4, ckpt_path=tmp_path / "ckpt" / "last.ckpt")

    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert resumed.history[:2] == first.history
    for h_resumed, h_whole in zip(resumed.history, whole.history, strict=True):
        for key in ("epoch", "step", "top_eigenvalue", "trace", "trace_std_error"):
            assert h_resumed[key] == pytest.approx(h_whole[key], rel=1e-5), key


def test_logged_keys_and_figures_reach_a_csv_logger(tmp_path: Path) -> None:
    probe = LossLandscapeProbe(
        max_overhead=None,
        every_n_epochs=2,
        batches=1,
        metrics=("top_eigenvalue", "trace", "sharpness"),
        max_iter=4,
        trace_samples=2,
        figures=("slice_2d",),
        slice_points=3,
    )
    logger = CSVLogger(tmp_path, name="csv")
    _trainer(tmp_path, [probe], max_epochs=2, logger=logger, limit_val_batches=0).fit(Net())
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    keys = {k for row in rows for k, v in row.items() if v != ""}
    expected = {
        f"landscape/{k}"
        for k in ("top_eigenvalue", "trace", "trace_std_error", "sharpness", "seconds", "overhead")
    }
    assert expected <= keys
    assert [int(row["epoch"]) for row in rows if row.get("landscape/trace")] == [
        1
    ]  # every second epoch
    assert [p.name for p in (Path(logger.log_dir) / "media").glob("*.png")] == [
        f"landscape_slice_2d-step{probe.history[0]['step']}.png"
    ]


@pytest.mark.parametrize(("max_overhead", "probed"), [(1e-9, 0), (1e9, 3)])
def test_time_budget_skips_probes_that_would_exceed_it(
    tmp_path: Path, max_overhead: float, probed: int
) -> None:
    probe = LossLandscapeProbe(max_overhead=max_overhead, max_iter=3)
    trainer = _trainer(tmp_path, [probe], max_epochs=3, limit_val_batches=0)
    if probed:
        trainer.fit(Net())
    else:
        with pytest.warns(UserWarning, match=r"no probe ran\. At epoch 2 a probe would have taken"):
            trainer.fit(Net())
    assert len(probe.history) == probed
    for h in probe.history:  # the probes' time over the training time so far
        assert math.isfinite(h["overhead"]) and h["overhead"] > 0


def test_manual_optimization_needs_a_loss_fn(tmp_path: Path) -> None:
    class Manual(Net):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(ValueError, match=r"manual optimization.*loss_fn"):
        _trainer(tmp_path, [LossLandscapeProbe()], max_epochs=1).fit(Manual())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every_n_epochs": 0}, ValueError, "`every_n_epochs` must be an integer >= 1, got 0"),
        ({"batches": 2.5}, ValueError, "`batches` must be an integer >= 1, got 2.5"),
        (
            {"metrics": ("top_eigenvalue", "hessian")},
            ValueError,
            "`metrics` entries must be among .*'hessian'",
        ),
        ({"metrics": (), "figures": ()}, ValueError, "nothing to probe"),
        ({"figures": ("slice_3d",)}, ValueError, "`figures` entries .*'slice_3d'"),
        ({"source": "test"}, ValueError, "`source` must be one of 'train', 'val', got 'test'"),
        ({"loss_fn": "cross_entropy"}, TypeError, "`loss_fn` must be callable"),
        ({"train_mode": "yes"}, TypeError, "`train_mode` must be a bool, got 'yes'"),
        ({"max_overhead": 0.0}, ValueError, "`max_overhead` must be a finite number > 0, got 0.0"),
        ({"tol": 0.0}, ValueError, "`tol` must be a finite number > 0, got 0.0"),
        ({"trace_samples": 1}, ValueError, "`trace_samples` must be an integer >= 2, got 1"),
        ({"epsilon": -1e-3}, ValueError, "`epsilon` must be a finite number > 0"),
        ({"slice_points": 2}, ValueError, "`slice_points` must be an integer >= 3, got 2"),
        ({"seed": -1}, ValueError, "`seed` must be an integer >= 0, got -1"),
        ({"name": ""}, ValueError, "`name` must be a non-empty string"),
        ({"include": [3]}, TypeError, "`include` entries must be .* got 3"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(
    kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        LossLandscapeProbe(**kwargs)


def test_state_key_tells_probes_apart() -> None:
    keys = {
        LossLandscapeProbe().state_key,
        LossLandscapeProbe(source="val").state_key,
        LossLandscapeProbe(name="other").state_key,
    }
    assert len(keys) == 3
