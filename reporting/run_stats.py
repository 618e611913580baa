"""The numbers of a finished run, as pure functions: what the report plots and the terminal table prints."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from transforms.core.decoding import input_labels
from transforms.core.wrap import size_pmf

EXAMPLES_PER_REASON = 3
UNKNOWN_SOURCE = "unknown source"
_DEFAULT_ID = re.compile(r"^(.+):(\d+)$")  # "<file name>:<index>", see transforms/core/records.py
_WIDTH = 100


@dataclass
class Rejections:
    counts: Counter = field(default_factory=Counter)  # reason -> rejected records
    examples: dict[str, list[dict]] = field(default_factory=dict)  # reason -> the first few, in file order

    def add(self, row: dict) -> None:
        self.counts[row["reason"]] += 1
        examples = self.examples.setdefault(row["reason"], [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(row)


def scan_rejected(rows: Iterable[dict]) -> Rejections:
    rejections = Rejections()
    for row in rows:
        rejections.add(row)
    return rejections


@dataclass
class SampleScan:
    """What the figures of a mosaic run need, gathered in one pass over its samples."""

    group_sizes: dict[int, Counter] = field(default_factory=dict)  # epoch -> size -> samples
    n_tokens: Counter = field(default_factory=Counter)  # n_tokens -> samples
    samples: int = 0


def scan_samples(rows: Iterable[dict]) -> SampleScan:
    scan = SampleScan()
    for row in rows:
        scan.group_sizes.setdefault(row["epoch"], Counter())[row["count"]] += 1
        scan.n_tokens[row["n_tokens"]] += 1
        scan.samples += 1
    return scan


def expected_mean_size(mode: str, wrap_max: int) -> float | None:
    pmf = size_pmf(mode, wrap_max)
    return sum(size * p for size, p in pmf.items()) if pmf else None


def _rows_to_text(rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Label, then the row's items joined by " · ", wrapped between items."""
    width = max(len(label) for label, _ in rows) + 2
    lines = []
    for label, items in rows:
        line = label.ljust(width)
        for position, item in enumerate(items):
            piece = item if position == 0 else " · " + item
            if position and len(line) + len(piece) > _WIDTH:
                lines.append(line)
                line, piece = " " * width, item
            line += piece
        lines.append(line)
    return "\n".join(lines)


def _counts(counts: dict, total: int) -> list[str]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [f"{name} {n:,} ({n / total:.0%})" for name, n in ranked] if total else ["none"]


def mosaic_table(manifest: dict) -> str:
    """The compact summary of a mosaic run, from its manifest."""
    counts, options = manifest["counts"], manifest["options"]
    samples = counts["samples"]
    per_epoch = counts["samples_per_epoch"]
    kept = sorted(set(counts["records_per_epoch"].values())) or [0]
    sizes = {int(size): n for size, n in counts["group_size"].items()}
    mean_size = sum(size * n for size, n in sizes.items()) / samples if samples else 0.0
    expected = expected_mean_size(options["wrap_mode"], options["wrap_max"])
    target = (
        f"target mean {expected:.2f}: {options['wrap_mode']}, wrap max {options['wrap_max']}"
        if expected
        else "no target size: groups fill the budget"
    )
    rules = {name: n for name, n in counts["rule"].items() if name != "none"}
    rows = [
        ("run", [manifest["tool"], f"{options['epochs']} epochs", f"seed {options['seed']}", options["output"]]),
        (
            "records",
            [
                f"{counts['records_read']:,} read",
                f"{counts['records_rejected']:,} rejected",
                f"{', '.join(f'{n:,}' for n in kept)} packed per epoch",
            ],
        ),
        (
            "samples",
            [f"{samples:,}", *(["per epoch " + " / ".join(f"{n:,}" for n in per_epoch.values())] if per_epoch else [])],
        ),
        ("group size", [f"mean {mean_size:.2f} ({target})", *(f"{size}: {n:,}" for size, n in sorted(sizes.items()))]),
        ("tokens", _tokens(counts, options["max_length"])),
        ("strategy", _counts(counts["strategy"], samples)),
        ("rules", [f"{len(rules)} used", *_counts(rules, samples)] if rules else ["none"]),
        ("rejected", _counts(counts["rejected"], counts["records_rejected"])),
    ]
    return _rows_to_text(rows)


