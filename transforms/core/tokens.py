"""Token counting: tokenizer specs, batch counters and the cuts that make exact split counting work.

Exact split counting is what makes counting every composed sample cheap. For the
tokenizers below there are positions in a text, decided by the two characters around
them, where no token ever spans, whatever text stands left or right: the token count
of a text is the sum of the counts of its parts cut there (a :class:`CutRule`). A
record counted once can then be placed in any sample and only the short stretches
around it (its first and last few words, the template text) are counted again.

Why the rules hold (``T`` is the whole text, ``c`` a cut, ``T[c-1]`` and ``T[c]`` the
characters around it):

* Byte-level BPE (Llama-3, Qwen, GPT-4 ``cl100k``, ``o200k`` pre-tokenizer grammars):
  BPE merges only inside a pre-token, and the pre-tokenizer is a left-to-right regex
  scan without look-behind. If ``T[c-1]`` is an ASCII letter or digit and ``T[c]`` is
  ASCII but neither alphanumeric nor an apostrophe, no alternative of these grammars
  can match across ``c`` (letter and digit runs stop at ``T[c]``, punctuation and
  whitespace runs cannot contain ``T[c-1]``, contractions start with ``'``), and
  every alternative tried left of ``c`` reads ``T[c]`` exactly as it reads the end of
  the text. So the scan of ``T`` is the scan of ``T[:c]`` followed by the scan of
  ``T[c:]``. NFC normalization never composes across an ASCII pair either.
* SentencePiece-style BPE (Llama-2: ``Metaspace`` with ``prepend_scheme=first``, one
  pre-token): if ``T[c]`` is a space and ``T[c-1]`` is neither a space nor ``▁``, no
  merge of the vocabulary joins a piece that does not end with ``▁`` to one that
  starts with it (checked on the merges when the tokenizer is loaded), so BPE never
  crosses ``c``; the part from ``c`` starts with ``▁`` and gets no prefix of its own.

Hugging Face tokenizers also match added tokens (``<s>``, ``<|eot_id|>``) inside the
text; a text where one could touch a cut is never split (see
:meth:`HuggingFaceCounter.interior`). They match them first and tokenize each stretch
between them on its own, so a fixed text (a length template's) also splits where one of
its added tokens starts (:meth:`HuggingFaceCounter.anchors`); not where one ends, since
Metaspace ``prepend_scheme=first`` prefixes a stretch only at the start of the whole text.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from transforms.core.quicktok_cache import quicktok_import

DEFAULT_TOKENIZER = "quicktok:llama3"
QUICKTOK_ENCODINGS = ("llama3", "qwen3", "cl100k_base", "o200k_base")

# Texts compared between quicktok and Hugging Face before quicktok counts alone.
VERIFY_TEXTS = 512

log = logging.getLogger(__name__)


class TokenizerSpecError(ValueError):
    """A --tokenizer value that cannot be loaded; the message says why."""


# (left, n_tokens) of a text: its interior, from its first cut to its last, holds n_tokens tokens
# wherever the text is placed; left is the text with the interior cut out. (text, 0) for a text
# with no interior (fewer than two cuts).
Part = tuple[str, int]


@dataclass(frozen=True)
class CutRule:
    """Where a tokenizer's count splits: right after each match of `before_cut`, a
    one-character pattern with a one-character look-ahead."""

    name: str
    before_cut: re.Pattern
    before_last_cut: re.Pattern  # `before_cut` after a greedy `.*`: it ends at the last cut

    @classmethod
    def from_pattern(cls, name: str, pattern: str) -> CutRule:
        return cls(name, re.compile(pattern), re.compile("(?s).*" + pattern))

    def positions(self, text: str) -> list[int]:
        """Every cut of the text."""
        return [match.end() for match in self.before_cut.finditer(text)]

    def interior(self, text: str) -> tuple[int, int] | None:
        """(first cut, last cut) of the text, or None when it has fewer than two."""
        first = self.before_cut.search(text)
        if first is None:
            return None
        last_match = self.before_last_cut.match(text)
        assert last_match is not None, "before_last_cut matches every text that has a first cut"
        last = last_match.end()
        return (first.end(), last) if last > first.end() else None


_ASCII_NOT_WORD = r"[\x00-\x26\x28-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"  # ASCII but letters, digits and '
BYTE_LEVEL_CUTS = CutRule.from_pattern("byte-level", rf"[A-Za-z0-9](?={_ASCII_NOT_WORD})")
METASPACE_CUTS = CutRule.from_pattern("metaspace", r"[^ \u2581](?= )")


class TokenCounter(Protocol):
    """Counts tokens of many texts at once, without special tokens."""

    spec: str

    def count(self, texts: Sequence[str]) -> list[int]: ...

    def interior(self, text: str) -> tuple[int, int] | None:
        """(first cut, last cut) of a text whose count splits there in any context, or None."""
        ...

    def anchors(self, piece: str) -> list[int]:
        """Positions strictly inside a fixed text (a template's) where a text holding it splits, whatever
        stands around it: no token or added-token match spans them, and the text from an anchor on counts
        alone as it does there. See lengths.py for how a template's text is counted once."""
        ...

    def added_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each added token the tokenizer matches in the text, in order."""
        ...

    @property
    def matches_added(self) -> bool:
        """Whether `added_spans` can find anything: False when the tokenizer reads every text as plain text."""
        ...


class QuicktokCounter:
    def __init__(self, encoding: str):
        if encoding not in QUICKTOK_ENCODINGS:
            raise TokenizerSpecError(
                f"unknown quicktok encoding '{encoding}'; choose one of {', '.join(QUICKTOK_ENCODINGS)}"
            )
        import quicktok

        self.spec = f"quicktok:{encoding}"
        self._encoding = quicktok.get_encoding(encoding)
        self.interior = BYTE_LEVEL_CUTS.interior  # every bundled encoding has a byte-level grammar

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return quicktok_counts(self._encoding, list(texts))

    def anchors(self, piece: str) -> list[int]:
        return BYTE_LEVEL_CUTS.positions(piece)

    def added_spans(self, text: str) -> list[tuple[int, int]]:
        return []  # quicktok reads special-token strings as plain text

    matches_added = False


def _tokenizers_serial_after_fork() -> None:
    """A forked child has none of its parent's threads, so the Rust thread pool of Hugging
    Face tokenizers would wait for them forever; the child counts in its own thread.
    (The library does this itself only when TOKENIZERS_PARALLELISM is unset, and the
    counter below sets it.)"""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_tokenizers_serial_after_fork)


class HuggingFaceCounter:
    """A Hugging Face tokenizer; the fast (Rust) backend is called directly on batches.

    A byte-level BPE that quicktok can import is counted by quicktok, once its counts
    have matched the Hugging Face ones on the first VERIFY_TEXTS texts; texts holding an
    added token are always counted by Hugging Face, which treats them specially.
    """

    def __init__(self, name_or_path: str):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
        self.spec = f"hf:{name_or_path}"
        self._tokenizer: Any = None  # the transformers tokenizer, used only when it has no fast backend
        backend = _plain_tokenizer_json(name_or_path)
        if backend is None:
            self._tokenizer = auto_tokenizer(name_or_path)
            backend = getattr(self._tokenizer, "backend_tokenizer", None)
        self._encode_batch: Callable[..., list] | None = getattr(backend, "encode_batch_fast", None) or getattr(
            backend, "encode_batch", None
        )
        serialized = backend.to_str() if backend is not None else "{}"
        description = json.loads(serialized)
        added_tokens = description.get("added_tokens", [])
        added = [token["content"] for token in added_tokens]
        # The tokenizer splits a text at its added tokens first and tokenizes each stretch between them
        # on its own, unless an added token takes whitespace around it or is matched after normalizing.
        self._added_split_first = not any(
            token.get("lstrip")
            or token.get("rstrip")
            or token.get("single_word")
            or (token.get("normalized") and description.get("normalizer"))
            for token in added_tokens
        )
        self._added = re.compile("|".join(map(re.escape, sorted(added, key=len, reverse=True)))) if added else None
        self._added_joined = "\x00".join(added)
        self._cuts = cut_rule(description)
        self._quicktok = quicktok_import(serialized, self.spec) if backend is not None else None
        self._to_verify = VERIFY_TEXTS

    def count(self, texts: Sequence[str]) -> list[int]:
        texts = list(texts)
        if not texts:
            return []
        if self._quicktok is None:
            return self._count_hf(texts)
        special = [i for i, text in enumerate(texts) if self._added and self._added.search(text)]
        counts = self._count_quicktok(texts)
        if special:
            for i, n in zip(special, self._count_hf([texts[i] for i in special])):
                counts[i] = n
        if self._to_verify > 0:
            counts = self._verify(texts, counts)
        return counts

    def added_spans(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in self._added.finditer(text)] if self._added else []

    @property
    def matches_added(self) -> bool:
        return self._added is not None

    def anchors(self, piece: str) -> list[int]:
        """Cuts, and the starts of added tokens where each added token splits the text alone (see
        `_added_split_first`), except where an added token could hold the two characters around them.

        Not the ends of added tokens: with Metaspace `prepend_scheme=first` the text right after one
        counts without the prefix it would get at the start of a text, so a text counted alone must
        start with the added token itself."""
        positions = set(self._cuts.positions(piece)) if self._cuts else set()
        if self._added_split_first:
            positions.update(start for start, _ in self.added_spans(piece) if start > 0)
        return sorted(c for c in positions if piece[c - 1 : c + 1] not in self._added_joined)

    def interior(self, text: str) -> tuple[int, int] | None:
        """A text whose added-token matches could cross a cut is not split: it holds an
        added token, or its head or tail could be part of one that began or ends outside it."""
        if self._cuts is None:
            return None
        cuts = self._cuts.interior(text)
        if cuts is None or not self._added:
            return cuts
        first, last = cuts
        if (
            self._added.search(text)
            or text[: first + 1] in self._added_joined
            or text[last - 1 :] in self._added_joined
        ):
            return None
        return cuts

    def _count_hf(self, texts: list[str]) -> list[int]:
        encode_batch = self._encode_batch
        if encode_batch is not None:
            return [len(encoding) for encoding in encode_batch(texts, add_special_tokens=False)]
        return [len(ids) for ids in self._tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _count_quicktok(self, texts: list[str]) -> list[int]:
        return quicktok_counts(self._quicktok, texts)

    def _verify(self, texts: list[str], counts: list[int]) -> list[int]:
        checked = texts[: self._to_verify]
        reference = self._count_hf(checked)
        if reference != counts[: len(checked)]:
            wrong = next(text for text, a, b in zip(checked, counts, reference) if a != b)
            log.warning(
                "%s: quicktok and Hugging Face counts differ (e.g. on %r); counting with Hugging Face",
                self.spec,
                wrong[:80],
            )
            self._quicktok = None
            return reference + self._count_hf(texts[len(checked) :])
        self._to_verify -= len(checked)
        if self._to_verify <= 0:
            log.info(
                "%s: counting with quicktok (it matched Hugging Face on the first %d texts)", self.spec, VERIFY_TEXTS
            )
        return counts


def quicktok_counts(encoding, texts: list[str]) -> list[int]:
    """quicktok's counts. A thread pool only pays off on large batches; below that, counting text
    by text is faster than one batch call, which also builds every token."""
    import quicktok

    if sum(map(len, texts)) >= _THREADED_CHARS:
        return quicktok.count_batch(encoding, texts).tolist()
    return [encoding.count(text) for text in texts]


_THREADED_CHARS = 1 << 20


def cut_rule(description: dict) -> CutRule | None:
    """The cut rule a Hugging Face tokenizer (its tokenizer.json) provably obeys, or None."""
    from quicktok._import_core import KNOWN_PATTERNS

    model = description.get("model") or {}
    if (
        model.get("type") != "BPE"
        or model.get("dropout")
        or model.get("continuing_subword_prefix")
        or model.get("end_of_word_suffix")
    ):
        return None
    if any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in description.get("added_tokens", [])):
        return None
    normalizer = description.get("normalizer")
    pre = description.get("pre_tokenizer") or {}
    nodes = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    grammars = {"llama3", "qwen", "cl100k", "o200k"}
    if (
        len(nodes) == 2
        and nodes[0].get("type") == "Split"
        and KNOWN_PATTERNS.get((nodes[0].get("pattern") or {}).get("Regex")) in grammars
        and nodes[0].get("behavior") == "Isolated"
        and not nodes[0].get("invert")
        and nodes[1].get("type") == "ByteLevel"
        and not nodes[1].get("add_prefix_space")
        and not nodes[1].get("use_regex")
        and (normalizer is None or normalizer.get("type") == "NFC")
        and not model.get("byte_fallback")
    ):
        return BYTE_LEVEL_CUTS
    if (
        nodes == [pre]
        and pre.get("type") == "Metaspace"
        and pre.get("replacement") == "\u2581"
        and pre.get("prepend_scheme") == "first"
        and not pre.get("split")
        and normalizer is None
        and not model.get("ignore_merges")  # a whole text in the vocabulary would be one token
        and not _merges_cross_metaspace(model.get("merges", []))
    ):
        return METASPACE_CUTS
    return None


def _merges_cross_metaspace(merges: list) -> bool:
    """True if some merge joins a piece not ending with ▁ to one starting with it, or merges a byte."""
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        if (right.startswith("\u2581") and not left.endswith("\u2581")) or "<0x" in left or "<0x" in right:
            return True
    return False


def auto_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except Exception as err:  # transformers raises many types for a bad name or path
        raise TokenizerSpecError(f"cannot load Hugging Face tokenizer '{name_or_path}': {err}") from err


def _plain_tokenizer_json(name_or_path: str):
    """The tokenizer.json of a local directory, loaded by the `tokenizers` library alone, when
    transformers would use it as it is; else None. Importing transformers takes seconds.

    transformers rebuilds the backend when the config sets `add_prefix_space` or `from_slow`,
    and adds the special tokens the config names that the file lacks.
    """
    directory = Path(name_or_path)
    if not (directory / "tokenizer.json").is_file():
        return None
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_file(str(directory / "tokenizer.json"))
    except Exception as err:  # the Rust library reports a bad file as a plain Exception
        raise TokenizerSpecError(f"cannot load Hugging Face tokenizer '{name_or_path}': {err}") from err
    config = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if (directory / name).is_file():
            config.update(json.loads((directory / name).read_text(encoding="utf-8")))
    if config.get("add_prefix_space") is not None or config.get("from_slow"):
        return None
    named = [value for key, value in config.items() if key.endswith("_token")]
    for key in ("additional_special_tokens", "extra_special_tokens"):
        extra = config.get(key) or []
        named += list(extra.values()) if isinstance(extra, dict) else list(extra)
    named += list((config.get("added_tokens_decoder") or {}).values())
    contents = {token["content"] if isinstance(token, dict) else token for token in named if token}
    present = {token.content for token in backend.get_added_tokens_decoder().values()}
    return backend if contents <= present else None


@functools.lru_cache(maxsize=8)
def load_counter(spec: str) -> TokenCounter:
    """`quicktok:<encoding>` or `hf:<hub id or local directory>`; loaded once per process
    (the command line loads it to check the spec, then the pipeline's workers)."""
    scheme, _, name = spec.partition(":")
    if not name:
        raise TokenizerSpecError(f"tokenizer '{spec}' must look like quicktok:<encoding> or hf:<name or path>")
    if scheme == "quicktok":
        return QuicktokCounter(name)
    if scheme == "hf":
        return HuggingFaceCounter(name)
    raise TokenizerSpecError(f"unknown tokenizer scheme '{scheme}' in '{spec}'; use quicktok: or hf:")
