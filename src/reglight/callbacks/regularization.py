"""RegularizationScheduler: schedule dropout rates, DropPath rates, penalty alpha and weight decay.

One [`Knob`][reglight.callbacks.Knob] per scheduled hyperparameter; the schedule shapes live in
[`reglight.schedules`][reglight.schedules]. Knobs that drive modules select them with the library's one
`include`/`exclude` vocabulary ([`select_named_modules`][reglight.penalties.selection.select_named_modules]).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import nn
from typing_extensions import override

from reglight._validation import check_choice, check_positive_int
from reglight.callbacks._scheduled import log_scheduled_values
from reglight.nn import DROPOUT_TYPES, DropPath, drop_path_rates
from reglight.nn.attention import ATTENTION_DROPOUT_ATTRIBUTE, attention_dropout_attribute
from reglight.penalties.selection import (
    Pattern,
    normalize_patterns,
    pattern_matches,
    select_named_modules,
)
from reglight.schedules import Linear, Schedule, as_schedule, early, late

__all__ = [
    "DropPathRates",
    "DropoutRate",
    "Knob",
    "ModuleAttribute",
    "PenaltyAlpha",
    "RegularizationScheduler",
    "WeightDecay",
]

ScheduleLike = Schedule | float | Callable[[float], float]


class Knob(ABC):
    """One scheduled regularization hyperparameter: a schedule, a name to log it under, and a target.

    Subclasses find their target in `bind` (called at `on_fit_start`, when the model, the optimizers and the
    callbacks exist) and set it in `apply`. `low`/`high` bound the allowed values; a schedule whose
    [`bounds`][reglight.schedules.Schedule.bounds] fall outside them is rejected at construction.

    Args:
        schedule: the value over training (a number is a constant).
        name: key under which the value is logged (after the scheduler's prefix).
        low: smallest allowed value.
        high: largest allowed value.
        high_inclusive: whether `high` itself is allowed.
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        name: str,
        low: float = -math.inf,
        high: float = math.inf,
        high_inclusive: bool = True,
    ) -> None:
        self.schedule = as_schedule(schedule, "schedule")
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got {name!r}")
        self.name = name
        self.low, self.high, self.high_inclusive = low, high, high_inclusive
        bounds = self.schedule.bounds()
        if bounds is not None and not (self._ok(bounds[0]) and self._ok(bounds[1])):
            raise ValueError(
                f"`schedule` of {type(self).__name__} {name!r} takes values in [{bounds[0]}, {bounds[1]}], "
                f"outside the allowed range {self._range()}: {self.schedule!r}"
            )

    def _ok(self, value: float) -> bool:
        if not math.isfinite(value) and not (value == self.high == math.inf):
            return False
        below = value <= self.high if self.high_inclusive else value < self.high
        return self.low <= value and below

    def _range(self) -> str:
        return f"[{self.low}, {self.high}{']' if self.high_inclusive else ')'}"

    def value(self, t: float) -> float:
        """The scheduled value at progress `t`, checked against the allowed range.

        Args:
            t: epoch or optimizer step.

        Returns:
            The value.

        Raises:
            ValueError: if the schedule leaves the allowed range.
        """
        v = self.schedule(t)
        if not self._ok(v):
            raise ValueError(
                f"schedule of {type(self).__name__} {self.name!r} gave {v} at t={t}, outside the allowed "
                f"range {self._range()}"
            )
        return v

    @abstractmethod
    def bind(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the target (modules, hook, optimizer); raise `ValueError` when there is none.

        Args:
            trainer: the trainer.
            pl_module: the module being trained.
        """

    @abstractmethod
    def apply(self, value: float) -> None:
        """Set the target to `value`.

        Args:
            value: the scheduled value.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.schedule!r}, name={self.name!r})"


def _has_rate(module: nn.Module) -> bool:
    return _rate_attribute(module) is not None


