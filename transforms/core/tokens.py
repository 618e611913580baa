"""Token counting: tokenizer specs, batch counters and length templates."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence

DEFAULT_TOKENIZER = "quicktok:llama3"
QUICKTOK_ENCODINGS = ("llama3", "qwen3", "cl100k_base", "o200k_base")
LENGTH_TEMPLATES = ("raw", "vicuna")

# The system line of FastChat's "vicuna_v1.1" conversation template, which the Mosaic-IT
# paper trained with. It is reproduced verbatim because counting that prompt exactly is
# the point of the `vicuna` length template.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


class TokenizerSpecError(ValueError):
    """A --tokenizer value that cannot be loaded; the message says why."""


class TokenCounter(Protocol):
    """Counts tokens of many texts at once, without special tokens."""

    spec: str

    def count(self, texts: Sequence[str]) -> list[int]: ...


class QuicktokCounter:
    def __init__(self, encoding: str):
        if encoding not in QUICKTOK_ENCODINGS:
            raise TokenizerSpecError(f"unknown quicktok encoding '{encoding}'; choose one of {', '.join(QUICKTOK_ENCODINGS)}")
        import quicktok

        self.spec = f"quicktok:{encoding}"
        self._encoding = quicktok.get_encoding(encoding)
        self._count_batch = quicktok.count_batch

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return self._count_batch(self._encoding, list(texts)).tolist()


class HuggingFaceCounter:
    """A Hugging Face tokenizer; the fast (Rust) backend is called directly on batches."""

    def __init__(self, name_or_path: str):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except Exception as err:  # transformers raises many types for a bad name or path
            raise TokenizerSpecError(f"cannot load Hugging Face tokenizer '{name_or_path}': {err}") from err
        self.spec = f"hf:{name_or_path}"
        self._tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._encode_batch = getattr(backend, "encode_batch_fast", None) or getattr(backend, "encode_batch", None)

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self._encode_batch is not None:
            return [len(encoding.ids) for encoding in self._encode_batch(list(texts), add_special_tokens=False)]
        return [len(ids) for ids in self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def load_counter(spec: str) -> TokenCounter:
    """`quicktok:<encoding>` or `hf:<hub id or local directory>`."""
    scheme, _, name = spec.partition(":")
    if not name:
        raise TokenizerSpecError(f"tokenizer '{spec}' must look like quicktok:<encoding> or hf:<name or path>")
    if scheme == "quicktok":
        return QuicktokCounter(name)
    if scheme == "hf":
        return HuggingFaceCounter(name)
    raise TokenizerSpecError(f"unknown tokenizer scheme '{scheme}' in '{spec}'; use quicktok: or hf:")


@dataclass(frozen=True)
class LengthTemplate:
    """What is counted for a sample: `raw` (instruction + response text, as the original
    method counted) or `vicuna` (the whole training prompt plus the end-of-sequence token)."""

    name: str

    def __post_init__(self):
        if self.name not in LENGTH_TEMPLATES:
            raise ValueError(f"unknown length template '{self.name}'; choose one of {', '.join(LENGTH_TEMPLATES)}")

    def text(self, instruction: str, output: str) -> str:
        if self.name == "vicuna":
            return f"{VICUNA_SYSTEM} USER: {instruction} ASSISTANT: {output}"
        return instruction + output

    @property
    def special_tokens(self) -> int:
        """Special tokens added outside the text (vicuna ends with one end-of-sequence token)."""
        return 1 if self.name == "vicuna" else 0


class SampleLengths:
    """Exact lengths of (instruction, output) pairs under a tokenizer and template."""

    def __init__(self, counter: TokenCounter, template: LengthTemplate):
        self.counter = counter
        self.template = template

    def count(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        extra = self.template.special_tokens
        return [n + extra for n in self.counter.count([self.template.text(i, o) for i, o in pairs])]
