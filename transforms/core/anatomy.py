"""Taking a composed sample apart again: its meta-instruction and its response blocks.

`compose` (strategies.py) writes the meta-instruction as one line before or after the
listed instructions, and joins the responses (label, optional tags, text) with the
rules' response separator. Given the records' own texts, both can be found again.
"""

from __future__ import annotations

from collections.abc import Sequence

from transforms.core.rules import Rules


def meta_instruction(instruction: str, strategy: str, rules: Rules) -> str | None:
    """The meta-instruction line ("" for a primary sample); None when no line looks like one."""
    if strategy == "primary":
        return ""
    openings = tuple(
        {phrasing.split("{", 1)[0] for phrasings in rules.format.values() for phrasing in phrasings} - {""}
    )
    lines = instruction.split("\n")
    return next((line for line in (lines[0], lines[-1], *lines) if line.startswith(openings)), None)


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
