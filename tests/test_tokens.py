"""Exact split counting, quicktok for hf: byte-level tokenizers, and loading tokenizer.json directly.

The speed of counting every sample rests on one claim: at the positions a CutRule names,
a text's token count is the sum of its parts' counts. These tests try hard to break it,
for every tokenizer family the rules are used for.
"""

from __future__ import annotations

import itertools
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.byte_level_bpe import train_byte_level_bpe
from tests.shared_data import LLAMA2, require_shared
from transforms.core import tokens
from transforms.core.lengths import LengthTemplate, SampleLengths, Spliced
from transforms.core.overheads import Overheads
from transforms.core.packing import KeyPacker, Measured, PackSettings
from transforms.core.randomness import HashStream
from transforms.core.records import Record
from transforms.core.rules import load_rules
from transforms.core.strategies import compose
from transforms.core.tokens import BYTE_LEVEL_CUTS, METASPACE_CUTS, HuggingFaceCounter, QuicktokCounter, cut_rule

SPECIALS = ["<|begin_of_text|>", "<|eot_id|>"]
# Pieces that exercise every alternative of the pre-tokenizer grammars: contractions, letter
# runs with a leading mark, digit groups, punctuation runs with newlines, whitespace runs
# before newlines and before words, non-ASCII letters, digits and spaces, combining marks.
FRAGMENTS = [
    "the",
    "The",
    "cat",
    "x",
    "Z",
    "cat's",
    "don't",
    "I'LL",
    "'s",
    "'",
    "''",
    "42",
    "1234567",
    "3.14",
    "٣٤",
    "²",
    "é",
    "e\u0301",
    "ß",
    "日本語",
    "中文",
    "Ωμέγα",
    "\u2581",
    "\u2581\u2581",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n",
    "\n ",
    "\u00a0",
    "\u2003",
    ".",
    ",",
    "!",
    "?",
    "...",
    "-",
    "--",
    "/",
    "(",
    ")",
    "[",
    "]",
    "{",
    "<",
    ">",
    "#",
    "###",
    "=",
    "*",
    "_",
    "@",
    "😀",
    ":",
    ";",
    '"',
    "`",
    "~",
    "\\",
    "\x00",
    "\x7f",
    "<s",
    "s>",
    "<|",
    "|>",
    "eot_id",
]
plain_text = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)
text_with_specials = st.lists(st.sampled_from(FRAGMENTS + SPECIALS + ["<s>", "</s>"]), max_size=30).map("".join)


@pytest.fixture(scope="session")
def llama3_style(tmp_path_factory):
    """A small byte-level BPE with the Llama-3 pre-tokenizer, trained here, as a Hugging Face directory."""
    corpus = ["".join(FRAGMENTS[(i * 7 + k) % len(FRAGMENTS)] for k in range(20)) for i in range(300)]
    corpus += ["The cat sat on the mat. It's 1234 o'clock!\nAnswer: yes, it isn't." * 3] * 50
    tokenizer = train_byte_level_bpe(corpus, 600, SPECIALS, ignore_merges=True)
    directory = tmp_path_factory.mktemp("llama3-style")
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|eot_id|>"})
    )
    return directory


QUICKTOK_COUNTERS = [QuicktokCounter(name) for name in tokens.QUICKTOK_ENCODINGS]


@pytest.fixture(scope="session")
def hf_counters(llama3_style):
    """The byte-level tokenizer trained here and, when the shared data is there, Llama-2's SentencePiece BPE."""
    return [HuggingFaceCounter(str(llama3_style))] + ([HuggingFaceCounter(str(LLAMA2))] if LLAMA2.exists() else [])


def split_at_every_cut(text: str, rule) -> list[str]:
    cuts = [0] + [m.end() for m in rule.before_cut.finditer(text)] + [len(text)]
    return [text[a:b] for a, b in itertools.pairwise(cuts)]


