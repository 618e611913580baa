"""How composed samples are laid out, against the rules file's structure knobs and phrasings.

Every share is measured over thousands of composes with fixed streams; the tolerances are
about five standard deviations, so a knob that is ignored or misread fails.
"""

import dataclasses
import re
from collections import Counter

import pytest

from transforms.core.overheads import Overheads
from transforms.core.randomness import HashStream
from transforms.core.rulebook import MASK_RULES, PERMUTE_RULES
from transforms.core.rules import load_rules
from transforms.core.strategies import Composition, compose, draw_look

RULES = load_rules()
PROMPTS = [
    "Name three rivers in Europe",
    "Count to five",
    "Describe a sunset over the sea in one long sentence",
    "Bake bread",
    "Write a haiku about rain",
]
OUTPUTS = [f"zq{i} done" for i in range(len(PROMPTS))]
DRAWS = 5000
# The same rules, with every format phrasing starting "FORMAT:" and every rule phrasing "RULE:",
# so that a test can tell the two meta-instructions apart.
MARKED = dataclasses.replace(
    RULES,
    format={kind: tuple(f"FORMAT: {p}" for p in phrasings) for kind, phrasings in RULES.format.items()},
    permute={rule: tuple(f"RULE: {p}" for p in phrasings) for rule, phrasings in RULES.permute.items()},
    maskout={
        rule: dataclasses.replace(p, one=tuple(f"RULE: {x}" for x in p.one), many=tuple(f"RULE: {x}" for x in p.many))
        for rule, p in RULES.maskout.items()
    },
)


def marked_lines(instruction: str, mark: str) -> list[int]:
    return [i for i, line in enumerate(instruction.split("\n")) if line.startswith(mark)]


def before_the_list(instruction: str, line: int) -> bool:
    return line < instruction[: instruction.index(PROMPTS[0])].count("\n")


def tagged(output: str) -> bool:
    # Outputs are one line each: a block of three lines or more holds a begin and an end tag.
    return max(block.count("\n") for block in output.split(RULES.response_separator)) >= 2


def numbered(instruction: str) -> bool:
    second = instruction.index(PROMPTS[1])
    return "2" in instruction[max(0, second - 12) : second]


def samples(strategy: str, rules=MARKED, name: str = "structure"):
    return [compose(PROMPTS, OUTPUTS, strategy, rules, HashStream(name, strategy, i)) for i in range(DRAWS)]


@pytest.fixture(scope="module")
def format_samples():
    return samples("format")


@pytest.fixture(scope="module")
def rule_samples():
    return [c for c in samples("both") if c.rule is not None]


def test_the_built_in_structure_is_the_originals():
    s = RULES.structure
    assert (s.bare_format, s.meta_before, s.unnumbered, s.tagged) == (0.2, 0.5, 0.09, 0.5)


def test_format_samples_are_bare_at_the_knobs_rate_with_neither_meta_instruction_nor_tags(format_samples):
    bare = [c for c in format_samples if not marked_lines(c.instruction, "FORMAT:")]
    assert abs(len(bare) / DRAWS - RULES.structure.bare_format) < 0.02
    assert all(c.kind == "format" and c.rule is None and not tagged(c.output) for c in bare)
    dressed = [c for c in format_samples if marked_lines(c.instruction, "FORMAT:")]
    assert abs(sum(tagged(c.output) for c in dressed) / len(dressed) - RULES.structure.tagged) < 0.04


def test_only_format_samples_go_without_a_meta_instruction(rule_samples):
    assert len(rule_samples) > 2500
    for c in rule_samples:
        assert len(marked_lines(c.instruction, "FORMAT:")) == 1 and len(marked_lines(c.instruction, "RULE:")) == 1


def test_format_and_rule_meta_instructions_stand_before_or_after_the_list_independently(rule_samples):
    sides = Counter(
        (
            before_the_list(c.instruction, marked_lines(c.instruction, "FORMAT:")[0]),
            before_the_list(c.instruction, marked_lines(c.instruction, "RULE:")[0]),
        )
        for c in rule_samples
    )
    n, p = len(rule_samples), RULES.structure.meta_before
    assert abs(sum(count for (fmt, _), count in sides.items() if fmt) / n - p) < 0.05
    assert abs(sum(count for (_, rule), count in sides.items() if rule) / n - p) < 0.05
    assert abs(sides[True, True] / n - p * p) < 0.04 and abs(sides[False, False] / n - (1 - p) ** 2) < 0.04


def test_a_meta_instruction_stands_on_its_own_lines_apart_from_the_list(rule_samples):
    for c in rule_samples[:500]:
        lines = c.instruction.split("\n")
        for index in marked_lines(c.instruction, "FORMAT:") + marked_lines(c.instruction, "RULE:"):
            assert not any(prompt in lines[index] for prompt in PROMPTS)


def test_unnumbered_instructions_at_the_files_rate(format_samples):
    unnumbered = [c for c in format_samples if not numbered(c.instruction)]
    assert abs(len(unnumbered) / DRAWS - RULES.structure.unnumbered) < 0.02


