"""convert_norms: every kind, what is kept, and the interplay with SyncBatchNorm."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from reglight.nn import (
    NORM_KINDS,
    BatchRenorm2d,
    GhostBatchNorm1d,
    GhostBatchNorm2d,
    LayerNorm2d,
    convert_norms,
)


def make_net() -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 6),
        nn.BatchNorm1d(6),
        nn.GroupNorm(2, 6),  # part of the architecture: never converted
    )
    net.train()
    for _ in range(3):  # non-trivial running statistics
        net(torch.randn(16, 3, 6, 6) * 2 + 1)
    with torch.no_grad():
        for m in (net[1], net[6]):
            m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-1, 1)
    return net


EXPECTED_TYPES = {
    "batch": (nn.BatchNorm2d, nn.BatchNorm1d),
    "ghost": (GhostBatchNorm2d, GhostBatchNorm1d),
    "renorm": (BatchRenorm2d, nn.Module),
    "group": (nn.GroupNorm, nn.GroupNorm),
    "none": (nn.Identity, nn.Identity),
}
KWARGS = {"ghost": {"virtual_batch_size": 4}, "renorm": {"r_max": 2.0, "d_max": 1.0}}


@pytest.mark.parametrize("kind", ["batch", "ghost", "renorm", "group", "none"])
def test_kinds_keep_affine_and_running_statistics(kind: str) -> None:
    net = make_net()
    old = copy.deepcopy(net)
    params = {name: p for name, p in net.named_parameters()}
    running_mean = net[1].running_mean
    out = convert_norms(net, kind, **KWARGS.get(kind, {}))
    assert out is net
    want2d, want1d = EXPECTED_TYPES[kind]
    assert type(net[1]) is want2d and isinstance(net[6], want1d)
    assert type(net[7]) is nn.GroupNorm and net[7].num_groups == 2
    if kind == "none":
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        return
    assert net[1].weight is params["1.weight"] and net[1].bias is params["1.bias"]  # shared objects
    assert net.training and net[1].training  # the training flag is kept
    if kind in ("batch", "ghost", "renorm"):
        assert net[1].running_mean is running_mean
        torch.testing.assert_close(net[1].running_var, old[1].running_var, rtol=0, atol=0)
        assert int(net[1].num_batches_tracked) == 3
        # batch-statistics norms share the evaluation rule: outputs identical to the original model
        x = torch.randn(5, 3, 6, 6)
        torch.testing.assert_close(net.eval()(x), old.eval()(x), rtol=0, atol=0)


def test_group_and_layer2d_normalise_like_their_definitions() -> None:
    net = make_net()
    convert_norms(net, "group")
    assert net[1].num_groups == 8 and net[6].num_groups == 2  # default gcd(C, 32)
    net = make_net()
    convert_norms(net, "group", num_groups=2)
    assert net[1].num_groups == 2 and net[6].num_groups == 2
    net = make_net()
    with pytest.raises(ValueError, match=r"layer2d.*1-d inputs"):
        convert_norms(net, "layer2d")  # the BatchNorm1d cannot become a LayerNorm2d
    conv_only = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, eps=1e-3))
    weight = conv_only[1].weight
    convert_norms(conv_only, "layer2d")
    assert type(conv_only[1]) is LayerNorm2d and conv_only[1].weight is weight
    assert conv_only[1].eps == 1e-3
    x = torch.randn(2, 3, 5, 5)
    h = conv_only[0](x)
    ref = nn.functional.layer_norm(h.permute(0, 2, 3, 1), (4,), weight, conv_only[1].bias, 1e-3)
    torch.testing.assert_close(conv_only(x), ref.permute(0, 3, 1, 2))
    back = convert_norms(conv_only, "batch")  # LayerNorm2d -> BatchNorm2d (fresh statistics)
    assert type(back[1]) is nn.BatchNorm2d and back[1].weight is weight


def test_root_shared_modules_dtype_and_eps_momentum() -> None:
    bn = nn.BatchNorm2d(4, eps=1e-4, momentum=0.3).double()
    new = convert_norms(bn, "renorm", r_max=2.5)
    assert type(new) is BatchRenorm2d and new.r_max == 2.5 and new.d_max == 5.0
    assert new.eps == 1e-4 and new.momentum == 0.3 and new.running_mean.dtype == torch.float64
    shared = nn.BatchNorm2d(4)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    convert_norms(net, "ghost", virtual_batch_size=8, momentum=0.05)
    assert net[0] is net[2] and type(net[0]) is GhostBatchNorm2d and net[0].momentum == 0.05


def test_errors() -> None:
    net = make_net()
    with pytest.raises(ValueError, match=r"`kind`.*'instance'"):
        convert_norms(net, "instance")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"unexpected keyword.*r_max"):
        convert_norms(net, "ghost", virtual_batch_size=4, r_max=2.0)
    with pytest.raises(TypeError, match="virtual_batch_size"):
        convert_norms(net, "ghost")
    with pytest.raises(ValueError, match=r"`virtual_batch_size`.*0"):
        convert_norms(make_net(), "ghost", virtual_batch_size=0)
    with pytest.raises(ValueError, match=r"`num_groups` must divide.*num_groups=3.*8"):
        convert_norms(make_net(), "group", num_groups=3)
    assert set(NORM_KINDS) == {"batch", "ghost", "renorm", "group", "layer2d", "none"}


def test_sync_batchnorm_interplay() -> None:
    """convert_sync_batchnorm (what Trainer(sync_batchnorm=True) calls) leaves our norms alone."""
    net = nn.Sequential(
        nn.Conv2d(3, 4, 1),
        GhostBatchNorm2d(4, 2),
        BatchRenorm2d(4),
        LayerNorm2d(4),
        nn.BatchNorm2d(4),
    )
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert [type(m) for m in synced[1:4]] == [GhostBatchNorm2d, BatchRenorm2d, LayerNorm2d]
    assert type(synced[4]) is nn.SyncBatchNorm
    ours = synced[:4].train()
    assert ours(torch.randn(6, 3, 5, 5)).shape == (6, 4, 5, 5)  # no process group needed
    with pytest.raises(ValueError, match=r"convert_norms before nn.SyncBatchNorm"):
        convert_norms(synced, "ghost", virtual_batch_size=2)
    assert type(convert_norms(synced, "group")[4]) is nn.GroupNorm


class PerVirtualBatch(nn.Module):
    """Reference: the model's own torch batch norm applied to each consecutive virtual batch."""

    def __init__(self, bn: nn.Module, size: int) -> None:
        super().__init__()
        self.bn, self.size = bn, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.bn(part) for part in x.split(self.size)])


@pytest.mark.parametrize("fused", [False, True])
def test_ghost_with_fused_matches_torch_batchnorm_per_virtual_batch(fused: bool) -> None:
    """`fused` is a documented keyword of kind='ghost' (it used to raise TypeError)."""
    net = make_net().double()
    ref = copy.deepcopy(net)
    ref[1], ref[6] = PerVirtualBatch(ref[1], 4), PerVirtualBatch(ref[6], 4)
    convert_norms(net, "ghost", virtual_batch_size=4, fused=fused)
    assert type(net[1]) is GhostBatchNorm2d and type(net[6]) is GhostBatchNorm1d
    assert net[1].fused is fused and net[6].fused is fused
    x = torch.randn(14, 3, 6, 6, dtype=torch.float64)  # virtual batches of 4, 4, 4 and 2
    g = torch.randn(14, 6, dtype=torch.float64)
    results = []
    for model in (net, ref):
        xi = x.clone().requires_grad_()
        out = model(xi)
        grads = torch.autograd.grad(out, [xi, *model.parameters()], g)
        results.append((out, *grads))
    assert len(results[0]) == len(results[1]) == 2 + len(list(ref.parameters()))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
