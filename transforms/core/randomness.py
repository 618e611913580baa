"""Randomness derived only from hashes of names, so any worker reproduces any draw.

Nothing here touches Python's global random state or depends on arrival order: a
draw is a pure function of the seed, the epoch and the key it belongs to.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import MutableSequence, Sequence
from typing import TypeVar

T = TypeVar("T")

_SEP = "\x1f"


def digest(*parts: object) -> bytes:
    """A 16-byte BLAKE2b digest of the parts' string forms, unambiguously joined."""
    return hashlib.blake2b(_SEP.join(map(str, parts)).encode("utf-8"), digest_size=16).digest()


class RecordKeys:
    """(group-key hash, sort-key hash) of a record in one epoch: two independent 64-bit draws,
    the halves of digest("record", seed, epoch, record id).

    The digest's common prefix is hashed once per epoch; each record only adds its id.
    """

    def __init__(self, seed: int, epoch: int):
        self._prefix = hashlib.blake2b(f"record{_SEP}{seed}{_SEP}{epoch}{_SEP}".encode(), digest_size=16)

    def __call__(self, record_id: str) -> tuple[int, int]:
        state = self._prefix.copy()
        state.update(record_id.encode("utf-8"))
        value = state.digest()
        return int.from_bytes(value[:8], "big"), int.from_bytes(value[8:], "big")


_UNIT = 2.0**-53
_BLOCK = struct.Struct(">8Q")  # one BLAKE2b-512 digest: eight 64-bit draws
_BLOCK_NUMBERS = [i.to_bytes(8, "big") for i in range(16)]  # a stream rarely draws more than 128


class StreamNames:
    """The streams named (*prefix, *rest) for many `rest`: HashStream(*prefix, *rest), with the
    prefix hashed in once (the streams of one key share its seed, epoch and key)."""

    def __init__(self, *prefix: object):
        self._prefix = hashlib.blake2b(_SEP.join(map(str, ("stream", *prefix, ""))).encode("utf-8"), digest_size=16)

    def __call__(self, *rest: object) -> HashStream:
        state = self._prefix.copy()
        state.update(_SEP.join(map(str, rest)).encode("utf-8"))
        stream = HashStream.__new__(HashStream)
        stream._start(state.digest())
        return stream


class HashStream:
    """A reproducible stream of uniform draws, in counter mode over BLAKE2b.

    The stream of (seed, epoch, key, group) is the same on every machine and Python
    version, which Python's Mersenne Twister does not promise for its derived methods.
    Draws come in blocks of eight: block b is BLAKE2b-512(prefix + b as 8 big-endian bytes),
    read as eight big-endian 64-bit draws, so one hash serves eight draws.
    """

    __slots__ = ("_counter", "_drawn", "_prefixed")

    def __init__(self, *name: object):
        self._start(digest("stream", *name))

    def _start(self, name_digest: bytes) -> None:
        self._prefixed = hashlib.blake2b(name_digest, digest_size=64)  # the prefix, hashed in once
        self._drawn: list[int] = []  # the draws of the blocks hashed so far, shared with restarted copies
        self._counter = 0

    @property
    def position(self) -> int:
        """How many draws were made."""
        return self._counter

    def restarted(self, at: int = 0) -> HashStream:
        """The same stream from draw `at` (its first by default); blocks already hashed are not hashed again."""
        again = HashStream.__new__(HashStream)
        again._prefixed, again._drawn, again._counter = self._prefixed, self._drawn, at
        return again

    def bits64(self) -> int:
        counter = self._counter
        self._counter = counter + 1
        drawn = self._drawn
        while counter >= len(drawn):
            block = len(drawn) >> 3
            state = self._prefixed.copy()
            state.update(_BLOCK_NUMBERS[block] if block < len(_BLOCK_NUMBERS) else block.to_bytes(8, "big"))
            drawn += _BLOCK.unpack(state.digest())
        return drawn[counter]

    def random(self) -> float:
        """Uniform in [0, 1)."""
        return (self.bits64() >> 11) * _UNIT  # exact: scaling by a power of two

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def below(self, n: int) -> int:
        """Uniform integer in [0, n); the modulo bias is below 2**-40 for any n we draw."""
        if n <= 0:
            raise ValueError("below() needs a positive bound")
        return self.bits64() % n

    def coin(self) -> bool:
        return self.bits64() & 1 == 1

    def choice(self, options: Sequence[T]) -> T:
        if not options:
            raise ValueError("choice() needs a non-empty sequence")
        return options[self.bits64() % len(options)]  # below(), inlined: compose draws this most

    def shuffle(self, items: MutableSequence[T]) -> None:
        """Fisher-Yates, in place."""
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]
