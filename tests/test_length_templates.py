"""Chat length templates (`llama-2`, `llama-3`, `chatml`, `chat`) and --system-prompt: every sample's
n_tokens is the count of its text as a trainer renders and tokenizes it, within --max-length.

The reference here renders each template on its own (the fixed shapes written out below, or the
tokenizer's `apply_chat_template`) and tokenizes with transformers, so it shares no code with
the split counting it checks. Two tokenizers: Llama-2's SentencePiece-style BPE (Metaspace
`prepend_scheme=first`, with a Llama-2-shaped chat template added here) and a byte-level BPE
trained here, whose added tokens are the chat formats' special tokens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from tests.byte_level_bpe import train_byte_level_bpe
from tests.shared_data import LLAMA2, SHARED_DATA, require_shared, write_jsonl
from transforms.core.lengths import LengthTemplate, LengthTemplateError, SampleLengths
from transforms.core.overheads import Overheads
from transforms.core.packing import KeyPacker, Measured, PackSettings
from transforms.core.records import Record
from transforms.core.rules import load_rules
from transforms.core.status import EXIT_USAGE
from transforms.core.tokens import load_counter

CHAT_TEMPLATES = ("chat", "llama-2", "llama-3", "chatml")
SPECIALS = [
    "<s>",
    "</s>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
]
# Llama-2's chat format: the system prompt folded into the first user turn, every message trimmed.
LLAMA2_CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' -%}"
    "{%- set system = '<<SYS>>\\n' + messages[0].content | trim + '\\n<</SYS>>\\n\\n' -%}"
    "{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if message.role == 'user' -%}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message.content | trim + ' [/INST]' }}"
    "{%- else -%}{{ ' ' + message.content | trim + ' ' + eos_token }}{%- endif -%}"
    "{%- endfor -%}"
)
# ChatML, each message verbatim.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
)
# Messages right after `<s>` and `</s>`: Llama-2's Metaspace prefixes only the very start of a text,
# so a message there counts differently than at the start of a text.
TIGHT_TEMPLATE = (
    "{{ bos_token }}{%- for message in messages -%}{{ message.role + ':' + message.content + eos_token }}{%- endfor -%}"
)
NO_SYSTEM_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message.role == 'system' -%}{{ raise_exception('this model takes no system message') }}{%- endif -%}"
    "{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
)
WORDS = ["the", "cat", "sat", "on", "mat.", "It's", "1234", "é", "日本", "[INST]", "<<SYS>>", "<|", "|>", "im_end"]
GLUE = [" ", "  ", "\n", "\n\n", "\t", ", ", ": ", ""]
# Texts with whitespace at either end (which `trim` drops) and the formats' special tokens inside.
message_text = st.lists(st.sampled_from(WORDS + GLUE + SPECIALS), min_size=1, max_size=24).map("".join)
SYSTEM_PROMPTS = [None, "Answer briefly.", " Be exact:\n keep it short "]


def reference_text(template: str, system: str | None, instruction: str, output: str) -> str:
    """The fixed chat formats, written out as the issue gives them."""
    if template == "llama-2":
        block = "" if system is None else f"<<SYS>>\n{system}\n<</SYS>>\n\n"
        return f"<s>[INST] {block}{instruction} [/INST] {output} </s>"
    if template == "llama-3":
        turns = [("user", instruction), ("assistant", output)]
        if system is not None:
            turns.insert(0, ("system", system))
        return "<|begin_of_text|>" + "".join(
            f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>" for role, text in turns
        )
    assert template == "chatml"
    turns = [("user", instruction), ("assistant", output)]
    if system is not None:
        turns.insert(0, ("system", system))
    return "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns)


def reference_count(tokenizer, template: str, system: str | None, instruction: str, output: str) -> int:
    if template == "chat":
        messages = [] if system is None else [{"role": "system", "content": system}]
        messages += [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}]
        return len(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])
    text = reference_text(template, system, instruction, output)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _write_config(directory: Path, config: dict) -> Path:
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory) -> dict[str, Path]:
    """`llama2`: the shared Llama-2 tokenizer with a chat template (`llama2-tight`: another one, without
    spaces around the messages); `bpe`: a byte-level BPE trained here, with a ChatML chat template;
    `bpe-no-system`: the same BPE, whose template refuses a system message."""
    llama2 = tmp_path_factory.mktemp("llama2-chat")
    (llama2 / "tokenizer.json").write_bytes((require_shared(LLAMA2) / "tokenizer.json").read_bytes())
    config = json.loads((LLAMA2 / "tokenizer_config.json").read_text(encoding="utf-8"))
    _write_config(llama2, {**config, "chat_template": LLAMA2_CHAT_TEMPLATE})
    tight = tmp_path_factory.mktemp("llama2-tight")
    (tight / "tokenizer.json").write_bytes((llama2 / "tokenizer.json").read_bytes())
    _write_config(tight, {**config, "chat_template": TIGHT_TEMPLATE})

    corpus = [" ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(16)) for i in range(200)]
    corpus += ["The cat sat on the mat.\nAnswer: it isn't, it's 1234 o'clock! user assistant system"] * 50
    tokenizer = train_byte_level_bpe(corpus, 700, SPECIALS)
    dirs = {"llama2": llama2, "llama2-tight": tight}
    for name, template in (("bpe", CHATML_TEMPLATE), ("bpe-no-system", NO_SYSTEM_TEMPLATE)):
        directory = tmp_path_factory.mktemp(name)
        tokenizer.save(str(directory / "tokenizer.json"))
        dirs[name] = _write_config(
            directory,
            {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "chat_template": template},
        )
    return dirs


@pytest.fixture(scope="module")
def reference_tokenizers(tokenizer_dirs) -> dict:
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(str(directory)) for name, directory in tokenizer_dirs.items()}


def test_the_chat_template_is_read_as_fixed_text_around_the_messages(tokenizer_dirs):
    llama2 = f"hf:{tokenizer_dirs['llama2']}"
    shape = LengthTemplate("chat", "Be kind.", llama2).shape
    assert shape == LengthTemplate("llama-2", "Be kind.").shape._replace(trims=True), "the chat template trims"
    assert LengthTemplate("chat", None, f"hf:{tokenizer_dirs['bpe']}").shape == LengthTemplate("chatml").shape


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.tuples(message_text, message_text), min_size=1, max_size=12),
    system=st.sampled_from(SYSTEM_PROMPTS),
    max_length=st.integers(40, 320),
    seed=st.integers(0, 1000),
)
@pytest.mark.parametrize(
    ("template", "tokenizer_name"),
    [(template, name) for template in CHAT_TEMPLATES for name in ("llama2", "bpe")] + [("chat", "llama2-tight")],
)
def test_n_tokens_is_the_count_of_the_rendered_sample_within_the_budget(
    template, tokenizer_name, texts, system, max_length, seed, tokenizer_dirs, reference_tokenizers
):
    spec = f"hf:{tokenizer_dirs[tokenizer_name]}"
    reference = reference_tokenizers[tokenizer_name]
    lengths = SampleLengths(load_counter(spec), LengthTemplate(template, system, spec))
    records = [Record(f"r{i}", prompt, "", output, f"f:{i}") for i, (prompt, output) in enumerate(texts)]
    measured = lengths.measure([(r.prompt, r.output) for r in records])
    for record, (n_tokens, _, _) in zip(records, measured):
        assert n_tokens == reference_count(reference, template, system, record.prompt, record.output)
    kept = [Measured.of(r, n, p, o) for r, (n, p, o) in zip(records, measured) if n <= max_length]
    rules = load_rules()
    packer = KeyPacker(
        PackSettings(seed, "both", "uniform", 6, max_length), rules, lengths, Overheads.measure(lengths, rules)
    )
    samples = packer.pack(kept, 0, 0)
    assert sorted(source for sample in samples for source in sample.sources) == sorted(m.id for m in kept)
    for sample in samples:
        assert sample.n_tokens == reference_count(reference, template, system, sample.instruction, sample.output)
        assert sample.n_tokens <= max_length


def test_the_fixed_text_is_counted_once_not_per_sample(tokenizer_dirs):
    """Between the template's anchors nothing of its own text is tokenized again for a sample."""
    spec = f"hf:{tokenizer_dirs['bpe']}"
    lengths = SampleLengths(load_counter(spec), LengthTemplate("llama-3", "Answer briefly.", spec))
    junctions = [
        element.text for layout in lengths._junctions.layouts for element in layout if not isinstance(element, int)
    ]
    assert "Answer briefly." not in "".join(junctions) and "<|begin_of_text|>" not in "".join(junctions)
    assert lengths._junctions.fixed_tokens > 0


