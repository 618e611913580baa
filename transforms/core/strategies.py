"""Joining a group of records into one Mosaic-IT sample: format, permute and maskout.

`compose` is a pure function of the group and its random stream; the rule functions
below decide which responses appear and in what order, and the rules file only says
how that is phrased.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from transforms.core.randomness import HashStream
from transforms.core.rulebook import MASK_RULES, PERMUTE_RULES, RULES, mask_count
from transforms.core.rules import TAG_CASES, ListStyle, Rules, filled_tags

STRATEGIES = ("primary", "format", "order", "mask", "both")
# What a sample ends up as, whatever the --strategy that drew it.
SAMPLE_KINDS = ("primary", "format", "permute", "maskout")

KIND_CHOICES = {
    "primary": ("primary",),
    "format": ("format",),
    "order": ("format", "permute"),
    "mask": ("format", "maskout"),
    "both": ("format", "permute", "maskout"),
}
MASK_RATIO_RANGE = (0.1, 0.5)
PRIMARY_SEPARATOR = "\n\n"  # what `primary` joins with, whatever the rules say
_UNUSED_LIST = ListStyle("", "")  # a primary sample lists no numbers
# Which format phrasings fit a sample, by (numbered, tagged).
FORMAT_KIND = {
    (True, True): "numbered_tagged",
    (True, False): "numbered",
    (False, True): "tagged",
    (False, False): "plain",
}


class Composition(NamedTuple):
    kind: str  # one of SAMPLE_KINDS
    rule: str | None
    response_order: tuple[int, ...]  # positions (0-based, instruction order) in response order
    masked: tuple[int, ...]  # positions whose responses are left out, ascending
    # The pieces the instruction and the output are joined from, and where the records' own
    # texts stand in them: prompt i is instruction_pieces[prompt_slots[i]], the j-th response
    # shown is output_pieces[output_slots[j]]. Counting uses them to skip what it already knows;
    # the texts are joined only for a sample that is kept.
    instruction_pieces: list[str]
    prompt_slots: list[int]
    output_pieces: list[str]
    output_slots: list[int]

    @property
    def instruction(self) -> str:
        return "".join(self.instruction_pieces)

    @property
    def output(self) -> str:
        return "".join(self.output_pieces)


_NUMBERED_AHEAD = 16  # labels and tags are formatted for this many numbers at once


def numbered(template: str, count: int, word: str = "", end_word: str = "") -> tuple[str, ...]:
    """A label or tag numbered 1..count."""
    return _numbered_from_one(template, word, end_word, max(count, _NUMBERED_AHEAD))[:count]


@functools.lru_cache(maxsize=1 << 14)  # tag styles x words x cases: thousands
def _numbered_from_one(template: str, word: str, end_word: str, count: int) -> tuple[str, ...]:
    return tuple(template.format(n=n, word=word, end_word=end_word) for n in range(1, count + 1))


def draw_kind(strategy: str, stream: HashStream) -> str:
    return stream.choice(KIND_CHOICES[strategy])


def compose(
    prompts: Sequence[str], outputs: Sequence[str], strategy: str, rules: Rules, stream: HashStream
) -> Composition:
    """Joins one group into a sample. The stream must be the group's own, from its first draw."""
    look = draw_look(strategy, rules, stream, single=len(prompts) == 1)
    return compose_in(look, prompts, outputs, rules, stream)


class Look(NamedTuple):
    """What a sample looks like before its records are known: its kind and its format choices.

    They are the first draws of the group's stream and depend on the group only through whether
    it holds one record, so a group composed with several ends draws its look once. `draws`:
    how many draws it took; composing goes on from there.
    """

    kind: str  # "primary", "format", "permute" or "maskout", as drawn (a rule may still fall back to format)
    bare: bool  # format only: neither tags nor a meta-instruction
    label: str  # "" for unnumbered instructions
    tag_style: tuple[str, str] | None
    tag_words: tuple[str, str]  # (begin word, end word), cased
    separator: str
    meta_separator: str
    number_list: ListStyle
    sequence: ListStyle
    draws: int


def draw_look(strategy: str, rules: Rules, stream: HashStream, single: bool) -> Look:
    kind = draw_kind(strategy, stream)
    if kind == "primary":
        return Look(kind, False, "", None, ("", ""), "", "", _UNUSED_LIST, _UNUSED_LIST, stream.position)
    if single:
        kind = "format"
    structure = rules.structure
    bare = kind == "format" and stream.random() < structure.bare_format
    label = "" if stream.random() < structure.unnumbered else stream.choice(rules.labels)
    if label and stream.coin():
        label = label.rstrip() + "\n"
    tag_style, tag_words = None, ("", "")
    if not bare and stream.random() < structure.tagged:
        case = stream.choice(TAG_CASES)
        begin_word, end_word = stream.choice(rules.tag_words)
        tag_words = (case(begin_word), case(end_word))
        tag_style = stream.choice(rules.tag_styles)
    return Look(
        kind,
        bare,
        label,
        tag_style,
        tag_words,
        separator=stream.choice(rules.instruction_separators),
        meta_separator=stream.choice(rules.meta_separators),
        number_list=stream.choice(rules.number_lists),
        sequence=stream.choice(rules.sequences),
        draws=stream.position,
    )


