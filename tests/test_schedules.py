"""reglight.schedules against torch's learning-rate schedulers and closed forms."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reglight.schedules import (
    Constant,
    Cosine,
    Lambda,
    Linear,
    Schedule,
    Step,
    Warmup,
    as_schedule,
    early,
    late,
    make_schedule,
)


def _torch_lrs(make_scheduler, base: float, n: int) -> list[float]:
    """Learning rates torch's scheduler gives at steps 0..n-1 (the reference shapes)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = make_scheduler(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_matches_torch_linear_lr() -> None:
    ref = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.LinearLR(
            o, start_factor=0.25, end_factor=1.0, total_iters=8
        ),
        1.0,
        12,
    )
    ours = [Linear(0.25, 1.0, duration=8)(t) for t in range(12)]
    assert ours == pytest.approx(ref, abs=1e-12)


def test_cosine_matches_torch_cosine_annealing() -> None:
    ref = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.1), 2.0, 11
    )
    ours = [Cosine(2.0, 0.1, duration=10)(t) for t in range(11)]
    assert ours == pytest.approx(ref, abs=1e-9)


def test_step_matches_torch_multistep() -> None:
    ref = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[3, 7], gamma=0.5), 0.8, 10
    )
    ours = [Step([0.8, 0.4, 0.2], milestones=[3, 7])(t) for t in range(10)]
    assert ours == pytest.approx(ref, abs=1e-12)


def test_delay_and_hold() -> None:
    s = Linear(1.0, 3.0, duration=4, delay=2)
    assert [s(t) for t in (0, 2, 3, 6, 100)] == [1.0, 1.0, 1.5, 3.0, 3.0]
    c = Cosine(0.0, 1.0, duration=2, delay=1)
    assert c(0.5) == 0.0 and c(2) == pytest.approx(0.5) and c(9) == pytest.approx(1.0)


def test_warmup_closed_form() -> None:
    inner = Cosine(1.0, 0.0, duration=10)
    s = Warmup(inner, duration=4, start=0.2)
    for t in (0.0, 1.0, 2.5, 3.99):
        assert s(t) == pytest.approx(0.2 + 0.8 * t / 4)
    for t in (4.0, 7.0, 14.0, 30.0):
        assert s(t) == pytest.approx(0.5 * (1 + math.cos(math.pi * min((t - 4) / 10, 1.0))))
    assert Warmup(0.3, duration=2)(1) == pytest.approx(0.15)


def test_early_and_late_follow_liu_et_al() -> None:
    # the paper's drop_scheduler: early constant = p until the cutoff then 0; early linear decreases from p to 0
    assert [early(0.1, 3)(t) for t in range(5)] == [0.1, 0.1, 0.1, 0.0, 0.0]
    lin = early(0.2, 4, shape="linear")
    assert [lin(t) for t in range(6)] == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0, 0.0])
    assert [late(0.3, 2)(t) for t in range(4)] == [0.0, 0.0, 0.3, 0.3]


def test_lambda_and_as_schedule() -> None:
    assert isinstance(as_schedule(0.5), Constant) and as_schedule(0.5)(10) == 0.5
    s = Linear(0, 1, 2)
    assert as_schedule(s) is s
    lam = as_schedule(lambda t: torch.tensor(t / 10))
    assert isinstance(lam, Lambda) and lam(3) == pytest.approx(0.3)


def test_make_schedule_by_name() -> None:
    assert make_schedule("cosine", start=1.0, end=0.0, duration=4)(2) == pytest.approx(0.5)
    assert make_schedule("step", values=[1, 2], milestones=[1])(1) == 2.0
    assert make_schedule("early", value=0.1, cutoff=2)(2) == 0.0


def test_schedules_pickle_and_repr() -> None:
    for s in (
        Constant(1.0),
        Linear(0, 1, 3),
        Cosine(1, 0, 3, delay=1),
        Step([1, 2], [4]),
        Warmup(Linear(1, 0, 2), 3),
    ):
        back = pickle.loads(pickle.dumps(s))
        assert [back(t) for t in range(8)] == [s(t) for t in range(8)]
        assert type(s).__name__ in repr(s)


def test_bounds() -> None:
    assert Linear(0.3, 0.1, 5).bounds() == (0.1, 0.3)
    assert Step([0.0, 0.5, 0.2], [1, 2]).bounds() == (0.0, 0.5)
    assert Warmup(Constant(0.4), 2, start=0.0).bounds() == (0.0, 0.4)
    assert Lambda(lambda t: t).bounds() is None
    assert Warmup(Lambda(lambda t: t), 2).bounds() is None


@settings(max_examples=60, deadline=None)
@given(
    start=st.floats(-5, 5),
    end=st.floats(-5, 5),
    duration=st.floats(0.1, 50),
    delay=st.floats(0, 20),
    t=st.floats(0, 200),
)
def test_ramps_stay_within_bounds(
    start: float, end: float, duration: float, delay: float, t: float
) -> None:
    for cls in (Linear, Cosine):
        s = cls(start, end, duration, delay)
        lo, hi = s.bounds()
        assert lo - 1e-9 <= s(t) <= hi + 1e-9
        assert s(0) == pytest.approx(start)
        assert s(delay + duration + t) == pytest.approx(end)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Linear(0, 1, duration=0), "duration"),
        (lambda: Cosine(0, 1, duration=2, delay=-1), "delay"),
        (lambda: Linear(0, float("nan"), 1), "end"),
        (lambda: Constant("0.1"), "value"),  # type: ignore[arg-type]
        (lambda: Step([0.1, 0.2], milestones=[]), "one more"),
        (lambda: Step([0.1, 0.2, 0.3], milestones=[5, 5]), "strictly increasing"),
        (lambda: Warmup(Linear(0, 1, 1), duration=-2), "duration"),
        (lambda: early(0.1, cutoff=3, shape="cubic"), "shape"),
        (lambda: make_schedule("cosinus", start=0, end=1, duration=1), "cosinus"),
        (lambda: Linear(0, 1, 2)(-1), "progress"),
    ],
)
def test_bad_input_raises_value_error(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="make_schedule"):
        as_schedule("cosine")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        Lambda(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a real number"):
        Lambda(lambda t: "high")(1)
    with pytest.raises(TypeError, match="abstract"):
        Schedule()  # type: ignore[abstract]
