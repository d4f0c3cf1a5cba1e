"""LayerNorm vs BatchNorm in a small Transformer: accuracy, test batch size, amount of padding.

`python -m reglight.recipes.transformer.norm_study --task sequence --seeds 0,1,2 --json runs.json` trains
[TransformerClassifier][reglight.recipes.transformer.TransformerClassifier] once per normalization variant
and seed and measures, in evaluation mode,

- `acc`: accuracy at the training batch size (padded to the longest sequence of each batch);
- `acc_bs1`: accuracy at test batch size 1 (every sequence alone, unpadded; the same examples);
- `acc_pad`: accuracy with every test batch padded to `--test_pad` tokens;

and, for the variants trained with more padding (`--train_pad`), the same numbers after training with every
batch padded to that length. `--figure PATH` draws the results
([norm_study_figure][reglight.recipes.transformer.norm_study.norm_study_figure]).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["evaluate", "main", "norm_study_figure", "run_variant"]

SEQUENCE_DEFAULTS: dict[str, Any] = {
    "model": dict(
        d_model=32,
        depth=2,
        heads=4,
        mlp_ratio=2.0,
        lr=3e-3,
        weight_decay=0.01,
        warmup_steps=20,
        lr_schedule="cosine",
    ),
    "data": dict(n_train=2048, n_val=256, n_test=512, batch_size=32),
    "epochs": 4,
}
GROKKING_DEFAULTS: dict[str, Any] = {
    "model": dict(lr=1e-2, weight_decay=1.0, decay_embeddings=True, warmup_steps=10),
    "data": dict(p=97, train_fraction=0.3),
    "steps": 400,
}


def evaluate(model: Any, loader: Any, limit: int | None = None) -> float:
    """Accuracy of `model` (eval mode, no gradients) over a loader's scored tokens.

    Args:
        model: A [TransformerClassifier][reglight.recipes.transformer.TransformerClassifier].
        loader: Batches as the recipe's datamodules yield them.
        limit: Stop after this many examples (sequences); `None` for all.

    Returns:
        Correct scored tokens / scored tokens.
    """
    from .data import IGNORE_INDEX

    model.eval()
    correct = torch.zeros((), dtype=torch.long)
    total = torch.zeros((), dtype=torch.long)
    seen = 0
    with torch.no_grad():
        for batch in loader:
            logits, targets = model.scores(batch)
            valid = targets != IGNORE_INDEX
            correct += ((logits.argmax(-1) == targets) & valid).sum()
            total += valid.sum()
            seen += len(batch[0])
            if limit is not None and seen >= limit:
                break
    return float(correct) / max(1, int(total))


def _loader(dataset: Any, batch_size: int, pad_to: int | None = None) -> Any:
    from .data import _Batches, _loader

    if pad_to is not None and isinstance(dataset, _Batches):
        dataset = _Batches(dataset.tensors, dataset.pad_token, pad_to)
    return _loader(dataset, batch_size, shuffle=False)


def run_variant(
    task: str,
    norm: str,
    norm_position: str,
    seed: int,
    train_pad: int | None = None,
    test_pad: int = 64,
    bs1_limit: int = 256,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one variant with one seed and measure it (see the module's description).

    Args:
        task: `"sequence"` (running maximum) or `"grokking"` (modular addition).
        norm: The `norm` of the model.
        norm_position: `"pre"` or `"post"`.
        seed: Training seed.
        train_pad: Pad every training batch to this many tokens (sequence task); `None` for the longest
            sequence of the batch.
        test_pad: Test padding length of `acc_pad` (sequence task).
        bs1_limit: Examples evaluated one at a time for `acc_bs1` (the same examples at the training batch
            size give `acc_bs1_ref`).
        overrides: `{"model": {...}, "data": {...}, "epochs"/"steps": n}` over the task's defaults.

    Returns:
        The settings and the measurements.
    """
    import lightning.pytorch as pl

    from .data import ModularArithmeticDataModule, RunningMaxDataModule
    from .model import TransformerClassifier

    defaults = SEQUENCE_DEFAULTS if task == "sequence" else GROKKING_DEFAULTS
    over = overrides or {}
    model_kw = {
        **defaults["model"],
        **over.get("model", {}),
        "norm": norm,
        "norm_position": norm_position,
    }
    data_kw = {**defaults["data"], **over.get("data", {})}
    pl.seed_everything(seed, verbose=False)
    data: Any
    if task == "sequence":
        data = RunningMaxDataModule(**data_kw, pad_to=train_pad)
        limits: dict[str, Any] = {"max_epochs": int(over.get("epochs", defaults["epochs"]))}
    else:
        data = ModularArithmeticDataModule(**data_kw)
        limits = {
            "max_steps": int(over.get("steps", defaults["steps"])),
            "max_epochs": -1,
            "check_val_every_n_epoch": 50,
        }
    if task == "sequence" and train_pad is not None:
        model_kw["max_len"] = max(train_pad, test_pad)
    elif task == "sequence":
        model_kw["max_len"] = max(data.max_len, test_pad)
    model = TransformerClassifier(**model_kw)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        **limits,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    if task == "sequence":
        test = data.sets["test"]
        bs = data.batch_size
        result = {
            "acc": evaluate(model, _loader(test, bs)),
            "acc_bs1": evaluate(model, _loader(test, 1), limit=bs1_limit),
            "acc_bs1_ref": evaluate(model, _loader(test, bs), limit=bs1_limit),
            "acc_pad": evaluate(model, _loader(test, bs, pad_to=test_pad)),
        }
    else:
        assert data.val_set is not None and data.train_set is not None
        bs = len(data.train_set)
        result = {
            "acc": evaluate(model, _loader(data.val_set, bs)),
            "acc_bs1": evaluate(model, _loader(data.val_set, 1), limit=bs1_limit),
            "acc_bs1_ref": evaluate(model, _loader(data.val_set, bs1_limit), limit=bs1_limit),
            "train_acc": evaluate(model, _loader(data.train_set, bs)),
        }
    return {
        "task": task,
        "overrides": over,
        "norm": norm,
        "norm_position": norm_position,
        "seed": seed,
        "train_pad": train_pad,
        "seconds": seconds,
        **result,
    }


