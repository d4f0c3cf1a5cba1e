"""Interrupt and resume: SIGINT/SIGTERM save `last.ckpt` and exit 130/143; `--ckpt_path` resumes exactly."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reglight.cli import main
from reglight.interrupt import RunInterrupted, resolve_ckpt_path, split_ckpt_path

ROOT = Path(__file__).resolve().parents[1]
QUIET = [
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu",
]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb"), PYTHONUNBUFFERED="1")
    return env


def _reglight(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reglight", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _start_training(args: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start `reglight ARGS` in a child with the default SIGINT handler; return once an epoch has ended."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reglight", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        restore_signals=True,
    )
    deadline = time.monotonic() + 120
    while not any((tmp_path / "checkpoints").glob("epoch=*.ckpt")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_checkpoint_and_resume_command_finishes_the_run(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    env = _env(tmp_path)
    # a child whose SIGINT handler is Python's default (KeyboardInterrupt), as in a terminal
    args = ["run", "tiny", "--trainer.max_epochs=400", "--data.n_samples=400", *QUIET]
    proc = _start_training(args, tmp_path, env)
    ckpt_dir = tmp_path / "checkpoints"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]

    saved = re.search(r"Saved a resumable checkpoint: (.+)", err)
    command = re.search(r"Resume with:\n  (.+)", err)
    assert saved and command, err[-2000:]
    path = Path(saved.group(1).strip())
    assert path == (ckpt_dir / "last.ckpt").resolve() and path.is_file()
    state = torch.load(path, map_location="cpu", weights_only=False)
    assert 1 <= state["epoch"] < 400 and state["global_step"] > 0
    assert "Traceback" not in err

    argv = shlex.split(command.group(1))
    assert argv[:2] == ["reglight", "run"] and argv[-2:] == ["--ckpt_path", str(path)]
    assert argv[2:-2] == args[1:]  # the same command line, plus --ckpt_path
    # the printed command, with fewer epochs so that the test stays short
    resumed_epochs = state["epoch"] + 2
    argv = [*argv[1:-2], f"--trainer.max_epochs={resumed_epochs}", *argv[-2:]]
    done = _reglight(argv, tmp_path, env)
    assert done.returncode == 0, done.stderr[-2000:]
    steps_per_epoch = 240 // 64 + 1  # 60 % of 400 points in batches of 64
    assert f"epochs run: {resumed_epochs}, global steps: {resumed_epochs * steps_per_epoch}" in (
        done.stdout
    )
    assert f"resumed from {path} (epoch {state['epoch']}, global step {state['global_step']})" in (
        done.stdout.replace("\n", "")
    )
    # `last.ckpt` now holds the final state: `--ckpt_path last` does not go back to the stop
    final = torch.load(path, map_location="cpu", weights_only=False)
    assert (final["epoch"], final["global_step"]) == (
        resumed_epochs,
        resumed_epochs * steps_per_epoch,
    )


def _final_weights(tmp_path: Path, name: str, args: list[str]) -> dict[str, torch.Tensor]:
    root = tmp_path / name
    root.mkdir()
    cwd = Path.cwd()
    os.chdir(root)
    try:
        assert main(["run", "tiny", "--data.n_samples=200", *QUIET, *args]) == 0
    finally:
        os.chdir(cwd)
    last = sorted((root / "checkpoints").glob("epoch=*.ckpt"))[-1]
    return torch.load(last, map_location="cpu", weights_only=False)["state_dict"]


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path: Path) -> None:
    straight = _final_weights(tmp_path, "straight", ["--trainer.max_epochs=4"])
    _final_weights(tmp_path, "first", ["--trainer.max_epochs=2"])
    # the checkpoint Lightning wrote at the end of the second epoch
    (first_last,) = (tmp_path / "first" / "checkpoints").glob("epoch=1-*.ckpt")
    resumed = _final_weights(
        tmp_path, "resumed", ["--trainer.max_epochs=4", f"--ckpt_path={first_last}"]
    )
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)


def test_missing_checkpoint_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "tiny", *QUIET, "--ckpt_path", "nope/last.ckpt"]) == 2
    err = capsys.readouterr().err
    assert "--ckpt_path 'nope/last.ckpt': no such checkpoint file" in err
    assert "Traceback" not in err
    with pytest.raises(IsADirectoryError, match="--ckpt_path"):
        resolve_ckpt_path(str(tmp_path))
    with pytest.raises(ValueError, match="--ckpt_path"):
        split_ckpt_path(["--ckpt_path"])


def test_run_interrupted_exit_codes_follow_the_shell() -> None:
    # a shell reports a process ended by signal N as 128 + N
    assert RunInterrupted(signal.SIGINT).code == 128 + signal.SIGINT == 130
    assert RunInterrupted(signal.SIGTERM).code == 128 + signal.SIGTERM == 143


SIGNAL_AT = '''
import os, signal
from pathlib import Path
from lightning.pytorch import Callback


class SignalAt(Callback):
    """Sends a signal to its own process at the end of an epoch of the n-th fit of the process."""

    def __init__(self, fit: int = 1, epoch: int = 1, signum: int = 2) -> None:
        self.fit, self.epoch, self.signum = fit, epoch, signum

    def on_fit_start(self, trainer, pl_module) -> None:
        counter = Path("fits.txt")
        counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        fired = Path("fired.txt")
        if int(Path("fits.txt").read_text()) == self.fit and trainer.current_epoch == self.epoch:
            if not fired.exists():
                fired.write_text("1")
                os.kill(os.getpid(), self.signum)
'''

STUDY = """
ablation:
  metrics: {test/acc: test ACC, test/loss: test loss}
  variants:
    full: {}
    narrow: {overrides: {model.hidden: 4}}
