"""The numbers of a finished run, as pure functions: what the report plots and the terminal table prints."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from transforms.core.decoding import input_labels
from transforms.core.records import prompt_of
from transforms.core.strategies import KIND_CHOICES, SAMPLE_KINDS
from transforms.core.wrap import size_pmf

EXAMPLES_PER_REASON = 3
UNKNOWN_SOURCE = "unknown source"
_DEFAULT_ID = re.compile(r"^(.+):(\d+)$")  # "<file name>:<index>", see transforms/core/records.py
_WIDTH = 100


@dataclass
class Rejections:
    counts: Counter = field(default_factory=Counter)  # reason -> rejected records
    examples: dict[str, list[dict]] = field(default_factory=dict)  # reason -> the first few, in file order
    sources: Counter = field(default_factory=Counter)  # (source, reason) -> rejected records

    def add(self, row: dict) -> None:
        self.counts[row["reason"]] += 1
        self.sources[row["source"], row["reason"]] += 1
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
    tokens_by_strategy: dict[str, Counter] = field(default_factory=dict)  # strategy -> n_tokens -> samples
    slots_per_file: Counter = field(default_factory=Counter)  # input file -> records placed, all epochs
    samples_per_file: Counter = field(default_factory=Counter)  # input file -> samples holding one of its records
    samples: int = 0


def scan_samples(rows: Iterable[dict], file_of: Callable[[str], str] | None = None) -> SampleScan:
    """`file_of` names the input file of a record id; by default the file its default id names."""
    locate = file_of or (lambda record_id: source_of(record_id, None))
    scan = SampleScan()
    for row in rows:
        scan.group_sizes.setdefault(row["epoch"], Counter())[row["count"]] += 1
        scan.n_tokens[row["n_tokens"]] += 1
        scan.tokens_by_strategy.setdefault(row["strategy"], Counter())[row["n_tokens"]] += 1
        files = Counter(map(locate, row["sources"]))
        scan.slots_per_file.update(files)
        scan.samples_per_file.update(files.keys())
        scan.samples += 1
    return scan


@dataclass(frozen=True)
class FileMix:
    """One input file's part in a mosaic run."""

    file: str
    records: int  # read: packed (each epoch) plus rejected
    rejected: int
    over_budget: int  # of the rejected: alone over --max-length
    samples: int  # holding at least one of its records, all epochs
    slot_share: float  # of all records placed in samples


def input_mix(
    files: Sequence[str], scan: SampleScan, rejections: Rejections, file_of: Callable[[str], str], epochs: int
) -> list[FileMix]:
    """Per input file (and per other source the ids name), from the samples and rejections: every record is
    in one sample per epoch or rejected, so a file's records are what its samples place per epoch plus its
    rejections."""
    rejected: Counter = Counter()
    over_budget: Counter = Counter()
    for (source, reason), n in rejections.sources.items():
        rejected[file_of(source)] += n
        over_budget[file_of(source)] += n if reason == "over_budget" else 0
    slots = sum(scan.slots_per_file.values())
    return [
        FileMix(
            name,
            scan.slots_per_file[name] // max(1, epochs) + rejected[name],
            rejected[name],
            over_budget[name],
            scan.samples_per_file[name],
            scan.slots_per_file[name] / slots if slots else 0.0,
        )
        for name in sorted({*files, *scan.slots_per_file, *rejected})
    ]


@dataclass(frozen=True)
class StrategyShare:
    kind: str  # one of SAMPLE_KINDS
    drawn: float  # as --strategy draws it
    expected: float  # once groups of one record, which no rule applies to, become format samples
    observed: float