def _label(run: dict[str, Any]) -> str:
    pad = f", pad {run['train_pad']}" if run.get("train_pad") else ""
    batch = (run.get("overrides") or {}).get("data", {}).get("batch_size")
    bs = f", batch {batch}" if batch else ""
    return f"{run['norm_position']}-{run['norm']}{pad}{bs}"


def _groups(runs: Sequence[dict[str, Any]], task: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["task"] == task:
            groups.setdefault(_label(run), []).append(run)
    return groups


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary_markdown(runs: Sequence[dict[str, Any]]) -> str:
    """A markdown table per task: mean ± std over seeds of every measurement."""
    lines: list[str] = []
    for task in ("sequence", "grokking"):
        groups = _groups(runs, task)
        if not groups:
            continue
        keys = [
            k
            for k in ("acc", "acc_bs1", "acc_bs1_ref", "acc_pad", "train_acc", "seconds")
            if k in next(iter(groups.values()))[0]
        ]
        lines += [
            f"\n**{task}**\n",
            "| variant | " + " | ".join(keys) + " | seeds |",
            "|---" * (len(keys) + 2) + "|",
        ]
        for label, rs in groups.items():
            cells = []
            for k in keys:
                m, s = _mean_std([float(r[k]) for r in rs])
                cells.append(f"{m:.0f} ± {s:.0f}" if k == "seconds" else f"{m:.3f} ± {s:.3f}")
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(rs)} |")
    return "\n".join(lines)


