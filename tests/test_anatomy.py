"""Taking composed samples apart: the meta-instruction line and one block per response."""

from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.anatomy import meta_instruction, response_blocks
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
    if composition.kind == "primary":
        assert meta == ""
    else:
        assert meta in composition.instruction.split("\n") and not any(f"P{i}:" in meta for i in range(len(prompts)))

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
    assert meta_instruction("Write a poem.\nAbout cats.", "format", RULES) is None
