"""The scored texts: chat rendering, token-offset masking, truncation, cache keys, IFD arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.core.ifd import (
    INPUT_SEPARATOR,
    PROMPT_TEMPLATES,
    SYSTEM_PROMPT,
    PairBuilder,
    ScoringIdentity,
    ScoringPair,
    TemplateError,
    ifd_score,
    length_bucket,
    micro_batches,
    resolve_template,
    response_token_range,
)
from transforms.core.records import Record, Rejection


def identity(template: str, max_tokens: int = 512) -> ScoringIdentity:
    return ScoringIdentity("model", "tokenizer", template, max_tokens, "float32")


def record(instruction="describe the river", input_text="", output="the river runs to the ocean") -> Record:
    return Record("r", instruction, input_text, output, "test.jsonl:0")


def decode(tokenizer, ids) -> str:
    return tokenizer.decode(list(ids))


def scored_text(tokenizer, ids, n) -> str:
    return decode(tokenizer, ids[len(ids) - n :])


def assert_scores_the_response(tokenizer, ids, n, response):
    """The last n tokens are the response; the first may also carry the template's space before it."""
    text = scored_text(tokenizer, ids, n)
    assert text.endswith(response) and not text[: len(text) - len(response)].strip()


def test_response_token_range_uses_overlap_of_offsets():
    offsets = [(0, 3), (3, 7), (7, 9), (9, 12), (12, 12), (12, 15)]
    assert response_token_range(offsets, 7, 12) == (2, 4)
    assert response_token_range(offsets, 5, 10) == (1, 4)  # tokens straddling the edges count
    assert response_token_range(offsets, 12, 15) == (5, 6)  # the empty-span token is not a response token
    assert response_token_range(offsets, 20, 25) == (0, 0)


@pytest.mark.parametrize("template_name", ["own", *PROMPT_TEMPLATES])
def test_masked_tokens_are_exactly_the_response(tokenizer, template_name):
    template = tokenizer.chat_template if template_name == "own" else PROMPT_TEMPLATES[template_name]
    # The response also occurs inside the instruction: a string search for it would land there.
    item = record("say: the river runs to the ocean", "beta", "the river runs to the ocean")
    [pair] = PairBuilder(tokenizer, identity(template)).build([item])
    assert isinstance(pair, ScoringPair)
    assert_scores_the_response(tokenizer, pair.conditional, pair.conditional_response, item.output)
    assert_scores_the_response(tokenizer, pair.prior, pair.prior_response, item.output)
    conditional = decode(tokenizer, pair.conditional)
    assert SYSTEM_PROMPT in conditional and "say: the river runs to the ocean" + INPUT_SEPARATOR + "beta" in conditional
    assert SYSTEM_PROMPT not in decode(tokenizer, pair.prior)
    # The texts stop after the response: later tokens cannot change a causal LM's losses.
    assert conditional.endswith(item.output)


def test_own_template_renders_chatml(tokenizer):
    [pair] = PairBuilder(tokenizer, identity(tokenizer.chat_template)).build([record()])
    assert decode(tokenizer, pair.conditional) == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\ndescribe the river<|im_end|>\n"
        "<|im_start|>assistant\nthe river runs to the ocean"
    )
    assert decode(tokenizer, pair.prior) == "<|im_start|>assistant\nthe river runs to the ocean"


def test_a_response_at_the_start_of_the_text_gets_a_bos_token_to_be_predicted_from(tokenizer):
    bare = "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] + ': ' }}{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
    [pair] = PairBuilder(tokenizer, identity(bare)).build([record()])
    assert pair.prior[0] == tokenizer.bos_token_id
    assert scored_text(tokenizer, pair.prior, pair.prior_response) == "the river runs to the ocean"


def test_truncation_keeps_the_same_response_characters_in_both_texts(tokenizer):
    builder = PairBuilder(tokenizer, identity(tokenizer.chat_template))
    [full] = builder.build([record()])
    prompt_tokens = len(full.conditional) - full.conditional_response
    limit = prompt_tokens + 2
    [cut] = PairBuilder(tokenizer, identity(tokenizer.chat_template, limit)).build([record()])
    assert len(cut.conditional) <= limit and cut.conditional_response == 2
    kept = scored_text(tokenizer, cut.conditional, cut.conditional_response)
    assert "the river runs to the ocean".startswith(kept) and kept
    assert scored_text(tokenizer, cut.prior, cut.prior_response) == kept


