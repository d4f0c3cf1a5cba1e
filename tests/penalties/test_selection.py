"""select_parameters: the default rule, globs, module types, and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reglight.penalties import L1, penalty_loss, select_named_parameters, select_parameters
from reglight.penalties.selection import select_named_modules


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
    with pytest.raises(TypeError, match=r"`include` must be a pattern .* got include=3"):
        select_parameters(Net(), include=3)  # type: ignore[arg-type]


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


def test_class_name_strings_match_along_the_class_hierarchy() -> None:
    net = Net()
    by_type = _names(net, include=nn.LayerNorm)
    assert _names(net, include="LayerNorm") == by_type == ["norm.weight"]
    # `_ConvNd` is a base class of Conv1d: a class name matches subclasses too, like a type does
    assert _names(net, include="_ConvNd") == _names(net, include=nn.Conv1d) == ["conv.weight"]
    assert _names(net, exclude=["Linear", "MultiheadAttention"]) == ["conv.weight"]


def test_error_names_the_argument_the_value_and_the_available_names() -> None:
    with pytest.raises(ValueError) as err:
        select_parameters(Net(), include="encoder.*")
    message = str(err.value)
    assert "`include` entry 'encoder.*'" in message
    assert "available names: " + ", ".join(n for n, _ in Net().named_parameters()) in message
    with pytest.raises(
        TypeError, match=r"`exclude` entries .* got '' in exclude=\['head\.\*', ''\]"
    ):
        select_parameters(Net(), exclude=["head.*", ""])


def test_exclude_that_matches_nothing_removes_nothing() -> None:
    assert _names(Net(), exclude=["decoder.*", nn.GRU]) == _names(Net())


def test_modules_and_parameters_share_one_vocabulary() -> None:
    net = Net()
    # the same patterns: globs on module names instead of parameter names, classes as for parameters
    assert [n for n, _ in select_named_modules(net, include="attn*")] == [
        n for n, _ in net.named_modules() if n.startswith("attn")
    ]
    assert [n for n, _ in select_named_modules(net, include=["Linear", nn.LayerNorm])] == [
        n for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.LayerNorm))
    ]
    assert [
        n for n, _ in select_named_modules(net, include="torch.nn.Linear", exclude="attn.*")
    ] == ["head"]
    # `where` restricts the candidates, `default` stands in for a missing include
    with_eps = select_named_modules(net, where=lambda m: hasattr(m, "eps"))
    assert [n for n, _ in with_eps] == ["norm", "bn"]
    assert [n for n, _ in select_named_modules(net, default=nn.BatchNorm1d)] == ["bn"]
    with pytest.raises(
        ValueError, match=r"matches no module with eps in Net.*available names: norm, bn"
    ):
        select_named_modules(
            net, include="conv", where=lambda m: hasattr(m, "eps"), kind="module with eps"
        )
