"""The torchvision internals that reglight's magnitude rules rely on: fail loudly when torchvision moves them."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from reglight.transforms import _torchvision


def test_torchvision_internals_are_as_the_magnitude_rules_assume() -> None:
    # raises RuntimeError("torchvision X changed ...: update reglight/transforms/_torchvision.py") if not
    _torchvision.check_torchvision_internals()


def test_an_instance_table_overrides_the_class_table_in_forward() -> None:
    # the reference is torchvision's own forward: with a table whose only op is a 90° rotation at every
    # bin, TrivialAugmentWide must rotate the image by ±90°
    aug = v2.TrivialAugmentWide()
    space = _torchvision.augmentation_space(v2.TrivialAugmentWide)
    _torchvision.set_augmentation_space(
        aug, {"Rotate": (lambda num_bins, h, w: torch.full((num_bins,), 90.0), True)}
    )
    img = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)
    out = aug(img)
    assert torch.equal(out, torch.rot90(img, 1, (1, 2))) or torch.equal(
        out, torch.rot90(img, -1, (1, 2))
    )
    _torchvision.set_augmentation_space(aug, None)
    assert _torchvision.augmentation_space(aug) is space


def test_changed_internals_raise_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v2.TrivialAugmentWide, "_AUGMENTATION_SPACE", ["not", "a", "dict"])
    with pytest.raises(
        RuntimeError, match=r"torchvision .* changed TrivialAugmentWide\._AUGMENTATION_SPACE"
    ):
        _torchvision.check_torchvision_internals()
    monkeypatch.undo()
    crop = v2.RandomResizedCrop(8)
    del crop._log_ratio
    with pytest.raises(RuntimeError, match=r"changed RandomResizedCrop\._log_ratio"):
        _torchvision.set_crop_ratio(crop, [1.0, 1.0])
