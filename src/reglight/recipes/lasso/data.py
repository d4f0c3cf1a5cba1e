"""`TabularDataModule`: the lasso recipe's train/validation/test loaders over a table.

Features are served raw (unstandardized; the model standardizes on the training split itself) and
targets as tensors, split into train/validation/test parts with a seed. The module exposes what a
model needs to configure itself (`feature_names`, `n_features`, `task`, `n_classes`,
`class_names`), available as soon as the data is loaded (before `setup` too).

Sources (`dataset=`): `"diabetes"` and `"breast_cancer"` (scikit-learn's shipped data, see
`reglight.recipes.lasso.tables`), `"synthetic"`
([`make_sparse_data`][reglight.recipes.lasso.make_sparse_data]), or a path to a CSV/Parquet file with
`target=` naming the target column.

Examples:
    >>> data = TabularDataModule("diabetes", batch_size=64)
    >>> data.task, data.n_features, data.feature_names[:3]
    ('regression', 10, ['age', 'sex', 'bmi'])
    >>> data.setup("fit")
    >>> len(data.train_dataset), len(data.val_dataset), len(data.test_dataset)
    (266, 88, 88)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from typing_extensions import override

from reglight._validation import check_choice, check_in_range, check_positive_int
from reglight.errors import DataValueError

from .synthetic import check_sparse_args, make_sparse_data
from .tables import BUILTIN_TABLES, FILE_SUFFIXES, TabularData, load_builtin, load_table

__all__ = ["BUILTIN_DATASETS", "TabularDataModule", "split_indices"]

BUILTIN_DATASETS = (*BUILTIN_TABLES, "synthetic")
_TASKS = ("auto", "regression", "classification")


def split_indices(
    n: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train/validation/test indices, stratified by `labels` when given.

    Each part gets `round(fraction * size)` rows (per class when stratified); train gets the rest.

    Args:
        n: Number of rows.
        val_fraction: Share of the validation part.
        test_fraction: Share of the test part.
        seed: Seed of the permutation.
        labels: Class codes to stratify on, or `None`.

    Returns:
        `(train, val, test)` index arrays, each in random order (so that contiguous folds of
        the training part are random folds).

    Examples:
        >>> tuple(len(i) for i in split_indices(10, 0.2, 0.2, seed=0))
        (6, 2, 2)
    """
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for idx in groups:
        idx = rng.permutation(idx)
        n_test = round(test_fraction * len(idx))
        n_val = round(val_fraction * len(idx))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    return train, val, test


