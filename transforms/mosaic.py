"""Beam wiring of Mosaic-IT: read and measure records once, group them by the output
shard of their (epoch, key) in one shuffle (or, on a one-worker runner, all in one task
with forked helpers), pack each key and write each shard where it is packed."""

from __future__ import annotations

import functools
import gc
import pickle
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

import apache_beam as beam
import zstandard
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils import shared

from transforms.core.packing import KeyPacker, Measured, Overheads, PackSettings, order_records
from transforms.core.randomness import RecordKeys
from transforms.core.records import Record, Rejection, reject
from transforms.core.rules import load_rules, parse_rules
from transforms.core.tokens import LengthTemplate, SampleLengths, load_counter
from transforms.forked import map_forked
from transforms.progress import RECORDS_READ, RECORDS_REJECTED, RECORDS_TOKENIZED, SAMPLES_PACKED
from transforms.read import RECORDS, REJECTED, ReadRecords, read_file
from transforms.write import OutputFormat, WriteShards, json_line, write_shard

SAMPLES = "samples"
STATS = "stats"  # (section, name) -> count over a shard's samples, for the manifest
# Records measured per tokenizer call; their rows also travel together through the shuffle.
MEASURE_BATCH = 4096


@dataclass(frozen=True)
class MosaicConfig:
    """The options the mosaic transforms need; built once from the pipeline options."""

    tokenizer: str
    length_template: str
    rules_text: str | None  # the --rules file's content; None for the built-in rules
    seed: int
    epochs: int
    epoch_offset: int
    strategy: str
    wrap_mode: str
    wrap_max: int
    max_length: int
    records_per_key: int

    @property
    def epoch_numbers(self) -> range:
        return range(self.epoch_offset, self.epoch_offset + self.epochs)

    @property
    def pack_settings(self) -> PackSettings:
        return PackSettings(self.seed, self.strategy, self.wrap_mode, self.wrap_max, self.max_length)


class Resources:
    """What each worker process loads once and shares between DoFns: tokenizer, rules, overheads."""

    def __init__(self, config: MosaicConfig):
        self.lengths = SampleLengths(load_counter(config.tokenizer), LengthTemplate(config.length_template))
        self.rules = load_rules() if config.rules_text is None else parse_rules(config.rules_text, "--rules")
        self.overheads = Overheads.measure(self.lengths, self.rules)


# Allocations between young-generation collections of the cyclic garbage collector (Python's default is 700).
COLLECTOR_THRESHOLD = 100_000


def relax_collector() -> None:
    """Makes the worker's cyclic garbage collector run about 100x less often.

    The pipeline allocates millions of small objects (rows, texts, samples) that hold no
    reference cycles; at the default thresholds the collector walks them, and everything
    else in flight, again and again: about a second of a 12-second run on 55k records.
    """
    threshold, *older = gc.get_threshold()
    if threshold < COLLECTOR_THRESHOLD:
        gc.set_threshold(COLLECTOR_THRESHOLD, *older)


class _WithResources(beam.DoFn):
    def __init__(self, config: MosaicConfig, handle: shared.Shared):
        self.config = config
        self._handle = handle
        self.resources: Resources | None = None

    def setup(self):
        relax_collector()
        tag = repr((self.config.tokenizer, self.config.length_template, self.config.rules_text))
        self.resources = self._handle.acquire(lambda: Resources(self.config), tag=tag)


Row = tuple  # a Measured as a plain tuple: pickled smaller and faster than the named tuple


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


def measure_rows(
    lengths: SampleLengths, records: Sequence[Record], max_length: int
) -> tuple[list[Row], list[Rejection]]:
    """Rows of the records (one tokenizer call for all), and rejections of those alone over the budget."""
    rows, rejected = [], []
    for record, (n_tokens, prompt_part, output_part) in zip(
        records, lengths.measure([(r.prompt, r.output) for r in records])
    ):
        if n_tokens > max_length:
            rejected.append(
                reject(record, "over_budget", f"{n_tokens} tokens on its own, over --max-length {max_length}")
            )
        else:
            rows.append(tuple(Measured.of(record, n_tokens, prompt_part, output_part)))
    return rows, rejected


