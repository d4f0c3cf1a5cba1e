"""reglight.callbacks.AugmentationScheduler / ScheduledTransform: workers, resume, batches, rules."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torchvision.transforms import v2

from reglight.callbacks import AugmentationScheduler, ScheduledTransform
from reglight.schedules import Lambda, Linear

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

    ``seen = [magnitude, p, affine max degrees, worker id, pid, image changed]``.
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
            self.aug.p,
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
        magnitude=Linear(0.0, 1.0, duration=2), p=Linear(1.0, 0.5, duration=2), group=group
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


class BuildsItsOwnData(Collect):
    """Creates the dataset (and its ScheduledTransform) only when Lightning asks for the dataloader."""

    def train_dataloader(self) -> DataLoader:
        return _loader(Recording("late"), 0, False, None)


def test_wrapper_created_late_and_two_schedulers_sharing_a_group(tmp_path: Path) -> None:
    model = BuildsItsOwnData()
    callbacks = [
        AugmentationScheduler(magnitude=Linear(0.0, 1.0, duration=2), group="late"),
        AugmentationScheduler(p=Linear(1.0, 0.5, duration=2), group="late"),
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
        ("p",),
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


def test_batched_per_sample_and_shared_parameters() -> None:
    x = torch.rand(1, 1, 9, 9).expand(6, 1, 9, 9).contiguous()  # six copies of one image
    shared = ScheduledTransform(v2.RandomRotation(90.0), batched=True, per_sample=False)
    out = shared(x)
    assert all(torch.equal(out[0], out[i]) for i in range(6))  # one draw for the batch
    own = ScheduledTransform(v2.RandomRotation(90.0), batched=True, per_sample=True)
    out = own(x)
    assert not all(torch.equal(out[0], out[i]) for i in range(6))  # a draw per sample
    half = ScheduledTransform(v2.RandomErasing(p=1.0, value=7.0), p=0.5, batched=True)
    torch.manual_seed(1)
    drawn = torch.rand(6) < 0.5  # the wrapper draws its mask first, from the CPU generator
    torch.manual_seed(1)
    out = half(x)
    unchanged = torch.tensor([torch.equal(out[i], x[i]) for i in range(6)])
    assert torch.equal(unchanged, ~drawn) and 0 < int(drawn.sum()) < 6


# ---------------------------------------------------------------- ScheduledTransform alone
def test_magnitude_rules_of_torchvision_transforms() -> None:
    aug = ScheduledTransform(
        v2.Compose(
            [
                v2.RandAugment(magnitude=20),
                v2.RandomApply([v2.RandomRotation(30.0)], p=0.7),
                v2.ColorJitter(brightness=0.4, hue=0.2),
                v2.RandomResizedCrop(32, scale=(0.2, 1.0), ratio=(0.5, 2.0)),
                v2.RandomPerspective(distortion_scale=0.6, p=1.0),
                v2.RandomHorizontalFlip(p=0.5),
                v2.GaussianBlur(3, sigma=(0.5, 2.0)),
                v2.GaussianNoise(sigma=0.2),
                v2.ElasticTransform(alpha=40.0, sigma=2.0),
            ]
        ),
        magnitude=0.5,
    )
    rand, rot, jitter, crop, persp, flip, blur, noise, elastic = (
        aug.transform.transforms[0],
        aug.transform.transforms[1].transforms[0],
        *aug.transform.transforms[2:],
    )
    assert rand.magnitude == 10
    assert rot.degrees == pytest.approx([-15.0, 15.0])
    assert aug.transform.transforms[1].p == 0.7  # a container's own p is not a strength
    assert jitter.brightness == pytest.approx((0.8, 1.2)) and jitter.hue == pytest.approx(
        (-0.1, 0.1)
    )
    assert jitter.contrast is None
    assert crop.scale == pytest.approx([0.6, 1.0])
    assert crop.ratio == pytest.approx([0.5**0.5, 2.0**0.5])
    assert torch.allclose(crop._log_ratio, torch.log(torch.tensor(crop.ratio)))
    assert persp.distortion_scale == pytest.approx(0.3) and persp.p == 1.0
    assert flip.p == pytest.approx(0.25)
    assert blur.sigma == pytest.approx([0.25, 1.0]) and noise.sigma == pytest.approx(0.1)
    assert elastic.alpha == pytest.approx([20.0, 20.0])
    aug.magnitude = 1.0
    aug(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    assert rand.magnitude == 20 and rot.degrees == pytest.approx(
        [-30.0, 30.0]
    )  # back to as configured
    assert crop.scale == pytest.approx([0.2, 1.0])


def test_trivial_augment_samples_the_first_fraction_of_each_range() -> None:
    aug = ScheduledTransform(v2.TrivialAugmentWide(), magnitude=0.5)
    space = aug.transform._AUGMENTATION_SPACE
    reference = v2.TrivialAugmentWide._AUGMENTATION_SPACE
    assert torch.allclose(space["Rotate"][0](31, 8, 8), torch.linspace(0.0, 67.5, 31))
    assert space["Rotate"][1] is True and space["Identity"][0](31, 8, 8) is None
    aug.magnitude = 0.0
    aug(torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert (
        aug.transform._AUGMENTATION_SPACE["Posterize"][0](31, 8, 8) == 8
    ).all()  # 8 bits: no change
    assert (aug.transform._AUGMENTATION_SPACE["ShearX"][0](31, 8, 8) == 0).all()
    aug.magnitude = 1.0
    aug(torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert aug.transform._AUGMENTATION_SPACE is reference  # the class's own space again
    pickle.loads(pickle.dumps(ScheduledTransform(v2.TrivialAugmentWide(), magnitude=0.3)))


def test_probability_is_the_fraction_of_augmented_samples() -> None:
    aug = ScheduledTransform(v2.RandomErasing(p=1.0, value=7.0), p=0.3)
    x = torch.zeros(1, 4, 4)
    hits = sum(bool((aug(x) == 7.0).any()) for _ in range(2000))
    assert abs(hits / 2000 - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 2000)


def test_eval_mode_is_the_identity_and_custom_magnitude_property() -> None:
    class Strength:
        def __init__(self) -> None:
            self._m = 1.0

        @property
        def magnitude(self) -> float:
            return self._m

        @magnitude.setter
        def magnitude(self, value: float) -> None:
            self._m = value

        def __call__(self, x):
            return x + self._m

    aug = ScheduledTransform(Strength(), magnitude=0.25)
    assert aug.transform.magnitude == 0.25 and torch.equal(
        aug(torch.zeros(2)), torch.full((2,), 0.25)
    )
    aug.eval()
    assert torch.equal(aug(torch.zeros(2)), torch.zeros(2))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: ScheduledTransform(v2.RandomErasing(), magnitude=1.5), ValueError, "magnitude"),
        (lambda: ScheduledTransform(v2.RandomErasing(), p=-0.1), ValueError, "`p`"),
        (lambda: ScheduledTransform("erase"), TypeError, "callable"),
        (
            lambda: AugmentationScheduler(magnitude=Linear(0.0, 1.5, duration=3)),
            ValueError,
            r"\[0, 1\]",
        ),
        (lambda: AugmentationScheduler(p=-0.2), ValueError, r"\[0, 1\]"),
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
        sched = AugmentationScheduler(p=0.5, group="nobody")
        Trainer(max_epochs=1, callbacks=[sched], **QUIET).fit(BatchAugmented(), data)
