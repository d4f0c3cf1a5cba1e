"""Attention dropout is reached by DropoutRate and sampled by mc_dropout / mc_predict.

References: the `dropout_p` that torch's `scaled_dot_product_attention` and `multi_head_attention_forward`
actually receive (recorded by wrapping them), and the closed fact that a model without sampled dropout
gives identical Monte-Carlo samples.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from timm.layers import DropPath as TimmDropPath
from torch import nn

from reglight.callbacks import DropoutRate, DropPathRates
from reglight.nn import mc_dropout, mc_predict
from reglight.nn.attention import attention_dropout_attribute, dropout_follows_own_training_flag
from reglight.recipes.transformer import CausalSelfAttention, MiniTransformer


@pytest.fixture
def sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The `dropout_p` of every call to torch's scaled_dot_product_attention."""
    calls: list[float] = []
    original = F.scaled_dot_product_attention

    def recording(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(float(kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)))
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    return calls


@pytest.fixture
def mha_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, bool]]:
    """`(dropout_p, training)` of every call to torch's multi_head_attention_forward."""
    calls: list[tuple[float, bool]] = []
    original = F.multi_head_attention_forward
    signature = inspect.signature(original)

    def recording(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs).arguments
        calls.append((float(bound["dropout_p"]), bool(bound.get("training", True))))
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "multi_head_attention_forward", recording)
    return calls


def _net(attn_dropout: float = 0.0, **kw: Any) -> MiniTransformer:
    return MiniTransformer(
        vocab_size=11,
        num_classes=5,
        max_len=6,
        d_model=16,
        heads=2,
        depth=2,
        attn_dropout=attn_dropout,
        **kw,
    )


def test_dropout_rate_reaches_sdpa_of_the_recipe_model(sdpa_calls: list[float]) -> None:
    net = _net(resid_dropout=0.1, embed_dropout=0.1)
    knob = DropoutRate(0.3)
    knob.modules = knob.select(net)
    names = [n for n, _ in knob.modules]
    assert {"blocks.0.attn", "blocks.1.attn", "embed_drop", "blocks.0.drop1"} <= set(names)
    knob.apply(0.3)
    assert [m.dropout_p for m in net.modules() if isinstance(m, CausalSelfAttention)] == [0.3, 0.3]
    net.train()
    net(torch.randint(0, 11, (3, 6)))
    assert sdpa_calls == [0.3, 0.3]
    sdpa_calls.clear()
    net.eval()
    net(torch.randint(0, 11, (3, 6)))
    assert sdpa_calls == [0.0, 0.0]  # evaluation: no attention dropout


def test_dropout_rate_include_attention_only_and_droppath_rates_leave_it() -> None:
    net = _net(resid_dropout=0.1, drop_path=0.2)
    knob = DropoutRate(0.25, include=CausalSelfAttention)
    knob.modules = knob.select(net)
    knob.apply(0.25)
    assert [n for n, _ in knob.modules] == ["blocks.0.attn", "blocks.1.attn"]
    assert net.blocks[0].drop1.p == 0.1  # residual dropout untouched
    paths = DropPathRates(0.2)
    assert all("path" in n for n, _ in paths.select(net))


def test_dropout_rate_reaches_multihead_attention_and_encoder_layer(
    mha_calls: list[tuple[float, bool]],
) -> None:
    model = nn.Sequential(
        nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True),
        nn.Sequential(),
    )
    model[1].add_module("mha", nn.MultiheadAttention(16, 2, dropout=0.0, batch_first=True))
    knob = DropoutRate(0.4)
    knob.modules = knob.select(model)
    names = {n for n, _ in knob.modules}
    assert {"0.self_attn", "0.dropout", "0.dropout1", "0.dropout2", "1.mha"} <= names
    knob.apply(0.4)
    assert model[0].self_attn.dropout == 0.4 and model[1].mha.dropout == 0.4
    assert attention_dropout_attribute(model[1].mha) == "dropout"
    x = torch.randn(2, 5, 16)
    model.train()
    model[0](x)
    model[1].mha(x, x, x)
    assert mha_calls == [(0.4, True), (0.4, True)]


def test_dropout_rate_reaches_timm_attention(sdpa_calls: list[float]) -> None:
    attn = TimmAttention(16, num_heads=2, attn_drop=0.0)
    attn.fused_attn = True
    knob = DropoutRate(0.35, include="*attn_drop")
    knob.modules = knob.select(nn.Sequential(attn))
    knob.apply(0.35)
    attn.train()
    attn(torch.randn(2, 4, 16))
    assert sdpa_calls == [0.35]


def _spread(model: nn.Module, x: torch.Tensor, **kw: Any) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "every Monte-Carlo sample is the same"
        _, std = mc_predict(model, x, samples=8, **kw)
    return float(std.max())


def test_mc_predict_samples_attention_dropout_of_the_recipe_model() -> None:
    torch.manual_seed(0)
    net = _net(attn_dropout=0.5).eval()
    x = torch.randint(0, 11, (4, 6))
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # eval: deterministic
    assert _spread(net, x) > 1e-3
    assert _spread(net, x, attention=False) == 0.0  # without attention dropout: no spread
    assert not any(m.training for m in net.modules())  # modes restored


@pytest.mark.parametrize("kind", ["mha", "encoder_layer", "encoder"])
def test_mc_predict_samples_torch_attention_dropout(kind: str) -> None:
    """Attention dropout alone (every other dropout at 0), in eval mode, without gradients."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
    layer.self_attn.dropout = 0.5
    model: nn.Module
    if kind == "mha":
        mha = layer.self_attn

        class SelfAttn(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.mha = mha

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.mha(x, x, x, need_weights=False)[0]

        model = SelfAttn()
    elif kind == "encoder_layer":
        model = layer
    else:
        model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    model.eval()
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    assert _spread(model, x) > 1e-3
    assert _spread(model, x, attention=False) == 0.0
    with mc_dropout(model):
        flagged = [m for m in model.modules() if m.training]
        assert all(
            dropout_follows_own_training_flag(m) or isinstance(m, nn.Dropout) for m in flagged
        )
    assert not any(m.training for m in model.modules())


def test_mc_predict_samples_timm_attention_and_drop_path() -> None:
    torch.manual_seed(0)
    attn = TimmAttention(16, num_heads=2, attn_drop=0.5)
    attn.fused_attn = True
    attn.eval()
    x = torch.randn(2, 4, 16)
    assert _spread(attn, x) > 1e-3
    path = nn.Sequential(nn.Linear(16, 16), TimmDropPath(0.5)).eval()
    assert _spread(path, torch.randn(8, 16)) > 1e-3
    with mc_dropout(path):
        assert path[1].training and not path[0].training
