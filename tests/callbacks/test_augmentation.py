"""reglight.callbacks.AugmentationScheduler: every DataLoader worker, resume, the device-side batch path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torchvision.transforms import v2

from reglight.callbacks import AugmentationScheduler
from reglight.schedules import Lambda, Linear
from reglight.transforms import ScheduledTransform

QUIET = dict(
    accelerator="cpu",
    enable_progress_bar=False,
    enable_model_summary=False,
    logger=False,
    enable_checkpointing=False,
    num_sanity_val_steps=0,
    limit_val_batches=0,
)
DEGREES = 40.0


class Recording(Dataset):
    """Applies the scheduled augmentation and returns, with the image, what the process saw.

    `seen = [magnitude, apply_prob, affine max degrees, worker id, pid, image changed]`.
    """

    def __init__(self, group: str, n: int = 8) -> None:
        pipeline = v2.Compose(
            [v2.RandomAffine(degrees=DEGREES, translate=(0.25, 0.25)), v2.RandomErasing(p=1.0)]
        )
        self.aug = ScheduledTransform(pipeline, group=group)
        self.images = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i]
        out = self.aug(x)
        info = get_worker_info()
        affine = self.aug.transform.transforms[0]
        seen = [
            self.aug.magnitude,
            self.aug.apply_prob,
            affine.degrees[1],
            -1 if info is None else info.id,
            os.getpid(),
            float(not torch.equal(out, x)),
        ]
        return out, torch.tensor(seen, dtype=torch.float64)


class Collect(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 1)
        self.seen: dict[int, list[torch.Tensor]] = {}

    def training_step(self, batch, batch_idx):
        x, seen = batch
        self.seen.setdefault(self.current_epoch, []).append(seen)
        return self.lin(x.flatten(1)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader(ds: Dataset, workers: int, persistent: bool, context: str | None) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=2,
        num_workers=workers,
        persistent_workers=persistent,
        multiprocessing_context=context,
    )


def _check_epochs(model: Collect, epochs: range, m_of, p_of, workers: int) -> None:
    for e in epochs:
        seen = torch.cat(model.seen[e])
        m, p = m_of(e), p_of(e)
        assert seen.shape[0] == 8
        assert torch.allclose(seen[:, 0], torch.full((8,), m, dtype=torch.float64)), (e, seen[:, 0])
        assert torch.allclose(seen[:, 1], torch.full((8,), p, dtype=torch.float64)), (e, seen[:, 1])
        assert torch.allclose(seen[:, 2], torch.full((8,), DEGREES * m, dtype=torch.float64)), e
        if m == 0.0:
            assert not seen[:, 5].any(), "magnitude 0 must leave every image unchanged"
        else:
            assert seen[:, 5].any()
        if workers:
            assert set(seen[:, 3].tolist()) == set(range(workers))  # every worker contributed
            assert os.getpid() not in seen[:, 4].tolist()
        else:
            assert set(seen[:, 4].tolist()) == {os.getpid()}


# ---------------------------------------------------------------- every worker, every epoch
@pytest.mark.parametrize(
    ("workers", "persistent", "context"),
    [
        (0, False, None),
        (2, False, "fork"),
        (2, True, "fork"),
        pytest.param(2, True, "spawn", marks=pytest.mark.slow),
    ],
    ids=["main-process", "fork", "fork-persistent", "spawn-persistent"],
)
def test_every_worker_applies_the_scheduled_strength(
    workers: int, persistent: bool, context
) -> None:
    group = f"workers-{workers}-{persistent}-{context}"
    ds = Recording(group)
    model = Collect()
    sched = AugmentationScheduler(
        magnitude=Linear(0.0, 1.0, duration=2),
        apply_prob=Linear(1.0, 0.5, duration=2),
        group=group,
    )
    trainer = Trainer(max_epochs=3, callbacks=[sched], **QUIET)
    trainer.fit(model, _loader(ds, workers, persistent, context))
    _check_epochs(
        model, range(3), lambda e: min(e / 2, 1.0), lambda e: 1.0 - 0.5 * min(e / 2, 1.0), workers
    )
    if workers and persistent:
        pids = {e: set(torch.cat(model.seen[e])[:, 4].tolist()) for e in range(3)}
        assert pids[0] == pids[1] == pids[2]  # the same worker processes all along


def test_resume_continues_the_schedule_in_persistent_workers(tmp_path: Path) -> None:
    group = "resume"

    def run(max_epochs: int, extra: list, ckpt_path: str | None = None) -> Collect:
        model = Collect()
        sched = AugmentationScheduler(magnitude=Linear(0.0, 1.0, duration=3), group=group)
        options = {**QUIET, "enable_checkpointing": bool(extra)}
        trainer = Trainer(max_epochs=max_epochs, callbacks=[sched, *extra], **options)
        trainer.fit(model, _loader(Recording(group), 2, True, "fork"), ckpt_path=ckpt_path)
        return model

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    first = run(2, [ckpt])
    resumed = run(4, [], ckpt_path=str(tmp_path / "last.ckpt"))
    assert sorted(first.seen) == [0, 1] and sorted(resumed.seen) == [2, 3]
    # the first batches of epoch 2 are prefetched before any epoch hook: they must see epoch 2's value
    _check_epochs(resumed, range(2, 4), lambda e: e / 3, lambda e: 1.0, 2)


def test_saved_progress_is_where_lightning_resumes(tmp_path: Path) -> None:
    """The reference is Lightning's own count of processed epochs, from which `fit` resumes."""
    seen: list[tuple[int, int]] = []

    class Probe(
        ModelCheckpoint
    ):  # runs after the scheduler's on_train_epoch_end, like checkpointing
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            progress = trainer.fit_loop.epoch_progress.current.processed
            seen.append((sched.state_dict()["progress"], progress))

    sched = AugmentationScheduler(magnitude=Linear(0.0, 1.0, duration=3), group="progress")
    trainer = Trainer(
        max_epochs=2,
        callbacks=[sched, Probe(dirpath=tmp_path)],
        **{**QUIET, "enable_checkpointing": True},
    )
    trainer.fit(Collect(), _loader(Recording("progress"), 0, False, None))
    assert seen == [(1, 1), (2, 2)]
    assert sched.state_dict()["progress"] == trainer.fit_loop.epoch_progress.current.processed == 2


