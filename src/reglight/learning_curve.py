r"""`reglight ablate RECIPE --train_sizes 50,100,200,546`: a learning curve of the regularizers, with statistics.

Each variant is trained on class-stratified subsets of the training split of several sizes, with several seeds.
A seed fixes the subset of each size (nested across sizes, see [reglight.subsets][reglight.subsets]) and the
training randomness; every variant sees the same subsets with the same seeds, so variants can be compared
**paired**, seed by seed. The recipe's datamodule must take `train_size` and `subset_seed` (as
[MedMNISTDataModule][reglight.recipes.medical_cnn.MedMNISTDataModule] does).

The variants come from the recipe's YAML, in `ablation.learning_curve.variants` (same syntax as
`ablation.variants`; without that section the ablation's own variants are used):

```yaml
ablation:
  variants: {...}
  learning_curve:
    reference: full            # the variant the others are compared with (default: the first)
    variants:
      full: {description: full stack}
      none: {overrides: {...}, drop_callbacks: [...]}
```

`--train-sizes` and `--max-epoch-scale` are accepted as spellings of `--train_sizes` and `--max_epoch_scale`.

**Budget.** A smaller subset has fewer optimizer steps per epoch; the epochs are scaled by
$s(n) = \min(\text{max\_epoch\_scale},\ n_{max} / n)$, with $n_{max}$ the largest size of the study:
`trainer.max_epochs` and the `patience` of early-stopping callbacks are multiplied by $s(n)$ (rounded up). The
cost of a run is then roughly proportional to $\max(n, n_{max}/\text{max\_epoch\_scale})$ times the epochs
of the full run, plus one validation pass per epoch.

**Statistics** per size and variant, over the $k$ seeds: the mean of each metric with a 95 % Student-t
interval $\bar x \pm t_{0.975, k-1}\, s/\sqrt k$; against the reference variant, the paired differences
$d_j = x_j - x^{ref}_j$ with their mean and t-interval, the wins/losses, the two-sided sign test (exact
binomial, ties dropped) and the Wilcoxon signed-rank test (`scipy.stats.wilcoxon`). A table of all of it and
a figure of the metric against the training size (log scale) are printed, logged and written next to the runs.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reglight._validation import check_in_range

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from reglight.ablation import Ablation, Run
    from reglight.cli import Recipe
    from reglight.logging import Table

__all__ = [
    "PairedComparison",
    "epoch_scale",
    "learning_curve_figure",
    "learning_curve_section",
    "learning_curve_summary",
    "learning_curve_table",
    "paired_comparison",
    "run_learning_curve",
    "t_interval",
    "variants_of",
]


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    r"""Mean and Student-t confidence interval $\bar x \pm t_{(1+c)/2,\,k-1}\, s / \sqrt k$.

    NaN values are left out; with fewer than two values the interval is NaN.

    Args:
        values: The observations (e.g. one test AUC per seed).
        confidence: The confidence level $c$ in $(0, 1)$.

    Returns:
        `(mean, low, high)`.

    Examples:
        >>> mean, low, high = t_interval([0.90, 0.92, 0.94])
        >>> round(mean, 3), round(low, 3), round(high, 3)
        (0.92, 0.87, 0.97)
    """
    from scipy import stats

    check_in_range("confidence", confidence, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    x = [float(v) for v in values if not math.isnan(float(v))]
    if not x:
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(x)
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = (
        float(stats.t.ppf((1 + confidence) / 2, len(x) - 1))
        * statistics.stdev(x)
        / math.sqrt(len(x))
    )
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class PairedComparison:
    """Paired differences `variant − reference` over seeds.

    Attributes:
        mean: Mean difference.
        low: Lower end of its t-interval.
        high: Upper end of its t-interval.
        wins: Seeds where the variant is higher.
        losses: Seeds where it is lower.
        ties: Seeds with equal values.
        sign_p: Two-sided exact sign test p-value (ties dropped; 1 when all tie).
        wilcoxon_p: Two-sided Wilcoxon signed-rank p-value (1 when all differences are 0).
    """

    mean: float
    low: float
    high: float
    wins: int
    losses: int
    ties: int
    sign_p: float
    wilcoxon_p: float


def paired_comparison(
    values: Sequence[float], reference: Sequence[float], confidence: float = 0.95
) -> PairedComparison:
    r"""Compare a variant with the reference on the same seeds: $d_j = x_j - x^{ref}_j$.

    Args:
        values: The variant's metric, one per seed.
        reference: The reference's metric on the same seeds, in the same order.
        confidence: Level of the t-interval of the mean difference.

    Returns:
        The [PairedComparison][reglight.learning_curve.PairedComparison].

    Raises:
        ValueError: If the two sequences differ in length.

    Examples:
        >>> c = paired_comparison([0.91, 0.93, 0.95, 0.92], [0.90, 0.90, 0.90, 0.90])
        >>> c.wins, c.losses, round(c.mean, 4), round(c.sign_p, 3)
        (4, 0, 0.0275, 0.125)
    """
    from scipy import stats

    if len(values) != len(reference):
        raise ValueError(
            f"paired values need the same seeds: got {len(values)} values and {len(reference)} references"
        )
    pairs = [
        (float(a), float(b))
        for a, b in zip(values, reference)
        if not (math.isnan(float(a)) or math.isnan(float(b)))
    ]
    d = [a - b for a, b in pairs]
    mean, low, high = t_interval(d, confidence)
    wins = sum(x > 0 for x in d)
    losses = sum(x < 0 for x in d)
    ties = len(d) - wins - losses
    sign_p = float(stats.binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
    wilcoxon_p = float(stats.wilcoxon(d).pvalue) if wins + losses else 1.0
    return PairedComparison(mean, low, high, wins, losses, ties, sign_p, wilcoxon_p)


def epoch_scale(size: int, largest: int, max_epoch_scale: float = 4.0) -> float:
    r"""The factor $s(n) = \min(\text{max\_epoch\_scale},\ n_{max}/n)$ applied to the epochs of a run on $n$ samples.

    Examples:
        >>> epoch_scale(546, 546), epoch_scale(273, 546), epoch_scale(50, 546)
        (1.0, 2.0, 4.0)
    """
    return min(float(max_epoch_scale), largest / size)


def learning_curve_section(ablation_section: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The `learning_curve` part of a recipe's `ablation:` section (`None` when absent)."""
    if not isinstance(ablation_section, Mapping):
        return None
    section = ablation_section.get("learning_curve")
    return dict(section) if isinstance(section, Mapping) else None


