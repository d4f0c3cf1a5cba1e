"""Small float64 problems with their dense Hessian (``torch.autograd.functional.hessian``, row by row),
the reference of the tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F


def cross_entropy_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


@dataclass
class Problem:
    """A model, its batches, a loss, and the dense Hessian of the mean loss over all parameters."""

    model: nn.Module
    batches: list[Any]
    loss_fn: Callable[[nn.Module, Any], Tensor]
    hessian: Tensor
    loss: float

    @property
    def eigenvalues(self) -> Tensor:
        return torch.linalg.eigvalsh(self.hessian)

    @property
    def one_batch(self) -> list[Any]:
        """All the data as one batch: the same mean loss (the batches have equal sizes)."""
        return [tuple(torch.cat(parts) for parts in zip(*self.batches))]

    def flat(self, tensors: list[Tensor]) -> Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])


def dense_hessian(
    model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], batches: list[Any]
) -> tuple[Tensor, float]:
    """Hessian of the mean loss over every parameter (eval mode), flattened in parameter order."""
    model.eval()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone() for p in model.parameters())

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, batch: Any) -> Tensor:
            return loss_fn(self.model, batch)

    wrapper = Wrapper()

    def mean_loss(*ps: Tensor) -> Tensor:
        state = {f"model.{n}": p for n, p in zip(names, ps)}
        return torch.stack([functional_call(wrapper, state, (b,)) for b in batches]).mean()

    blocks = torch.autograd.functional.hessian(mean_loss, params)
    sizes = [p.numel() for p in params]
    rows = [
        torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(len(params))], dim=1)
        for i in range(len(params))
    ]
    with torch.no_grad():
        loss = float(mean_loss(*params))
    return torch.cat(rows, dim=0), loss


def make_mlp_problem(seed: int = 0) -> Problem:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(48, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (48,), generator=g)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)]
    h, loss = dense_hessian(model, cross_entropy_loss, batches)
    return Problem(model, batches, cross_entropy_loss, h, loss)


def make_conv_problem(seed: int = 0) -> Problem:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 2 * 2, 3)
        ).double()
    x = torch.randn(24, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    batches = [(x[:12], y[:12]), (x[12:], y[12:])]
    h, loss = dense_hessian(model, cross_entropy_loss, batches)
    return Problem(model, batches, cross_entropy_loss, h, loss)


@pytest.fixture(scope="module")
def mlp_problem() -> Problem:
    return make_mlp_problem()


@pytest.fixture(scope="module")
def conv_problem() -> Problem:
    return make_conv_problem()


@pytest.fixture(params=["mlp", "conv"], scope="module")
def problem(request: pytest.FixtureRequest) -> Problem:
    return make_mlp_problem() if request.param == "mlp" else make_conv_problem()
