r"""Augmentation strength schedules that reach DataLoader workers, and a device-side batch path.

A change made to a transform in the main process never reaches DataLoader worker processes by itself:
persistent workers keep the copy they started with, and spawned workers receive a pickled copy. Here the
strength lives in a small shared-memory tensor owned by each :class:`ScheduledTransform`; the worker copies
map the same memory, so a value written by :class:`AugmentationScheduler` in the main process is what every
worker reads at its next sample, whatever the start method (fork, spawn, forkserver) and whether or not
the workers are persistent.

**Magnitude** :math:`m \in [0, 1]` scales a transform's configured strength: at :math:`m = 1` the transform
is exactly as configured, at :math:`m = 0` it does nothing (or as little as its parameters allow), and in
between its parameters are interpolated (see :data:`MAGNITUDE_RULES`). **Probability** :math:`p \in [0, 1]`
is the chance that the wrapped augmentation is applied to a sample at all.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor, nn
from torchvision.transforms import v2

from reglight._validation import check_choice, check_probability
from reglight.schedules import Schedule, as_schedule

__all__ = [
    "MAGNITUDE_RULES",
    "AugmentationScheduler",
    "MagnitudeRule",
    "ScheduledTransform",
    "register_magnitude_rule",
]

Capture = Callable[[Any], dict[str, Any]]
Apply = Callable[[Any, dict[str, Any], float], None]
ScheduleLike = Schedule | float | Callable[[float], float]


class MagnitudeRule:
    """How a magnitude in ``[0, 1]`` sets the parameters of one transform type.

    Args:
        capture: ``capture(transform) -> base``: the configured parameters (the strength at magnitude 1),
            read once when the transform is wrapped.
        apply: ``apply(transform, base, magnitude)``: set the parameters for ``magnitude``.

    Both must be module-level functions so that the wrapper pickles (spawned DataLoader workers).
    """

    def __init__(self, capture: Capture, apply: Apply) -> None:
        self.capture = capture
        self.apply = apply

    def __repr__(self) -> str:
        return f"MagnitudeRule({self.apply.__name__})"


def _scaled(values: Any, m: float, center: float = 0.0) -> list[float] | None:
    """``center + m (v - center)`` for each value; ``None`` stays ``None``."""
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
    """TrivialAugment's per-op magnitudes with the sampled bin range shrunk to its first fraction ``m``."""

    def __init__(self, owner: Any, op: str, m: float) -> None:
        self.owner, self.op, self.m = owner, op, m

    def __call__(self, num_bins: int, height: int, width: int) -> Tensor | None:
        full = self.owner._AUGMENTATION_SPACE[self.op][0](num_bins, height, width)
        if full is None:
            return None
        pos = torch.linspace(0.0, self.m * (num_bins - 1), num_bins)
        lo = pos.floor().long()
        hi = pos.ceil().long()
        w = pos - lo
        full = full.float()
        return full[lo] * (1 - w) + full[hi] * w


def _apply_trivial_augment(t: Any, base: dict[str, Any], m: float) -> None:
    owner: Any = type(t)
    if m >= 1.0:
        t.__dict__.pop("_AUGMENTATION_SPACE", None)
        return
    t.__dict__["_AUGMENTATION_SPACE"] = {
        op: (_ScaledMagnitudes(owner, op, m), signed)
        for op, (_, signed) in owner._AUGMENTATION_SPACE.items()
    }


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
    t.ratio = [
        float(r) ** m for r in base["ratio"]
    ]  # log-space interpolation towards a square crop
    t._log_ratio = torch.log(torch.tensor(t.ratio))


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

