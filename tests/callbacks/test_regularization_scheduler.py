"""reglight.callbacks.RegularizationScheduler: dropout / DropPath / penalty / weight-decay schedules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import reglight.nn as rnn
from reglight.callbacks import (
    DropoutRate,
    DropPathRates,
    ModuleAttribute,
    PenaltyAlpha,
    PenaltyHook,
    RegularizationScheduler,
    WeightDecay,
)
from reglight.penalties import L2
from reglight.schedules import Cosine, Lambda, Linear, Step

QUIET = dict(
    accelerator="cpu",
    enable_progress_bar=False,
    enable_model_summary=False,
    logger=False,
    enable_checkpointing=False,
    num_sanity_val_steps=0,
    limit_val_batches=0,
)


def _model_tree() -> nn.Module:
    tree = nn.Module()
    tree.enc = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Dropout2d(0.5))
    tree.head = nn.Module()
    tree.head.drop = rnn.Dropout(0.5)
    tree.head.block = rnn.DropBlock2d(0.5, block_size=3)
    tree.head.out = nn.Linear(8, 1)
    tree.blocks = nn.ModuleList([rnn.DropPath(0.0) for _ in range(4)])
    return tree


class Recorder(LightningModule):
    """Records every knob's current value at the start of each epoch and of each batch."""

    def __init__(self, zero_loss: bool = False, weight_decay: float = 1.0) -> None:
        super().__init__()
        self.weight_decay = weight_decay
        self.tree = _model_tree()
        self.zero_loss = zero_loss
        self.epochs: dict[int, dict] = {}
        self.steps: dict[int, dict] = {}

    def _snapshot(self) -> dict:
        hooks = [cb for cb in self.trainer.callbacks if isinstance(cb, PenaltyHook)]
        groups = self.trainer.optimizers[0].param_groups
        return {
            "p": {n: m.p for n, m in self.tree.named_modules() if hasattr(m, "p")},
            "wd": [g["weight_decay"] for g in groups],
            "alpha": [h.penalty.alpha for h in hooks],
            "weight": self.tree.head.out.weight.detach().clone(),
        }

    def on_train_epoch_start(self) -> None:
        self.epochs[self.current_epoch] = self._snapshot()

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.steps[self.global_step] = self._snapshot()

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.tree.head.out(self.tree.head.drop(self.tree.enc[:2](x)))
        loss = nn.functional.mse_loss(out, y)
        return loss * 0.0 if self.zero_loss else loss

    def configure_optimizers(self):
        decay = [self.tree.enc[0].weight, self.tree.head.out.weight]
        no_decay = [self.tree.enc[0].bias, self.tree.head.out.bias]
        return torch.optim.SGD(
            [
                {"params": decay, "weight_decay": self.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=0.1,
        )


def _data() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(
        TensorDataset(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)), 4
    )


def _fit(model: LightningModule, callbacks: list, max_epochs: int, **kwargs) -> Trainer:
    trainer = Trainer(max_epochs=max_epochs, callbacks=callbacks, **{**QUIET, **kwargs})
    trainer.fit(model, _data())
    return trainer


# ---------------------------------------------------------------- selection (no Trainer)
def test_selects_all_dropout_family_but_not_droppath() -> None:
    names = [n for n, _ in DropoutRate(0.1).select(_model_tree())]
    assert names == ["enc.1", "enc.2", "head.drop", "head.block"]


def _by_isinstance(tree: nn.Module, *types: type) -> list[str]:
    """The reference: module names in registration order, by isinstance."""
    return [n for n, m in tree.named_modules() if isinstance(m, types)]


def test_selects_by_type_class_name_import_path_and_glob() -> None:
    tree = _model_tree()
    block = _by_isinstance(tree, rnn.DropBlock2d)
    assert [n for n, _ in DropoutRate(0.1, include="DropBlock2d").select(tree)] == block
    assert [n for n, _ in DropoutRate(0.1, include=rnn.DropBlock2d).select(tree)] == block
    assert [n for n, _ in DropoutRate(0.1, include="reglight.nn.DropBlock2d").select(tree)] == block
    dropout2d = _by_isinstance(tree, nn.Dropout2d)
    assert [n for n, _ in DropoutRate(0.1, include=nn.Dropout2d).select(tree)] == dropout2d
    assert [n for n, _ in DropoutRate(0.1, include="torch.nn.Dropout2d").select(tree)] == dropout2d
    # globs match qualified module names; modules without a rate (head.out) are not candidates
    assert [n for n, _ in DropoutRate(0.1, include="head.*").select(tree)] == [
        "head.drop",
        "head.block",
    ]
    # include is a union; exclude removes afterwards (by glob or by class)
    both = DropoutRate(0.1, include=["enc.*", "head.*"], exclude=[nn.Dropout, "DropBlock2d"])
    assert [n for n, _ in both.select(tree)] == ["enc.2", "head.drop"]
    assert [n for n, _ in DropoutRate(0.1, exclude="enc.*").select(tree)] == [
        "head.drop",
        "head.block",
    ]
    assert [n for n, _ in DropPathRates(0.1).select(tree)] == _by_isinstance(tree, rnn.DropPath)
    assert [n for n, _ in DropPathRates(0.1, exclude="blocks.0").select(tree)] == [
        f"blocks.{i}" for i in range(1, 4)
    ]


def test_timm_style_drop_prob_attribute() -> None:
    class TimmDropPath(nn.Module):  # timm names the rate `drop_prob`
        def __init__(self) -> None:
            super().__init__()
            self.drop_prob = 0.0

    TimmDropPath.__name__ = "DropPath"
    model = nn.Sequential(*[TimmDropPath() for _ in range(5)])
    knob = DropPathRates(0.5)
    knob.modules = knob.select(model)
    knob.apply(0.5)
    assert [m.drop_prob for m in model] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


# ---------------------------------------------------------------- values per epoch
def test_values_follow_schedules_each_epoch() -> None:
    model = Recorder()
    hook = PenaltyHook(L2(alpha=0.5))
    sched = RegularizationScheduler(
        [
            DropoutRate(Linear(0.0, 0.3, duration=3)),
            DropPathRates(Linear(0.0, 0.2, duration=2)),
            WeightDecay(Cosine(1e-2, 1e-3, duration=3)),
            PenaltyAlpha(Step([0.0, 0.1], milestones=[2])),
            ModuleAttribute(Linear(1.0, 3.0, duration=3), "block_size", include="DropBlock2d"),
        ]
    )
    trainer = _fit(model, [hook, sched], max_epochs=4)
    for e in range(4):
        seen = model.epochs[e]
        p = 0.3 * min(e / 3, 1.0)
        for name in ("enc.1", "enc.2", "head.drop", "head.block"):
            assert seen["p"][name] == pytest.approx(p), (e, name)
        p_max = 0.2 * min(e / 2, 1.0)
        for i in range(4):  # Huang et al.: block l of L drops with p_max * l / L
            assert seen["p"][f"blocks.{i}"] == pytest.approx(p_max * (i + 1) / 4)
        wd = 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi * min(e / 3, 1.0)))
        assert seen["wd"] == pytest.approx([wd, 0.0])  # the no-decay group stays at 0
        assert seen["alpha"] == [0.0 if e < 2 else 0.1]
    assert model.tree.head.block.block_size == 3.0
    logged = trainer.callback_metrics
    assert logged["reg/dropout"].item() == pytest.approx(0.3)
    assert logged["reg/drop_path"].item() == pytest.approx(0.2)
    assert logged["reg/penalty_alpha"].item() == pytest.approx(0.1)
    assert sched.values["weight_decay"] == pytest.approx(1e-3)


