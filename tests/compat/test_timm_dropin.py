"""Drop-in proof on models nobody here wrote: our layers in place of timm's and torch's inside timm models.

Models are built by `timm.create_model(..., pretrained=False)` (random weights, nothing downloaded) at
32x32 inputs. Where the random mask is built the same way (timm's `DropPath` and ours draw one
Bernoulli value per sample from the same generator), outputs and gradients must be identical under a
shared seed; where the construction differs (DropBlock) the per-pixel drop probabilities must agree
where both follow the paper, and the differences are pinned to closed forms. timm is a test-only
dependency: the module is skipped without it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from reglight.nn import (
    BatchRenorm2d,
    DropBlock2d,
    DropPath,
    GhostBatchNorm2d,
    LayerNorm2d,
    convert_norms,
)
from reglight.nn import functional as RF

timm = pytest.importorskip("timm")
timm_layers = pytest.importorskip("timm.layers")

Z = 5.0  # standard errors allowed in the Monte-Carlo checks


def swap(model: nn.Module, cls: type[nn.Module], build: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every `cls` submodule of `model` by `build(old)`; return how many were replaced."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, cls):
            setattr(model, name, build(child))
            count += 1
        else:
            count += swap(child, cls, build)
    return count


def outputs_and_grads(
    model: nn.Module, x: torch.Tensor, seed: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(seed)
    out = model(x)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    return out.detach(), list(grads)


# --------------------------------------------------------------------------------------------------
# DropPath: the same mask construction as timm's, so the same numbers under one seed
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_drop_path_equals_timm_drop_path_under_a_shared_seed(scale_by_keep: bool) -> None:
    x = torch.randn(64, 3, 4, 4)
    ours, theirs = DropPath(0.3, scale_by_keep), timm_layers.DropPath(0.3, scale_by_keep)
    torch.manual_seed(7)
    got = ours(x)
    torch.manual_seed(7)
    want = theirs(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert 0 < int((got.flatten(1) == 0).all(1).sum()) < 64  # some samples dropped, not all
    ours.eval(), theirs.eval()
    assert torch.equal(ours(x), x) and torch.equal(theirs(x), x)  # evaluation: the identity
    assert torch.equal(RF.drop_path(x, 0.0), x)  # p = 0 while training: the identity too


def test_drop_path_in_timm_vit_same_outputs_and_gradients() -> None:
    """timm's ViT with its stochastic depth layers swapped for ours trains identically."""
    torch.manual_seed(0)
    theirs = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, depth=3, drop_path_rate=0.4
    )
    ours = copy.deepcopy(theirs)
    replaced = swap(ours, timm_layers.DropPath, lambda m: DropPath(m.drop_prob, m.scale_by_keep))
    assert replaced >= 4 and not any(isinstance(m, timm_layers.DropPath) for m in ours.modules())
    x = torch.randn(6, 3, 32, 32)
    for seed in (1, 2):
        got_out, got_grads = outputs_and_grads(ours.train(), x, seed)
        want_out, want_grads = outputs_and_grads(theirs.train(), x, seed)
        torch.testing.assert_close(got_out, want_out, rtol=0, atol=0)
        for a, b in zip(got_grads, want_grads):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    assert not torch.equal(ours(x), got_out)  # the training passes did drop paths