"""


def test_ablate_resumes_each_run_from_its_own_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "signal_at.py").write_text(SIGNAL_AT)
    from reglight.cli import find_recipe

    recipe = tmp_path / "study.yaml"
    recipe.write_text(find_recipe("tiny").path.read_text() + STUDY)
    env = _env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    common = [str(recipe), "--seed_list", "0,1", "--logger", "none", "--save_dir", "abl"]
    common += ["--trainer.max_epochs=4", "--data.n_samples=200", "--trainer.accelerator=cpu"]
    # the second run (full, seed 1) receives SIGINT at the end of its second epoch (epoch index 1)
    callback = '--trainer.callbacks=[{"class_path": "signal_at.SignalAt", "init_args": {"fit": 2}}]'
    stopped = _reglight(["ablate", *common, callback], tmp_path, env)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    runs = tmp_path / "abl" / "study-ablation" / "runs"
    assert (runs / "full" / "seed0" / "run.json").is_file()
    assert (runs / "full" / "seed1" / "checkpoints" / "last.ckpt").is_file()
    assert not (runs / "narrow").exists()  # never started
    command = re.search(r"Resume with:\n  (.+)", stopped.stderr)
    assert command, stopped.stderr[-3000:]
    argv = shlex.split(command.group(1))
    assert argv == ["reglight", "ablate", *common, callback, "--ckpt_path", "last"]
    first = (runs / "full" / "seed0" / "run.json").read_text()

    stop = torch.load(runs / "full" / "seed1" / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = _reglight([*argv[1:], "--json", "resumed.json"], tmp_path, env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        runs / "full" / "seed0" / "run.json"
    ).read_text() == first  # read back, not trained again
    straight = _reglight(
        ["ablate", *common, "--save_dir", "straight", "--json", "straight.json"], tmp_path, env
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    got = json.loads((tmp_path / "resumed.json").read_text())["runs"]
    assert got["full"][1]["resumed_from"] == (
        f"{(runs / 'full' / 'seed1' / 'checkpoints' / 'last.ckpt').resolve()} "
        f"(epoch {stop['epoch']}, global step {stop['global_step']})"
    )
    assert stop["epoch"] == 2 and stop["global_step"] == 4  # stopped after two epochs of two steps
    assert got["full"][0]["resumed_from"] is None and got["narrow"][0]["resumed_from"] is None
    want = json.loads((tmp_path / "straight.json").read_text())["runs"]
    for name in ("full", "narrow"):
        for a, b in zip(got[name], want[name], strict=True):
            assert a["epochs"] == b["epochs"] == 4
    # the runs the signal did not touch trained exactly as in the uninterrupted study
    assert got["full"][0]["metrics"] == want["full"][0]["metrics"]
    for a, b in zip(got["narrow"], want["narrow"], strict=True):
        assert (a["metrics"], a["config"]) == (b["metrics"], b["config"])


def test_lightning_slurm_requeue_still_works(tmp_path: Path) -> None:
    """Under SLURM, Lightning's requeue signal still saves its HPC checkpoint; SIGTERM then exits 143."""
    env = _env(tmp_path)
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "4242"}
    env.update(slurm, SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", PATH=env["PATH"])
    args = ["run", "tiny", "--trainer.max_epochs=400", "--data.n_samples=400", *QUIET]
    proc = _start_training(args, tmp_path, env)
    proc.send_signal(signal.SIGUSR1)  # SLURM's warning before the end (`--signal=USR1@90`)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("hpc_ckpt_*.ckpt")):  # Lightning's requeue handler saved it
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "Lightning's requeue handler did not run"
        time.sleep(0.05)
    time.sleep(0.5)  # let Lightning finish writing and try `scontrol requeue`
    proc.send_signal(signal.SIGTERM)  # what SLURM sends when it stops the job
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "scontrol" in err or "requeue" in err.lower()  # Lightning tried to requeue job 4242
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert "resumes by itself from" in err and "hpc_ckpt_" in err
