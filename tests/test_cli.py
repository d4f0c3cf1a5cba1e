"""The `reglight` command: list, run, ablate, overrides, errors, loggers, DDP and the installed wheel."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reglight.ablation import Ablation
from reglight.cli import available_recipes, find_recipe, main, run_recipe

REPO = Path(__file__).resolve().parents[1]
FAST = [
    "--trainer.max_epochs",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--data.n_samples",
    "200",
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PYTEST_"))}
    env.update({"WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))


def test_list_shows_every_recipe_with_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    recipes = available_recipes()
    assert "tiny" in recipes
    for name, recipe in recipes.items():
        assert name in out
        assert recipe.description, f"recipe {name} has no '# description:' line"


def test_unknown_recipe_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "no-such-recipe"]) == 2
    err = capsys.readouterr().err
    assert "no-such-recipe" in err and "tiny" in err
    with pytest.raises(LookupError, match="known recipes"):
        find_recipe("no-such-recipe")


def test_run_fits_tests_and_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "tiny", *FAST, "--trainer.logger", "false"]) == 0
    out = capsys.readouterr().out
    assert "final metrics" in out
    for key in ("train/loss", "val/loss", "val/acc", "test/loss", "test/acc"):
        assert key in out
    assert "epochs run: 1" in out


def test_run_recipe_returns_metrics_and_accepts_a_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "my_recipe.yaml"
    path.write_text(find_recipe("tiny").path.read_text())
    metrics = run_recipe(find_recipe(str(path)), [*FAST, "--trainer.logger", "false"])
    assert {"train/loss", "val/acc", "test/acc", "test/loss"} <= set(metrics)
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_config_override_file_is_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "override.yaml"
    extra.write_text("model:\n  init_args:\n    hidden: 7\n")
    assert main(["run", "tiny", "--config", str(extra), "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "class_path: reglight.recipes.tiny.TinyClassifier" in out
    assert "hidden: 7" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trainer.no_such_option", "1"], "no_such_option"),
        (["--trainer.max_epochs", "many"], "max_epochs"),
        (["--model.hidden", "wide"], "hidden"),
    ],
)
def test_bad_override_exits_2_with_a_clear_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "tiny", *args]) == 2
    assert message in capsys.readouterr().err


def test_usage_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "run RECIPE" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_lightning_subcommands_work_with_a_recipe_config(tmp_path: Path) -> None:
    cfg = str(find_recipe("tiny").path)
    assert main(["fit", "--config", cfg, *FAST, "--trainer.logger", "false"]) == 0
    assert main(["validate", "--config", cfg, *FAST[4:], "--trainer.logger", "false"]) == 0


def test_logger_switches_to_csv(tmp_path: Path) -> None:
    save = tmp_path / "csv"
    args = [*FAST, "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(save)]
    assert main(["run", "tiny", *args]) == 0
    metrics_files = list(save.rglob("metrics.csv"))
    assert metrics_files and "val/acc" in metrics_files[0].read_text()
    assert list(save.rglob("config.yaml")), "the resolved config is saved beside the logs"


def test_wandb_offline_run_is_recorded(tmp_path: Path) -> None:
    """A real offline W&B run (no mock); wandb reads back its own .wandb file."""
    wb = tmp_path / "wb"
    proc = subprocess.run(
        [sys.executable, "-m", "reglight", "run", "tiny", *FAST],
        env=_env(WANDB_DIR=str(wb)),
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the command prints what the run says, not Lightning's product tips or internal warnings
    assert "Tip:" not in proc.stdout + proc.stderr
    assert "LeafSpec" not in proc.stdout + proc.stderr
    run_files = list(wb.rglob("*.wandb"))
    assert len(run_files) == 1
    assert "wandb sync" in proc.stdout
    wandb_bin = Path(sys.executable).with_name("wandb")
    inspect = subprocess.run(
        [str(wandb_bin), "leet", "inspect", "--json", "--summary", str(run_files[0])],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert inspect.returncode == 0, inspect.stderr
    record = json.loads(inspect.stdout)
    summary = record["summary"]
    for key in ("train/loss", "val/acc", "test/acc", "test/loss"):
        assert key in summary, sorted(summary)
    assert 0.0 <= float(summary["test/acc"]) <= 1.0
    assert record["config"]["reglight"]["model"]["class_path"].endswith("TinyClassifier")


def test_no_wandb_credentials_falls_back_to_offline(tmp_path: Path) -> None:
    """No key, no netrc, no WANDB_MODE, no TTY: a plain WandbLogger would fail; ours goes offline."""
    env = _env(HOME=str(tmp_path), WANDB_DIR=str(tmp_path / "wb"))
    del env["WANDB_MODE"]
    env.pop("WANDB_API_KEY", None)
    env["NETRC"] = str(tmp_path / "no-netrc")
    proc = subprocess.run(
        [sys.executable, "-m", "reglight", "run", "tiny", *FAST],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no W&B credentials found" in proc.stderr
    assert "wandb sync" in proc.stderr
    assert list((tmp_path / "wb").rglob("*.wandb"))


@pytest.mark.ddp
def test_ddp_two_cpu_processes_give_one_summary(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglight",
            "run",
            "tiny",
            *FAST,
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.logger",
            "false",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("final metrics") == 1
    for key in ("train/loss", "val/acc", "test/acc", "test/loss"):
        assert key in proc.stdout


@pytest.mark.slow
def test_wheel_runs_outside_the_repository(tmp_path: Path) -> None:
    """The built wheel carries the recipe configs: `reglight run` works from an installed package."""
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(tmp_path.glob("reglight-*.whl"))
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert (target / "reglight" / "recipe_configs" / "tiny.yaml").is_file()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _env(PYTHONPATH=str(target))
    code = (
        "import reglight, sys; print(reglight.__file__); sys.exit(reglight.cli.main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import reglight.cli; " + code,
            "run",
            "tiny",
            *FAST,
            "--trainer.logger",
            "false",
        ],
        env=env,
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(target) in proc.stdout.splitlines()[0]
    assert "test/acc" in proc.stdout


# ------------------------------------------------------------------------------------------ ablate

TINY_ABLATION = """
ablation:
  title: Ablation of a two-moons MLP
  metrics:
    test/acc: test ACC
    test/loss: test loss
  variants:
    full:
      description: as configured
    no_dropout:
      description: without dropout
      overrides: {model.dropout: 0}
    narrow:
      overrides: {model.hidden: 4, model.lr: 0.05}
