"""IFD (instruction-following difficulty) inputs and arithmetic, as pure functions.

IFD = exp(mean NLL of the response given the instruction) / exp(mean NLL of the response
alone). The conditional text is the chat [system, user, assistant] rendered by a chat
template; the prior text is the chat [assistant]. The response is located by position,
never by searching for it: each chat is also rendered with a placeholder as the
response, which splits the template's text into what comes before and after it; the
response tokens are those whose character offsets overlap the part in between. Both
texts are cut right after the last scored response token (a causal LM's losses do not
depend on later tokens), and `max_tokens` keeps the same response characters in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transforms.core.randomness import digest
from transforms.core.records import Record, Rejection, reject

SYSTEM_PROMPT = "You are a helpful assistant."
INPUT_SEPARATOR = "\nInput: "
# Part of every cache key: change it when what is scored, or how, changes.
SCORING_VERSION = "iterit-ifd-1"
OWN_TEMPLATE = "auto"

# Chat templates for tokenizers that ship none (`--prompt-template NAME`). Each renders a
# lone assistant turn too, which the prior text needs.
PROMPT_TEMPLATES = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    "llama-2": (
        "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
        "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
        "{% for m in turns %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' }}"
        "{% if system and loop.first %}{{ '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}{% endif %}"
        "{{ m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
    ),
    "llama-3": (
        "{{ bos_token }}{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    ),
    "vicuna": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + ' ' }}"
        "{% elif m['role'] == 'user' %}{{ 'USER: ' + m['content'] + ' ' }}"
        "{% else %}{{ 'ASSISTANT: ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    ),
}

_PLACEHOLDER = "\x00response\x00"


class TemplateError(ValueError):
    """A --prompt-template that names no template, or a tokenizer without a chat template."""


def resolve_template(option: str, own_template: str | None) -> str:
    """The Jinja text of the chat template: the tokenizer's own (`auto`), a built-in name, or a file."""
    if option == OWN_TEMPLATE:
        if not own_template:
            raise TemplateError(
                f"the tokenizer has no chat template; pass --prompt-template with one of {', '.join(PROMPT_TEMPLATES)} or a .jinja file"
            )
        return own_template
    if option in PROMPT_TEMPLATES:
        return PROMPT_TEMPLATES[option]
    path = Path(option)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise TemplateError(
        f"--prompt-template '{option}' is neither {OWN_TEMPLATE}, one of {', '.join(PROMPT_TEMPLATES)}, nor a file"
    )


def user_turn(record: Record) -> str:
    return record.instruction + INPUT_SEPARATOR + record.input if record.input else record.instruction


def conditional_chat(record: Record, response: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_turn(record)},
        {"role": "assistant", "content": response},
    ]