class _MeasureRecords(_WithResources):
    """Measures records MEASURE_BATCH at a time and emits their rows as RowBatches; a
    record alone over the budget is rejected.

    It batches by itself rather than after BatchElements: Beam samples the size of a
    PCollection's elements by encoding them, which for lists of records means pickling.
    """

    def start_bundle(self):
        self._batch: list[Record] = []

    def process(self, record: Record):
        self._batch.append(record)
        if len(self._batch) >= MEASURE_BATCH:
            yield from self._measure(lambda value: value)

    def finish_bundle(self):
        if self._batch:
            yield from self._measure(GlobalWindows.windowed_value)  # finish_bundle must say the window

    def _measure(self, wrap):
        batch, self._batch = self._batch, []
        rows, rejected = measure_rows(self.resources.lengths, batch, self.config.max_length)
        RECORDS_TOKENIZED.inc(len(batch))
        RECORDS_REJECTED.inc(len(rejected))
        for rejection in rejected:
            yield beam.pvalue.TaggedOutput(REJECTED, wrap(rejection))
        if rows:
            yield wrap(RowBatch(rows))


class FileRows(NamedTuple):
    """One input file, read and measured."""

    read: int  # its records and unreadable entries
    tokenized: int
    batches: list[RowBatch]  # its rows, MEASURE_BATCH records' worth each
    rejected: list[Rejection]


class _ReadAndMeasureFiles(_WithResources):
    """[every input path] -> RowBatches and rejections; the files are read and measured by
    `processes` processes, this one and helpers forked from it (see map_forked)."""

    def __init__(self, config: MosaicConfig, handle: shared.Shared, processes: int):
        super().__init__(config, handle)
        self.processes = processes

    def process(self, paths: list[str]):
        for file_rows in map_forked(self._read_and_measure, paths, self.processes):
            RECORDS_READ.inc(file_rows.read)
            RECORDS_TOKENIZED.inc(file_rows.tokenized)
            RECORDS_REJECTED.inc(len(file_rows.rejected))
            for rejection in file_rows.rejected:
                yield beam.pvalue.TaggedOutput(REJECTED, rejection)
            yield from file_rows.batches

    def _read_and_measure(self, path: str) -> FileRows:
        read, records, rejected = 0, [], []
        for item in read_file(path):
            read += 1
            (records if isinstance(item, Record) else rejected).append(item)
        batches = []
        for start in range(0, len(records), MEASURE_BATCH):
            rows, over_budget = measure_rows(
                self.resources.lengths, records[start : start + MEASURE_BATCH], self.config.max_length
            )
            rejected += over_budget
            if rows:
                batches.append(RowBatch(rows))
        return FileRows(read, len(records), batches, rejected)


class ReadAndMeasure(beam.PTransform):
    """Input paths -> {"rows": RowBatches of rows with their exact token length, REJECTED:
    unreadable and over-budget records}.

    On a runner with many workers, files are spread over them and their records are
    measured MEASURE_BATCH at a time. With `in_one_task` (the in-memory runner, see
    MosaicShards), one task reads and measures every file, with `processes` processes.
    """

    def __init__(
        self,
        paths: Sequence[str],
        config: MosaicConfig,
        handle: shared.Shared,
        in_one_task: bool = False,
        processes: int = 1,
    ):
        super().__init__()
        self.paths, self.config, self.handle = list(paths), config, handle
        self.in_one_task, self.processes = in_one_task, processes

    def expand(self, pbegin):
        if self.in_one_task:
            measured = (
                pbegin
                | "AllFiles" >> beam.Create([self.paths])
                | "ReadAndMeasure"
                >> beam.ParDo(_ReadAndMeasureFiles(self.config, self.handle, self.processes))
                .with_output_types(RowBatch)
                .with_outputs(REJECTED, main="rows")
            )
            return {"rows": measured.rows, REJECTED: measured[REJECTED]}
        read = pbegin | "Read" >> ReadRecords(self.paths)
        measured = read[RECORDS] | "Measure" >> beam.ParDo(_MeasureRecords(self.config, self.handle)).with_output_types(
            RowBatch
        ).with_outputs(REJECTED, main="rows")
        rejected = (read[REJECTED], measured[REJECTED]) | "Rejected" >> beam.Flatten()
        return {"rows": measured.rows, REJECTED: rejected}


def sample_stats(samples: Sequence[dict]) -> Counter:
    """(section, name) -> count over the samples, for the manifest; each field is tallied
    by one Counter pass, then per distinct value."""
    counts = Counter()
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


