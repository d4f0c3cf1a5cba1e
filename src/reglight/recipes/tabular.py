"""Tabular data for the linear recipes: scikit-learn's shipped datasets, CSV/Parquet files, synthetic data.

:class:`TabularDataModule` serves raw (unstandardized) features and targets as tensors, split into
train/validation/test parts with a seed; the model standardizes on the training split itself. It
exposes what a model needs to configure itself (``feature_names``, ``n_features``, ``task``,
``n_classes``, ``class_names``), available as soon as the data is loaded (before ``setup`` too).

Sources (``dataset=``):

- ``"diabetes"``: scikit-learn's diabetes data (442 patients, 10 baseline variables in their original
  units, disease progression after one year); regression. Efron et al., *Least angle regression*,
  Annals of Statistics 2004.
- ``"breast_cancer"``: the Wisconsin diagnostic breast cancer data (569 tumours, 30 nuclei features,
  malignant/benign); binary classification. Street, Wolberg & Mangasarian 1993.
- ``"synthetic"``: :func:`make_sparse_data`, a high-dimensional problem (``n ≪ p``) with a few
  informative features, optionally in correlated groups.
- a path to a ``.csv`` or ``.parquet`` file, with ``target=`` naming the target column (needs pandas;
  Parquet also pyarrow: ``pip install reglight[tabular]``).

Nothing is downloaded: the two real datasets ship inside scikit-learn.

Example:
    >>> data = TabularDataModule("diabetes", batch_size=64)
    >>> data.task, data.n_features, data.feature_names[:3]
    ('regression', 10, ['age', 'sex', 'bmi'])
    >>> data.setup("fit")
    >>> len(data.train_dataset), len(data.val_dataset), len(data.test_dataset)
    (266, 88, 88)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from reglight._validation import (
    check_choice,
    check_in_range,
    check_nonnegative,
    check_positive_int,
)

__all__ = [
    "BUILTIN_DATASETS",
    "SparseData",
    "TabularData",
    "TabularDataModule",
    "load_builtin",
    "load_table",
    "make_sparse_data",
    "split_indices",
]

BUILTIN_DATASETS = ("diabetes", "breast_cancer", "synthetic")
_TASKS = ("auto", "regression", "classification")
_FILE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass
class TabularData:
    """A loaded table: features, target and what describes them.

    Attributes:
        X: Features, float64 array (n_samples, n_features).
        y: Targets: float64 (regression) or int64 class codes ``0..K-1`` (classification).
        feature_names: One name per column of ``X``.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        class_names: Names of the classes in code order (empty for regression).
        coef: The true coefficients (synthetic data only), else ``None``.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    task: str
    class_names: list[str]
    coef: np.ndarray | None = None


@dataclass
class SparseData:
    """A synthetic sparse problem from :func:`make_sparse_data`.

    Attributes:
        X: Features (n_samples, n_features), float64.
        y: Targets (float64 for regression, int64 labels in {0, 1} for classification).
        coef: True coefficients (n_features,); nonzero exactly on the informative features.
        feature_names: ``"x0000"``, ``"x0001"``, ...
    """

    X: np.ndarray
    y: np.ndarray
    coef: np.ndarray
    feature_names: list[str]


def _check_sparse_args(
    n_samples: int,
    n_features: int,
    n_informative: int,
    group_size: int,
    correlation: float,
    noise: float,
) -> None:
    check_positive_int("n_samples", n_samples, minimum=2)
    check_positive_int("n_features", n_features)
    check_positive_int("n_informative", n_informative, minimum=0)
    check_positive_int("group_size", group_size)
    check_in_range("correlation", correlation, 0.0, 1.0, high_inclusive=False)
    check_nonnegative("noise", noise)
    if n_informative * group_size > n_features:
        raise ValueError(
            f"`n_informative * group_size` ({n_informative} * {group_size}) must not exceed "
            f"`n_features` ({n_features})"
        )


