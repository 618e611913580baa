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

from transforms.core.rulebook import MASK_RULES
from transforms.core.wrap import size_pmf

MAX_EPOCH_PANELS = 12
MAX_SOURCES = 25
OBSERVED, EXPECTED, BUDGET, SELECTED = "#4C72B0", "#222222", "#C44E52", "#DD8452"
STRATEGY_COLOURS = {"primary": "#8C8C8C", "format": "#4C72B0", "permute": "#8172B3", "maskout": "#55A868"}
_STYLE: dict[RcKeyType, Any] = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
}


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _styled(draw):
    """Runs a drawing function under the report's style, without touching matplotlib's global settings."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> bytes:
        with matplotlib.rc_context(_STYLE):
            return _png(draw(*args, **kwargs))

    return wrapper


@_styled
def group_sizes(per_epoch: Mapping[int, Counter], wrap_mode: str, wrap_max: int) -> Figure:
    """Share of samples per group size in each epoch, with the target distribution of --wrap-mode."""
    epochs = sorted(per_epoch)[:MAX_EPOCH_PANELS]
    columns = min(4, max(1, len(epochs)))
    rows = max(1, math.ceil(len(epochs) / columns))
    figure = _figure(max(8.0, 2.6 * columns + 0.6), 2.2 * rows + 1.2)
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


@_styled
def token_lengths(n_tokens: Mapping[int, int], budget: int, summary: Mapping[str, int]) -> Figure:
    """Histogram of `n_tokens` with the budget line."""
    figure = _figure(8, 3.4)
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


@_styled
def strategies(strategy: Mapping[str, int], rule: Mapping[str, int]) -> Figure:
    """Samples per strategy, and per rule, coloured by the strategy that draws the rule."""
    figure = _figure(9, 3.8)
    left, right = figure.subplots(1, 2, width_ratios=[1, 2])
    names = sorted(strategy)
    left.bar(names, [strategy[name] for name in names], color=[STRATEGY_COLOURS.get(name, OBSERVED) for name in names])
    left.set_title("samples per strategy")
    used = sorted(((name, n) for name, n in rule.items() if name != "none"), key=lambda item: item[1])
    colours = [STRATEGY_COLOURS["maskout" if name in MASK_RULES else "permute"] for name, _ in used]
    right.barh([name for name, _ in used], [n for _, n in used], color=colours)
    right.set_title("samples per rule, coloured by strategy")
    right.set_xlabel("samples")
    return figure


@_styled
def rejections(counts: Mapping[str, int]) -> Figure:
    """Rejected records per reason."""
    ranked = sorted(counts.items(), key=lambda item: item[1])
    figure = _figure(8, 0.4 * len(ranked) + 1.2)
    ax = figure.subplots()
    ax.barh([name for name, _ in ranked], [n for _, n in ranked], color=BUDGET)
    for position, (_, n) in enumerate(ranked):
        ax.annotate(f" {n:,}", (n, position), va="center", fontsize=8)
    ax.set_xlabel("rejected records")
    ax.set_title("Rejected records by reason")
    return figure


@_styled
def ifd_distribution(ifd: Sequence[float], selected_ifd: Sequence[float]) -> Figure:
    """IFD of every scored record and of the selected ones; IFD < 1 are the candidates."""
    figure = _figure(8, 3.4)
    ax = figure.subplots()
    ordered = sorted(ifd)
    high = max(1.2, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1.05) if ordered else 1.2
    clipped = sum(value > high for value in ordered)
    ax.hist(ifd, bins=50, range=(0, high), color=OBSERVED, label=f"scored ({len(ifd):,})")
    ax.hist(selected_ifd, bins=50, range=(0, high), color=SELECTED, label=f"selected ({len(selected_ifd):,})")
    ax.axvline(1.0, color=BUDGET, linestyle="--", linewidth=1.5, label="IFD = 1 (candidates are below)")
    ax.set_xlabel("IFD" + (f" ({clipped:,} records above {high:.2f} not shown)" if clipped else ""))
    ax.set_ylabel("records")
    ax.set_title("IFD distribution")
    ax.legend(fontsize=8)
    return figure


@_styled
def pick_scores(scores: Sequence[float], label: str) -> Figure:
    """The score of each pick, in pick order."""
    figure = _figure(8, 3.2)
    ax = figure.subplots()
    ax.plot(range(1, len(scores) + 1), scores, color=SELECTED, linewidth=1)
    ax.set_xlabel("pick")
    ax.set_ylabel(label)
    ax.set_title(f"{label} of the picks, in pick order")
    return figure


@_styled
def selected_per_source(per_source: Mapping[str, Sequence[int]]) -> Figure:
    """Selected fraction per source file (the largest sources when there are many)."""
    largest = sorted(per_source.items(), key=lambda item: (-item[1][1], item[0]))[:MAX_SOURCES]
    largest.sort(key=lambda item: item[1][0] / item[1][1])
    figure = _figure(8, 0.28 * len(largest) + 1.4)
    ax = figure.subplots()
    ax.barh([name for name, _ in largest], [chosen / total for _, (chosen, total) in largest], color=SELECTED)
    for position, (_, (chosen, total)) in enumerate(largest):
        ax.annotate(f" {chosen:,}/{total:,}", (chosen / total, position), va="center", fontsize=7)
    shown = f" ({MAX_SOURCES} largest of {len(per_source)} sources)" if len(per_source) > MAX_SOURCES else ""
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("selected fraction")
    ax.set_title(f"Selected fraction per source file{shown}")
    return figure
