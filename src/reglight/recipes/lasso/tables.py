"""Tables for the lasso recipe: scikit-learn's shipped datasets and CSV/Parquet files, read into arrays.

- `"diabetes"`: scikit-learn's diabetes data (442 patients, 10 baseline variables in their original
  units, disease progression after one year); regression. Efron et al., *Least angle regression*,
  Annals of Statistics 2004.
- `"breast_cancer"`: the Wisconsin diagnostic breast cancer data (569 tumours, 30 nuclei features,
  malignant/benign); binary classification. Street, Wolberg & Mangasarian 1993.
- a `.csv` or `.parquet` file with a named target column (needs pandas; Parquet also pyarrow:
  `pip install reglight[tabular]`).

Nothing is downloaded: the two real datasets ship inside scikit-learn.

Examples:
    >>> table = load_builtin("diabetes")
    >>> table.task, table.X.shape, table.feature_names[:3]
    ('regression', (442, 10), ['age', 'sex', 'bmi'])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reglight._validation import check_choice
from reglight.errors import DataFileError, DataValueError

__all__ = ["BUILTIN_TABLES", "FILE_SUFFIXES", "TabularData", "load_builtin", "load_table"]

BUILTIN_TABLES = ("diabetes", "breast_cancer")
FILE_SUFFIXES = (".csv", ".parquet", ".pq")
_TASKS = ("auto", "regression", "classification")


@dataclass
class TabularData:
    """A loaded table: features, target and what describes them.

    Attributes:
        X: Features, float64 array (n_samples, n_features).
        y: Targets: float64 (regression) or int64 class codes `0..K-1` (classification).
        feature_names: One name per column of `X`.
        task: `"regression"`, `"binary"` or `"multiclass"`.
        class_names: Names of the classes in code order (empty for regression).
        coef: The true coefficients (synthetic data only), else `None`.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    task: str
    class_names: list[str]
    coef: np.ndarray | None = None


def load_builtin(name: str) -> TabularData:
    """One of scikit-learn's shipped datasets, features in their original units.

    Args:
        name: `"diabetes"` (regression; `load_diabetes(scaled=False)`) or `"breast_cancer"`
            (binary classification).

    Returns:
        A `TabularData`.

    Raises:
        ValueError: for another name.
    """
    from sklearn import datasets

    check_choice("name", name, BUILTIN_TABLES)
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

    `task="auto"` makes a classification problem when the target column is non-numeric, boolean,
    or integer with at most 10 distinct values, and a regression problem otherwise. Class labels
    are coded `0..K-1` in sorted order and their names kept.

    Args:
        path: A `.csv`, `.parquet` or `.pq` file.
        target: Name of the target column.
        features: Columns to use as features (default: every other column).
        task: `"auto"`, `"regression"` or `"classification"`.
        dropna: Drop the rows with a missing value in the used columns instead of raising.

    Returns:
        A `TabularData`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: for an unknown file type, a missing target or feature column, non-numeric
            feature columns, missing values (unless `dropna`), a non-numeric regression target or
            a single class.
    """
    import pandas as pd

    path = Path(path)
    check_choice("task", task, _TASKS)
    if not path.is_file():
        raise DataFileError(f"file not found: {str(path)!r}")
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise DataValueError(f"`path` must be a {'/'.join(FILE_SUFFIXES)} file, got {str(path)!r}")
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise DataValueError(f"`target` column {target!r} not in {path.name}; columns: {columns}")
    if features is None:
        features = [c for c in columns if c != target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise DataValueError(f"`features` not in {path.name}: {missing}; columns: {columns}")
    if target in features:
        raise DataValueError(f"`features` must not contain the target column {target!r}")
    if not features:
        raise DataValueError(f"{path.name} has no feature column besides the target {target!r}")
    frame = frame[[*features, target]]
    non_numeric = [
        c
        for c in features
        if not pd.api.types.is_numeric_dtype(frame[c].dtype)
        or pd.api.types.is_bool_dtype(frame[c].dtype)
    ]
    if non_numeric:
        raise DataValueError(
            f"non-numeric feature columns in {path.name}: {non_numeric}; encode them as numbers "
            "(e.g. one-hot) or leave them out with `features`"
        )
    with_nan = [c for c in frame.columns if frame[c].isna().any()]
    if with_nan and not dropna:
        counts = {c: int(frame[c].isna().sum()) for c in with_nan}
        raise DataValueError(
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
            raise DataValueError(
                f"regression needs a numeric `target`; {target!r} is {y_col.dtype}"
            )
        return TabularData(X, y_col.to_numpy(dtype=np.float64), list(features), "regression", [])
    classes, codes = np.unique(y_col.to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise DataValueError(
            f"classification needs at least 2 classes in {target!r}, got {classes}"
        )
    kind = "binary" if len(classes) == 2 else "multiclass"
    return TabularData(
        X, codes.astype(np.int64), list(features), kind, [str(c) for c in classes.tolist()]
    )
