"""The model is left exactly as found; batch norm in eval and train mode; data-parallel `reduce`;
argument errors."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reglight import landscape as ls


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout(0.5), nn.Linear(4, 2)
    ).double()
    with torch.no_grad():  # running statistics that differ from any batch's
        model[1].running_mean.copy_(torch.tensor([0.3, -0.2, 0.1, 0.5]))
        model[1].running_var.copy_(torch.tensor([2.0, 0.5, 1.5, 0.8]))
    return model


def _bn_batches() -> list[tuple[Tensor, Tensor]]:
    g = _gen(1)
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (16,), generator=g)
    return [(x, y)]


def _loss(model: nn.Module, batch: Any) -> Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
        "flags": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "grad_values": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "tracking": [getattr(m, "track_running_stats", None) for m in model.modules()],
    }


def _assert_same(model: nn.Module, snap: dict[str, Any]) -> None:
    for p, q in zip(model.parameters(), snap["params"]):
        assert torch.equal(p.detach().view(torch.int64), q.view(torch.int64))  # bit-exact
    for b, c in zip(model.buffers(), snap["buffers"]):
        assert torch.equal(b, c)
    assert [p.requires_grad for p in model.parameters()] == snap["flags"]
    for p, g, v in zip(model.parameters(), snap["grads"], snap["grad_values"]):
        assert p.grad is g
        assert (v is None) or torch.equal(p.grad, v)
    assert [m.training for m in model.modules()] == snap["modes"]
    assert [getattr(m, "track_running_stats", None) for m in model.modules()] == snap["tracking"]


def _calls(batches: list[Any], tm: bool) -> dict[str, Callable[[nn.Module, Any], Any]]:
    """Every landscape function, called with `train_mode=tm` on `batches`."""
    vec = lambda m: [torch.ones_like(p) for p in m.parameters() if p.requires_grad]  # noqa: E731
    d = lambda m: ls.random_directions(m, generator=_gen())  # noqa: E731
    return {
        "hvp": lambda m, f: ls.hvp(m, f, batches, vec(m), train_mode=tm),
        "hvp_forward": lambda m, f: ls.hvp(
            m, f, batches, vec(m), method="forward_over_reverse", train_mode=tm
        ),
        "top_eigenvalues": lambda m, f: ls.top_eigenvalues(
            m, f, batches, max_iter=5, generator=_gen(), train_mode=tm
        ),
        "hessian_trace": lambda m, f: ls.hessian_trace(
            m, f, batches, n_samples=3, generator=_gen(), train_mode=tm
        ),
        "spectral_density": lambda m, f: ls.spectral_density(
            m, f, batches, n_iter=4, generator=_gen(), train_mode=tm
        ),
        "sharpness": lambda m, f: ls.sharpness(
            m, f, batches, steps=3, generator=_gen(), train_mode=tm
        ),
        "sharpness_adaptive": lambda m, f: ls.sharpness(
            m, f, batches, epsilon=0.1, adaptive=True, steps=3, generator=_gen(), train_mode=tm
        ),
        "slice_1d": lambda m, f: ls.slice_1d(m, f, batches, d(m), [-0.5, 0.5], train_mode=tm),
        "slice_2d": lambda m, f: ls.slice_2d(
            m, f, batches, d(m), d(m), [0.0, 1.0], [1.0], train_mode=tm
        ),
    }


@pytest.mark.parametrize("train_mode", [False, True])
@pytest.mark.parametrize("name", list(_calls([], False)))
def test_model_left_exactly_as_found_also_when_loss_fn_raises(name, train_mode):
    model = _bn_model().train()
    model[0].weight.grad = torch.full_like(model[0].weight, 0.25)  # a grad, and Nones elsewhere
    model[4].bias.requires_grad_(False)  # a frozen parameter
    model[2].eval()  # a submodule in another mode than its parent
    call = _calls(_bn_batches() * 2, train_mode)[name]  # loss_fn fails on the second batch
    snap = _snapshot(model)
    seen: list[bool] = []

    def watching_loss(m: nn.Module, batch: Any) -> Tensor:
        seen.append(m[1].training)
        assert not m[3].training  # dropout off in both modes
        return _loss(m, batch)

    call(model, watching_loss)
    _assert_same(model, snap)
    assert seen and all(t == train_mode for t in seen)

    count = {"n": 0}

    def failing_loss(m: nn.Module, batch: Any) -> Tensor:
        count["n"] += 1
        if count["n"] >= 2:
            raise RuntimeError("boom")
        return _loss(m, batch)

    with pytest.raises(RuntimeError, match="boom"):
        call(model, failing_loss)
    _assert_same(model, snap)


def _bn_reference_hessian(model: nn.Module, batch: Any, train_mode: bool) -> Tensor:
    """Dense Hessian of a hand-written functional copy of `_bn_model` (dropout off)."""
    x, y = batch
    bn = model[1]
    params = tuple(p.detach().clone() for p in model.parameters())

    def loss(w0: Tensor, b0: Tensor, g: Tensor, beta: Tensor, w4: Tensor, b4: Tensor) -> Tensor:
        h = F.linear(x, w0, b0)
        if train_mode:
            h = F.batch_norm(h, None, None, g, beta, training=True, eps=bn.eps)
        else:
            h = F.batch_norm(h, bn.running_mean, bn.running_var, g, beta, False, eps=bn.eps)
        return F.cross_entropy(F.linear(torch.tanh(h), w4, b4), y)

    blocks = torch.autograd.functional.hessian(loss, params)
    sizes = [p.numel() for p in params]
    return torch.cat(
        [
            torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(6)], 1)
            for i in range(6)
        ]
    )


@pytest.mark.parametrize("train_mode", [False, True])
def test_batch_norm_hessian_in_eval_and_train_mode(train_mode):
    model = _bn_model().train()
    batches = _bn_batches()
    ref = _bn_reference_hessian(model, batches[0], train_mode)
    v = [
        torch.linspace(-1, 1, p.numel(), dtype=torch.float64).view(p.shape)
        for p in model.parameters()
    ]
    mean, var = model[1].running_mean.clone(), model[1].running_var.clone()
    tracked = model[1].num_batches_tracked.clone()
    got = ls.hvp(model, _loss, batches, v, train_mode=train_mode)
    flat = torch.cat([t.reshape(-1) for t in got])
    torch.testing.assert_close(flat, ref @ torch.cat([t.reshape(-1) for t in v]))
    res = ls.top_eigenvalues(
        model, _loss, batches, k=2, tol=1e-10, train_mode=train_mode, generator=_gen()
    )
    torch.testing.assert_close(
        res.eigenvalues, torch.linalg.eigvalsh(ref).flip(0)[:2], rtol=1e-6, atol=1e-9
    )
    assert torch.equal(model[1].running_mean, mean)
    assert torch.equal(model[1].running_var, var)
    assert torch.equal(model[1].num_batches_tracked, tracked)


# --------------------------------------------------------------------------------------------------
# data parallelism: two "processes" as two threads, each with its own replica and its own batches
# --------------------------------------------------------------------------------------------------
class ThreadSum:
    """A `reduce` for `world` threads: every thread gets the sum of the tensors all threads passed."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.slots: list[Tensor | None] = [None] * world
        self.barrier = threading.Barrier(world)
        self.calls = [0] * world

    def for_rank(self, rank: int) -> Callable[[Tensor], Tensor]:
        def reduce(t: Tensor) -> Tensor:
            self.calls[rank] += 1
            self.slots[rank] = t.clone()
            self.barrier.wait()
            total = torch.stack([s for s in self.slots if s is not None]).sum(dim=0)
            self.barrier.wait()
            return total

        return reduce