class TabularDataModule(pl.LightningDataModule):
    """Train/validation/test loaders over a table (see the module docstring for the sources).

    Features are served raw (the model standardizes them on the training split); targets as float
    (regression) or int64 class codes (classification). Splits are random with `seed`, stratified
    by class for classification.

    Args:
        dataset: `"diabetes"`, `"breast_cancer"`, `"synthetic"` or a path to a CSV/Parquet file.
        target: Target column (files only).
        features: Feature columns (files only; default: every other column).
        task: `"auto"` (the dataset's own), `"regression"` or `"classification"`; only files and
            the synthetic data may choose.
        dropna: Files: drop rows with missing values instead of raising.
        val_fraction: Share of rows in the validation split (0: no validation).
        test_fraction: Share of rows in the test split.
        batch_size: Rows per batch; `None` for the whole split in one batch.
        seed: Seed of the split (and of the synthetic data).
        dtype: `"float32"` or `"float64"`: dtype of the feature (and regression target) tensors.
        num_workers: DataLoader worker processes.
        n_samples: Synthetic: number of rows.
        n_features: Synthetic: number of features.
        n_informative: Synthetic: number of informative groups.
        group_size: Synthetic: features per informative group.
        correlation: Synthetic: correlation within a group.
        noise: Synthetic: noise standard deviation.

    Raises:
        ValueError: for an unknown dataset, a `target` given for a built-in dataset, or fractions
            that leave no training rows; file problems are raised when the data is loaded.

    Examples:
        >>> data = TabularDataModule("breast_cancer")
        >>> data.task, data.n_classes, data.class_names
        ('binary', 2, ['malignant', 'benign'])
    """

    def __init__(
        self,
        dataset: str = "diabetes",
        target: str | None = None,
        features: list[str] | None = None,
        task: str = "auto",
        dropna: bool = False,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        batch_size: int | None = None,
        seed: int = 0,
        dtype: str = "float32",
        num_workers: int = 0,
        n_samples: int = 200,
        n_features: int = 1000,
        n_informative: int = 10,
        group_size: int = 1,
        correlation: float = 0.0,
        noise: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(dataset, str) or not dataset:
            raise ValueError(f"`dataset` must be a dataset name or a file path, got {dataset!r}")
        is_file = dataset not in BUILTIN_DATASETS
        if is_file and Path(dataset).suffix.lower() not in FILE_SUFFIXES:
            raise ValueError(
                f"`dataset` must be one of {', '.join(map(repr, BUILTIN_DATASETS))} or a path to a "
                f"{'/'.join(FILE_SUFFIXES)} file, got {dataset!r}"
            )
        if is_file and target is None:
            raise ValueError(f"`target` (the target column) is required for the file {dataset!r}")
        if not is_file and (target is not None or features is not None):
            raise ValueError(
                f"`target`/`features` are for files; the built-in {dataset!r} has its own"
            )
        check_choice("task", task, _TASKS)
        if dataset in ("diabetes", "breast_cancer") and task != "auto":
            native = "regression" if dataset == "diabetes" else "classification"
            if task != native:
                raise ValueError(f"`task` of {dataset!r} is {native!r}, got {task!r}")
        check_in_range("val_fraction", val_fraction, 0.0, 1.0, high_inclusive=False)
        check_in_range("test_fraction", test_fraction, 0.0, 1.0, low_inclusive=False)
        if val_fraction + test_fraction >= 0.9:
            raise ValueError(
                f"`val_fraction + test_fraction` must leave at least 10% for training, got "
                f"{val_fraction} + {test_fraction}"
            )
        if batch_size is not None:
            check_positive_int("batch_size", batch_size)
        check_choice("dtype", dtype, ("float32", "float64"))
        check_positive_int("num_workers", num_workers, minimum=0)
        self.dataset = dataset
        self.target = target
        self.features = features
        self.task_option = task
        self.dropna = bool(dropna)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.dtype = getattr(torch, dtype)
        self.num_workers = num_workers
        self.synthetic = {
            "n_samples": n_samples,
            "n_features": n_features,
            "n_informative": n_informative,
            "group_size": group_size,
            "correlation": correlation,
            "noise": noise,
        }
        if dataset == "synthetic":  # validate now, not at load time
            check_sparse_args(n_samples, n_features, n_informative, group_size, correlation, noise)
        self._data: TabularData | None = None
        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None
        self.test_dataset: TensorDataset | None = None

    # ------------------------------------------------------------------------------------ loading

    @property
    def data(self) -> TabularData:
        """The whole loaded table (loaded on first use)."""
        if self._data is None:
            self._data = self._load()
        return self._data

    def _load(self) -> TabularData:
        if self.dataset in BUILTIN_TABLES:
            return load_builtin(self.dataset)
        if self.dataset == "synthetic":
            task = "classification" if self.task_option == "classification" else "regression"
            made = make_sparse_data(**self.synthetic, task=task, seed=self.seed)  # type: ignore[arg-type]
            kind = "regression" if task == "regression" else "binary"
            classes = [] if task == "regression" else ["0", "1"]
            return TabularData(made.X, made.y, made.feature_names, kind, classes, made.coef)
        assert self.target is not None
        return load_table(
            self.dataset,
            self.target,
            features=self.features,
            task=self.task_option,
            dropna=self.dropna,
        )

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature columns."""
        return list(self.data.feature_names)

    @property
    def n_features(self) -> int:
        """Number of features."""
        return int(self.data.X.shape[1])

    @property
    def task(self) -> str:
        """`"regression"`, `"binary"` or `"multiclass"`."""
        return self.data.task

    @property
    def n_classes(self) -> int:
        """Number of classes (0 for regression)."""
        return len(self.data.class_names)

    @property
    def class_names(self) -> list[str]:
        """Class names in code order (empty for regression)."""
        return list(self.data.class_names)

    @property
    def true_coef(self) -> np.ndarray | None:
        """The true coefficients of synthetic data (`None` otherwise)."""
        return self.data.coef

    # ------------------------------------------------------------------------------------- splits

    @override
    def setup(self, stage: str | None = None) -> None:
        """Load the data (once) and build the three splits."""
        if self.train_dataset is not None:
            return
        data = self.data
        labels = data.y if data.task != "regression" else None
        train, val, test = split_indices(
            len(data.y), self.val_fraction, self.test_fraction, self.seed, labels
        )
        if len(train) < 2 or len(test) < 1:
            raise DataValueError(
                f"{len(data.y)} rows leave {len(train)} for training and {len(test)} for testing; "
                "lower `val_fraction` / `test_fraction` or use more data"
            )
        self.train_dataset = self._tensors(train)
        self.val_dataset = self._tensors(val)
        self.test_dataset = self._tensors(test)

    def _tensors(self, idx: np.ndarray) -> TensorDataset:
        data = self.data
        x = torch.as_tensor(data.X[idx], dtype=self.dtype)
        if data.task == "regression":
            y = torch.as_tensor(data.y[idx], dtype=self.dtype)
        else:
            y = torch.as_tensor(data.y[idx], dtype=torch.int64)
        return TensorDataset(x, y)

    def _loader(self, dataset: TensorDataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call `setup()` before asking for a dataloader")
        size = self.batch_size or max(len(dataset), 1)
        return DataLoader(
            dataset,
            batch_size=size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of the training split."""
        return self._loader(self.train_dataset, shuffle=True)

    @override
    def val_dataloader(self) -> Any:
        """Batches of the validation split (an empty list when `val_fraction` is 0)."""
        if self.val_dataset is not None and len(self.val_dataset) == 0:
            return []
        return self._loader(self.val_dataset, shuffle=False)

    @override
    def test_dataloader(self) -> DataLoader:
        """Batches of the test split."""
        return self._loader(self.test_dataset, shuffle=False)
