"""What a user sees when their input is wrong: one short message, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reglight.cli import main
from reglight.logging import WandbLogger

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.delenv("REGLIGHT_DEBUG", raising=False)
    (tmp_path / "bad.csv").write_text("a,b,y\n1,x,2\n3,z,4\n5,q,6\n7,w,8\n")
    (tmp_path / "good.csv").write_text(
        "a,b,y\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(40))
    )
    return tmp_path


def _user_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command in process; check the shape of a user error and return its message."""
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    prog = f"reglight {args[0]} {Path(args[1]).stem}"
    # the message is the last thing on screen: one line, then one line with the fix
    assert lines[-2].startswith(f"{prog}: error: "), err
    assert lines[-1].startswith("  ") and "--help" in lines[-1]
    return "\n".join(lines[-2:])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # a value the model's constructor refuses (reglight's argument checks)
        (["run", "tiny", "--model.dropout", "1.5"], ["--model.dropout 1.5", "[0, 1)"]),
        (["run", "tiny", "--data.batch_size", "-3"], ["--data.batch_size -3"]),
        # a value of the wrong type (jsonargparse)
        (["run", "tiny", "--model.hidden", "wide"], ["--model.hidden wide", "expected int"]),
        (["run", "tiny", "--trainer.max_epochs", "many"], ["--trainer.max_epochs many"]),
        # files the user points at
        (["run", "tiny", "--config", "no-such.yaml"], ["--config", "no-such.yaml"]),
        (["run", "lasso", "--data.dataset", "good.csv"], ["--data.target (not set)", "good.csv"]),
        (["run", "lasso", "--data.dataset", "no-such.txt"], ["--data.dataset no-such.txt"]),
    ],
)
def test_bad_value_at_construction(
    args: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    message = _user_error([*args, "--trainer.logger", "false"], capsys)
    for text in expected:
        assert text in message


def test_a_negative_weight_decay_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "medical_cnn", "--model.weight_decay", "-1", "--trainer.logger", "false"]
    message = _user_error(args, capsys)
    assert "--model.weight_decay -1" in message and ">= 0" in message


def test_lightning_misconfiguration_in_a_callback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "stop.yaml"
    extra.write_text(
        "trainer:\n  callbacks:\n    - class_path: reglight.callbacks.EarlyStopping\n"
        "      init_args: {monitor: val/loss, mode: maxx}\n"
    )
    message = _user_error(
        ["run", "tiny", "--config", str(extra), "--trainer.logger", "false"], capsys
    )
    assert "EarlyStopping" in message and "mode maxx" in message


def test_config_that_is_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.yaml").write_text("model: [oops\n")
    message = _user_error(["run", "tiny", "--config", "broken.yaml"], capsys)
    assert "--config broken.yaml" in message and "line 2" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["--data.dataset", "bad.csv", "--data.target", "y"], ["bad.csv", "non-numeric", "'b'"]),
        (["--data.dataset", "good.csv", "--data.target", "z"], ["--data.target z", "'y'"]),
        (["--data.dataset", "gone.csv", "--data.target", "y"], ["--data.dataset gone.csv"]),
    ],
)
def test_bad_data_file_at_load(
    data: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "lasso", *data, *QUIET, "--trainer.max_epochs", "2", "--trainer.logger", "false"]
    message = _user_error(args, capsys)
    for text in expected:
        assert text in message


def test_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "medical_cnn", "--data.root", str(tmp_path / "none"), "--data.download", "false"]
    message = _user_error([*args, *QUIET, "--trainer.logger", "false"], capsys)
    assert f"--data.root {tmp_path / 'none'}" in message and "breastmnist.npz" in message


# ---------------------------------------------------------------------------------- options


def test_abbreviations_are_refused_with_the_closest_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = _user_error(["run", "tiny", "--trainer.max_epoch", "3", "--print_config"], capsys)
    assert "unknown option --trainer.max_epoch" in message
    assert "did you mean --trainer.max_epochs" in message


@pytest.mark.parametrize(
    ("args", "unknown", "suggested"),
    [
        (["--model.dropot", "0.2"], "--model.dropot", "--model.dropout"),
        (["--data.n_sample", "100"], "--data.n_sample", "--data.n_samples"),
        (["--trainer.no_such_option", "1"], "--trainer.no_such_option", None),
    ],
)
def test_unknown_option_gets_did_you_mean(
    args: list[str], unknown: str, suggested: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _user_error(["run", "tiny", *args], capsys)
    assert f"unknown option {unknown}" in message
    assert "usage:" not in message
    if suggested:
        assert f"did you mean {suggested}" in message
    else:
        assert "did you mean" not in message


def test_unknown_key_in_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "typo.yaml").write_text("model:\n  init_args:\n    hiden: 7\n")
    message = _user_error(["run", "tiny", "--config", "typo.yaml"], capsys)
    assert "unknown option --model.hiden" in message and "did you mean --model.hidden" in message