def keys_per_epoch(record_count: int, records_per_key: int) -> int:
    """Enough keys to spread the work, few enough that each holds about records_per_key records."""
    return max(1, record_count // records_per_key)


def shard_of(ordinal: int, total_keys: int, num_shards: int) -> int:
    """Contiguous ranges of key ordinals per shard, so shards follow epoch order."""
    return ordinal * num_shards // total_keys


class EpochOrdinals:
    """(key ordinal, sort hash) of a record in each epoch of the run; ordinals number the
    (epoch, key)s of the run in order, epoch by epoch."""

    def __init__(self, config: MosaicConfig, num_keys: int):
        self._num_keys = num_keys
        self._epochs = [
            (position * num_keys, RecordKeys(config.seed, epoch)) for position, epoch in enumerate(config.epoch_numbers)
        ]

    def __call__(self, record_id: str) -> list[tuple[int, int]]:
        ordinals = []
        for first_ordinal, record_keys in self._epochs:
            group_hash, sort_hash = record_keys(record_id)
            ordinals.append((first_ordinal + group_hash % self._num_keys, sort_hash))
        return ordinals


class _AssignShards(beam.DoFn):
    """A RowBatch -> (shard, RowBatch of (key ordinal, sort hash, row)) for every epoch of every row."""

    def __init__(self, config: MosaicConfig):
        self.config = config

    def process(self, batch: RowBatch, num_keys: int, num_shards: int):
        total_keys = num_keys * self.config.epochs
        epoch_ordinals = EpochOrdinals(self.config, num_keys)
        by_shard: dict[int, list] = {}
        for row in batch:
            for ordinal, sort_hash in epoch_ordinals(row[0]):
                by_shard.setdefault(shard_of(ordinal, total_keys, num_shards), []).append((ordinal, sort_hash, row))
        for shard, rows in by_shard.items():
            yield shard, RowBatch(rows)


class PackedKey(NamedTuple):
    ordinal: int
    samples: list[bytes]  # JSON lines (json_line)
    stats: Counter  # sample_stats of the samples, tallied where they are made
    duplicates: list[Measured]  # records whose id an earlier record (by origin) has; only in the run's first epoch


class ShardTally(NamedTuple):
    """What the driver counts of a shard packed elsewhere."""

    samples: int
    stats: Counter
    duplicates: list[Measured]

    @classmethod
    def of(cls, keys: Sequence[PackedKey]) -> ShardTally:
        stats = Counter()
        for packed in keys:
            stats.update(packed.stats)
        return cls(
            sum(len(packed.samples) for packed in keys), stats, [m for packed in keys for m in packed.duplicates]
        )


class _PackKeys(_WithResources):
    """Packs (epoch, key)s; emits what the shards hold, their sample_stats (STATS) and the
    duplicate-id rejections (REJECTED)."""

    def setup(self):
        super().setup()
        r = self.resources
        self.packer = KeyPacker(self.config.pack_settings, r.rules, r.lengths, r.overheads)

    def _pack_key(self, job: tuple[int, list], num_keys: int) -> PackedKey:
        """`job`: a key ordinal and its records, as (sort hash, Measured)."""
        ordinal, items = job
        position, key = divmod(ordinal, num_keys)
        kept, duplicates = order_records(items)
        samples = [sample._asdict() for sample in self.packer.pack(kept, self.config.epoch_offset + position, key)]
        return PackedKey(
            ordinal,
            [json_line(sample) for sample in samples],
            sample_stats(samples),
            duplicates if position == 0 else [],
        )

    def _emit_tally(self, tally: ShardTally):
        detail = "another record has this id; the first in input order (file name, then index) is kept"
        RECORDS_REJECTED.inc(len(tally.duplicates))
        for measured in tally.duplicates:
            yield beam.pvalue.TaggedOutput(REJECTED, reject(measured.record, "duplicate_id", detail))
        SAMPLES_PACKED.inc(tally.samples)
        yield beam.pvalue.TaggedOutput(STATS, tally.stats)


class _PackShard(_PackKeys):
    """(shard, RowBatches of (key ordinal, sort hash, row)) -> (shard, RowBatch of (key
    ordinal, [sample JSON line])), for WriteShards."""

    def process(self, element, num_keys: int):
        shard, parts = element
        by_ordinal: dict[int, list] = {}
        for batch in parts:
            for ordinal, sort_hash, row in batch:
                by_ordinal.setdefault(ordinal, []).append((sort_hash, Measured._make(row)))
        keys = [self._pack_key(job, num_keys) for job in sorted(by_ordinal.items())]
        yield from self._emit_tally(ShardTally.of(keys))
        yield shard, RowBatch([(packed.ordinal, packed.samples) for packed in keys])


class _PackAndWriteAll(_PackKeys):
    """(0, every RowBatch of rows) -> the sample files of every shard, empty or not.

    Each shard is packed and written by one of `processes` processes, this one and
    helpers forked from it (see map_forked), which send back only the file paths and
    the shard's ShardTally.
    """

    def __init__(
        self,
        config: MosaicConfig,
        handle: shared.Shared,
        processes: int,
        directory: str,
        formats: Sequence[OutputFormat],
    ):
        super().__init__(config, handle)
        self.processes, self.directory, self.formats = processes, directory, list(formats)

    def process(self, element, num_keys: int, num_shards: int):
        _, batches = element
        epoch_ordinals = EpochOrdinals(self.config, num_keys)
        by_ordinal: dict[int, list] = {}
        for batch in batches:
            for row in batch:
                measured = Measured._make(row)
                for ordinal, sort_hash in epoch_ordinals(measured.id):
                    by_ordinal.setdefault(ordinal, []).append((sort_hash, measured))
        total_keys = num_keys * self.config.epochs
        jobs: list[tuple[int, list]] = [(shard, []) for shard in range(num_shards)]
        for ordinal, items in sorted(by_ordinal.items()):
            jobs[shard_of(ordinal, total_keys, num_shards)][1].append((ordinal, items))
        del by_ordinal
        write = functools.partial(self._pack_and_write, num_keys=num_keys, num_shards=num_shards)
        for paths, tally in map_forked(write, jobs, self.processes):
            yield from self._emit_tally(tally)
            yield from paths

    def _pack_and_write(self, job: tuple[int, list], num_keys: int, num_shards: int) -> tuple[list[str], ShardTally]:
        shard, key_jobs = job
        keys = [self._pack_key(key_job, num_keys) for key_job in key_jobs]
        paths = write_shard(
            self.directory, self.formats, shard, num_shards, [line for packed in keys for line in packed.samples]
        )
        return paths, ShardTally.of(keys)


class MosaicShards(beam.PTransform):
    """RowBatches -> {"files": the sample files of every shard, STATS: each shard's
    sample_stats, REJECTED: duplicate-id rejections}.

    Rows are grouped once, by the output shard of their (epoch, key), and each shard is
    packed and written in `formats` to `directory` by the worker that groups it.
    `num_keys` (keys per epoch) and `num_shards` are singleton PCollections; without
    `num_shards`, each (epoch, key) is a shard.

    `in_one_task` is for a runner with one worker (the in-memory FnApiRunner): spreading
    shards over tasks buys it nothing, while sending each row to the shard of each of its
    epochs copies every text once per epoch through the shuffle. There every row crosses
    the shuffle once, into one task that assigns the keys itself and packs and writes the
    shards with `processes` processes (itself and forked helpers); the files are the same.
    """

    def __init__(
        self,
        config: MosaicConfig,
        handle: shared.Shared,
        num_keys,
        directory: str,
        formats: Sequence[OutputFormat],
        num_shards=None,
        in_one_task: bool = False,
        processes: int = 1,
    ):
        super().__init__()
        self.config, self.handle, self.num_keys, self.num_shards = config, handle, num_keys, num_shards
        self.directory, self.formats = directory, list(formats)
        self.in_one_task, self.processes = in_one_task, processes

    def expand(self, rows):
        num_shards = self.num_shards
        if num_shards is None:
            num_shards = self.num_keys | "ShardPerKey" >> beam.Map(lambda keys: keys * self.config.epochs)
        keys_side, shards_side = beam.pvalue.AsSingleton(self.num_keys), beam.pvalue.AsSingleton(num_shards)
        if self.in_one_task:
            # One empty batch besides the rows, so the task runs (and writes every shard empty) with no valid record.
            nothing = self.num_keys | "EmptyBatch" >> beam.Map(lambda _: (0, RowBatch([]))).with_output_types(
                tuple[int, RowBatch]
            )
            batches = rows | "OneTask" >> beam.Map(lambda batch: (0, batch)).with_output_types(tuple[int, RowBatch])
            packed = (
                (batches, nothing)
                | "AllBatches" >> beam.Flatten()
                | "GroupAll" >> beam.GroupByKey()
                | "PackAndWrite"
                >> beam.ParDo(
                    _PackAndWriteAll(self.config, self.handle, self.processes, self.directory, self.formats),
                    keys_side,
                    shards_side,
                ).with_outputs(REJECTED, STATS, main="files")
            )
            return {"files": packed.files, STATS: packed[STATS], REJECTED: packed[REJECTED]}
        packed = (
            rows
            | "AssignShards"
            >> beam.ParDo(_AssignShards(self.config), keys_side, shards_side).with_output_types(tuple[int, RowBatch])
            | "GroupByShard" >> beam.GroupByKey()
            | "PackShards"
            >> beam.ParDo(_PackShard(self.config, self.handle), keys_side)
            .with_output_types(tuple[int, RowBatch])
            .with_outputs(REJECTED, STATS, main=SAMPLES)
        )
        files = packed[SAMPLES] | "Write" >> WriteShards(self.directory, self.formats, num_shards)
        return {"files": files, STATS: packed[STATS], REJECTED: packed[REJECTED]}