At magnitude :math:`m`: RandAugment ``magnitude = round(m · M)``; TrivialAugmentWide samples its magnitude
bin from the first fraction :math:`m` of the range; RandomAffine scales ``degrees``, ``translate`` and
``shear`` by :math:`m` and pulls ``scale`` towards 1; RandomRotation scales ``degrees``; ColorJitter pulls
brightness / contrast / saturation towards 1 and scales hue; RandomResizedCrop pulls ``scale`` towards 1 and
``ratio`` towards 1 (in log space); RandomPerspective scales ``distortion_scale``; ElasticTransform scales
``alpha``; GaussianBlur scales ``sigma``; GaussianNoise scales ``sigma``; RandomErasing and every other
``p``-driven transform (flips, RandomGrayscale, RandomInvert, ...) scale ``p``. A transform class that
defines a ``magnitude`` property (in ``[0, 1]``) receives the magnitude as it is.
"""

try:  # torchvision's base of the p-driven transforms (flips, grayscale, invert, posterize, ...)
    from torchvision.transforms.v2._transform import _RandomApplyTransform

    MAGNITUDE_RULES.setdefault(_RandomApplyTransform, MagnitudeRule(_capture_p, _apply_p))
except ImportError:  # pragma: no cover - torchvision moved it
    pass


def register_magnitude_rule(transform_type: type, capture: Capture, apply: Apply) -> None:
    """Teach :class:`ScheduledTransform` how a magnitude in ``[0, 1]`` sets ``transform_type``'s parameters.

    Args:
        transform_type: the transform class (subclasses use the rule too, unless they have their own).
        capture: ``capture(transform) -> dict``, the configured parameters (strength at magnitude 1).
        apply: ``apply(transform, base, magnitude)``, sets the parameters for a magnitude.

    Raises:
        TypeError: if ``transform_type`` is not a class or the functions are not callable.

    Examples:
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
    if not callable(capture) or not callable(apply):
        raise TypeError("`capture` and `apply` must be callables")
    MAGNITUDE_RULES[transform_type] = MagnitudeRule(capture, apply)


def _rule_for(t: Any) -> MagnitudeRule | None:
    for cls in type(t).__mro__:
        if cls in MAGNITUDE_RULES:
            return MAGNITUDE_RULES[cls]
    if isinstance(getattr(type(t), "magnitude", None), property):
        return _PROPERTY_RULE
    return None


def _children(t: Any) -> list[Any] | None:
    """The inner transforms of a container (Compose, RandomApply, RandomChoice, RandomOrder, ...)."""
    inner = getattr(t, "transforms", None)
    if isinstance(inner, (list, tuple, nn.ModuleList)):
        return list(inner)
    if isinstance(t, nn.Sequential):
        return list(t)
    return None


def _bindings(t: Any, out: list[tuple[Any, MagnitudeRule, dict[str, Any]]]) -> None:
    rule = _rule_for(t)
    if rule is not None:
        out.append((t, rule, rule.capture(t)))
        return
    children = _children(t)
    for child in children or ():
        _bindings(child, out)


_LIVE: weakref.WeakSet[ScheduledTransform] = weakref.WeakSet()
_GROUP_VALUES: dict[str, dict[str, float]] = {}