# --------------------------------------------------------------------------------------------------
# DropBlock2d: different mask construction, the same law where both follow the paper
# --------------------------------------------------------------------------------------------------
def drop_frequency(layer: nn.Module, planes: int, h: int, w: int) -> torch.Tensor:
    """Per-pixel fraction of the `planes` maps of ones that `layer` zeroes."""
    y = layer(torch.ones(planes // 8, 8, h, w))
    return (y == 0).double().mean(dim=(0, 1))


@pytest.mark.parametrize("shared", [True, False])
def test_drop_block_matches_timm_drop_block_inside_the_map(shared: bool) -> None:
    p, b, h, w, planes = 0.2, 3, 9, 9, 16_000
    ours = DropBlock2d(p, b, shared_channels=shared)
    theirs = timm_layers.DropBlock2d(p, b, couple_channels=shared)
    gamma = RF.drop_block2d_gamma(p, b, h, w)
    interior = 1 - (1 - gamma) ** (b * b)  # a pixel covered by b*b seed sites in both
    n = planes // 8 if shared else planes  # independent masks behind each frequency
    se = math.sqrt(interior * (1 - interior) / n)
    got, want = drop_frequency(ours, planes, h, w), drop_frequency(theirs, planes, h, w)
    inner = (slice(b - 1, h - b + 1), slice(b - 1, w - b + 1))  # pixels under b*b sites in both
    assert (got[inner] - interior).abs().max() <= Z * se
    assert (want[inner] - interior).abs().max() <= Z * se
    # The corner differs by construction: we seed only where a whole block fits (the paper's rule:
    # one site covers pixel (0, 0)); timm seeds block centres everywhere and clips the blocks at the
    # border ((b//2 + 1)^2 sites cover it).
    assert abs(got[0, 0] - gamma) <= Z * math.sqrt(gamma / n)
    timm_corner = 1 - (1 - gamma) ** ((b // 2 + 1) ** 2)
    assert abs(want[0, 0] - timm_corner) <= Z * math.sqrt(timm_corner / n)


@pytest.mark.parametrize("shared", [True, False])
def test_drop_block_rescaling_and_evaluation_like_timm(shared: bool) -> None:
    x = torch.rand(4, 6, 10, 12) + 0.5
    ours = DropBlock2d(0.3, 4, shared_channels=shared)
    theirs = timm_layers.DropBlock2d(0.3, 4, couple_channels=shared)
    for layer in (ours, theirs):
        y = layer(x)
        keep = y != 0
        # both rescale the kept units by (entries of the mask) / (kept entries): the batch mean of
        # the multiplier is exactly 1
        scale = keep.numel() / keep.sum()
        torch.testing.assert_close(y[keep], x[keep] * scale.float(), rtol=1e-6, atol=0)
        if shared:  # one mask per sample, the same in every channel
            assert torch.equal(keep, keep[:, :1].expand_as(keep))
        layer.eval()
        assert torch.equal(layer(x), x)
    assert torch.equal(DropBlock2d(0.0, 4)(x), x)  # p = 0 while training: the identity


def test_drop_block_in_timm_resnet_eval_and_training() -> None:
    """timm's ResNet built with its DropBlock layers, then with ours in their place."""
    torch.manual_seed(0)
    theirs = timm.create_model("resnet10t", pretrained=False, num_classes=4, drop_block_rate=0.3)
    ours = copy.deepcopy(theirs)

    def build(m: nn.Module) -> nn.Module:
        # timm scales its seed rate by gamma_scale; gamma is linear in p, so p * gamma_scale is
        # the rate that gives our layer the same gamma
        return DropBlock2d(
            m.drop_prob * m.gamma_scale, m.block_size, shared_channels=m.couple_channels
        )

    assert swap(ours, timm_layers.DropBlock2d, build) >= 2
    x = torch.randn(2, 3, 32, 32)  # 4x4 and 2x2 maps under blocks of 5 and 3: blocks clipped
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    dropped: list[float] = []
    for m in ours.modules():
        if isinstance(m, DropBlock2d):
            m.register_forward_hook(
                lambda _m, _i, out: dropped.append(float((out == 0).float().mean()))
            )
    ours.train()
    for _ in range(5):
        _, grads = outputs_and_grads(ours, x, len(dropped))
        assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert 0.0 < sum(dropped) / len(dropped) < 1.0  # the masks were at work


# --------------------------------------------------------------------------------------------------
# Norms: converting a timm model's norms leaves it the same model where the variant reduces to it
# --------------------------------------------------------------------------------------------------
def trained_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=4).double()
    model.train()
    with torch.no_grad():
        for _ in range(2):  # non-trivial running statistics
            model(torch.randn(8, 3, 32, 32, dtype=torch.float64) * 2 + 1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize(
    ("kind", "kwargs", "cls"),
    [
        ("ghost", {"virtual_batch_size": 8}, GhostBatchNorm2d),  # virtual batch = batch
        ("renorm", {"r_max": 1.0, "d_max": 0.0}, BatchRenorm2d),  # r = 1, d = 0
    ],
)
def test_converted_timm_resnet_equals_torch_batch_norm(
    kind: str, kwargs: dict[str, float], cls: type[nn.Module]
) -> None:
    reference = trained_resnet()
    converted = convert_norms(copy.deepcopy(reference), kind, **kwargs)  # type: ignore[arg-type]
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in reference.modules())
    assert sum(type(m) is cls for m in converted.modules()) == n_bn > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    converted.eval(), reference.eval()  # shared running statistics: the same evaluation model
    torch.testing.assert_close(converted(x), reference(x), rtol=0, atol=1e-12)
    converted.train(), reference.train()  # one training step: outputs, gradients, statistics
    got_out, got_grads = outputs_and_grads(converted, x, 0)
    want_out, want_grads = outputs_and_grads(reference, x, 0)
    torch.testing.assert_close(got_out, want_out, rtol=0, atol=1e-9)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    for (name, a), b in zip(converted.named_buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=name)
    converted.eval(), reference.eval()
    torch.testing.assert_close(converted(x), reference(x), rtol=0, atol=1e-12)


def test_layer_norm2d_in_timm_convnext_equals_timm_layer_norm2d() -> None:
    torch.manual_seed(0)
    theirs = timm.create_model("convnext_atto", pretrained=False, num_classes=4).eval()
    ours = copy.deepcopy(theirs)

    def build(m: nn.Module) -> nn.Module:
        new = LayerNorm2d(m.normalized_shape[0], eps=m.eps)
        new.weight, new.bias = m.weight, m.bias
        return new

    assert swap(ours, timm_layers.LayerNorm2d, build) >= 4
    x = torch.randn(2, 3, 32, 32)
    got_out, got_grads = outputs_and_grads(ours, x, 0)
    want_out, want_grads = outputs_and_grads(theirs, x, 0)
    torch.testing.assert_close(got_out, want_out)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)
