"""The Transformer recipe's network and LightningModule against torch references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglight.nn import MaskedBatchNorm1d
from reglight.recipes.transformer import (
    NORMS,
    CausalSelfAttention,
    MiniTransformer,
    TransformerClassifier,
)


def _net(norm: str = "layer", position: str = "pre", **kw: object) -> MiniTransformer:
    return MiniTransformer(
        vocab_size=12,
        num_classes=5,
        max_len=16,
        d_model=16,
        heads=2,
        depth=2,
        norm=norm,
        norm_position=position,
        **kw,
    )  # type: ignore[arg-type]


def _padded(n: int = 6, t: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, t + 1, (n,), generator=g)
    lengths[0] = t
    mask = torch.arange(t)[None] < lengths[:, None]
    tokens = torch.where(mask, torch.randint(0, 11, (n, t), generator=g), 11)
    return tokens, mask


def test_masked_batch_norm_equals_batchnorm1d_on_the_real_tokens() -> None:
    x = torch.randn(5, 7, 4) * 3 + 1
    _, mask = _padded(5, 7)
    ours, ref = MaskedBatchNorm1d(4, momentum=0.2), nn.BatchNorm1d(4, momentum=0.2)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
        ref.weight.copy_(ours.weight), ref.bias.copy_(ours.bias)
    for step in range(3):
        xs = x + step
        y = ours(xs, mask)
        torch.testing.assert_close(y[mask], ref(xs[mask]))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x, mask), ref(x.reshape(-1, 4)).reshape(x.shape))
    # no mask: plain batch norm over all N·T tokens (the unmasked baseline)
    ours.train(), ref.train()
    torch.testing.assert_close(ours(x), ref(x.reshape(-1, 4)).reshape(x.shape))
    # checkpoints are interchangeable with BatchNorm1d
    MaskedBatchNorm1d(4).load_state_dict(ref.state_dict())


def test_masked_batch_norm_gradients_match_batchnorm1d() -> None:
    x = torch.randn(4, 6, 3, requires_grad=True)
    _, mask = _padded(4, 6, seed=2)
    MaskedBatchNorm1d(3)(x, mask)[mask].square().sum().backward()
    ref_x = x.detach()[mask].clone().requires_grad_(True)
    nn.BatchNorm1d(3)(ref_x).square().sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad[mask], ref_x.grad)
    assert bool((x.grad[~mask] == 0).all())


def _hand_attention(
    attn: CausalSelfAttention, x: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    n, t, d = x.shape
    h = attn.heads
    q, k, v = (x @ attn.qkv.weight.T + attn.qkv.bias).split(d, dim=-1)
    q, k, v = (z.view(n, t, h, d // h).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    allowed = torch.ones(t, t, dtype=torch.bool).tril()
    if mask is not None:
        allowed = allowed & (mask[:, None, None, :] | torch.eye(t, dtype=torch.bool))
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = (weights @ v).transpose(1, 2).reshape(n, t, d)
    return out @ attn.proj.weight.T + attn.proj.bias


@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_attention_equals_hand_written_softmax_attention(padded: bool) -> None:
    attn = CausalSelfAttention(16, heads=4).eval()
    x = torch.randn(6, 9, 16)
    mask = _padded(6, 9)[1] if padded else None
    torch.testing.assert_close(attn(x, mask), _hand_attention(attn, x, mask))
    torch.testing.assert_close(attn(x, None, last_only=True), attn(x)[:, -1:])


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("position", ["pre", "post"])
def test_causal_no_position_sees_a_later_token(norm: str, position: str) -> None:
    net = _net(norm, position).eval()
    tokens, mask = _padded()
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 3) % 11
    for m in (None, mask):
        a, b = net(tokens, m), net(changed, m)
        torch.testing.assert_close(a[:, :5], b[:, :5])
        assert not torch.allclose(a[:, 5:], b[:, 5:])
    # the last-position shortcut gives the full forward's last row
    torch.testing.assert_close(net(tokens, last_only=True), net(tokens)[:, -1])


@pytest.mark.parametrize("norm", ["layer", "rms", "batch", "batch_unmasked"])
def test_extra_padding_changes_real_tokens_only_through_unmasked_batch_norm(norm: str) -> None:
    """Training mode: masked statistics and per-token norms ignore padding; unmasked batch norm does not."""
    net = _net(norm).train()
    tokens, mask = _padded()
    extra = torch.full((len(tokens), 7), 11)
    longer = torch.cat([tokens, extra], 1)
    longer_mask = torch.cat([mask, torch.zeros_like(extra, dtype=torch.bool)], 1)
    a = net(tokens, mask)[mask]
    b = net(longer, longer_mask)[longer_mask]
    if norm == "batch_unmasked":
        assert not torch.allclose(a, b, atol=1e-4)
    else:
        torch.testing.assert_close(a, b)


def _module(**kw: object) -> TransformerClassifier:
    return TransformerClassifier(d_model=16, heads=2, vocab_size=12, num_classes=5, max_len=8, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_no_weight_decay_on_norms_biases_and_embeddings(decay_embeddings: bool) -> None:
    model = _module(weight_decay=0.5, norm="layer", decay_embeddings=decay_embeddings)
    opt = model.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    groups = {g["name"]: g for g in opt.param_groups}
    decayed = {id(p) for p in groups["decay"]["params"]}
    assert groups["decay"]["weight_decay"] == 0.5 and groups["no_decay"]["weight_decay"] == 0.0
    net = model.net
    assert net is not None
    linear_weights = {id(m.weight) for m in net.modules() if isinstance(m, nn.Linear)}
    embeddings = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding)}
    assert decayed == linear_weights | (embeddings if decay_embeddings else set())
    every = {id(p) for p in net.parameters()}
    assert {id(p) for p in groups["no_decay"]["params"]} == every - decayed
    assert len(opt.param_groups[0]["params"]) + len(opt.param_groups[1]["params"]) == len(every)


def test_decay_everything_and_embedding_init() -> None:
    model = _module(weight_decay=1.5, decay_embeddings=True, decay_norms_and_biases=True)
    (group,) = model.configure_optimizers()["optimizer"].param_groups
    assert group["weight_decay"] == 1.5 and len(group["params"]) == len(list(model.parameters()))
    net = MiniTransformer(
        vocab_size=400, num_classes=5, max_len=100, d_model=64, embed_init_std=0.1
    )
    for table in (net.token_embedding.weight, net.position_embedding.weight):  # type: ignore[union-attr]
        assert float(table.std()) == pytest.approx(0.1, rel=0.05)
    with pytest.raises(ValueError, match="embed_init_std"):
        MiniTransformer(vocab_size=4, num_classes=2, max_len=4, embed_init_std=0.0)


def test_warmup_then_constant_learning_rate() -> None:
    model = _module(lr=0.01, warmup_steps=4)
    config = model.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])


def test_loss_and_accuracy_score_the_right_positions() -> None:
    model = _module().eval()
    tokens, mask = _padded(4, 8)
    targets = torch.where(mask, torch.randint(0, 5, mask.shape), -100)
    logits, flat = model.scores((tokens, targets, mask))
    assert logits.shape == (32, 5) and torch.equal(flat, targets.reshape(-1))
    reference = F.cross_entropy(model(tokens, mask)[mask], targets[mask])
    loss, acc, count = model._loss_acc((tokens, targets, mask))
    torch.testing.assert_close(loss, reference)
    assert int(count) == int(mask.sum())
    reference_acc = (model(tokens, mask)[mask].argmax(-1) == targets[mask]).float().mean()
    torch.testing.assert_close(acc, reference_acc)
    answers = torch.randint(0, 5, (4,))
    last, y = model.scores((tokens, answers))
    assert torch.equal(y, answers)
    torch.testing.assert_close(last, model(tokens)[:, -1])


def test_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="norm"):
        TransformerClassifier(norm="group")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="heads"):
        TransformerClassifier(d_model=10, heads=4)
    with pytest.raises(ValueError, match="attn_dropout"):
        TransformerClassifier(attn_dropout=1.0)