def _tokens(counts: dict, budget: int) -> list[str]:
    if "tokens" not in counts:
        return [f"not in this manifest (written before token counts were recorded) · budget {budget:,}"]
    tokens = counts["tokens"]
    if not tokens:
        return [f"no samples · budget {budget:,}"]
    mean = tokens["total"] / counts["samples"]
    return [
        f"mean {mean:,.0f} ({mean / budget:.0%} of the {budget:,} budget)",
        f"median {tokens['p50']:,}",
        f"p90 {tokens['p90']:,}",
        f"max {tokens['max']:,}",
        f"total {tokens['total']:,}",
    ]


# ---- select runs -------------------------------------------------------------------------------
# The select run's files as issue 3 describes them; the names of these fields are assumptions
# gathered here so that they can be reconciled in one place.
SCORE_ID, SCORE_IFD, SCORE_ROUND = "id", "ifd", "round"
ORDER_ID, ORDER_PICK_SCORE = "id", "score"


@dataclass
class SelectScan:
    ifd: list[float] = field(default_factory=list)  # every scored record
    selected_ifd: list[float] = field(default_factory=list)  # the selected records, in pick order
    pick_scores: list[float] = field(default_factory=list)  # diversity-adjusted score at each pick
    rounds: Counter = field(default_factory=Counter)
    per_source: dict[str, list[int]] = field(default_factory=dict)  # source -> [selected, records]
    selected: int = 0
    records: int = 0


def source_of(record_id: str, labels: set[str] | None) -> str:
    """The input file a record came from, when its id is the default `<file name>:<index>`."""
    match = _DEFAULT_ID.match(record_id)
    if match and (labels is None or match.group(1) in labels):
        return match.group(1)
    return UNKNOWN_SOURCE


def scan_select(
    scores: Iterable[dict], selected: Iterable[dict], order: Iterable[dict], inputs: Sequence[str] | None
) -> SelectScan:
    """`order` lists every record; its first rows are the picks and may carry their pick score."""
    labels = set(input_labels(inputs).values()) if inputs else None
    scan = SelectScan()
    ifd_by_id = {}
    for row in scores:
        ifd_by_id[row[SCORE_ID]] = row[SCORE_IFD]
        scan.ifd.append(row[SCORE_IFD])
        scan.rounds[row[SCORE_ROUND]] += 1
    selected_ids = [row["id"] for row in selected]
    chosen = set(selected_ids)
    scan.selected = len(selected_ids)
    scan.selected_ifd = [ifd_by_id[i] for i in selected_ids if i in ifd_by_id]
    listed = False
    for row in order:
        listed = True
        record_id = row[ORDER_ID]
        tally = scan.per_source.setdefault(source_of(record_id, labels), [0, 0])
        tally[0] += record_id in chosen
        tally[1] += 1
        if record_id in chosen and row.get(ORDER_PICK_SCORE) is not None:
            scan.pick_scores.append(row[ORDER_PICK_SCORE])
    if not listed:  # no order file: every scored record counts
        for record_id in ifd_by_id:
            tally = scan.per_source.setdefault(source_of(record_id, labels), [0, 0])
            tally[0] += record_id in chosen
            tally[1] += 1
    scan.records = sum(total for _, total in scan.per_source.values())
    return scan


def select_table(manifest: dict, scan: SelectScan, rejections: Rejections) -> str:
    ifd = sorted(scan.ifd)
    candidates = sum(value < 1 for value in ifd)
    median = f"median IFD {ifd[len(ifd) // 2]:.3f}" if ifd else "no scores"
    sources = sorted(scan.per_source.items(), key=lambda item: (-item[1][0] / item[1][1], item[0]))
    rows = [
        ("run", [manifest["tool"], str(manifest.get("options", {}).get("output", ""))]),
        ("records", [f"{scan.records:,} in the order", f"{sum(rejections.counts.values()):,} rejected"]),
        (
            "scores",
            [
                f"{len(ifd):,} scored",
                median,
                f"{candidates:,} candidates (IFD < 1)",
                *(f"round {r}: {n:,}" for r, n in sorted(scan.rounds.items())),
            ],
        ),
        (
            "selected",
            [
                f"{scan.selected:,} ({scan.selected / scan.records:.1%} of the records)"
                if scan.records
                else f"{scan.selected:,}"
            ],
        ),
        (
            "per source",
            [f"{name} {chosen:,}/{total:,}" for name, (chosen, total) in sources[:8]]
            + ([f"{len(sources) - 8} more"] if len(sources) > 8 else []),
        ),
        ("rejected", _counts(rejections.counts, sum(rejections.counts.values()))),
    ]
    return _rows_to_text(rows)