def norm_study_figure(runs: Sequence[dict[str, Any]]) -> Figure:
    """Bar charts (mean ± std over seeds) of test accuracy per normalization, one panel per task.

    For each variant the bars show accuracy at the training batch size, at batch size 1 and (sequence
    task) with extra test padding.

    Args:
        runs: What [run_variant][reglight.recipes.transformer.norm_study.run_variant] returned.

    Returns:
        The matplotlib figure (Agg).

    Examples:
        >>> runs = [{"task": "sequence", "norm": "layer", "norm_position": "pre", "seed": 0,
        ...          "train_pad": None, "acc": 0.9, "acc_bs1": 0.9, "acc_pad": 0.9}]
        >>> len(norm_study_figure(runs).axes)
        1
    """
    import numpy as np
    from matplotlib.figure import Figure

    tasks = [t for t in ("sequence", "grokking") if _groups(runs, t)]
    fig = Figure(figsize=(5.5 * len(tasks), 3.6), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        groups = _groups(runs, task)
        keys = [
            ("acc", "training batch size"),
            ("acc_bs1", "batch size 1"),
            ("acc_pad", "extra test padding"),
        ]
        keys = [(k, lab) for k, lab in keys if all(k in r for rs in groups.values() for r in rs)]
        x = np.arange(len(groups))
        w = 0.8 / len(keys)
        for i, (k, lab) in enumerate(keys):
            stats = [_mean_std([float(r[k]) for r in rs]) for rs in groups.values()]
            ax.bar(
                x + (i - (len(keys) - 1) / 2) * w,
                [m for m, _ in stats],
                w,
                yerr=[s for _, s in stats],
                capsize=2,
                label=lab,
            )
        ax.set_xticks(x, list(groups), rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("test accuracy")
        ax.set_title("running maximum, padded" if task == "sequence" else "(a + b) mod p")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `--task`, `--variants pre:layer,pre:batch,...`, `--seeds`, `--train_pad`, `--json`,
    `--figure`, `--epochs`/`--steps`, `--threads`."""
    p = argparse.ArgumentParser(prog="python -m reglight.recipes.transformer.norm_study")
    p.add_argument("--task", choices=("sequence", "grokking"), default="sequence")
    p.add_argument("--variants", default="pre:layer,pre:rms,pre:batch,pre:batch_unmasked,pre:none")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train_pad", type=int, default=None)
    p.add_argument("--test_pad", type=int, default=64)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--model_args", default="{}", help="JSON object of model arguments")
    p.add_argument("--data_args", default="{}", help="JSON object of datamodule arguments")
    p.add_argument("--json", default=None, help="append the runs to this JSON file")
    p.add_argument("--figure", default=None, help="draw every run of --json into this PNG")
    p.add_argument("--threads", type=int, default=1)
    opts = p.parse_args(argv)
    torch.set_num_threads(opts.threads)
    runs: list[dict[str, Any]] = []
    if opts.json:
        try:
            with open(opts.json, encoding="utf-8") as fh:
                runs = json.load(fh)
        except FileNotFoundError:
            runs = []
    over: dict[str, Any] = {
        "model": json.loads(opts.model_args),
        "data": json.loads(opts.data_args),
    }
    if opts.epochs is not None:
        over["epochs"] = opts.epochs
    if opts.steps is not None:
        over["steps"] = opts.steps
    for variant in [v for v in opts.variants.split(",") if v]:
        position, norm = variant.split(":")
        for seed in [int(s) for s in opts.seeds.split(",") if s]:
            run = run_variant(
                opts.task, norm, position, seed, opts.train_pad, opts.test_pad, overrides=over
            )
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
            if opts.json:
                with open(opts.json, "w", encoding="utf-8") as fh:
                    json.dump(runs, fh, indent=1)
    print(summary_markdown(runs))
    if opts.figure:
        norm_study_figure(runs).savefig(opts.figure, dpi=90)
    return 0 if all(math.isfinite(r["acc"]) for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