def _run_ranks(
    fn: Callable[[nn.Module, list[Any], Callable[[Tensor], Tensor]], Any],
    model: nn.Module,
    shards: list[list[Any]],
) -> list[Any]:
    red = ThreadSum(len(shards))
    results: list[Any] = [None] * len(shards)
    errors: list[BaseException] = []

    def work(rank: int) -> None:
        try:
            torch.set_num_threads(1)
            results[rank] = fn(copy.deepcopy(model), shards[rank], red.for_rank(rank))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
            red.barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(len(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert red.calls[0] == red.calls[1]  # the same collectives on every rank
    return results


REDUCE_CASES: dict[str, Callable[..., Any]] = {
    "hvp": lambda m, b, r: torch.cat(
        [
            t.reshape(-1)
            for t in ls.hvp(m, _loss, b, [torch.ones_like(p) for p in m.parameters()], reduce=r)
        ]
    ),
    "top_eigenvalues": lambda m, b, r: (
        ls.top_eigenvalues(m, _loss, b, k=2, tol=1e-8, generator=_gen(), reduce=r).eigenvalues
    ),
    "hessian_trace": lambda m, b, r: (
        ls.hessian_trace(m, _loss, b, n_samples=4, tol=0, generator=_gen(), reduce=r).samples
    ),
    "spectral_density": lambda m, b, r: (
        ls.spectral_density(m, _loss, b, n_iter=5, generator=_gen(), reduce=r).nodes
    ),
    "sharpness": lambda m, b, r: torch.tensor(
        ls.sharpness(m, _loss, b, epsilon=0.05, steps=4, generator=_gen(), reduce=r).max_loss
    ),
    "slice_2d": lambda m, b, r: (
        ls.slice_2d(
            m,
            _loss,
            b,
            ls.random_directions(m, generator=_gen(1)),
            ls.random_directions(m, generator=_gen(2)),
            [-1.0, 0.0, 1.0],
            [0.5, 1.0],
            reduce=r,
        ).losses
    ),
}


@pytest.mark.parametrize("name", list(REDUCE_CASES))
def test_reduce_over_two_processes_equals_one_process(name):
    model = _bn_model()
    g = _gen(4)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (30,), generator=g)
    batches = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 30, 10)]
    fn = REDUCE_CASES[name]
    single = fn(copy.deepcopy(model), batches, None)
    per_rank = _run_ranks(fn, model, [batches[:2], batches[2:]])  # uneven: 2 batches and 1
    torch.testing.assert_close(per_rank[0], per_rank[1], rtol=0, atol=0)  # identical on every rank
    torch.testing.assert_close(per_rank[0], single, rtol=1e-9, atol=1e-12)


