"""Gallery figures from the recipes' outputs: read from result files in the recipes' own JSON schemas."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict

import pytest

from reglight.ablation import Run
from reglight.figures import recipes


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("REGLIGHT_GALLERY_RESULTS", str(tmp_path))
    return tmp_path


def _run(variant: str, seed: int, auc: float, acc: float) -> Run:
    return Run(variant, seed, {"test/auc": auc, "test/acc": acc, "test/gap_auc": auc - acc}, 3, 1.0)


def test_medical_ablation_reads_the_ablate_json(results) -> None:
    runs = {
        "full": [_run("full", 0, 0.90, 0.85), _run("full", 1, 0.88, 0.80)],
        "none": [_run("none", 0, 0.91, 0.86), _run("none", 1, 0.87, 0.84)],
    }
    # the payload `reglight ablate --json` writes
    payload = {
        "recipe": "medical_cnn",
        "seeds": [0, 1],
        "overrides": [],
        "variants": {},
        "runs": {n: [asdict(r) for r in rs] for n, rs in runs.items()},
    }
    (results / "medical_ablation.json").write_text(json.dumps(payload))
    fig = recipes.make_medical_ablation(False, 0)
    for name, rs in runs.items():
        for key in ("test/auc", "test/acc"):
            expected = statistics.fmean(r.metrics[key] for r in rs)
            assert fig.numbers[f"{name}/{key}"] == pytest.approx(expected)
    assert "2 seeds, saved results" in fig.caption
    assert len(fig.figure.axes[0].patches) == 3 * len(runs)  # one bar per variant and metric


def test_learning_curve_reads_the_train_sizes_json(results) -> None:
    by_size = {
        50: {"full": [_run("full", s, 0.7 + s / 100, 0.7) for s in range(3)]},
        100: {"full": [_run("full", s, 0.8 + s / 100, 0.8) for s in range(3)]},
    }
    payload = {
        "recipe": "medical_cnn",
        "sizes": [50, 100],
        "seeds": [0, 1, 2],
        "overrides": [],
        "max_epoch_scale": 4.0,
        "runs": {
            str(n): {v: [asdict(r) for r in rs] for v, rs in by.items()}
            for n, by in by_size.items()
        },
    }
    (results / "learning_curve.json").write_text(json.dumps(payload))
    fig = recipes.make_learning_curve(False, 0)
    assert fig.numbers["n50/full/test_auc"] == pytest.approx(0.71)
    assert fig.numbers["n100/full/test_auc"] == pytest.approx(0.81)


def test_grokking_reads_the_benchmark_curves(results) -> None:
    curve = {
        "steps": [1, 2, 3, 4],
        "train_acc": [0.5, 0.995, 1.0, 1.0],
        "weight_norm": [1.0, 1.0, 1.0, 1.0],
        "val_steps": [2, 4],
        "val_acc": [0.2, 0.992],
    }
    (results / "grokking.json").write_text(json.dumps({"curves": {"default": {"0": curve}}}))
    fig = recipes.make_grokking(False, 0)
    assert fig.numbers["default/train_99_step"] == 2
    assert fig.numbers["default/val_99_step"] == 4
    assert fig.numbers["default/final_val_acc"] == pytest.approx(0.992)


def test_transformer_norms_reads_the_norm_study_json(results) -> None:
    runs = [
        {
            "task": "grokking",
            "norm": norm,
            "norm_position": "pre",
            "seed": 0,
            "train_pad": None,
            "acc": acc,
            "acc_bs1": acc,
            "acc_bs1_ref": acc,
            "train_acc": 1.0,
            "seconds": 1.0,
        }
        for norm, acc in (("layer", 0.97), ("batch", 0.19))
    ]
    (results / "transformer_norms.json").write_text(json.dumps(runs))
    fig = recipes.make_transformer_norms(False, 0)
    assert fig.numbers == {"grokking/pre-layer/acc": 0.97, "grokking/pre-batch/acc": 0.19}
