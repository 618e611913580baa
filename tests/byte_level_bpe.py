"""Byte-level BPE tokenizers with the Llama-3 pre-tokenizer, trained by the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def train_byte_level_bpe(corpus: Iterable[str], vocab_size: int, specials: Sequence[str], *, ignore_merges=False):
    """A `tokenizers.Tokenizer` trained on `corpus`: Llama-3 split pattern, byte-level alphabet, `specials` first."""
    from quicktok._import_core import LLAMA3_PAT
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(specials),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer
