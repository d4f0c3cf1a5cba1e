r"""Schedule shapes: pure-python maps from training progress to a value.

A schedule is a callable `t -> value` where $t \ge 0$ is the training progress, counted in epochs or in
optimizer steps (the callback that uses it decides which, through its `interval` argument). The same objects
drive [`AugmentationScheduler`][reglight.callbacks.AugmentationScheduler] (augmentation magnitude and
apply probability `apply_prob`) and [`RegularizationScheduler`][reglight.callbacks.RegularizationScheduler]
(dropout rates, penalty strength `alpha`, weight decay, ...).

Schedules hold plain floats only: they pickle, print, and give the same value for the same `t` on every
process, which is what makes the callbacks agree across DDP ranks and resume exactly from a checkpoint
(the value is recomputed from the restored epoch or step, never accumulated).

Shapes: [`Constant`][reglight.schedules.Constant], [`Linear`][reglight.schedules.Linear],
[`Cosine`][reglight.schedules.Cosine], [`Step`][reglight.schedules.Step],
[`Warmup`][reglight.schedules.Warmup] (wraps another schedule), [`Lambda`][reglight.schedules.Lambda]
(any callable); presets [`early`][reglight.schedules.early] and [`late`][reglight.schedules.late]
(early / late dropout of Liu et al., 2023); [`as_schedule`][reglight.schedules.as_schedule] turns a number
or a callable into a schedule and [`make_schedule`][reglight.schedules.make_schedule] builds one by name.

Examples:
    >>> from reglight.schedules import Cosine, Linear, Warmup
    >>> ramp = Linear(0.0, 0.3, duration=10)
    >>> tuple(round(ramp(t), 3) for t in (0, 5, 10, 20))
    (0.0, 0.15, 0.3, 0.3)
    >>> s = Warmup(Cosine(1.0, 0.0, duration=10), duration=2)
    >>> tuple(round(s(t), 3) for t in (0, 1, 2, 7, 12))
    (0.0, 0.5, 1.0, 0.5, 0.0)
"""

from __future__ import annotations

import bisect
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from reglight._validation import check_choice, check_nonnegative, check_positive

__all__ = [
    "SCHEDULES",
    "Constant",
    "Cosine",
    "Lambda",
    "Linear",
    "Schedule",
    "Step",
    "Warmup",
    "as_schedule",
    "early",
    "late",
    "make_schedule",
]


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    return float(value)


def _progress(t: Any) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t) or t < 0:
        raise ValueError(f"schedule progress `t` must be a number >= 0, got {t!r}")
    return float(t)


class Schedule(ABC):
    """Base class: a map from progress `t >= 0` (epochs or steps) to a float.

    Subclasses implement [`compute`][reglight.schedules.Schedule.compute]; calling the schedule validates
    `t` and returns `compute(t)`.
    """

    def __call__(self, t: float) -> float:
        """Return the value at progress `t`.

        Args:
            t: training progress (epoch or optimizer step), `t >= 0`.

        Returns:
            The scheduled value.
        """
        return self.compute(_progress(t))

    @abstractmethod
    def compute(self, t: float) -> float:
        """Return the value at progress `t` (already validated).

        Args:
            t: training progress, `t >= 0`.

        Returns:
            The scheduled value.
        """

    def bounds(self) -> tuple[float, float] | None:
        """Smallest and largest value the schedule can take, or `None` when unknown (a callable).

        Callbacks use this to reject an out-of-range schedule (a magnitude above 1, a dropout rate of 1, ...)
        when they are built instead of in the middle of training.

        Returns:
            `(low, high)` or `None`.
        """
        return None


class Constant(Schedule):
    """The same value at every `t`.

    Args:
        value: the value.

    Examples:
        >>> Constant(0.1)(42)
        0.1
    """

    def __init__(self, value: float) -> None:
        self.value = _finite("value", value)

    def compute(self, t: float) -> float:
        return self.value

    def bounds(self) -> tuple[float, float]:
        return (self.value, self.value)

    def __repr__(self) -> str:
        return f"Constant({self.value!r})"


class _Ramp(Schedule):
    """Shared parts of the ramps: `start` until `delay`, a shape over `duration`, then `end`."""

    def __init__(self, start: float, end: float, duration: float, delay: float = 0.0) -> None:
        self.start = _finite("start", start)
        self.end = _finite("end", end)
        self.duration = check_positive("duration", duration)
        self.delay = check_nonnegative("delay", delay)

    def fraction(self, t: float) -> float:
        """Progress through the ramp, clipped to `[0, 1]`."""
        return min(max((t - self.delay) / self.duration, 0.0), 1.0)

    def bounds(self) -> tuple[float, float]:
        return (min(self.start, self.end), max(self.start, self.end))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(start={self.start!r}, end={self.end!r}, "
            f"duration={self.duration!r}, delay={self.delay!r})"
        )


