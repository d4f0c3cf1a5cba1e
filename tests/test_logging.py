"""reglight.logging: figures and tables through W&B, TensorBoard and CSV loggers; the W&B fallback."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from reglight.logging import (
    Table,
    WandbLogger,
    has_wandb_credentials,
    log_figure,
    log_table,
    loggers_of,
)


def _figure() -> plt.Figure:
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [2, 1, 0])
    return fig


def test_table_validates_and_renders_markdown() -> None:
    table = Table("t", ["a", "b"], [[1, 0.123456], ["x", 2.0]])
    md = table.to_markdown()
    assert md.splitlines()[0] == "| a | b |"
    assert "| 1 | 0.1235 |" in md
    with pytest.raises(ValueError, match=r"rows\[0\]"):
        Table("t", ["a", "b"], [[1]])


def test_csv_logger_gets_png_and_csv_files(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    log_figure(logger, "lasso/path", _figure())
    log_table(logger, "lasso/coefficients", ["feature", "coef"], [["bmi", 0.5], ["bp", -0.25]])
    media = Path(logger.log_dir) / "media"
    assert (media / "lasso_path.png").stat().st_size > 1000
    with (media / "lasso_coefficients.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows == [["feature", "coef"], ["bmi", "0.5"], ["bp", "-0.25"]]


def test_tensorboard_logger_gets_figure_and_text(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path)
    log_figure(logger, "fig", _figure(), step=3)
    log_table(logger, "tab", ["k", "v"], [["a", 1]])
    logger.experiment.flush()
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    assert "fig" in acc.Tags()["images"]
    assert acc.Images("fig")[0].step == 3
    assert any(tag.startswith("tab") for tag in acc.Tags()["tensors"])


def test_wandb_offline_logger_accepts_figure_and_table(tmp_path: Path) -> None:
    logger = WandbLogger(project="reglight-test", save_dir=str(tmp_path), offline=True)
    log_figure(logger, "fig", _figure())
    log_table(logger, "tab", ["k", "v"], [["a", 1.5]])
    run_dir = Path(logger.experiment.dir)
    logger.experiment.finish()
    media = list(run_dir.rglob("*.png")) + list(run_dir.rglob("*.table.json"))
    assert any(p.suffix == ".png" for p in media)
    assert any(p.name.endswith(".table.json") for p in media)


def test_no_logger_is_a_no_op() -> None:
    log_figure(None, "fig", _figure())
    log_table([], "tab", ["a"], [[1]])
    assert loggers_of(None) == []


def test_credentials_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc_file = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert not has_wandb_credentials()
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    netrc_file.chmod(0o600)
    assert has_wandb_credentials()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert not has_wandb_credentials()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert has_wandb_credentials()


def test_fallback_decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    logger = WandbLogger(project="reglight-test", save_dir=str(tmp_path))
    assert logger.fell_back_offline
    assert logger._offline
    monkeypatch.setenv("WANDB_MODE", "offline")
    explicit = WandbLogger(project="reglight-test", save_dir=str(tmp_path))
    assert not explicit.fell_back_offline and explicit._offline
