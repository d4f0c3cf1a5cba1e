"""The generated data of the Transformer recipe against plain-Python references."""

from __future__ import annotations

import itertools

import pytest
import torch

from reglight.recipes.transformer import (
    IGNORE_INDEX,
    OPERATIONS,
    LengthBucketBatchSampler,
    ModularArithmeticDataModule,
    RunningCountDataModule,
    RunningMaxDataModule,
    modular_arithmetic,
    running_count_sequences,
    running_max_sequences,
    split_indices,
)

REFERENCE = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: (a * pow(b, -1, p)) % p,  # Python's modular inverse
    "square_sum": lambda a, b, p: (a * a + b * b) % p,
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_pair_exactly_once_with_the_right_answer(operation: str) -> None:
    p = 11
    tokens, answers = modular_arithmetic(p, operation)
    pairs = [(int(a), int(b)) for a, b in tokens[:, [0, 2]]]
    expected = [(a, b) for a, b in itertools.product(range(p), repeat=2) if operation != "div" or b]
    assert sorted(pairs) == expected and len(set(pairs)) == len(pairs)
    assert answers.tolist() == [REFERENCE[operation](a, b, p) for a, b in pairs]
    op_token, eq_token = p + OPERATIONS.index(operation), p + len(OPERATIONS)
    assert (tokens[:, 1] == op_token).all() and (tokens[:, 3] == eq_token).all()


def test_division_only_by_nonzero_and_inverts_multiplication() -> None:
    p = 13
    tokens, answers = modular_arithmetic(p, "div")
    a, b = tokens[:, 0], tokens[:, 2]
    assert bool((b != 0).all()) and len(tokens) == p * (p - 1)
    assert torch.equal((answers * b) % p, a)
    with pytest.raises(ValueError, match="p=12"):
        modular_arithmetic(12, "div")
    with pytest.raises(ValueError, match="p=15"):
        ModularArithmeticDataModule(p=15, operation="div")


def test_split_is_disjoint_complete_and_seeded() -> None:
    train, val = split_indices(100, 0.3, seed=4)
    assert len(train) == 30 and len(val) == 70
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    again, _ = split_indices(100, 0.3, seed=4)
    other, _ = split_indices(100, 0.3, seed=5)
    assert torch.equal(train, again) and not torch.equal(train, other)


def test_datamodule_full_batch_and_disjoint_equations() -> None:
    data = ModularArithmeticDataModule(p=7, train_fraction=0.4, seed=1)
    data.setup("fit")
    train = list(data.train_dataloader())
    val = list(data.val_dataloader())
    assert len(train) == 1 and len(val) == 1  # full batch
    (xt, yt), (xv, yv) = train[0], val[0]
    assert len(xt) == round(0.4 * 49) and len(xt) + len(xv) == 49
    assert len(yt) == len(xt) and len(yv) == len(xv)
    rows_t = {tuple(r) for r in xt.tolist()}
    rows_v = {tuple(r) for r in xv.tolist()}
    assert not rows_t & rows_v
    assert (data.vocab_size, data.num_classes, data.max_positions) == (13, 7, 4)
    minibatch = ModularArithmeticDataModule(p=7, train_fraction=0.4, batch_size=8, seed=1)
    minibatch.setup("fit")
    sizes = [len(b[0]) for b in minibatch.train_dataloader()]
    assert sizes == [8, 8, 4]


def test_running_max_targets_padding_and_mask() -> None:
    tokens, targets, mask = running_max_sequences(50, min_len=4, max_len=9, num_values=6, seed=3)
    lengths = mask.sum(1)
    assert int(lengths.min()) >= 4 and int(lengths.max()) <= 9
    for row_t, row_y, n in zip(tokens.tolist(), targets.tolist(), lengths.tolist()):
        running = [max(row_t[: i + 1]) for i in range(n)]
        assert row_y[:n] == running
        assert row_t[n:] == [6] * (9 - n) and row_y[n:] == [IGNORE_INDEX] * (9 - n)
    assert bool((mask == (torch.arange(9) < lengths[:, None])).all())


