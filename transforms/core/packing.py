"""Cutting one key's records into groups under the token budget, and composing samples.

The result is defined by a simple sequential procedure: walk the records in sort-key
order; for group g draw a target size from (seed, epoch, key, g); take records while
the group is under that size and the next record, composed with the group as the
group would then be, fits the budget (counted exactly, except where an upper estimate
already says it fits or the interiors of the records' texts it holds already exceed it);
compose the sample and count it exactly; if it is over the budget (an estimate was
wrong), drop records from its end until it fits (a lone record falls back to its plain
form, which always fits); the next group starts at the first record not taken. The
implementation composes a window of groups ahead and counts them in one tokenizer
call, redoing the window only after a shrink, which gives the same result with far
fewer tokenizer calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from transforms.core.lengths import SampleLengths, Spliced
from transforms.core.overheads import Overheads
from transforms.core.randomness import HashStream, StreamNames
from transforms.core.records import Record, origin_order, prompt_of
from transforms.core.rules import Rules
from transforms.core.strategies import Composition, Look, compose_in, draw_look, primary
from transforms.core.tokens import Part
from transforms.core.wrap import draw_group_size

_WINDOW = 64  # groups composed and counted per tokenizer call
_SHRINK_CHUNK = 4  # prefixes of an over-budget group counted per tokenizer call


class Measured(NamedTuple):
    """A record with its exact length when it stands alone as a plain sample, and the
    Parts of its prompt and output (see SampleLengths.measure).

    A plain tuple underneath, so that packing a million records does not build a million
    objects twice; `id` comes first, so tuples of (sort key, Measured) sort by sort key, then id.
    """

    id: str
    instruction: str
    input: str
    output: str
    origin: str
    n_tokens: int
    prompt_part: Part
    output_part: Part

    @classmethod
    def of(
        cls, record: Record, n_tokens: int, prompt_part: Part | None = None, output_part: Part | None = None
    ) -> Measured:
        """Without Parts, samples holding the record count all of its text."""
        return cls(
            record.id,
            record.instruction,
            record.input,
            record.output,
            record.origin,
            n_tokens,
            prompt_part or (record.prompt, 0),
            output_part or (record.output, 0),
        )

    @property
    def record(self) -> Record:
        return Record(self.id, self.instruction, self.input, self.output, self.origin)

    @property
    def prompt(self) -> str:
        return prompt_of(self.instruction, self.input)


class Sample(NamedTuple):
    """One output sample; its fields, in this order, are the output record's (see `row`).

    `group_size` is the record's `count` field: a named tuple cannot have a field `count`,
    which would hide tuple.count.
    """

    id: str
    instruction: str
    input: str
    output: str
    group_size: int
    epoch: int
    strategy: str
    rule: str | None
    sources: tuple[str, ...]
    response_order: tuple[str, ...]
    masked: tuple[str, ...]
    n_tokens: int

    def row(self) -> dict:
        """The output record."""
        return dict(zip(SAMPLE_FIELDS, self))


SAMPLE_FIELDS = ("id", "instruction", "input", "output", "count", *Sample._fields[5:])


@dataclass(frozen=True)
class PackSettings:
    seed: int
    strategy: str
    wrap_mode: str
    wrap_max: int
    max_length: int


def order_records(items: Sequence[tuple[int, Measured]]) -> tuple[list[Measured], list[Measured]]:
    """Sorts one key's records by their sort key, then id; returns (kept, duplicates).

    Records sharing an id always share a key, so duplicates are found here: the one
    with the smallest origin is kept.
    """
    if len({measured.id for _, measured in items}) == len(items):
        return [measured for _, measured in sorted(items)], []
    by_origin = sorted(items, key=lambda item: origin_order(item[1].origin))
    seen, kept, duplicates = set(), [], []
    for sort_key, measured in by_origin:
        if measured.id in seen:
            duplicates.append(measured)
        else:
            seen.add(measured.id)
            kept.append((sort_key, measured))
    kept.sort()
    return [measured for _, measured in kept], duplicates


class _Span(NamedTuple):
    """Group `group`, made of records[first:end]."""

    group: int
    first: int
    end: int


class _Counted(NamedTuple):
    composition: Composition
    n_tokens: int


class KeyPacker:
    """Packs the ordered records of one (epoch, key) into samples."""

    def __init__(self, settings: PackSettings, rules: Rules, lengths: SampleLengths, overheads: Overheads):
        self.settings = settings
        self.rules = rules
        self.lengths = lengths
        self.overheads = overheads

    def pack(self, records: Sequence[Measured], epoch: int, key: int) -> list[Sample]:
        return _KeyPacking(self, records, epoch, key).samples()


class _KeyPacking:
    """The packing of one key: its records, their prompts (built once) and where it stands."""

    def __init__(self, packer: KeyPacker, records: Sequence[Measured], epoch: int, key: int):
        self.settings, self.rules, self.lengths, self.overheads = (
            packer.settings,
            packer.rules,
            packer.lengths,
            packer.overheads,
        )
        self.records, self.epoch, self.key = records, epoch, key
        self.stream_names = StreamNames(self.settings.seed, epoch, key)  # + (group, "size" or "compose")
        self.prompts = [m.prompt for m in records]
        self.prompt_parts = [m.prompt_part for m in records]
        self.streams: dict[int, HashStream] = {}  # group -> its compose stream
        self.looks: dict[tuple[int, bool], Look] = {}  # (group, holds one record) -> its look
        self.fitted: dict[int, tuple[_Span, _Counted]] = {}  # group -> its last exact count that fit

    def samples(self) -> list[Sample]:
        samples: list[Sample] = []
        start, group = 0, 0
        while start < len(self.records):
            plans = self._plan_window(start, group)
            for (group, first, planned_end), (composition, n_tokens) in zip(plans, self._counted(plans)):
                end = planned_end
                if n_tokens > self.settings.max_length:
                    end, composition, n_tokens = self._shrink(group, first, end)
                samples.append(self._sample(first, end, composition, n_tokens, group))
                start, group = end, group + 1
                if end != planned_end:  # the window's later groups were planned from another start
                    break
        return samples

    def _plan_window(self, start: int, group: int) -> list[_Span]:
        plans: list[_Span] = []
        while start < len(self.records) and len(plans) < _WINDOW:
            span = self._plan(group, start)
            plans.append(span)
            start, group = span.end, group + 1
        return plans

    def _counted(self, spans: Sequence[_Span]) -> list[_Counted]:
        """The spans composed and counted; a span counted while it was planned is not counted again."""
        kept = [self._counted_when_planned(span) for span in spans]
        fresh = iter(self._count_spans([span for span, counted in zip(spans, kept) if counted is None]))
        return [counted or next(fresh) for counted in kept]

    def _counted_when_planned(self, span: _Span) -> _Counted | None:
        fitted = self.fitted.pop(span.group, None)
        return fitted[1] if fitted and fitted[0] == span else None

    def _plan(self, group: int, start: int) -> _Span:
        """The group starting at `start`: it takes records until it reaches its drawn size or the next
        record, composed with the group as the group would then be, would not fit.

        The estimate settles the clear cases, and a lower bound (`_floor`) the hopeless ones; only the
        rest are composed and counted exactly. The last exact count that fit is kept, since it is often
        the group's final form.
        """
        settings = self.settings
        target = draw_group_size(settings.wrap_mode, settings.wrap_max, self.stream_names(group, "size"))
        if start + 1 == len(self.records) or target == 1:
            return _Span(group, start, start + 1)
        return _Span(group, start, self._grown_end(group, start, target))

    def _grown_end(self, group: int, start: int, target: int | None) -> int:
        """Where a group that may take a second record ends (see `_plan`)."""
        records, max_length = self.records, self.settings.max_length
        look = self._look(group, single=False)
        costs = self.overheads.costs(look)
        last = len(records) if target is None else min(len(records), start + target)
        # costs.estimate of records[start:end], as a running sum: fixed + each record's n_tokens + per_record.
        end, estimate = start + 1, costs.fixed + records[start].n_tokens + costs.per_record
        while end < last:
            estimate += records[end].n_tokens + costs.per_record
            if estimate > max_length:
                if self._floor(look, start, end + 1) > max_length:
                    break
                longer = _Span(group, start, end + 1)
                [counted] = self._count_spans([longer])
                if counted.n_tokens > max_length:
                    break
                self.fitted[group] = (longer, counted)
            end += 1
        return end

    def _floor(self, look: Look, first: int, end: int) -> int:
        """A lower bound of the exact length of records[first:end] composed in this look: the tokens of
        the records' Parts its sample holds (every instruction's; every response's unless maskout may
        leave some out)."""
        taken = self.records[first:end]
        floor = sum(m.prompt_part[1] for m in taken)
        if look.kind != "maskout":
            floor += sum(m.output_part[1] for m in taken)
        return floor

    def _count_spans(self, spans: Sequence[_Span]) -> list[_Counted]:
        compositions = [self._compose(*span) for span in spans]
        return [_Counted(c, n) for c, n in zip(compositions, self._count(spans, compositions))]

    def _compose(self, group: int, first: int, end: int) -> Composition:
        """The group's sample; a group may be composed with several ends, each from its look on."""
        look = self._look(group, end - first == 1)
        stream = self.streams[group].restarted(look.draws)
        outputs = [m.output for m in self.records[first:end]]
        return compose_in(look, self.prompts[first:end], outputs, self.rules, stream)

    def _look(self, group: int, single: bool) -> Look:
        look = self.looks.get((group, single))
        if look is None:
            if group not in self.streams:
                self.streams[group] = self.stream_names(group, "compose")
            look = draw_look(self.settings.strategy, self.rules, self.streams[group].restarted(), single)
            self.looks[group, single] = look
        return look

    def _count(self, spans: Sequence[_Span], compositions: Sequence[Composition]) -> list[int]:
        """Exact lengths; the records' own Parts spare recounting most of their text."""
        records, items = self.records, []
        for (_, first, end), c in zip(spans, compositions):
            output_parts = [records[first + position].output_part for position in c.response_order]
            items.append(
                (
                    Spliced(c.instruction_pieces, c.prompt_slots, self.prompt_parts[first:end]),
                    Spliced(c.output_pieces, c.output_slots, output_parts),
                )
            )
        return self.lengths.count_spliced(items)

    def _shrink(self, group: int, first: int, end: int) -> tuple[int, Composition, int]:
        """The longest prefix of the group whose composed sample fits; a lone record's plain form always does."""
        ends = list(range(end - 1, first, -1))
        for chunk in range(0, len(ends), _SHRINK_CHUNK):
            tried = ends[chunk : chunk + _SHRINK_CHUNK]
            for e, (composition, n_tokens) in zip(tried, self._count_spans([_Span(group, first, e) for e in tried])):
                if n_tokens <= self.settings.max_length:
                    return e, composition, n_tokens
        alone = self.records[first]
        return first + 1, primary([self.prompts[first]], [alone.output]), alone.n_tokens

    def _sample(self, first: int, end: int, composition: Composition, n_tokens: int, group: int) -> Sample:
        ids = [m.id for m in self.records[first:end]]
        return Sample(
            id=f"e{self.epoch}-k{self.key}-g{group}",
            instruction=composition.instruction,
            input="",
            output=composition.output,
            group_size=len(ids),
            epoch=self.epoch,
            strategy=composition.kind,
            rule=composition.rule,
            sources=tuple(ids),
            response_order=tuple(ids[i] for i in composition.response_order),
            masked=tuple(ids[i] for i in composition.masked),
            n_tokens=n_tokens,
        )
