"""Beam wiring of Mosaic-IT on a runner with many workers.

Files are spread over workers and their records measured in batches; every row is sent
once per epoch to the output shard of its (epoch, key), where the shard's keys are
packed and written. The one-process plan of the in-memory runner (`in_memory.py`)
produces the same outputs from the same functions of `core/shards.py`.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils import shared

from transforms.core.config import MosaicConfig, Resources
from transforms.core.fields import DEFAULT_FIELDS, FieldMap
from transforms.core.records import Record
from transforms.core.shards import (
    MEASURE_BATCH,
    EpochOrdinals,
    ShardPlan,
    ShardTally,
    assign_shards,
    measure_rows,
    pack_shard,
)
from transforms.encoding import RowBatch
from transforms.formats import OutputFormat
from transforms.progress import (
    RECORD_EPOCHS_PACKED,
    RECORD_EPOCHS_PLANNED,
    RECORDS_REJECTED,
    RECORDS_TOKENIZED,
    SAMPLES_PACKED,
)
from transforms.read import RECORDS, REJECTED, ReadRecords
from transforms.write import WriteShards

# Outputs of the mosaic plans (besides REJECTED).
ROWS = "rows"  # RowBatches of measured rows
FILES = "files"  # paths of the sample files written
STATS = "stats"  # (section, name) -> count over a shard's samples, for the manifest
VALID = "valid"  # a singleton: how many records are valid (measured and within the budget)
SAMPLES = "samples"  # (shard, RowBatch of (key ordinal, [sample JSON line]))

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


class WithResources(beam.DoFn):
    """A DoFn that uses the worker's Resources, loaded once per process and config."""

    _handle = shared.Shared()  # one per process: DoFns of a pipeline share what it holds
    resources: Resources

    def __init__(self, config: MosaicConfig):
        self.config = config

    def setup(self):
        relax_collector()
        self.resources = self._handle.acquire(lambda: Resources(self.config), tag=self.config.resources_tag)
        self.packer = self.resources.packer(self.config)


def planned(valid_records: int, config: MosaicConfig, num_shards: int) -> ShardPlan:
    """The run's ShardPlan, once its valid records are counted; progress lines take their total from it."""
    RECORD_EPOCHS_PLANNED.inc(valid_records * config.epochs)
    return ShardPlan.of(valid_records, config, num_shards)


def emit_tally(tally: ShardTally):
    """A packed shard's duplicate-id rejections (REJECTED) and sample stats (STATS)."""
    rejections = tally.rejections()
    RECORDS_REJECTED.inc(len(rejections))
    for rejection in rejections:
        yield beam.pvalue.TaggedOutput(REJECTED, rejection)
    SAMPLES_PACKED.inc(tally.samples)
    RECORD_EPOCHS_PACKED.inc(tally.records())
    yield beam.pvalue.TaggedOutput(STATS, tally.stats)


class _MeasureRecords(WithResources):
    """Records -> RowBatches of MEASURE_BATCH rows, and over-budget rejections (REJECTED).

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


class ReadAndMeasure(beam.PTransform):
    """Begin -> {ROWS: RowBatches of rows with their exact token length, REJECTED:
    unreadable and over-budget records}; files are spread over workers."""

    def __init__(self, paths: Sequence[str], config: MosaicConfig, limit: int = 0, fields: FieldMap = DEFAULT_FIELDS):
        super().__init__()
        self.paths, self.config, self.limit, self.fields = list(paths), config, limit, fields

    def expand(self, pbegin):
        read = pbegin | "Read" >> ReadRecords(self.paths, self.limit, self.fields)
        measured = read[RECORDS] | "Measure" >> beam.ParDo(_MeasureRecords(self.config)).with_outputs(
            REJECTED, main=ROWS
        )
        rejected = (read[REJECTED], measured[REJECTED]) | "Rejected" >> beam.Flatten()
        return {ROWS: measured[ROWS], REJECTED: rejected}


class _AssignShards(beam.DoFn):
    """A RowBatch -> (shard, RowBatch of (key ordinal, sort hash, row)) for every epoch of every row."""

    def __init__(self, config: MosaicConfig):
        self.config = config

    def process(self, batch: RowBatch, plan: ShardPlan):
        for shard, items in assign_shards(batch, EpochOrdinals(self.config, plan), plan).items():
            yield shard, RowBatch(items)


class _PackShard(WithResources):
    """(shard, RowBatches of (key ordinal, sort hash, row)) -> (shard, RowBatch of (key
    ordinal, [sample JSON line])), with the shard's tally (STATS, REJECTED)."""

    def process(self, element, plan: ShardPlan):
        shard, parts = element
        keys = pack_shard(self.packer, parts, plan, self.config.epoch_offset)
        yield from emit_tally(ShardTally.of(keys))
        yield shard, RowBatch([(packed.ordinal, packed.samples) for packed in keys])


class PackShards(beam.PTransform):
    """RowBatches of rows -> {SAMPLES, STATS, REJECTED: duplicate ids}: rows are grouped once,
    by the output shard of each of their (epoch, key)s, and each shard is packed where it
    is grouped. `plan` is a singleton PCollection of the ShardPlan."""

    def __init__(self, config: MosaicConfig, plan):
        super().__init__()
        self.config, self.plan = config, plan

    def expand(self, rows):
        plan = beam.pvalue.AsSingleton(self.plan)
        return (
            rows
            | "AssignShards" >> beam.ParDo(_AssignShards(self.config), plan).with_output_types(tuple[int, RowBatch])
            | "GroupByShard" >> beam.GroupByKey()
            | "PackShards" >> beam.ParDo(_PackShard(self.config), plan).with_outputs(REJECTED, STATS, main=SAMPLES)
        )


class CountRows(beam.PTransform):
    """RowBatches -> a singleton: how many rows they hold."""

    def expand(self, batches):
        return batches | "Sizes" >> beam.Map(len) | "Sum" >> beam.CombineGlobally(sum)


@dataclass(frozen=True)
class MosaicJob:
    """What a mosaic plan reads, how it packs, and where and in which formats it writes."""

    paths: tuple[str, ...]
    config: MosaicConfig
    directory: str
    formats: tuple[OutputFormat, ...]
    num_shards: int  # 0: one shard per KEYS_PER_SHARD keys
    limit: int = 0  # --limit: only the first records of the input (transforms/core/limit.py); 0: all
    fields: FieldMap = DEFAULT_FIELDS  # --fields and --tags: the columns of the input records


class MosaicSamples(beam.PTransform):
    """Begin -> {FILES, STATS, REJECTED, VALID}: the whole mosaic run over many workers.

    Reads and measures the job's files, packs every epoch, and writes the sample shards.
    """

    def __init__(self, job: MosaicJob):
        super().__init__()
        self.job = job

    def expand(self, pbegin):
        job = self.job
        measured = pbegin | "ReadAndMeasure" >> ReadAndMeasure(job.paths, job.config, job.limit, job.fields)
        valid = measured[ROWS] | "CountValid" >> CountRows()
        plan = valid | "Plan" >> beam.Map(planned, job.config, job.num_shards)
        packed = measured[ROWS] | "Pack" >> PackShards(job.config, plan)
        shards = plan | "NumShards" >> beam.Map(lambda p: p.num_shards)
        files = packed[SAMPLES] | "Write" >> WriteShards(job.directory, job.formats, shards)
        rejected = (measured[REJECTED], packed[REJECTED]) | "Rejected" >> beam.Flatten()
        return {FILES: files, STATS: packed[STATS], REJECTED: rejected, VALID: valid}
