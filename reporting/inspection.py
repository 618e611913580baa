"""`mosaic-it inspect DIR`: samples of a mosaic run, printed readably.

Each sample shows its meta-instruction, the records it joins (in instruction order) and
its response blocks in the order written, marking the responses that were moved and the
instructions whose response was masked. The records' own texts come from the run's inputs
(only the files the ids name are read), which is what lets a response block be found.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.errors import CommandParser, UsageError
from reporting import outputs
from transforms.core.anatomy import meta_instruction, response_blocks
from transforms.core.decoding import input_labels
from transforms.core.fields import FieldMap
from transforms.core.records import Record
from transforms.core.rulebook import RULES
from transforms.core.rules import Rules, load_rules, parse_rules
from transforms.core.strategies import PRIMARY_SEPARATOR, SAMPLE_KINDS
from transforms.manifest import MOSAIC_TOOL
from transforms.read import read_file

BLOCK_LINES = 8
LINE_CHARS = 160
WIDTH = 100
INDENT = "    "


@dataclass(frozen=True)
class SampleFilter:
    strategy: str | None = None
    rule: str | None = None
    record_id: str | None = None  # a sample id, or the id of a record the sample joins

    def __call__(self, sample: dict) -> bool:
        return (
            (self.strategy is None or sample["strategy"] == self.strategy)
            and (self.rule is None or sample["rule"] == self.rule)
            and (self.record_id is None or self.record_id == sample["id"] or self.record_id in sample["sources"])
        )


def source_records(inputs: Sequence[str], ids: Iterable[str], fields: FieldMap) -> dict[str, Record]:
    """The records with these ids, read from the inputs; an id `<file name>:<index>` reads only that file."""
    wanted = set(ids)
    labels = input_labels(inputs)
    by_label = {label: path for path, label in labels.items()}
    named = [by_label.get(record_id.rpartition(":")[0]) for record_id in wanted]
    files = sorted({path for path in named if path is not None}) if None not in named else sorted(inputs)
    found: dict[str, Record] = {}
    for path in files:
        try:
            for item in read_file(path, labels[path], fields):
                if isinstance(item, Record) and item.id in wanted and item.id not in found:
                    found[item.id] = item
                    if len(found) == len(wanted):
                        return found
        except OSError:  # the input was moved since the run; its samples are shown unsplit
            continue
    return found


def _shorten(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def _clip(text: str, full: bool) -> list[str]:
    lines = text.split("\n")
    if full:
        return lines
    shown = [_shorten(line, LINE_CHARS) for line in lines[:BLOCK_LINES]]
    if len(lines) > BLOCK_LINES:
        shown.append(f"… ({len(lines) - BLOCK_LINES} more lines)")
    return shown


def _indented(lines: Iterable[str], prefix: str = INDENT) -> list[str]:
    return [prefix + line for line in lines]


def render(sample: dict, records: Mapping[str, Record], rules: Rules, budget: int, full: bool = False) -> str:
    """One sample as text: header, meta-instruction, its records, then its response blocks."""
    sources, masked, order = sample["sources"], set(sample["masked"]), sample["response_order"]
    rule = f" {sample['rule']}" if sample["rule"] else ""
    lines = [
        f"=== {sample['id']} · epoch {sample['epoch']} · {sample['strategy']}{rule} · "
        f"{sample['count']} record{'s' if sample['count'] != 1 else ''} · {sample['n_tokens']:,} of {budget:,} tokens"
    ]
    meta = meta_instruction(sample["instruction"], sample["strategy"], rules)
    if meta is None:
        meta = "(no line of the instruction reads like one)"
    lines.append("meta-instruction:")
    lines += textwrap.wrap(
        meta or "(none: a primary sample joins the records as they are)",
        WIDTH,
        initial_indent=INDENT,
        subsequent_indent=INDENT,
    )

    lines.append("records, in instruction order:")
    for number, source in enumerate(sources, 1):
        mark = "  [masked: no response]" if source in masked else ""
        first_line = records[source].prompt.split("\n", 1)[0] if source in records else ""
        lines.append(f"{INDENT}{number:>2}. {source}  {_shorten(first_line, 80)}{mark}")

    lines.append("responses, in the order written:")
    separator = PRIMARY_SEPARATOR if sample["strategy"] == "primary" else rules.response_separator
    blocks = None
    if all(source in records for source in order):
        blocks = response_blocks(sample["output"], [records[source].output for source in order], separator)
    if blocks is None:
        lines += _indented(
            ["(the records' texts are not at hand, so the output is shown whole)", *_clip(sample["output"], full)]
        )
        return "\n".join(lines)
    unmoved = [source for source in sources if source not in masked]
    for place, (source, block) in enumerate(zip(order, blocks), 1):
        moved = (
            f"  [reordered: instruction {sources.index(source) + 1} answered {_ordinal(place)}]"
            if source != unmoved[place - 1]
            else ""
        )
        lines.append(f"{INDENT}--- response {place} · instruction {sources.index(source) + 1} · {source}{moved}")
        lines += _indented(_clip(block, full), INDENT + "| ")
    return "\n".join(lines)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def run_rules(manifest: dict) -> Rules:
    """The rules the run used: the --rules text its manifest keeps, else the built-in ones."""
    text = manifest.get("rules_text")
    return load_rules() if text is None else parse_rules(text, "the run's --rules")


def pick(directory: str, sample_filter: SampleFilter, n: int) -> list[dict]:
    return list(itertools.islice(filter(sample_filter, outputs.samples(directory)), n))


def render_samples(directory: str, manifest: dict, chosen: Sequence[dict], full: bool = False) -> list[str]:
    sources = {source for sample in chosen for source in sample["sources"]}
    records = source_records(manifest["inputs"], sources, outputs.input_fields(manifest))
    rules = run_rules(manifest)
    return [render(sample, records, rules, manifest["options"]["max_length"], full) for sample in chosen]


def _arguments() -> CommandParser:
    parser = CommandParser(prog="mosaic-it inspect", description="Print samples of a mosaic run readably.")
    parser.add_argument("directory", help="The output folder of `mosaic-it run`.")
    parser.add_argument(
        "--n", type=int, default=3, help="How many samples to print (the first that match, in file order)."
    )
    parser.add_argument("--strategy", choices=SAMPLE_KINDS, help="Only samples of this strategy.")
    parser.add_argument(
        "--rule",
        type=str.upper,
        choices=list(RULES),
        metavar="RULE",
        help=f"Only samples drawn with this rule: {', '.join(RULES)}.",
    )
    parser.add_argument(
        "--id",
        dest="record_id",
        metavar="ID",
        help="The sample with this id, or the samples that join the record with this id.",
    )
    parser.add_argument("--full", action="store_true", help="Print every line of every response block.")
    return parser


def inspect_command(argv: Sequence[str]) -> int:
    args = _arguments().parse_args(list(argv))
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    try:
        manifest = outputs.read_manifest(args.directory)
        if manifest.get("tool") != MOSAIC_TOOL:
            raise UsageError(
                f"'{args.directory}' holds a '{manifest.get('tool')}' run; inspect reads the output of `mosaic-it run`"
            )
        chosen = pick(args.directory, SampleFilter(args.strategy, args.rule, args.record_id), args.n)
    except outputs.OutputsError as err:
        raise UsageError(str(err)) from None
    if not chosen:
        print("no sample matches")
        return 1
    print("\n\n".join(render_samples(args.directory, manifest, chosen, args.full)))
    return 0
