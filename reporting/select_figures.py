"""The figures of a `mosaic-it select` report, drawn as the other figures are (see reporting/figures.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from reporting.figures import BUDGET, MAX_SOURCES, OBSERVED, SELECTED, new_figure, styled

HEXBIN_FROM = 3000  # scored records; fewer are drawn as dots


def fitted_range(values: Sequence[float]) -> tuple[float, float]:
    """An axis range from the values' own 0.5% and 99.5% quantiles, padded by 5% of their span."""
    ordered = sorted(values)
    if not ordered:
        return 0.0, 1.0
    low = ordered[int(0.005 * (len(ordered) - 1))]
    high = ordered[math.ceil(0.995 * (len(ordered) - 1))]
    pad = 0.05 * (high - low) or 0.01 * max(1.0, abs(high))
    return low - pad, high + pad


def _outside(values: Sequence[float], low: float, high: float) -> str:
    below, above = sum(value < low for value in values), sum(value > high for value in values)
    parts = [f"{below:,} below" if below else "", f"{above:,} above" if above else ""]
    shown = " and ".join(part for part in parts if part)
    return f" ({shown} the axis, not shown)" if shown else ""


def _ifd_one(ax, low: float, high: float, vertical: bool) -> None:
    if low <= 1.0 <= high:
        line = ax.axvline if vertical else ax.axhline
        line(1.0, color=BUDGET, linestyle="--", linewidth=1.5, label="IFD = 1 (candidates are below)")


@styled
def ifd_distribution(ifd: Sequence[float], selected_ifd: Sequence[float]) -> Figure:
    """IFD of every scored record and of the selected ones, on an axis fitted to the scores."""
    figure = new_figure(8, 3.4)
    ax = figure.subplots()
    low, high = fitted_range(ifd)
    ax.hist(ifd, bins=50, range=(low, high), color=OBSERVED, label=f"scored ({len(ifd):,})")
    ax.hist(selected_ifd, bins=50, range=(low, high), color=SELECTED, label=f"selected ({len(selected_ifd):,})")
    _ifd_one(ax, low, high, vertical=True)
    ax.set_xlim(low, high)
    ax.set_xlabel("IFD" + _outside(ifd, low, high))
    ax.set_ylabel("records")
    ax.set_title("IFD distribution (axis from the 0.5% and 99.5% quantiles of the scores)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return figure


@styled
def ifd_by_length(scored: Sequence[tuple[int, float]], selected: Sequence[tuple[int, float]]) -> Figure:
    """IFD against the response's length in tokens, (response_tokens, IFD) of every scored record and the selected ones."""
    response_tokens, ifd = [n for n, _ in scored], [value for _, value in scored]
    figure = new_figure(8, 4.2)
    ax = figure.subplots()
    low, high = fitted_range(ifd)
    shortest, longest = max(1, min(response_tokens, default=1)), max(response_tokens, default=1)
    logarithmic = longest / shortest > 20
    if len(ifd) > HEXBIN_FROM:
        cells = ax.hexbin(
            response_tokens,
            ifd,
            gridsize=60,
            bins="log",
            mincnt=1,
            cmap="Blues",
            extent=(*((math.log10(shortest), math.log10(longest)) if logarithmic else (0, longest)), low, high),
            xscale="log" if logarithmic else "linear",
        )
        figure.colorbar(cells, ax=ax, label="scored records per cell")
    else:
        ax.scatter(response_tokens, ifd, s=6, color=OBSERVED, alpha=0.5, linewidths=0, label=f"scored ({len(ifd):,})")
        if logarithmic:
            ax.set_xscale("log")
    ax.scatter(
        [n for n, _ in selected],
        [value for _, value in selected],
        s=14,
        color=SELECTED,
        edgecolors="white",
        linewidths=0.4,
        label=f"selected ({len(selected):,})",
    )
    _ifd_one(ax, low, high, vertical=False)
    ax.set_ylim(low, high)
    ax.set_xlabel("response_tokens: tokens of the response scored" + (" (log scale)" if logarithmic else ""))
    ax.set_ylabel("IFD" + _outside(ifd, low, high).replace(" (", "\n("))
    ax.set_title("IFD against response length")
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
    return figure


@styled
def selected_per_source(per_source: Mapping[str, Sequence[int]]) -> Figure:
    """Selected fraction per source file (the largest sources when there are many)."""
    largest = sorted(per_source.items(), key=lambda item: (-item[1][1], item[0]))[:MAX_SOURCES]
    largest.sort(key=lambda item: item[1][0] / item[1][1])
    figure = new_figure(8, 0.28 * len(largest) + 1.4)
    ax = figure.subplots()
    ax.barh([name for name, _ in largest], [chosen / total for _, (chosen, total) in largest], color=SELECTED)
    for position, (_, (chosen, total)) in enumerate(largest):
        ax.annotate(f" {chosen:,}/{total:,}", (chosen / total, position), va="center", fontsize=7)
    shown = f" ({MAX_SOURCES} largest of {len(per_source)} sources)" if len(per_source) > MAX_SOURCES else ""
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("selected fraction")
    ax.set_title(f"Selected fraction per source file{shown}")
    return figure


@styled
def pick_scores(scores: Sequence[float], label: str) -> Figure:
    """The score of each pick, in pick order."""
    figure = new_figure(8, 3.2)
    ax = figure.subplots()
    ax.plot(range(1, len(scores) + 1), scores, color=SELECTED, linewidth=1)
    ax.set_xlabel("pick")
    ax.set_ylabel(label)
    ax.set_title(f"{label} of the picks, in pick order")
    return figure
