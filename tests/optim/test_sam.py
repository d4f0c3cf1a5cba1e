"""SAM / ASAM against hand-written float64 references and pytorch_optimizer's SAM."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from _sam_reference import AdamWRef, SGDRef, perturbation, sam_reference
from torch import Tensor, nn

from reglight.optim import (
    NORM_AND_BIAS,
    SAM,
    frozen_running_stats,
    perturbation_groups,
    sam_perturbation,
)

STEPS = 5


def make_problem(seed: int = 0) -> tuple[nn.Module, list[tuple[Tensor, Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7)
    batches = [
        (
            torch.randn(16, 5, generator=g, dtype=torch.float64),
            torch.randn(16, 2, generator=g, dtype=torch.float64),
        )
        for _ in range(STEPS)
    ]
    return model, batches


def functional_loss(batches: list[tuple[Tensor, Tensor]]):
    def loss_fn(params: list[Tensor], step: int) -> Tensor:
        w1, b1, w2, b2 = params
        x, y = batches[step]
        return F.mse_loss(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)

    return loss_fn


def mse_closure(
    opt: torch.optim.Optimizer,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    calls: list[int] | None = None,
) -> Callable[[], Tensor]:
    def closure() -> Tensor:
        if calls is not None:
            calls.append(1)
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        return loss

    return closure


def run_ours(
    model: nn.Module, batches: list[tuple[Tensor, Tensor]], opt: torch.optim.Optimizer
) -> None:
    for x, y in batches:
        opt.step(mse_closure(opt, model, x, y))


@pytest.mark.parametrize(
    ("adaptive", "eta"),
    [(False, 0.0), (True, 0.01), (True, 0.0)],
    ids=["sam", "asam", "asam-eta0"],  # eta = 0: T_w = |w| is taken from w itself, no scratch
)
@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_sam_matches_float64_reference(base: str, adaptive: bool, eta: float) -> None:
    model, batches = make_problem()
    w0 = [p.detach().clone() for p in model.parameters()]
    rho = 0.5 if adaptive else 0.05
    if base == "sgd":
        opt = SAM(
            model.parameters(),
            torch.optim.SGD,
            rho=rho,
            adaptive=adaptive,
            eta=eta,
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-3,
        )
        ref_base: SGDRef | AdamWRef = SGDRef(lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        opt = SAM(
            model.parameters(),
            torch.optim.AdamW,
            rho=rho,
            adaptive=adaptive,
            eta=eta,
            lr=1e-2,
            weight_decay=0.05,
        )
        ref_base = AdamWRef(lr=1e-2, weight_decay=0.05)
    run_ours(model, batches, opt)
    expected = sam_reference(w0, functional_loss(batches), STEPS, ref_base, rho, adaptive, eta)
    for p, q in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), q, rtol=1e-10, atol=1e-12)
    # the reference moved: SAM is not the base optimizer
    plain = copy.deepcopy(w0)
    assert not torch.allclose(expected[0], plain[0])


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_sam_matches_pytorch_optimizer(adaptive: bool) -> None:
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    ours, batches = make_problem()
    theirs = copy.deepcopy(ours)
    rho = 0.5 if adaptive else 0.05
    opt = SAM(
        ours.parameters(),
        torch.optim.SGD,
        rho=rho,
        adaptive=adaptive,
        eta=0.0,
        lr=0.1,
        momentum=0.9,
    )
    run_ours(ours, batches, opt)
    anchor = pytorch_optimizer.SAM(
        theirs.parameters(), torch.optim.SGD, rho=rho, adaptive=adaptive, lr=0.1, momentum=0.9
    )
    for x, y in batches:
        closure = mse_closure(anchor, theirs, x, y)
        closure()  # pytorch_optimizer's step expects the first gradient to be there already
        anchor.step(closure)
    # pytorch_optimizer computes the gradient norm in float32 (its get_global_gradient_norm)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_excluded_parameters_are_not_perturbed_and_leave_the_norm() -> None:
    model, batches = make_problem()
    w0 = [p.detach().clone() for p in model.parameters()]
    groups = perturbation_groups(model, exclude="*.bias")
    opt = SAM(groups, torch.optim.SGD, rho=0.1, lr=0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert [g["rho"] for g in opt.param_groups] == [0.1, 0.0]
    run_ours(model, batches, opt)
    expected = sam_reference(
        w0,
        functional_loss(batches),
        STEPS,
        SGDRef(lr=0.1),
        0.1,
        perturbed=[True, False, True, False],
    )
    for p, q in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), q, rtol=1e-10, atol=1e-12)


def test_norm_and_bias_patterns_select_weights_only() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LayerNorm(8), nn.Linear(8, 1)
    )
    perturbed = {id(p) for p in perturbation_groups(model, exclude=NORM_AND_BIAS)[0]["params"]}
    assert perturbed == {id(model[0].weight), id(model[4].weight)}
    with pytest.raises(ValueError, match=r"`include` entry 'encoder\.\*'"):
        perturbation_groups(model, include="encoder.*")


def test_functional_perturbation_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(3)
    params = [
        torch.randn(4, 3, generator=g, dtype=torch.float64),
        torch.randn(3, generator=g, dtype=torch.float64),
    ]
    grads = [torch.randn_like(p) for p in params]
    for adaptive, eta in ((False, 0.0), (True, 0.0), (True, 0.01)):
        got = sam_perturbation(params, grads, rho=0.3, adaptive=adaptive, eta=eta)
        want = perturbation(params, grads, 0.3, adaptive, eta)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # the inputs are left alone
    assert sam_perturbation(params, grads)[0] is not grads[0]


@pytest.mark.parametrize("momentum", [0.1, None], ids=["ema", "cumulative"])
def test_batchnorm_statistics_updated_once_per_step(momentum: float | None) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 6), nn.BatchNorm1d(6, momentum=momentum), nn.ReLU(), nn.Linear(6, 1)
    )
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.2, lr=0.1, model=model)
    for _ in range(3):
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        # the reference: one plain training-mode forward at the step's starting weights
        reference = copy.deepcopy(model)
        reference(x)
        run_ours(model, [(x, y)], opt)
        bn, ref_bn = model[1], reference[1]
        torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(bn.running_var, ref_bn.running_var, rtol=0, atol=0)
        assert int(bn.num_batches_tracked) == int(ref_bn.num_batches_tracked)
    # without `model`, both passes update the statistics: the bug the argument prevents
    model2 = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, momentum=momentum))
    opt2 = SAM(model2.parameters(), torch.optim.SGD, rho=0.2, lr=0.1)
    x = torch.randn(16, 4)

    def closure() -> Tensor:
        opt2.zero_grad()
        loss = model2(x).pow(2).mean()
        loss.backward()
        return loss

    opt2.step(closure)
    assert int(model2[1].num_batches_tracked) == 2


def test_frozen_running_stats_restores_every_buffer() -> None:
    from reglight.nn import BatchRenorm1d, GhostBatchNorm1d

    model = nn.Sequential(
        GhostBatchNorm1d(3, virtual_batch_size=4),
        BatchRenorm1d(3),
        nn.BatchNorm1d(3, momentum=None),
    )
    model(torch.randn(8, 3))
    before = copy.deepcopy(model.state_dict())
    with frozen_running_stats(model):
        model(torch.randn(8, 3) * 3 + 1)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0)


def test_state_dict_round_trip_equals_uninterrupted_run() -> None:
    model, batches = make_problem()
    twin = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.1, lr=1e-2)
    run_ours(model, batches, opt)
    opt2 = SAM(twin.parameters(), torch.optim.AdamW, rho=0.1, lr=1e-2)
    run_ours(twin, batches[:2], opt2)
    saved, weights = copy.deepcopy(opt2.state_dict()), copy.deepcopy(twin.state_dict())
    assert saved["param_groups"][0]["rho"] == 0.1
    fresh, _ = make_problem(seed=1)
    fresh.load_state_dict(weights)
    opt3 = SAM(fresh.parameters(), torch.optim.AdamW, rho=0.7, lr=5.0)  # overwritten by the state
    opt3.load_state_dict(saved)
    assert opt3.param_groups is opt3.base_optimizer.param_groups
    assert opt3.param_groups[0]["rho"] == 0.1 and opt3.param_groups[0]["lr"] == 1e-2
    run_ours(fresh, batches[2:], opt3)
    for p, q in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_zero_rho_is_one_plain_base_step() -> None:
    model, batches = make_problem()
    twin = copy.deepcopy(model)
    calls = []
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.0, lr=0.1, momentum=0.9)
    base = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        opt.step(mse_closure(opt, model, x, y, calls))
        base.zero_grad()
        F.mse_loss(twin(x), y).backward()
        base.step()
    assert len(calls) == len(batches)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_lr_scheduler_sees_the_base_optimizer_lr() -> None:
    model, batches = make_problem()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    run_ours(model, batches[:1], opt)
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_refuses_accumulated_gradients_and_missing_closure() -> None:
    model, batches = make_problem()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    x, y = batches[0]
    F.mse_loss(model(x), y).backward()  # a micro-batch of gradient accumulation
    with pytest.raises(RuntimeError, match=r"accumulate_grad_batches"):
        opt.step(lambda: F.mse_loss(model(x), y))
    with pytest.raises(RuntimeError, match=r"needs a closure.*16-mixed"):
        opt.step()


def test_manual_first_and_second_step_equal_step() -> None:
    model, batches = make_problem()
    twin = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    run_ours(model, batches, opt)
    opt2 = SAM(twin.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    for x, y in batches:
        F.mse_loss(twin(x), y).backward()
        opt2.first_step()
        assert opt2.perturbed
        F.mse_loss(twin(x), y).backward()
        opt2.second_step()
        opt2.zero_grad()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_argument_validation_names_argument_and_value() -> None:
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=r"`rho` must be a finite number >= 0, got -0.1"):
        SAM(params, torch.optim.SGD, rho=-0.1, lr=0.1)
    with pytest.raises(
        TypeError, match=r"`base_optimizer` must be a torch.optim.Optimizer subclass"
    ):
        SAM(params, torch.optim.SGD(params, lr=0.1), lr=0.1)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"`base_optimizer` must be a torch.optim.Optimizer subclass"
    ):
        SAM(params, nn.Linear, lr=0.1)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"`param_groups\[0\]\['rho'\]` must be a finite number >= 0, got -1"
    ):
        SAM([{"params": params, "rho": -1}], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match=r"`eta`"):
        SAM(params, torch.optim.SGD, eta=-1.0, lr=0.1)


def test_perturb_flag_survives_a_zero_rho_checkpoint() -> None:
    model, batches = make_problem()
    opt = SAM(perturbation_groups(model, exclude="*.bias"), torch.optim.SGD, rho=0.1, lr=0.1)
    assert [g["perturb"] for g in opt.param_groups] == [True, False]
    opt.param_groups[0]["rho"] = 0.0  # a warm-up schedule at rho = 0
    calls: list[int] = []
    x, y = batches[0]
    opt.step(mse_closure(opt, model, x, y, calls))
    assert len(calls) == 1  # nothing perturbed: one pass
    fresh = SAM(perturbation_groups(model, exclude="*.bias"), torch.optim.SGD, rho=0.3, lr=0.1)
    fresh.load_state_dict(opt.state_dict())
    assert [(g["rho"], g["perturb"]) for g in fresh.param_groups] == [(0.0, True), (0.0, False)]
    fresh.param_groups[1]["rho"] = 0.5  # perturb=False: still not perturbed
    fresh.step(mse_closure(fresh, model, x, y, calls))
    assert len(calls) == 2
