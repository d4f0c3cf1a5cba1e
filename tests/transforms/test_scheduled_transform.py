"""reglight.transforms.ScheduledTransform alone: magnitude rules, apply probability, batches, no Lightning."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import pytest
import torch
from torchvision.transforms import v2

from reglight.transforms import (
    ScheduledTransform,
    clear_group_values,
    scheduled_transforms,
    set_group_values,
)
from reglight.transforms._torchvision import augmentation_space


def test_transforms_do_not_import_lightning() -> None:
    code = (
        "import sys, reglight.transforms; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_batched_per_sample_and_shared_parameters() -> None:
    x = torch.rand(1, 1, 9, 9).expand(6, 1, 9, 9).contiguous()  # six copies of one image
    shared = ScheduledTransform(v2.RandomRotation(90.0), batched=True, per_sample=False)
    out = shared(x)
    assert all(torch.equal(out[0], out[i]) for i in range(6))  # one draw for the batch
    own = ScheduledTransform(v2.RandomRotation(90.0), batched=True, per_sample=True)
    out = own(x)
    assert not all(torch.equal(out[0], out[i]) for i in range(6))  # a draw per sample
    half = ScheduledTransform(v2.RandomErasing(p=1.0, value=7.0), apply_prob=0.5, batched=True)
    torch.manual_seed(1)
    drawn = torch.rand(6) < 0.5  # the wrapper draws its mask first, from the CPU generator
    torch.manual_seed(1)
    out = half(x)
    unchanged = torch.tensor([torch.equal(out[i], x[i]) for i in range(6)])
    assert torch.equal(unchanged, ~drawn) and 0 < int(drawn.sum()) < 6


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
    space = augmentation_space(aug.transform)
    reference = augmentation_space(v2.TrivialAugmentWide)
    assert torch.allclose(space["Rotate"][0](31, 8, 8), torch.linspace(0.0, 67.5, 31))
    assert space["Rotate"][1] is True and space["Identity"][0](31, 8, 8) is None
    aug.magnitude = 0.0
    aug(torch.zeros(3, 8, 8, dtype=torch.uint8))
    space = augmentation_space(aug.transform)
    assert (space["Posterize"][0](31, 8, 8) == 8).all()  # 8 bits: no change
    assert (space["ShearX"][0](31, 8, 8) == 0).all()
    aug.magnitude = 1.0
    aug(torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert augmentation_space(aug.transform) is reference  # the class's own space again
    pickle.loads(pickle.dumps(ScheduledTransform(v2.TrivialAugmentWide(), magnitude=0.3)))


def test_apply_prob_is_the_fraction_of_augmented_samples() -> None:
    aug = ScheduledTransform(v2.RandomErasing(p=1.0, value=7.0), apply_prob=0.3)
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


def test_group_values_reach_live_and_later_wrappers() -> None:
    live = ScheduledTransform(v2.RandomRotation(40.0), group="tg")
    set_group_values("tg", {"magnitude": 0.25, "apply_prob": 0.5})
    later = ScheduledTransform(v2.RandomRotation(40.0), group="tg")
    for aug in (live, later):
        assert (aug.magnitude, aug.apply_prob) == (0.25, 0.5)
        aug(torch.zeros(1, 4, 4))  # the magnitude reaches the rotation at the next call
        assert aug.transform.degrees == pytest.approx([-10.0, 10.0])
    assert set(scheduled_transforms("tg")) == {live, later}
    clear_group_values("tg")
    assert ScheduledTransform(v2.RandomRotation(40.0), group="tg").magnitude == 1.0
    with pytest.raises(ValueError, match="'p'"):
        set_group_values("tg", {"p": 0.5})
    with pytest.raises(ValueError, match="`apply_prob`"):
        set_group_values("tg", {"apply_prob": 1.5})


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: ScheduledTransform(v2.RandomErasing(), magnitude=1.5), ValueError, "`magnitude`"),
        (
            lambda: ScheduledTransform(v2.RandomErasing(), apply_prob=-0.1),
            ValueError,
            r"`apply_prob`.*-0\.1",
        ),
        (lambda: ScheduledTransform("erase"), TypeError, "callable"),
        (lambda: ScheduledTransform(v2.RandomErasing(), group=""), ValueError, "`group`"),
    ],
)
def test_bad_arguments(build, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build()
