"""Upper estimates of what composing adds to the records' own lengths, given a sample's look.

A group whose estimate fits takes the next record without counting; where the estimate does
not fit, the composed group is counted exactly. An estimate that is too low only costs a
shrink: the exact count of every final sample decides whether it fits. The look (kind, label,
tags, separators) is drawn before the records are known, so only what depends on the records
is left to a maximum: which meta-instruction phrasing, which rule, and the numbers it lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from transforms.core.lengths import SampleLengths
from transforms.core.rules import Rules, filled_tags
from transforms.core.strategies import FORMAT_KIND, PRIMARY_SEPARATOR, Look

_BIG = 99  # labels, tags and listed numbers are counted with a two-digit number
_RULE_KINDS = ("permute", "maskout")
_FILLS = 3  # placeholders a format phrasing may fill (label, begin, end)
_JOINS = 2  # a token where a record's instruction, and its response, meet what composing puts around them


class Costs(NamedTuple):
    """What a sample of one look adds to its records' own lengths (each counted as a plain sample,
    with the length template around it): once per sample, and per record."""

    fixed: int
    per_record: int

    def estimate(self, record_tokens: int, count: int) -> int:
        """Upper estimate of `count` records composed in the look, given the sum of their own lengths."""
        return record_tokens + self.fixed + self.per_record * count


@dataclass(frozen=True)
class Overheads:
    template: int  # tokens of the length template itself, paid once per sample
    format_phrasings: Mapping[str, int] = field(default_factory=dict)  # format kind -> its longest, fills left empty
    rule_phrasings: Mapping[str, int] = field(default_factory=dict)  # permute/maskout -> its longest phrasing
    texts: Mapping[str, int] = field(default_factory=dict)  # a label (numbered 99) or a separator -> tokens
    tags: Mapping[tuple[tuple[str, str], tuple[str, str]], int] = field(default_factory=dict)  # (style, words)
    response_separator: int = 0
    number: int = 0  # a number the meta-instruction lists, with its separator

    def costs(self, look: Look) -> Costs:
        # The records' own lengths count the template once each, the sample once in all.
        texts = self.texts
        if look.kind == "primary":
            return Costs(self.template, texts.get(PRIMARY_SEPARATOR, 0) - self.template)
        label = texts.get(look.label, 0)
        tags = self.tags.get((look.tag_style, look.tag_words), 0) if look.tag_style else 0
        per_record = 2 * label + tags + texts.get(look.separator, 0) + self.response_separator + _JOINS
        metas, phrasings = 0, 0
        if not look.bare:
            # the format phrasing names the first label and the tags: their tokens, and one where each joins
            metas, phrasings = 1, self.format_phrasings.get(FORMAT_KIND[bool(look.label), bool(look.tag_style)], 0)
            phrasings += label + tags + _FILLS
        if look.kind in _RULE_KINDS:
            metas += 1
            phrasings += self.rule_phrasings.get(look.kind, 0)
            per_record += 2 * self.number
        # each meta-instruction with its separator and a token where they join
        fixed = phrasings + metas * (texts.get(look.meta_separator, 0) + 1)
        return Costs(fixed + self.template, per_record - self.template)

    @classmethod
    def measure(cls, lengths: SampleLengths, rules: Rules) -> Overheads:
        """Counts every phrasing, label, separator and tag pair the rules hold, in one call."""
        empty = dict.fromkeys(("label", "begin", "end"), '""')  # the look's own are added by `costs`
        phrasings = {kind: [p.format(**empty) for p in texts] for kind, texts in rules.format.items()}
        phrasings["permute"] = [p.format(sequence="") for texts in rules.permute.values() for p in texts]
        phrasings["maskout"] = [
            p.format(numbers="", m=_BIG) for forms in rules.maskout.values() for p in forms.one + forms.many
        ]
        texts = {label: label.format(n=_BIG) for label in rules.labels}
        texts |= {label.rstrip() + "\n": text.rstrip() + "\n" for label, text in texts.items()}  # see draw_look
        texts |= {s: s for s in (*rules.instruction_separators, *rules.meta_separators, PRIMARY_SEPARATOR)}
        tags = {
            (style, words): "{}\n\n{}".format(*filled_tags(style, *words, _BIG)) for style, words in rules.tag_choices()
        }
        singles = [rules.response_separator, f", {_BIG}"]
        every = [*itertools.chain.from_iterable(phrasings.values()), *texts.values(), *tags.values(), *singles]
        counted = iter(lengths.counter.count(every))
        longest = {kind: max([next(counted) for _ in kind_texts], default=0) for kind, kind_texts in phrasings.items()}
        return cls(
            template=lengths.count([("", "")])[0],
            format_phrasings={kind: n for kind, n in longest.items() if kind not in _RULE_KINDS},
            rule_phrasings={kind: longest[kind] for kind in _RULE_KINDS},
            texts={key: next(counted) for key in texts},
            tags={key: next(counted) for key in tags},
            response_separator=next(counted),
            number=next(counted),
        )
