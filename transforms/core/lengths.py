"""Exact token lengths of samples: length templates and split counting over records' Parts.

A record is measured once (`SampleLengths.measure`); a composed sample is then counted by
tokenizing only what lies around its records' Parts (`count_spliced`). See `tokens.py`
for why a text's count is the sum of its parts cut at a cut.

The template's own text is counted once too. The counter names anchors inside each fixed
piece (`TokenCounter.anchors`): positions no token spans, whatever stands around the piece,
from which the rest of the text counts as it would alone. The text from the start to the
last anchor of `before`, between the first and last anchors of `between`, and from the
first anchor of `after` to the end never changes and is counted when the template is set
up; a sample tokenizes only its junctions, the stretches from one of those anchors to the
next with the variable text in between (the instruction, the output, or both when
`between` has no anchor). A junction is counted alone only when the tokenizer matches
exactly the template's added tokens in it, at their places: a record's text that holds an
added token, or one formed where a Part was cut out, sends the sample to whole counting.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from transforms.core.templates import LENGTH_TEMPLATES, LengthTemplateError, Shape, template_shape
from transforms.core.tokens import DEFAULT_TOKENIZER, Part, TokenCounter

__all__ = ["LENGTH_TEMPLATES", "LengthTemplate", "LengthTemplateError", "SampleLengths", "Spliced"]


@dataclass(frozen=True)
class LengthTemplate:
    """What is counted for a sample: `raw` (instruction + response text, as the original method
    counted), the `vicuna` prompt the paper trained with, the `llama-2`, `llama-3` and `chatml`
    chat formats, or `chat`, the chat template of the `hf:` tokenizer (read from `tokenizer`)."""

    name: str
    system_prompt: str | None = None
    tokenizer: str = DEFAULT_TOKENIZER

    def __post_init__(self):
        self.shape  # noqa: B018 -- raises LengthTemplateError for a template that cannot work

    @functools.cached_property
    def shape(self) -> Shape:
        return template_shape(self.name, self.system_prompt, self.tokenizer)

    def text(self, instruction: str, output: str) -> str:
        return self.shape.text(instruction, output)


class Spliced(NamedTuple):
    """A text as the pieces it is joined from: pieces[slots[i]] is a record's text whose Part is parts[i]."""

    pieces: Sequence[str]
    slots: Sequence[int]
    parts: Sequence[Part]


class _Fixed(NamedTuple):
    """A fixed text of a junction and where the tokenizer matches its added tokens."""

    text: str
    added: list[tuple[int, int]]


class _Junctions(NamedTuple):
    """The template split at anchors: its tokens counted once, and the layout of each junction, its
    fixed texts and where the variable text stands (0: the instruction, 1: the output). `patterns`:
    the layouts as str.format patterns, where the counter matches no added token (nothing to check)."""

    fixed_tokens: int
    layouts: list[tuple[_Fixed | int, ...]]
    patterns: list[str] | None


