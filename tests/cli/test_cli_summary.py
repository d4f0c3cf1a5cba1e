"""The summary says which weights each metric was computed on: last epoch, best (restored), averaged."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from reglight.cli import main

FAST = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--data.n_samples",
    "200",
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # rich: one table row per line


def _rows(out: str) -> dict[str, tuple[str, str]]:
    """metric -> (stage, weights) from the summary table."""
    rows = {}
    for line in out.split("final metrics", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 4 and cells[0] in ("fit", "test"):
            rows[cells[1]] = (cells[0], cells[3])
    return rows


def _callbacks(tmp_path: Path, text: str) -> str:
    path = tmp_path / "callbacks.yaml"
    path.write_text("trainer:\n  callbacks:\n" + text)
    return str(path)


def test_plain_run_is_labelled_last_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "tiny", *FAST, "--trainer.max_epochs", "2", "--trainer.logger", "false"]
    assert main(args) == 0
    rows = _rows(capsys.readouterr().out)
    assert {"train/loss", "val/acc", "test/acc"} <= set(rows)
    assert {weights for _, weights in rows.values()} == {"last epoch (1)"}


def test_restored_best_weights_label_the_test_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _callbacks(
        tmp_path,
        "    - class_path: reglight.callbacks.EarlyStopping\n"
        "      init_args: {monitor: val/loss, patience: 100, restore_best_weights: true}\n",
    )
    logger = ["--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path / "csv")]
    # a high learning rate makes the validation loss move around, so the best epoch is rarely the last
    args = [
        "run",
        "tiny",
        "--config",
        config,
        *FAST,
        "--trainer.max_epochs",
        "6",
        "--model.lr",
        "0.3",
    ]
    assert main([*args, *logger]) == 0
    rows = _rows(capsys.readouterr().out)
    # the reference: the epoch of the lowest val/loss in the CSV log
    with next((tmp_path / "csv").rglob("metrics.csv")).open() as fh:
        logged = [
            (float(r["val/loss"]), int(r["epoch"])) for r in csv.DictReader(fh) if r["val/loss"]
        ]
    best_epoch = min(logged)[1]
    assert rows["test/acc"] == ("test", f"best epoch {best_epoch}, restored")
    assert rows["test/loss"] == ("test", f"best epoch {best_epoch}, restored")
    assert rows["val/acc"] == ("fit", "last epoch (5)")
    assert rows["train/loss"] == ("fit", "last epoch (5)")


def test_averaged_weights_are_labelled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _callbacks(
        tmp_path,
        "    - class_path: lightning.pytorch.callbacks.EMAWeightAveraging\n"
        "      init_args: {decay: 0.9}\n",
    )
    args = ["run", "tiny", "--config", config, *FAST, "--trainer.max_epochs", "2"]
    assert main([*args, "--trainer.logger", "false"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["test/acc"] == ("test", "averaged (EMA)")
    assert rows["val/acc"] == ("fit", "averaged (EMA)")  # Lightning validates the averaged weights
    assert rows["train/loss"] == ("fit", "last epoch (1)")  # the weights as they were trained


@pytest.mark.parametrize("stop_first", [True, False])
def test_restored_weights_win_over_reglight_averaging_in_either_order(stop_first: bool) -> None:
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMA

    from reglight.callbacks import EarlyStopping, EMAWeightAveraging, StochasticWeightAveraging
    from reglight.cli import weights_labels

    stop = EarlyStopping("val/loss", restore_best_weights=True)
    stop.restored, stop.best_epoch = True, 3

    def labels(average: object) -> tuple[str, str]:
        callbacks = [stop, average] if stop_first else [average, stop]
        return weights_labels(SimpleNamespace(current_epoch=10, callbacks=callbacks))

    # reglight's EMA keeps the validated average in the model, so the restored weights are that average
    assert labels(EMAWeightAveraging(decay=0.9)) == (
        "averaged (EMA)",
        "best epoch 3 (EMA average), restored",
    )
    assert labels(StochasticWeightAveraging(swa_lrs=0.1))[1] == "best epoch 3, restored"
    # Lightning's own EMA: the callback that acts last wins
    expected = "averaged (EMA)" if stop_first else "best epoch 3, restored"
    assert labels(LightningEMA(decay=0.9))[1] == expected
