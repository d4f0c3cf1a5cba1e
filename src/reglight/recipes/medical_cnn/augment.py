"""Training-time augmentation of the medical-image CNN recipe (torchvision `transforms.v2`)."""

from __future__ import annotations

from torchvision.transforms import v2

from reglight._validation import (
    check_in_range,
    check_nonnegative,
    check_probability,
)
from reglight.transforms import ScheduledTransform

__all__ = ["medical_augmentation"]


def medical_augmentation(
    rotation: float = 15.0,
    translate: float = 0.1,
    scale: float = 0.1,
    hflip: bool = True,
    vflip: bool = False,
    rand_augment_ops: int = 0,
    rand_augment_magnitude: int = 9,
    erasing: float = 0.0,
    magnitude: float = 1.0,
    group: str = "default",
) -> ScheduledTransform:
    """Random flips, rotation, shift and zoom, with optional RandAugment and random erasing, schedulable.

    Aggressive data augmentation (rotations, shifts) for a dataset of a few hundred images, as a
    `transforms.v2` pipeline on `uint8` `(C, H, W)` images:

    ```text
    RandomHorizontalFlip(0.5) → RandomVerticalFlip(0.5) → RandomAffine(rotation, translate, scale)
    → RandAugment(rand_augment_ops, rand_augment_magnitude) → RandomErasing(erasing)
    ```

    (each part only when enabled), wrapped in a [ScheduledTransform][reglight.transforms.ScheduledTransform]
    so that an [AugmentationScheduler][reglight.callbacks.AugmentationScheduler] can drive its strength, in
    DataLoader workers too. At
    magnitude `m` the rotation range, shift and zoom are scaled by `m`, the flip and erasing probabilities
    by `m` and the RandAugment magnitude is `round(m · rand_augment_magnitude)`; at `m = 1` the pipeline
    is exactly as configured, at `m = 0` it leaves images unchanged (except for RandAugment's
    magnitude-free operations such as equalize and autocontrast). RandAugment is Cubuk et al. 2020,
    random erasing Zhong et al. 2020.

    Args:
        rotation: Maximum rotation in degrees (at magnitude 1).
        translate: Maximum shift as a fraction of height and width, in `[0, 1]`.
        scale: Maximum relative zoom in `[0, 1)`: the scale is drawn from `[1 - scale, 1 + scale]`.
        hflip: Random horizontal flips.
        vflip: Random vertical flips.
        rand_augment_ops: RandAugment operations per image; 0 disables RandAugment.
        rand_augment_magnitude: RandAugment magnitude (0-30) at magnitude 1.
        erasing: Random-erasing probability; 0 disables it.
        magnitude: Initial strength in `[0, 1]`.
        group: The `ScheduledTransform` group an `AugmentationScheduler` drives.

    Returns:
        The scheduled augmentation (identity in `eval()` mode).

    Raises:
        ValueError: For an argument outside its range (named in the message).

    Examples:
        >>> import torch
        >>> aug = medical_augmentation(rotation=20.0, translate=0.1, magnitude=0.5)
        >>> img = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
        >>> aug(img).shape, aug(img).dtype
        (torch.Size([1, 28, 28]), torch.uint8)
        >>> aug.transform.transforms[1].degrees  # [flip, affine]: rotation range at magnitude 0.5
        [-10.0, 10.0]
    """
    rotation = check_in_range("rotation", rotation, 0.0, 180.0)
    translate = check_in_range("translate", translate, 0.0, 1.0)
    scale = check_probability("scale", scale)
    ops = int(check_nonnegative("rand_augment_ops", rand_augment_ops))
    ra_mag = int(check_in_range("rand_augment_magnitude", rand_augment_magnitude, 0, 30))
    erasing = check_probability("erasing", erasing, inclusive_one=True)
    check_probability("magnitude", magnitude, inclusive_one=True)
    parts: list[v2.Transform] = []
    if hflip:
        parts.append(v2.RandomHorizontalFlip(0.5))
    if vflip:
        parts.append(v2.RandomVerticalFlip(0.5))
    if rotation > 0 or translate > 0 or scale > 0:
        parts.append(
            v2.RandomAffine(
                degrees=rotation,
                translate=(translate, translate) if translate > 0 else None,
                scale=(1.0 - scale, 1.0 + scale) if scale > 0 else None,
            )
        )
    if ops > 0:
        parts.append(v2.RandAugment(num_ops=ops, magnitude=ra_mag))
    if erasing > 0:
        parts.append(v2.RandomErasing(p=erasing, value=0))
    return ScheduledTransform(v2.Compose(parts), magnitude=magnitude, group=group)
