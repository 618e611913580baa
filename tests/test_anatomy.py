"""Taking composed samples apart: the meta-instruction lines and one block per response."""

from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.anatomy import BARE, meta_instruction, meta_instructions, response_blocks
from transforms.core.randomness import HashStream
from transforms.core.rules import load_rules
from transforms.core.strategies import PRIMARY_SEPARATOR, compose

RULES = load_rules()
# Texts that can look like the scaffolding around them: labels, tags, numbers and blank lines.
text = st.text(alphabet="ab 1.()<>/=#\n", min_size=1, max_size=30).filter(lambda t: t.strip())


@settings(max_examples=300, deadline=None)
@given(
    prompts=st.lists(text, min_size=1, max_size=8),
    outputs_=st.lists(text, min_size=8, max_size=8),
    strategy=st.sampled_from(["primary", "format", "order", "mask", "both"]),
    seed=st.integers(0, 2**32),
)
def test_composed_samples_come_apart_into_their_meta_instruction_and_response_blocks(prompts, outputs_, strategy, seed):
    # Each record gets a marker, so which block holds which response can be checked.
    prompts = [f"P{i}: {prompt}" for i, prompt in enumerate(prompts)]
    outputs = [f"R{i}: {output}" for i, output in enumerate(outputs_[: len(prompts)])]
    composition = compose(prompts, outputs, strategy, RULES, HashStream(seed, "anatomy"))

    meta = meta_instruction(composition.instruction, composition.kind, RULES)
    found = meta_instructions(composition.instruction, RULES)
    lines = composition.instruction.split("\n")
    if composition.kind == "primary":
        assert meta == ""
    elif not found:
        assert composition.kind == "format" and meta == BARE
    else:
        assert meta == " ".join(found) and len(found) <= 1 + (composition.rule is not None)
        assert all(line in lines and not any(f"P{i}:" in line for i in range(len(prompts))) for line in found)
    if composition.rule is not None:
        assert len(found) == 2  # the format and the rule meta-instruction

    separator = PRIMARY_SEPARATOR if composition.kind == "primary" else RULES.response_separator
    blocks = response_blocks(composition.output, [outputs[i] for i in composition.response_order], separator)
    assert blocks is not None and len(blocks) == len(composition.response_order)
    assert separator.join(blocks) == composition.output
    for block, position in zip(blocks, composition.response_order):
        assert outputs[position] in block


def test_a_missing_text_means_no_blocks():
    assert response_blocks("1. yes\n\n2. no", ["yes", "maybe"], "\n\n") is None
    assert response_blocks("", [], "\n\n") == []


def test_a_block_ends_at_the_first_separator_after_its_text_even_when_the_text_holds_one():
    output = "1. first line\n\nsecond paragraph\n\n2. <r>\nshort\n</r>"
    assert response_blocks(output, ["first line\n\nsecond paragraph", "short"], "\n\n") == [
        "1. first line\n\nsecond paragraph",
        "2. <r>\nshort\n</r>",
    ]


def test_no_meta_instruction_when_no_line_reads_like_one():
    assert meta_instruction("Write a poem.\nAbout cats.", "permute", RULES) is None
    assert meta_instruction("Write a poem.\nAbout cats.", "format", RULES) == BARE


def test_meta_instructions_are_found_before_and_after_the_list_but_not_inside_it():
    format_line = "Respond to all of the tasks, each response in its own paragraph."
    rule_line = "Ignore the 2 shortest instructions (counted in words) and answer the rest; if lengths tie, the earlier ones are ignored."
    listed = "1. Write a poem.\n\n2. Respond to all of the tasks, each response in its own paragraph."
    assert meta_instructions(f"{format_line}\n\n{listed}\n{rule_line}", RULES) == [format_line, rule_line]
    assert meta_instructions(f"{format_line}\n{rule_line}\n\n{listed}", RULES) == [format_line, rule_line]
    assert meta_instructions(f"{listed}\n\n{format_line}\n{rule_line}", RULES) == [format_line, rule_line]
    assert meta_instruction(f"{listed}\n\n{rule_line}", "maskout", RULES) == rule_line