def make_sparse_data(
    n_samples: int = 200,
    n_features: int = 1000,
    n_informative: int = 10,
    group_size: int = 1,
    correlation: float = 0.0,
    noise: float = 1.0,
    task: str = "regression",
    seed: int = 0,
) -> SparseData:
    r"""A sparse linear problem, high-dimensional when ``n_samples < n_features``.

    The first ``n_informative * group_size`` columns form ``n_informative`` groups of ``group_size``
    features; group ``g`` shares a latent factor ``z_g``: ``x_j = √c z_g + √(1-c) e_j`` with
    ``c = correlation``, so two members of a group have correlation ``c``. Every member of group
    ``g`` carries the coefficient ``β_g = ±U(1, 3)`` (random sign). The other columns are
    independent standard normal noise features with coefficient 0.

    - regression: $y = X\beta + \sigma\varepsilon$ with ``σ = noise``;
    - classification: $y = 1[X\beta + \sigma\varepsilon > 0]$.

    This is the genomics-like setting of the lasso (few informative among many measured features)
    and, with ``group_size=2`` and a correlation close to 1, the correlated-pair example: the lasso
    keeps one member of each pair, the elastic net keeps both (Zou & Hastie 2005).

    Args:
        n_samples: Number of rows.
        n_features: Number of columns (at least ``n_informative * group_size``).
        n_informative: Number of informative groups.
        group_size: Features per informative group (1: no groups).
        correlation: Correlation ``c`` in ``[0, 1)`` between members of a group.
        noise: Standard deviation ``σ`` of the additive noise.
        task: ``"regression"`` or ``"classification"``.
        seed: Seed of the NumPy generator.

    Returns:
        A :class:`SparseData`.

    Raises:
        ValueError: if an argument is out of range or the informative groups do not fit.

    Example:
        >>> data = make_sparse_data(n_samples=50, n_features=200, n_informative=3, group_size=2)
        >>> data.X.shape, int((data.coef != 0).sum())
        ((50, 200), 6)
    """
    _check_sparse_args(n_samples, n_features, n_informative, group_size, correlation, noise)
    check_choice("task", task, ("regression", "classification"))
    n_signal = n_informative * group_size
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    if n_informative and correlation > 0:
        latent = rng.standard_normal((n_samples, n_informative))
        shared = np.repeat(latent, group_size, axis=1)
        X[:, :n_signal] = (
            math.sqrt(correlation) * shared + math.sqrt(1 - correlation) * X[:, :n_signal]
        )
    beta = rng.uniform(1.0, 3.0, n_informative) * rng.choice([-1.0, 1.0], n_informative)
    coef = np.zeros(n_features)
    coef[:n_signal] = np.repeat(beta, group_size)
    eta = X @ coef + noise * rng.standard_normal(n_samples)
    y = eta if task == "regression" else (eta > 0).astype(np.int64)
    width = max(4, len(str(n_features - 1)))
    names = [f"x{j:0{width}d}" for j in range(n_features)]
    return SparseData(X=X, y=y, coef=coef, feature_names=names)


def load_builtin(name: str) -> TabularData:
    """One of scikit-learn's shipped datasets, features in their original units.

    Args:
        name: ``"diabetes"`` (regression; ``load_diabetes(scaled=False)``) or ``"breast_cancer"``
            (binary classification).

    Returns:
        A :class:`TabularData`.

    Raises:
        ValueError: for another name.
    """
    from sklearn import datasets

    check_choice("name", name, ("diabetes", "breast_cancer"))
    if name == "diabetes":
        bunch = datasets.load_diabetes(scaled=False)
        return TabularData(
            X=np.asarray(bunch.data, dtype=np.float64),
            y=np.asarray(bunch.target, dtype=np.float64),
            feature_names=[str(f) for f in bunch.feature_names],
            task="regression",
            class_names=[],
        )
    bunch = datasets.load_breast_cancer()
    return TabularData(
        X=np.asarray(bunch.data, dtype=np.float64),
        y=np.asarray(bunch.target, dtype=np.int64),
        feature_names=[str(f) for f in bunch.feature_names],
        task="binary",
        class_names=[str(c) for c in bunch.target_names],
    )


def _read_frame(path: Path) -> Any:
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - pandas is in the tabular extra
        raise ImportError(
            f"reading {path.name} needs pandas (and pyarrow for Parquet): "
            "pip install 'reglight[tabular]'"
        ) from err
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    try:
        return pd.read_parquet(path)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"reading {path.name} needs pyarrow: pip install 'reglight[tabular]'"
        ) from err


def _is_categorical(series: Any) -> bool:
    import pandas as pd

    kind = series.dtype
    if pd.api.types.is_bool_dtype(kind) or not pd.api.types.is_numeric_dtype(kind):
        return True
    if pd.api.types.is_integer_dtype(kind):
        return int(series.nunique()) <= 10
    return False