@settings(max_examples=300, deadline=None)
@given(text=text_with_specials)
def test_quicktok_counts_add_up_at_every_cut(text):
    for counter in QUICKTOK_COUNTERS:  # quicktok counts added-token strings as plain text
        parts = split_at_every_cut(text, BYTE_LEVEL_CUTS)
        assert sum(counter.count(parts)) == counter.count([text])[0], (counter.spec, parts)


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(text_with_specials, max_size=8))
def test_quicktok_counts_text_by_text_as_in_one_batch(texts):
    # Small batches are counted text by text, large ones in one threaded call: the counts agree.
    for counter in QUICKTOK_COUNTERS:
        one_by_one = tokens.quicktok_counts(counter._encoding, texts)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tokens, "_THREADED_CHARS", 0)
            assert tokens.quicktok_counts(counter._encoding, texts) == one_by_one, counter.spec


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=plain_text)
def test_hugging_face_counts_add_up_at_every_cut(text, hf_counters):
    for counter in hf_counters:
        parts = split_at_every_cut(text, counter._cuts)
        assert sum(counter._count_hf(parts)) == counter._count_hf([text])[0], (counter.spec, parts)


def test_rules_are_recognized_only_where_proven(llama3_style):
    assert HuggingFaceCounter(str(llama3_style))._cuts is BYTE_LEVEL_CUTS
    assert HuggingFaceCounter(str(require_shared(LLAMA2)))._cuts is METASPACE_CUTS
    llama2 = json.loads((LLAMA2 / "tokenizer.json").read_text(encoding="utf-8"))
    crossing = {**llama2, "model": {**llama2["model"], "merges": llama2["model"]["merges"] + [["a", "\u2581b"]]}}
    assert cut_rule(crossing) is None, "a merge across a space would join pieces"
    assert cut_rule({**llama2, "normalizer": {"type": "Lowercase"}}) is None
    byte_level = json.loads((llama3_style / "tokenizer.json").read_text(encoding="utf-8"))
    other_split = {**byte_level, "pre_tokenizer": {**byte_level["pre_tokenizer"]}}
    other_split["pre_tokenizer"]["pretokenizers"] = [
        {**byte_level["pre_tokenizer"]["pretokenizers"][0], "pattern": {"Regex": r"\w+|\W"}},
        byte_level["pre_tokenizer"]["pretokenizers"][1],
    ]
    assert cut_rule(other_split) is None, "an unknown grammar has no proven cuts"
    assert cut_rule({"model": {"type": "WordPiece"}}) is None


def test_interior_is_the_first_and_last_cut():
    assert BYTE_LEVEL_CUTS.interior("Hello, big world.") == (5, 16)
    assert BYTE_LEVEL_CUTS.interior("one") is None and BYTE_LEVEL_CUTS.interior("one two") is None
    assert METASPACE_CUTS.interior("a b c") == (1, 3)
    assert METASPACE_CUTS.interior("a  b") is None  # a space after a space is no cut


