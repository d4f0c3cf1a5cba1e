"""FusedElasticNetGrad (torch.compile) against the eager kernels and the float64 formula."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from reglight.penalties import FusedElasticNetGrad, elastic_net_grad_

# torch.compile's CPU backend writes C++: without a toolchain the fused path falls back (tested below)
needs_compiler = pytest.mark.usefixtures("needs_torch_compile")


def _tensors(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(s, generator=g, dtype=dtype) for s in [(3,), (40, 7), (4, 3, 5, 5)]]
    ts[2] = ts[2].contiguous(memory_format=torch.channels_last)
    for t in ts:
        t[t.abs() < 0.2] = 0.0  # exact zeros: sign(0) = 0 leaves their gradient alone
    return ts


@needs_compiler
def test_fused_gradient_matches_eager_kernels_and_formula_and_reuses_the_compiled_code() -> None:
    torch._dynamo.reset()  # an empty compile cache, so that the first call must compile
    fused = FusedElasticNetGrad()
    ps = _tensors(torch.float64)
    # (alpha, l1_ratio): elastic net, lasso, ridge, a tiny L1 share, the same again, the first again
    settings = [(1.0, 0.3), (0.05, 1.0), (0.4, 0.0), (5.0, 2e-4), (5.0, 2e-4), (1.0, 0.3)]
    for step, (alpha, l1_ratio) in enumerate(settings):
        base = [torch.randn_like(p) for p in ps]
        got, eager = [g.clone() for g in base], [g.clone() for g in base]
        graphs = counters["stats"]["unique_graphs"]
        fused(ps, got, alpha, l1_ratio)
        if step == 0:
            assert counters["stats"]["unique_graphs"] == graphs + 1
        else:  # new alpha / l1_ratio: the same compiled code, no new graph
            assert counters["stats"]["unique_graphs"] == graphs
        elastic_net_grad_(ps, eager, alpha, l1_ratio)
        for p, g0, a, b in zip(ps, base, got, eager):
            ref = g0 + alpha * l1_ratio * torch.sign(p) + alpha * (1 - l1_ratio) * p
            torch.testing.assert_close(a, ref, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
            assert torch.equal(a[p == 0], g0[p == 0])
    assert fused.failure is None


@needs_compiler
def test_fused_gradient_in_float32() -> None:
    ps = _tensors(torch.float32)
    base = [torch.randn_like(p) for p in ps]
    got = [g.clone() for g in base]
    FusedElasticNetGrad()(ps, got, alpha=0.05, l1_ratio=0.2)
    for p, g0, g in zip(ps, base, got):
        ref = g0.double() + 0.01 * torch.sign(p.double()) + 0.04 * p.double()
        torch.testing.assert_close(g.double(), ref, rtol=1e-6, atol=1e-6)


def test_fused_gradient_falls_back_to_eager_kernels_with_a_warning() -> None:
    fused = FusedElasticNetGrad()

    def broken(*args: object) -> None:
        raise RuntimeError("no C++ compiler found\nsecond line")

    fused._compiled._fn = broken
    ps = _tensors(torch.float64)
    got = [torch.zeros_like(p) for p in ps]
    with pytest.warns(RuntimeWarning, match="could not be compiled .*no C\\+\\+ compiler found"):
        fused(ps, got, alpha=1.0, l1_ratio=0.5)
    assert fused.failure == "RuntimeError: no C++ compiler found"
    for p, g in zip(ps, got):
        torch.testing.assert_close(g, 0.5 * torch.sign(p) + 0.5 * p)
    fused(
        ps, got, alpha=1.0, l1_ratio=0.5
    )  # no second warning: the eager kernels are used from now on


def test_fused_gradient_checks_the_lists() -> None:
    with pytest.raises(ValueError, match="`grads`"):
        FusedElasticNetGrad()([torch.ones(2)], [], 0.1, 0.1)
    with pytest.raises(ValueError, match="`l1_ratio`"):
        FusedElasticNetGrad()([torch.ones(2)], [torch.ones(2)], 0.1, 2.0)
