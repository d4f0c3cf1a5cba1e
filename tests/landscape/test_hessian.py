"""Curvature functions against the dense Hessian of small float64 networks (``torch.func.hessian``)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from reglight.landscape import hessian_trace, hvp, spectral_density, top_eigenvalues


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse", "auto"])
def test_hvp_equals_dense_hessian_times_vector(problem, method):
    g = _gen(1)
    vectors = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in problem.model.parameters()]
    got = hvp(problem.model, problem.loss_fn, problem.batches, vectors, method=method)
    expected = problem.hessian @ problem.flat(vectors)
    torch.testing.assert_close(problem.flat(got), expected, rtol=1e-10, atol=1e-12)


def test_hvp_on_a_selection_is_the_hessian_block(mlp_problem):
    model = mlp_problem.model
    sizes = [p.numel() for p in model.parameters()]
    v = [torch.ones(6, 4, dtype=torch.float64)]  # parameter "0.weight", the first block
    got = hvp(model, mlp_problem.loss_fn, mlp_problem.batches, v, include="0.weight")
    block = mlp_problem.hessian[: sizes[0], : sizes[0]]
    torch.testing.assert_close(got[0].reshape(-1), block @ v[0].reshape(-1))


def _check_top3(problem, method):
    exact = problem.eigenvalues.flip(0)
    if method == "power":  # power iteration finds the largest magnitudes
        exact = exact[exact.abs().argsort(descending=True)][:3].sort(descending=True).values
    res = top_eigenvalues(
        problem.model,
        problem.loss_fn,
        problem.one_batch,
        k=3,
        tol=1e-9,
        max_iter=2000 if method == "power" else 200,
        method=method,
        generator=_gen(),
    )
    assert res.eigenvalues.shape == (3,)
    assert res.converged
    torch.testing.assert_close(res.eigenvalues, exact[:3], rtol=1e-3, atol=0)
    # the eigenvectors are unit vectors with H u = lambda u
    for value, vec in zip(res.eigenvalues, res.eigenvectors):
        u = problem.flat(vec)
        assert math.isclose(float(u.norm()), 1.0, rel_tol=1e-6)
        residual = problem.hessian @ u - value * u
        assert float(residual.norm()) < 2e-2 * float(exact.abs().max())


def test_top3_eigenvalues_lanczos_within_0_1_percent(problem):
    _check_top3(problem, "lanczos")


def test_top3_eigenvalues_power_iteration_within_0_1_percent(mlp_problem):
    _check_top3(mlp_problem, "power")


def test_lanczos_restarts_after_an_invariant_subspace():
    """A rank-1 Hessian: the Krylov space of the start vector has dimension 1; the second eigenvalue (0)
    comes from a restart."""
    model = torch.nn.Linear(3, 1, bias=False).double()
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    res = top_eigenvalues(model, lambda m, b: 0.5 * m(b).pow(2).sum(), [x], k=2, generator=_gen())
    torch.testing.assert_close(res.eigenvalues, torch.tensor([14.0, 0.0], dtype=torch.float64))
    u = torch.cat([t.reshape(-1) for t in res.eigenvectors[0]])
    torch.testing.assert_close(u.abs(), x[0] / x[0].norm())


def test_lanczos_needs_fewer_products_than_power_iteration(mlp_problem):
    args = (mlp_problem.model, mlp_problem.loss_fn, mlp_problem.one_batch)
    lanczos = top_eigenvalues(*args, k=3, tol=1e-6, generator=_gen())
    power = top_eigenvalues(*args, k=3, tol=1e-6, max_iter=1000, method="power", generator=_gen())
    assert lanczos.n_hvp < power.n_hvp


def test_hutchinson_trace_within_three_standard_errors(problem):
    res = hessian_trace(
        problem.model, problem.loss_fn, problem.one_batch, n_samples=200, tol=0, generator=_gen(3)
    )
    exact = float(problem.hessian.trace())
    assert res.n_samples == 200
    assert res.std_error > 0
    assert abs(res.trace - exact) <= 3 * res.std_error
    # the standard error of the mean, from the samples
    assert math.isclose(res.std_error, float(res.samples.std() / math.sqrt(200)), rel_tol=1e-12)


def test_hutch_plus_plus_sketch(mlp_problem):
    model, loss_fn, batches = mlp_problem.model, mlp_problem.loss_fn, mlp_problem.one_batch
    exact = float(mlp_problem.hessian.trace())
    n = mlp_problem.hessian.shape[0]
    # a sketch of full rank captures the whole trace exactly: the deflated residual is zero
    full = hessian_trace(model, loss_fn, batches, n_samples=3, tol=0, sketch=n, generator=_gen())
    assert math.isclose(full.trace, exact, rel_tol=1e-9)
    assert math.isclose(full.low_rank, exact, rel_tol=1e-9)
    assert full.n_hvp == 2 * n + 3
    # a small sketch: unbiased, within 3 standard errors, and a smaller error than plain Hutchinson
    res = hessian_trace(model, loss_fn, batches, n_samples=60, tol=0, sketch=10, generator=_gen(2))
    plain = hessian_trace(model, loss_fn, batches, n_samples=60, tol=0, generator=_gen(2))
    assert abs(res.trace - exact) <= 3 * res.std_error
    assert res.std_error < plain.std_error


def test_trace_stops_early_at_the_relative_standard_error(mlp_problem):
    res = hessian_trace(
        mlp_problem.model,
        mlp_problem.loss_fn,
        mlp_problem.one_batch,
        n_samples=500,
        tol=0.05,
        generator=_gen(),
    )
    assert 10 <= res.n_samples < 500
    assert res.std_error <= 0.05 * abs(res.trace)


def test_spectral_density_full_lanczos_recovers_the_eigenvalues(mlp_problem):
    """With as many steps as the Krylov space allows, the nodes are exact eigenvalues and the
    weights' moments are those of the probe: E[sum tau theta^p] = tr(H^p)/n."""
    h, ev = mlp_problem.hessian, mlp_problem.eigenvalues
    n = h.shape[0]
    sd = spectral_density(
        mlp_problem.model,
        mlp_problem.loss_fn,
        mlp_problem.one_batch,
        n_probes=12,
        n_iter=n,
        generator=_gen(5),
    )
    # every node with a visible weight is an exact eigenvalue
    visible = sd.weights > 1e-8
    dist = (sd.nodes[visible][:, None] - ev[None, :]).abs().min(dim=1).values
    assert float(dist.max()) < 1e-6 * float(ev.abs().max())
    torch.testing.assert_close(sd.weights.sum(dim=1), torch.ones(12, dtype=torch.float64))
    # moments: probe average vs exact, within sampling error (unit Gaussian probes)
    for p in (1, 2):
        per_probe = (sd.weights * sd.nodes**p).sum(dim=1)
        exact = float((ev**p).mean())
        se = float(per_probe.std() / math.sqrt(12))
        assert abs(float(per_probe.mean()) - exact) <= 4 * se + 1e-12
    # the smoothed density integrates to 1 and puts the exact histogram's mass in each interval
    dx = float(sd.grid[1] - sd.grid[0])
    assert math.isclose(float(sd.density.sum()) * dx, 1.0, rel_tol=1e-3)
    top = float(ev.max())
    mass_top = float(sd.density[sd.grid > 0.5 * top].sum()) * dx
    exact_top = float((ev > 0.5 * top).double().mean())
    assert abs(mass_top - exact_top) < 0.05