def test_sequence_batches_pad_to_longest_or_to_pad_to() -> None:
    data = RunningMaxDataModule(n_train=40, n_val=8, n_test=8, max_len=12, batch_size=8, pad_to=20)
    data.setup("fit")
    for tokens, targets, mask in data.train_dataloader():
        assert tokens.shape == (8, 20) and bool((tokens[~mask] == data.pad_token).all())
        assert bool((targets[~mask] == IGNORE_INDEX).all())
    plain = RunningMaxDataModule(n_train=40, n_val=8, n_test=8, max_len=12, batch_size=8)
    plain.setup("fit")
    for tokens, _, mask in plain.test_dataloader():
        assert tokens.shape[1] == int(mask.sum(1).max())  # no column of padding only
    with pytest.raises(ValueError, match="pad_to"):
        RunningMaxDataModule(max_len=12, pad_to=8)


def test_running_count_targets_padding_and_mask() -> None:
    tokens, targets, mask = running_count_sequences(
        60, min_len=3, max_len=10, num_values=3, max_count=4, seed=5
    )
    lengths = mask.sum(1)
    assert int(lengths.min()) >= 3 and int(lengths.max()) <= 10
    for row_t, row_y, n in zip(tokens.tolist(), targets.tolist(), lengths.tolist()):
        assert all(0 <= v < 3 for v in row_t[:n])
        assert row_y[:n] == [min(row_t[: i + 1].count(0), 4) for i in range(n)]
        assert row_t[n:] == [3] * (10 - n) and row_y[n:] == [IGNORE_INDEX] * (10 - n)
    assert bool((mask == (torch.arange(10) < lengths[:, None])).all())
    assert int(targets.max()) == 4  # the cap is reached


def test_length_buckets_cover_every_sequence_once_in_sorted_chunks() -> None:
    lengths = torch.randint(1, 20, (103,), generator=torch.Generator().manual_seed(0))
    size = 10
    chunks = sorted(lengths.tolist())
    reference = sorted(chunks[i : i + size] for i in range(0, len(chunks), size))
    sampler = LengthBucketBatchSampler(lengths, size)
    torch.manual_seed(1)
    epoch1, epoch2 = list(sampler), list(sampler)
    for epoch in (epoch1, epoch2):
        assert sorted(i for batch in epoch for i in batch) == list(range(103))
        assert sorted(sorted(lengths[batch].tolist()) for batch in epoch) == reference
    assert epoch1 != epoch2 and len(sampler) == len(epoch1) == 11
    torch.manual_seed(1)
    assert list(sampler) == epoch1  # follows the global seed
    ordered = list(LengthBucketBatchSampler(lengths, size, shuffle=False))
    assert [sorted(lengths[b].tolist()) for b in ordered] == sorted(reference)


@pytest.mark.parametrize("bucket", [True, False])
def test_sequence_datamodules_bucket_training_batches_by_length(bucket: bool) -> None:
    for module in (RunningCountDataModule, RunningMaxDataModule):
        data = module(n_train=96, n_val=8, n_test=8, batch_size=16, bucket_by_length=bucket)
        data.setup("fit")
        lengths = data.sets["train"].tensors[2].sum(1).tolist()
        ordered = sorted(lengths)
        chunks = sorted(ordered[i : i + 16] for i in range(0, 96, 16))
        batches = sorted(sorted(mask.sum(1).tolist()) for _, _, mask in data.train_dataloader())
        assert (batches == chunks) is bucket
        test = torch.cat([mask.sum(1) for _, _, mask in data.test_dataloader()])
        assert torch.equal(test, data.sets["test"].tensors[2].sum(1))  # test order kept
    count = RunningCountDataModule(max_count=5)
    assert (count.num_classes, count.vocab_size) == (6, 5)
    with pytest.raises(ValueError, match="max_count"):
        RunningCountDataModule(max_count=0)