@pytest.fixture(scope="module")
def alpaca_40(tmp_path_factory) -> Path:
    records = json.loads(require_shared(SHARED_DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:40]
    return write_jsonl(tmp_path_factory.mktemp("input") / "alpaca40.jsonl", records)


@pytest.mark.parametrize(
    ("template", "tokenizer_name", "system"),
    [
        ("chat", "llama2", "You are a careful assistant."),
        ("llama-2", "llama2", None),
        ("llama-3", "bpe", "Answer in one line."),
        ("chatml", "bpe", None),
    ],
)
def test_a_run_under_each_template_verifies(
    template, tokenizer_name, system, alpaca_40, tokenizer_dirs, reference_tokenizers, tmp_path
):
    spec = f"hf:{tokenizer_dirs[tokenizer_name]}"
    output = tmp_path / "out"
    argv = ["run", "--input", str(alpaca_40), "--output", str(output), "--formats", "jsonl", "--epochs", "1"]
    argv += ["--tokenizer", spec, "--length-template", template, "--max-length", "1500"]
    argv += [] if system is None else ["--system-prompt", system]
    assert main(argv) == 0
    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["length_template"], manifest["options"]["system_prompt"]) == (template, system)
    assert main(["verify", str(output)]) == 0
    samples = [json.loads(line) for path in output.glob("mosaics-*.jsonl") for line in path.read_text().splitlines()]
    assert samples and any(sample["count"] > 1 for sample in samples)
    reference = reference_tokenizers[tokenizer_name]
    for sample in samples:
        assert sample["n_tokens"] == reference_count(
            reference, template, system, sample["instruction"], sample["output"]
        )
        assert sample["n_tokens"] <= 1500


