r"""ScheduledTransform: an augmentation whose strength can be changed during training, in DataLoader workers too.

A change made to a transform in the main process never reaches DataLoader worker processes by itself:
persistent workers keep the copy they started with, and spawned workers receive a pickled copy. Here the
strength lives in a small shared-memory tensor owned by each
[`ScheduledTransform`][reglight.transforms.ScheduledTransform]; the worker copies map the same memory, so a
value written in the main process (by [`AugmentationScheduler`][reglight.callbacks.AugmentationScheduler],
say) is what every worker reads at its next sample, whatever the start method (fork, spawn, forkserver) and
whether or not the workers are persistent.

**Magnitude** $m \in [0, 1]$ scales a transform's configured strength: at $m = 1$ the transform is exactly as
configured, at $m = 0$ it does nothing (or as little as its parameters allow), and in between its parameters
are interpolated (see [`MAGNITUDE_RULES`][reglight.transforms.MAGNITUDE_RULES]). **Apply probability**
$q \in [0, 1]$ (`apply_prob`) is the chance that the wrapped augmentation is applied to a sample at all.

This module knows nothing of Lightning: it is pure torch and torchvision.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from reglight._validation import check_probability
from reglight.transforms.magnitude import MagnitudeRule, rule_for

__all__ = [
    "SCHEDULED_QUANTITIES",
    "ScheduledTransform",
    "clear_group_values",
    "scheduled_transforms",
    "set_group_values",
]

SCHEDULED_QUANTITIES: tuple[str, ...] = ("magnitude", "apply_prob")
"""The two numbers a [`ScheduledTransform`][reglight.transforms.ScheduledTransform] shares with its workers."""


def _children(t: Any) -> list[Any] | None:
    """The inner transforms of a container (Compose, RandomApply, RandomChoice, RandomOrder, ...)."""
    inner = getattr(t, "transforms", None)
    if isinstance(inner, (list, tuple, nn.ModuleList)):
        return list(inner)
    if isinstance(t, nn.Sequential):
        return list(t)
    return None


def _bindings(t: Any, out: list[tuple[Any, MagnitudeRule, dict[str, Any]]]) -> None:
    rule = rule_for(t)
    if rule is not None:
        out.append((t, rule, rule.capture(t)))
        return
    for child in _children(t) or ():
        _bindings(child, out)


_LIVE: weakref.WeakSet[ScheduledTransform] = weakref.WeakSet()
_GROUP_VALUES: dict[str, dict[str, float]] = {}


def _check_values(values: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if key not in SCHEDULED_QUANTITIES:
            raise ValueError(
                f"scheduled quantities are {', '.join(map(repr, SCHEDULED_QUANTITIES))}, got {key!r}"
            )
        out[key] = check_probability(key, value, inclusive_one=True)
    return out


def scheduled_transforms(group: str) -> list[ScheduledTransform]:
    """The live [`ScheduledTransform`][reglight.transforms.ScheduledTransform]s of `group` in this process.

    Args:
        group: the group name.

    Returns:
        The wrappers (those created here and the unpickled copies of spawned processes), in no fixed order.

    Examples:
        >>> from torchvision.transforms import v2
        >>> aug = ScheduledTransform(v2.RandomHorizontalFlip(), group="doc-live")
        >>> scheduled_transforms("doc-live") == [aug]
        True
    """
    return [t for t in list(_LIVE) if t.group == group]


def set_group_values(group: str, values: Mapping[str, float]) -> None:
    """Write `values` to every live wrapper of `group`, and make them the start of wrappers created later.

    Args:
        group: the group name.
        values: `{"magnitude": ..., "apply_prob": ...}` (either or both), each in $[0, 1]$.

    Raises:
        ValueError: for an unknown key or a value outside $[0, 1]$.

    Examples:
        >>> from torchvision.transforms import v2
        >>> set_group_values("doc-group", {"apply_prob": 0.25})
        >>> ScheduledTransform(v2.RandomHorizontalFlip(), group="doc-group").apply_prob
        0.25
        >>> clear_group_values("doc-group")
    """
    checked = _check_values(values)
    for t in scheduled_transforms(group):
        t._write(checked)
    _GROUP_VALUES.setdefault(group, {}).update(checked)


def clear_group_values(group: str) -> None:
    """Forget the values [`set_group_values`][reglight.transforms.set_group_values] stored for `group`.

    Wrappers created afterwards start from their own arguments; live wrappers keep their current values.

    Args:
        group: the group name.
    """
    _GROUP_VALUES.pop(group, None)


class ScheduledTransform(nn.Module):
    r"""Wrap an augmentation so that its strength can be scheduled, in DataLoader workers too.

    The wrapper holds its current magnitude $m$ and apply probability $q$ in a 2-element shared-memory
    tensor. Worker processes (forked, spawned, persistent or not) map the same memory, so a value set in the
    main process (by [`AugmentationScheduler`][reglight.callbacks.AugmentationScheduler], by
    [`set_group_values`][reglight.transforms.set_group_values], or by assigning `magnitude` / `apply_prob`)
    reaches every worker at its next sample. Before each call the wrapper reads the two numbers; when the
    magnitude changed it re-sets the wrapped transforms' parameters through
    [`MAGNITUDE_RULES`][reglight.transforms.MAGNITUDE_RULES] (recursing into `Compose`, `RandomApply`,
    `RandomChoice` and `RandomOrder`).

    The link is made by the multiprocessing pickler that starts the workers (and Lightning's spawned ranks);
    a copy made with `pickle.dumps` or `copy.deepcopy` gets its own, independent values.

    Wrap only the random part of a pipeline: with probability $1 - q$ the input is returned unchanged, so
    conversions (`ToImage`, `ToDtype`, `Normalize`) belong outside the wrapper. In `eval()` mode the wrapper
    is the identity, so one used in a LightningModule switches off during validation.

    **Device-side batches.** With `batched=True` the wrapper takes a batch tensor `(N, ...)`: each sample is
    augmented with probability $q$ (drawn per sample on the CPU, no device sync), with its own random
    parameters (`per_sample=True`, a loop over the selected samples) or one draw for the whole batch
    (`per_sample=False`, one call). Use it in `on_after_batch_transfer` to augment on the GPU.

    Args:
        transform: the augmentation (a `transforms.v2` transform or pipeline, or any callable).
        magnitude: initial magnitude $m \in [0, 1]$ (1 = as configured).
        apply_prob: initial probability $q \in [0, 1]$ of applying the augmentation to a sample.
        batched: treat the input as a batch `(N, ...)` (device-side path).
        per_sample: with `batched`, draw random parameters per sample instead of once per batch.
        group: name under which schedulers find the wrappers they drive.

    Raises:
        ValueError: if `magnitude` or `apply_prob` is outside $[0, 1]$, or `group` is empty.
        TypeError: if `transform` is not callable.

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
        apply_prob: float = 1.0,
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
        check_probability("apply_prob", apply_prob, inclusive_one=True)
        self.transform = transform
        self.batched = bool(batched)
        self.per_sample = bool(per_sample)
        self.group = group
        self.bindings: list[tuple[Any, MagnitudeRule, dict[str, Any]]] = []
        _bindings(transform, self.bindings)
        self._shared = torch.tensor([magnitude, apply_prob], dtype=torch.float64).share_memory_()
        self._applied = math.nan
        # a scheduler that is already running sets the start
        self._write(_GROUP_VALUES.get(group, {}))
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
        """Current magnitude in $[0, 1]$ (shared with the worker copies)."""
        return float(self._shared[0])

    @magnitude.setter
    def magnitude(self, value: float) -> None:
        self._shared[0] = check_probability("magnitude", value, inclusive_one=True)

    @property
    def apply_prob(self) -> float:
        """Current probability of applying the augmentation (shared with the worker copies)."""
        return float(self._shared[1])

    @apply_prob.setter
    def apply_prob(self, value: float) -> None:
        self._shared[1] = check_probability("apply_prob", value, inclusive_one=True)

    def _write(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self._shared[SCHEDULED_QUANTITIES.index(key)] = value

    def _sync(self) -> tuple[float, float]:
        m, q = self._shared.tolist()
        if m != self._applied:
            for t, rule, base in self.bindings:
                rule.apply(t, base, m)
            self._applied = m
        return m, q

    def forward(self, *inputs: Any) -> Any:
        """Apply the augmentation at the current magnitude, with the current apply probability.

        Args:
            *inputs: what the wrapped transform takes (with `batched`: one batch tensor).

        Returns:
            The augmented input(s), or the input(s) unchanged (eval mode, or not drawn).
        """
        sample = inputs if len(inputs) > 1 else inputs[0]
        if not self.training:
            return sample
        _, q = self._sync()
        if self.batched:
            return self._batch(inputs[0], q)
        if q < 1.0 and float(torch.rand(())) >= q:
            return sample
        return self.transform(*inputs)

    def _batch(self, x: Tensor, q: float) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim < 1:
            raise TypeError(
                f"a batched ScheduledTransform takes one batch tensor (N, ...), got {type(x)}"
            )
        n = x.shape[0]
        chosen = torch.arange(n) if q >= 1.0 else (torch.rand(n) < q).nonzero().flatten()
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
        return (
            f"magnitude={self.magnitude:g}, apply_prob={self.apply_prob:g}, group={self.group!r}"
            + (f", batched=True, per_sample={self.per_sample}" if self.batched else "")
        )
