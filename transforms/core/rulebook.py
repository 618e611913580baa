"""Every permute and maskout rule, one entry each: which responses it keeps and in what
order, when it applies, and what its phrasings must say.

A new rule is one entry here plus its phrasings in the rules file. The rules file only
says how a rule is phrased; the functions here decide what the sample holds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from transforms.core.randomness import HashStream

OrderFn = Callable[[Sequence[str], HashStream], list[int]]  # instruction texts -> positions in response order
MaskFn = Callable[[Sequence[str], int, HashStream], list[int]]  # texts, how many to mask -> masked positions


@functools.lru_cache(maxsize=1 << 16)  # a text is counted once per group it is drawn in, for several rules and ends
def words(text: str) -> int:
    return len(text.split())


@functools.lru_cache(maxsize=1 << 16)  # asked of every instruction for each rule that needs it, as `words`
def first_letter(text: str) -> str | None:
    """The first alphabetic character, case-folded, if it is a Latin letter a-z."""
    for char in text:
        if char.isalpha():
            folded = char.casefold()
            return folded if "a" <= folded <= "z" else None
    return None


def mask_count(n: int, ratio: float) -> int:
    return max(1, math.floor(n * ratio))


def _always(texts: Sequence[str]) -> bool:
    return True


def _all_start_with_a_letter(texts: Sequence[str]) -> bool:
    return all(first_letter(text) is not None for text in texts)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """What every rule declares. `placeholders`: phrasing form -> the fields each phrasing of
    that form must contain; `needs_numbers`: the rule names instruction numbers, so it is only
    drawn for numbered instructions."""

    kind: ClassVar[str]
    forms: ClassVar[tuple[str, ...]]  # the phrasing lists the rules file holds for the rule
    allowed: ClassVar[frozenset[str]]  # the placeholders its phrasings may use

    name: str
    needs_numbers: bool = False
    applies: Callable[[Sequence[str]], bool] = _always
    placeholders: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def usable(self, texts: Sequence[str], numbered: bool, verdicts: dict[Callable, bool]) -> bool:
        """Whether the rule can be drawn for these instructions; `verdicts` holds the `applies`
        answers already given for them, as rules share conditions."""
        if self.needs_numbers and not numbered:
            return False
        verdict = verdicts.get(self.applies)
        if verdict is None:
            verdict = verdicts[self.applies] = self.applies(texts)
        return verdict


@dataclass(frozen=True, kw_only=True)
class PermuteRule(Rule):
    """Responds to every instruction, in the order `order` gives."""

    kind = "permute"
    forms = ("phrasings",)
    allowed = frozenset({"sequence"})

    order: OrderFn


@dataclass(frozen=True, kw_only=True)
class MaskRule(Rule):
    """Leaves out the responses at the positions `mask` gives; the rest keep instruction order.
    A phrasing of the form `one` is used when one response is left out, `many` otherwise."""

    kind = "maskout"
    forms = ("one", "many")
    allowed = frozenset({"numbers", "m"})

    mask: MaskFn


def _sorted_positions(keys: Sequence, descending: bool = False) -> list[int]:
    # sorted() is stable for reverse=True as well, so ties keep their original position.
    return sorted(range(len(keys)), key=keys.__getitem__, reverse=descending)


def _parity_order(n: int, odd_first: bool) -> list[int]:
    odd_numbered = list(range(0, n, 2))  # numbers 1, 3, 5, ...
    even_numbered = list(range(1, n, 2))
    return odd_numbered + even_numbered if odd_first else even_numbered + odd_numbered


def _stated_sequence(texts: Sequence[str], stream: HashStream) -> list[int]:
    order = list(range(len(texts)))
    stream.shuffle(order)
    if order == sorted(order):  # state an order that differs from the natural one
        order = order[1:] + order[:1]
    return order


def _random_positions(texts: Sequence[str], m: int, stream: HashStream) -> list[int]:
    positions = list(range(len(texts)))
    stream.shuffle(positions)
    return sorted(positions[:m])


_SEQUENCE = frozenset({"sequence"})
_NUMBERS = frozenset({"numbers"})
_HOW_MANY = frozenset({"m"})

PERMUTE_RULES: dict[str, PermuteRule] = {
    rule.name: rule
    for rule in (
        PermuteRule(name="SEQUENCE", order=_stated_sequence, needs_numbers=True, placeholders={"phrasings": _SEQUENCE}),
        PermuteRule(name="REVERSE", order=lambda texts, stream: list(range(len(texts)))[::-1]),
        PermuteRule(
            name="ALPHA",
            order=lambda texts, stream: _sorted_positions([first_letter(t) for t in texts]),
            applies=_all_start_with_a_letter,
        ),
        PermuteRule(
            name="ALPHA_REVERSE",
            order=lambda texts, stream: _sorted_positions([first_letter(t) for t in texts], descending=True),
            applies=_all_start_with_a_letter,
        ),
        PermuteRule(name="WORDS_ASC", order=lambda texts, stream: _sorted_positions([words(t) for t in texts])),
        PermuteRule(
            name="WORDS_DESC", order=lambda texts, stream: _sorted_positions([words(t) for t in texts], descending=True)
        ),
        PermuteRule(name="CHARS_ASC", order=lambda texts, stream: _sorted_positions([len(t) for t in texts])),
        PermuteRule(
            name="CHARS_DESC", order=lambda texts, stream: _sorted_positions([len(t) for t in texts], descending=True)
        ),
        PermuteRule(
            name="ODD_EVEN", order=lambda texts, stream: _parity_order(len(texts), odd_first=True), needs_numbers=True
        ),
        PermuteRule(
            name="EVEN_ODD", order=lambda texts, stream: _parity_order(len(texts), odd_first=False), needs_numbers=True
        ),
    )
}

MASK_RULES: dict[str, MaskRule] = {
    rule.name: rule
    for rule in (
        MaskRule(
            name="MASK_LISTED",
            mask=_random_positions,
            needs_numbers=True,
            placeholders={"one": _NUMBERS, "many": _NUMBERS},
        ),
        MaskRule(
            name="MASK_LONGEST",
            mask=lambda texts, m, stream: sorted(_sorted_positions([-words(t) for t in texts])[:m]),
            placeholders={"many": _HOW_MANY},
        ),
        MaskRule(
            name="MASK_SHORTEST",
            mask=lambda texts, m, stream: sorted(_sorted_positions([words(t) for t in texts])[:m]),
            placeholders={"many": _HOW_MANY},
        ),
        MaskRule(name="MASK_ODD", mask=lambda texts, m, stream: list(range(0, len(texts), 2)), needs_numbers=True),
        MaskRule(name="MASK_EVEN", mask=lambda texts, m, stream: list(range(1, len(texts), 2)), needs_numbers=True),
    )
}

RULES: dict[str, Rule] = {**PERMUTE_RULES, **MASK_RULES}
