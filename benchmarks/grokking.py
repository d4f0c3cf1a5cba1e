"""Grokking recipe: optimizer steps to 99 % validation accuracy on (a + b) mod 97, and what each regularizer does.

Trains the recipe ``recipes/grokking.yaml`` (exactly what ``reglight run grokking`` builds: the
``TransformerClassifier`` LightningModule on the ``ModularArithmeticDataModule``, 30 % of the equations for
training, full batch) for several seeds and variants, and records, per run, the first optimizer step at which
validation accuracy reaches 99 % (validation every ``--val-every`` steps), the final train and validation
accuracy and the wall time. Seed ``s`` sets both ``seed_everything`` and the train/validation split
(``--data.seed``). A run stops at 99 % validation accuracy unless ``--no-stop``.

Variants (``--variants``): ``default`` (the recipe); ``no_weight_decay`` (weight decay 0, with ``--no-wd-steps``
steps, 10× the budget by default); ``norm_layer``/``norm_rms``/``norm_batch``/``norm_none``; ``dropout_off``/
``dropout_on`` (residual dropout 0 / 0.1); ``gradient_filter_off``/``gradient_filter_on`` (Grokfast EMA,
momentum 0.98, gain 2: ``reglight.callbacks.GradientFilter``); ``orthogonal_gradient_off``/
``orthogonal_gradient_on`` (⊥Grad: ``reglight.callbacks.OrthogonalGradient``). A variant whose settings equal
an earlier one's (e.g. ``norm_layer`` when the recipe uses LayerNorm) reuses its runs and says so.

A second table times the Lightning loop against a plain PyTorch loop on the same network, optimizer, schedule
and batch (no validation), the anchor of the per-step cost. ``--figures DIR`` writes PNGs of train/validation
accuracy and the weight norm over the steps. ``--hessian-every N`` adds ``reglight.callbacks.LossLandscapeProbe`` to every
run: the top eigenvalue of the Hessian of the training loss on the full training batch (the model in evaluation
mode), every N steps within the probe's time budget ``--hessian-max-overhead``; the series goes into the JSON
curves, a table of its peaks and of the probe's cost is printed, and ``--figures`` adds
``grokking_hessian.png`` (accuracy, training loss, weight norm and top eigenvalue over the steps).

    python benchmarks/grokking.py --seeds 3 --json grokking.json --figures docs/recipes
    python benchmarks/grokking.py --variants default,no_weight_decay --seeds 1
    python benchmarks/grokking.py --variants default,no_weight_decay --seeds 1 --max-steps 300 \
        --no-wd-steps 300 --no-stop --hessian-every 10 --figures figures/
    python benchmarks/grokking.py --quick              # a tiny smoke run (p=13, d=32, a few steps)
    python benchmarks/grokking.py --model.lr=0.02      # any other option: a recipe override
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import Report, add_json_argument


@dataclass
class Variant:
    name: str
    description: str
    overrides: list[str] = field(default_factory=list)
    add: list[str] = field(default_factory=list)  # callbacks to add (names in reglight.callbacks)
    drop: list[str] = field(default_factory=list)  # callback class names to remove
    no_wd_budget: bool = False  # run for --no-wd-steps instead of --max-steps


_NO_DROPOUT = ["--model.resid_dropout=0", "--model.attn_dropout=0", "--model.embed_dropout=0"]
_FILTERS = ["GradientFilter", "OrthogonalGradient"]

VARIANTS = [
    Variant("default", "the recipe as it is"),
    Variant(
        "no_weight_decay",
        "weight decay 0, no dropout, no gradient filter (budget ×10)",
        ["--model.weight_decay=0", *_NO_DROPOUT],
        drop=_FILTERS,
        no_wd_budget=True,
    ),
    Variant("norm_layer", "pre-LayerNorm", ["--model.norm=layer"]),
    Variant("norm_rms", "pre-RMSNorm", ["--model.norm=rms"]),
    Variant("norm_batch", "pre-BatchNorm over the tokens", ["--model.norm=batch"]),
    Variant("norm_none", "no normalization", ["--model.norm=none"]),
    Variant("dropout_off", "no dropout", _NO_DROPOUT),
    Variant("dropout_on", "residual dropout 0.1", ["--model.resid_dropout=0.1"]),
    Variant("gradient_filter_off", "no Grokfast filter", drop=["GradientFilter"]),
    Variant(
        "gradient_filter_on",
        "Grokfast EMA filter (momentum 0.98, gain 2)",
        add=["GradientFilter"],
        drop=["GradientFilter"],
    ),
    Variant("orthogonal_gradient_off", "no ⊥Grad", drop=["OrthogonalGradient"]),
    Variant(
        "orthogonal_gradient_on",
        "⊥Grad on every parameter",
        add=["OrthogonalGradient"],
        drop=["OrthogonalGradient"],
    ),
]

QUICK = ["--data.p=13", "--model.d_model=32", "--model.heads=2"]
QUICK_VARIANTS = "default,no_weight_decay,gradient_filter_on,orthogonal_gradient_on"


def _make_callback(name: str) -> Any:
    from reglight.callbacks import GradientFilter, OrthogonalGradient

    if name == "GradientFilter":
        return GradientFilter(momentum=0.98, gain=2.0)
    if name == "OrthogonalGradient":
        return OrthogonalGradient()
    raise ValueError(f"unknown callback {name!r}")


def _recorder(threshold: float, stop: bool) -> Any:
    import lightning.pytorch as pl

    class Recorder(pl.Callback):
        """Per-step train metrics, per-check validation accuracy, and the first step at `threshold`."""

        def __init__(self) -> None:
            self.steps: list[int] = []
            self.train_acc: list[float] = []
            self.train_loss: list[float] = []
            self.weight_norm: list[float] = []
            self.val_steps: list[int] = []
            self.val_acc: list[float] = []
            self.hit: int | None = None

        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            m = trainer.callback_metrics
            self.steps.append(trainer.global_step)
            self.train_acc.append(float(m["train/acc"]))
            self.train_loss.append(float(m["train/loss"]))
            self.weight_norm.append(float(m["train/weight_norm"]))

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            acc = float(trainer.callback_metrics["val/acc"])
            self.val_steps.append(trainer.global_step)
            self.val_acc.append(acc)
            if self.hit is None and acc >= threshold:
                self.hit = trainer.global_step
                if stop:
                    trainer.should_stop = True

    return Recorder()


def _build(recipe_path: Path, variant: Variant, seed: int, common: list[str], steps: int) -> Any:
    from reglight.cli import ReglightCLI

    args = [
        "--config",
        str(recipe_path),
        *common,
        *variant.overrides,
        f"--seed_everything={seed}",
        f"--data.seed={seed}",
        f"--trainer.max_steps={steps}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.enable_checkpointing=false",
    ]
    cli = ReglightCLI(args, run=False, prog="benchmarks/grokking.py")
    callbacks: list[Any] = cli.trainer.callbacks  # type: ignore[attr-defined]
    callbacks[:] = [cb for cb in callbacks if type(cb).__name__ not in variant.drop]
    callbacks.extend(_make_callback(name) for name in variant.add)
    return cli


def _signature(cli: Any) -> str:
    """What a run depends on: resolved model/data hyperparameters, callbacks, budget."""
    config = cli.config.as_dict()
    trainer = dict(config.get("trainer", {}))
    trainer.pop("callbacks", None)
    callbacks = sorted(
        repr(vars(cb)) for cb in cli.trainer.callbacks if type(cb).__module__.startswith("reglight")
    )
    callbacks += sorted(type(cb).__name__ for cb in cli.trainer.callbacks)
    return json.dumps(
        [config.get("model"), config.get("data"), trainer, callbacks], sort_keys=True, default=str
    )


def probe_loss(pl_module: Any, batch: Any) -> Any:
    """The training loss (cross-entropy of the answers), without `training_step`'s logging.

    AdamW's weight decay is decoupled: not part of the loss. The probe computes its Hessian-vector products
    with the math kernel of `scaled_dot_product_attention` (the fused ones have no double backward).
    """
    import torch.nn.functional as F

    logits, targets = pl_module.scores(batch)
    return F.cross_entropy(
        logits, targets, label_smoothing=float(pl_module.hparams["label_smoothing"])
    )


def hessian_probe(every: int, max_overhead: float | None) -> Any:
    """The probe of the top Hessian eigenvalue: the full training batch, every `every` steps (= epochs)."""
    from reglight.callbacks import LossLandscapeProbe

    return LossLandscapeProbe(
        every_n_epochs=every,
        batches=1,
        metrics=("top_eigenvalue",),
        max_overhead=max_overhead,
        source="train",
        loss_fn=probe_loss,
    )


def run_variant(
    cli: Any, variant: Variant, seed: int, stop: bool, probe: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the built run until 99 % validation accuracy (with `stop`) or the end of its budget.

    With a `LossLandscapeProbe` as `probe`, its history goes into the curves (`hessian_steps`,
    `top_eigenvalue`, `hessian_seconds`) and its total time into the run (`hessian_seconds`,
    `hessian_overhead`: probe time over the rest of the run's time).
    """
    rec = _recorder(0.99, stop)
    cli.trainer.callbacks.append(rec)
    if probe is not None:
        cli.trainer.callbacks.append(probe)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    run = {
        "variant": variant.name,
        "seed": seed,
        "steps_to_99": rec.hit,
        "final_val_acc": rec.val_acc[-1] if rec.val_acc else None,
        "final_train_acc": rec.train_acc[-1] if rec.train_acc else None,
        "steps": int(cli.trainer.global_step),
        "seconds": seconds,
    }
    curves = {
        "steps": rec.steps,
        "train_acc": rec.train_acc,
        "train_loss": rec.train_loss,
        "weight_norm": rec.weight_norm,
        "val_steps": rec.val_steps,
        "val_acc": rec.val_acc,
    }
    if probe is not None:
        history = probe.history
        probe_seconds = sum(h["seconds"] for h in history)
        run["hessian_probes"] = len(history)
        run["hessian_seconds"] = probe_seconds
        run["hessian_overhead"] = probe_seconds / max(seconds - probe_seconds, 1e-9)
        curves["hessian_steps"] = [int(h["step"]) for h in history]
        curves["top_eigenvalue"] = [float(h["top_eigenvalue"]) for h in history]
        curves["hessian_seconds"] = [float(h["seconds"]) for h in history]
    return run, curves


