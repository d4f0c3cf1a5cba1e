"""Every use of torchvision internals by reglight, in one place.

Three magnitude rules need what torchvision's public API does not offer:

- `TrivialAugmentWide` keeps its magnitude ranges in the class attribute `_AUGMENTATION_SPACE`
  (op name -> `(magnitudes(num_bins, height, width), signed)`), looked up through `self`, so an instance
  attribute of the same name overrides it;
- `RandomResizedCrop` samples the aspect ratio from `_log_ratio`, computed once from `ratio` in `__init__`;
- the transforms driven by a probability `p` (flips, grayscale, invert, ...) share the base
  `torchvision.transforms.v2._transform._RandomApplyTransform`.

`check_torchvision_internals` verifies all three and raises a `RuntimeError` that says what changed; the
test suite runs it, so a torchvision release that moves them fails loudly there, not silently in training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

__all__ = [
    "augmentation_space",
    "check_torchvision_internals",
    "random_apply_base",
    "set_augmentation_space",
    "set_crop_ratio",
]

Magnitudes = Callable[[int, int, int], torch.Tensor | None]

_SPACE = "_AUGMENTATION_SPACE"


def _changed(what: str, detail: str) -> RuntimeError:
    import torchvision

    return RuntimeError(
        f"torchvision {torchvision.__version__} changed {what} ({detail}), which reglight's magnitude rules "
        "rely on (reglight/transforms/_torchvision.py): update that module for this torchvision version"
    )


def augmentation_space(owner: Any) -> dict[str, tuple[Magnitudes, bool]]:
    """The magnitude table of an auto-augment class (`TrivialAugmentWide`, `RandAugment`) or instance.

    Args:
        owner: the transform class (its own table), or an instance (its override, else its class's).

    Returns:
        op name -> `(magnitudes(num_bins, height, width), signed)`.

    Raises:
        RuntimeError: if the class has no such table of that shape.
    """
    space = getattr(owner, _SPACE, None)
    if not isinstance(space, dict) or not all(
        isinstance(v, tuple) and len(v) == 2 and callable(v[0]) for v in space.values()
    ):
        name = owner.__name__ if isinstance(owner, type) else type(owner).__name__
        raise _changed(f"{name}.{_SPACE}", "expected a dict op -> (magnitudes_fn, signed)")
    return space


def set_augmentation_space(
    transform: Any, space: dict[str, tuple[Magnitudes, bool]] | None
) -> None:
    """Give one auto-augment instance its own magnitude table (`None`: the class's again).

    Args:
        transform: the instance.
        space: the table, shaped like [`augmentation_space`][reglight.transforms._torchvision.augmentation_space]'s.
    """
    if space is None:
        transform.__dict__.pop(_SPACE, None)
    else:
        transform.__dict__[_SPACE] = space


def set_crop_ratio(transform: v2.RandomResizedCrop, ratio: list[float]) -> None:
    """Set the aspect-ratio range of a `RandomResizedCrop`, with the cached log range it samples from.

    Args:
        transform: the crop.
        ratio: `[low, high]`.

    Raises:
        RuntimeError: if torchvision no longer caches the log range.
    """
    if not isinstance(getattr(transform, "_log_ratio", None), torch.Tensor):
        raise _changed("RandomResizedCrop._log_ratio", "no longer a tensor attribute")
    transform.ratio = ratio
    transform._log_ratio = torch.log(torch.tensor(ratio))


def random_apply_base() -> type | None:
    """torchvision's base class of the transforms applied with a probability `p`, if it still exists."""
    try:
        from torchvision.transforms.v2._transform import _RandomApplyTransform
    except ImportError:  # pragma: no cover - checked by check_torchvision_internals
        return None
    return _RandomApplyTransform


def check_torchvision_internals() -> None:
    """Verify that the torchvision internals above still behave as the magnitude rules assume.

    Raises:
        RuntimeError: naming what changed.

    Examples:
        >>> check_torchvision_internals()  # silent with a supported torchvision
    """
    space = augmentation_space(v2.TrivialAugmentWide)
    if "Rotate" not in space or space["Rotate"][0](31, 8, 8) is None:
        raise _changed(f"TrivialAugmentWide.{_SPACE}", "no 'Rotate' entry with magnitudes")
    aug = v2.TrivialAugmentWide()
    marker = {"Identity": (space["Identity"][0], False)} if "Identity" in space else {}
    set_augmentation_space(aug, marker)
    if (
        augmentation_space(aug) is not marker
    ):  # pragma: no cover - only on an incompatible torchvision
        raise _changed(
            f"TrivialAugmentWide.{_SPACE}", "an instance attribute no longer overrides it"
        )
    set_augmentation_space(aug, None)

    crop = v2.RandomResizedCrop(8, scale=(0.5, 0.5), ratio=(0.5, 2.0))
    set_crop_ratio(crop, [1.0, 1.0])
    make_params = getattr(crop, "make_params", None) or crop._get_params  # torchvision < 0.21
    params = make_params([torch.zeros(3, 40, 40)])
    if params["height"] != params["width"]:
        raise _changed("RandomResizedCrop._log_ratio", "make_params no longer samples from it")

    base = random_apply_base()
    if base is None or not issubclass(v2.RandomHorizontalFlip, base):
        raise _changed(
            "torchvision.transforms.v2._transform._RandomApplyTransform",
            "missing or no longer the base of RandomHorizontalFlip",
        )