def compose_in(
    look: Look, prompts: Sequence[str], outputs: Sequence[str], rules: Rules, stream: HashStream
) -> Composition:
    """Joins one group into a sample of the given look; the stream stands after the look's draws."""
    if look.kind == "primary":
        return primary(prompts, outputs)
    return _Formatter(look, prompts, outputs, rules, stream).compose()


def primary(prompts: Sequence[str], outputs: Sequence[str]) -> Composition:
    """Plain concatenation; for a single record it is the record itself."""
    instruction_pieces, prompt_slots = _joined_with(PRIMARY_SEPARATOR, prompts)
    output_pieces, output_slots = _joined_with(PRIMARY_SEPARATOR, outputs)
    return Composition(
        "primary",
        None,
        tuple(range(len(prompts))),
        (),
        instruction_pieces,
        prompt_slots,
        output_pieces,
        output_slots,
    )


def _joined_with(separator: str, texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """The pieces of separator.join(texts), and where each text stands in them."""
    pieces = [separator] * (2 * len(texts) - 1) if texts else []
    pieces[::2] = texts
    return pieces, list(range(0, len(pieces), 2))


class _Formatter:
    """A sample's look applied to its records."""

    def __init__(self, look: Look, prompts: Sequence[str], outputs: Sequence[str], rules: Rules, stream: HashStream):
        self.look, self.prompts, self.outputs, self.rules, self.stream = look, prompts, outputs, rules, stream
        n = len(prompts)
        self.labels = numbered(look.label, n)
        self.tags: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.shown_tags: tuple[str, str] | None = None  # as the format phrasing names them, {n} shown as N
        if look.tag_style:
            style, (word, end_word) = look.tag_style, look.tag_words
            self.tags = (numbered(style[0], n, word, end_word), numbered(style[1], n, word, end_word))
            self.shown_tags = filled_tags(style, word, end_word, "N")

    def compose(self) -> Composition:
        look, kind, n = self.look, self.look.kind, len(self.prompts)
        order, masked, rule, rule_text = list(range(n)), [], None, ""
        if kind == "permute":
            rule = self._draw_rule(self.rules.permute)
            if rule is not None:
                order = PERMUTE_RULES[rule].order(self.prompts, self.stream)
                phrasing = self.stream.choice(self.rules.permute[rule])
                rule_text = phrasing.format(sequence=look.sequence.join([i + 1 for i in order]))
        elif kind == "maskout":
            rule = self._draw_rule(self.rules.maskout)
            if rule is not None:
                m = mask_count(n, self.stream.uniform(*MASK_RATIO_RANGE))
                masked = MASK_RULES[rule].mask(self.prompts, m, self.stream)
                phrasings = self.rules.maskout[rule]
                phrasing = self.stream.choice(phrasings.one if len(masked) == 1 else phrasings.many)
                rule_text = phrasing.format(numbers=look.number_list.join([i + 1 for i in masked]), m=len(masked))
                order = sorted(set(order) - set(masked))
        if rule is None:
            kind = "format"
        metas = ([] if look.bare else [self._format_phrasing()]) + ([rule_text] if rule_text else [])
        instruction: list[str] = []
        after: list[str] = []
        for meta in metas:  # each stands before or after the list, drawn apart
            if self.stream.random() < self.rules.structure.meta_before:
                instruction += (meta, look.meta_separator)
            else:
                after += (look.meta_separator, meta)
        prompt_slots: list[int] = []
        self._instructions(instruction, prompt_slots)
        instruction += after
        responses, output_slots = self._responses(order)
        return Composition(
            kind,
            rule,
            tuple(order),
            tuple(masked),
            instruction,
            prompt_slots,
            responses,
            output_slots,
        )

    def _instructions(self, pieces: list[str], slots: list[int]) -> None:
        for position, prompt in enumerate(self.prompts):
            if position:
                pieces.append(self.look.separator)
            pieces.append(self.labels[position])
            slots.append(len(pieces))
            pieces.append(prompt)

    def _responses(self, order: Sequence[int]) -> tuple[list[str], list[int]]:
        pieces: list[str] = []
        slots: list[int] = []
        for position in order:
            if pieces:
                pieces.append(self.rules.response_separator)
            pieces.append(self.labels[position])
            if self.tags:
                begins, ends = self.tags
                pieces += (begins[position], "\n")
                slots.append(len(pieces))
                pieces += (self.outputs[position], "\n", ends[position])
            else:
                slots.append(len(pieces))
                pieces.append(self.outputs[position])
        return pieces, slots

    def _draw_rule(self, table: Mapping[str, object]) -> str | None:
        verdicts: dict[Callable, bool] = {}
        usable = [rule for rule in table if RULES[rule].usable(self.prompts, bool(self.look.label), verdicts)]
        return self.stream.choice(usable) if usable else None

    def _format_phrasing(self) -> str:
        kind = FORMAT_KIND[bool(self.look.label), bool(self.tags)]
        return _filled_phrasing(self.stream.choice(self.rules.format[kind]), self.labels[0], self.shown_tags)


@functools.lru_cache(maxsize=1 << 16)
def _filled_phrasing(phrasing: str, first_label: str, tags: tuple[str, str] | None) -> str:
    fields = {"label": f'"{first_label.strip()}"'}
    if tags:
        fields["begin"], fields["end"] = (f'"{tag}"' for tag in tags)
    return phrasing.format(**fields)