def test_ablate_options_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reglight.cli import find_recipe

    recipe = tmp_path / "abl.yaml"
    recipe.write_text(
        find_recipe("tiny").path.read_text() + "ablation:\n  variants:\n    full: {}\n"
    )
    message = _user_error(["ablate", str(recipe), "--seed", "3"], capsys)
    assert "unknown option --seed" in message and "--seeds" in message
    message = _user_error(["ablate", str(recipe), "--seeds", "many"], capsys)
    assert "--seeds" in message and "'many'" in message
    message = _user_error(["ablate", str(recipe), "--seed-list", "0,1"], capsys)  # one convention
    assert "--seed_list" in message
    message = _user_error(["ablate", str(recipe), "--model.dropout", "2", "--seeds", "1"], capsys)
    assert "--model.dropout 2" in message


def test_unknown_recipe_and_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert "tiny" in _user_error(["run", "no-such-recipe"], capsys)
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ --debug, bugs


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_then_the_message(
    how: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["run", "tiny", "--model.dropout", "1.5", "--trainer.logger", "false"]
    if how == "flag":
        args.insert(1, "--debug")
    else:
        monkeypatch.setenv("REGLIGHT_DEBUG", "1")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "check_probability" in err  # where the value was refused
    assert err.strip().splitlines()[-2].startswith("reglight run tiny: error: --model.dropout 1.5")


def test_a_real_bug_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from reglight.recipes.tiny import TinyClassifier

    def broken(self: object, batch: object, batch_idx: int) -> None:
        raise KeyError("a bug, not the user's input")

    monkeypatch.setattr(TinyClassifier, "training_step", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["run", "tiny", *QUIET, "--trainer.max_epochs", "1", "--trainer.logger", "false"])


# ------------------------------------------------------------------------------------- W&B

BUGGY = '''
from reglight.errors import DataFileError
from reglight.recipes.tiny import TinyClassifier, TwoMoonsDataModule


class Buggy(TinyClassifier):
    def training_step(self, batch, batch_idx):
        raise ZeroDivisionError("a bug")


class LateMissingTest(TwoMoonsDataModule):
    """Training works; the test split points at a file that is not there."""

    def test_dataloader(self):
        raise DataFileError("test split not found: 'missing_test.npz'")
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "user_mod.py").write_text(BUGGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _wandb_runs(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "wb").rglob("*.wandb"))


def test_failure_before_training_leaves_no_wandb_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The offline W&B run is started (the config is saved into it) before the CSV is read."""
    args = ["run", "lasso", "--data.dataset", "bad.csv", "--data.target", "y", *QUIET]
    message = _user_error([*args, "--trainer.max_epochs", "2"], capsys)
    assert "non-numeric" in message
    out = capsys.readouterr()
    assert "wandb sync" not in out.out + out.err
    assert _wandb_runs(tmp_path) == []


def test_failure_after_training_started_keeps_the_run_and_says_so(
    user_module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "tiny", "--data", "user_mod.LateMissingTest", "--data.n_samples", "100", *QUIET]
    message = _user_error([*args, "--trainer.max_epochs", "1"], capsys)
    assert "missing_test.npz" in message
    assert "the run logged until the failure is kept: W&B (offline)" in message
    assert len(_wandb_runs(tmp_path)) == 1


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PYTEST_"))}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path / "wb"),
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]),
    )
    env.pop("REGLIGHT_DEBUG", None)
    return env


def _reglight(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reglight", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )


def test_process_user_error_exit_code_2_message_last(tmp_path: Path) -> None:
    """A real process with the default W&B logger: the message comes after anything W&B prints."""
    proc = _reglight(tmp_path, "run", "tiny", "--model.dropout", "1.5")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-2] == (
        "reglight run tiny: error: --model.dropout 1.5: "
        "`dropout` must be a probability in [0, 1), got 1.5"
    )
    assert _wandb_runs(tmp_path) == []  # the run had not started


def test_process_real_bug_shows_its_traceback(user_module: Path, tmp_path: Path) -> None:
    proc = _reglight(
        tmp_path, "run", "tiny", "--model", "user_mod.Buggy", "--data.n_samples", "100", *QUIET
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ZeroDivisionError: a bug" in proc.stderr
    assert "error:" not in proc.stderr.splitlines()[-1]


def test_lightning_subcommands_refuse_abbreviations_too(capsys: pytest.CaptureFixture[str]) -> None:
    from reglight.cli import find_recipe

    config = str(find_recipe("tiny").path)
    assert main(["fit", "--config", config, "--trainer.max_epoch", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2] == "reglight fit: error: unknown option --trainer.max_epoch"
    assert "did you mean --trainer.max_epochs" in err[-1]


def test_discard_is_called_only_before_training_started(
    user_module: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wiring, whatever `WandbLogger.discard` does: before the first step, after it."""
    calls: list[int] = []

    def discard(self: WandbLogger) -> None:
        calls.append(1)
        if self._experiment is not None:
            self._experiment.finish()

    monkeypatch.setattr(WandbLogger, "discard", discard, raising=False)
    args = ["run", "lasso", "--data.dataset", "bad.csv", "--data.target", "y", *QUIET]
    assert "kept" not in _user_error([*args, "--trainer.max_epochs", "2"], capsys)
    assert calls == [1]
    args = ["run", "tiny", "--data", "user_mod.LateMissingTest", "--data.n_samples", "100", *QUIET]
    assert "kept" in _user_error([*args, "--trainer.max_epochs", "1"], capsys)
    assert calls == [1]