class Linear(_Ramp):
    r"""Linear ramp from `start` to `end`.

    $$v(t) = s + (e - s)\,\mathrm{clip}\big((t - d)/T,\ 0,\ 1\big)$$

    with start $s$, end $e$, duration $T$ and delay $d$: the value stays at `start`
    until `delay`, ramps over `duration` units and stays at `end` afterwards (DropBlock's recommended
    linear ramp of the drop rate, Ghiasi et al., 2018).

    Args:
        start: value at `t <= delay`.
        end: value at `t >= delay + duration`.
        duration: length of the ramp in epochs or steps, `> 0`.
        delay: progress at which the ramp begins, `>= 0`.

    Examples:
        >>> Linear(0.0, 1.0, duration=4, delay=2)(4)
        0.5
    """

    def compute(self, t: float) -> float:
        return self.start + (self.end - self.start) * self.fraction(t)


class Cosine(_Ramp):
    r"""Half-cosine ramp from `start` to `end` (the shape of SGDR's annealing, Loshchilov & Hutter, 2017).

    $$v(t) = e + \tfrac{1}{2}(s - e)\big(1 + \cos(\pi u)\big),\qquad
    u = \mathrm{clip}\big((t - d)/T,\ 0,\ 1\big)$$

    with start $s$, end $e$, duration $T$ and delay $d$.

    Args:
        start: value at `t <= delay`.
        end: value at `t >= delay + duration`.
        duration: length of the ramp in epochs or steps, `> 0`.
        delay: progress at which the ramp begins, `>= 0`.

    Examples:
        >>> round(Cosine(1.0, 0.0, duration=10)(5), 6)
        0.5
    """

    def compute(self, t: float) -> float:
        u = self.fraction(t)
        return self.end + 0.5 * (self.start - self.end) * (1.0 + math.cos(math.pi * u))


class Step(Schedule):
    r"""Piecewise-constant schedule: `values[i]` once `t` has passed `i` milestones.

    $$v(t) = \mathrm{values}\big[\#\{j : m_j \le t\}\big]$$

    with the milestones $m_0 < m_1 < \dots$ (the rule of torch's `MultiStepLR`).

    Args:
        values: the values, one more than there are milestones.
        milestones: strictly increasing progress points (epochs or steps) where the value changes.

    Raises:
        ValueError: if the lengths do not match or the milestones are not strictly increasing.

    Examples:
        >>> s = Step([0.0, 0.1, 0.3], milestones=[5, 10])
        >>> tuple(s(t) for t in (0, 5, 9, 10))
        (0.0, 0.1, 0.1, 0.3)
    """

    def __init__(self, values: Sequence[float], milestones: Sequence[float]) -> None:
        vals = [_finite("values", v) for v in values]
        stones = [check_nonnegative("milestones", m) for m in milestones]
        if len(vals) != len(stones) + 1:
            raise ValueError(
                f"`values` must have one more entry than `milestones`, got {len(vals)} values and "
                f"{len(stones)} milestones"
            )
        if any(b <= a for a, b in itertools.pairwise(stones)):
            raise ValueError(f"`milestones` must be strictly increasing, got {list(milestones)!r}")
        self.values = vals
        self.milestones = stones

    def compute(self, t: float) -> float:
        return self.values[bisect.bisect_right(self.milestones, t)]

    def bounds(self) -> tuple[float, float]:
        return (min(self.values), max(self.values))

    def __repr__(self) -> str:
        return f"Step(values={self.values!r}, milestones={self.milestones!r})"


class Warmup(Schedule):
    r"""Linear warm-up from `start` into another schedule, which then runs from its own `t = 0`.

    $$v(t) = \begin{cases} s + (f(0) - s)\,t/W & t < W \\ f(t - W) & t \ge W \end{cases}$$

    with the start value $s$, the following schedule $f$ and the warm-up length $W$.

    Args:
        schedule: the schedule that follows the warm-up (a number is a constant).
        duration: warm-up length $W$ in epochs or steps, `> 0`.
        start: value at `t = 0`.

    Examples:
        >>> s = Warmup(Linear(1.0, 0.0, duration=4), duration=2)
        >>> tuple(s(t) for t in (0, 1, 2, 4, 6))
        (0.0, 0.5, 1.0, 0.5, 0.0)
    """

    def __init__(
        self,
        schedule: Schedule | float | Callable[[float], float],
        duration: float,
        start: float = 0.0,
    ) -> None:
        self.schedule = as_schedule(schedule, "schedule")
        self.duration = check_positive("duration", duration)
        self.start = _finite("start", start)

    def compute(self, t: float) -> float:
        if t < self.duration:
            return self.start + (self.schedule(0.0) - self.start) * t / self.duration
        return self.schedule(t - self.duration)

    def bounds(self) -> tuple[float, float] | None:
        inner = self.schedule.bounds()
        if inner is None:
            return None
        return (min(inner[0], self.start), max(inner[1], self.start))

    def __repr__(self) -> str:
        return f"Warmup({self.schedule!r}, duration={self.duration!r}, start={self.start!r})"