def prior_chat(response: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": response}]


def response_token_range(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """[first, last) of the tokens whose character spans overlap [start, end); (0, 0) if none."""
    inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    return (inside[0], inside[-1] + 1) if inside else (0, 0)


@dataclass(frozen=True)
class Located:
    """A rendered text, its token ids and offsets, and where its response lies."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    response_start: int  # character offset of the response in the text
    response_end: int

    def tokens_for(self, length: int) -> tuple[int, int]:
        """Token range of the first `length` characters of the response."""
        return response_token_range(self.offsets, self.response_start, self.response_start + length)


@dataclass(frozen=True)
class ScoringPair:
    """The two token sequences of a record's text, each ending with its scored response tokens."""

    key: str  # cache key of the score
    conditional: tuple[int, ...]
    conditional_response: int  # how many of the last tokens of `conditional` are scored
    prior: tuple[int, ...]
    prior_response: int

    @property
    def length(self) -> int:
        return len(self.conditional)


@dataclass(frozen=True)
class ScoringIdentity:
    """What, besides the record, decides a score: the cache key's other parts."""

    model: str
    tokenizer: str
    template: str
    max_tokens: int
    dtype: str

    def key(self, record: Record) -> str:
        return digest(
            SCORING_VERSION,
            self.model,
            self.tokenizer,
            self.template,
            self.max_tokens,
            self.dtype,
            record.instruction,
            record.input,
            record.output,
        ).hex()


class TemplateMismatch(ValueError):
    """One record's chat does not render as text before + response + text after."""


class PairBuilder:
    """Records -> scoring pairs (or rejections), with a Hugging Face fast tokenizer."""

    def __init__(self, tokenizer: Any, identity: ScoringIdentity):
        if not getattr(tokenizer, "is_fast", False):
            raise TemplateError("IFD scoring needs a fast (Rust) tokenizer for token offsets")
        self.tokenizer = tokenizer
        self.identity = identity
        self.max_tokens = identity.max_tokens
        try:
            self.prior_frame = self._frame(prior_chat(_PLACEHOLDER))
        except Exception as err:  # Jinja raises many types from inside a template
            raise TemplateError(
                f"the chat template cannot render a lone assistant turn (the prior text): {err}"
            ) from None

    def _render(self, chat: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(chat, chat_template=self.identity.template, tokenize=False)

    def _frame(self, chat: list[dict[str, str]]) -> tuple[str, str]:
        """(text before, text after) the response in the template's rendering."""
        text = self._render(chat)
        if text.count(_PLACEHOLDER) != 1:
            raise TemplateMismatch("the chat template does not render the assistant turn's content exactly once")
        before, _, after = text.partition(_PLACEHOLDER)
        return before, after

    def build(self, records: Sequence[Record]) -> list[ScoringPair | Rejection]:
        """One result per record, in order; the texts of all records are tokenized in one call."""
        rendered = [self._texts_or_rejection(record) for record in records]
        texts = [(text, span) for item in rendered if not isinstance(item, Rejection) for text, span in item]
        encoded = (
            self.tokenizer([text for text, _ in texts], add_special_tokens=False, return_offsets_mapping=True)
            if texts
            else None
        )
        located = iter(
            [
                self._located(ids, offsets, span)
                for ids, offsets, (_, span) in zip(encoded["input_ids"], encoded["offset_mapping"], texts)
            ]
            if encoded
            else []
        )
        return [
            item if isinstance(item, Rejection) else self._pair(record, next(located), next(located))
            for record, item in zip(records, rendered)
        ]

    def _texts_or_rejection(self, record: Record) -> list[tuple[str, tuple[int, int]]] | Rejection:
        try:
            return self._texts(record)
        except Exception as err:  # a mismatch, or anything Jinja raises for this record's chat
            return reject(record, "template_mismatch", f"{type(err).__name__}: {err}")

    def _texts(self, record: Record) -> list[tuple[str, tuple[int, int]]]:
        """[(conditional text, response span), (prior text, response span)]."""
        rendered = []
        responses = []
        for chat, frame in (
            (conditional_chat(record, record.output), self._frame(conditional_chat(record, _PLACEHOLDER))),
            (prior_chat(record.output), self.prior_frame),
        ):
            before, after = frame
            text = self._render(chat)
            end = len(text) - len(after)
            if not (text.startswith(before) and text.endswith(after) and end >= len(before)):
                raise TemplateMismatch("the template renders the response's chat differently around the response")
            rendered.append((text, (len(before), end)))
            responses.append(text[len(before) : end])
        if responses[0] != responses[1]:
            raise TemplateMismatch("the template renders the response differently with and without the instruction")
        return rendered

    def _located(self, ids: list[int], offsets: list[tuple[int, int]], span: tuple[int, int]) -> Located:
        first, _ = response_token_range(offsets, *span)
        bos = self.tokenizer.bos_token_id
        if first == 0 and span[0] < span[1] and bos is not None:
            # The first token has nothing before it to be predicted from.
            ids, offsets = [bos, *ids], [(0, 0), *offsets]
        return Located(list(ids), [(o[0], o[1]) for o in offsets], *span)

    def _pair(self, record: Record, conditional: Located, prior: Located) -> ScoringPair | Rejection:
        length = self._kept_length(conditional, conditional.response_end - conditional.response_start)
        length = self._kept_length(prior, length)
        (c_first, c_last), (p_first, p_last) = conditional.tokens_for(length), prior.tokens_for(length)
        c_first, p_first = max(c_first, 1), max(p_first, 1)  # token 0 can only be a prediction's context
        if length <= 0 or c_first >= c_last or p_first >= p_last:
            detail = f"the instruction and template take {conditional.tokens_for(1)[0]} of --max-tokens {self.max_tokens} tokens"
            return reject(record, "response_truncated", detail)
        return ScoringPair(
            self.identity.key(record),
            tuple(conditional.ids[:c_last]),
            c_last - c_first,
            tuple(prior.ids[:p_last]),
            p_last - p_first,
        )

    def _kept_length(self, text: Located, length: int) -> int:
        """How many response characters (of the first `length`) end within max_tokens tokens."""
        _, last = text.tokens_for(length)
        if last <= self.max_tokens:
            return length
        return max(0, min(length, text.offsets[self.max_tokens - 1][1] - text.response_start))


def ifd_score(conditional_loss: float, prior_loss: float) -> float:
    """exp(conditional) / exp(prior), in float32 (NaN or inf when the losses are)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        value = np.exp(np.float32(conditional_loss)) / np.exp(np.float32(prior_loss))
    return float(np.float32(value))


BUCKETS_PER_OCTAVE = 8


def length_bucket(length: int) -> int:
    """floor(8 log2(length)) + 1, in integers: lengths in one bucket differ by 9% at most, so a
    micro-batch cut from one bucket pads little."""
    return (length**BUCKETS_PER_OCTAVE).bit_length()


def micro_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped longest first so that (group size x its longest length) stays within
    `budget` tokens; a sequence longer than the budget goes alone. Ties keep index order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