def _rate_attribute(module: nn.Module) -> str | None:
    """`p`, or `drop_prob` (timm's DropBlock2d / DropPath) when a module has no numeric `p`, or the
    attention-dropout rate (`dropout_p` of the SDPA protocol, `dropout` of `nn.MultiheadAttention`)."""
    for attr in ("p", "drop_prob"):
        value = getattr(module, attr, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return attr
    return attention_dropout_attribute(module)


class ModuleAttribute(Knob):
    """Schedule a float attribute of the modules selected by `include`/`exclude`.

    The generic knob behind [`DropoutRate`][reglight.callbacks.DropoutRate]; use it directly for other
    mutable hyperparameters, e.g. BatchRenorm's `r_max`:
    `ModuleAttribute(Linear(1, 3, 20), "r_max", include="BatchRenorm2d")`.

    Modules are selected among the submodules of the LightningModule that have the attribute, with the
    library's one selector vocabulary
    ([`select_named_modules`][reglight.penalties.selection.select_named_modules]): a pattern is a glob on
    qualified **module** names (`"encoder.*.drop"`; `*` also matches dots), an `nn.Module` subclass, or a
    class name / import path (`"DropBlock2d"`, `"torch.nn.Dropout"`) matched along the class hierarchy.
    Every `include` entry must match a module that has the attribute; `exclude` entries remove modules.
    At least one module must be selected.

    Args:
        schedule: the value over training.
        attribute: attribute to set on each selected module.
        include: which modules: a pattern or a sequence of patterns; `None` for every module that has
            the attribute.
        exclude: which modules to leave out: a pattern or a sequence of patterns.
        name: key under which the value is logged (default: `attribute`).
        low: smallest allowed value.
        high: largest allowed value.
        high_inclusive: whether `high` itself is allowed.

    Raises:
        ValueError: for an empty `attribute`, or a schedule outside `[low, high]`.
        TypeError: if an `include`/`exclude` entry is not a pattern.

    Examples:
        >>> from torch import nn
        >>> knob = ModuleAttribute(0.25, "p", include="head.*")
        >>> model = nn.Sequential()
        >>> model.add_module("head", nn.Sequential(nn.Dropout(0.5)))
        >>> knob.select(model)
        [('head.0', Dropout(p=0.5, inplace=False))]
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        attribute: str,
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        name: str | None = None,
        low: float = -math.inf,
        high: float = math.inf,
        high_inclusive: bool = True,
    ) -> None:
        if not isinstance(attribute, str) or not attribute:
            raise ValueError(f"`attribute` must be a non-empty string, got {attribute!r}")
        super().__init__(schedule, name or attribute, low, high, high_inclusive)
        self.attribute = attribute
        self.include = normalize_patterns("include", include)
        self.exclude = normalize_patterns("exclude", exclude)
        self.modules: list[tuple[str, nn.Module]] = []

    def _attribute_of(self, module: nn.Module) -> str | None:
        return self.attribute if hasattr(module, self.attribute) else None

    def _default_include(self) -> tuple[Pattern, ...] | None:
        """The modules selected when `include` is `None` (`None`: all that have the attribute)."""
        return None

    def _default_where(self, module: nn.Module) -> bool:
        """Modules selected when `include` is `None` besides `_default_include` (a duck-typed protocol)."""
        return False

    def select(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """The `(name, module)` pairs this knob drives in `model`.

        Args:
            model: the model to search.

        Returns:
            The selected modules, in registration order.

        Raises:
            ValueError: if an `include` entry matches no module with the attribute (the message lists the
                candidates), or nothing is selected.
        """
        try:
            selected = select_named_modules(
                model,
                self.include or None,
                self.exclude,
                default=self._default_include(),
                where=lambda m: self._attribute_of(m) is not None,
                kind=f"module with attribute `{self.attribute}`",
            )
        except ValueError as err:
            raise ValueError(f"{type(self).__name__} {self.name!r}: {err}") from None
        if not self.include:
            chosen = {id(m) for _, m in selected}
            selected = [
                (n, m)
                for n, m in model.named_modules()
                if n
                and (
                    id(m) in chosen
                    or (
                        self._default_where(m)
                        and self._attribute_of(m) is not None
                        and not any(pattern_matches(e, n, type(m)) for e in self.exclude)
                    )
                )
            ]
        if not selected:
            rules = self.include or self._default_include() or ()
            wanted = ", ".join(p if isinstance(p, str) else p.__name__ for p in rules) or "any type"
            raise ValueError(
                f"{type(self).__name__} {self.name!r} found no module ({wanted}) with attribute "
                f"`{self.attribute}` in {type(model).__name__}"
                + (f" outside exclude={list(self.exclude)!r}" if self.exclude else "")
            )
        return selected

    @override
    def bind(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Select the modules of `pl_module`.

        Args:
            trainer: the trainer.
            pl_module: the module being trained.
        """
        self.modules = self.select(pl_module)

    @override
    def apply(self, value: float) -> None:
        """Set the attribute of every selected module to `value`.

        Args:
            value: the scheduled value.
        """
        for _, module in self.modules:
            setattr(module, self._attribute_of(module) or self.attribute, value)


class DropoutRate(ModuleAttribute):
    """Schedule the rate `p` of dropout-family layers: all of them, or those `include`/`exclude` select.

    By default every module of [`DROPOUT_TYPES`][reglight.nn.DROPOUT_TYPES] (reglight's and torch's dropout
    layers), any class named `DropBlock2d` (timm's) and every attention dropout is driven, except DropPath
    layers, whose rates grow with depth ([`DropPathRates`][reglight.callbacks.DropPathRates]). The rate is
    read from `p`, or from `drop_prob` (timm's DropBlock2d / DropPath) when a module has no `p`. Attention
    dropout is reached where it lives ([reglight.nn.attention][reglight.nn.attention]): the float
    `dropout_p` of any module following the SDPA protocol (it passes `dropout_p` to
    `scaled_dot_product_attention` in training mode), the float `dropout` of `nn.MultiheadAttention` (also
    inside `nn.TransformerEncoderLayer`/`DecoderLayer`), and timm's `attn_drop`, an `nn.Dropout` whose `p`
    timm's fused attention passes to SDPA. `include=nn.MultiheadAttention` or a name glob such as
    `"*.attn"` schedules the attention dropout alone. Values must lie in $[0, 1)$.

    Args:
        schedule: the rate over training.
        include: which layers (replaces the default): module-name globs (`"classifier.*"`), classes or
            class names (`"DropBlock2d"`); see [`ModuleAttribute`][reglight.callbacks.ModuleAttribute].
        exclude: which layers to leave out.
        name: key under which the rate is logged.

    Examples:
        >>> from torch import nn
        >>> from reglight.schedules import Linear
        >>> knob = DropoutRate(Linear(0.0, 0.3, duration=10), include=nn.Dropout)
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        >>> knob.modules = knob.select(model)
        >>> knob.apply(knob.value(5)); model[1].p
        0.15
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        name: str = "dropout",
    ) -> None:
        super().__init__(
            schedule, "p", include, exclude, name, low=0.0, high=1.0, high_inclusive=False
        )

    @override
    def _attribute_of(self, module: nn.Module) -> str | None:
        return _rate_attribute(module)

    @override
    def _default_include(self) -> tuple[Pattern, ...] | None:
        # DropPath's rates grow with depth: DropPathRates drives them
        return (
            *(t for t in DROPOUT_TYPES if not issubclass(t, DropPath)),
            "DropBlock2d",
            nn.MultiheadAttention,
        )

    @override
    def _default_where(self, module: nn.Module) -> bool:
        # the SDPA protocol: a float `dropout_p` on the attention module
        return attention_dropout_attribute(module) == ATTENTION_DROPOUT_ATTRIBUTE


class DropPathRates(DropoutRate):
    r"""Schedule stochastic depth: the maximum rate $p_{\max}$, spread over the DropPath layers by depth.

    The $L$ selected layers (registration order = depth order) get
    [`drop_path_rates`][reglight.nn.drop_path_rates]`(p_max, L)`, the linear rule of Huang et al. (2016),
    "Deep Networks with Stochastic Depth": layer $l$ of $L$ drops with $p_l = p_{\max}\, l / L$.

    Args:
        schedule: $p_{\max}$ over training.
        include: which layers (default: every class named `DropPath`, reglight's and timm's).
        exclude: which layers to leave out.
        name: key under which $p_{\max}$ is logged.

    Examples:
        >>> from reglight.nn import DropPath
        >>> from torch import nn
        >>> model = nn.Sequential(*[DropPath(0.0) for _ in range(4)])
        >>> knob = DropPathRates(0.2)
        >>> knob.modules = knob.select(model)
        >>> knob.apply(0.2); tuple(round(m.p, 6) for m in model)
        (0.05, 0.1, 0.15, 0.2)
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        name: str = "drop_path",
    ) -> None:
        super().__init__(schedule, include, exclude, name)

    @override
    def _default_include(self) -> tuple[Pattern, ...] | None:
        return ("DropPath",)

    @override
    def _default_where(self, module: nn.Module) -> bool:
        return False

    @override
    def apply(self, value: float) -> None:
        r"""Set layer $l$ of $L$ to $\text{value} \cdot l / L$.

        Args:
            value: $p_{\max}$.
        """
        rates = drop_path_rates(value, len(self.modules))
        for (_, module), rate in zip(self.modules, rates):
            setattr(module, self._attribute_of(module) or "p", rate)


