"""The learning-curve runner: stratified nested subsets, epoch scaling, statistics, table and figure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from reglight.ablation import Run, main
from reglight.learning_curve import epoch_scale, learning_curve_table, paired_comparison, t_interval
from reglight.recipes.medical_cnn import MedMNISTDataModule, write_synthetic_medmnist
from reglight.subsets import stratified_order, stratified_subset


@pytest.mark.parametrize("seed", range(5))
def test_every_prefix_is_stratified_to_the_nearest_integer(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    labels = rng.choice(k, size=int(rng.integers(30, 200)), p=rng.dirichlet(np.ones(k)))
    order = stratified_order(labels, seed)
    assert sorted(order.tolist()) == list(range(len(labels)))
    classes, codes = np.unique(labels, return_inverse=True)
    p = np.bincount(codes) / len(labels)
    counts = np.cumsum(np.eye(len(classes))[codes[order]], axis=0)  # class counts of each prefix
    n = np.arange(1, len(labels) + 1)[:, None]
    assert np.all(np.abs(counts - n * p) < 1)  # floor or ceil of n * p_c


def test_subsets_are_nested_per_seed_and_differ_across_seeds() -> None:
    labels = np.array([0] * 40 + [1] * 100)
    a50, a100 = stratified_subset(labels, 50, 1), stratified_subset(labels, 100, 1)
    assert set(a50) < set(a100)
    assert np.bincount(labels[a50]).tolist() == [14, 36]  # 50 * 40/140 = 14.3
    assert set(stratified_subset(labels, 50, 2)) != set(a50)
    assert np.array_equal(stratified_subset(labels, 50, 1), a50)
    with pytest.raises(ValueError, match="size"):
        stratified_subset(labels, 141, 0)


def test_datamodule_trains_on_the_subset_of_its_seed(tmp_path: Path) -> None:
    write_synthetic_medmnist(tmp_path / "breastmnist.npz", n_samples=(60, 8, 8), seed=0)
    full = MedMNISTDataModule(root=str(tmp_path), download=False)
    full.setup()
    dm = MedMNISTDataModule(root=str(tmp_path), download=False, train_size=20, subset_seed=3)
    dm.setup()
    labels = np.load(tmp_path / "breastmnist.npz")["train_labels"][:, 0]
    expected = np.sort(stratified_subset(labels, 20, 3))
    assert np.array_equal(dm.splits["train"].targets.numpy(), labels[expected])
    assert len(dm.splits["val"]) == len(full.splits["val"]) == 8
    with pytest.raises(ValueError, match="train_size"):
        MedMNISTDataModule(root=str(tmp_path), download=False, train_size=0)


def test_statistics_match_scipy() -> None:
    x = [0.91, 0.88, 0.93, 0.90, 0.95]
    mean, low, high = t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert (low, high) == pytest.approx(ref) and mean == pytest.approx(np.mean(x))
    ref_x = [0.90, 0.89, 0.90, 0.90, 0.92]
    c = paired_comparison(x, ref_x)
    d = np.subtract(x, ref_x)
    assert c.mean == pytest.approx(d.mean())
    assert (c.wins, c.losses, c.ties) == (3, 1, 1)
    assert c.sign_p == pytest.approx(stats.binomtest(3, 4).pvalue)
    assert c.wilcoxon_p == pytest.approx(stats.wilcoxon(d).pvalue)
    assert epoch_scale(50, 546, 4.0) == 4.0 and epoch_scale(546, 546) == 1.0


def test_table_pairs_runs_by_seed() -> None:
    runs = {
        50: {
            "full": [
                Run("full", s, {"test/auc": v}, 3, 1.0) for s, v in zip((2, 1, 0), (0.9, 0.8, 0.7))
            ],
            "none": [
                Run("none", s, {"test/auc": v}, 3, 1.0)
                for s, v in zip((0, 1, 2), (0.6, 0.75, 0.85))
            ],
        }
    }
    table = learning_curve_table(runs)
    assert table.rows[1][2] == 3  # seeds
    assert table.rows[1][4].startswith("-0.067")  # seed by seed: -0.1, -0.05, -0.05
    assert table.rows[1][5] == "0/3/0"


def test_ablate_with_train_sizes_writes_its_table_and_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    write_synthetic_medmnist(root / "breastmnist.npz", n_samples=(40, 12, 12), seed=0)
    monkeypatch.setenv("REGLIGHT_DATA", str(root))
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "medical_cnn",
            "--train-sizes",
            "10,20",
            "--seeds",
            "2",
            "--variants",
            "full",  # the paired columns are checked on hand-made runs above
            "--logger",
            "csv",
            "--save_dir",
            str(tmp_path / "logs"),
            "--json",
            str(tmp_path / "curve.json"),
            "--trainer.max_epochs=1",
            "--data.batch_size=8",
            "--model.width=4",
            "--model.hidden=8",
            "--model.depth=2",
        ]
    )
    assert code == 0
    out = tmp_path / "logs" / "medical_cnn-learning-curve"
    assert (out / "learning_curve.png").stat().st_size > 0
    table = (out / "learning_curve.md").read_text()
    assert table.count("| 10 | full") == 1 and table.count("| 20 | full") == 1
    payload = json.loads((tmp_path / "curve.json").read_text())
    runs = payload["runs"]["10"]["full"]
    # the epochs were scaled by 20/10 and every run trained on its own seed's subset
    assert {r["epochs"] for r in runs} == {2}
    assert {r["config"]["data.train_size"] for r in runs} == {10}
    assert sorted(r["config"]["data.subset_seed"] for r in runs) == [0, 1]
    assert all(math.isfinite(r["metrics"]["test/auc"]) for r in runs)
    # the summary (for redrawing the figure) holds the t-interval of each size's runs
    rec = next(r for r in payload["summary"] if r["n_train"] == 10)
    auc = [r["metrics"]["test/auc"] for r in runs]
    ref = stats.t.interval(0.95, len(auc) - 1, loc=np.mean(auc), scale=stats.sem(auc))
    assert rec["seeds"] == [0, 1] and rec["mean"] == pytest.approx(np.mean(auc))
    if np.ptp(auc) > 0:
        assert (rec["low"], rec["high"]) == pytest.approx(ref)
    assert payload["table"]["rows"][0][:2] == [10, "full"]
    assert "Learning curve" in capsys.readouterr().out
