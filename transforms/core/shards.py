"""How a mosaic run cuts its work into packing keys and output shards, and what it tallies.

Both plans of a run (spread over many workers, or one process with forked helpers) are
made of these functions, so they write the same files: rows are measured, each row gets
a key ordinal per epoch, ordinals map to shards in contiguous ranges, and each shard's
keys are packed in ordinal order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

import orjson

from transforms.core.config import MosaicConfig
from transforms.core.lengths import SampleLengths
from transforms.core.packing import KeyPacker, Measured, order_records
from transforms.core.randomness import RecordKeys
from transforms.core.records import Record, Rejection, reject

KEYS_PER_SHARD = 8  # default sharding: one output shard per 8 (epoch, key) packing keys
MEASURE_BATCH = 4096  # records measured per tokenizer call; their rows travel together
DUPLICATE_DETAIL = "another record has this id; the first in input order (file name, then index) is kept"

Row = tuple  # a Measured as a plain tuple: pickled smaller and faster than the named tuple
ShardItem = tuple[int, int, Row]  # (key ordinal, sort hash, row)


def files_for(count: int, per_file: int) -> int:
    """How many files hold `count` items at `per_file` items a file (at least one)."""
    return max(1, math.ceil(count / per_file))


def keys_per_epoch(record_count: int, records_per_key: int) -> int:
    """Enough keys to spread the work, few enough that each holds about records_per_key records."""
    return max(1, record_count // records_per_key)


@dataclass(frozen=True)
class ShardPlan:
    """The run's packing keys and sample shards, fixed once the valid records are counted.

    Key ordinals number the run's (epoch, key)s in order, epoch by epoch; shards hold
    contiguous ranges of ordinals, so shards follow epoch order.
    """

    keys_per_epoch: int
    epochs: int
    num_shards: int

    @classmethod
    def of(cls, valid_records: int, config: MosaicConfig, num_shards: int = 0) -> ShardPlan:
        """`num_shards` 0 chooses one shard per KEYS_PER_SHARD keys."""
        keys = keys_per_epoch(valid_records, config.records_per_key)
        return cls(keys, config.epochs, num_shards or files_for(keys * config.epochs, KEYS_PER_SHARD))

    @property
    def total_keys(self) -> int:
        return self.keys_per_epoch * self.epochs

    def shard_of(self, ordinal: int) -> int:
        return ordinal * self.num_shards // self.total_keys


class EpochOrdinals:
    """(key ordinal, sort hash) of a record in each epoch of the run."""

    def __init__(self, config: MosaicConfig, plan: ShardPlan):
        self._num_keys = plan.keys_per_epoch
        self._epochs = [
            (position * plan.keys_per_epoch, RecordKeys(config.seed, epoch))
            for position, epoch in enumerate(config.epoch_numbers)
        ]

    def __call__(self, record_id: str) -> list[tuple[int, int]]:
        ordinals = []
        for first_ordinal, record_keys in self._epochs:
            group_hash, sort_hash = record_keys(record_id)
            ordinals.append((first_ordinal + group_hash % self._num_keys, sort_hash))
        return ordinals


def assign_shards(rows: Iterable[Row], ordinals: EpochOrdinals, plan: ShardPlan) -> dict[int, list[ShardItem]]:
    """Shard -> (key ordinal, sort hash, row) for every epoch of every row."""
    by_shard: dict[int, list[ShardItem]] = {}
    for row in rows:
        for ordinal, sort_hash in ordinals(row[0]):
            by_shard.setdefault(plan.shard_of(ordinal), []).append((ordinal, sort_hash, row))
    return by_shard


def measure_rows(
    lengths: SampleLengths, records: Sequence[Record], max_length: int
) -> tuple[list[Row], list[Rejection]]:
    """Rows of the records (one tokenizer call for all), and rejections of those alone over the budget."""
    rows, rejected = [], []
    measured = lengths.measure([(r.prompt, r.output) for r in records])
    for record, (n_tokens, prompt_part, output_part) in zip(records, measured):
        if n_tokens > max_length:
            detail = f"{n_tokens} tokens on its own, over --max-length {max_length}"
            rejected.append(reject(record, "over_budget", detail))
        else:
            rows.append(tuple(Measured.of(record, n_tokens, prompt_part, output_part)))
    return rows, rejected


def json_line(row: dict) -> bytes:
    """One compact JSON object and a newline, non-ASCII text unescaped; orjson writes it
    4-5x faster than json.dumps on long texts. Samples travel as these lines."""
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


def sample_stats(samples: Sequence[dict]) -> Counter:
    """(section, name) -> count over the samples, for the manifest; each field is tallied
    by one Counter pass, then per distinct value."""
    counts: Counter = Counter()
    for (epoch, size), n in Counter(map(itemgetter("epoch", "count"), samples)).items():
        counts["samples", str(epoch)] += n
        counts["records", str(epoch)] += n * size
        counts["group_size", str(size)] += n
    for (strategy, rule), n in Counter(map(itemgetter("strategy", "rule"), samples)).items():
        counts["strategy", strategy] += n
        counts["rule", rule or "none"] += n
    for n_tokens, n in Counter(map(itemgetter("n_tokens"), samples)).items():
        counts["n_tokens", str(n_tokens)] += n
    return counts


class PackedKey(NamedTuple):
    ordinal: int
    samples: list[bytes]  # JSON lines (json_line)
    stats: Counter  # sample_stats of the samples, tallied where they are made
    duplicates: list[Measured]  # records whose id an earlier record (by origin) has; only in the run's first epoch


class ShardTally(NamedTuple):
    """What a run counts of a shard: its samples, their manifest stats and the duplicate ids."""

    samples: int
    stats: Counter
    duplicates: list[Measured]

    @classmethod
    def of(cls, keys: Sequence[PackedKey]) -> ShardTally:
        stats: Counter = Counter()
        for packed in keys:
            stats.update(packed.stats)
        duplicates = [measured for packed in keys for measured in packed.duplicates]
        return cls(sum(len(packed.samples) for packed in keys), stats, duplicates)

    def records(self) -> int:
        """Record-epochs the shard's samples hold."""
        return sum(n for (section, _), n in self.stats.items() if section == "records")

    def rejections(self) -> list[Rejection]:
        return [reject(measured.record, "duplicate_id", DUPLICATE_DETAIL) for measured in self.duplicates]


def pack_shard(
    packer: KeyPacker, parts: Iterable[Iterable[ShardItem]], plan: ShardPlan, epoch_offset: int
) -> list[PackedKey]:
    """Packs the keys of one shard, given its items in any order and parts; in ordinal order."""
    by_ordinal: dict[int, list[tuple[int, Measured]]] = {}
    for part in parts:
        for ordinal, sort_hash, row in part:
            by_ordinal.setdefault(ordinal, []).append((sort_hash, Measured._make(row)))
    return [_pack_key(packer, ordinal, items, plan, epoch_offset) for ordinal, items in sorted(by_ordinal.items())]


def _pack_key(
    packer: KeyPacker, ordinal: int, items: list[tuple[int, Measured]], plan: ShardPlan, epoch_offset: int
) -> PackedKey:
    position, key = divmod(ordinal, plan.keys_per_epoch)
    kept, duplicates = order_records(items)
    samples = [sample.row() for sample in packer.pack(kept, epoch_offset + position, key)]
    return PackedKey(
        ordinal, [json_line(s) for s in samples], sample_stats(samples), duplicates if position == 0 else []
    )