def test_a_response_cut_off_entirely_is_rejected(tokenizer):
    [result] = PairBuilder(tokenizer, identity(tokenizer.chat_template, 8)).build([record()])
    assert isinstance(result, Rejection) and result.reason == "response_truncated"
    assert "--max-tokens 8" in result.detail


def test_a_template_that_renders_the_response_differently_with_the_instruction_is_rejected(tokenizer):
    shouting = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and messages|length > 1 %}{{ m['content']|upper }}"
        "{% else %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endif %}{% endfor %}"
    )
    [result] = PairBuilder(tokenizer, identity(shouting)).build([record()])
    assert isinstance(result, Rejection) and result.reason == "template_mismatch"


def test_a_template_that_cannot_render_a_lone_assistant_turn_fails_at_once(tokenizer):
    strict = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('user first') }}{% endif %}{{ messages[-1]['content'] }}"
    with pytest.raises(TemplateError, match="lone assistant turn"):
        PairBuilder(tokenizer, identity(strict))


def test_resolve_template(tmp_path):
    assert resolve_template("auto", "{{ x }}") == "{{ x }}"
    assert resolve_template("chatml", None) == PROMPT_TEMPLATES["chatml"]
    path = tmp_path / "mine.jinja"
    path.write_text("{{ messages }}", encoding="utf-8")
    assert resolve_template(str(path), "{{ ignored }}") == "{{ messages }}"
    with pytest.raises(TemplateError, match="no chat template"):
        resolve_template("auto", None)
    with pytest.raises(TemplateError, match="neither"):
        resolve_template("no-such-template", None)


def test_cache_key_covers_every_part_of_a_score():
    base = ScoringIdentity("m", "t", "tpl", 512, "float32")
    item = record()
    keys = {
        base.key(item),
        ScoringIdentity("m2", "t", "tpl", 512, "float32").key(item),
        ScoringIdentity("m", "t2", "tpl", 512, "float32").key(item),
        ScoringIdentity("m", "t", "tpl2", 512, "float32").key(item),
        ScoringIdentity("m", "t", "tpl", 256, "float32").key(item),
        ScoringIdentity("m", "t", "tpl", 512, "bfloat16").key(item),
        base.key(record(instruction="other")),
        base.key(record(input_text="other")),
        base.key(record(output="other")),
    }
    assert len(keys) == 9
    assert base.key(Record("another id", item.instruction, item.input, item.output, "x:9")) == base.key(item)


def test_ifd_is_the_ratio_of_perplexities_in_float32():
    assert ifd_score(2.0, 2.5) == float(np.float32(np.exp(np.float32(2.0)) / np.exp(np.float32(2.5))))
    assert math.isclose(ifd_score(2.0, 2.5), math.exp(-0.5), rel_tol=1e-6)
    assert ifd_score(1.0, 1.0) == 1.0
    assert ifd_score(float(np.float32(2.0)), 3.0) < 1
    assert math.isinf(ifd_score(200.0, 1.0)) and math.isnan(ifd_score(200.0, 200.0))


@given(st.lists(st.integers(1, 300), max_size=40), st.integers(1, 1000))
def test_micro_batches_cover_everything_within_the_budget(lengths, budget):
    batches = micro_batches(lengths, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= budget
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)


@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_length_buckets_are_ordered_and_an_eighth_of_an_octave_wide(a, b):
    low, high = sorted((a, b))
    assert length_bucket(low) <= length_bucket(high)
    if length_bucket(low) == length_bucket(high):
        assert high < low * 2 ** (1 / 8) * (1 + 1e-12)
    assert [length_bucket(n) for n in (1, 2, 3, 256, 279, 280)] == [1, 9, 13, 65, 65, 66]


@pytest.mark.parametrize("template_name", PROMPT_TEMPLATES)
def test_masking_with_the_real_llama2_tokenizer(template_name):
    from select_support import SHARED
    from transformers import AutoTokenizer

    path = SHARED / "tokenizers/llama2"
    if not path.is_dir():
        pytest.skip(f"the Llama-2 tokenizer is absent: {path}")
    llama = AutoTokenizer.from_pretrained(str(path))
    item = record("Translate to French", "the cat is here", "le chat est là")
    [pair] = PairBuilder(llama, identity(PROMPT_TEMPLATES[template_name])).build([item])
    assert_scores_the_response(llama, pair.conditional, pair.conditional_response, item.output)
    assert_scores_the_response(llama, pair.prior, pair.prior_response, item.output)
    assert pair.prior[0] == llama.bos_token_id or template_name == "chatml"
