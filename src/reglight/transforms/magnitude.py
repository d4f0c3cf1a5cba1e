r"""Magnitude rules: how one number $m \in [0, 1]$ sets the strength of a torchvision transform.

At $m = 1$ a transform is exactly as configured, at $m = 0$ it does nothing (or as little as its parameters
allow), and in between its parameters are interpolated. [`MAGNITUDE_RULES`][reglight.transforms.MAGNITUDE_RULES]
holds the rules of torchvision's `transforms.v2`;
[`register_magnitude_rule`][reglight.transforms.register_magnitude_rule] adds one for another type.
[`ScheduledTransform`][reglight.transforms.ScheduledTransform] applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

from reglight.transforms import _torchvision

__all__ = ["MAGNITUDE_RULES", "MagnitudeRule", "register_magnitude_rule", "rule_for"]

Capture = Callable[[Any], dict[str, Any]]
Apply = Callable[[Any, dict[str, Any], float], None]


class MagnitudeRule:
    """How a magnitude in $[0, 1]$ sets the parameters of one transform type.

    Args:
        capture: `capture(transform) -> base`: the configured parameters (the strength at magnitude 1),
            read once when the transform is wrapped.
        apply: `apply(transform, base, magnitude)`: set the parameters for `magnitude`.

    Both must be module-level functions (or instances of module-level classes) so that the wrapper pickles
    for spawned DataLoader workers.

    Examples:
        >>> from torchvision.transforms import v2
        >>> rule = MAGNITUDE_RULES[v2.RandomRotation]
        >>> t = v2.RandomRotation(30.0)
        >>> rule.apply(t, rule.capture(t), 0.5); t.degrees
        [-15.0, 15.0]
    """

    def __init__(self, capture: Capture, apply: Apply) -> None:
        self.capture = capture
        self.apply = apply

    def __repr__(self) -> str:
        return f"MagnitudeRule({self.apply.__name__})"


def _scaled(values: Any, m: float, center: float = 0.0) -> list[float] | None:
    """`center + m (v - center)` for each value; `None` stays `None`."""
    if values is None:
        return None
    return [center + m * (float(v) - center) for v in values]


class _AttrCapture:
    """Capture the listed sequence-valued attributes (picklable, unlike a closure)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def __call__(self, t: Any) -> dict[str, Any]:
        return {n: (None if getattr(t, n) is None else list(getattr(t, n))) for n in self.names}


def _capture_p(t: Any) -> dict[str, Any]:
    return {"p": float(t.p)}


def _apply_p(t: Any, base: dict[str, Any], m: float) -> None:
    t.p = m * base["p"]


def _capture_rand_augment(t: Any) -> dict[str, Any]:
    return {"magnitude": int(t.magnitude)}


def _apply_rand_augment(t: Any, base: dict[str, Any], m: float) -> None:
    t.magnitude = round(m * base["magnitude"])


def _capture_nothing(t: Any) -> dict[str, Any]:
    return {}


class _ScaledMagnitudes:
    """TrivialAugment's per-op magnitudes with the sampled bin range shrunk to its first fraction `m`."""

    def __init__(self, owner: Any, op: str, m: float) -> None:
        self.owner, self.op, self.m = owner, op, m

    def __call__(self, num_bins: int, height: int, width: int) -> Tensor | None:
        full = _torchvision.augmentation_space(self.owner)[self.op][0](num_bins, height, width)
        if full is None:
            return None
        pos = torch.linspace(0.0, self.m * (num_bins - 1), num_bins)
        lo = pos.floor().long()
        hi = pos.ceil().long()
        w = pos - lo
        full = full.float()
        return full[lo] * (1 - w) + full[hi] * w


def _apply_trivial_augment(t: Any, base: dict[str, Any], m: float) -> None:
    owner = type(t)
    if m >= 1.0:
        _torchvision.set_augmentation_space(t, None)
        return
    _torchvision.set_augmentation_space(
        t,
        {
            op: (_ScaledMagnitudes(owner, op, m), signed)
            for op, (_, signed) in _torchvision.augmentation_space(owner).items()
        },
    )


_affine_capture = _AttrCapture("degrees", "translate", "scale", "shear")


def _apply_affine(t: Any, base: dict[str, Any], m: float) -> None:
    t.degrees = _scaled(base["degrees"], m)
    t.translate = _scaled(base["translate"], m)
    t.scale = _scaled(base["scale"], m, center=1.0)
    t.shear = _scaled(base["shear"], m)


_degrees_capture = _AttrCapture("degrees")


def _apply_degrees(t: Any, base: dict[str, Any], m: float) -> None:
    t.degrees = _scaled(base["degrees"], m)


_jitter_capture = _AttrCapture("brightness", "contrast", "saturation", "hue")


def _apply_jitter(t: Any, base: dict[str, Any], m: float) -> None:
    for name in ("brightness", "contrast", "saturation"):
        value = _scaled(base[name], m, center=1.0)
        setattr(t, name, None if value is None else tuple(value))
    hue = _scaled(base["hue"], m)
    t.hue = None if hue is None else tuple(hue)


_resized_crop_capture = _AttrCapture("scale", "ratio")


def _apply_resized_crop(t: Any, base: dict[str, Any], m: float) -> None:
    t.scale = _scaled(base["scale"], m, center=1.0)
    # log-space interpolation towards a square crop
    _torchvision.set_crop_ratio(t, [float(r) ** m for r in base["ratio"]])


def _capture_distortion(t: Any) -> dict[str, Any]:
    return {"distortion_scale": float(t.distortion_scale)}


def _apply_distortion(t: Any, base: dict[str, Any], m: float) -> None:
    t.distortion_scale = m * base["distortion_scale"]


