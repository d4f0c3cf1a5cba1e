"""GhostBatchNorm, BatchRenorm, LayerNorm2d against torch's batch/layer norm and the papers' formulas."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglight import _compile
from reglight._compile import FallbackCompiled
from reglight.nn import (
    BatchRenorm1d,
    BatchRenorm2d,
    BatchRenorm3d,
    GhostBatchNorm1d,
    GhostBatchNorm2d,
    GhostBatchNorm3d,
    LayerNorm2d,
)
from reglight.nn import functional as RF
from reglight.nn.functional import _ghost

TOL = {"rtol": 0.0, "atol": 1e-10}
D = torch.float64


def _randomise_affine(*layers: nn.Module) -> None:
    for layer in layers:  # the same values in every layer
        gen = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for param in layer.parameters():
                param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype))


def _run_steps(layer: nn.Module, inputs: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    """Forward/backward on each input; return output, input grad and parameter grads."""
    results = []
    for x in inputs:
        x = x.clone().requires_grad_()
        layer.zero_grad()
        out = layer(x)
        (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads = tuple(p.grad.clone() for p in layer.parameters())  # type: ignore[union-attr]
        results.append((out.detach(), x.grad.clone(), *grads))  # type: ignore[union-attr]
    return results


def _assert_same_layers(ours: nn.Module, ref: nn.Module, inputs: list[torch.Tensor]) -> None:
    for got, want in zip(_run_steps(ours, inputs), _run_steps(ref, inputs)):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TOL)
    for name, buf in ref.named_buffers():
        torch.testing.assert_close(dict(ours.named_buffers())[name], buf, **TOL)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(inputs[0]), ref(inputs[0]), **TOL)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_ghost_equals_batchnorm_when_virtual_batch_is_whole_batch(momentum: float | None) -> None:
    ghost = GhostBatchNorm2d(5, virtual_batch_size=16, momentum=momentum).to(D)
    bn = nn.BatchNorm2d(5, momentum=momentum).to(D)
    _randomise_affine(ghost, bn)
    inputs = [torch.randn(16, 5, 4, 3, dtype=D) * 3 + 1 for _ in range(3)]
    _assert_same_layers(ghost, bn, inputs)


def test_ghost_fused_kernel_path_with_one_chunk_equals_batchnorm() -> None:
    x = torch.randn(12, 4, 3, 3, dtype=D, requires_grad=True)
    w, b = torch.randn(4, dtype=D, requires_grad=True), torch.randn(4, dtype=D, requires_grad=True)
    out, means, invstds = _ghost._GhostBatchNormFn.apply(x, w, b, 12, 1e-5, False)
    ref = F.batch_norm(x, None, None, w, b, True, 0.0, 1e-5)
    torch.testing.assert_close(out, ref, **TOL)
    g = torch.randn_like(out)
    for a, c in zip(torch.autograd.grad(out, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g)):
        torch.testing.assert_close(a, c, **TOL)
    var, mean = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(means[0], mean, **TOL)
    torch.testing.assert_close(invstds[0], (var + 1e-5).rsqrt(), **TOL)


class ChunkedBatchNorm(nn.Module):
    """Reference ghost batch norm: nn.BatchNorm2d on each chunk, running stats per the closed form."""

    def __init__(self, channels: int, chunk: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, track_running_stats=False, dtype=D)
        self.chunk, self.momentum = chunk, momentum
        self.register_buffer("running_mean", torch.zeros(channels, dtype=D))
        self.register_buffer("running_var", torch.ones(channels, dtype=D))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.bn.weight, self.bn.bias, False
            )
        parts = x.split(self.chunk)
        with torch.no_grad():
            share = torch.tensor([len(p) / len(x) for p in parts], dtype=D)[:, None]
            means = torch.stack([p.mean((0, 2, 3)) for p in parts])
            vars_ = torch.stack([p.transpose(0, 1).flatten(1).var(1) for p in parts])
            self.running_mean.lerp_((share * means).sum(0), self.momentum)
            self.running_var.lerp_((share * vars_).sum(0), self.momentum)
            self.num_batches_tracked += 1
        return torch.cat([self.bn(p) for p in parts])


@pytest.mark.parametrize("batch", [16, 14])  # chunks of 4: even split, and a last chunk of 2
def test_ghost_chunks_equal_batchnorm_per_chunk(batch: int) -> None:
    ghost = GhostBatchNorm2d(3, virtual_batch_size=4).to(D)
    ref = ChunkedBatchNorm(3, 4)
    _randomise_affine(ghost, ref)
    inputs = [torch.randn(batch, 3, 5, 2, dtype=D) * 2 - 1 for _ in range(3)]
    got = _run_steps(ghost, inputs)
    want = _run_steps(ref, inputs)
    for a_step, b_step in zip(got, want):
        for a, b in zip(a_step, b_step):
            torch.testing.assert_close(a, b, **TOL)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ghost, name), getattr(ref, name), **TOL)
    ghost.eval(), ref.eval()
    torch.testing.assert_close(ghost(inputs[0]), ref(inputs[0]), **TOL)


def test_ghost_reference_path_for_other_dtypes_matches_fused_path() -> None:
    x = torch.randn(10, 3, 4, 4, dtype=D, requires_grad=True)
    w = torch.randn(3, dtype=D, requires_grad=True)
    fused = _ghost._GhostBatchNormFn.apply(x, w, None, 4, 1e-5, False)
    plain = _ghost._ghost_chunks_reference(x, w, None, 4, 1e-5)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, **TOL)
    g = torch.randn_like(fused[0])
    for a, b in zip(
        torch.autograd.grad(fused[0], (x, w), g), torch.autograd.grad(plain[0], (x, w), g)
    ):
        torch.testing.assert_close(a, b, **TOL)
    low = GhostBatchNorm2d(3, 4).to(torch.bfloat16)
    with torch.no_grad():
        low.weight.copy_(w), low.bias.zero_()
    half = low(x.detach().to(torch.bfloat16))
    torch.testing.assert_close(half.double(), fused[0].detach(), rtol=0.05, atol=0.05)


def test_ghost_1d_and_3d_match_batchnorm_on_whole_batch() -> None:
    for ghost, bn, shape in [
        (GhostBatchNorm1d(4, 64), nn.BatchNorm1d(4), (9, 4)),
        (GhostBatchNorm1d(4, 64), nn.BatchNorm1d(4), (9, 4, 6)),
        (GhostBatchNorm3d(4, 64), nn.BatchNorm3d(4), (3, 4, 2, 3, 2)),
    ]:
        ghost, bn = ghost.to(D), bn.to(D)
        _randomise_affine(ghost, bn)
        _assert_same_layers(ghost, bn, [torch.randn(shape, dtype=D) for _ in range(2)])


def test_gradcheck_ghost_renorm_layernorm2d() -> None:
    x = torch.randn(6, 3, 2, 2, dtype=D, requires_grad=True)
    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(3, dtype=D, requires_grad=True)

    def ghost(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return RF.ghost_batch_norm(x, None, None, w, b, virtual_batch_size=4)

    def renorm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        rm, rv = torch.full((3,), 0.3, dtype=D), torch.full((3,), 2.0, dtype=D)
        return RF.batch_renorm(x, rm, rv, w, b, r_max=1.2, d_max=0.1)

    def layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return RF.layer_norm2d(x, w, b)

    for fn in (ghost, renorm, layer):
        assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_renorm_with_r_max_1_d_max_0_is_batchnorm(momentum: float | None) -> None:
    renorm = BatchRenorm2d(4, r_max=1.0, d_max=0.0, momentum=momentum).to(D)
    bn = nn.BatchNorm2d(4, momentum=momentum).to(D)
    _randomise_affine(renorm, bn)
    inputs = [torch.randn(8, 4, 3, 3, dtype=D) * 2 + 3 for _ in range(3)]
    _assert_same_layers(renorm, bn, inputs)


def paper_batch_renorm(
    x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
    r_max: float, d_max: float, eps: float,
) -> torch.Tensor:  # fmt: skip
    """Ioffe (2017), Algorithm 1, with autograd ops; r and d are stop-gradient."""
    mu_b = x.mean((0, 2, 3), keepdim=True)
    sigma_b = ((x - mu_b).pow(2).mean((0, 2, 3), keepdim=True) + eps).sqrt()
    view = (1, -1, 1, 1)
    r = (sigma_b / sigma.view(view)).clamp(1 / r_max, r_max).detach()
    d = ((mu_b - mu.view(view)) / sigma.view(view)).clamp(-d_max, d_max).detach()
    return w.view(view) * ((x - mu_b) / sigma_b * r + d) + b.view(view)


def test_batch_renorm_matches_paper_algorithm_when_clipping() -> None:
    eps, r_max, d_max, momentum = 1e-5, 1.5, 0.5, 0.1
    layer = BatchRenorm2d(3, r_max=r_max, d_max=d_max, eps=eps, momentum=momentum).to(D)
    _randomise_affine(layer)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([2.0, -1.0, 0.1]))
        layer.running_var.copy_(torch.tensor([9.0, 0.2, 1.0]))
    mu, var = layer.running_mean.clone(), layer.running_var.clone()
    x = (torch.randn(6, 3, 4, 4, dtype=D) * 2).requires_grad_()
    out = layer(x)
    ref = paper_batch_renorm(x, mu, (var + eps).sqrt(), layer.weight, layer.bias, r_max, d_max, eps)
    torch.testing.assert_close(out, ref, **TOL)
    g = torch.randn_like(out)
    params = (x, layer.weight, layer.bias)
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, b, **TOL)
    xd = x.detach()
    n = xd.numel() // 3
    torch.testing.assert_close(layer.running_mean, 0.9 * mu + 0.1 * xd.mean((0, 2, 3)), **TOL)
    unbiased = xd.transpose(0, 1).flatten(1).var(1)
    torch.testing.assert_close(layer.running_var, 0.9 * var + 0.1 * unbiased, **TOL)
    assert n > 1
    # r_max and d_max are mutable (a schedule relaxes them) and validated
    layer.r_max, layer.d_max = 4.0, 2.0
    assert "r_max=4.0, d_max=2.0" in repr(layer)
    with pytest.raises(ValueError, match=r"`r_max`.*0.5"):
        layer.r_max = 0.5
    with pytest.raises(ValueError, match=r"`d_max`.*-1"):
        BatchRenorm1d(3, d_max=-1.0)


def test_batch_renorm_low_precision_input() -> None:
    layer = BatchRenorm2d(3, r_max=1.5, d_max=0.5)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    ref = copy.deepcopy(layer).double()(x.double())
    low = layer.to(torch.bfloat16)(x.to(torch.bfloat16).requires_grad_())
    low.sum().backward()
    torch.testing.assert_close(low.double(), ref, rtol=0.05, atol=0.05)


def test_batch_renorm_1d_and_3d_equal_batchnorm() -> None:
    for renorm, bn, shape in [
        (BatchRenorm1d(4, 1.0, 0.0), nn.BatchNorm1d(4), (7, 4)),
        (BatchRenorm3d(4, 1.0, 0.0), nn.BatchNorm3d(4), (3, 4, 2, 2, 3)),
    ]:
        renorm, bn = renorm.to(D), bn.to(D)
        _randomise_affine(renorm, bn)
        _assert_same_layers(renorm, bn, [torch.randn(shape, dtype=D) for _ in range(2)])


def test_layer_norm2d_equals_layer_norm_on_permuted_tensor() -> None:
    ours, ref = LayerNorm2d(6).to(D), nn.LayerNorm(6, eps=1e-6).to(D)
    _randomise_affine(ours, ref)
    x = torch.randn(3, 6, 5, 4, dtype=D) * 3 + 2
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = ours(x1)
    want = ref(x2.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, want, **TOL)
    g = torch.randn_like(out)
    out.backward(g), want.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, **TOL)
    # closed form: per-pixel standardisation over the channels
    manual = (x - x.mean(1, keepdim=True)) / (x.var(1, correction=0, keepdim=True) + 1e-6).sqrt()
    manual = manual * ours.weight.view(1, -1, 1, 1) + ours.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out, manual, rtol=0, atol=1e-9)
    # channels-last inputs work too; train and eval agree (batch-independent)
    torch.testing.assert_close(ours(x.to(memory_format=torch.channels_last)), out, **TOL)
    torch.testing.assert_close(ours.eval()(x), out, **TOL)


def test_state_dict_round_trips_and_batchnorm_checkpoints_load() -> None:
    bn = nn.BatchNorm2d(3)
    bn(torch.randn(8, 3, 4, 4) * 2 + 1)
    for layer in (GhostBatchNorm2d(3, 4), BatchRenorm2d(3)):
        layer.load_state_dict(bn.state_dict())
        assert list(layer.state_dict()) == list(bn.state_dict())
        x = torch.randn(4, 3, 4, 4)
        torch.testing.assert_close(layer.eval()(x), bn.eval()(x), rtol=0, atol=0)
        layer.train()(torch.randn(8, 3, 4, 4))
        clone = type(layer)(3)
        clone.load_state_dict(layer.state_dict())
        torch.testing.assert_close(clone.eval()(x), layer.eval()(x), rtol=0, atol=0)
        bn.load_state_dict(layer.state_dict())  # and back into batch norm
    ln = LayerNorm2d(3)
    _randomise_affine(ln)
    clone_ln = LayerNorm2d(3)
    clone_ln.load_state_dict(ln.state_dict())
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(clone_ln(x), ln(x), rtol=0, atol=0)


def test_validation_errors_name_argument_and_value() -> None:
    with pytest.raises(ValueError, match=r"`virtual_batch_size`.*0"):
        GhostBatchNorm2d(3, virtual_batch_size=0)
    with pytest.raises(ValueError, match=r"`num_features`.*-2"):
        GhostBatchNorm1d(-2)
    with pytest.raises(ValueError, match=r"`momentum`.*1.5"):
        BatchRenorm2d(3, momentum=1.5)
    with pytest.raises(ValueError, match=r"`eps`.*0"):
        LayerNorm2d(3, eps=0.0)
    with pytest.raises(ValueError, match="4D input, got 3D"):
        GhostBatchNorm2d(3)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="2D or 3D input, got 4D"):
        BatchRenorm1d(3)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="4D input"):
        LayerNorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*virtual_batch_size=2"):
        GhostBatchNorm1d(3, virtual_batch_size=2)(torch.randn(5, 3))  # last virtual batch: 1 sample
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchRenorm1d(3)(torch.randn(1, 3))
    assert "virtual_batch_size=4" in repr(GhostBatchNorm2d(3, 4))


def _batch_norm_per_chunk(
    x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, chunk: int
) -> torch.Tensor:
    """The reference: ``F.batch_norm`` on each consecutive chunk, concatenated (autograd through cat)."""
    return torch.cat([F.batch_norm(p, None, None, w, b, True, 0.0, 1e-5) for p in x.split(chunk)])


@pytest.mark.parametrize("block", [1, 7, 16384])  # one row per block, blocks across rows, one block
@pytest.mark.parametrize(
    ("shape", "chunk", "affine"),
    [
        ((10, 3), 4, True),  # (N, C): one value per row
        ((10, 3, 5), 4, False),  # last virtual batch of 2, no weight and no bias
        ((9, 2, 3, 2, 2), 3, True),
        ((13, 4, 3, 5), 5, True),
    ],
)
def test_ghost_cpu_input_gradient_pass_matches_batchnorm_per_chunk(
    monkeypatch: pytest.MonkeyPatch, block: int, shape: tuple[int, ...], chunk: int, affine: bool
) -> None:
    monkeypatch.setattr(_ghost, "_GHOST_BLOCK", block)
    x = (torch.randn(shape, dtype=D) * 2 + 0.5).requires_grad_()
    w = torch.randn(shape[1], dtype=D, requires_grad=True) if affine else None
    b = torch.randn(shape[1], dtype=D, requires_grad=True) if affine else None
    inputs = [t for t in (x, w, b) if t is not None]
    fused = _ghost._GhostBatchNormFn.apply(x, w, b, chunk, 1e-5, False)[0]
    plain = _batch_norm_per_chunk(x, w, b, chunk)
    g = torch.randn_like(plain)
    for got, want in zip(
        torch.autograd.grad(fused, inputs, g), torch.autograd.grad(plain, inputs, g)
    ):
        torch.testing.assert_close(got, want, **TOL)
    if affine:  # weight gradient alone (input not requiring a gradient)
        fused = _ghost._GhostBatchNormFn.apply(x.detach(), w, b, chunk, 1e-5, False)[0]
        plain = _batch_norm_per_chunk(x.detach(), w, b, chunk)
        torch.testing.assert_close(
            torch.autograd.grad(fused, w, g)[0], torch.autograd.grad(plain, w, g)[0], **TOL
        )


def test_ghost_out_form_backward_used_off_cpu_matches_batchnorm_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ``out=`` backward that CUDA and other devices take, exercised on CPU."""
    monkeypatch.setattr(_ghost, "_GHOST_DIRECT_GRAD_DEVICES", ())
    x = (torch.randn(14, 3, 5, 2, dtype=D) * 2 - 1).requires_grad_()
    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(3, dtype=D, requires_grad=True)
    fused = _ghost._GhostBatchNormFn.apply(x, w, b, 4, 1e-5, False)[0]
    plain = _batch_norm_per_chunk(x, w, b, 4)
    g = torch.randn_like(plain)
    got = torch.autograd.grad(fused, (x, w, b), g)
    want = torch.autograd.grad(plain, (x, w, b), g)
    for a, c in zip(got, want):
        torch.testing.assert_close(a, c, **TOL)


