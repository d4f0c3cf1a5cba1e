"""TabularDataModule and the synthetic generator: sources, splits, file errors, generator statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes

from reglight.recipes.lasso import TabularDataModule, make_sparse_data, split_indices


def _split_rows(data: TabularDataModule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    assert data.train_dataset is not None and data.val_dataset is not None
    assert data.test_dataset is not None
    return (
        data.train_dataset.tensors[0].double().numpy(),
        data.val_dataset.tensors[0].double().numpy(),
        data.test_dataset.tensors[0].double().numpy(),
    )


def test_diabetes_is_sklearns_raw_data_split_without_overlap() -> None:
    data = TabularDataModule("diabetes", dtype="float64", seed=3)
    data.setup("fit")
    raw = load_diabetes(scaled=False)
    assert data.task == "regression" and data.n_classes == 0
    assert data.feature_names == list(raw.feature_names)
    train, val, test = _split_rows(data)
    assert len(train) + len(val) + len(test) == len(raw.target)
    assert (len(val), len(test)) == (88, 88)
    together = np.concatenate([train, val, test])
    # every row once: the union of the splits is a permutation of the data
    order = np.lexsort(together.T[::-1])
    expected = raw.data[np.lexsort(raw.data.T[::-1])]
    np.testing.assert_array_equal(together[order], expected)


def test_breast_cancer_split_is_stratified_and_seeded() -> None:
    a = TabularDataModule("breast_cancer", seed=0)
    b = TabularDataModule("breast_cancer", seed=0)
    c = TabularDataModule("breast_cancer", seed=1)
    for d in (a, b, c):
        d.setup("fit")
    assert a.task == "binary" and a.n_classes == 2
    assert a.class_names == list(load_breast_cancer().target_names)
    assert a.train_dataset is not None and b.train_dataset is not None
    assert c.train_dataset is not None and a.test_dataset is not None
    assert torch.equal(a.train_dataset.tensors[0], b.train_dataset.tensors[0])
    assert not torch.equal(a.train_dataset.tensors[0], c.train_dataset.tensors[0])
    y_all = load_breast_cancer().target
    for part in (a.train_dataset, a.test_dataset):
        share = part.tensors[1].double().mean().item()
        assert abs(share - y_all.mean()) < 0.01  # stratified: same class balance
        assert part.tensors[1].dtype == torch.int64


def test_split_indices_sizes_and_disjoint() -> None:
    train, val, test = split_indices(101, 0.2, 0.1, seed=0)
    assert (len(train), len(val), len(test)) == (71, 20, 10)
    assert len(set(train) | set(val) | set(test)) == 101


def test_loaders_batch_size_and_empty_validation() -> None:
    data = TabularDataModule("diabetes", batch_size=50, val_fraction=0.0)
    data.setup("fit")
    xb, yb = next(iter(data.train_dataloader()))
    assert xb.shape == (50, 10) and yb.dtype == torch.float32
    assert data.val_dataloader() == []
    whole = TabularDataModule("diabetes", batch_size=None)
    whole.setup("fit")
    assert len(whole.train_dataloader()) == 1


def _write_csv(path: Path, rows: list[list[object]], header: list[str]) -> Path:
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_regression_and_string_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    labels = np.array(["cat", "dog", "eel"])[rng.integers(0, 3, 40)]
    rows = [[*x[i].round(6), 2.5 * x[i, 0] + 0.1 * i, labels[i]] for i in range(40)]
    path = _write_csv(tmp_path / "t.csv", rows, ["a", "b", "c", "y", "kind"])

    reg = TabularDataModule(str(path), target="y", features=["a", "b", "c"])
    assert (reg.task, reg.n_features, reg.feature_names) == ("regression", 3, ["a", "b", "c"])
    cls = TabularDataModule(str(path), target="kind", features=["a", "b", "c", "y"])
    assert (cls.task, cls.n_classes, cls.class_names) == ("multiclass", 3, ["cat", "dog", "eel"])
    cls.setup("fit")
    assert cls.train_dataset is not None
    codes = cls.train_dataset.tensors[1]
    assert codes.dtype == torch.int64 and set(codes.tolist()) <= {0, 1, 2}


def test_parquet_file(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"u": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "target": [0, 1, 0, 1, 0, 1]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = TabularDataModule(str(path), target="target", val_fraction=0.0, test_fraction=0.34)
    assert data.task == "binary" and data.feature_names == ["u"]


def test_file_errors_name_the_problem(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "bad.csv",
        [[1.0, "red", 2.0, 1.0], [2.0, "blue", None, 0.0], [3.0, "red", 1.0, 1.0]],
        ["x", "colour", "z", "y"],
    )
    with pytest.raises(ValueError, match=r"'label' not in bad.csv.*columns"):
        _ = TabularDataModule(str(path), target="label").task
    with pytest.raises(ValueError, match=r"non-numeric feature columns.*\['colour'\]"):
        _ = TabularDataModule(str(path), target="y").task
    with pytest.raises(ValueError, match=r"missing values.*'z': 1"):
        _ = TabularDataModule(str(path), target="y", features=["x", "z"]).task
    dropped = TabularDataModule(str(path), target="y", features=["x", "z"], dropna=True)
    assert dropped.data.X.shape == (2, 2)
    with pytest.raises(ValueError, match="features"):
        _ = TabularDataModule(str(path), target="y", features=["x", "nope"]).task
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        _ = TabularDataModule(str(tmp_path / "missing.csv"), target="y").task


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="`dataset`"):
        TabularDataModule("iris")
    with pytest.raises(ValueError, match="`target`"):
        TabularDataModule("data.csv")
    with pytest.raises(ValueError, match="`target`/`features` are for files"):
        TabularDataModule("diabetes", target="y")
    with pytest.raises(ValueError, match="`task` of 'diabetes'"):
        TabularDataModule("diabetes", task="classification")
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction"):
        TabularDataModule("diabetes", val_fraction=0.5, test_fraction=0.45)
    with pytest.raises(ValueError, match="`batch_size`"):
        TabularDataModule("diabetes", batch_size=0)
    with pytest.raises(ValueError, match="n_informative \\* group_size"):
        TabularDataModule("synthetic", n_features=5, n_informative=3, group_size=2)
    with pytest.raises(ValueError, match="`correlation`"):
        TabularDataModule("synthetic", correlation=1.0)


def test_sparse_generator_statistics() -> None:
    made = make_sparse_data(
        n_samples=4000, n_features=30, n_informative=3, group_size=2, correlation=0.8, noise=0.5
    )
    assert made.X.shape == (4000, 30) and len(made.feature_names) == 30
    support = np.flatnonzero(made.coef)
    np.testing.assert_array_equal(support, np.arange(6))
    assert made.coef[0] == made.coef[1] and 1.0 <= abs(made.coef[0]) <= 3.0
    corr = np.corrcoef(made.X.T)
    assert abs(corr[0, 1] - 0.8) < 0.03 and abs(corr[2, 3] - 0.8) < 0.03
    assert abs(corr[0, 2]) < 0.05 and abs(corr[10, 11]) < 0.05  # across groups / noise features
    np.testing.assert_allclose(made.X.std(0), 1.0, atol=0.05)
    residual = made.y - made.X @ made.coef
    assert abs(residual.std() - 0.5) < 0.03

    cls = make_sparse_data(n_samples=500, n_features=20, n_informative=2, task="classification")
    assert set(np.unique(cls.y)) == {0, 1}
    synthetic = TabularDataModule("synthetic", n_samples=60, n_features=100, n_informative=4)
    assert synthetic.n_features == 100 and synthetic.true_coef is not None
    assert int((synthetic.true_coef != 0).sum()) == 4