def loop_overhead(recipe_path: Path, common: list[str], steps: int) -> tuple[float, float]:
    """Seconds per step: the recipe under a Lightning Trainer vs a plain loop, same network and optimizer."""
    import torch
    import torch.nn.functional as F

    # Lightning: no validation
    if steps >= 10:  # a first fit pays the one-time set-up costs; time the steady state below
        cli = _build(
            recipe_path,
            Variant("timing", ""),
            0,
            [*common, "--trainer.limit_val_batches=0"],
            steps + 5,
        )
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli = _build(
        recipe_path, Variant("timing", ""), 0, [*common, "--trainer.limit_val_batches=0"], steps
    )
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    lightning_s = (time.perf_counter() - start) / steps

    # plain PyTorch: the same LightningModule's network, optimizer and scheduler, driven by hand
    data = _build(recipe_path, Variant("timing", ""), 0, common, steps).datamodule
    sizes = [
        f"--model.vocab_size={data.vocab_size}",
        f"--model.num_classes={data.num_classes}",
        f"--model.max_len={data.max_positions}",
    ]
    model = _build(recipe_path, Variant("timing", ""), 0, [*common, *sizes], steps).model
    data.setup("fit")
    conf = model.configure_optimizers()  # no trainer attached: the warm-up, then a constant rate
    opt = conf["optimizer"] if isinstance(conf, dict) else conf
    sched = conf["lr_scheduler"]["scheduler"] if isinstance(conf, dict) else None
    tokens, answers = next(iter(data.train_dataloader()))
    model.train()

    def step() -> None:
        logits, targets = model.scores((tokens, answers))
        loss = F.cross_entropy(logits, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        with torch.no_grad():  # what the LightningModule logs each step
            (logits.argmax(-1) == targets).float().mean()
            model.weight_norm()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    plain_s = (time.perf_counter() - start) / steps
    return lightning_s, plain_s


def _figures(
    curves: dict[str, dict[int, dict[str, Any]]], names: list[str], folder: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    # 1) the recipe against no weight decay: accuracies and weight norm (seed 0)
    pair = [n for n in ("default", "no_weight_decay") if n in curves]
    if pair:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for n, color in zip(pair, ("tab:blue", "tab:red")):
            c = curves[n][min(curves[n])]
            ax1.plot(c["steps"], c["train_acc"], color=color, alpha=0.5, lw=1, label=f"{n}: train")
            ax1.plot(c["val_steps"], c["val_acc"], color=color, lw=2, label=f"{n}: validation")
            ax2.plot(c["steps"], c["weight_norm"], color=color, lw=2, label=n)
        ax1.axhline(0.99, color="gray", ls=":", lw=1)
        ax1.set(xlabel="optimizer step", ylabel="accuracy", title="(a + b) mod 97, 30 % train")
        ax1.set_xscale("log")
        ax1.legend(fontsize=8)
        ax2.set(xlabel="optimizer step", ylabel="‖θ‖₂", title="weight norm")
        ax2.set_xscale("log")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        path = folder / "grokking_curves.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    # 2) validation accuracy of every variant (seed 0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for n in names:
        if n not in curves or n == "no_weight_decay":
            continue
        c = curves[n][min(curves[n])]
        ax1.plot(c["val_steps"], c["val_acc"], lw=1.5, label=n)
        ax2.plot(c["steps"], c["weight_norm"], lw=1.5, label=n)
    ax1.axhline(0.99, color="gray", ls=":", lw=1)
    ax1.set(xlabel="optimizer step", ylabel="validation accuracy", title="variants (seed 0)")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="optimizer step", ylabel="‖θ‖₂", title="weight norm")
    fig.tight_layout()
    path = folder / "grokking_variants.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    # 3) with --hessian-every: accuracy, training loss, weight norm and the top Hessian eigenvalue (seed 0)
    probed = [n for n in names if n in curves and curves[n][min(curves[n])].get("hessian_steps")]
    if probed:
        fig, axes = plt.subplots(1, 4, figsize=(17, 4))
        colors = dict(zip(probed, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
        colors.update({n: c for n, c in (("default", "tab:blue"), ("no_weight_decay", "tab:red"))})
        for n in probed:
            seed = min(curves[n])
            c = curves[n][seed]
            color = colors[n]
            axes[0].plot(
                c["steps"], c["train_acc"], color=color, alpha=0.5, lw=1, label=f"{n}: train"
            )
            axes[0].plot(c["val_steps"], c["val_acc"], color=color, lw=2, label=f"{n}: validation")
            axes[1].plot(c["steps"], c["train_loss"], color=color, lw=1.5, label=n)
            axes[2].plot(c["steps"], c["weight_norm"], color=color, lw=1.5, label=n)
            axes[3].plot(
                c["hessian_steps"], c["top_eigenvalue"], "o-", color=color, ms=3, lw=1.5, label=n
            )
        axes[0].axhline(0.99, color="gray", ls=":", lw=1)
        axes[0].set(xlabel="optimizer step", ylabel="accuracy", title=f"accuracy (seed {seed})")
        axes[1].set(xlabel="optimizer step", ylabel="cross-entropy", title="training loss")
        axes[1].set_yscale("log")
        axes[2].set(xlabel="optimizer step", ylabel="‖θ‖₂", title="weight norm")
        axes[3].set(
            xlabel="optimizer step",
            ylabel="λ_max",
            title="top Hessian eigenvalue, training loss",
        )
        axes[3].set_yscale("log")
        for ax in axes:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / "grokking_hessian.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+N-1 (default 0)"
    )
    parser.add_argument("--variants", type=str, default=",".join(v.name for v in VARIANTS))
    parser.add_argument(
        "--max-steps", type=int, default=500, help="budget of every variant (default 500)"
    )
    parser.add_argument(
        "--no-wd-steps", type=int, default=2500, help="budget of no_weight_decay (default 2500)"
    )
    parser.add_argument(
        "--val-every", type=int, default=5, help="validate every N steps (default 5)"
    )
    parser.add_argument(
        "--no-wd-val-every",
        type=int,
        default=25,
        help="validate no_weight_decay every N steps (default 25)",
    )
    parser.add_argument(
        "--variant-seeds",
        type=int,
        default=None,
        help="seeds of the variants other than default (default: --seeds)",
    )
    parser.add_argument(
        "--no-stop", action="store_true", help="run the whole budget after reaching 99 %%"
    )
    parser.add_argument(
        "--hessian-every",
        type=int,
        default=0,
        help="probe the top Hessian eigenvalue of the training loss every N steps (default 0: off)",
    )
    parser.add_argument(
        "--hessian-max-overhead",
        type=float,
        default=None,
        help="time budget of the probe, a fraction of the training time (default: none, every N steps)",
    )
    parser.add_argument(
        "--timing-steps", type=int, default=30, help="steps of the loop timing (0: skip)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--figures", type=Path, default=None, help="write PNG figures into this folder"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny smoke run (p=13, d=32, few steps, 1 seed)"
    )
    add_json_argument(parser)
    opts, extra = parser.parse_known_args(argv)
    if opts.quick:
        opts.seeds, opts.max_steps, opts.no_wd_steps, opts.val_every, opts.no_wd_val_every = (
            1,
            6,
            8,
            2,
            4,
        )
        opts.timing_steps = min(opts.timing_steps, 3)
        if "--variants" not in (argv if argv is not None else sys.argv[1:]):
            opts.variants = QUICK_VARIANTS
        extra = [*QUICK, *extra]

    import lightning.pytorch as pl
    import torch

    from reglight.cli import find_recipe

    torch.set_num_threads(opts.threads)
    pl.seed_everything(0, verbose=False)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    recipe = find_recipe("grokking")
    by_name = {v.name: v for v in VARIANTS}
    names = [n.strip() for n in opts.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(by_name)}")
    seeds = list(range(opts.first_seed, opts.first_seed + opts.seeds))
    if opts.variant_seeds is None:
        opts.variant_seeds = opts.seeds
    common = list(extra)
    report = Report(
        "grokking", {**vars(opts), "seeds": seeds, "variants": names, "recipe_overrides": extra}
    )

    runs: list[dict[str, Any]] = []
    curves: dict[str, dict[int, dict[str, Any]]] = {}
    seen: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    same_as: dict[str, str] = {}
    for name in names:
        variant = by_name[name]
        steps = opts.no_wd_steps if variant.no_wd_budget else opts.max_steps
        for seed in seeds if name == "default" else seeds[: opts.variant_seeds]:
            val_every = opts.no_wd_val_every if variant.no_wd_budget else opts.val_every
            cli = _build(
                recipe.path,
                variant,
                seed,
                [f"--trainer.check_val_every_n_epoch={val_every}", *common],
                steps,
            )
            sig = _signature(cli)
            if sig in seen:
                first, run, curve = seen[sig]
                same_as[name] = first
                run = {**run, "variant": name}
            else:
                probe = (
                    hessian_probe(opts.hessian_every, opts.hessian_max_overhead)
                    if opts.hessian_every > 0
                    else None
                )
                run, curve = run_variant(cli, variant, seed, not opts.no_stop, probe)
                seen[sig] = (name, run, curve)
            del cli
            runs.append(run)
            curves.setdefault(name, {})[seed] = curve
            print(
                f"[grokking] {name} seed {seed}: steps to 99 % {run['steps_to_99']}, val "
                f"{run['final_val_acc']:.3f}, train {run['final_train_acc']:.3f}, {run['seconds']:.1f} s"
                + (f" (= {same_as[name]})" if name in same_as else ""),
                file=sys.stderr,
                flush=True,
            )

    table = report.table(
        f"Grokking: optimizer steps to 99 % validation accuracy (validation every {opts.val_every} steps; "
        f"budget {opts.max_steps} steps; no_weight_decay: {opts.no_wd_steps} steps, validation every "
        f"{opts.no_wd_val_every}); torch threads {opts.threads}",
        ["variant", "description", "steps to 99 % per seed", "mean steps", "final val acc", "final train acc",
         "s / run (median)", "steps / default"],
    )  # fmt: skip
    default_mean = math.nan
    for name in names:
        rows = [r for r in runs if r["variant"] == name]
        hits = [r["steps_to_99"] for r in rows]
        reached = [h for h in hits if h is not None]
        mean_steps = _mean([float(h) for h in reached]) if len(reached) == len(hits) else math.nan
        if name == "default":
            default_mean = mean_steps
        seconds = statistics.median(r["seconds"] for r in rows)
        ratio = (
            mean_steps / default_mean
            if math.isfinite(mean_steps) and math.isfinite(default_mean)
            else None
        )
        desc = by_name[name].description + (
            f" (same runs as {same_as[name]})" if name in same_as else ""
        )
        table.row(
            [
                name,
                desc,
                ", ".join("—" if h is None else str(h) for h in hits),
                f"{mean_steps:.0f}"
                if math.isfinite(mean_steps)
                else f"{len(reached)}/{len(hits)} reached",
                f"{_mean([r['final_val_acc'] for r in rows]):.3f}",
                f"{_mean([r['final_train_acc'] for r in rows]):.3f}",
                f"{seconds:.1f}",
                f"{ratio:.2f}" if ratio is not None else "—",
            ],
            labels={"variant": name, "same_as": same_as.get(name)},
            medians={"seconds": seconds},
            ratios={"steps / default": ratio} if ratio is not None else {},
            extra={"steps_to_99": hits, "mean_steps_to_99": mean_steps, "runs": rows},
        )

    probed = [r for r in runs if r.get("hessian_probes")]
    if probed:
        budget = (
            "every probe"
            if opts.hessian_max_overhead is None
            else f"max_overhead {opts.hessian_max_overhead:g}"
        )
        hessian = report.table(
            f"Top Hessian eigenvalue of the training loss (full training batch, evaluation mode; every "
            f"{opts.hessian_every} steps, {budget}); overhead: probe time / the rest of the run's time",
            ["variant", "seed", "probes", "λ_max first (step)", "λ_max peak (step)", "λ_max last (step)",
             "s / probe (median)", "overhead"],
        )  # fmt: skip
        for r in probed:
            c = curves[r["variant"]][r["seed"]]
            points = list(zip(c["hessian_steps"], c["top_eigenvalue"]))
            peak = max(points, key=lambda sv: sv[1])
            per_probe = statistics.median(c["hessian_seconds"])
            hessian.row(
                [
                    r["variant"],
                    str(r["seed"]),
                    str(r["hessian_probes"]),
                    *(f"{v:.3g} ({st})" for st, v in (points[0], peak, points[-1])),
                    f"{per_probe:.2f}",
                    f"{r['hessian_overhead']:.2f}",
                ],
                labels={"variant": r["variant"], "seed": r["seed"]},
                medians={"seconds_per_probe": per_probe},
                ratios={"overhead": r["hessian_overhead"]},
                extra={
                    "peak_step": peak[0],
                    "peak": peak[1],
                    "hessian_probes": r["hessian_probes"],
                },
            )

    if opts.timing_steps > 0:
        lightning_s, plain_s = loop_overhead(recipe.path, extra, opts.timing_steps)
        timing = report.table(
            f"Seconds per full-batch training step, the recipe's defaults, no validation ({opts.timing_steps} steps)",
            ["loop", "s / step", "ratio to plain PyTorch"],
        )
        timing.row(
            ["plain PyTorch (same network, optimizer, schedule)", f"{plain_s:.3f}", "1.00"],
            labels={"loop": "plain"},
            medians={"s_per_step": plain_s},
            ratios={"ratio": 1.0},
        )
        timing.row(
            [
                "Lightning Trainer (reglight run grokking)",
                f"{lightning_s:.3f}",
                f"{lightning_s / plain_s:.2f}",
            ],
            labels={"loop": "lightning"},
            medians={"s_per_step": lightning_s},
            ratios={"ratio": lightning_s / plain_s},
        )

    if opts.figures is not None:
        for path in _figures(curves, names, opts.figures):
            print(f"wrote {path}", file=sys.stderr)
    if opts.json is not None:
        data = report.to_dict()
        data["runs"] = runs
        data["curves"] = curves
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
        print(f"\nwrote {opts.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
