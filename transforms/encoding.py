"""How lists of rows and samples cross PCollections: one compressed pickle per list."""

from __future__ import annotations

import pickle

import apache_beam as beam
import zstandard


class RowBatch:
    """A list (of rows, or of a shard's samples) that crosses PCollections as one
    compressed pickle.

    Pickle turns plain tuples, str and int into bytes 2-3x faster than Beam's
    per-element coder, and a batch is unpickled only where it is read: Beam's in-memory
    runner decodes and re-encodes every value it groups. Zstandard at level 3 shrinks
    text 3-5x at several hundred MB/s, and a runner holds the whole shuffle, in some copies,
    in memory. Beam also samples the size of elements by encoding them; RowBatchCoder
    estimates it from the first item instead.
    """

    __slots__ = ("_count", "_encoded", "_items")

    def __init__(self, items: list | None = None, encoded: bytes | None = None, count: int | None = None):
        self._items, self._encoded = items, encoded
        self._count = len(items) if items is not None else count

    @property
    def items(self) -> list:
        if self._items is None:
            assert self._encoded is not None, "a RowBatch holds items or their encoding"
            self._items = pickle.loads(zstandard.decompress(self._encoded))
        return self._items

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        if self._count is None:
            self._count = len(self.items)
        return self._count

    def __reduce__(self):
        # Pickled as its encoding (what a forked helper sends back), with its length.
        return RowBatch, (None, self.encoded(), len(self))

    def encoded(self) -> bytes:
        if self._encoded is None:
            self._encoded = zstandard.compress(pickle.dumps(self._items, protocol=pickle.HIGHEST_PROTOCOL), 3)
        return self._encoded

    def estimated_size(self) -> int:
        if self._encoded is not None or not self._items:
            return len(self.encoded())
        return _approximate_size(self._items[0]) * len(self._items)


def _approximate_size(value) -> int:
    """Bytes of text and numbers in nested lists, tuples and dicts, without encoding them."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(map(_approximate_size, value))
    if isinstance(value, dict):
        return sum(map(_approximate_size, value.keys())) + sum(map(_approximate_size, value.values()))
    return 8


class RowBatchCoder(beam.coders.Coder):
    def encode(self, batch: RowBatch) -> bytes:
        return batch.encoded()

    def decode(self, encoded: bytes) -> RowBatch:
        return RowBatch(encoded=encoded)

    def estimate_size(self, batch: RowBatch) -> int:
        return batch.estimated_size()

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return RowBatch


beam.coders.registry.register_coder(RowBatch, RowBatchCoder)
