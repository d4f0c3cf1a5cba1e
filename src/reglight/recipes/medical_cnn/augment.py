"""Training-time augmentation of the medical-image CNN recipe (torchvision ``transforms.v2``)."""

from __future__ import annotations

from torch import Tensor
from torchvision.transforms import v2

from reglight._validation import check_in_range, check_nonnegative, check_probability

__all__ = ["MedicalAugmentation"]


class MedicalAugmentation:
    """Random rotation, shift, zoom and flips, with optional RandAugment and random erasing.

    One strength knob, :attr:`magnitude` in ``[0, 1]``, scales every component from nothing (identity at 0)
    to the configured maximum (at 1): rotation angle ``U(-m·rotation, m·rotation)``, shift up to
    ``m·translate`` of the image size, zoom in ``[1 - m·scale, 1 + m·scale]``, flip probability ``0.5·m``,
    RandAugment magnitude ``round(m·rand_augment_magnitude)`` and erasing probability ``m·erasing``.
    Changing :attr:`magnitude` between epochs (as an ``AugmentationScheduler`` does) takes effect on the
    next image; nothing is rebuilt.

    This is the seed's "aggressive data augmentation (rotations, shifts)" for a dataset of a few hundred
    images; RandAugment is Cubuk et al. 2020 and random erasing Zhong et al. 2020.

    Args:
        rotation: Maximum rotation in degrees at ``magnitude=1``.
        translate: Maximum shift as a fraction of height/width at ``magnitude=1``, in ``[0, 1]``.
        scale: Maximum relative zoom at ``magnitude=1``, in ``[0, 1)``.
        hflip: Random horizontal flips.
        vflip: Random vertical flips.
        rand_augment_ops: Number of RandAugment operations per image; 0 disables RandAugment.
        rand_augment_magnitude: RandAugment magnitude (of 31 bins, 0-30) at ``magnitude=1``.
        erasing: Random-erasing probability at ``magnitude=1``; 0 disables it.
        magnitude: Initial strength in ``[0, 1]``.

    Example:
        >>> import torch
        >>> aug = MedicalAugmentation(rotation=15.0, translate=0.1)
        >>> img = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
        >>> aug(img).shape, aug(img).dtype
        (torch.Size([1, 28, 28]), torch.uint8)
        >>> aug.magnitude = 0.0
        >>> bool(torch.equal(aug(img), img))
        True
    """

    def __init__(
        self,
        rotation: float = 15.0,
        translate: float = 0.1,
        scale: float = 0.1,
        hflip: bool = True,
        vflip: bool = False,
        rand_augment_ops: int = 0,
        rand_augment_magnitude: int = 9,
        erasing: float = 0.0,
        magnitude: float = 1.0,
    ) -> None:
        self.rotation = check_in_range("rotation", rotation, 0.0, 180.0)
        self.translate = check_in_range("translate", translate, 0.0, 1.0)
        self.scale = check_probability("scale", scale)
        self.hflip = bool(hflip)
        self.vflip = bool(vflip)
        self.rand_augment_ops = int(check_nonnegative("rand_augment_ops", rand_augment_ops))
        self.rand_augment_magnitude = int(
            check_in_range("rand_augment_magnitude", rand_augment_magnitude, 0, 30)
        )
        self.erasing = check_probability("erasing", erasing, inclusive_one=True)
        self._hflip = v2.RandomHorizontalFlip(p=0.0)
        self._vflip = v2.RandomVerticalFlip(p=0.0)
        self._affine = v2.RandomAffine(degrees=0.0)
        self._rand_augment = v2.RandAugment(num_ops=max(self.rand_augment_ops, 1), magnitude=0)
        self._erasing = v2.RandomErasing(p=0.0, value=0)
        self._magnitude = 0.0
        self.magnitude = magnitude

    @property
    def magnitude(self) -> float:
        """Current strength in ``[0, 1]``; setting it rescales every component in place."""
        return self._magnitude

    @magnitude.setter
    def magnitude(self, value: float) -> None:
        m = check_in_range("magnitude", value, 0.0, 1.0)
        self._magnitude = m
        self._hflip.p = 0.5 * m if self.hflip else 0.0
        self._vflip.p = 0.5 * m if self.vflip else 0.0
        self._affine.degrees = [-self.rotation * m, self.rotation * m]
        t = self.translate * m
        self._affine.translate = [t, t] if t > 0 else None
        s = self.scale * m
        self._affine.scale = [1.0 - s, 1.0 + s] if s > 0 else None
        self._rand_augment.magnitude = round(self.rand_augment_magnitude * m)
        self._erasing.p = self.erasing * m

    def __call__(self, image: Tensor) -> Tensor:
        """Augment one ``uint8`` (or float) ``(C, H, W)`` image."""
        if self._magnitude == 0.0:
            return image
        x = self._hflip(image) if self.hflip else image
        x = self._vflip(x) if self.vflip else x
        if self.rotation > 0 or self.translate > 0 or self.scale > 0:
            x = self._affine(x)
        if self.rand_augment_ops > 0:
            x = self._rand_augment(x)
        if self.erasing > 0:
            x = self._erasing(x)
        return x

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(rotation={self.rotation}, translate={self.translate}, "
            f"scale={self.scale}, hflip={self.hflip}, vflip={self.vflip}, "
            f"rand_augment_ops={self.rand_augment_ops}, "
            f"rand_augment_magnitude={self.rand_augment_magnitude}, erasing={self.erasing}, "
            f"magnitude={self._magnitude})"
        )