class SampleLengths:
    """Exact lengths of (instruction, output) pairs under a tokenizer and template."""

    def __init__(self, counter: TokenCounter, template: LengthTemplate):
        self.counter = counter
        self.template = template
        self._junctions = self._split_template()

    def count(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        extra = self.template.shape.end_tokens
        return [n + extra for n in self.counter.count([self.template.text(i, o) for i, o in pairs])]

    def measure(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[int, Part, Part]]:
        """For each (prompt, output) of one record: its exact length alone, and the Parts of
        its prompt and output, so that samples holding it recount only around them."""
        cuts = [(self._interior(prompt), self._interior(output)) for prompt, output in pairs]
        inner = [
            text[cut[0] : cut[1]] for pair, pair_cuts in zip(pairs, cuts) for text, cut in zip(pair, pair_cuts) if cut
        ]
        inner_counts = iter(self.counter.count(inner))
        parts = [
            tuple(
                (text[: cut[0]] + text[cut[1] :], next(inner_counts)) if cut else (text, 0)
                for text, cut in zip(pair, pair_cuts)
            )
            for pair, pair_cuts in zip(pairs, cuts)
        ]
        items = [
            (Spliced((prompt,), (0,), (part_p,)), Spliced((output,), (0,), (part_o,)))
            for (prompt, output), (part_p, part_o) in zip(pairs, parts)
        ]
        return [(n, part_p, part_o) for n, (part_p, part_o) in zip(self.count_spliced(items), parts)]

    def count_spliced(self, items: Sequence[tuple[Spliced, Spliced]]) -> list[int]:
        """Exact lengths of (instruction, output) pairs given as Spliced pieces: only the
        junctions, with the records' Parts cut out, are tokenized.

        A Part starts and ends at cuts, so what is left of a text is its stretches between
        cuts joined, which count as they did around the Part. A sample whose junctions may
        count differently alone (see the module docstring) is counted whole instead.
        """
        junctions, cut_out = self._junctions, self._cut_out
        texts: list[str] = []
        spans: list[tuple[int, int]] = []  # each sample's junctions in `texts`
        known_tokens: list[int] = []
        whole: list[int] = []
        for index, (instruction, output) in enumerate(items):
            instruction_left, instruction_tokens = cut_out(instruction)
            output_left, output_tokens = cut_out(output)
            sample_texts = (
                [pattern.format(instruction_left, output_left) for pattern in junctions.patterns]
                if junctions.patterns
                else self._junction_texts(instruction_left, output_left)
            )
            spans.append((len(texts), len(texts) + len(sample_texts or ())))
            if sample_texts is None:
                whole.append(index)
                known_tokens.append(0)
            else:
                texts += sample_texts
                known_tokens.append(junctions.fixed_tokens + instruction_tokens + output_tokens)
        counts = self.counter.count(texts)
        totals = [known + sum(counts[start:end]) for known, (start, end) in zip(known_tokens, spans)]
        if whole:
            pairs = [("".join(items[i][0].pieces), "".join(items[i][1].pieces)) for i in whole]
            for i, n in zip(whole, self.count(pairs)):
                totals[i] = n
        return totals

    def _junction_texts(self, instruction: str, output: str) -> list[str] | None:
        """The junctions of a sample whose instruction and output (Parts cut out) are given, or None
        when the tokenizer would match other added tokens in them than the template's."""
        variable = (instruction, output)
        texts = []
        for layout in self._junctions.layouts:
            text, expected = "", []
            for element in layout:
                if isinstance(element, int):
                    text += variable[element]
                else:
                    expected += [(start + len(text), end + len(text)) for start, end in element.added]
                    text += element.text
            if self.counter.added_spans(text) != expected:
                return None
            texts.append(text)
        return texts

    def _interior(self, text: str) -> tuple[int, int] | None:
        """The text's (first cut, last cut); under a template that trims the messages, only when a kept
        character stands before and after them, so that trimming never reaches into the Part between."""
        cuts = self.counter.interior(text)
        if (
            cuts
            and self.template.shape.trims
            and not len(text) - len(text.lstrip()) < cuts[0] < cuts[1] < len(text.rstrip())
        ):
            return None
        return cuts

    def _cut_out(self, spliced: Spliced) -> tuple[str, int]:
        """The spliced text with the Parts cut out, as the template places it, and the Parts' tokens.

        Trimming what is left trims what the whole text would lose: a kept character of the record
        stands on either side of each Part (see `_interior`)."""
        pieces = list(spliced.pieces)
        tokens = 0
        for slot, (left, n_tokens) in zip(spliced.slots, spliced.parts):
            pieces[slot] = left
            tokens += n_tokens
        left = "".join(pieces)
        return (left.strip() if self.template.shape.trims else left), tokens

    def _split_template(self) -> _Junctions:
        shape, counter = self.template.shape, self.counter
        head_end = max(counter.anchors(shape.before), default=0)
        tail_start = min(counter.anchors(shape.after), default=len(shape.after))
        between_anchors = counter.anchors(shape.between)
        fixed = [shape.before[:head_end], shape.after[tail_start:]]
        before, after = self._fixed(shape.before[head_end:]), self._fixed(shape.after[:tail_start])
        layouts: list[tuple[_Fixed | int, ...]]
        if between_anchors:
            first, last = between_anchors[0], between_anchors[-1]
            fixed.append(shape.between[first:last])
            layouts = [(before, 0, self._fixed(shape.between[:first])), (self._fixed(shape.between[last:]), 1, after)]
        else:
            layouts = [(before, 0, self._fixed(shape.between), 1, after)]
        patterns = None if counter.matches_added else [_pattern(layout) for layout in layouts]
        return _Junctions(sum(counter.count(fixed)) + shape.end_tokens, layouts, patterns)

    def _fixed(self, text: str) -> _Fixed:
        return _Fixed(text, self.counter.added_spans(text))


def _pattern(layout: tuple[_Fixed | int, ...]) -> str:
    """A junction's layout as a str.format pattern of (instruction, output)."""
    return "".join(
        f"{{{element}}}" if isinstance(element, int) else element.text.replace("{", "{{").replace("}", "}}")
        for element in layout
    )