def strategy_shares(strategy: str, group_sizes: Mapping[int, int], observed: Mapping[str, int]) -> list[StrategyShare]:
    """Expected and observed shares of each kind of sample. --strategy draws its kinds with equal
    odds; a group of one record drawn for permute or maskout is written as a format sample.
    What is left between `expected` and `observed` are groups no rule applies to."""
    choices = KIND_CHOICES[strategy]
    drawn = {kind: choices.count(kind) / len(choices) for kind in SAMPLE_KINDS}
    single_record = {"primary": drawn["primary"], "format": 1.0 - drawn["primary"]}
    samples = sum(group_sizes.values())
    singles = group_sizes.get(1, 0)
    total = sum(observed.values())
    return [
        StrategyShare(
            kind,
            drawn[kind],
            (singles * single_record.get(kind, 0.0) + (samples - singles) * drawn[kind]) / samples if samples else 0.0,
            observed.get(kind, 0) / total if total else 0.0,
        )
        for kind in SAMPLE_KINDS
        if drawn[kind] or observed.get(kind)
    ]


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
SCORE_ID, SCORE_IFD, SCORE_ROUND, SCORE_RESPONSE_TOKENS = "id", "ifd", "round", "response_tokens"
ORDER_ID, ORDER_PICK, ORDER_PICK_SCORE = "id", "pick", "score"
EXAMPLE_PICKS = 5  # the first and the last this many picks are shown
PROMPT_CHARS = 120


@dataclass(frozen=True)
class PickExample:
    pick: int  # 1-based
    id: str
    ifd: float
    score: float | None
    response_tokens: int | None
    prompt: str  # its first PROMPT_CHARS + 1 characters


@dataclass
class SelectScan:
    ifd: list[float] = field(default_factory=list)  # every scored record
    # (response_tokens, IFD) of every scored record and of the selected ones, where the scores say
    lengths: list[tuple[int, float]] = field(default_factory=list)
    selected_lengths: list[tuple[int, float]] = field(default_factory=list)
    selected_ifd: list[float] = field(default_factory=list)  # the selected records, in pick order
    example_picks: list[PickExample] = field(default_factory=list)  # the first and last picks
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
    scored = {}
    for row in scores:
        scored[row[SCORE_ID]] = row
        scan.ifd.append(row[SCORE_IFD])
        if row.get(SCORE_RESPONSE_TOKENS) is not None:
            scan.lengths.append((row[SCORE_RESPONSE_TOKENS], row[SCORE_IFD]))
        scan.rounds[row[SCORE_ROUND]] += 1
    prompts = {row["id"]: _prompt_start(row) for row in selected}  # the picks' records, in pick order
    chosen = set(prompts)
    scan.selected = len(prompts)
    for record_id in prompts:
        if record_id in scored:
            scan.selected_ifd.append(scored[record_id][SCORE_IFD])
            if scored[record_id].get(SCORE_RESPONSE_TOKENS) is not None:
                scan.selected_lengths.append((scored[record_id][SCORE_RESPONSE_TOKENS], scored[record_id][SCORE_IFD]))
    listed = False
    for row in order:
        listed = True
        record_id = row[ORDER_ID]
        tally = scan.per_source.setdefault(source_of(record_id, labels), [0, 0])
        tally[0] += record_id in chosen
        tally[1] += 1
        if record_id in chosen and row.get(ORDER_PICK_SCORE) is not None:
            scan.pick_scores.append(row[ORDER_PICK_SCORE])
        if row.get(ORDER_PICK) is not None and record_id in chosen:
            _keep_example(scan.example_picks, row, prompts[record_id])
    if not listed:  # no order file: every scored record counts
        for record_id in scored:
            tally = scan.per_source.setdefault(source_of(record_id, labels), [0, 0])
            tally[0] += record_id in chosen
            tally[1] += 1
    scan.records = sum(total for _, total in scan.per_source.values())
    return scan


def _prompt_start(row: dict) -> str:
    prompt = prompt_of(str(row.get("instruction", "")), str(row.get("input", "")))
    return prompt[: PROMPT_CHARS + 1]  # one more: the page marks a cut


def _keep_example(examples: list[PickExample], row: dict, prompt: str) -> None:
    """Keeps the first EXAMPLE_PICKS picks and, from those after, the last EXAMPLE_PICKS seen."""
    example = PickExample(
        row[ORDER_PICK] + 1,
        row[ORDER_ID],
        row[SCORE_IFD],
        row.get(ORDER_PICK_SCORE),
        row.get(SCORE_RESPONSE_TOKENS),
        prompt,
    )
    if len(examples) == 2 * EXAMPLE_PICKS:
        del examples[EXAMPLE_PICKS]
    examples.append(example)


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
