r"""Generated data for the Transformer recipe (nothing is downloaded).

- **Modular arithmetic** (Power et al., 2022, "Grokking: Generalization Beyond Overfitting on Small
  Algorithmic Datasets"): every pair $(a, b) \in \mathbb{Z}_p^2$ exactly once, written as the four tokens
  `a ∘ b =`; the answer $c = a \circ b \bmod p$ is predicted at the `=` position.
- **Running maximum** of variable-length sequences (lengths 4–32 by default), right-padded with a pad
  token and a mask: at every real position the label is the largest value seen so far. Causal attention
  solves it exactly; padding matters only to what counts padding tokens (batch statistics), which is what
  the normalization ablation measures.
- **Running count** of variable-length sequences: at every real position the label is how many times the
  value 0 has occurred so far (capped). The count is the fraction of zeros times the absolute position, so
  the model needs to know where it is, which batch statistics of length-bucketed batches blur (see
  [RunningCountDataModule][reglight.recipes.transformer.RunningCountDataModule]).

Batches are built by indexing whole tensors (no per-example collation), so a full-batch epoch costs one
gather.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from reglight._validation import check_choice, check_in_range, check_positive_int

__all__ = [
    "IGNORE_INDEX",
    "OPERATIONS",
    "LengthBucketBatchSampler",
    "ModularArithmeticDataModule",
    "RunningCountDataModule",
    "RunningMaxDataModule",
    "is_prime",
    "modular_arithmetic",
    "running_count_sequences",
    "running_max_sequences",
    "split_indices",
]

OPERATIONS = ("add", "sub", "mul", "div", "square_sum")
r"""The operations of [modular_arithmetic][reglight.recipes.transformer.modular_arithmetic]: $a+b$, $a-b$,
$a\,b$, $a\,b^{-1}$ ($b \neq 0$) and $a^2+b^2$, all mod $p$."""

IGNORE_INDEX = -100
"""Target of positions that carry no label (cross-entropy's default `ignore_index`)."""


def is_prime(n: int) -> bool:
    """Trial division.

    Examples:
        >>> [k for k in range(20) if is_prime(k)]
        [2, 3, 5, 7, 11, 13, 17, 19]
    """
    if n < 2:
        return False
    k = 2
    while k * k <= n:
        if n % k == 0:
            return False
        k += 1
    return True


def modular_arithmetic(p: int, operation: str = "add") -> tuple[Tensor, Tensor]:
    r"""Every equation `a ∘ b = c (mod p)` once, as token sequences and answers.

    Tokens: `0..p-1` are the numbers, `p + i` is operation `i` of
    [OPERATIONS][reglight.recipes.transformer.data.OPERATIONS], `p + 5` is `=`; the vocabulary has `p + 6`
    tokens. Division takes every $b \neq 0$ and $c = a\, b^{-1}$ with the modular inverse
    $b^{-1} = b^{p-2} \bmod p$ (Fermat; `p` must be prime).

    Args:
        p: The modulus, `>= 2` (prime for `"div"`).
        operation: One of `"add"`, `"sub"`, `"mul"`, `"div"`, `"square_sum"`.

    Returns:
        `(tokens, answers)`: `(M, 4)` int64 rows `[a, op, b, =]` ($M = p^2$, or $p(p-1)$ for division) in
        lexicographic order of `(a, b)`, and `(M,)` int64 answers in `0..p-1`.

    Examples:
        >>> tokens, answers = modular_arithmetic(5, "div")
        >>> tokens[7].tolist(), int(answers[7])  # 1 / 4 = 4 (mod 5), since 4·4 = 16 = 1
        ([1, 8, 4, 10], 4)
    """
    p = check_positive_int("p", p, minimum=2)
    check_choice("operation", operation, OPERATIONS)
    if operation == "div" and not is_prime(p):
        raise ValueError(f"`p` must be prime for operation='div' (modular inverses), got p={p}")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    if operation == "add":
        c = (a + b) % p
    elif operation == "sub":
        c = (a - b) % p
    elif operation == "mul":
        c = (a * b) % p
    elif operation == "square_sum":
        c = (a * a + b * b) % p
    else:
        keep = b != 0
        a, b = a[keep], b[keep]
        inverse = torch.tensor([0] + [pow(k, p - 2, p) for k in range(1, p)])
        c = (a * inverse[b]) % p
    op = torch.full_like(a, p + OPERATIONS.index(operation))
    eq = torch.full_like(a, p + len(OPERATIONS))
    return torch.stack([a, op, b, eq], dim=1), c


def split_indices(n: int, train_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded random split of `range(n)` into disjoint train and validation indices.

    Args:
        n: Number of examples.
        train_fraction: Fraction in the training split, in (0, 1); at least one example each side.
        seed: Seed of the permutation.

    Returns:
        `(train, val)` int64 index tensors, together a permutation of `range(n)`.

    Examples:
        >>> train, val = split_indices(10, 0.3, seed=0)
        >>> len(train), len(val), sorted((train.tolist() + val.tolist())) == list(range(10))
        (3, 7, True)
    """
    check_in_range(
        "train_fraction", train_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False
    )
    n_train = min(max(round(train_fraction * n), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n_train], perm[n_train:]


def running_max_sequences(
    n: int,
    min_len: int = 4,
    max_len: int = 32,
    num_values: int = 32,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Random sequences with the running maximum as the label of every position.

    Lengths are uniform in `[min_len, max_len]`, values uniform in `0..num_values-1`; the label of position
    $t$ is $\max_{s \le t} x_s$. Sequences are right-padded to `max_len` with the pad token `num_values`.

    Args:
        n: Number of sequences.
        min_len: Shortest length, `>= 1`.
        max_len: Longest length.
        num_values: Number of values (the pad token is `num_values`, so the vocabulary has `num_values + 1`).
        seed: Seed of the generator.

    Returns:
        `(tokens, targets, mask)`, each `(n, max_len)`: int64 tokens, int64 targets
        ([IGNORE_INDEX][reglight.recipes.transformer.data.IGNORE_INDEX] on padding), bool mask (true on real
        tokens).

    Examples:
        >>> tokens, targets, mask = running_max_sequences(2, 4, 6, num_values=10, seed=1)
        >>> tokens.shape, bool((targets[mask] >= tokens[mask]).all()), bool((tokens[~mask] == 10).all())
        (torch.Size([2, 6]), True, True)
    """
    values, mask, tokens = _lengths_and_values(n, min_len, max_len, num_values, seed)
    targets = torch.where(mask, values.cummax(dim=1).values, IGNORE_INDEX)
    return tokens, targets, mask


def _lengths_and_values(
    n: int, min_len: int, max_len: int, num_values: int, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    check_positive_int("n", n)
    check_positive_int("min_len", min_len)
    check_positive_int("max_len", max_len, minimum=min_len)
    check_positive_int("num_values", num_values, minimum=2)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    values = torch.randint(0, num_values, (n, max_len), generator=g)
    mask = torch.arange(max_len)[None, :] < lengths[:, None]
    return values, mask, torch.where(mask, values, num_values)


def running_count_sequences(
    n: int,
    min_len: int = 4,
    max_len: int = 32,
    num_values: int = 4,
    max_count: int = 9,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Random sequences labelled, at every position, with the number of zeros so far (capped).

    Lengths are uniform in `[min_len, max_len]`, values uniform in `0..num_values-1`; the label of position
    $t$ is $\min\big(\#\{s \le t : x_s = 0\},\ \text{max\_count}\big)$. Sequences are right-padded to
    `max_len` with the pad token `num_values`.

    Args:
        n: Number of sequences.
        min_len: Shortest length, `>= 1`.
        max_len: Longest length.
        num_values: Number of values (the pad token is `num_values`, so the vocabulary has `num_values + 1`).
        max_count: Largest label (counts above it are labelled `max_count`); `max_count + 1` classes.
        seed: Seed of the generator.

    Returns:
        `(tokens, targets, mask)`, each `(n, max_len)`: int64 tokens, int64 targets
        ([IGNORE_INDEX][reglight.recipes.transformer.data.IGNORE_INDEX] on padding), bool mask (true on real
        tokens).

    Examples:
        >>> tokens, targets, mask = running_count_sequences(1, 6, 6, num_values=3, max_count=2, seed=3)
        >>> tokens[0].tolist(), targets[0].tolist()
        ([2, 1, 0, 1, 0, 0], [0, 0, 1, 1, 2, 2])
    """
    check_positive_int("max_count", max_count)
    values, mask, tokens = _lengths_and_values(n, min_len, max_len, num_values, seed)
    counts = (values == 0).long().cumsum(dim=1).clamp(max=max_count)
    return tokens, torch.where(mask, counts, IGNORE_INDEX), mask


class _Batches(Dataset):
    """Indexed by a list of indices: returns the whole batch (one gather, no collation).

    With `pad_to` set, padded sequence batches are trimmed to their longest sequence and then padded to
    `pad_to` tokens (`pad_to=None`: to the longest sequence of the batch).
    """

    def __init__(
        self, tensors: Sequence[Tensor], pad_token: int | None = None, pad_to: int | None = None
    ) -> None:
        self.tensors = tuple(tensors)
        self.pad_token = pad_token
        self.pad_to = pad_to

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: list[int]) -> tuple[Tensor, ...]:  # type: ignore[override]
        idx = torch.as_tensor(index)
        batch = tuple(t[idx] for t in self.tensors)
        if self.pad_token is None:
            return batch
        tokens, targets, mask = batch
        length = int(mask.sum(1).max()) if self.pad_to is None else self.pad_to
        width = tokens.shape[1]
        if length <= width:
            return tokens[:, :length], targets[:, :length], mask[:, :length]
        extra = length - width
        n = len(tokens)
        return (
            torch.cat([tokens, tokens.new_full((n, extra), self.pad_token)], 1),
            torch.cat([targets, targets.new_full((n, extra), IGNORE_INDEX)], 1),
            torch.cat([mask, mask.new_zeros((n, extra))], 1),
        )


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of sequences of similar length: sort by length, cut into batches, shuffle the batches.

    The common way to batch variable-length text (little padding per batch). Every epoch sorts the
    sequences by length with ties broken at random, cuts the order into consecutive batches of
    `batch_size` (the last one shorter) and yields them in random order; the randomness follows the global
    seed (`seed_everything`), as `RandomSampler`'s does. `shuffle=False` yields the batches from the
    shortest sequences to the longest, ties in index order.

    Args:
        lengths: `(n,)` length of every sequence.
        batch_size: Sequences per batch.
        shuffle: Shuffle ties and the order of the batches.

    Examples:
        >>> import torch
        >>> sampler = LengthBucketBatchSampler(torch.tensor([5, 2, 9, 2, 5, 7]), 2, shuffle=False)
        >>> list(sampler)
        [[1, 3], [0, 4], [5, 2]]
    """

    def __init__(self, lengths: Tensor, batch_size: int, shuffle: bool = True) -> None:
        self.lengths = torch.as_tensor(lengths).reshape(-1)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.shuffle = shuffle

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            g = torch.Generator().manual_seed(seed)
            ties = torch.rand(len(self.lengths), generator=g)
            order = torch.argsort(
                self.lengths.double() + ties
            )  # ties in [0, 1) stay within a length
            batches = list(order.split(self.batch_size))
            for i in torch.randperm(len(batches), generator=g).tolist():
                yield batches[i].tolist()
        else:
            order = torch.argsort(self.lengths, stable=True)
            yield from (b.tolist() for b in order.split(self.batch_size))

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def _loader(
    dataset: _Batches, batch_size: int, shuffle: bool, lengths: Tensor | None = None
) -> DataLoader:
    # the shuffling order follows the global seed (`seed_everything`), as a DataLoader's does
    batches: Sampler[list[int]]
    if lengths is not None:
        batches = LengthBucketBatchSampler(lengths, batch_size, shuffle)
    else:
        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        batches = BatchSampler(sampler, batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=batches)


class ModularArithmeticDataModule(pl.LightningDataModule):
    r"""`a ∘ b = c (mod p)` for every pair once, split at random into training and validation equations.

    The validation split is also the test split (the task has no other data). Full batch by default, as
    grokking studies train.

    Attributes:
        vocab_size: `p + 6` input tokens.
        num_classes: `p` answers.
        max_positions: 4 tokens per equation.

    Args:
        p: The modulus (prime for `"div"`).
        operation: `"add"`, `"sub"`, `"mul"`, `"div"` ($b \neq 0$) or `"square_sum"` ($a^2 + b^2$).
        train_fraction: Fraction of all equations used for training.
        batch_size: Training batch size; `None` for the whole training split (full batch).
        val_batch_size: Validation and test batch size; `None` for the whole split.
        seed: Seed of the train/validation split (independent of the training seed).

    Examples:
        >>> data = ModularArithmeticDataModule(p=7, train_fraction=0.5)
        >>> data.setup("fit")
        >>> tokens, answers = next(iter(data.train_dataloader()))
        >>> tokens.shape, answers.shape
        (torch.Size([24, 4]), torch.Size([24]))
    """

    def __init__(
        self,
        p: int = 97,
        operation: Literal["add", "sub", "mul", "div", "square_sum"] = "add",
        train_fraction: float = 0.3,
        batch_size: int | None = None,
        val_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.p = check_positive_int("p", p, minimum=2)
        self.operation = check_choice("operation", operation, OPERATIONS)
        if operation == "div" and not is_prime(p):
            raise ValueError(f"`p` must be prime for operation='div' (modular inverses), got p={p}")
        self.train_fraction = check_in_range(
            "train_fraction", train_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False
        )
        self.batch_size = (
            None if batch_size is None else check_positive_int("batch_size", batch_size)
        )
        self.val_batch_size = (
            None if val_batch_size is None else check_positive_int("val_batch_size", val_batch_size)
        )
        self.seed = seed
        self.vocab_size = p + len(OPERATIONS) + 1
        self.num_classes = p
        self.max_positions = 4
        self.train_set: _Batches | None = None
        self.val_set: _Batches | None = None

    def setup(self, stage: str | None = None) -> None:
        """Generate the equations and split them."""
        if self.train_set is not None:
            return
        tokens, answers = modular_arithmetic(self.p, self.operation)
        train, val = split_indices(len(tokens), self.train_fraction, self.seed)
        self.train_set = _Batches((tokens[train], answers[train]))
        self.val_set = _Batches((tokens[val], answers[val]))

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        return _loader(self.train_set, self.batch_size or len(self.train_set), True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        return _loader(self.val_set, self.val_batch_size or len(self.val_set), False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class _PaddedSequenceDataModule(pl.LightningDataModule):
    """Shared by the padded sequence tasks: three generated splits, padding and batching options."""

    def __init__(
        self,
        n_train: int,
        n_val: int,
        n_test: int,
        min_len: int,
        max_len: int,
        num_values: int,
        pad_to: int | None,
        batch_size: int,
        val_batch_size: int,
        test_batch_size: int,
        bucket_by_length: bool,
        seed: int,
    ) -> None:
        super().__init__()
        self.n_train = check_positive_int("n_train", n_train)
        self.n_val = check_positive_int("n_val", n_val)
        self.n_test = check_positive_int("n_test", n_test)
        self.min_len = check_positive_int("min_len", min_len)
        self.max_len = check_positive_int("max_len", max_len, minimum=min_len)
        self.num_values = check_positive_int("num_values", num_values, minimum=2)
        self.pad_to = (
            None if pad_to is None else check_positive_int("pad_to", pad_to, minimum=max_len)
        )
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.val_batch_size = check_positive_int("val_batch_size", val_batch_size)
        self.test_batch_size = check_positive_int("test_batch_size", test_batch_size)
        self.bucket_by_length = bool(bucket_by_length)
        self.seed = seed
        self.vocab_size = num_values + 1
        self.pad_token = num_values
        self.max_positions = max(max_len, pad_to or 0)
        self.sets: dict[str, _Batches] = {}

    def _generate(self, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Generate the three splits."""
        if self.sets:
            return
        for i, (split, n) in enumerate(
            (("train", self.n_train), ("val", self.n_val), ("test", self.n_test))
        ):
            data = self._generate(n, self.seed * 3 + i)
            self.sets[split] = _Batches(data, self.pad_token, self.pad_to)

    def train_dataloader(self) -> DataLoader:
        train = self.sets["train"]
        lengths = train.tensors[2].sum(1) if self.bucket_by_length else None
        return _loader(train, self.batch_size, True, lengths)

    def val_dataloader(self) -> DataLoader:
        return _loader(self.sets["val"], self.val_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return _loader(self.sets["test"], self.test_batch_size, False)


class RunningMaxDataModule(_PaddedSequenceDataModule):
    """Variable-length running-maximum sequences, right-padded with a pad token and a mask.

    Batches are `(tokens, targets, mask)`; see
    [running_max_sequences][reglight.recipes.transformer.running_max_sequences]. Training, validation and test
    sequences come from independent generators.

    Attributes:
        vocab_size: `num_values + 1` (the values and the pad token).
        num_classes: `num_values`.
        max_positions: `max(max_len, pad_to)`.

    Args:
        n_train: Training sequences.
        n_val: Validation sequences.
        n_test: Test sequences.
        min_len: Shortest sequence.
        max_len: Longest sequence.
        num_values: Number of distinct values.
        pad_to: Pad every batch to this many tokens (more padding than needed: the padding-sensitivity
            knob); `None` pads each batch to its longest sequence.
        batch_size: Training batch size.
        val_batch_size: Validation batch size.
        test_batch_size: Test batch size (1: every sequence alone, unpadded).
        bucket_by_length: Batch training sequences of similar length together
            ([LengthBucketBatchSampler][reglight.recipes.transformer.LengthBucketBatchSampler]) instead of
            at random.
        seed: Seed of the generators (independent of the training seed).

    Examples:
        >>> data = RunningMaxDataModule(n_train=16, n_val=8, n_test=8, batch_size=4)
        >>> data.setup("fit")
        >>> tokens, targets, mask = next(iter(data.train_dataloader()))
        >>> tokens.shape == targets.shape == mask.shape, tokens.shape[0]
        (True, 4)
    """

    def __init__(
        self,
        n_train: int = 4096,
        n_val: int = 512,
        n_test: int = 512,
        min_len: int = 4,
        max_len: int = 32,
        num_values: int = 32,
        pad_to: int | None = None,
        batch_size: int = 64,
        val_batch_size: int = 256,
        test_batch_size: int = 64,
        bucket_by_length: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            n_train,
            n_val,
            n_test,
            min_len,
            max_len,
            num_values,
            pad_to,
            batch_size,
            val_batch_size,
            test_batch_size,
            bucket_by_length,
            seed,
        )
        self.num_classes = num_values

    def _generate(self, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        return running_max_sequences(n, self.min_len, self.max_len, self.num_values, seed=seed)


class RunningCountDataModule(_PaddedSequenceDataModule):
    """Variable-length running-count sequences, right-padded with a pad token and a mask.

    At every real position the label is how many zeros the sequence has had so far, capped at `max_count`
    ([running_count_sequences][reglight.recipes.transformer.running_count_sequences]). Causal attention
    gives the fraction of zeros in the prefix; the count is that fraction times the absolute position, so
    the model has to know where it is. With `bucket_by_length` (the default, as text is usually batched)
    every training batch holds sequences of about the same length, and the batch statistics of a batch norm
    then depend on that length: the position features are centred and scaled per length, which is where
    batch norm in a Transformer fails and a per-token norm does not (docs: "LayerNorm vs BatchNorm").

    Attributes:
        vocab_size: `num_values + 1` (the values and the pad token).
        num_classes: `max_count + 1`.
        max_positions: `max(max_len, pad_to)`.

    Args:
        n_train: Training sequences.
        n_val: Validation sequences.
        n_test: Test sequences.
        min_len: Shortest sequence.
        max_len: Longest sequence.
        num_values: Number of distinct values (the one counted is 0).
        max_count: Largest label (higher counts are labelled `max_count`).
        pad_to: Pad every batch to this many tokens; `None` pads each batch to its longest sequence.
        batch_size: Training batch size.
        val_batch_size: Validation batch size.
        test_batch_size: Test batch size (1: every sequence alone, unpadded).
        bucket_by_length: Batch training sequences of similar length together
            ([LengthBucketBatchSampler][reglight.recipes.transformer.LengthBucketBatchSampler]); `False`
            draws training batches at random.
        seed: Seed of the generators (independent of the training seed).

    Examples:
        >>> data = RunningCountDataModule(n_train=64, n_val=8, n_test=8, batch_size=16)
        >>> data.setup("fit")
        >>> lengths = [mask.sum(1) for _, _, mask in data.train_dataloader()]  # 4 batches of 16
        >>> sorted((int(n.min()), int(n.max())) for n in lengths)  # each batch: one range of lengths
        [(4, 11), (11, 18), (18, 25), (26, 32)]
        >>> data.num_classes, data.vocab_size
        (10, 5)
    """

    def __init__(
        self,
        n_train: int = 4096,
        n_val: int = 512,
        n_test: int = 512,
        min_len: int = 4,
        max_len: int = 32,
        num_values: int = 4,
        max_count: int = 9,
        pad_to: int | None = None,
        batch_size: int = 32,
        val_batch_size: int = 256,
        test_batch_size: int = 32,
        bucket_by_length: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(
            n_train,
            n_val,
            n_test,
            min_len,
            max_len,
            num_values,
            pad_to,
            batch_size,
            val_batch_size,
            test_batch_size,
            bucket_by_length,
            seed,
        )
        self.max_count = check_positive_int("max_count", max_count)
        self.num_classes = max_count + 1

    def _generate(self, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        return running_count_sequences(
            n, self.min_len, self.max_len, self.num_values, self.max_count, seed=seed
        )