def test_penalty_hook_picks_up_the_scheduled_strength() -> None:
    # the loss has zero gradient: only the L2 penalty moves the weights, and only once its alpha is > 0
    model = Recorder(zero_loss=True, weight_decay=0.0)
    sched = RegularizationScheduler([PenaltyAlpha(Step([0.0, 0.5], milestones=[1]))])
    _fit(model, [PenaltyHook(L2(alpha=1.0)), sched], max_epochs=2)
    w0, w1 = model.epochs[0]["weight"], model.epochs[1]["weight"]
    assert torch.equal(w0, w1)  # alpha 0 throughout epoch 0
    assert model.tree.head.out.weight.norm() < 0.9 * w1.norm()  # epoch 1 shrinks the weights


# ---------------------------------------------------------------- step interval and resume
def _step_callbacks() -> list:
    return [
        PenaltyHook(L2(alpha=1.0)),
        RegularizationScheduler(
            [
                WeightDecay(Linear(0.0, 0.1, duration=10)),
                PenaltyAlpha(Linear(0.5, 0.0, duration=6)),
                DropoutRate(Lambda(lambda t: 0.05 * (t % 3))),
            ],
            interval="step",
        ),
    ]


def test_step_interval_and_resume_continue_the_schedule(tmp_path: Path) -> None:
    full = Recorder()
    _fit(full, _step_callbacks(), max_epochs=3)  # 4 batches per epoch: steps 0..11
    for step, seen in full.steps.items():
        assert seen["wd"][0] == pytest.approx(0.1 * min(step / 10, 1.0))
        assert seen["alpha"] == [pytest.approx(0.5 * (1 - min(step / 6, 1.0)))]
        assert seen["p"]["head.drop"] == pytest.approx(0.05 * (step % 3))
    assert sorted(full.steps) == list(range(12))

    first = Recorder()
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    _fit(first, [*_step_callbacks(), ckpt], max_epochs=1, enable_checkpointing=True)
    resumed = Recorder()
    trainer = Trainer(max_epochs=3, callbacks=_step_callbacks(), **QUIET)
    trainer.fit(resumed, _data(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert sorted(resumed.steps) == list(range(4, 12))
    for step in range(4, 12):
        a, b = resumed.steps[step], full.steps[step]
        assert a["wd"] == pytest.approx(b["wd"]) and a["alpha"] == pytest.approx(b["alpha"])
        assert a["p"] == pytest.approx(b["p"])


# ---------------------------------------------------------------- presets
def test_early_and_late_dropout_presets() -> None:
    early = RegularizationScheduler.early_dropout(0.1, cutoff=2)
    assert [early.knobs[0].value(t) for t in range(4)] == [0.1, 0.1, 0.0, 0.0]
    lin = RegularizationScheduler.early_dropout(0.2, cutoff=4, shape="linear", interval="step")
    assert lin.interval == "step" and lin.knobs[0].value(2) == pytest.approx(0.1)
    late = RegularizationScheduler.late_dropout(0.3, cutoff=1, drop_path=True)
    assert isinstance(late.knobs[0], DropPathRates) and late.knobs[0].value(1) == 0.3
    block = RegularizationScheduler.drop_block_ramp(0.1, duration=100)
    assert block.knobs[0].value(50) == pytest.approx(0.05) and block.interval == "step"

    model = Recorder()
    _fit(model, [RegularizationScheduler.early_dropout(0.25, cutoff=1)], max_epochs=2)
    assert model.epochs[0]["p"]["enc.1"] == 0.25 and model.epochs[1]["p"]["enc.1"] == 0.0
    assert model.epochs[1]["p"]["blocks.3"] == 0.0  # DropPath untouched by a dropout preset


# ---------------------------------------------------------------- errors
def test_glob_matching_nothing_is_an_error_listing_candidates() -> None:
    sched = RegularizationScheduler([DropoutRate(0.1, include="decoder.*")])
    with pytest.raises(
        ValueError,
        match=r"DropoutRate 'dropout': `include` entry 'decoder\.\*' matches no module with "
        r"attribute `p` in Recorder.*available names: tree\.enc\.1, tree\.enc\.2, tree\.head\.drop",
    ):
        _fit(Recorder(), [sched], max_epochs=1)
    with pytest.raises(ValueError, match=r"`include` entry 'GRU' matches no module"):
        DropoutRate(0.1, include=nn.GRU).select(_model_tree())


def test_missing_targets_are_errors() -> None:
    with pytest.raises(ValueError, match="no PenaltyHook"):
        _fit(Recorder(), [RegularizationScheduler([PenaltyAlpha(0.1)])], max_epochs=1)
    with pytest.raises(ValueError, match="found no module"):
        _fit(Recorder(), [RegularizationScheduler([ModuleAttribute(1.0, "r_max")])], max_epochs=1)
    with pytest.raises(ValueError, match="param_groups"):
        _fit(
            Recorder(),
            [RegularizationScheduler([WeightDecay(0.1, param_groups=[5])])],
            max_epochs=1,
        )


def test_schedule_leaving_the_range_at_runtime() -> None:
    sched = RegularizationScheduler([DropoutRate(Lambda(lambda t: 0.5 + t))])
    with pytest.raises(ValueError, match=r"gave 1\.5 at t=1.*\[0\.0, 1\.0\)"):
        _fit(Recorder(), [sched], max_epochs=3)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (
            lambda: DropoutRate(Linear(0.0, 1.0, duration=3)),
            ValueError,
            r"outside the allowed range \[0\.0, 1\.0\)",
        ),
        (lambda: WeightDecay(-0.1), ValueError, "outside the allowed range"),
        (lambda: DropoutRate("linear"), TypeError, "make_schedule"),
        (
            lambda: RegularizationScheduler([DropoutRate(0.1)], interval="batch"),
            ValueError,
            "interval",
        ),
        (lambda: RegularizationScheduler([]), ValueError, "at least one"),
        (
            lambda: RegularizationScheduler([DropoutRate(0.1), DropoutRate(0.2)]),
            ValueError,
            "unique",
        ),
        (lambda: RegularizationScheduler(["dropout"]), TypeError, "Knob"),
        (lambda: DropoutRate(0.1, include=[3]), TypeError, r"`include` entries .* got 3"),
        (lambda: DropoutRate(0.1, exclude=""), TypeError, "`exclude`"),
        (lambda: PenaltyAlpha(0.1, index=-1), ValueError, "index"),
        (lambda: ModuleAttribute(1.0, ""), ValueError, "attribute"),
    ],
)
def test_bad_arguments(build, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build()


def test_all_three_callbacks_build_from_a_lightning_cli_yaml() -> None:
    from jsonargparse import ArgumentParser

    from reglight.callbacks import AugmentationScheduler, EarlyStopping

    yaml = """
    callbacks:
      - class_path: reglight.callbacks.RegularizationScheduler
        init_args:
          interval: step
          knobs:
            - class_path: reglight.callbacks.DropoutRate
              init_args:
                include: head.*
                exclude: [torch.nn.Dropout]
                schedule: {class_path: reglight.schedules.Linear, init_args: {start: 0.0, end: 0.3, duration: 10}}
            - class_path: reglight.callbacks.WeightDecay
              init_args: {schedule: 0.001}
      - class_path: reglight.callbacks.AugmentationScheduler
        init_args:
          magnitude: {class_path: reglight.schedules.Warmup, init_args: {schedule: 1.0, duration: 5}}
      - class_path: reglight.callbacks.EarlyStopping
        init_args: {monitor: val_loss, criterion: gl, criterion_threshold: 5.0}
    """
    parser = ArgumentParser()
    parser.add_argument(
        "--callbacks", type=list[RegularizationScheduler | AugmentationScheduler | EarlyStopping]
    )
    build = getattr(parser, "instantiate", None) or parser.instantiate_classes
    reg, aug, stop = build(parser.parse_string(yaml)).callbacks
    assert reg.interval == "step" and [k.name for k in reg.knobs] == ["dropout", "weight_decay"]
    assert reg.knobs[0].include == ("head.*",) and reg.knobs[0].exclude == (nn.Dropout,)
    assert reg.knobs[0].value(5) == pytest.approx(0.15)
    assert aug.schedules["magnitude"](2.5) == pytest.approx(0.5)
    assert stop.criterion == "gl" and stop.criterion_threshold == 5.0