@pytest.mark.parametrize("template", ["raw", "vicuna"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(st.tuples(text_with_specials, text_with_specials), min_size=1, max_size=6),
    seed=st.integers(0, 10_000),
    strategy=st.sampled_from(["both", "primary", "format"]),
)
def test_composed_samples_are_counted_exactly(template, records, seed, strategy, hf_counters):
    """The packer's way (parts counted once, only what is left around them recounted) equals
    counting the whole sample, added tokens and all, for every counter."""
    rules = load_rules()
    prompts, outputs = [p or "x" for p, _ in records], [o or "y" for _, o in records]
    for counter in QUICKTOK_COUNTERS + hf_counters:
        lengths = SampleLengths(counter, LengthTemplate(template))
        measured = lengths.measure(list(zip(prompts, outputs)))
        assert [n for n, _, _ in measured] == lengths.count(list(zip(prompts, outputs))), counter.spec
        c = compose(prompts, outputs, strategy, rules, HashStream(seed))
        instruction = Spliced(c.instruction_pieces, c.prompt_slots, [part for _, part, _ in measured])
        output = Spliced(c.output_pieces, c.output_slots, [measured[i][2] for i in c.response_order])
        exact = lengths.count([(c.instruction, c.output)])
        assert lengths.count_spliced([(instruction, output)]) == exact, counter.spec


def test_a_sample_whose_leftover_holds_an_added_token_is_counted_whole(llama3_style):
    """Cutting a record's Part out joins what stood around it; here that makes an added
    token the whole sample does not hold, so the leftover alone would be miscounted."""
    counter = HuggingFaceCounter(str(llama3_style))
    lengths = SampleLengths(counter, LengthTemplate("raw"))
    record = "_id then the cat sat on a|>"
    ((_, part, _),) = lengths.measure([(record, "ok")])
    left, _ = part
    pieces = ["<|eot", record, " done"]
    assert counter._added.search("".join(pieces)) is None
    assert counter._added.search(pieces[0] + left + pieces[2])
    instruction = Spliced(pieces, [1], [part])
    assert lengths.count_spliced([(instruction, Spliced(["ok"], [], []))]) == lengths.count([("".join(pieces), "ok")])


def test_hf_byte_level_tokenizer_counts_with_quicktok_after_checking(llama3_style, caplog):
    counter = HuggingFaceCounter(str(llama3_style))
    assert counter._quicktok is not None, "quicktok imports a byte-level BPE with the Llama-3 grammar"
    texts = [f"Record {i}: the cat's {i * 37} hats.\n\nDone!" for i in range(tokens.VERIFY_TEXTS + 10)]
    with caplog.at_level(logging.INFO, logger=tokens.__name__):
        assert counter.count(texts) == counter._count_hf(texts)
    assert counter._to_verify <= 0 and counter._quicktok is not None
    assert "counting with quicktok" in caplog.text
    with_special = ["before <|eot_id|> after", "<|begin_of_text|>hi"]
    assert counter.count(with_special) == counter._count_hf(with_special), (
        "added tokens are counted as Hugging Face does"
    )


def test_hf_falls_back_when_quicktok_disagrees(llama3_style, caplog, monkeypatch):
    counter = HuggingFaceCounter(str(llama3_style))
    monkeypatch.setattr(counter, "_count_quicktok", lambda texts: [n + 1 for n in counter._count_hf(texts)])
    texts = ["one two three", "four"]
    with caplog.at_level(logging.WARNING, logger=tokens.__name__):
        assert counter.count(texts) == counter._count_hf(texts)
    assert counter._quicktok is None and "counting with Hugging Face" in caplog.text
    assert counter.count(texts) == counter._count_hf(texts)


def test_sentencepiece_tokenizer_is_counted_by_hugging_face(caplog):
    with caplog.at_level(logging.WARNING, logger=tokens.__name__):
        counter = HuggingFaceCounter(str(require_shared(LLAMA2)))
    assert counter._quicktok is None and "quicktok cannot count it" in caplog.text


def test_tokenizer_json_is_loaded_as_transformers_would(llama3_style, tmp_path):
    from transformers import AutoTokenizer

    def without_post_processor(backend):  # it only adds special tokens, which counts never do
        return {key: value for key, value in json.loads(backend.to_str()).items() if key != "post_processor"}

    for directory in (llama3_style, require_shared(LLAMA2)):
        direct = tokens._plain_tokenizer_json(str(directory))
        assert without_post_processor(direct) == without_post_processor(
            AutoTokenizer.from_pretrained(str(directory)).backend_tokenizer
        )
    (tmp_path / "tokenizer.json").write_text((llama3_style / "tokenizer.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"add_prefix_space": True}))
    assert tokens._plain_tokenizer_json(str(tmp_path)) is None, "transformers rebuilds it: load it through transformers"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"additional_special_tokens": ["<extra>"]}))
    assert tokens._plain_tokenizer_json(str(tmp_path)) is None, "transformers adds a token the file lacks"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.tuples(text_with_specials, text_with_specials), min_size=1, max_size=25),
    max_length=st.integers(40, 400),
    seed=st.integers(0, 1000),
)
def test_packing_with_parts_gives_the_samples_of_whole_counting(texts, max_length, seed, hf_counters):
    """Parts only make counting cheaper: the samples, n_tokens included, are the same."""
    rules = load_rules()
    settings_ = PackSettings(seed, "both", "uniform", 8, max_length)
    records = [Record(f"r{i}", p or "x", "", o or "y", f"f:{i}") for i, (p, o) in enumerate(texts)]
    for counter in QUICKTOK_COUNTERS[:1] + hf_counters:
        lengths = SampleLengths(counter, LengthTemplate("raw"))
        measured = lengths.measure([(r.prompt, r.output) for r in records])
        with_parts = [Measured.of(r, n, p, o) for r, (n, p, o) in zip(records, measured) if n <= max_length]
        plain = [Measured.of(m.record, m.n_tokens) for m in with_parts]
        packer = KeyPacker(settings_, rules, lengths, Overheads.measure(lengths, rules))
        assert packer.pack(with_parts, 0, 0) == packer.pack(plain, 0, 0), counter.spec