def test_verify_recounts_under_the_recorded_system_prompt(alpaca_40, tokenizer_dirs, tmp_path):
    """A manifest whose system prompt is not the one the run counted fails verification."""
    output = tmp_path / "out"
    spec = f"hf:{tokenizer_dirs['bpe']}"
    argv = ["run", "--input", str(alpaca_40), "--output", str(output), "--formats", "jsonl", "--epochs", "1"]
    assert main([*argv, "--tokenizer", spec, "--length-template", "chatml", "--system-prompt", "Be brief."]) == 0
    manifest_path = output / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["options"]["system_prompt"] = "Be brief, and be exact about every number you give."
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert main(["verify", str(output)]) == 1


def mosaic_it(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--length-template", "chat", "--tokenizer", "hf:{llama2_plain}"], "has no chat template"),
        (["--length-template", "chat"], "--tokenizer is 'quicktok:llama3'"),
        (["--length-template", "chat", "--tokenizer", "hf:{bpe-no-system}", "--system-prompt", "Hi."], "fails"),
        (["--system-prompt", "Hi."], "not raw"),
        (["--length-template", "alpaca"], "is unknown"),
    ],
)
def test_a_template_that_cannot_work_is_a_one_line_usage_error(arguments, message, tokenizer_dirs, tmp_path):
    names = {"llama2_plain": str(require_shared(LLAMA2)), **{name: str(path) for name, path in tokenizer_dirs.items()}}
    argv = [argument.format(**names) if argument.startswith("hf:") else argument for argument in arguments]
    done = mosaic_it("run", *argv, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    lines = [line for line in done.stderr.splitlines() if line.startswith("mosaic-it:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "--length-template" in lines[0] or "--system-prompt" in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mosaic-output").exists(), "nothing ran"


def test_a_template_error_names_the_option():
    with pytest.raises(LengthTemplateError, match="--length-template chat"):
        LengthTemplate("chat", None, "quicktok:llama3")


def test_a_system_prompt_replaces_the_vicuna_system_line():
    lengths = SampleLengths(load_counter("quicktok:llama3"), LengthTemplate("vicuna", "Be brief."))
    assert lengths.template.text("Hi?", "Hello.") == "Be brief. USER: Hi? ASSISTANT: Hello."
    [(n_tokens, _, _)] = lengths.measure([("Say hi to the world, please.", "Hello, world and all in it.")])
    text = "Be brief. USER: Say hi to the world, please. ASSISTANT: Hello, world and all in it."
    assert n_tokens == load_counter("quicktok:llama3").count([text])[0] + 1, "plus the end-of-sequence token"


@pytest.mark.parametrize("template", ["vicuna", "llama-2", "llama-3", "chatml"])
@given(
    pairs=st.lists(
        st.tuples(*[st.text(st.sampled_from("ab {}\n.,!?Zé"), min_size=1, max_size=40)] * 2), min_size=1, max_size=4
    )
)
def test_quicktok_counts_split_samples_as_whole_texts(template, pairs):
    """quicktok matches no added token, so its junctions are joined from patterns, unchecked."""
    lengths = SampleLengths(load_counter("quicktok:llama3"), LengthTemplate(template, "Keep {n} and }{ as written."))
    assert [n_tokens for n_tokens, _, _ in lengths.measure(pairs)] == lengths.count(pairs)
