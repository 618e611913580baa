"""`mosaic-it verify DIR`: checks a finished mosaic run from its files alone.

It re-reads the run's inputs (named by its manifest) and its samples and rejections, and
checks that every record is accounted for in every epoch, that each sample's `n_tokens` is
the exact count of its text under the run's tokenizer and length template, that the
instructions and responses stand in it verbatim, and that the responses are present,
ordered and masked as `response_order` and `masked` say and as the sample's rule computes
from the instruction texts (for the rules that depend on the texts alone).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.errors import CommandParser, UsageError
from reporting import outputs
from transforms.core.decoding import input_labels
from transforms.core.fields import FieldMap
from transforms.core.lengths import LengthTemplateError, SampleLengths
from transforms.core.randomness import HashStream
from transforms.core.records import Record
from transforms.core.rulebook import MASK_RULES, PERMUTE_RULES
from transforms.manifest import MOSAIC_TOOL
from transforms.read import read_file

# Rules drawn from the sample's random stream: their order or mask cannot be recomputed from the texts.
_DRAWN_RULES = frozenset({"SEQUENCE", "MASK_LISTED"})
SHOWN_PER_CHECK = 10


@dataclass(frozen=True)
class Violation:
    check: str
    where: str  # a sample id, an epoch or a record id
    detail: str


def _records(inputs: Sequence[str], fields: FieldMap) -> dict[str, list[Record]]:
    """Every record of the inputs by id (a duplicate id maps to several)."""
    by_id: dict[str, list[Record]] = defaultdict(list)
    for path, label in input_labels(inputs).items():
        for item in read_file(path, label, fields):
            if isinstance(item, Record):
                by_id[item.id].append(item)
    return by_id


def check_accounting(
    samples: Sequence[dict], rejected: Iterable[dict], records: dict[str, list[Record]]
) -> list[Violation]:
    """Every record in exactly one sample per epoch, or rejected; no sample holds an unknown record."""
    rejected_ids = {row["source"] for row in rejected}
    placed: dict[int, Counter] = defaultdict(Counter)
    for sample in samples:
        placed[sample["epoch"]].update(sample["sources"])
    violations = []
    for epoch, counts in sorted(placed.items()):
        for record_id, n in sorted(counts.items()):
            if record_id not in records:
                violations.append(Violation("accounting", f"epoch {epoch}", f"'{record_id}' is no input record"))
            elif n > 1:
                violations.append(Violation("accounting", f"epoch {epoch}", f"'{record_id}' is in {n} samples"))
        missing = sorted(set(records) - set(counts) - rejected_ids)
        for record_id in missing:
            violations.append(
                Violation("accounting", f"epoch {epoch}", f"'{record_id}' is in no sample and not rejected")
            )
    return violations


def check_sample(sample: dict, records: dict[str, list[Record]]) -> list[Violation]:
    """Verbatim texts, and responses present, ordered and masked as the sample and its rule say."""
    sources = [records[record_id][0] for record_id in sample["sources"] if record_id in records]
    if len(sources) != len(sample["sources"]):
        return []  # reported by check_accounting
    where, found = sample["id"], []
    by_id = {record.id: record for record in sources}
    for record in sources:
        if record.prompt not in sample["instruction"]:
            found.append(Violation("verbatim", where, f"the instruction of '{record.id}' is not in the sample"))
    position = 0
    for record_id in sample["response_order"]:
        at = sample["output"].find(by_id[record_id].output, position)
        if at < 0:
            found.append(Violation("order", where, f"the response of '{record_id}' is missing or out of order"))
            break
        position = at + len(by_id[record_id].output)
    shown = [by_id[record_id].output for record_id in sample["response_order"]]
    for record_id in sample["masked"]:
        text = by_id[record_id].output
        if text in sample["output"] and not any(text in other for other in shown):
            found.append(Violation("mask", where, f"the masked response of '{record_id}' is in the sample"))
    if sorted(sample["response_order"] + sample["masked"]) != sorted(sample["sources"]):
        found.append(Violation("mask", where, "response_order and masked do not split the sources"))
    return found + _check_rule(sample, [record.prompt for record in sources])


def _check_rule(sample: dict, prompts: list[str]) -> list[Violation]:
    rule, sources = sample["rule"], sample["sources"]
    if rule is None or rule in _DRAWN_RULES:
        return []
    stream = HashStream("verify")  # unused by the rules checked here
    if rule in PERMUTE_RULES:
        expected = [sources[i] for i in PERMUTE_RULES[rule].order(prompts, stream)]
        if expected != sample["response_order"]:
            return [Violation("rule", sample["id"], f"{rule} orders the responses {expected}")]
    elif rule in MASK_RULES:
        expected = [sources[i] for i in MASK_RULES[rule].mask(prompts, len(sample["masked"]), stream)]
        if sorted(expected) != sorted(sample["masked"]):
            return [Violation("rule", sample["id"], f"{rule} masks {expected}")]
    return []


def check_lengths(samples: Sequence[dict], lengths: SampleLengths, budget: int) -> list[Violation]:
    """`n_tokens` of every sample is the exact count of its text, within the budget."""
    counts = lengths.count([(sample["instruction"], sample["output"]) for sample in samples])
    violations = []
    for sample, n_tokens in zip(samples, counts):
        if n_tokens != sample["n_tokens"]:
            detail = f"n_tokens says {sample['n_tokens']}, the text counts {n_tokens}"
            violations.append(Violation("n_tokens", sample["id"], detail))
        if n_tokens > budget:
            violations.append(Violation("budget", sample["id"], f"{n_tokens} tokens, over --max-length {budget}"))
    return violations


def verify(directory: str) -> list[Violation]:
    manifest = outputs.read_manifest(directory)
    if manifest.get("tool") != MOSAIC_TOOL:
        raise UsageError(
            f"'{directory}' holds a '{manifest.get('tool')}' run; verify reads the output of `mosaic-it run`"
        )
    records = _records(manifest["inputs"], outputs.input_fields(manifest))
    samples = list(outputs.samples(directory))
    lengths = outputs.sample_lengths(manifest)
    violations = check_accounting(samples, outputs.rejected(directory), records)
    for sample in samples:
        violations += check_sample(sample, records)
    return violations + check_lengths(samples, lengths, manifest["options"]["max_length"])


def violation_table(violations: Sequence[Violation]) -> str:
    """The violations by check: a count, then the first few of each."""
    by_check: dict[str, list[Violation]] = defaultdict(list)
    for violation in violations:
        by_check[violation.check].append(violation)
    lines = []
    for check, found in sorted(by_check.items()):
        lines.append(f"{check}: {len(found):,} violation(s)")
        lines += [f"    {v.where}: {v.detail}" for v in found[:SHOWN_PER_CHECK]]
    return "\n".join(lines)


def verify_command(argv: Sequence[str]) -> int:
    parser = CommandParser(prog="mosaic-it verify", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="Output folder of a finished `mosaic-it run`.")
    args = parser.parse_args(list(argv))
    try:
        violations = verify(args.directory)
    except (outputs.OutputsError, LengthTemplateError) as err:
        raise UsageError(str(err)) from None
    if violations:
        print(violation_table(violations))
        return 1
    print(f"verified: {args.directory} (every record accounted for, every sample counted, ordered and masked)")
    return 0
