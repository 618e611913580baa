"""The whole mosaic run in one task, on every core of one machine: the plan for Beam's
in-memory runner.

That runner executes one bundle at a time in one thread, so spreading files and shards
over tasks buys it nothing, while sending each row to the shard of each of its epochs
copies every text once per epoch through its shuffle. Here one task reads and measures
every file, plans the shards, and packs and writes them, sharing the files and then the
shards with helper processes forked from it (`forked.map_forked`). It uses the same
functions as the plan for many workers (`core/shards.py`), so it writes the same files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import apache_beam as beam

from transforms.core.decoding import input_labels
from transforms.core.limit import first_of_files
from transforms.core.records import Record, Rejection
from transforms.core.shards import (
    MEASURE_BATCH,
    EpochOrdinals,
    Row,
    ShardItem,
    ShardPlan,
    ShardTally,
    assign_shards,
    measure_rows,
    pack_shard,
)
from transforms.forked import map_forked
from transforms.mosaic import FILES, STATS, VALID, MosaicJob, WithResources, emit_tally, planned
from transforms.progress import RECORDS_READ, RECORDS_REJECTED, RECORDS_TOKENIZED
from transforms.read import REJECTED, read_file
from transforms.write import write_shard


class FileRows(NamedTuple):
    """One input file, read and measured."""

    read: int  # its records and unreadable entries
    tokenized: int
    rows: list[Row]
    rejected: list[Rejection]


class _MosaicInOneProcess(WithResources):
    """[every input path] -> sample file paths, with STATS, REJECTED and VALID."""

    def __init__(self, job: MosaicJob, processes: int):
        super().__init__(job.config)
        self.job, self.processes = job, processes

    def process(self, paths: list[str]):
        rows: list[Row] = []
        files = sorted(input_labels(paths).items())
        for file_rows in self._read_and_measure_all(files):
            RECORDS_READ.inc(file_rows.read)
            RECORDS_TOKENIZED.inc(file_rows.tokenized)
            RECORDS_REJECTED.inc(len(file_rows.rejected))
            for rejection in file_rows.rejected:
                yield beam.pvalue.TaggedOutput(REJECTED, rejection)
            rows += file_rows.rows
        yield beam.pvalue.TaggedOutput(VALID, len(rows))
        plan = planned(len(rows), self.config, self.job.num_shards)
        shards: list[list[ShardItem]] = [[] for _ in range(plan.num_shards)]
        for shard, items in assign_shards(rows, EpochOrdinals(self.config, plan), plan).items():
            shards[shard] = items
        del rows
        jobs = [(shard, items, plan) for shard, items in enumerate(shards)]
        for written, tally in map_forked(self._pack_and_write, jobs, self.processes):
            yield from emit_tally(tally)
            yield from written

    def _read_and_measure_all(self, files: list[tuple[str, str]]):
        """FileRows of every file. With a limit, the files are read here, in order, up to the limit-th
        record (the cut of ReadRecords), and the helpers only measure."""
        if not self.job.limit:
            return map_forked(self._read_and_measure, files, self.processes)
        kept = list(first_of_files((read_file(*file, self.job.fields) for file in files), self.job.limit))
        return map_forked(self._measure, kept, self.processes)

    def _read_and_measure(self, file: tuple[str, str]) -> FileRows:
        return self._measure(read_file(*file, self.job.fields))

    def _measure(self, items: Iterable[Record | Rejection]) -> FileRows:
        records: list[Record]
        rejected: list[Rejection]
        read, records, rejected = 0, [], []
        for item in items:
            read += 1
            if isinstance(item, Record):
                records.append(item)
            else:
                rejected.append(item)
        rows = []
        for start in range(0, len(records), MEASURE_BATCH):
            batch_rows, over_budget = measure_rows(
                self.resources.lengths, records[start : start + MEASURE_BATCH], self.config.max_length
            )
            rows += batch_rows
            rejected += over_budget
        return FileRows(read, len(records), rows, rejected)

    def _pack_and_write(self, job: tuple[int, list[ShardItem], ShardPlan]) -> tuple[list[str], ShardTally]:
        shard, items, plan = job
        keys = pack_shard(self.packer, [items], plan, self.config.epoch_offset)
        lines = [line for packed in keys for line in packed.samples]
        paths = write_shard(self.job.directory, self.job.formats, shard, plan.num_shards, lines)
        return paths, ShardTally.of(keys)


class MosaicInOneProcess(beam.PTransform):
    """Begin -> {FILES, STATS, REJECTED, VALID}: the whole mosaic run in one task with
    `processes` processes (this one and forked helpers); the same job and outputs as
    MosaicSamples, the plan for many workers."""

    def __init__(self, job: MosaicJob, processes: int):
        super().__init__()
        self.job, self.processes = job, processes

    def expand(self, pbegin):
        produced = (
            pbegin
            | "AllFiles" >> beam.Create([list(self.job.paths)])
            | "ReadPackWrite"
            >> beam.ParDo(_MosaicInOneProcess(self.job, self.processes)).with_outputs(
                STATS, REJECTED, VALID, main=FILES
            )
        )
        return {FILES: produced[FILES], STATS: produced[STATS], REJECTED: produced[REJECTED], VALID: produced[VALID]}