class PenaltyAlpha(Knob):
    r"""Schedule the `alpha` of the penalty of [`PenaltyHook`][reglight.callbacks.PenaltyHook] callbacks.

    The hooks are found among `trainer.callbacks` (any callback with a `penalty.alpha`).

    Args:
        schedule: the penalty's `alpha` over training, $\ge 0$.
        index: which hook, counted among the penalty hooks in callback order; `None` drives all of them.
        name: key under which `alpha` is logged.

    Raises:
        ValueError: if `index` is negative or the schedule takes negative values.

    Examples:
        >>> knob = PenaltyAlpha(0.01, index=0)
        >>> knob.value(3)
        0.01
    """

    def __init__(
        self, schedule: ScheduleLike, index: int | None = None, name: str = "penalty_alpha"
    ) -> None:
        super().__init__(schedule, name, low=0.0)
        if index is not None:
            check_positive_int("index", index, minimum=0)
        self.index = index
        self.hooks: list[Any] = []

    @override
    def bind(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the penalty hooks among the trainer's callbacks.

        Args:
            trainer: the trainer.
            pl_module: the module being trained.
        """
        callbacks = list(getattr(trainer, "callbacks", []))
        hooks = [cb for cb in callbacks if hasattr(getattr(cb, "penalty", None), "alpha")]
        if not hooks:
            raise ValueError(
                f"PenaltyAlpha {self.name!r}: no PenaltyHook among the trainer's callbacks "
                f"({', '.join(type(cb).__name__ for cb in callbacks)})"
            )
        if self.index is not None:
            if self.index >= len(hooks):
                raise ValueError(
                    f"PenaltyAlpha `index={self.index}` but the trainer has {len(hooks)} penalty hook(s)"
                )
            hooks = [hooks[self.index]]
        self.hooks = hooks

    @override
    def apply(self, value: float) -> None:
        """Set `hook.penalty.alpha = value` on the selected hooks.

        Args:
            value: the new `alpha`.
        """
        for hook in self.hooks:
            hook.penalty.alpha = value


class WeightDecay(Knob):
    r"""Schedule the optimizer's `weight_decay`.

    By default the value goes to every parameter group whose initial `weight_decay` is not zero, so the
    usual "no decay" groups (biases, norms) stay undecayed; `param_groups` picks groups explicitly.

    Args:
        schedule: the weight decay over training, $\ge 0$.
        optimizer: index of the optimizer in `trainer.optimizers`.
        param_groups: indices of the parameter groups to drive, or `None` (groups with non-zero decay).
        name: key under which the weight decay is logged.

    Raises:
        ValueError: for a negative index or a schedule that takes negative values.

    Examples:
        >>> from reglight.schedules import Cosine
        >>> knob = WeightDecay(Cosine(5e-4, 5e-5, duration=100))
        >>> knob.value(0)
        0.0005
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        optimizer: int = 0,
        param_groups: Sequence[int] | None = None,
        name: str = "weight_decay",
    ) -> None:
        super().__init__(schedule, name, low=0.0)
        self.optimizer = check_positive_int("optimizer", optimizer, minimum=0)
        self.param_groups = (
            None
            if param_groups is None
            else [check_positive_int("param_groups", g, minimum=0) for g in param_groups]
        )
        self.group_indices: list[int] = []
        self._trainer: pl.Trainer | None = None

    @override
    def bind(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the parameter groups.

        Args:
            trainer: the trainer.
            pl_module: the module being trained.
        """
        if self.optimizer >= len(trainer.optimizers):
            raise ValueError(
                f"WeightDecay `optimizer={self.optimizer}` but there are {len(trainer.optimizers)}"
            )
        groups = trainer.optimizers[self.optimizer].param_groups
        if self.param_groups is None:
            self.group_indices = [
                i for i, g in enumerate(groups) if g.get("weight_decay", 0.0) != 0.0
            ]
            if not self.group_indices:
                raise ValueError(
                    "WeightDecay found no parameter group with a non-zero `weight_decay`; create the optimizer "
                    "with weight_decay > 0 or pass `param_groups`"
                )
        else:
            bad = [i for i in self.param_groups if i >= len(groups)]
            if bad:
                raise ValueError(
                    f"WeightDecay `param_groups={self.param_groups}`: the optimizer has {len(groups)}"
                )
            self.group_indices = list(self.param_groups)
        self._trainer = trainer

    @override
    def apply(self, value: float) -> None:
        """Set `weight_decay` of the selected groups.

        Args:
            value: the weight decay.
        """
        if self._trainer is None:
            raise RuntimeError("WeightDecay.apply() before bind()")
        # looked up at every call: loading an optimizer's state (resume) replaces its group dicts
        groups = self._trainer.optimizers[self.optimizer].param_groups
        for i in self.group_indices:
            groups[i]["weight_decay"] = value


class RegularizationScheduler(Callback):
    """Schedule regularization hyperparameters over training, one [`Knob`][reglight.callbacks.Knob] each.

    At the start of every epoch (`interval="epoch"`) or optimizer step (`interval="step"`), each knob's
    schedule is evaluated at the current epoch / global step and written to its target: dropout-family rates
    ([`DropoutRate`][reglight.callbacks.DropoutRate]), DropPath rates by depth
    ([`DropPathRates`][reglight.callbacks.DropPathRates]), a `PenaltyHook`'s `alpha`
    ([`PenaltyAlpha`][reglight.callbacks.PenaltyAlpha]), the optimizer's weight decay
    ([`WeightDecay`][reglight.callbacks.WeightDecay]) or any module attribute
    ([`ModuleAttribute`][reglight.callbacks.ModuleAttribute]). Values are logged as `prefix + knob.name`.

    The value is a pure function of the epoch / step that Lightning restores from a checkpoint, so every DDP
    rank applies the same value and a resumed run continues the schedule exactly. The values stay in place
    after training.

    Presets: `early_dropout`, `late_dropout` (Liu et al., 2023, "Dropout Reduces Underfitting") and
    `drop_block_ramp` (Ghiasi et al., 2018, "DropBlock": the rate ramps linearly from 0).

    Args:
        knobs: the scheduled hyperparameters.
        interval: `"epoch"` or `"step"` (optimizer steps, `trainer.global_step`).
        log: log the current values.
        prefix: prefix of the logged names.

    Raises:
        ValueError: for an unknown `interval`, no knobs, or two knobs with the same name.
        TypeError: if a knob is not a [`Knob`][reglight.callbacks.Knob].

    Examples:
        >>> from reglight.callbacks import DropoutRate, RegularizationScheduler, WeightDecay
        >>> from reglight.schedules import Cosine, Linear
        >>> sched = RegularizationScheduler(
        ...     [DropoutRate(Linear(0.0, 0.3, duration=20)), WeightDecay(Cosine(1e-3, 1e-4, duration=50))]
        ... )
        >>> tuple(k.name for k in sched.knobs)
        ('dropout', 'weight_decay')
    """

    def __init__(
        self,
        knobs: Knob | Sequence[Knob],
        interval: str = "epoch",
        log: bool = True,
        prefix: str = "reg/",
    ) -> None:
        super().__init__()
        self.knobs: list[Knob] = [knobs] if isinstance(knobs, Knob) else list(knobs)
        if not self.knobs:
            raise ValueError("`knobs` must name at least one Knob, got none")
        for k in self.knobs:
            if not isinstance(k, Knob):
                raise TypeError(
                    f"`knobs` must be Knob instances (DropoutRate, WeightDecay, ...), got {k!r}"
                )
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise ValueError(f"knob names must be unique (they are the logged keys), got {names}")
        self.interval = check_choice("interval", interval, ("epoch", "step"))
        # not `self.log`: Lightning replaces every callback's `log` with the module's `log` method at fit start
        self.log_values = bool(log)
        self.prefix = prefix
        self.values: dict[str, float] = {}
        self.progress: float | None = None

    @property
    @override
    def state_key(self) -> str:
        """Checkpoint key, unique per set of knob names (several schedulers may run side by side)."""
        return self._generate_state_key(knobs=[k.name for k in self.knobs])

    # ---------------------------------------------------------------- presets
    @classmethod
    def early_dropout(
        cls,
        p: float,
        cutoff: float,
        shape: str = "constant",
        interval: str = "epoch",
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        drop_path: bool = False,
    ) -> RegularizationScheduler:
        r"""Early dropout (Liu et al., 2023): rate `p` until `cutoff`, then 0 (`shape="linear"`: `p` to 0).

        Args:
            p: the early rate ($p_{\max}$ with `drop_path=True`).
            cutoff: end of the early phase, in epochs or steps.
            shape: `"constant"` or `"linear"`.
            interval: `"epoch"` or `"step"`.
            include: which layers (default: the knob's, see
                [`DropoutRate`][reglight.callbacks.DropoutRate]).
            exclude: which layers to leave out.
            drop_path: schedule stochastic depth (DropPath rates by depth) instead of dropout.

        Returns:
            The scheduler.

        Examples:
            >>> s = RegularizationScheduler.early_dropout(0.1, cutoff=50)
            >>> tuple(s.knobs[0].value(t) for t in (0, 49, 50))
            (0.1, 0.1, 0.0)
        """
        knob_cls = DropPathRates if drop_path else DropoutRate
        knob = knob_cls(early(p, cutoff, shape), include=include, exclude=exclude)
        return cls([knob], interval=interval)

    @classmethod
    def late_dropout(
        cls,
        p: float,
        cutoff: float,
        interval: str = "epoch",
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        drop_path: bool = False,
    ) -> RegularizationScheduler:
        r"""Late dropout (Liu et al., 2023): rate 0 until `cutoff`, then `p`.

        Args:
            p: the late rate ($p_{\max}$ with `drop_path=True`).
            cutoff: start of the late phase, in epochs or steps.
            interval: `"epoch"` or `"step"`.
            include: which layers (default: the knob's, see
                [`DropoutRate`][reglight.callbacks.DropoutRate]).
            exclude: which layers to leave out.
            drop_path: schedule stochastic depth (DropPath rates by depth) instead of dropout.

        Returns:
            The scheduler.

        Examples:
            >>> s = RegularizationScheduler.late_dropout(0.2, cutoff=10)
            >>> tuple(s.knobs[0].value(t) for t in (0, 9, 10))
            (0.0, 0.0, 0.2)
        """
        knob_cls = DropPathRates if drop_path else DropoutRate
        knob = knob_cls(late(p, cutoff), include=include, exclude=exclude)
        return cls([knob], interval=interval)

    @classmethod
    def drop_block_ramp(
        cls,
        p: float,
        duration: float,
        interval: str = "step",
        include: Pattern | Sequence[Pattern] | None = "DropBlock2d",
        exclude: Pattern | Sequence[Pattern] | None = None,
    ) -> RegularizationScheduler:
        """DropBlock's schedule (Ghiasi et al., 2018): the rate of DropBlock layers rises linearly from 0 to `p`.

        Args:
            p: the final rate.
            duration: length of the ramp, in steps (default interval) or epochs.
            interval: `"step"` or `"epoch"`.
            include: which layers (default: every class named `DropBlock2d`, reglight's and timm's).
            exclude: which layers to leave out.

        Returns:
            The scheduler.

        Examples:
            >>> s = RegularizationScheduler.drop_block_ramp(0.1, duration=1000)
            >>> s.knobs[0].value(500)
            0.05
        """
        knob = DropoutRate(
            Linear(0.0, p, duration=duration), include=include, exclude=exclude, name="drop_block"
        )
        return cls([knob], interval=interval)

    # ---------------------------------------------------------------- hooks
    def _progress(self, trainer: pl.Trainer) -> int:
        return trainer.current_epoch if self.interval == "epoch" else trainer.global_step

    def _apply(self, trainer: pl.Trainer) -> None:
        t = self._progress(trainer)
        for knob in self.knobs:
            value = knob.value(t)
            knob.apply(value)
            self.values[knob.name] = value
        self.progress = t

    def _log(self, pl_module: pl.LightningModule) -> None:
        if self.log_values:
            log_scheduled_values(pl_module, self.prefix, self.values, self.interval)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find every knob's target (modules, penalty hooks, parameter groups)."""
        for knob in self.knobs:
            knob.bind(trainer, pl_module)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Apply the values for the (possibly restored) epoch / step before the first batch."""
        self._apply(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Epoch interval: apply and log the values of this epoch."""
        if self.interval == "epoch":
            self._apply(trainer)
            self._log(pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Step interval: apply and log the values of this optimizer step."""
        if self.interval == "step":
            self._apply(trainer)
            self._log(pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The last applied values and progress (the values themselves are recomputed on resume)."""
        return {"values": dict(self.values), "progress": self.progress}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` saved.

        Args:
            state_dict: the saved state.
        """
        self.values = dict(state_dict.get("values", {}))
        self.progress = state_dict.get("progress")

    def __repr__(self) -> str:
        return f"RegularizationScheduler({self.knobs!r}, interval={self.interval!r})"