def test_structure_knobs_steer_the_draws():
    rules = dataclasses.replace(
        MARKED,
        structure=dataclasses.replace(RULES.structure, bare_format=1.0, unnumbered=1.0, meta_before=1.0, tagged=0.0),
    )
    for i in range(200):
        c = compose(PROMPTS, OUTPUTS, "both", rules, HashStream("knobs", i))
        assert not numbered(c.instruction) and not tagged(c.output)
        assert (c.kind == "format") == (not marked_lines(c.instruction, "FORMAT:"))
        assert all(before_the_list(c.instruction, line) for line in marked_lines(c.instruction, "RULE:"))


def test_the_rules_file_holds_at_least_150_phrasings_25_tag_styles_and_15_tag_word_pairs():
    assert len(set(RULES.all_phrasings())) >= 150
    assert len(set(RULES.tag_styles)) >= 25 and len(set(RULES.tag_words)) >= 15 and len(set(RULES.labels)) >= 15
    assert len(set(RULES.all_tags(1))) == 3 * len(RULES.tag_styles) * len(RULES.tag_words)
    assert all(len(phrasings) >= 10 for phrasings in RULES.format.values())
    assert all(len(phrasings) >= 5 for phrasings in RULES.permute.values())


def test_tag_words_are_drawn_in_lower_upper_and_capitalized_case(format_samples):
    words = {word.lower() for pair in RULES.tag_words for word in pair}
    cases = Counter()
    for c in format_samples:
        if tagged(c.output):
            for word in re.findall(r"[A-Za-z][A-Za-z ]*[A-Za-z]|[A-Za-z]", c.output.split("\n")[-1]):
                if word.lower() in words and len(word) > 1:
                    cases["upper" if word.isupper() else "lower" if word.islower() else "capitalized"] += 1
    assert min(cases.values()) > 200 and len(cases) == 3


def stated_under(table: str, rule: str, strategy: str) -> list[tuple[Composition, str]]:
    """The compositions, of 300 drawn with `rule` as the only rule of `table`, that state a rule, with the line
    stating it; every composition's responses are checked to stand in its `response_order`."""
    rules = dataclasses.replace(MARKED, **{table: {rule: getattr(MARKED, table)[rule]}})
    stated = []
    for i in range(300):
        c = compose(PROMPTS, OUTPUTS, strategy, rules, HashStream(table, rule, i))
        assert [int(k) for k in re.findall(r"zq(\d)", c.output)] == list(c.response_order)
        if c.rule is not None:
            stated.append((c, c.instruction.split("\n")[marked_lines(c.instruction, "RULE:")[0]]))
    assert len(stated) > 100
    return stated


@pytest.mark.parametrize("rule", sorted(PERMUTE_RULES))
def test_a_permute_rule_answers_in_the_order_it_states(rule):
    for c, stated in stated_under("permute", rule, "order"):
        if rule == "SEQUENCE":
            assert [int(k) - 1 for k in re.findall(r"\d", stated)] == list(c.response_order)
        else:
            assert list(c.response_order) == PERMUTE_RULES[rule].order(PROMPTS, HashStream("any"))


@pytest.mark.parametrize("rule", sorted(MASK_RULES))
def test_a_mask_rule_leaves_out_what_it_states(rule):
    for c, stated in stated_under("maskout", rule, "mask"):
        numbers = [int(k) for k in re.findall(r"\d+", stated)]
        assert sorted(c.masked + c.response_order) == list(range(len(PROMPTS))) and c.masked
        if rule == "MASK_LISTED":
            assert [k - 1 for k in numbers] == list(c.masked)
        elif rule in ("MASK_LONGEST", "MASK_SHORTEST"):
            assert numbers in ([], [len(c.masked)]) and (numbers or len(c.masked) == 1)
        if rule != "MASK_LISTED":  # the one rule whose choice is random: it states it, as checked above
            assert list(c.masked) == MASK_RULES[rule].mask(PROMPTS, len(c.masked), HashStream("any"))


TIGHT_ESTIMATE_SLACK = 80  # tokens, median over the samples drawn (56 when written; 9-record groups)


def test_the_overhead_estimate_bounds_what_composing_adds(quicktok_lengths):
    overheads = Overheads.measure(quicktok_lengths, RULES)
    prompts = [f"{p} please" for p in PROMPTS] * 2
    outputs = [f"answer {i}" for i in range(len(prompts))]
    alone = quicktok_lengths.count(list(zip(prompts, outputs)))
    added, slack = [], []
    for i in range(400):
        n = 1 + i % len(prompts)
        stream = HashStream("overhead", i)
        look = draw_look("both", RULES, stream.restarted(), single=n == 1)
        c = compose(prompts[:n], outputs[:n], "both", RULES, stream)
        exact = quicktok_lengths.count([(c.instruction, c.output)])[0]
        estimate = overheads.costs(look).estimate(sum(alone[:n]), n)
        assert exact <= estimate, c.instruction
        added.append(exact - sum(alone[:n]))
        slack.append(estimate - exact)
    assert max(added) > max(overheads.format_phrasings.values())  # long phrasings and tags were drawn
    # Drawn from the sample's look, the estimate is close: a loose one sends groups to exact counts.
    assert sorted(slack)[len(slack) // 2] < TIGHT_ESTIMATE_SLACK, sorted(slack)
