"""A tiny randomly initialised causal LM and tokenizer, built in a temporary directory (no downloads)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
# The tokenizer's own chat template (ChatML, as Qwen ships it).
OWN_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WORDS = (
    "alpha beta gamma delta river mountain forest ocean cloud stone paper light music number answer question "
    "explain summarize translate list describe write compute short story poem fact reason simple green blue red"
).split()


def make_records(count: int) -> list[dict]:
    """Alpaca records with varied, deterministic wording."""
    records = []
    for i in range(count):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 5)]
        records.append({
            "id": f"r{i:03d}",
            "instruction": f"{WORDS[i % 8 + 16]} the {' '.join(words[:2])}",
            "input": " ".join(words[2:]) if i % 3 == 0 else "",
            "output": " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(2 + i % 7)) + f" {i}",
        })
    return records


def build_tiny_model(directory: Path, chat_template: str | None, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [" ".join(WORDS)] + [" ".join(r.values()) for r in make_records(60)] + ["You are a helpful assistant. Input: "]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(corpus * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(directory)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model directory whose tokenizer has its own chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), OWN_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model-plain"), None)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")
    return path
