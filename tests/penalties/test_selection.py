"""select_parameters: the default rule, globs, module types, and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reglight.penalties import L1, penalty_loss, select_named_parameters, select_parameters


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.conv = nn.Conv1d(8, 8, 3)
        self.norm = nn.LayerNorm(8)
        self.attn = nn.MultiheadAttention(8, 2)
        self.bn = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 2)
        self.scale = nn.Parameter(torch.ones(1))


def _names(model: nn.Module, **kwargs: object) -> list[str]:
    return [n for n, _ in select_named_parameters(model, **kwargs)]  # type: ignore[arg-type]


def test_default_selects_weights_of_linear_conv_attention_only() -> None:
    assert _names(Net()) == [
        "conv.weight",
        "attn.in_proj_weight",
        "attn.out_proj.weight",
        "head.weight",
    ]


def test_include_globs_and_types_then_exclude() -> None:
    net = Net()
    # globs are fnmatch patterns on full names: "*.bias" does not match "attn.in_proj_bias"
    assert _names(net, include="*.bias") == [
        "conv.bias",
        "norm.bias",
        "attn.out_proj.bias",
        "bn.bias",
        "head.bias",
    ]
    assert _names(net, include="*bias") == _names(net, include=["*.bias", "attn.in_proj_bias"])
    assert _names(net, include=[nn.LayerNorm, "scale"]) == ["scale", "norm.weight"]  # model order
    assert _names(net, include=nn.Embedding) == ["embed.weight"]
    assert _names(net, exclude=["attn.*", nn.Conv1d]) == ["head.weight"]
    assert _names(net, include="head.*", exclude="*.bias") == ["head.weight"]
    assert select_parameters(net, include="head.weight") == [net.head.weight]


def test_shared_parameters_once() -> None:
    a = nn.Linear(3, 3)
    model = nn.Sequential(a, nn.ReLU(), a)
    assert select_parameters(model) == [a.weight]


def test_include_that_matches_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"`include` entry 'encoder\.\*' matches no parameter"):
        select_parameters(Net(), include=["head.weight", "encoder.*"])
    with pytest.raises(ValueError, match="'GRU' matches no parameter"):
        select_parameters(Net(), include=nn.GRU)


def test_bad_pattern_types() -> None:
    with pytest.raises(TypeError, match="`exclude`"):
        select_parameters(Net(), exclude=[3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="`include`"):
        select_parameters(Net(), include=int)  # type: ignore[arg-type]


def test_penalty_loss_is_the_value_of_the_selection() -> None:
    net = Net()
    loss = penalty_loss(net, L1(0.1), exclude="attn.*")
    ref = 0.1 * (net.conv.weight.abs().sum() + net.head.weight.abs().sum())
    torch.testing.assert_close(loss, ref)
    loss.backward()
    torch.testing.assert_close(net.head.weight.grad, 0.1 * net.head.weight.sign())
    assert net.head.bias.grad is None
    with pytest.raises(TypeError, match="`penalty`"):
        penalty_loss(net, 0.1)  # type: ignore[arg-type]


def test_import_path_of_a_module_type_is_a_type() -> None:
    net = Net()
    assert _names(net, include="torch.nn.LayerNorm") == ["norm.weight"]
    assert _names(net, exclude=["torch.nn.modules.linear.Linear", "attn.*"]) == ["conv.weight"]
    with pytest.raises(ValueError, match="'GRU' matches no parameter"):
        select_parameters(net, include="torch.nn.GRU")