def load_table(
    path: str | Path,
    target: str,
    *,
    features: list[str] | None = None,
    task: str = "auto",
    dropna: bool = False,
) -> TabularData:
    """A CSV or Parquet file as features and target.

    ``task="auto"`` makes a classification problem when the target column is non-numeric, boolean,
    or integer with at most 10 distinct values, and a regression problem otherwise. Class labels
    are coded ``0..K-1`` in sorted order and their names kept.

    Args:
        path: A ``.csv``, ``.parquet`` or ``.pq`` file.
        target: Name of the target column.
        features: Columns to use as features (default: every other column).
        task: ``"auto"``, ``"regression"`` or ``"classification"``.
        dropna: Drop the rows with a missing value in the used columns instead of raising.

    Returns:
        A :class:`TabularData`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for an unknown file type, a missing target or feature column, non-numeric
            feature columns, missing values (unless ``dropna``), a non-numeric regression target or
            a single class.
    """
    import pandas as pd

    path = Path(path)
    check_choice("task", task, _TASKS)
    if not path.is_file():
        raise FileNotFoundError(f"`dataset` file not found: {str(path)!r}")
    if path.suffix.lower() not in _FILE_SUFFIXES:
        raise ValueError(
            f"`dataset` must be one of {', '.join(BUILTIN_DATASETS)} or a "
            f"{'/'.join(_FILE_SUFFIXES)} file, got {str(path)!r}"
        )
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise ValueError(f"`target` column {target!r} not in {path.name}; columns: {columns}")
    if features is None:
        features = [c for c in columns if c != target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise ValueError(f"`features` not in {path.name}: {missing}; columns: {columns}")
    if target in features:
        raise ValueError(f"`features` must not contain the target column {target!r}")
    if not features:
        raise ValueError(f"{path.name} has no feature column besides the target {target!r}")
    frame = frame[[*features, target]]
    non_numeric = [
        c
        for c in features
        if not pd.api.types.is_numeric_dtype(frame[c].dtype)
        or pd.api.types.is_bool_dtype(frame[c].dtype)
    ]
    if non_numeric:
        raise ValueError(
            f"non-numeric feature columns in {path.name}: {non_numeric}; encode them as numbers "
            "(e.g. one-hot) or leave them out with `features`"
        )
    with_nan = [c for c in frame.columns if frame[c].isna().any()]
    if with_nan and not dropna:
        counts = {c: int(frame[c].isna().sum()) for c in with_nan}
        raise ValueError(
            f"missing values (NaN) in {path.name}, count per column: {counts}; impute them, or "
            "pass dropna=True to drop those rows"
        )
    if with_nan:
        frame = frame.dropna()
    y_col = frame[target]
    if task == "auto":
        task = "classification" if _is_categorical(y_col) else "regression"
    X = frame[features].to_numpy(dtype=np.float64)
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y_col.dtype) or pd.api.types.is_bool_dtype(y_col):
            raise ValueError(f"regression needs a numeric `target`; {target!r} is {y_col.dtype}")
        return TabularData(X, y_col.to_numpy(dtype=np.float64), list(features), "regression", [])
    classes, codes = np.unique(y_col.to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"classification needs at least 2 classes in {target!r}, got {classes}")
    kind = "binary" if len(classes) == 2 else "multiclass"
    return TabularData(
        X, codes.astype(np.int64), list(features), kind, [str(c) for c in classes.tolist()]
    )


def split_indices(
    n: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train/validation/test indices, stratified by ``labels`` when given.

    Each part gets ``round(fraction * size)`` rows (per class when stratified); train gets the rest.

    Args:
        n: Number of rows.
        val_fraction: Share of the validation part.
        test_fraction: Share of the test part.
        seed: Seed of the permutation.
        labels: Class codes to stratify on, or ``None``.

    Returns:
        ``(train, val, test)`` index arrays, each in random order (so that contiguous folds of
        the training part are random folds).

    Example:
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
    (regression) or int64 class codes (classification). Splits are random with ``seed``, stratified
    by class for classification.

    Args:
        dataset: ``"diabetes"``, ``"breast_cancer"``, ``"synthetic"`` or a path to a CSV/Parquet file.
        target: Target column (files only).
        features: Feature columns (files only; default: every other column).
        task: ``"auto"`` (the dataset's own), ``"regression"`` or ``"classification"``; only files and
            the synthetic data may choose.
        dropna: Files: drop rows with missing values instead of raising.
        val_fraction: Share of rows in the validation split (0: no validation).
        test_fraction: Share of rows in the test split.
        batch_size: Rows per batch; ``None`` for the whole split in one batch.
        seed: Seed of the split (and of the synthetic data).
        dtype: ``"float32"`` or ``"float64"``: dtype of the feature (and regression target) tensors.
        num_workers: DataLoader worker processes.
        n_samples: Synthetic: number of rows.
        n_features: Synthetic: number of features.
        n_informative: Synthetic: number of informative groups.
        group_size: Synthetic: features per informative group.
        correlation: Synthetic: correlation within a group.
        noise: Synthetic: noise standard deviation.

    Raises:
        ValueError: for an unknown dataset, a ``target`` given for a built-in dataset, or fractions
            that leave no training rows; file problems are raised when the data is loaded.

    Example:
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
        if is_file and Path(dataset).suffix.lower() not in _FILE_SUFFIXES:
            raise ValueError(
                f"`dataset` must be one of {', '.join(map(repr, BUILTIN_DATASETS))} or a path to a "
                f"{'/'.join(_FILE_SUFFIXES)} file, got {dataset!r}"
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
            _check_sparse_args(n_samples, n_features, n_informative, group_size, correlation, noise)
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
        if self.dataset in ("diabetes", "breast_cancer"):
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
        """``"regression"``, ``"binary"`` or ``"multiclass"``."""
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
        """The true coefficients of synthetic data (``None`` otherwise)."""
        return self.data.coef

    # ------------------------------------------------------------------------------------- splits

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
            raise ValueError(
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

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of the training split."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> Any:
        """Batches of the validation split (an empty list when ``val_fraction`` is 0)."""
        if self.val_dataset is not None and len(self.val_dataset) == 0:
            return []
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split."""
        return self._loader(self.test_dataset, shuffle=False)