"""


@pytest.fixture
def tiny_ablation(tmp_path: Path) -> Path:
    """The tiny recipe with an ablation declared as data, in a YAML of the user's own."""
    path = tmp_path / "tiny_ablation.yaml"
    path.write_text(find_recipe("tiny").path.read_text() + TINY_ABLATION)
    return path


def test_ablate_runs_any_recipe_that_declares_variants(
    tiny_ablation: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "ablation.json"
    args = [str(tiny_ablation), "--seed_list", "0,3", "--logger", "csv", "--save_dir", "abl"]
    assert main(["ablate", *args, "--json", str(output), *FAST]) == 0
    out = capsys.readouterr().out
    payload = json.loads(output.read_text())
    runs = payload["runs"]
    assert list(runs) == ["full", "no_dropout", "narrow"] and payload["seeds"] == [0, 3]
    # each variant trained what it declares, and nothing else changed
    assert [r["config"]["model.dropout"] for r in runs["full"]] == [0.1, 0.1]
    assert runs["no_dropout"][0]["config"]["model.dropout"] == 0
    assert runs["narrow"][0]["config"]["model.hidden"] == 4
    assert runs["narrow"][0]["config"]["model.lr"] == 0.05
    assert runs["narrow"][0]["config"]["model.dropout"] == 0.1
    assert runs["full"][0]["config"]["data.n_samples"] == 200  # the command line's override
    # the runner trains what `reglight run` trains with the same seed and overrides
    reference = run_recipe(find_recipe(str(tiny_ablation)), [*FAST, "--trainer.logger", "false"])
    assert runs["full"][0]["metrics"]["test/acc"] == pytest.approx(reference["test/acc"], abs=1e-6)
    assert runs["full"][0]["metrics"]["test/loss"] == pytest.approx(
        reference["test/loss"], abs=1e-6
    )
    # the table: mean ± sample std (numpy, ddof=1) per variant and metric
    summary = out.split("## Ablation runs")[0]
    assert "Ablation of a two-moons MLP (mean ± std over seeds)" in summary
    for name, results in runs.items():
        row = next(line for line in summary.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        for cell, key in zip(cells[1:3], ("test/acc", "test/loss")):
            values = np.array([r["metrics"][key] for r in results])
            assert cell == f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
        assert cells[-2:] == ["1 ± 0", "2"]
    media = next((tmp_path / "abl").rglob("media"))
    assert (media / "ablation_bar_chart.png").stat().st_size > 0
    with (media / "ablation_summary.csv").open() as fh:
        assert [row[0] for row in csv.reader(fh)] == ["variant", "full", "no_dropout", "narrow"]


def test_ablate_one_variant_and_the_errors(
    tiny_ablation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--seeds", "1", "--variants", "narrow", "--logger", "none", *FAST]
    assert main(["ablate", str(tiny_ablation), *args]) == 0
    out = capsys.readouterr().out
    assert "| narrow |" in out and "| full |" not in out
    assert main(["ablate", "tiny"]) == 2  # the packaged tiny recipe declares no ablation
    assert "declares no ablation" in capsys.readouterr().err
    assert main(["ablate", str(tiny_ablation), "--variants", "full,wide"]) == 2
    err = capsys.readouterr().err
    assert "wide" in err and "narrow" in err  # names the declared variants
    assert main(["ablate", str(tiny_ablation), "--seeds", "0"]) == 2
    assert main(["ablate", "no-such-recipe"]) == 2
    assert "known recipes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"variants": {}}, "at least one variant"),
        ({"variants": {"a": {"override": {"model.x": 1}}}}, "unknown key"),
        ({"variants": {"a": {"drop_callbacks": "EarlyStopping"}}}, "drop_callbacks"),
        ({"variants": {"a": {"overrides": ["--model.x=1"]}}}, "overrides"),
        ({"variant": {"a": {}}}, "unknown key"),
    ],
)
def test_malformed_ablation_section_is_named(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ablation.from_dict(section, "mine")
