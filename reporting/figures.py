"""The report's figures, drawn with matplotlib's Agg backend; each function returns PNG bytes."""

from __future__ import annotations

import functools
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from matplotlib.typing import RcKeyType

from reporting.run_stats import FileMix, StrategyShare
from transforms.core.rulebook import MASK_RULES
from transforms.core.strategies import SAMPLE_KINDS
from transforms.core.wrap import size_pmf

MAX_EPOCH_PANELS = 12
MAX_SOURCES = 25
BINS = 60
OBSERVED, EXPECTED, BUDGET, SELECTED = "#4C72B0", "#222222", "#C44E52", "#DD8452"
STRATEGY_COLOURS = {"primary": "#8C8C8C", "format": "#4C72B0", "permute": "#8172B3", "maskout": "#55A868"}
_STYLE: dict[RcKeyType, Any] = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
}


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def styled(draw):
    """Runs a drawing function under the report's style, without touching matplotlib's global settings."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> bytes:
        with matplotlib.rc_context(_STYLE):
            return _png(draw(*args, **kwargs))

    return wrapper


@styled
def group_sizes(per_epoch: Mapping[int, Counter], wrap_mode: str, wrap_max: int) -> Figure:
    """Share of samples per group size in each epoch, with the target distribution of --wrap-mode."""
    epochs = sorted(per_epoch)[:MAX_EPOCH_PANELS]
    columns = min(4, max(1, len(epochs)))
    rows = max(1, math.ceil(len(epochs) / columns))
    figure = new_figure(max(8.0, 2.6 * columns + 0.6), 2.2 * rows + 1.2)
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    pmf = size_pmf(wrap_mode, wrap_max)
    largest = max([wrap_max, *(size for sizes in per_epoch.values() for size in sizes)])
    for ax, epoch in zip(axes, epochs):
        sizes = per_epoch[epoch]
        total = sum(sizes.values())
        mean = sum(size * n for size, n in sizes.items()) / total
        ax.bar(
            list(sizes), [n / total for n in sizes.values()], color=OBSERVED, width=0.8, label="samples of this size"
        )
        if pmf:
            ax.plot(list(pmf), list(pmf.values()), "o", color=EXPECTED, markersize=4, label="target distribution")
        ax.set_title(f"epoch {epoch}\n{total:,} samples, mean size {mean:.2f}", fontsize=9)
        ax.set_xticks(range(1, largest + 1, max(1, largest // 10)))
    for ax in axes[len(epochs) :]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel("share of samples")
    for ax in axes[-columns:]:
        ax.set_xlabel("records per sample")
    target = (
        f"dots: target sizes drawn by --wrap-mode {wrap_mode}, --wrap-max {wrap_max}\n"
        "(before the token budget and the ends of packing keys cut groups short)"
        if pmf
        else f"--wrap-mode {wrap_mode}: no target size, groups take records until the budget is full"
    )
    shown = f" (first {MAX_EPOCH_PANELS} of {len(per_epoch)} epochs)" if len(per_epoch) > MAX_EPOCH_PANELS else ""
    figure.suptitle(f"Group sizes per epoch{shown}\n{target}", fontsize=10)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    return figure


@styled
def token_lengths(n_tokens: Mapping[int, int], budget: int, summary: Mapping[str, int]) -> Figure:
    """Histogram of `n_tokens` with the budget line."""
    figure = new_figure(8, 3.4)
    ax = figure.subplots()
    ax.hist(list(n_tokens), bins=40, range=(0, budget), weights=list(n_tokens.values()), color=OBSERVED)
    ax.axvline(budget, color=BUDGET, linestyle="--", linewidth=1.5, label=f"budget {budget:,}")
    if summary:
        mean = summary["total"] / sum(n_tokens.values())
        ax.axvline(mean, color=EXPECTED, linewidth=1, label=f"mean {mean:,.0f} ({mean / budget:.0%} of budget)")
        ax.axvline(summary["p50"], color=EXPECTED, linestyle=":", linewidth=1, label=f"median {summary['p50']:,}")
    ax.set_xlabel("tokens per sample (n_tokens)")
    ax.set_ylabel("samples")
    ax.set_title("How full the samples are")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return figure


@styled
def strategies(strategy: Mapping[str, int], rule: Mapping[str, int]) -> Figure:
    """Samples per strategy, and per rule, coloured by the strategy that draws the rule."""
    figure = new_figure(9, 3.8)
    left, right = figure.subplots(1, 2, width_ratios=[1.3, 2])
    names = [name for name in SAMPLE_KINDS if name in strategy]
    left.bar(names, [strategy[name] for name in names], color=[STRATEGY_COLOURS.get(name, OBSERVED) for name in names])
    left.set_title("samples per strategy")
    used = sorted(((name, n) for name, n in rule.items() if name != "none"), key=lambda item: item[1])
    colours = [STRATEGY_COLOURS["maskout" if name in MASK_RULES else "permute"] for name, _ in used]
    right.barh([name for name, _ in used], [n for _, n in used], color=colours)
    right.set_title("samples per rule, coloured by strategy")
    right.set_xlabel("samples")
    return figure


@styled
def rejections(counts: Mapping[str, int]) -> Figure:
    """Rejected records per reason."""
    ranked = sorted(counts.items(), key=lambda item: item[1])
    figure = new_figure(8, 0.4 * len(ranked) + 1.2)
    ax = figure.subplots()
    ax.barh([name for name, _ in ranked], [n for _, n in ranked], color=BUDGET)
    for position, (_, n) in enumerate(ranked):
        ax.annotate(f" {n:,}", (n, position), va="center", fontsize=8)
    ax.set_xlabel("rejected records")
    ax.set_title("Rejected records by reason")
    return figure


@styled
def input_mix(mix: Sequence[FileMix]) -> Figure:
    """Records of each input file, packed or rejected, and the samples holding them."""
    largest = sorted(mix, key=lambda row: (-row.records, -row.rejected, row.file))[:MAX_SOURCES]
    largest.reverse()
    figure = new_figure(8, 0.3 * len(largest) + 1.5)
    ax = figure.subplots()
    names = [row.file for row in largest]
    packed = [row.records - row.rejected for row in largest]
    ax.barh(names, packed, color=OBSERVED, label="packed (in one sample per epoch)")
    ax.barh(names, [row.rejected for row in largest], left=packed, color=BUDGET, label="rejected")
    for position, row in enumerate(largest):
        ax.annotate(
            f" {row.records:,} records · {row.samples:,} samples", (row.records, position), va="center", fontsize=7
        )
    ax.set_xlim(0, max((row.records for row in largest), default=1) * 1.45)
    shown = f" ({MAX_SOURCES} largest of {len(mix)} files)" if len(mix) > MAX_SOURCES else ""
    ax.set_xlabel("input records")
    ax.set_title(f"Input records per file{shown}")
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    return figure


@styled
def record_lengths(lengths: Sequence[int], budget: int) -> Figure:
    """Tokens of each input record alone, against the budget; those over it are rejected."""
    figure = new_figure(8, 3.4)
    ax = figure.subplots()
    high = max([budget, *lengths]) * 1.03
    over = [n for n in lengths if n > budget]
    per_budget = max(1, round(BINS * budget / high))  # the budget falls on a bin edge
    bins = [budget * i / per_budget for i in range(math.ceil(high * per_budget / budget) + 1)]
    ax.hist(
        [n for n in lengths if n <= budget],
        bins=bins,
        color=OBSERVED,
        label=f"within the budget ({len(lengths) - len(over):,})",
    )
    if over:
        ax.hist(over, bins=bins, color=BUDGET, label=f"over the budget: rejected ({len(over):,})")
        ax.set_yscale("log")  # a few rejected records stay visible next to the many kept
    ax.axvline(budget, color=BUDGET, linestyle="--", linewidth=1.5, label=f"budget {budget:,}")
    median = sorted(lengths)[len(lengths) // 2] if lengths else 0
    ax.axvline(median, color=EXPECTED, linestyle=":", linewidth=1, label=f"median {median:,}")
    ax.set_xlim(0, high)
    ax.set_xlabel("tokens of the record alone (as the run measured it against --max-length)")
    ax.set_ylabel("records" + (" (log scale)" if over else ""))
    ax.set_title("Input record lengths")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return figure


@styled
def tokens_per_strategy(tokens_by_strategy: Mapping[str, Counter], budget: int) -> Figure:
    """n_tokens of the samples of each strategy, and each strategy's share of samples and of tokens."""
    names = [name for name in SAMPLE_KINDS if name in tokens_by_strategy]
    figure = new_figure(9, 3.6)
    left, right = figure.subplots(1, 2, width_ratios=[3, 2])
    values = [list(tokens_by_strategy[name].elements()) for name in names]
    boxes = left.boxplot(
        values,
        orientation="horizontal",
        whis=(5, 95),
        showfliers=False,
        patch_artist=True,
        medianprops={"color": EXPECTED},
    )
    for patch, name in zip(boxes["boxes"], names):
        patch.set_facecolor(STRATEGY_COLOURS.get(name, OBSERVED))
    left.set_yticks(range(1, len(names) + 1), names)
    left.axvline(budget, color=BUDGET, linestyle="--", linewidth=1.5, label=f"budget {budget:,}")
    left.set_xlim(0, budget * 1.05)
    left.set_xlabel("tokens per sample (whiskers: 5th and 95th percentiles)")
    left.set_title("tokens per sample")
    samples = [sum(counts.values()) for counts in map(tokens_by_strategy.get, names) if counts]
    tokens = [sum(n * count for n, count in tokens_by_strategy[name].items()) for name in names]
    positions = range(len(names))
    right.barh(
        [p + 0.2 for p in positions],
        [n / sum(samples) for n in samples],
        height=0.4,
        color="#BBBBBB",
        label="share of samples",
    )
    right.barh(
        [p - 0.2 for p in positions],
        [n / sum(tokens) for n in tokens],
        height=0.4,
        color=OBSERVED,
        label="share of tokens",
    )
    right.set_yticks(positions, names)
    right.xaxis.set_major_formatter(PercentFormatter(1.0))
    right.set_title("share of samples and of tokens")
    figure.legend(
        *[a + b for a, b in zip(left.get_legend_handles_labels(), right.get_legend_handles_labels())],
        loc="outside lower center",
        ncols=3,
        fontsize=8,
    )
    return figure


@styled
def strategy_shares(shares: Sequence[StrategyShare], strategy: str) -> Figure:
    """Each kind's share of samples: as drawn, as expected once groups of one are counted, as written."""
    figure = new_figure(8, 3.4)
    ax = figure.subplots()
    positions = range(len(shares))
    ax.bar(
        [p - 0.27 for p in positions],
        [s.drawn for s in shares],
        width=0.27,
        color="#DDDDDD",
        label=f"drawn by --strategy {strategy}",
    )
    ax.bar(
        positions,
        [s.expected for s in shares],
        width=0.27,
        color="#999999",
        label="expected (groups of one record are format)",
    )
    ax.bar(
        [p + 0.27 for p in positions],
        [s.observed for s in shares],
        width=0.27,
        color=OBSERVED,
        label="observed",
    )
    for position, share in zip(positions, shares):
        ax.annotate(f"{share.observed:.1%}", (position + 0.27, share.observed), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(positions, [s.kind for s in shares])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("share of samples")
    ax.set_title("Strategy shares: expected and observed")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return figure
