"""The penalties' `alpha`/`l1_ratio` against torch's `weight_decay` and scikit-learn's estimators."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import Lasso, Ridge

from reglight.penalties import L1, L2, ElasticNet, GroupLasso, elastic_net_prox_


def _params() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(5, 4, generator=g), torch.randn(4, generator=g)]


@pytest.mark.parametrize(
    "make",
    [
        lambda ps, wd: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=wd),
        lambda ps, wd: torch.optim.SGD(ps, lr=0.1, weight_decay=wd, foreach=False),
        lambda ps, wd: torch.optim.Adam(ps, lr=0.01, weight_decay=wd),
        lambda ps, wd: torch.optim.Adam(ps, lr=0.01, weight_decay=wd, foreach=False),
    ],
    ids=["sgd-momentum", "sgd-for-loop", "adam", "adam-for-loop"],
)
def test_l2_gradient_is_torch_weight_decay_bit_for_bit(
    make: Callable[[list[torch.Tensor], float], torch.optim.Optimizer],
) -> None:
    alpha = 0.05
    coupled = [p.clone().requires_grad_(True) for p in _params()]
    hooked = [p.clone().requires_grad_(True) for p in _params()]
    opt_decay, opt_plain = make(coupled, alpha), make(hooked, 0.0)
    penalty = L2(alpha)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in coupled]
        for p, q, grad in zip(coupled, hooked, grads):
            p.grad, q.grad = grad.clone(), grad.clone()
        penalty.add_grad_(hooked)
        opt_decay.step()
        opt_plain.step()
    assert all(torch.equal(p, q) for p, q in zip(coupled, hooked))


def _regression(n: int = 60, p: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, p))
    y = x @ np.r_[3.0, -2.0, 1.5, np.zeros(p - 3)] + 0.5 * rng.standard_normal(n)
    return x, y


@pytest.mark.parametrize("l1_ratio", [1.0, 0.7, 0.2])
def test_prox_is_the_coordinate_descent_update_of_sklearn(l1_ratio: float) -> None:
    """sklearn's fitted coefficients are a fixed point of cyclic coordinate descent, whose update of
    coordinate j is a gradient step on (1/2n)||y - Xw||² with step n/||x_j||² and then our prox."""
    x, y = _regression()
    n = len(y)
    alpha = 0.1
    est = SkElasticNet(alpha=alpha, l1_ratio=l1_ratio, fit_intercept=False, tol=1e-14)
    w = torch.tensor(est.fit(x, y).coef_)
    X, Y = torch.tensor(x), torch.tensor(y)
    penalty = ElasticNet(alpha, l1_ratio)
    for j in range(x.shape[1]):
        step = n / float(X[:, j] @ X[:, j])
        resid = Y - X @ w
        wj = w[j : j + 1] + step * (X[:, j] @ resid) / n
        penalty.prox_([wj], step)
        assert float(wj) == pytest.approx(float(w[j]), abs=1e-9)
    assert int((w == 0).sum()) > 0 or l1_ratio < 1.0  # the lasso's zeros are reproduced too


@pytest.mark.parametrize(("l1_ratio", "estimator"), [(1.0, Lasso), (0.5, SkElasticNet)])
def test_value_is_sklearns_penalty_term_and_its_minimizer(l1_ratio: float, estimator: type) -> None:
    """With sklearn's objective (1/2n)||y - Xw||² + penalty, a proximal-gradient step from sklearn's
    solution stays there, and its objective is below that of nearby points."""
    x, y = _regression()
    alpha = 0.2
    kwargs = {"l1_ratio": l1_ratio} if estimator is SkElasticNet else {}
    coef = estimator(alpha=alpha, fit_intercept=False, tol=1e-14, **kwargs).fit(x, y).coef_
    X, Y, w = torch.tensor(x), torch.tensor(y), torch.tensor(coef)
    penalty = ElasticNet(alpha, l1_ratio) if l1_ratio < 1 else L1(alpha)
    step = len(y) / float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    moved = w - step * X.T @ (X @ w - Y) / len(y)
    penalty.prox_([moved], step)
    torch.testing.assert_close(moved, w, rtol=0, atol=1e-9)

    def objective(v: torch.Tensor) -> float:
        return float((Y - X @ v).square().sum() / (2 * len(y)) + penalty.value([v]))

    # the objective written out in scikit-learn's documentation, term by term
    sk = float((Y - X @ w).square().sum()) / (2 * len(y))
    sk += alpha * l1_ratio * float(w.abs().sum()) + alpha * (1 - l1_ratio) / 2 * float(w @ w)
    assert objective(w) == pytest.approx(sk, rel=1e-12)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert objective(w) <= objective(
            w + 1e-3 * torch.randn(w.shape, generator=g, dtype=w.dtype)
        )


def test_l2_minimizer_is_sklearn_ridge() -> None:
    """Ridge(alpha) minimizes ||y - Xw||² + alpha ||w||²: twice ½||y - Xw||² + L2(alpha)."""
    x, y = _regression()
    coef = Ridge(alpha=3.0, fit_intercept=False, solver="cholesky").fit(x, y).coef_
    w = torch.tensor(coef, requires_grad=True)
    X, Y = torch.tensor(x), torch.tensor(y)
    loss = 0.5 * (Y - X @ w).square().sum() + L2(3.0).value([w])
    (grad,) = torch.autograd.grad(loss, [w])
    assert float(grad.abs().max()) < 1e-9
    w.grad = torch.zeros_like(w)
    L2(3.0).add_grad_([w])
    torch.testing.assert_close(w.grad, 3.0 * w.detach(), rtol=0, atol=0)


def test_group_lasso_with_groups_of_one_is_l1() -> None:
    v = torch.tensor([1.5, -0.2, 0.0, -3.0], dtype=torch.float64)
    a, b = v.clone(), v.clone()
    GroupLasso(0.4).prox_([a], 0.5)
    L1(0.4).prox_([b], 0.5)
    assert torch.equal(a, b)
    assert float(GroupLasso(0.4).value([v])) == pytest.approx(float(L1(0.4).value([v])))


def test_functional_forms_validate_alpha_and_l1_ratio() -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        elastic_net_prox_([torch.ones(2)], 1.0, alpha=-1.0, l1_ratio=0.5)
    with pytest.raises(ValueError, match="`l1_ratio`"):
        elastic_net_prox_([torch.ones(2)], 1.0, alpha=1.0, l1_ratio=1.5)
