"""reglight.logging.WandbLogger never costs the run: no network, a backend that dies, a discarded run."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import wandb
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from reglight.logging import WandbLogger, _unreachable, _wandb_init_args
from reglight.recipes.tiny import TinyClassifier, TwoMoonsDataModule

REPO_ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    """A local TCP port that nothing listens on (bound once to pick it, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_tiny(
    tmp_path: Path, name: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`reglight run tiny` (2 epochs) in a fresh process; returns the result and its wall time."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WANDB_", "REGLIGHT_WANDB")) and k not in ("NETRC",)
    }
    base.update(
        PYTHONPATH=str(REPO_ROOT / "src"),
        NETRC=str(tmp_path / "no-netrc"),
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
        COLUMNS="400",  # one summary line per hint, whatever the terminal
    )
    base.update(env)
    cwd = tmp_path / name
    cwd.mkdir()
    code = "import sys; from reglight.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "run", "tiny", "--trainer.max_epochs=2"]
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=base, capture_output=True, text=True, timeout=300)
    return result, time.perf_counter() - start


def test_unreachable_server_falls_back_offline_within_seconds(tmp_path: Path) -> None:
    normal, normal_s = _run_tiny(tmp_path, "normal", WANDB_MODE="offline")
    port = _closed_port()
    cut_off, cut_off_s = _run_tiny(
        tmp_path,
        "cut-off",
        WANDB_API_KEY="0" * 40,
        WANDB_BASE_URL=f"http://127.0.0.1:{port}",
        REGLIGHT_WANDB_CONNECT_TIMEOUT="2",
    )
    assert normal.returncode == 0, normal.stderr[-2000:]
    assert cut_off.returncode == 0, cut_off.stderr[-2000:]
    # before the fallback this waited ~100 s in wandb.init and died; allow a generous margin
    assert cut_off_s < normal_s + 15, (normal_s, cut_off_s)
    notice = f"reglight: W&B server http://127.0.0.1:{port} not reachable"
    assert cut_off.stderr.count(notice) == 1, cut_off.stderr
    assert "wandb sync <run folder>" in cut_off.stderr
    assert "Traceback" not in cut_off.stderr
    runs = list((tmp_path / "cut-off" / "reglight_logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert any(runs[0].glob("*.wandb"))
    # the summary names the offline run folder and its exact upload command
    assert f"wandb sync reglight_logs/wandb/{runs[0].name}" in cut_off.stdout


def test_offline_run_prints_the_sync_hint_once_and_no_anonymous_warning(tmp_path: Path) -> None:
    result, _ = _run_tiny(tmp_path, "offline", WANDB_MODE="offline")
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert len(re.findall(r"wandb sync \S", output)) == 1, output
    assert "You can sync this run" not in output
    assert "anonymous" not in output.lower()
    assert "environment variables will be ignored" not in output


class _FlakyRun:
    """Stands in for a wandb run's `log`: the first `ok` calls go through, then the backend is gone."""

    def __init__(self, log: Any, ok: int) -> None:
        self.log, self.ok, self.calls = log, ok, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls > self.ok:
            raise BrokenPipeError("wandb-core is gone")
        return self.log(*args, **kwargs)


def test_a_logger_failure_mid_run_warns_once_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = WandbLogger(project="reglight-test", save_dir=str(tmp_path), offline=True)
    run = logger.experiment
    flaky = _FlakyRun(run.log, ok=3)
    monkeypatch.setattr(run, "log", flaky)
    data = TwoMoonsDataModule(n_samples=256, batch_size=32)
    trainer = pl.Trainer(
        max_epochs=3,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    try:
        trainer.fit(TinyClassifier(hidden=8), datamodule=data)
        err = capsys.readouterr().err
        # Lightning's own count of the batches it trained on: all epochs ran
        assert trainer.current_epoch == 3
        assert trainer.global_step == 3 * len(data.train_dataloader())
        lines = [line for line in err.splitlines() if "W&B logging failed" in line]
        assert len(lines) == 1, err
        assert "BrokenPipeError: wandb-core is gone" in lines[0]
        assert flaky.calls == flaky.ok + 1  # no further attempt after the failure
        assert logger.failure is not None
        folder = Path(run.dir).parent
        assert str(folder) in lines[0]
        assert any(folder.glob("*.wandb"))  # what was logged before stays
    finally:
        wandb.finish()


def test_discard_finishes_quietly_and_deletes_the_offline_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    logger = WandbLogger(project="reglight-test", save_dir=str(tmp_path), offline=True)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    folder = Path(logger.experiment.dir).parent
    assert folder.is_dir()
    capfd.readouterr()
    logger.discard()
    out = capfd.readouterr()
    assert not folder.exists()
    assert "wandb sync" not in out.out + out.err
    assert wandb.run is None  # the run is finished
    wandb_dir = tmp_path / "wandb"
    assert not [p for p in wandb_dir.iterdir() if p.is_symlink() and not p.exists()]
    logger.log_metrics({"train/loss": 0.5}, step=1)  # a no-op now, not an error
    assert not list(wandb_dir.glob("offline-run-*"))


def test_discard_before_the_run_started_creates_nothing(tmp_path: Path) -> None:
    logger = WandbLogger(project="reglight-test", save_dir=str(tmp_path), offline=True)
    logger.discard()
    assert not (tmp_path / "wandb").exists()


def test_connect_timeout_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"`connect_timeout` .* got -1"):
        WandbLogger(offline=True, connect_timeout=-1)
    monkeypatch.setenv("REGLIGHT_WANDB_CONNECT_TIMEOUT", "soon")
    with pytest.raises(ValueError, match=r"`REGLIGHT_WANDB_CONNECT_TIMEOUT` .* got 'soon'"):
        WandbLogger(offline=True)
    monkeypatch.setenv("REGLIGHT_WANDB_CONNECT_TIMEOUT", "0.5")
    assert WandbLogger(offline=True).connect_timeout == 0.5


def test_reachability_probe_against_real_sockets() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert _unreachable(f"http://127.0.0.1:{port}", 2.0) is None
    reason = _unreachable(f"http://127.0.0.1:{_closed_port()}", 2.0)
    assert reason is not None and "ConnectionRefusedError" in reason


def test_lightning_still_keeps_the_wandb_init_arguments(tmp_path: Path) -> None:
    """reglight edits the arguments Lightning passes to `wandb.init`: fail loudly if they move."""
    plain = LightningWandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    init_args = _wandb_init_args(plain)
    assert init_args["project"] == "p" and "anonymous" in init_args
    ours = WandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    assert "anonymous" not in _wandb_init_args(ours)


def test_a_failing_wandb_init_falls_back_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_init = wandb.init
    modes: list[Any] = []

    def init(**kwargs: Any) -> Any:
        modes.append(kwargs.get("mode"))
        if kwargs.get("mode") != "offline":  # what wandb raises when the server refuses the key
            raise wandb.errors.AuthenticationError("API key not valid")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = WandbLogger(
        project="reglight-test", save_dir=str(tmp_path), offline=False, connect_timeout=0
    )
    try:
        run = logger.experiment
        err = capsys.readouterr().err
        assert modes == [None, "offline"]
        assert (
            err.count("W&B could not start the run (AuthenticationError: API key not valid)") == 1
        )
        assert logger.fell_back_offline
        assert Path(run.dir).parent.name.startswith("offline-run-")
    finally:
        wandb.finish()