def test_reduce_without_generator_draws_the_same_vectors_on_every_rank():
    model = _bn_model()
    batches = _bn_batches() * 2

    def fn(m: nn.Module, b: list[Any], r: Callable[[Tensor], Tensor]) -> Tensor:
        return ls.hessian_trace(m, _loss, b, n_samples=3, tol=0, reduce=r).samples

    per_rank = _run_ranks(fn, model, [batches[:1], batches[1:]])
    assert torch.equal(per_rank[0], per_rank[1])


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def test_errors_name_the_argument_and_the_value():
    model = _bn_model()
    b = _bn_batches()
    ones = [torch.ones_like(p) for p in model.parameters()]
    with pytest.raises(
        ValueError, match=r"`loss_fn` must return a scalar Tensor .* shape \(16, 2\)"
    ):
        ls.hessian_trace(model, lambda m, batch: m(batch[0]), b, generator=_gen())
    with pytest.raises(TypeError, match="`loss_fn` must return a scalar Tensor, got float"):
        ls.hvp(model, lambda m, batch: 1.0, b, ones)
    with pytest.raises(ValueError, match="`batches` is empty"):
        ls.top_eigenvalues(model, _loss, [])
    with pytest.raises(TypeError, match=r"`batches` must be an iterable of batches .* \[batch\]"):
        ls.top_eigenvalues(model, _loss, b[0][0])
    with pytest.raises(ValueError, match="`k` must be an integer >= 1, got 0"):
        ls.top_eigenvalues(model, _loss, b, k=0)
    with pytest.raises(
        ValueError, match=r"`k` must be at most the number of selected parameters \(12\), got 13"
    ):
        ls.top_eigenvalues(model, _loss, b, k=13, include="0.weight")
    with pytest.raises(ValueError, match=r"no parameter selected \(include=None, exclude='\*'\)"):
        ls.hessian_trace(model, _loss, b, exclude="*")
    with pytest.raises(ValueError, match="`include` entry 'nope' matches no parameter"):
        ls.hvp(model, _loss, b, ones, include="nope")
    with pytest.raises(ValueError, match="`method` must be one of"):
        ls.hvp(model, _loss, b, ones, method="finite_differences")
    with pytest.raises(
        ValueError, match=r"`vectors` entry for parameter '0.weight' must have shape \(4, 3\)"
    ):
        ls.hvp(model, _loss, b, [torch.ones(3), *ones[1:]])
    with pytest.raises(ValueError, match="`vectors` must hold one tensor per selected parameter"):
        ls.hvp(model, _loss, b, ones[:2])
    with pytest.raises(ValueError, match="`tol` must be a finite number > 0, got -1"):
        ls.top_eigenvalues(model, _loss, b, tol=-1)
    with pytest.raises(ValueError, match="`epsilon` must be a finite number > 0, got 0"):
        ls.sharpness(model, _loss, b, epsilon=0)
    with pytest.raises(ValueError, match="`normalization` must be one of"):
        ls.random_directions(model, "unit")
    with pytest.raises(ValueError, match="give exactly one of `direction` and `target`"):
        ls.slice_1d(model, _loss, b)
    with pytest.raises(
        ValueError, match="`direction` has entries for parameters that are not selected"
    ):
        ls.slice_1d(model, _loss, b, {"nope": torch.ones(1)})
    with pytest.raises(ValueError, match="`alphas` must be a non-empty sequence"):
        ls.slice_1d(model, _loss, b, ls.random_directions(model), [])
    with pytest.raises(TypeError, match=r"`generator` must be a torch\.Generator"):
        ls.hessian_trace(model, _loss, b, generator=0)
    with pytest.raises(TypeError, match="`loss_fn` must be callable"):
        ls.hessian_trace(model, "mse", b)
    with pytest.raises(ValueError, match="`reduce` must return a tensor shaped like its input"):
        ls.hvp(model, _loss, b, ones, reduce=lambda t: t.sum())
    with pytest.raises(ValueError, match="`grid` must be an integer >= 2, got 1"):
        ls.spectral_density(model, _loss, b, grid=1)