class ScheduledTransform(nn.Module):
    r"""Wrap an augmentation so that its strength can be scheduled, in DataLoader workers too.

    The wrapper holds its current magnitude and probability in a 2-element shared-memory tensor. Worker
    processes (forked, spawned, persistent or not) map the same memory, so a value set in the main process
    (by :class:`AugmentationScheduler`, or by assigning :attr:`magnitude` / :attr:`p`) reaches every worker
    at its next sample. Before each call the wrapper reads the two numbers; when the magnitude changed it
    re-sets the wrapped transforms' parameters through :data:`MAGNITUDE_RULES` (recursing into ``Compose``,
    ``RandomApply``, ``RandomChoice`` and ``RandomOrder``).

    The link is made by the multiprocessing pickler that starts the workers (and Lightning's spawned
    ranks); a copy made with ``pickle.dumps`` or ``copy.deepcopy`` gets its own, independent values.

    Wrap only the random part of a pipeline: with probability :math:`1 - p` the input is returned unchanged,
    so conversions (``ToImage``, ``ToDtype``, ``Normalize``) belong outside the wrapper. In ``eval()`` mode
    the wrapper is the identity, so one used in a LightningModule switches off during validation.

    **Device-side batches.** With ``batched=True`` the wrapper takes a batch tensor ``(N, ...)``: each sample
    is augmented with probability :math:`p` (drawn per sample on the CPU, no device sync), with its own
    random parameters (``per_sample=True``, a loop over the selected samples) or one draw for the whole
    batch (``per_sample=False``, one call). Use it in ``on_after_batch_transfer`` to augment on the GPU.

    Args:
        transform: the augmentation (a ``transforms.v2`` transform or pipeline, or any callable).
        magnitude: initial magnitude in ``[0, 1]`` (1 = as configured).
        p: initial probability in ``[0, 1]`` of applying the augmentation to a sample.
        batched: treat the input as a batch ``(N, ...)`` (device-side path).
        per_sample: with ``batched``, draw random parameters per sample instead of once per batch.
        group: name that :class:`AugmentationScheduler` uses to find the wrappers it drives.

    Raises:
        ValueError: if ``magnitude`` or ``p`` is outside ``[0, 1]``.
        TypeError: if ``transform`` is not callable.

    Examples:
        >>> import torch
        >>> from torchvision.transforms import v2
        >>> aug = ScheduledTransform(v2.RandomAffine(degrees=30, translate=(0.1, 0.1)), magnitude=0.5)
        >>> aug.transform.degrees, aug.transform.translate
        ([-15.0, 15.0], [0.05, 0.05])
        >>> aug.magnitude = 0.0
        >>> img = torch.rand(1, 8, 8)
        >>> torch.equal(aug(img), img)
        True
    """

    def __init__(
        self,
        transform: Callable[..., Any],
        magnitude: float = 1.0,
        p: float = 1.0,
        batched: bool = False,
        per_sample: bool = True,
        group: str = "default",
    ) -> None:
        super().__init__()
        if not callable(transform):
            raise TypeError(f"`transform` must be callable, got {transform!r}")
        if not isinstance(group, str) or not group:
            raise ValueError(f"`group` must be a non-empty string, got {group!r}")
        check_probability("magnitude", magnitude, inclusive_one=True)
        check_probability("p", p, inclusive_one=True)
        self.transform = transform
        self.batched = bool(batched)
        self.per_sample = bool(per_sample)
        self.group = group
        self.bindings: list[tuple[Any, MagnitudeRule, dict[str, Any]]] = []
        _bindings(transform, self.bindings)
        self._shared = torch.tensor([magnitude, p], dtype=torch.float64).share_memory_()
        self._applied = math.nan
        scheduled = _GROUP_VALUES.get(
            group, {}
        )  # a scheduler that is already running sets the start
        for key, value in scheduled.items():
            self._shared[0 if key == "magnitude" else 1] = value
        self._sync()
        _LIVE.add(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        _LIVE.add(
            self
        )  # unpickled copies (spawned ranks or workers) are found by their own scheduler

    @property
    def supports_magnitude(self) -> bool:
        """Whether some wrapped transform responds to the magnitude."""
        return bool(self.bindings)

    @property
    def magnitude(self) -> float:
        """Current magnitude in ``[0, 1]`` (shared with the worker copies)."""
        return float(self._shared[0])

    @magnitude.setter
    def magnitude(self, value: float) -> None:
        self._shared[0] = check_probability("magnitude", value, inclusive_one=True)

    @property
    def p(self) -> float:
        """Current probability of applying the augmentation (shared with the worker copies)."""
        return float(self._shared[1])

    @p.setter
    def p(self, value: float) -> None:
        self._shared[1] = check_probability("p", value, inclusive_one=True)

    def _sync(self) -> tuple[float, float]:
        m, p = self._shared.tolist()
        if m != self._applied:
            for t, rule, base in self.bindings:
                rule.apply(t, base, m)
            self._applied = m
        return m, p

    def forward(self, *inputs: Any) -> Any:
        """Apply the augmentation at the current magnitude, with the current probability.

        Args:
            *inputs: what the wrapped transform takes (with ``batched``: one batch tensor).

        Returns:
            The augmented input(s), or the input(s) unchanged (eval mode, or not drawn).
        """
        sample = inputs if len(inputs) > 1 else inputs[0]
        if not self.training:
            return sample
        _, p = self._sync()
        if self.batched:
            return self._batch(inputs[0], p)
        if p < 1.0 and float(torch.rand(())) >= p:
            return sample
        return self.transform(*inputs)

    def _batch(self, x: Tensor, p: float) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim < 1:
            raise TypeError(
                f"a batched ScheduledTransform takes one batch tensor (N, ...), got {type(x)}"
            )
        n = x.shape[0]
        chosen = torch.arange(n) if p >= 1.0 else (torch.rand(n) < p).nonzero().flatten()
        if chosen.numel() == 0:
            return x
        if not self.per_sample:
            if chosen.numel() == n:
                return self.transform(x)
            out = x.clone()
            idx = chosen.to(x.device)
            out[idx] = self.transform(x[idx])
            return out
        out = x.clone()
        for i in chosen.tolist():
            out[i] = self.transform(x[i])
        return out

    def extra_repr(self) -> str:
        return f"magnitude={self.magnitude:g}, p={self.p:g}, group={self.group!r}" + (
            f", batched=True, per_sample={self.per_sample}" if self.batched else ""
        )


def _instances(group: str) -> list[ScheduledTransform]:
    return [t for t in list(_LIVE) if t.group == group]


class AugmentationScheduler(Callback):
    r"""Schedule the magnitude and/or the application probability of :class:`ScheduledTransform`\ s.

    Wrap the augmentation inside your ``Dataset`` (or LightningModule, for the device-side batch path) in a
    :class:`ScheduledTransform`; the scheduler drives every live wrapper of its ``group`` in the process
    (or the ``transforms`` it is given), so the dataset and the callback can be built separately, from a
    LightningCLI config for instance. Values are written to the wrappers' shared memory:

    - ``interval="epoch"``: before the epoch's DataLoader iterator starts (the value of epoch :math:`e+1` is
      written at the end of epoch :math:`e`, and the first epoch's at set-up / checkpoint loading), so every
      worker, persistent or not, augments every sample of epoch :math:`e` with the value of epoch :math:`e`.
    - ``interval="step"``: at each optimizer step. The device-side batch path sees the value of the very step;
      workers prepare batches ahead of time (``num_workers · prefetch_factor`` of them), so in workers a
      per-step value takes effect with that lag.

    The value is a pure function of the epoch / step, identical on every DDP rank; the checkpoint stores the
    value of the step at which training will resume, which is written to the wrappers as soon as the
    checkpoint is loaded, before the first batches are prefetched.

    Args:
        magnitude: magnitude schedule, values in ``[0, 1]`` (``None``: leave the magnitude alone).
        p: application-probability schedule, values in ``[0, 1]`` (``None``: leave it alone).
        interval: ``"epoch"`` or ``"step"``.
        group: the :class:`ScheduledTransform` group to drive.
        transforms: explicit wrappers to drive instead of the group's live ones.
        log: log the current values.
        prefix: prefix of the logged names (``aug/magnitude``, ``aug/p``).

    Raises:
        ValueError: when both schedules are ``None``, a schedule leaves ``[0, 1]``, or ``interval`` is unknown.
        TypeError: for a schedule that is not a number, a ``Schedule`` or a callable.

    Examples:
        >>> import torch
        >>> from torchvision.transforms import v2
        >>> from reglight.schedules import Linear
        >>> aug = ScheduledTransform(v2.RandAugment(magnitude=20), group="doc")
        >>> sched = AugmentationScheduler(magnitude=Linear(0.0, 1.0, duration=10), group="doc")
        >>> sched.apply(5)  # what the callback does at epoch 5
        {'magnitude': 0.5}
        >>> aug.transform.magnitude  # (in the workers: at their next sample)
        20
        >>> aug(torch.zeros(3, 8, 8, dtype=torch.uint8)).shape, aug.transform.magnitude
        (torch.Size([3, 8, 8]), 10)
    """

    def __init__(
        self,
        magnitude: ScheduleLike | None = None,
        p: ScheduleLike | None = None,
        interval: str = "epoch",
        group: str = "default",
        transforms: Sequence[ScheduledTransform] | None = None,
        log: bool = True,
        prefix: str = "aug/",
    ) -> None:
        super().__init__()
        if magnitude is None and p is None:
            raise ValueError(
                "AugmentationScheduler needs a `magnitude` and/or a `p` schedule, got neither"
            )
        self.schedules: dict[str, Schedule] = {}
        for name, spec in (("magnitude", magnitude), ("p", p)):
            if spec is None:
                continue
            sched = as_schedule(spec, name)
            bounds = sched.bounds()
            if bounds is not None and (bounds[0] < 0.0 or bounds[1] > 1.0):
                raise ValueError(
                    f"`{name}` schedule must stay in [0, 1], but {sched!r} takes values in "
                    f"[{bounds[0]}, {bounds[1]}]"
                )
            self.schedules[name] = sched
        self.interval = check_choice("interval", interval, ("epoch", "step"))
        if not isinstance(group, str) or not group:
            raise ValueError(f"`group` must be a non-empty string, got {group!r}")
        self.group = group
        if transforms is not None:
            for t in transforms:
                if not isinstance(t, ScheduledTransform):
                    raise TypeError(f"`transforms` must be ScheduledTransform instances, got {t!r}")
        self.transforms = None if transforms is None else list(transforms)
        self.log = log
        self.prefix = prefix
        self.values: dict[str, float] = {}
        self._trainer: pl.Trainer | None = None

    @property
    def state_key(self) -> str:
        """Checkpoint key, unique per group and scheduled quantities (two schedulers may share a group)."""
        return self._generate_state_key(group=self.group, schedules=sorted(self.schedules))

    # ---------------------------------------------------------------- writing values
    def targets(self) -> list[ScheduledTransform]:
        """The wrappers this scheduler drives now.

        Returns:
            The explicit ``transforms``, or the live wrappers of ``group`` in this process.
        """
        return list(self.transforms) if self.transforms is not None else _instances(self.group)

    def values_at(self, t: float) -> dict[str, float]:
        """The scheduled values at progress ``t``, checked to lie in ``[0, 1]``.

        Args:
            t: epoch or optimizer step.

        Returns:
            ``{"magnitude": ..., "p": ...}`` for the scheduled quantities.

        Raises:
            ValueError: if a schedule leaves ``[0, 1]``.
        """
        out = {}
        for name, sched in self.schedules.items():
            value = sched(t)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` schedule gave {value} at t={t}, outside [0, 1]")
            out[name] = value
        return out

    def apply(self, t: float) -> dict[str, float]:
        """Write the values at progress ``t`` to every target wrapper (and to wrappers created later).

        Args:
            t: epoch or optimizer step.

        Returns:
            The values written.
        """
        return self._write(self.values_at(t))

    def _write(self, values: dict[str, float]) -> dict[str, float]:
        for t in self.targets():
            if "magnitude" in values:
                t._shared[0] = values["magnitude"]
            if "p" in values:
                t._shared[1] = values["p"]
        if (
            self.transforms is None
        ):  # two schedulers may share a group: one for magnitude, one for p
            _GROUP_VALUES.setdefault(self.group, {}).update(values)
        self.values = dict(values)
        return dict(values)

    def _progress(self, trainer: pl.Trainer) -> int:
        return trainer.current_epoch if self.interval == "epoch" else trainer.global_step

    def _resume_progress(self, trainer: pl.Trainer) -> int:
        """The epoch / step at which a run restored from a checkpoint saved now continues."""
        if self.interval == "step":
            return trainer.global_step
        # Lightning resumes at the number of processed epochs (FitLoop.on_run_start)
        current = trainer.fit_loop.epoch_progress.current
        return int(getattr(current, "processed", trainer.current_epoch))

    def _log(self, pl_module: pl.LightningModule) -> None:
        if not self.log:
            return
        on_step = self.interval == "step"
        for name, value in self.values.items():
            pl_module.log(
                self.prefix + name, value, on_step=on_step, on_epoch=not on_step, batch_size=1
            )

    # ---------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write the values of the run's start before any DataLoader iterator exists."""
        self._trainer = trainer
        if stage == "fit":
            self.apply(self._progress(trainer))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check the targets; write the values of the (possibly restored) epoch / step."""
        targets = self.targets()
        if not targets:
            rank_zero_warn(
                f"AugmentationScheduler found no ScheduledTransform in group {self.group!r}: wrap the "
                "augmentation of your Dataset in reglight.callbacks.ScheduledTransform(...).",
                category=RuntimeWarning,
            )
        if "magnitude" in self.schedules:
            for t in targets:
                if not t.supports_magnitude:
                    raise ValueError(
                        f"{t.transform!r} has no transform whose strength a magnitude can set (supported: "
                        f"{', '.join(sorted(c.__name__ for c in MAGNITUDE_RULES))}, or a `magnitude` "
                        "property); schedule `p` instead or use register_magnitude_rule()"
                    )
        self.apply(self._progress(trainer))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Epoch interval: write and log the values of this epoch."""
        if self.interval == "epoch":
            self.apply(trainer.current_epoch)
            self._log(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Epoch interval: write the next epoch's values before its iterator (and workers) start."""
        if self.interval == "epoch":
            values = self.values_at(trainer.current_epoch + 1)
            logged = dict(self.values)
            self._write(values)
            self.values = logged  # what this epoch used, for the loggers and callback_metrics

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Step interval: write and log the values of this optimizer step."""
        if self.interval == "step":
            self.apply(trainer.global_step)
            self._log(pl_module)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Step interval: write the next step's values before the next batch reaches the device."""
        if self.interval == "step":
            self.apply(trainer.global_step)  # already counts the optimizer step just taken

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Forget the group's values so wrappers created later start from their own."""
        if stage == "fit" and self.transforms is None:
            _GROUP_VALUES.pop(self.group, None)

    def state_dict(self) -> dict[str, Any]:
        """The values at the epoch / step where a resumed run continues, and that progress."""
        if self._trainer is None:
            return {"values": dict(self.values), "progress": None}
        progress = self._resume_progress(self._trainer)
        return {"values": self.values_at(progress), "progress": progress}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Write the saved values at once: the resumed run's first batches are prefetched before any hook.

        Args:
            state_dict: the saved state.
        """
        values = {k: v for k, v in state_dict.get("values", {}).items() if k in self.schedules}
        if values:
            self._write(values)
