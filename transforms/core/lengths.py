"""Exact token lengths of samples: length templates and split counting over records' Parts.

A record is measured once (`SampleLengths.measure`); a composed sample is then counted by
tokenizing only what lies around its records' Parts (`count_spliced`). See `tokens.py`
for why a text's count is the sum of its parts cut at a cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from transforms.core.tokens import NO_PART, Part, TokenCounter

LENGTH_TEMPLATES = ("raw", "vicuna")

# The system line of FastChat's "vicuna_v1.1" conversation template, which the Mosaic-IT
# paper trained with. It is reproduced verbatim because counting that prompt exactly is
# the point of the `vicuna` length template.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@dataclass(frozen=True)
class LengthTemplate:
    """What is counted for a sample: `raw` (instruction + response text, as the original
    method counted) or `vicuna` (the whole training prompt plus the end-of-sequence token)."""

    name: str

    def __post_init__(self):
        if self.name not in LENGTH_TEMPLATES:
            raise ValueError(f"unknown length template '{self.name}'; choose one of {', '.join(LENGTH_TEMPLATES)}")

    @property
    def around(self) -> tuple[str, str]:
        """The text before the instruction and the text between instruction and output."""
        return (f"{VICUNA_SYSTEM} USER: ", " ASSISTANT: ") if self.name == "vicuna" else ("", "")

    def text(self, instruction: str, output: str) -> str:
        before, between = self.around
        return f"{before}{instruction}{between}{output}"

    @property
    def special_tokens(self) -> int:
        """Special tokens added outside the text (vicuna ends with one end-of-sequence token)."""
        return 1 if self.name == "vicuna" else 0


class Spliced(NamedTuple):
    """A text as the pieces it is joined from: pieces[slots[i]] is a record's text whose Part is parts[i]."""

    pieces: Sequence[str]
    slots: Sequence[int]
    parts: Sequence[Part]


class SampleLengths:
    """Exact lengths of (instruction, output) pairs under a tokenizer and template."""

    def __init__(self, counter: TokenCounter, template: LengthTemplate):
        self.counter = counter
        self.template = template

    def count(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        extra = self.template.special_tokens
        return [n + extra for n in self.counter.count([self.template.text(i, o) for i, o in pairs])]

    def measure(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[int, Part, Part]]:
        """For each (prompt, output) of one record: its exact length alone, and the Parts of
        its prompt and output, so that samples holding it recount only around them."""
        cuts = [(self.counter.interior(prompt), self.counter.interior(output)) for prompt, output in pairs]
        inner = [
            text[cut[0] : cut[1]] for pair, pair_cuts in zip(pairs, cuts) for text, cut in zip(pair, pair_cuts) if cut
        ]
        inner_counts = iter(self.counter.count(inner))
        parts = [tuple((*cut, next(inner_counts)) if cut else NO_PART for cut in pair_cuts) for pair_cuts in cuts]
        items = [
            (Spliced((prompt,), (0,), (part_p,)), Spliced((output,), (0,), (part_o,)))
            for (prompt, output), (part_p, part_o) in zip(pairs, parts)
        ]
        return [(n, part_p, part_o) for n, (part_p, part_o) in zip(self.count_spliced(items), parts)]

    def count_spliced(self, items: Sequence[tuple[Spliced, Spliced]]) -> list[int]:
        """Exact lengths of (instruction, output) pairs given as Spliced pieces: only what is
        left around the records' Parts is tokenized.

        A Part starts and ends at cuts, so what is left is the joined stretches between cuts,
        and it is counted as one text. When that text may count differently in context (it
        holds an added token), the whole sample is counted instead.
        """
        before, between = self.template.around
        leftovers: list[str] = []
        known_tokens: list[int] = []
        for instruction, output in items:
            pieces = [before]
            total = self.template.special_tokens + _cut_out(instruction, pieces)
            pieces.append(between)
            known_tokens.append(total + _cut_out(output, pieces))
            leftovers.append("".join(pieces))
        in_context = self.counter.count_in_any_context(leftovers)
        whole = [i for i, n in enumerate(in_context) if n is None]
        if whole:
            pairs = [("".join(items[i][0].pieces), "".join(items[i][1].pieces)) for i in whole]
            for i, n in zip(whole, self.count(pairs)):
                in_context[i], known_tokens[i] = n, 0
        return [known + (n or 0) for known, n in zip(known_tokens, in_context)]


def _cut_out(spliced: Spliced, into: list[str]) -> int:
    """Appends the spliced text's pieces to `into` with the Parts cut out; returns their tokens."""
    pieces = list(spliced.pieces)
    tokens = 0
    for slot, (start, end, n_tokens) in zip(spliced.slots, spliced.parts):
        if end > start:
            text = pieces[slot]
            pieces[slot] = text[:start] + text[end:]
            tokens += n_tokens
    into += pieces
    return tokens
