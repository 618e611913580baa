"""Test helpers of select: a tiny tokenizer trained here, a tiny randomly initialised causal LM
(nothing is downloaded; what needs torch skips without it), test records, and where shared data lies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
# The tokenizer's own chat template (ChatML, the shape Qwen ships).
OWN_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "river",
    "mountain",
    "forest",
    "ocean",
    "cloud",
    "stone",
    "paper",
    "light",
    "music",
    "number",
    "answer",
    "question",
    "explain",
    "summarize",
    "translate",
    "list",
    "describe",
    "write",
    "compute",
    "short",
    "story",
    "poem",
    "fact",
    "reason",
    "simple",
    "green",
    "blue",
    "red",
]


def make_records(count: int) -> list[dict]:
    """Alpaca records with varied, deterministic wording; every third has an input."""
    records = []
    for i in range(count):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 5)]
        records.append(
            {
                "id": f"r{i:03d}",
                "instruction": f"{WORDS[i % 8 + 16]} the {' '.join(words[:2])}",
                "input": " ".join(words[2:]) if i % 3 == 0 else "",
                "output": " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(2 + i % 7)) + f" {i}",
            }
        )
    return records


def build_tokenizer(directory: Path, chat_template: str | None):
    """A byte-level BPE tokenizer trained on the test vocabulary, saved to `directory`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [" ".join(WORDS), "You are a helpful assistant. Input: "] + [
        " ".join(r.values()) for r in make_records(60)
    ]
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
    return tokenizer


def build_tiny_model(directory: Path, chat_template: str | None, seed: int = 0) -> Path:
    """Tokenizer plus a 2-layer Llama with hidden size 32, randomly initialised from `seed`."""
    pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")
    tokenizer = build_tokenizer(directory, chat_template)
    return save_random_llama(directory, seed, vocab_size=len(tokenizer), hidden_size=32, num_key_value_heads=2)


def save_random_llama(directory: Path, seed: int, **config) -> Path:
    """A 2-layer Llama, 4 attention heads, randomly initialised from `seed`, saved in `directory`; `config` sets
    its sizes (vocab_size, hidden_size, num_key_value_heads, ...), with intermediate = 2 x hidden by default."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sizes = {"num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 512, **config}
    sizes.setdefault("intermediate_size", 2 * sizes["hidden_size"])
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(**sizes)).save_pretrained(directory)
    return directory


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows as JSON lines; a string row is written as it is (for malformed lines)."""
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8"
    )
    return path


SHARED = Path(__file__).resolve().parents[2] / "../shared"
