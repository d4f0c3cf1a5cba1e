"""RegularizationScheduler: schedule dropout rates, DropPath rates, penalty strength and weight decay."""

from __future__ import annotations

import fnmatch
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import nn

from reglight._validation import check_choice, check_positive_int
from reglight.schedules import Linear, Schedule, as_schedule, early, late

__all__ = [
    "DropPathRates",
    "DropoutRate",
    "Knob",
    "ModuleAttribute",
    "PenaltyStrength",
    "RegularizationScheduler",
    "WeightDecay",
]

ScheduleLike = Schedule | float | Callable[[float], float]
TypeSpec = type | str | Sequence[type | str] | None
NameSpec = str | Sequence[str] | None


class Knob(ABC):
    """One scheduled regularization hyperparameter: a schedule, a name to log it under, and a target.

    Subclasses find their target in :meth:`bind` (called at ``on_fit_start``, when the model, the optimizers
    and the callbacks exist) and set it in :meth:`apply`. ``low``/``high`` bound the allowed values; a schedule
    whose :meth:`~reglight.schedules.Schedule.bounds` fall outside them is rejected at construction.

    Args:
        schedule: the value over training (a number is a constant).
        name: key under which the value is logged (after the scheduler's prefix).
        low: smallest allowed value.
        high: largest allowed value.
        high_inclusive: whether ``high`` itself is allowed.
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
        """The scheduled value at progress ``t``, checked against the allowed range.

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
        """Find the target (modules, hook, optimizer); raise ``ValueError`` when there is none.

        Args:
            trainer: the trainer.
            pl_module: the module being trained.
        """

    @abstractmethod
    def apply(self, value: float) -> None:
        """Set the target to ``value``.

        Args:
            value: the scheduled value.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.schedule!r}, name={self.name!r})"


def _as_tuple(spec: Any) -> tuple[Any, ...]:
    if spec is None:
        return ()
    if isinstance(spec, (str, type)):
        return (spec,)
    return tuple(spec)


def _type_matches(module: nn.Module, types: tuple[type | str, ...]) -> bool:
    for t in types:
        if isinstance(t, str):
            if any(
                c.__name__ == t or f"{c.__module__}.{c.__qualname__}" == t
                for c in type(module).__mro__
            ):
                return True
        elif isinstance(module, t):
            return True
    return False


class ModuleAttribute(Knob):
    """Schedule a float attribute of the modules selected by name glob and/or type.

    The generic knob behind :class:`DropoutRate`; use it directly for other mutable hyperparameters, e.g.
    BatchRenorm's ``r_max``: ``ModuleAttribute(Linear(1, 3, 20), "r_max", types="BatchRenorm2d")``.

    Modules are taken from ``pl_module.named_modules()`` in registration order. ``names`` are
    :func:`fnmatch.fnmatchcase` globs on the qualified module names (``"encoder.*.drop"``); ``types`` are
    classes or class names (``"DropBlock2d"``, matched along the class hierarchy). Given both, a module must
    match both; every glob must match at least one module that has the attribute.

    Args:
        schedule: the value over training.
        attribute: attribute to set on each selected module.
        names: module-name glob(s), or ``None`` for any name.
        types: module class(es) or class name(s), or ``None`` for any type.
        name: key under which the value is logged.
        low: smallest allowed value.
        high: largest allowed value.
        high_inclusive: whether ``high`` itself is allowed.

    Examples:
        >>> from torch import nn
        >>> knob = ModuleAttribute(0.25, "p", names="head.*")
        >>> model = nn.Sequential()
        >>> model.add_module("head", nn.Sequential(nn.Dropout(0.5)))
        >>> knob.select(model)
        [('head.0', Dropout(p=0.5, inplace=False))]
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        attribute: str,
        names: NameSpec = None,
        types: TypeSpec = None,
        name: str | None = None,
        low: float = -math.inf,
        high: float = math.inf,
        high_inclusive: bool = True,
    ) -> None:
        if not isinstance(attribute, str) or not attribute:
            raise ValueError(f"`attribute` must be a non-empty string, got {attribute!r}")
        super().__init__(schedule, name or attribute, low, high, high_inclusive)
        self.attribute = attribute
        self.names: tuple[str, ...] = _as_tuple(names)
        self.types: tuple[type | str, ...] = _as_tuple(types)
        for n in self.names:
            if not isinstance(n, str) or not n:
                raise TypeError(f"`names` must be glob strings, got {names!r}")
        for t in self.types:
            if not isinstance(t, (str, type)):
                raise TypeError(f"`types` must be classes or class names, got {types!r}")
        self.modules: list[tuple[str, nn.Module]] = []

    def _attribute_of(self, module: nn.Module) -> str | None:
        return self.attribute if hasattr(module, self.attribute) else None

    def _default_types(self) -> tuple[type | str, ...]:
        return ()

    def _default_exclude(self) -> tuple[type | str, ...]:
        return ()

    def select(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """The ``(name, module)`` pairs this knob drives in ``model``.

        Args:
            model: the model to search.

        Returns:
            The selected modules, in registration order.

        Raises:
            ValueError: if a glob matches no module with the attribute, or nothing is selected.
        """
        defaults = not self.types and not self.names
        types = self.types or (self._default_types() if defaults else ())
        exclude = self._default_exclude() if defaults else ()
        candidates = [
            (n, m)
            for n, m in model.named_modules()
            if n
            and self._attribute_of(m) is not None
            and (not types or _type_matches(m, types))
            and not (exclude and _type_matches(m, exclude))
        ]
        if self.names:
            for glob in self.names:
                if not any(fnmatch.fnmatchcase(n, glob) for n, _ in candidates):
                    known = [n for n, _ in candidates] or [n for n, _ in model.named_modules() if n]
                    raise ValueError(
                        f"{type(self).__name__} {self.name!r}: glob {glob!r} in `names` matches no module with "
                        f"attribute `{self.attribute}`; candidates: {', '.join(known[:20]) or 'none'}"
                        + (" ..." if len(known) > 20 else "")
                    )
            candidates = [
                (n, m) for n, m in candidates if any(fnmatch.fnmatchcase(n, g) for g in self.names)
            ]
        if not candidates:
            wanted = ", ".join(t if isinstance(t, str) else t.__name__ for t in types) or "any type"
            raise ValueError(
                f"{type(self).__name__} {self.name!r} found no module ({wanted}) with attribute "
                f"`{self.attribute}` in {type(model).__name__}"
            )
        return candidates

    def bind(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Select the modules of ``pl_module``.

        Args:
            trainer: the trainer.
            pl_module: the module being trained.
        """
        self.modules = self.select(pl_module)

    def apply(self, value: float) -> None:
        """Set the attribute of every selected module to ``value``.

        Args:
            value: the scheduled value.
        """
        for _, module in self.modules:
            setattr(module, self._attribute_of(module) or self.attribute, value)


def _dropout_types() -> tuple[type | str, ...]:
    try:
        from reglight.nn import DROPOUT_TYPES

        return tuple(DROPOUT_TYPES)
    except (
        ImportError
    ):  # reglight.nn without DROPOUT_TYPES: torch's family, which all derive from _DropoutNd
        return (nn.modules.dropout._DropoutNd,)


class DropoutRate(ModuleAttribute):
    """Schedule the rate ``p`` of dropout-family layers: all of them, some types, or some names.

    Without ``names`` and ``types`` every module of :data:`reglight.nn.DROPOUT_TYPES` (ours and torch's
    dropout layers) is driven, except DropPath layers, whose rates grow with depth (:class:`DropPathRates`). The rate is read from ``p``, or ``drop_prob`` (timm's DropBlock2d / DropPath)
    when a module has no ``p``. Values must lie in ``[0, 1)``.

    Args:
        schedule: the rate over training.
        names: module-name glob(s) (e.g. ``"classifier.*"``).
        types: module class(es) or class name(s) (e.g. ``"DropBlock2d"``).
        name: key under which the rate is logged.

    Examples:
        >>> from torch import nn
        >>> from reglight.schedules import Linear
        >>> knob = DropoutRate(Linear(0.0, 0.3, duration=10), types=nn.Dropout)
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        >>> knob.modules = knob.select(model)
        >>> knob.apply(knob.value(5)); model[1].p
        0.15
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        names: NameSpec = None,
        types: TypeSpec = None,
        name: str = "dropout",
    ) -> None:
        super().__init__(schedule, "p", names, types, name, low=0.0, high=1.0, high_inclusive=False)

    def _attribute_of(self, module: nn.Module) -> str | None:
        for attr in ("p", "drop_prob"):
            value = getattr(module, attr, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return attr
        return None

    def _default_types(self) -> tuple[type | str, ...]:
        return (*_dropout_types(), "DropBlock2d")

    def _default_exclude(self) -> tuple[type | str, ...]:
        return ("DropPath",)  # its rates grow with depth: DropPathRates drives them


class DropPathRates(DropoutRate):
    """Schedule stochastic depth: the maximum rate ``p_max``, spread over the DropPath layers by depth.

    The ``L`` selected layers (registration order = depth order) get :func:`reglight.nn.drop_path_rates`
    ``(p_max, L)``, the linear rule of Huang et al. (2016): layer ``l`` drops with ``p_max · l / L``.

    Args:
        schedule: ``p_max`` over training.
        names: module-name glob(s); default: every DropPath layer.
        types: module class(es) or class name(s); default ``"DropPath"`` (reglight's and timm's).
        name: key under which ``p_max`` is logged.

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
        names: NameSpec = None,
        types: TypeSpec = None,
        name: str = "drop_path",
    ) -> None:
        super().__init__(schedule, names, types, name)

    def _default_types(self) -> tuple[type | str, ...]:
        return ("DropPath",)

    def _default_exclude(self) -> tuple[type | str, ...]:
        return ()

    def apply(self, value: float) -> None:
        """Set layer ``l`` of ``L`` to ``value · l / L``.

        Args:
            value: ``p_max``.
        """
        from reglight.nn import drop_path_rates

        rates = drop_path_rates(value, len(self.modules))
        for (_, module), rate in zip(self.modules, rates):
            setattr(module, self._attribute_of(module) or "p", rate)


class PenaltyStrength(Knob):
    """Schedule the ``strength`` of the penalty of :class:`~reglight.callbacks.PenaltyHook` callbacks.

    The hooks are found among ``trainer.callbacks`` (any callback with a ``penalty.strength``).

    Args:
        schedule: the strength over training, ``>= 0``.
        index: which hook, counted among the penalty hooks in callback order; ``None`` drives all of them.
        name: key under which the strength is logged.

    Examples:
        >>> knob = PenaltyStrength(0.01, index=0)
        >>> knob.value(3)
        0.01
    """

    def __init__(
        self, schedule: ScheduleLike, index: int | None = None, name: str = "penalty_strength"
    ) -> None:
        super().__init__(schedule, name, low=0.0)
        if index is not None:
            check_positive_int("index", index, minimum=0)
        self.index = index
        self.hooks: list[Any] = []

    def bind(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the penalty hooks among the trainer's callbacks.

        Args:
            trainer: the trainer.
            pl_module: the module being trained.
        """
        callbacks = list(getattr(trainer, "callbacks", []))
        hooks = [cb for cb in callbacks if hasattr(getattr(cb, "penalty", None), "strength")]
        if not hooks:
            raise ValueError(
                f"PenaltyStrength {self.name!r}: no PenaltyHook among the trainer's callbacks "
                f"({', '.join(type(cb).__name__ for cb in callbacks)})"
            )
        if self.index is not None:
            if self.index >= len(hooks):
                raise ValueError(
                    f"PenaltyStrength `index={self.index}` but the trainer has {len(hooks)} penalty hook(s)"
                )
            hooks = [hooks[self.index]]
        self.hooks = hooks

    def apply(self, value: float) -> None:
        """Set ``hook.penalty.strength = value`` on the selected hooks.

        Args:
            value: the strength.
        """
        for hook in self.hooks:
            hook.penalty.strength = value


class WeightDecay(Knob):
    """Schedule the optimizer's ``weight_decay``.

    By default the value goes to every parameter group whose initial ``weight_decay`` is not zero, so the
    usual "no decay" groups (biases, norms) stay undecayed; ``param_groups`` picks groups explicitly.

    Args:
        schedule: the weight decay over training, ``>= 0``.
        optimizer: index of the optimizer in ``trainer.optimizers``.
        param_groups: indices of the parameter groups to drive, or ``None`` (groups with non-zero decay).
        name: key under which the weight decay is logged.

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

    def apply(self, value: float) -> None:
        """Set ``weight_decay`` of the selected groups.

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
    """Schedule regularization hyperparameters over training, one :class:`Knob` each.

    At the start of every epoch (``interval="epoch"``) or optimizer step (``interval="step"``), each knob's
    schedule is evaluated at the current epoch / global step and written to its target: dropout-family rates
    (:class:`DropoutRate`, by type or module-name glob), DropPath rates by depth (:class:`DropPathRates`),
    a ``PenaltyHook``'s strength (:class:`PenaltyStrength`), the optimizer's weight decay
    (:class:`WeightDecay`) or any module attribute (:class:`ModuleAttribute`). Values are logged as
    ``prefix + knob.name``.

    The value is a pure function of the epoch / step that Lightning restores from a checkpoint, so every DDP
    rank applies the same value and a resumed run continues the schedule exactly. The values stay in place
    after training.

    Presets: :meth:`early_dropout`, :meth:`late_dropout` (Liu et al., 2023, "Dropout Reduces Underfitting")
    and :meth:`drop_block_ramp` (Ghiasi et al., 2018: the DropBlock rate ramps linearly from 0).

    Args:
        knobs: the scheduled hyperparameters.
        interval: ``"epoch"`` or ``"step"`` (optimizer steps, ``trainer.global_step``).
        log: log the current values.
        prefix: prefix of the logged names.

    Raises:
        ValueError: for an unknown ``interval``, no knobs, or two knobs with the same name.

    Examples:
        >>> from reglight.callbacks import RegularizationScheduler
        >>> from reglight.callbacks.regularization import DropoutRate, WeightDecay
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
        self.log = log
        self.prefix = prefix
        self.values: dict[str, float] = {}
        self.progress: float | None = None

    @property
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
        names: NameSpec = None,
        types: TypeSpec = None,
        drop_path: bool = False,
    ) -> RegularizationScheduler:
        """Early dropout (Liu et al., 2023): rate ``p`` until ``cutoff``, then 0 (``shape="linear"``: p → 0).

        Args:
            p: the early rate (``p_max`` with ``drop_path=True``).
            cutoff: end of the early phase, in epochs or steps.
            shape: ``"constant"`` or ``"linear"``.
            interval: ``"epoch"`` or ``"step"``.
            names: module-name glob(s) to restrict the layers.
            types: module class(es) or class name(s) to restrict the layers.
            drop_path: schedule stochastic depth (DropPath rates by depth) instead of dropout.

        Returns:
            The scheduler.

        Examples:
            >>> s = RegularizationScheduler.early_dropout(0.1, cutoff=50)
            >>> tuple(s.knobs[0].value(t) for t in (0, 49, 50))
            (0.1, 0.1, 0.0)
        """
        knob_cls = DropPathRates if drop_path else DropoutRate
        return cls([knob_cls(early(p, cutoff, shape), names=names, types=types)], interval=interval)

    @classmethod
    def late_dropout(
        cls,
        p: float,
        cutoff: float,
        interval: str = "epoch",
        names: NameSpec = None,
        types: TypeSpec = None,
        drop_path: bool = False,
    ) -> RegularizationScheduler:
        """Late dropout (Liu et al., 2023): rate 0 until ``cutoff``, then ``p``.

        Args:
            p: the late rate (``p_max`` with ``drop_path=True``).
            cutoff: start of the late phase, in epochs or steps.
            interval: ``"epoch"`` or ``"step"``.
            names: module-name glob(s) to restrict the layers.
            types: module class(es) or class name(s) to restrict the layers.
            drop_path: schedule stochastic depth (DropPath rates by depth) instead of dropout.

        Returns:
            The scheduler.

        Examples:
            >>> s = RegularizationScheduler.late_dropout(0.2, cutoff=10)
            >>> tuple(s.knobs[0].value(t) for t in (0, 9, 10))
            (0.0, 0.0, 0.2)
        """
        knob_cls = DropPathRates if drop_path else DropoutRate
        return cls([knob_cls(late(p, cutoff), names=names, types=types)], interval=interval)

    @classmethod
    def drop_block_ramp(
        cls,
        p: float,
        duration: float,
        interval: str = "step",
        names: NameSpec = None,
    ) -> RegularizationScheduler:
        """DropBlock's schedule (Ghiasi et al., 2018): the rate of ``DropBlock2d`` layers rises linearly 0 → p.

        Args:
            p: the final rate.
            duration: length of the ramp, in steps (default interval) or epochs.
            interval: ``"step"`` or ``"epoch"``.
            names: module-name glob(s) to restrict the layers.

        Returns:
            The scheduler.

        Examples:
            >>> s = RegularizationScheduler.drop_block_ramp(0.1, duration=1000)
            >>> s.knobs[0].value(500)
            0.05
        """
        knob = DropoutRate(
            Linear(0.0, p, duration=duration), names=names, types="DropBlock2d", name="drop_block"
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
        if not self.log:
            return
        on_step = self.interval == "step"
        for name, value in self.values.items():
            pl_module.log(
                self.prefix + name, value, on_step=on_step, on_epoch=not on_step, batch_size=1
            )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find every knob's target (modules, penalty hooks, parameter groups)."""
        for knob in self.knobs:
            knob.bind(trainer, pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Apply the values for the (possibly restored) epoch / step before the first batch."""
        self._apply(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Epoch interval: apply and log the values of this epoch."""
        if self.interval == "epoch":
            self._apply(trainer)
            self._log(pl_module)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Step interval: apply and log the values of this optimizer step."""
        if self.interval == "step":
            self._apply(trainer)
            self._log(pl_module)

    def state_dict(self) -> dict[str, Any]:
        """The last applied values and progress (the values themselves are recomputed on resume)."""
        return {"values": dict(self.values), "progress": self.progress, "interval": self.interval}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved.

        Args:
            state_dict: the saved state.
        """
        self.values = dict(state_dict.get("values", {}))
        self.progress = state_dict.get("progress")

    def __repr__(self) -> str:
        return f"RegularizationScheduler({self.knobs!r}, interval={self.interval!r})"
