"""Taking a composed sample apart again: its meta-instructions and its response blocks.

`compose` (strategies.py) writes each meta-instruction (format, rule) as one line before
or after the listed instructions, and joins the responses (label, optional tags, text)
with the rules' response separator. Given the records' own texts, both can be found again.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence

from transforms.core.rules import Rules

# What `meta_instruction` gives for a format sample drawn bare (structure.bare_format).
BARE = "(none: a bare format sample lists its instructions without a meta-instruction)"


def meta_instructions(instruction: str, rules: Rules) -> list[str]:
    """The lines at either end of the instruction, before and after the listed instructions,
    that read as one of the rules' phrasings, in order."""
    reads_as_phrasing = _phrasing_pattern(tuple(rules.all_phrasings())).fullmatch
    lines = instruction.split("\n")
    top = 0
    while top < len(lines) and (not lines[top] or reads_as_phrasing(lines[top])):
        top += 1
    bottom = len(lines)
    while bottom > top and (not lines[bottom - 1] or reads_as_phrasing(lines[bottom - 1])):
        bottom -= 1
    return [line for line in lines[:top] + lines[bottom:] if line]


def meta_instruction(instruction: str, strategy: str, rules: Rules) -> str | None:
    """The meta-instruction lines joined by a space ("" for a primary sample, BARE for a format
    sample without one); None when a permute or maskout sample has no line that reads like one."""
    if strategy == "primary":
        return ""
    found = meta_instructions(instruction, rules)
    if found:
        return " ".join(found)
    return BARE if strategy == "format" else None


@functools.lru_cache(maxsize=8)
def _phrasing_pattern(phrasings: tuple[str, ...]) -> re.Pattern[str]:
    """Any one of the phrasings, each placeholder standing for some text."""
    return re.compile(
        "|".join(
            "".join(re.escape(literal) + ("" if field is None else ".+?") for literal, field, _, _ in parsed)
            for parsed in (string.Formatter().parse(phrasing) for phrasing in phrasings)
        )
    )


def response_blocks(output: str, texts: Sequence[str], separator: str) -> list[str] | None:
    """Splits `output` into one block per response, given each response's own text in output order.

    A block ends at the first separator after its text: labels and tags hold no separator,
    while the text itself may. None when a text cannot be found where it should be.
    """
    blocks, start = [], 0
    for position, text in enumerate(texts):
        found = output.find(text, start)
        if found < 0:
            return None
        end = len(output) if position == len(texts) - 1 else output.find(separator, found + len(text))
        if end < 0:
            return None
        blocks.append(output[start:end])
        start = end + len(separator)
    return blocks if blocks or not output else None