class Lambda(Schedule):
    """Any callable `fn(t) -> float` used as a schedule.

    The callable must be deterministic in `t` (every DDP rank and a resumed run must compute the same value);
    to pickle the schedule (spawned processes) it must be a module-level function.

    Args:
        fn: the callable.

    Raises:
        TypeError: if `fn` is not callable, or (when called) returns something that is not a real number.

    Examples:
        >>> Lambda(lambda t: 0.5**t)(3)
        0.125
    """

    def __init__(self, fn: Callable[[float], float]) -> None:
        if not callable(fn):
            raise TypeError(f"`fn` must be callable, got {fn!r}")
        self.fn = fn

    def compute(self, t: float) -> float:
        out = self.fn(t)
        bad = isinstance(out, (bool, str, bytes))
        try:
            value = float(out)  # numbers, 0-d tensors and numpy scalars
        except (TypeError, ValueError):
            bad = True
        if bad or math.isnan(value):
            raise TypeError(
                f"schedule callable {self.fn!r} returned {out!r} at t={t}: not a real number"
            )
        return value

    def __repr__(self) -> str:
        return f"Lambda({getattr(self.fn, '__qualname__', repr(self.fn))})"


def early(value: float, cutoff: float, shape: str = "constant") -> Schedule:
    """Early dropout (Liu et al., 2023, "Dropout Reduces Underfitting"): active only before `cutoff`.

    `shape="constant"` keeps `value` until `cutoff` then 0; `shape="linear"` decreases it linearly
    from `value` to 0 over `[0, cutoff]` (the paper's two early-dropout schedules).

    Args:
        value: the rate during the early phase.
        cutoff: progress (epochs or steps) at which the early phase ends, `> 0`.
        shape: `"constant"` or `"linear"`.

    Returns:
        The schedule.

    Examples:
        >>> s = early(0.1, cutoff=5)
        >>> tuple(s(t) for t in (0, 4, 5, 9))
        (0.1, 0.1, 0.0, 0.0)
    """
    _finite("value", value)
    check_positive("cutoff", cutoff)
    check_choice("shape", shape, ("constant", "linear"))
    if shape == "linear":
        return Linear(value, 0.0, duration=cutoff)
    return Step([value, 0.0], milestones=[cutoff])


def late(value: float, cutoff: float) -> Schedule:
    """Late dropout (Liu et al., 2023): 0 before `cutoff`, `value` afterwards.

    Args:
        value: the rate during the late phase.
        cutoff: progress (epochs or steps) at which the late phase begins, `> 0`.

    Returns:
        The schedule.

    Examples:
        >>> s = late(0.2, cutoff=3)
        >>> tuple(s(t) for t in (0, 2, 3, 10))
        (0.0, 0.0, 0.2, 0.2)
    """
    _finite("value", value)
    check_positive("cutoff", cutoff)
    return Step([0.0, value], milestones=[cutoff])


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": Constant,
    "linear": Linear,
    "cosine": Cosine,
    "step": Step,
    "warmup": Warmup,
    "lambda": Lambda,
    "early": early,
    "late": late,
}
"""Schedule constructors by name, used by [`make_schedule`][reglight.schedules.make_schedule]."""


def make_schedule(name: str, **kwargs: Any) -> Schedule:
    """Build a schedule by name (`"constant"`, `"linear"`, `"cosine"`, `"step"`, `"warmup"`, ...).

    Args:
        name: one of the keys of [`SCHEDULES`][reglight.schedules.SCHEDULES].
        **kwargs: the constructor's arguments.

    Returns:
        The schedule.

    Raises:
        ValueError: for an unknown name.

    Examples:
        >>> make_schedule("linear", start=0.0, end=1.0, duration=10)(5)
        0.5
    """
    check_choice("name", name, SCHEDULES)
    return SCHEDULES[name](**kwargs)


def as_schedule(
    spec: Schedule | float | Callable[[float], float], name: str = "schedule"
) -> Schedule:
    """Turn a number into a [`Constant`][reglight.schedules.Constant], a callable into a [`Lambda`][reglight.schedules.Lambda]; pass schedules through.

    Args:
        spec: a [`Schedule`][reglight.schedules.Schedule], a number, or a callable `t -> float`.
        name: the argument name used in error messages.

    Returns:
        The schedule.

    Raises:
        TypeError: for anything else (a string, for instance: use
            [`make_schedule`][reglight.schedules.make_schedule] for names).

    Examples:
        >>> as_schedule(0.5)
        Constant(0.5)
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(_finite(name, spec))
    if callable(spec) and not isinstance(spec, type):
        return Lambda(spec)
    raise TypeError(
        f"`{name}` must be a Schedule, a number or a callable t -> float, got {spec!r} "
        f"({type(spec).__name__}); build named schedules with make_schedule(name, ...), "
        f"name one of {', '.join(map(repr, SCHEDULES))}"
    )