def test_deterministic_for_a_seeded_generator_and_global_rng_untouched(mlp_problem):
    args = (mlp_problem.model, mlp_problem.loss_fn, mlp_problem.batches)
    state = torch.get_rng_state()
    a = hessian_trace(*args, n_samples=5, tol=0, generator=_gen(7))
    b = hessian_trace(*args, n_samples=5, tol=0, generator=_gen(7))
    e1 = top_eigenvalues(*args, k=2, generator=_gen(7))
    e2 = top_eigenvalues(*args, k=2, generator=_gen(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.samples, b.samples)
    assert torch.equal(e1.eigenvalues, e2.eigenvalues)


def _separated_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Least squares with the Hessian $X^\\top X = U \\operatorname{diag}(\\lambda) U^\\top$: a top eigenvalue
    of 50 above a bulk in [0, 1]."""
    g = _gen(3)
    n = 40
    eigs = torch.cat([torch.tensor([50.0]), torch.rand(n - 1, generator=g)]).double()
    u = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    x = eigs.sqrt()[:, None] * u.T  # x^T x = u diag(eigs) u^T
    model = torch.nn.Linear(n, 1, bias=False).double()
    return model, x, eigs.sort(descending=True).values


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_lanczos_stopping_bound_holds(problem, tol):
    """The returned eigenvalues are within `tol` relatively of the dense Hessian's (float64)."""
    exact = problem.eigenvalues.flip(0)
    for seed in range(3):
        res = top_eigenvalues(
            problem.model, problem.loss_fn, problem.one_batch, k=3, tol=tol, generator=_gen(seed)
        )
        assert res.converged
        err = (res.eigenvalues - exact[:3]).abs()
        assert bool((err <= tol * exact[:3].abs()).all()), (seed, err / exact[:3].abs())


def test_lanczos_stops_earlier_than_the_relative_change_rule():
    """On a well-separated spectrum the residual bound stops before PyHessian's rule (the top Ritz value
    changes by less than `tol` relatively between two steps) would, and is as accurate."""
    model, x, exact = _separated_problem()

    def loss_fn(m, b):
        return 0.5 * m(b).pow(2).sum()

    tol = 1e-3
    for seed in range(3):
        res = top_eigenvalues(model, loss_fn, [x], tol=tol, generator=_gen(seed))
        assert res.converged
        assert abs(float(res.eigenvalues[0]) - float(exact[0])) <= tol * float(exact[0])
        # the relative-change rule on the same Krylov spaces: the m-step Ritz values, m = 1, 2, ...
        # (a tolerance no step meets runs exactly `max_iter` steps from the same start vector)
        ritz = [
            float(
                top_eigenvalues(
                    model, loss_fn, [x], tol=1e-300, max_iter=m, generator=_gen(seed)
                ).eigenvalues[0]
            )
            for m in range(2, 12)
        ]
        old = next(
            m + 3
            for m, (a, b) in enumerate(itertools.pairwise(ritz))
            if abs(b - a) < tol * (abs(a) + 1e-6)
        )
        assert res.n_hvp < old, (res.n_hvp, old)


class _TinyAttention(torch.nn.Module):
    """One self-attention layer through `scaled_dot_product_attention` (fused kernels by default)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(4, 12)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)
        h = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(h.squeeze(1).mean(1))


@pytest.mark.parametrize("hvp_method", ["double_backward", "forward_over_reverse"])
def test_top_eigenvalue_through_scaled_dot_product_attention(hvp_method: str) -> None:
    """The fused attention kernels have no double backward; the Hessian goes through the math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = _TinyAttention()
    x, y = torch.randn(8, 5, 4), torch.randint(0, 2, (8,))

    def loss_fn(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    result = top_eigenvalues(
        model, loss_fn, [(x, y)], k=1, max_iter=60, tol=1e-8, hvp_method=hvp_method
    )
    params = dict(model.named_parameters())
    names = list(params)

    def flat_loss(flat: torch.Tensor) -> torch.Tensor:
        chunks = flat.split([p.numel() for p in params.values()])
        values = {n: c.view_as(params[n]) for n, c in zip(names, chunks)}
        with sdpa_kernel(SDPBackend.MATH):
            return loss_fn(lambda z: torch.func.functional_call(model, values, (z,)), (x, y))  # type: ignore[arg-type]

    flat = torch.cat([p.detach().flatten() for p in params.values()])
    dense = torch.autograd.functional.hessian(flat_loss, flat)
    expected = torch.linalg.eigvalsh(dense.double())[-1]
    assert float(result.eigenvalues[0]) == pytest.approx(float(expected), rel=1e-4)