class BuildsItsOwnData(Collect):
    """Creates the dataset (and its ScheduledTransform) only when Lightning asks for the dataloader."""

    def train_dataloader(self) -> DataLoader:
        return _loader(Recording("late"), 0, False, None)


def test_wrapper_created_late_and_two_schedulers_sharing_a_group(tmp_path: Path) -> None:
    model = BuildsItsOwnData()
    callbacks = [
        AugmentationScheduler(magnitude=Linear(0.0, 1.0, duration=2), group="late"),
        AugmentationScheduler(apply_prob=Linear(1.0, 0.5, duration=2), group="late"),
        ModelCheckpoint(dirpath=tmp_path, save_last=True),
    ]
    assert callbacks[0].state_key != callbacks[1].state_key
    trainer = Trainer(max_epochs=3, callbacks=callbacks, **{**QUIET, "enable_checkpointing": True})
    trainer.fit(model)
    _check_epochs(
        model, range(3), lambda e: e / 2 if e < 2 else 1.0, lambda e: 1 - 0.25 * min(e, 2), 0
    )
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)["callbacks"]
    assert {tuple(v["values"]) for k, v in saved.items() if "AugmentationScheduler" in k} == {
        ("magnitude",),
        ("apply_prob",),
    }


# ---------------------------------------------------------------- device-side batch path
class BatchAugmented(LightningModule):
    def __init__(self, per_sample: bool = True) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 1)
        self.aug = ScheduledTransform(
            v2.RandomAffine(degrees=90.0), batched=True, per_sample=per_sample, group="batch"
        )
        self.steps: dict[int, tuple[float, list[float]]] = {}
        self.val_unchanged: list[bool] = []

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch
        out = self.aug(x)
        if self.trainer.training:
            self.steps[self.trainer.global_step] = (
                self.aug.magnitude,
                list(self.aug.transform.degrees),
            )
        else:
            self.val_unchanged.append(torch.equal(out, x))
        return out, y

    def training_step(self, batch, batch_idx):
        return self.lin(batch[0].flatten(1)).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_batch_path_sees_the_value_of_each_step() -> None:
    data = torch.utils.data.TensorDataset(torch.rand(8, 1, 8, 8), torch.zeros(8))
    model = BatchAugmented()
    sched = AugmentationScheduler(
        magnitude=Linear(0.0, 1.0, duration=6), interval="step", group="batch"
    )
    trainer = Trainer(max_epochs=2, callbacks=[sched], **{**QUIET, "limit_val_batches": 1})
    trainer.fit(model, DataLoader(data, batch_size=2), DataLoader(data, batch_size=2))
    assert sorted(model.steps) == list(range(8))
    for step, (m, degrees) in model.steps.items():
        assert m == pytest.approx(min(step / 6, 1.0))
        assert degrees == pytest.approx([-90.0 * m, 90.0 * m])
    assert model.val_unchanged == [True, True]  # eval mode: the wrapper is the identity
    assert trainer.callback_metrics["aug/magnitude"].item() == pytest.approx(1.0)  # min(7 / 6, 1)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (
            lambda: AugmentationScheduler(magnitude=Linear(0.0, 1.5, duration=3)),
            ValueError,
            r"\[0, 1\]",
        ),
        (lambda: AugmentationScheduler(apply_prob=-0.2), ValueError, r"`apply_prob`.*\[0, 1\]"),
        (lambda: AugmentationScheduler(), ValueError, "neither"),
        (lambda: AugmentationScheduler(magnitude="cosine"), TypeError, "make_schedule"),
        (lambda: AugmentationScheduler(magnitude=0.5, interval="sample"), ValueError, "interval"),
        (
            lambda: AugmentationScheduler(magnitude=0.5, transforms=[v2.RandAugment()]),
            TypeError,
            "Scheduled",
        ),
    ],
)
def test_bad_arguments(build, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build()


def test_runtime_errors_and_warnings() -> None:
    data = DataLoader(torch.utils.data.TensorDataset(torch.rand(4, 1, 8, 8), torch.zeros(4)), 2)
    with pytest.raises(ValueError, match=r"gave 1\.2 at t=1"):
        sched = AugmentationScheduler(magnitude=Lambda(lambda t: 0.2 + t), group="err1")
        Trainer(max_epochs=2, callbacks=[sched], **QUIET).fit(BatchAugmented(), data)
    unsupported = ScheduledTransform(v2.AutoAugment(), group="err2")
    with pytest.raises(ValueError, match="no transform whose strength a magnitude can set"):
        sched = AugmentationScheduler(magnitude=0.5, group="err2")
        Trainer(max_epochs=1, callbacks=[sched], **QUIET).fit(BatchAugmented(), data)
    del unsupported
    with pytest.warns(RuntimeWarning, match="found no ScheduledTransform in group 'nobody'"):
        sched = AugmentationScheduler(apply_prob=0.5, group="nobody")
        Trainer(max_epochs=1, callbacks=[sched], **QUIET).fit(BatchAugmented(), data)