@pytest.mark.usefixtures("needs_torch_compile")
@pytest.mark.parametrize("batch", [16, 14])  # chunks of 4: even split, and a last chunk of 2
def test_fused_ghost_gradient_matches_batchnorm_per_chunk(batch: int) -> None:
    ghost = GhostBatchNorm2d(3, virtual_batch_size=4, fused=True).to(D)
    assert "fused=True" in repr(ghost)
    ref = ChunkedBatchNorm(3, 4)
    _randomise_affine(ghost, ref)
    inputs = [torch.randn(batch, 3, 5, 2, dtype=D) * 2 - 1 for _ in range(2)]
    for a_step, b_step in zip(_run_steps(ghost, inputs), _run_steps(ref, inputs)):
        for a, b in zip(a_step, b_step):
            torch.testing.assert_close(a, b, **TOL)
    assert _ghost._ghost_fused_kernel().failure is None  # the compiled pass ran


def test_fused_ghost_gradient_falls_back_to_the_eager_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("no C++ compiler found")

    kernel = FallbackCompiled(broken, "the fused ghost batch-norm gradient")
    kernel._fn = broken
    monkeypatch.setitem(_compile._SHARED, _ghost._ghost_grad_kernel, kernel)
    x = torch.randn(10, 3, 4, 4, dtype=D, requires_grad=True)
    w = torch.randn(3, dtype=D, requires_grad=True)
    with pytest.warns(
        RuntimeWarning, match="fused ghost batch-norm gradient could not be compiled"
    ):
        (gx,) = torch.autograd.grad(
            _ghost._GhostBatchNormFn.apply(x, w, None, 4, 1e-5, True)[0].sum(), x
        )
    plain = _batch_norm_per_chunk(x, w, None, 4)
    torch.testing.assert_close(gx, torch.autograd.grad(plain.sum(), x)[0], **TOL)
    assert kernel.failure == "RuntimeError: no C++ compiler found"
