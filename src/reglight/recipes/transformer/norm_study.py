"""LayerNorm vs BatchNorm in a small Transformer: accuracy, test batch size, amount of padding.

`python -m reglight.recipes.transformer.norm_study --task counting --seeds 0,1,2 --json runs.json` trains
[TransformerClassifier][reglight.recipes.transformer.TransformerClassifier] once per normalization variant
and seed and measures, in evaluation mode,

- `acc`: accuracy at the training batch size (padded to the longest sequence of each batch);
- `acc_bs1`: accuracy at test batch size 1 (every sequence alone, unpadded) on the first `bs1_limit`
  examples, and `acc_bs1_ref` on the same examples at the training batch size;
- `acc_pad`: accuracy with every test batch padded to `--test_pad` tokens;

and, for the padded sequence tasks,

- `acc_batch_stats_sorted` / `acc_batch_stats_random`: accuracy with the normalization in training mode
  (batch statistics, as during training; running statistics left untouched) on test batches of sequences
  sorted by length or in random order: for a batch norm, what it computes during training with and without
  length-bucketed batches (equal to `acc` for the per-token norms);
- `bn_shift`: for batch norms, how far the batch mean of the first norm's input lies from its running
  mean, in running standard deviations averaged over channels, per test batch of length-sorted and of
  random sequences, with the batch's mean length.

`--train_pad` trains with every batch padded to that length. `--figure PATH` draws every run of `--json`
([norm_study_figure][reglight.recipes.transformer.norm_study.norm_study_figure]).

Tasks: `sequence` (running maximum, [RunningMaxDataModule][reglight.recipes.transformer.RunningMaxDataModule],
batches drawn at random), `counting` (running count,
[RunningCountDataModule][reglight.recipes.transformer.RunningCountDataModule], length-bucketed batches;
`--data_args '{"bucket_by_length": false}'` for random ones) and `grokking` (modular addition).
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

__all__ = ["batch_norm_shift", "evaluate", "main", "norm_study_figure", "run_variant"]

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
COUNTING_DEFAULTS: dict[str, Any] = {
    "model": SEQUENCE_DEFAULTS["model"],
    "data": dict(n_train=4096, n_val=256, n_test=512, batch_size=32),
    "epochs": 2,
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


def _loader(
    dataset: Any, batch_size: int, pad_to: int | None = None, by_length: bool = False
) -> Any:
    from .data import _Batches, _loader

    if pad_to is not None and isinstance(dataset, _Batches):
        dataset = _Batches(dataset.tensors, dataset.pad_token, pad_to)
    lengths = dataset.tensors[2].sum(1) if by_length else None
    return _loader(dataset, batch_size, shuffle=False, lengths=lengths)


def _batch_norms(model: Any) -> list[Any]:
    from reglight.nn import MaskedBatchNorm1d

    return [m for m in model.modules() if isinstance(m, MaskedBatchNorm1d)]


def _with_batch_statistics(model: Any) -> Any:
    """A copy whose batch norms normalize with batch statistics and leave the running ones alone."""
    import copy

    twin = copy.deepcopy(model)
    for norm in _batch_norms(twin):
        norm.track_running_stats = (
            False  # evaluation mode then normalizes with the batch's statistics
        )
    return twin


def batch_norm_shift(model: Any, loader: Any) -> list[tuple[float, float]]:
    r"""Distance of the first batch norm's batch mean from its running mean, per batch.

    For each batch, the input of the first batch norm of `model` is averaged over the batch's real tokens,
    $\mu_B$, and compared with the running mean $\mu$ used in evaluation:
    $\frac{1}{C}\sum_c |\mu_{B,c} - \mu_c| / \sqrt{\sigma^2_c + \epsilon}$.

    Args:
        model: A [TransformerClassifier][reglight.recipes.transformer.TransformerClassifier] with batch norm.
        loader: Padded sequence batches `(tokens, targets, mask)`.

    Returns:
        `(mean length of the batch, shift)` per batch; empty for a model without batch norm.
    """
    norms = _batch_norms(model)
    if not norms:
        return []
    norm = norms[0]
    seen: list[tuple[float, float]] = []
    captured: dict[str, Any] = {}

    def grab(module: Any, args: tuple[Any, ...]) -> None:
        captured["x"] = args[0]

    handle = norm.register_forward_pre_hook(grab)
    model.eval()
    try:
        with torch.no_grad():
            for tokens, _, mask in loader:
                model(tokens, mask)
                x, m = captured["x"], mask[..., None].to(captured["x"].dtype)
                mean = (x * m).sum((0, 1)) / m.sum()
                std = (norm.running_var + norm.eps).sqrt()
                shift = ((mean - norm.running_mean).abs() / std).mean()
                seen.append((float(mask.sum(1).float().mean()), float(shift)))
    finally:
        handle.remove()
    return seen


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
        task: `"sequence"` (running maximum), `"counting"` (running count, length-bucketed batches) or
            `"grokking"` (modular addition).
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

    from .data import ModularArithmeticDataModule, RunningCountDataModule, RunningMaxDataModule
    from .model import TransformerClassifier

    defaults = {
        "sequence": SEQUENCE_DEFAULTS,
        "counting": COUNTING_DEFAULTS,
        "grokking": GROKKING_DEFAULTS,
    }[task]
    padded = task != "grokking"
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
    if padded:
        module = RunningMaxDataModule if task == "sequence" else RunningCountDataModule
        data = module(**data_kw, pad_to=train_pad)
        limits: dict[str, Any] = {"max_epochs": int(over.get("epochs", defaults["epochs"]))}
    else:
        data = ModularArithmeticDataModule(**data_kw)
        limits = {
            "max_steps": int(over.get("steps", defaults["steps"])),
            "max_epochs": -1,
            "check_val_every_n_epoch": 50,
        }
    if padded and train_pad is not None:
        model_kw["max_len"] = max(train_pad, test_pad)
    elif padded:
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
    if padded:
        test = data.sets["test"]
        bs = data.batch_size
        twin = _with_batch_statistics(model)
        result = {
            "acc": evaluate(model, _loader(test, bs)),
            "acc_bs1": evaluate(model, _loader(test, 1), limit=bs1_limit),
            "acc_bs1_ref": evaluate(model, _loader(test, bs), limit=bs1_limit),
            "acc_pad": evaluate(model, _loader(test, bs, pad_to=test_pad)),
            "acc_batch_stats_sorted": evaluate(twin, _loader(test, bs, by_length=True)),
            "acc_batch_stats_random": evaluate(twin, _loader(test, bs)),
            "bn_shift": {
                "sorted": batch_norm_shift(model, _loader(test, bs, by_length=True)),
                "random": batch_norm_shift(model, _loader(test, bs)),
            },
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


TASKS = ("counting", "sequence", "grokking")
TITLES = {
    "counting": "running count, length-bucketed batches",
    "sequence": "running maximum, padded",
    "grokking": "(a + b) mod p",
}
KEYS = (
    "acc",
    "acc_bs1",
    "acc_bs1_ref",
    "acc_pad",
    "acc_batch_stats_sorted",
    "acc_batch_stats_random",
    "train_acc",
    "seconds",
)


def _label(run: dict[str, Any]) -> str:
    pad = f", pad {run['train_pad']}" if run.get("train_pad") else ""
    data = (run.get("overrides") or {}).get("data", {})
    bs = f", batch {data['batch_size']}" if data.get("batch_size") else ""
    bucket = data.get("bucket_by_length")
    default_bucket = run["task"] == "counting"
    order = (
        ""
        if bucket is None or bucket == default_bucket
        else (", length-bucketed" if bucket else ", random batches")
    )
    return f"{run['norm_position']}-{run['norm']}{pad}{bs}{order}"


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
    for task in TASKS:
        groups = _groups(runs, task)
        if not groups:
            continue
        keys = [k for k in KEYS if all(k in r for rs in groups.values() for r in rs)]
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


def _shift_panel(ax: Any, runs: Sequence[dict[str, Any]]) -> None:
    import numpy as np

    for kind, style in (("sorted", "o-"), ("random", "s")):
        points = np.array([p for r in runs for p in r["bn_shift"][kind]])
        if not len(points):
            continue
        if kind == "sorted":
            edges = np.linspace(points[:, 0].min(), points[:, 0].max() + 1e-9, 9)
            which = np.digitize(points[:, 0], edges) - 1
            centers = [points[which == b, 0].mean() for b in range(8) if (which == b).any()]
            means = [points[which == b, 1].mean() for b in range(8) if (which == b).any()]
            ax.plot(centers, means, style, ms=4, label="batches of equal-length sequences")
        else:
            ax.plot(points[:, 0], points[:, 1], style, ms=3, alpha=0.5, label="random batches")
    ax.set_xlabel("mean sequence length of the test batch")
    ax.set_ylabel("|batch mean − running mean| / running std")
    ax.set_title("first batch norm: batch vs running statistics", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def norm_study_figure(runs: Sequence[dict[str, Any]]) -> Figure:
    """Bar charts (mean ± std over seeds, dots: seeds) of test accuracy per normalization, one panel per task.

    For each variant the bars show the accuracy on every test example at the training batch size, on the
    first examples one at a time, with extra test padding, and, for the padded tasks, with batch statistics
    of length-sorted test batches. When batch-norm runs of the counting task recorded `bn_shift`, a last
    panel plots, for the first batch norm, how far the batch mean of each test batch lies from the running
    mean against the batch's mean length: batches of equal-length sequences against random ones.

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

    tasks = [t for t in TASKS if _groups(runs, t)]
    shift_runs = [
        r
        for r in runs
        if r["task"] == "counting"
        and (r["norm"], r["norm_position"]) == ("batch", "pre")
        and r.get("bn_shift", {}).get("sorted")
        and not r.get("train_pad")
        and (r.get("overrides") or {}).get("data", {}).get("bucket_by_length", True)
    ]
    panels = len(tasks) + bool(shift_runs)
    widths = [max(3.0, 0.45 * len(_groups(runs, t)) + 1.5) for t in tasks] + [4.0] * bool(
        shift_runs
    )
    fig = Figure(figsize=(sum(widths), 4.0), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False, width_ratios=widths)[0]
    for ax, task in zip(axes, tasks):
        groups = _groups(runs, task)
        keys = [
            ("acc", "evaluation mode, training batch size"),
            ("acc_bs1", "batch size 1 (first 256)"),
            ("acc_pad", "extra test padding"),
            ("acc_batch_stats_sorted", "batch statistics, length-sorted batches"),
        ]
        keys = [(k, lab) for k, lab in keys if all(k in r for rs in groups.values() for r in rs)]
        x = np.arange(len(groups))
        w = 0.8 / len(keys)
        for i, (k, lab) in enumerate(keys):
            stats = [_mean_std([float(r[k]) for r in rs]) for rs in groups.values()]
            offset = x + (i - (len(keys) - 1) / 2) * w
            ax.bar(
                offset, [m for m, _ in stats], w, yerr=[s for _, s in stats], capsize=2, label=lab
            )
            for xi, rs in zip(offset, groups.values()):
                ax.plot([xi] * len(rs), [float(r[k]) for r in rs], "k.", ms=2)
        ax.set_xticks(x, list(groups), rotation=40, ha="right", fontsize=7)
        lowest = min(float(r[k]) for rs in groups.values() for r in rs for k, _ in keys)
        ax.set_ylim(max(0.0, math.floor(10 * lowest) / 10 - 0.1), 1.0)
        ax.set_ylabel("test accuracy")
        ax.set_title(TITLES[task], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=2)
    if shift_runs:
        _shift_panel(axes[-1], shift_runs)
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `--task`, `--variants pre:layer,pre:batch,...`, `--seeds`, `--train_pad`, `--json`,
    `--figure`, `--epochs`/`--steps`, `--threads`."""
    p = argparse.ArgumentParser(prog="python -m reglight.recipes.transformer.norm_study")
    p.add_argument("--task", choices=TASKS, default="sequence")
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
        norm_study_figure(runs).savefig(opts.figure, dpi=90, bbox_inches="tight")
    return 0 if all(math.isfinite(r["acc"]) for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