def _scale_epochs(trainer: Any, scale: float) -> None:
    """Multiply `max_epochs` and early-stopping patience by `scale` (rounded up)."""
    from lightning.pytorch.callbacks import EarlyStopping

    if scale == 1.0:
        return
    if trainer.fit_loop.max_epochs and trainer.fit_loop.max_epochs > 0:
        trainer.fit_loop.max_epochs = math.ceil(trainer.fit_loop.max_epochs * scale)
    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.patience < 10**9:
            cb.patience = math.ceil(cb.patience * scale)


RunFn = Callable[..., "Run"]


def run_learning_curve(
    recipe: Recipe,
    curve: Ablation,
    sizes: Sequence[int],
    seeds: Sequence[int],
    variants: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    max_epoch_scale: float = 4.0,
    run_root: Path | None = None,
    resume: bool = False,
    command: Sequence[str] = (),
    progress: bool = True,
) -> dict[int, dict[str, list[Run]]]:
    """Train every variant on every size with every seed (see the module docstring).

    Args:
        recipe: The recipe.
        curve: The variants (an [Ablation][reglight.ablation.Ablation]).
        sizes: Training-subset sizes.
        seeds: Seeds; seed `j` fixes the subsets and the training randomness of every variant's run `j`.
        variants: Names of the variants to run (default: all).
        overrides: LightningCLI overrides of every run.
        max_epoch_scale: Cap of the epoch scale factor.
        run_root: Folder of the runs (`n<size>/<variant>/seed<N>/`), `None` for none.
        resume: Read back finished runs (`run.json`) and continue interrupted ones.
        command: The study's command line (for the resume hint on SIGINT/SIGTERM).
        progress: Print one line per finished run.

    Returns:
        Size to variant name to one [Run][reglight.ablation.Run] per seed.
    """
    import json
    import sys
    from dataclasses import asdict

    from reglight.ablation import Run, run_one

    check_in_range("max_epoch_scale", max_epoch_scale, 1.0, math.inf)
    names = list(curve.variants) if variants is None else list(variants)
    unknown = [n for n in names if n not in curve.variants]
    if unknown:
        raise ValueError(
            f"unknown variant(s) {unknown}; the learning curve declares {list(curve.variants)}"
        )
    if not sizes or not seeds:
        raise ValueError("`sizes` and `seeds` must not be empty")
    largest = max(sizes)
    results: dict[int, dict[str, list[Run]]] = {}
    for size in sorted(sizes):
        scale = epoch_scale(size, largest, max_epoch_scale)
        results[size] = {}
        for name in names:
            results[size][name] = []
            for seed in seeds:
                run_dir = (
                    run_root / f"n{size}" / name / f"seed{seed}" if run_root is not None else None
                )
                done = run_dir / "run.json" if run_dir is not None else None
                if resume and done is not None and done.is_file():
                    run = Run(**json.loads(done.read_text(encoding="utf-8")))
                else:
                    run = run_one(
                        recipe,
                        curve.variants[name],
                        seed,
                        [*overrides, f"--data.train_size={size}", f"--data.subset_seed={seed}"],
                        run_dir,
                        resume,
                        command,
                        configure=functools.partial(_scale_epochs, scale=scale),
                    )
                    if done is not None:
                        done.parent.mkdir(parents=True, exist_ok=True)
                        done.write_text(json.dumps(asdict(run)), encoding="utf-8")
                results[size][name].append(run)
                if progress:
                    shown = "  ".join(
                        f"{k} {v:.3f}" for k, v in run.metrics.items() if k in curve.metrics
                    )
                    print(
                        f"[learning curve] n={size:<5} {name:<20} seed {seed}: {shown}  epochs "
                        f"{run.epochs}  {run.seconds:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )
    return results


def _reference(reference: str | None, names: Sequence[str]) -> str:
    ref = reference or names[0]
    if ref not in names:
        raise ValueError(
            f"the reference variant {ref!r} is not among the variants run: {list(names)}"
        )
    return ref


def _fmt_ci(mean: float, low: float, high: float) -> str:
    if math.isnan(low):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def learning_curve_table(
    results: Mapping[int, Mapping[str, Sequence[Run]]],
    metric: str = "test/auc",
    reference: str | None = None,
    extra_metrics: Mapping[str, str] | None = None,
    confidence: float = 0.95,
) -> Table:
    """One row per size and variant: seeds, mean [CI] of `metric`, paired comparison with the reference, cost.

    Args:
        results: What [run_learning_curve][reglight.learning_curve.run_learning_curve] returned.
        metric: The compared metric.
        reference: The reference variant (default: the first).
        extra_metrics: Other metrics to show as mean [CI], key to column label.
        confidence: Level of the intervals.

    Returns:
        A [Table][reglight.logging.Table].
    """
    from reglight.logging import Table

    extra = dict(extra_metrics or {})
    pct = f"{round(100 * confidence)} %"
    columns = [
        "n train",
        "variant",
        "seeds",
        f"{metric} mean [{pct} CI]",
        *(f"{label} mean [{pct} CI]" for label in extra.values()),
        f"Δ vs reference [{pct} CI]",
        "wins/losses/ties",
        "sign p",
        "Wilcoxon p",
        "epochs",
        "seconds/run",
    ]
    rows: list[list[Any]] = []
    for size, by_variant in results.items():
        names = list(by_variant)
        ref = _reference(reference, names)
        ref_values = _by_seed(by_variant[ref], metric)
        for name, runs in by_variant.items():
            values = _by_seed(runs, metric)
            row: list[Any] = [
                size,
                name,
                len(values),
                _fmt_ci(*t_interval(list(values.values()), confidence)),
            ]
            for key in extra:
                row.append(
                    _fmt_ci(*t_interval([r.metrics.get(key, math.nan) for r in runs], confidence))
                )
            if name == ref:
                row += ["(reference)", "", "", ""]
            else:
                seeds = [s for s in values if s in ref_values]
                c = paired_comparison(
                    [values[s] for s in seeds], [ref_values[s] for s in seeds], confidence
                )
                row += [
                    f"{c.mean:+.3f} [{c.low:+.3f}, {c.high:+.3f}]",
                    f"{c.wins}/{c.losses}/{c.ties}",
                    f"{c.sign_p:.3f}",
                    f"{c.wilcoxon_p:.3f}",
                ]
            row += [
                f"{statistics.fmean(r.epochs for r in runs):.0f}",
                f"{statistics.fmean(r.seconds for r in runs):.1f}",
            ]
            rows.append(row)
    return Table(f"Learning curve: {metric} (paired over seeds)", columns, rows)


def learning_curve_summary(
    results: Mapping[int, Mapping[str, Sequence[Run]]],
    metric: str = "test/auc",
    reference: str | None = None,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """The numbers behind the table and the figure, one record per size and variant (for a JSON file).

    Each record holds `n_train`, `variant`, `seeds`, `mean`, `low`, `high` (the t-interval of `metric`)
    and, except for the reference, `paired`: the fields of a
    [PairedComparison][reglight.learning_curve.PairedComparison] against the reference on the same seeds.
    An undefined number (an interval from fewer than two seeds) is `None`, so the records are strict JSON.

    Examples:
        >>> from reglight.ablation import Run
        >>> runs = {50: {v: [Run(v, s, {"test/auc": 0.8 + s / 100 + (v == "full") / 50}, 1, 1.0)
        ...                  for s in range(3)] for v in ("full", "none")}}
        >>> rec = learning_curve_summary(runs)[1]
        >>> rec["variant"], rec["seeds"], round(rec["paired"]["mean"], 3), rec["paired"]["losses"]
        ('none', [0, 1, 2], -0.02, 3)
    """
    from dataclasses import asdict

    records: list[dict[str, Any]] = []
    for size, by_variant in results.items():
        ref = _reference(reference, list(by_variant))
        ref_values = _by_seed(by_variant[ref], metric)
        for name, runs in by_variant.items():
            values = _by_seed(runs, metric)
            mean, low, high = t_interval(list(values.values()), confidence)
            record: dict[str, Any] = {
                "n_train": size,
                "variant": name,
                "seeds": sorted(values),
                "mean": mean,
                "low": low,
                "high": high,
            }
            if name != ref:
                seeds = [s for s in values if s in ref_values]
                paired = paired_comparison(
                    [values[s] for s in seeds], [ref_values[s] for s in seeds], confidence
                )
                record["paired"] = {k: _finite(v) for k, v in asdict(paired).items()}
            records.append({k: _finite(v) for k, v in record.items()})
    return records


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _by_seed(runs: Sequence[Run], metric: str) -> dict[int, float]:
    return {r.seed: float(r.metrics.get(metric, math.nan)) for r in runs}


def learning_curve_figure(
    results: Mapping[int, Mapping[str, Sequence[Run]]],
    metric: str = "test/auc",
    label: str | None = None,
    confidence: float = 0.95,
) -> Figure:
    """The metric against the training size (log x axis): one line per variant, with t-interval bars.

    Examples:
        >>> from reglight.ablation import Run
        >>> runs = {n: {"full": [Run("full", s, {"test/auc": 0.8 + n / 1000 + s / 100}, 1, 1.0) for s in range(3)]}
        ...         for n in (50, 100)}
        >>> len(learning_curve_figure(runs).axes[0].lines) >= 1
        True
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    sizes = list(results)
    names = list(dict.fromkeys(n for by in results.values() for n in by))
    # the variants side by side around each size (log axis: a factor), within ±7 % whatever their number
    spread = 0.14 if len(names) > 1 else 0.0
    offsets = [1 + spread * (i / max(len(names) - 1, 1) - 0.5) for i in range(len(names))]
    for i, name in enumerate(names):
        xs, means, lows, highs = [], [], [], []
        for size in sizes:
            runs = results[size].get(name)
            if not runs:
                continue
            mean, low, high = t_interval(
                [r.metrics.get(metric, math.nan) for r in runs], confidence
            )
            xs.append(size * offsets[i])
            means.append(mean)
            lows.append(mean - low if not math.isnan(low) else 0.0)
            highs.append(high - mean if not math.isnan(high) else 0.0)
        ax.errorbar(xs, means, yerr=[lows, highs], marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images (class-stratified subset)")
    ax.set_ylabel(label or metric)
    ax.set_title(
        f"{label or metric} vs training size (mean, {round(100 * confidence)} % t-interval)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def variants_of(section: Mapping[str, Any], recipe: str) -> tuple[Ablation, str | None]:
    """The learning curve's variants (an Ablation) and its reference variant, from its YAML section."""
    from reglight.ablation import Ablation

    data = dict(section)
    reference = data.pop("reference", None)
    return Ablation.from_dict(data, recipe), (str(reference) if reference is not None else None)
