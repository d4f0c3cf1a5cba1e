r"""Class-stratified, nested subsets of a training set, fixed by a seed (for learning curves).

[stratified_order][reglight.subsets.stratified_order] puts the samples of a labelled set in an order whose
every prefix is stratified: the first $n$ samples hold $n_c \in \{\lfloor n p_c \rfloor, \lceil n p_c
\rceil\}$ samples of class $c$ (with $p_c$ the class frequencies of the whole set), and within a class the
samples come in a random order fixed by the seed. [stratified_subset][reglight.subsets.stratified_subset]
takes the first $n$. So, for one seed, the subsets of sizes $n_1 < n_2$ are nested and each is as
stratified as an integer count allows; another seed gives other subsets with the same class counts.

The order is built greedily: step $i$ takes the next sample of the class with the largest deficit
$i\,p_c - \text{count}_c$ (ties to the lower class index). Nothing here depends on torch or Lightning.
"""

from __future__ import annotations

import numpy as np

from reglight._validation import check_positive_int

__all__ = ["stratified_order", "stratified_subset"]


def _labels(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.size == 0:
        raise ValueError(
            f"`labels` must be a non-empty vector of class labels (N,) or (N, 1), got shape {y.shape}"
        )
    return y


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """An order of all samples whose every prefix is class-stratified (see the module docstring).

    Args:
        labels: Class labels `(N,)` or `(N, 1)` (any values that compare equal per class).
        seed: Fixes the order of the samples within each class.

    Returns:
        A permutation of `range(N)` (int64).

    Raises:
        ValueError: For labels that are not one label per sample, or a negative `seed`.

    Examples:
        >>> order = stratified_order(np.array([0, 0, 0, 1, 1, 1, 1, 1, 1]), seed=0)
        >>> np.bincount(np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])[order[:3]]).tolist()
        [1, 2]
    """
    y = _labels(labels)
    check_positive_int("seed", seed, minimum=0)
    classes, codes = np.unique(y, return_inverse=True)
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(codes == c)) for c in range(len(classes))]
    totals = np.array([len(q) for q in queues], dtype=np.float64)
    p = totals / totals.sum()
    taken = np.zeros(len(classes), dtype=np.int64)
    order = np.empty(len(y), dtype=np.int64)
    for i in range(len(y)):
        deficit = (i + 1) * p - taken
        deficit[taken >= totals] = -np.inf
        c = int(np.argmax(deficit))
        order[i] = queues[c][taken[c]]
        taken[c] += 1
    return order


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The indices of a class-stratified subset of `size` samples: the first `size` of `stratified_order`.

    Args:
        labels: Class labels `(N,)` or `(N, 1)`.
        size: Number of samples, `1 <= size <= N`.
        seed: Fixes the subset; subsets of one seed are nested in one another.

    Returns:
        `size` sample indices (int64), in the stratified order.

    Raises:
        ValueError: If `size` is not an integer in `[1, N]`.

    Examples:
        >>> labels = np.array([0] * 30 + [1] * 70)
        >>> small, large = stratified_subset(labels, 10, 3), stratified_subset(labels, 50, 3)
        >>> np.bincount(labels[small]).tolist(), set(small) <= set(large)
        ([3, 7], True)
    """
    y = _labels(labels)
    check_positive_int("size", size)
    if size > len(y):
        raise ValueError(f"`size` must be at most the number of samples {len(y)}, got {size}")
    return stratified_order(y, seed)[:size]