_alpha_capture = _AttrCapture("alpha")


def _apply_alpha(t: Any, base: dict[str, Any], m: float) -> None:
    t.alpha = _scaled(base["alpha"], m)


_blur_capture = _AttrCapture("sigma")


def _apply_blur(t: Any, base: dict[str, Any], m: float) -> None:
    t.sigma = [max(m * s, 1e-3) for s in base["sigma"]]  # gaussian_blur needs sigma > 0


def _capture_noise(t: Any) -> dict[str, Any]:
    return {"sigma": float(t.sigma)}


def _apply_noise(t: Any, base: dict[str, Any], m: float) -> None:
    t.sigma = m * base["sigma"]


def _apply_magnitude_property(t: Any, base: dict[str, Any], m: float) -> None:
    t.magnitude = m


_PROPERTY_RULE = MagnitudeRule(_capture_nothing, _apply_magnitude_property)

MAGNITUDE_RULES: dict[type, MagnitudeRule] = {
    v2.RandAugment: MagnitudeRule(_capture_rand_augment, _apply_rand_augment),
    v2.TrivialAugmentWide: MagnitudeRule(_capture_nothing, _apply_trivial_augment),
    v2.RandomAffine: MagnitudeRule(_affine_capture, _apply_affine),
    v2.RandomRotation: MagnitudeRule(_degrees_capture, _apply_degrees),
    v2.ColorJitter: MagnitudeRule(_jitter_capture, _apply_jitter),
    v2.RandomResizedCrop: MagnitudeRule(_resized_crop_capture, _apply_resized_crop),
    v2.RandomPerspective: MagnitudeRule(_capture_distortion, _apply_distortion),
    v2.ElasticTransform: MagnitudeRule(_alpha_capture, _apply_alpha),
    v2.GaussianBlur: MagnitudeRule(_blur_capture, _apply_blur),
    v2.GaussianNoise: MagnitudeRule(_capture_noise, _apply_noise),
    # probability-type transforms (flips, erasing, grayscale, invert, ...): the magnitude scales `p`
    v2.RandomErasing: MagnitudeRule(_capture_p, _apply_p),
}
"""Magnitude rules by transform type (looked up along the class hierarchy).

At magnitude $m$: RandAugment `magnitude = round(m · M)`; TrivialAugmentWide samples its magnitude bin from
the first fraction $m$ of the range; RandomAffine scales `degrees`, `translate` and `shear` by $m$ and pulls
`scale` towards 1; RandomRotation scales `degrees`; ColorJitter pulls brightness / contrast / saturation
towards 1 and scales hue; RandomResizedCrop pulls `scale` towards 1 and `ratio` towards 1 (in log space);
RandomPerspective scales `distortion_scale`; ElasticTransform scales `alpha`; GaussianBlur scales `sigma`;
GaussianNoise scales `sigma`; RandomErasing and every other `p`-driven transform (flips, RandomGrayscale,
RandomInvert, ...) scale their `p`. A transform class that defines a `magnitude` property (in $[0, 1]$)
receives the magnitude as it is.
"""

_random_apply = (
    _torchvision.random_apply_base()
)  # base of the p-driven transforms (flips, invert, ...)
if _random_apply is not None:
    MAGNITUDE_RULES.setdefault(_random_apply, MagnitudeRule(_capture_p, _apply_p))


def register_magnitude_rule(transform_type: type, capture: Capture, apply: Apply) -> None:
    """Teach [`ScheduledTransform`][reglight.transforms.ScheduledTransform] how a magnitude sets a type's parameters.

    Args:
        transform_type: the transform class (subclasses use the rule too, unless they have their own).
        capture: `capture(transform) -> dict`, the configured parameters (strength at magnitude 1).
        apply: `apply(transform, base, magnitude)`, sets the parameters for a magnitude in $[0, 1]$.

    Raises:
        TypeError: if `transform_type` is not a class or the functions are not callable.

    Examples:
        >>> from reglight.transforms import ScheduledTransform
        >>> from torchvision.transforms import v2
        >>> def capture(t):
        ...     return {"quality": list(t.quality)}
        >>> def apply(t, base, m):  # JPEG quality 100 (no loss) at m = 0, as configured at m = 1
        ...     t.quality = [round(100 - m * (100 - q)) for q in base["quality"]]
        >>> register_magnitude_rule(v2.JPEG, capture, apply)
        >>> aug = ScheduledTransform(v2.JPEG(quality=(20, 50)), magnitude=0.5)
        >>> tuple(aug.transform.quality)
        (60, 75)
    """
    if not isinstance(transform_type, type):
        raise TypeError(f"`transform_type` must be a class, got {transform_type!r}")
    if not callable(capture):
        raise TypeError(f"`capture` must be callable, got {capture!r}")
    if not callable(apply):
        raise TypeError(f"`apply` must be callable, got {apply!r}")
    MAGNITUDE_RULES[transform_type] = MagnitudeRule(capture, apply)


def rule_for(t: Any) -> MagnitudeRule | None:
    """The magnitude rule of a transform: its type's (along the class hierarchy), or the `magnitude` property's.

    Args:
        t: the transform.

    Returns:
        The rule, or `None` when a magnitude cannot set this transform (containers, conversions, ...).

    Examples:
        >>> from torchvision.transforms import v2
        >>> rule_for(v2.RandomHorizontalFlip()) is not None, rule_for(v2.ToImage()) is None
        (True, True)
    """
    for cls in type(t).__mro__:
        if cls in MAGNITUDE_RULES:
            return MAGNITUDE_RULES[cls]
    if isinstance(getattr(type(t), "magnitude", None), property):
        return _PROPERTY_RULE
    return None
