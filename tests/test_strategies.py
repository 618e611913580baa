import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.randomness import HashStream
from transforms.core.rulebook import MASK_RULES, PERMUTE_RULES, first_letter, mask_count
from transforms.core.rulebook import RULES as RULEBOOK
from transforms.core.rules import load_rules
from transforms.core.strategies import compose

RULES = load_rules()
TEXTS = ["banana split", "Apple pie recipe please", "cherry", "apple"]


@pytest.mark.parametrize(
    "rule, order",
    [
        ("REVERSE", [3, 2, 1, 0]),
        ("ALPHA", [1, 3, 0, 2]),  # a, a (tie keeps position), b, c
        ("ALPHA_REVERSE", [2, 0, 1, 3]),
        ("WORDS_ASC", [2, 3, 0, 1]),
        ("WORDS_DESC", [1, 0, 2, 3]),
        ("CHARS_ASC", [3, 2, 0, 1]),
        ("CHARS_DESC", [1, 0, 2, 3]),
        ("ODD_EVEN", [0, 2, 1, 3]),
        ("EVEN_ODD", [1, 3, 0, 2]),
    ],
)
def test_permute_rules_give_the_stated_order(rule, order):
    assert PERMUTE_RULES[rule].order(TEXTS, HashStream("x")) == order


def test_stated_sequence_is_a_permutation_other_than_the_natural_order():
    for i in range(200):
        order = PERMUTE_RULES["SEQUENCE"].order(TEXTS[:2], HashStream("seq", i))
        assert order == [1, 0]


@pytest.mark.parametrize(
    "rule, m, masked",
    [
        ("MASK_LONGEST", 1, [1]),
        ("MASK_LONGEST", 2, [0, 1]),
        ("MASK_SHORTEST", 1, [2]),  # positions 2 and 3 tie at one word: the earlier goes
        ("MASK_SHORTEST", 2, [2, 3]),
        ("MASK_ODD", 1, [0, 2]),
        ("MASK_EVEN", 1, [1, 3]),
    ],
)
def test_mask_rules_leave_out_what_they_state(rule, m, masked):
    assert MASK_RULES[rule].mask(TEXTS, m, HashStream("x")) == masked


def test_mask_count_follows_the_ratio_with_at_least_one():
    assert [mask_count(n, 0.1) for n in (1, 2, 9, 10, 20)] == [1, 1, 1, 1, 2]
    assert mask_count(10, 0.5) == 5


def test_first_letter_is_latin_only():
    assert [first_letter(t) for t in ["'Quote' me", "3 apples", "Élan", "你好"]] == ["q", "a", None, None]


groups = st.lists(
    st.tuples(st.text(min_size=1, max_size=40).filter(str.strip), st.text(min_size=1, max_size=40).filter(str.strip)),
    min_size=1,
    max_size=9,
)


@settings(max_examples=300, deadline=None)
@given(
    group=groups, strategy=st.sampled_from(["primary", "format", "order", "mask", "both"]), name=st.integers(0, 10**6)
)
def test_composition_contains_exactly_the_stated_responses(group, strategy, name):
    prompts = [f"{p} [{i}]" for i, (p, _) in enumerate(group)]
    outputs = [f"<<out {i}: {o}>>" for i, (_, o) in enumerate(group)]
    c = compose(prompts, outputs, strategy, RULES, HashStream(name))
    n = len(group)
    assert sorted(c.response_order + c.masked) == list(range(n))
    assert len(c.response_order) >= 1
    # Responses appear in the stated order; masked ones do not appear at all.
    found = [int(i) for i in re.findall(r"<<out (\d+): ", c.output)]
    assert found == list(c.response_order)
    for _i, prompt in enumerate(prompts):
        assert prompt in c.instruction
    if n == 1 or strategy in ("primary", "format"):
        assert c.rule is None and c.kind in ("primary", "format")
    if strategy == "primary":
        assert (c.instruction, c.output) == ("\n\n".join(prompts), "\n\n".join(outputs))
    # The pieces say where each record's text stands, for counting.
    assert [c.instruction_pieces[slot] for slot in c.prompt_slots] == prompts
    assert [c.output_pieces[slot] for slot in c.output_slots] == [outputs[i] for i in c.response_order]


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]


def test_rules_naming_numbers_only_with_visible_numbers():
    prompts = [f"task {word}" for word in WORDS[:5]]
    numbered_rules, unnumbered_samples = 0, 0
    for i in range(600):
        c = compose(prompts, [f"done {word}" for word in WORDS[:5]], "both", RULES, HashStream("numbers", i))
        numbered = all(
            str(k + 1) in c.instruction[max(0, c.instruction.index(p) - 12) : c.instruction.index(p)]
            for k, p in enumerate(prompts)
        )
        unnumbered_samples += not numbered
        if c.rule and RULEBOOK[c.rule].needs_numbers:
            numbered_rules += 1
            assert numbered, c.instruction
    assert numbered_rules > 50 and unnumbered_samples > 20


def test_sequence_phrasing_states_the_order():
    prompts = [f"task {word}" for word in WORDS[:6]]
    hits = 0
    for i in range(600):
        c = compose(prompts, [f"done {word}" for word in WORDS[:6]], "order", RULES, HashStream("s", i))
        if c.rule == "SEQUENCE":
            hits += 1
            stated = re.findall(r"\d+(?:(?:, | -> | then | > )\d+){5}", c.instruction)
            assert len(stated) == 1
            assert [int(x) - 1 for x in re.findall(r"\d+", stated[0])] == list(c.response_order)
    assert hits > 10


def test_strategy_both_draws_each_kind_about_a_third():
    kinds = Counter(
        compose(["a b", "c d e", "f"], ["x", "y", "z"], "both", RULES, HashStream("k", i)).kind for i in range(3000)
    )
    for kind in ("format", "permute", "maskout"):
        assert 850 < kinds[kind] < 1150


def test_one_record_gets_format_only():
    for i in range(50):
        c = compose(["only"], ["one"], "both", RULES, HashStream("one", i))
        assert (c.kind, c.rule, c.masked) == ("format", None, ())
