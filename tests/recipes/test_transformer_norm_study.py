"""`norm_study`: the batch-statistics measurements against hand computations, and a tiny run to JSON/PNG."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reglight.recipes.transformer import RunningCountDataModule, TransformerClassifier
from reglight.recipes.transformer.norm_study import (
    _with_batch_statistics,
    batch_norm_shift,
    main,
    norm_study_figure,
)


def _tiny(norm: str) -> TransformerClassifier:
    torch.manual_seed(0)
    return TransformerClassifier(
        d_model=8, depth=1, heads=2, norm=norm, vocab_size=5, num_classes=10, max_len=12
    )


def test_batch_norm_shift_equals_the_masked_mean_of_the_embeddings() -> None:
    model = _tiny("batch")
    first = model.net.blocks[0].norm1.norm  # type: ignore[union-attr]
    first.running_mean.normal_()
    first.running_var.uniform_(0.5, 2.0)
    data = RunningCountDataModule(n_train=8, n_val=8, n_test=24, max_len=12, test_batch_size=8)
    data.setup("test")
    loader = data.test_dataloader()
    shifts = batch_norm_shift(model, loader)
    assert len(shifts) == 3
    net = model.net
    assert net is not None and net.position_embedding is not None
    for (length, shift), (tokens, _, mask) in zip(shifts, loader):
        with torch.no_grad():
            x = net.token_embedding(tokens) + net.position_embedding.weight[: tokens.shape[1]]
        real = x[mask]  # (real tokens, C): pre-norm, the first norm sees the embeddings
        expected = (real.mean(0) - first.running_mean).abs() / (first.running_var + 1e-5).sqrt()
        assert abs(shift - float(expected.mean())) < 1e-5
        assert abs(length - float(mask.sum(1).float().mean())) < 1e-6
    assert batch_norm_shift(_tiny("layer"), loader) == []


def test_batch_statistics_twin_equals_training_mode_and_leaves_the_model_alone() -> None:
    model = _tiny("batch")
    tokens = torch.randint(0, 4, (6, 12))
    mask = torch.arange(12)[None] < torch.tensor([12, 5, 9, 3, 12, 7])[:, None]
    before = [b.clone() for b in model.buffers()]
    twin = _with_batch_statistics(model).eval()
    with torch.no_grad():
        got = twin(tokens, mask)
        assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))
        reference = model.train()(tokens, mask)  # torch's semantics: batch statistics in training
    torch.testing.assert_close(got, reference)
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(
            model(tokens, mask), got
        )  # evaluation uses the running statistics


def test_tiny_study_writes_json_and_figure(tmp_path: Path) -> None:
    out, png = tmp_path / "runs.json", tmp_path / "norms.png"
    args = [
        "--task=counting",
        "--variants=pre:layer,pre:batch",
        "--seeds=0",
        "--epochs=1",
        "--test_pad=16",
        '--data_args={"n_train": 64, "n_val": 8, "n_test": 32, "max_len": 12, "batch_size": 8}',
        '--model_args={"d_model": 8, "heads": 2, "depth": 1}',
        f"--json={out}",
        f"--figure={png}",
    ]
    assert main(args) == 0
    runs = json.loads(out.read_text())
    assert [(r["norm"], r["task"]) for r in runs] == [("layer", "counting"), ("batch", "counting")]
    layer, batch = runs
    for run in runs:
        assert run["acc_bs1"] == run["acc_bs1_ref"]  # evaluation mode: one at a time = in batches
    # a per-token norm does not see the batch: every batching gives the same accuracy
    assert layer["acc"] == layer["acc_batch_stats_sorted"] == layer["acc_batch_stats_random"]
    assert layer["bn_shift"] == {"sorted": [], "random": []}
    assert len(batch["bn_shift"]["sorted"]) == len(batch["bn_shift"]["random"]) == 4
    sorted_lengths = [length for length, _ in batch["bn_shift"]["sorted"]]
    assert sorted_lengths == sorted(sorted_lengths)
    assert png.stat().st_size > 0
    assert len(norm_study_figure(runs).axes) == 2  # the task and the batch-statistics panel
