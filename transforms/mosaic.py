"""Beam wiring of Mosaic-IT: measure records once, key them per epoch, pack each key."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import apache_beam as beam
from apache_beam.utils import shared

from transforms.core.packing import KeyPacker, Measured, Overheads, PackSettings, Sample, order_records
from transforms.core.randomness import record_keys
from transforms.core.records import Record, reject
from transforms.core.rules import load_rules
from transforms.core.tokens import LengthTemplate, SampleLengths, load_counter
from transforms.progress import RECORDS_REJECTED, RECORDS_TOKENIZED, SAMPLES_PACKED
from transforms.read import REJECTED

SAMPLES = "samples"


@dataclass(frozen=True)
class MosaicConfig:
    """The options the mosaic transforms need; built once from the pipeline options."""

    tokenizer: str
    length_template: str
    rules: Optional[str]
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
        self.rules = load_rules(config.rules)
        self.overheads = Overheads.measure(self.lengths, self.rules)


class _WithResources(beam.DoFn):
    def __init__(self, config: MosaicConfig, handle: shared.Shared):
        self.config = config
        self._handle = handle
        self.resources: Optional[Resources] = None

    def setup(self):
        tag = repr((self.config.tokenizer, self.config.length_template, self.config.rules))
        self.resources = self._handle.acquire(lambda: Resources(self.config), tag=tag)


# What crosses the shuffle: plain tuples, which Beam encodes without pickling.
Row = tuple  # (id, instruction, input, output, origin, n_tokens)


def to_row(measured: Measured) -> Row:
    r = measured.record
    return (r.id, r.instruction, r.input, r.output, r.origin, measured.n_tokens)


def from_row(row: Row) -> Measured:
    return Measured(Record(*row[:5]), row[5])


class _MeasureBatch(_WithResources):
    """Counts a batch of records in one tokenizer call; a record alone over the budget is rejected."""

    def process(self, batch: list[Record]):
        counts = self.resources.lengths.count([(r.prompt, r.output) for r in batch])
        RECORDS_TOKENIZED.inc(len(batch))
        for record, n_tokens in zip(batch, counts):
            if n_tokens > self.config.max_length:
                RECORDS_REJECTED.inc()
                detail = f"{n_tokens} tokens on its own, over --max-length {self.config.max_length}"
                yield beam.pvalue.TaggedOutput(REJECTED, reject(record, "over_budget", detail))
            else:
                yield to_row(Measured(record, n_tokens))


class MeasureRecords(beam.PTransform):
    """Records -> rows with their exact token length (main) and over-budget rejections."""

    def __init__(self, config: MosaicConfig, handle: shared.Shared):
        super().__init__()
        self.config, self.handle = config, handle

    def expand(self, records):
        return (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=4096)
            | "Count" >> beam.ParDo(_MeasureBatch(self.config, self.handle)).with_outputs(REJECTED, main="rows")
        )


def keys_per_epoch(record_count: int, records_per_key: int) -> int:
    """Enough keys to spread the work, few enough that each holds about records_per_key records."""
    return max(1, record_count // records_per_key)


class _AssignEpochKeys(beam.DoFn):
    def __init__(self, config: MosaicConfig):
        self.config = config

    def process(self, row: Row, num_keys: int):
        for epoch in self.config.epoch_numbers:
            group_hash, sort_hash = record_keys(self.config.seed, epoch, row[0])
            yield (epoch, group_hash % num_keys), (sort_hash, row)


class _PackKey(_WithResources):
    """One (epoch, key): order its records, pack them, emit its samples as one list."""

    def setup(self):
        super().setup()
        r = self.resources
        self.packer = KeyPacker(self.config.pack_settings, r.rules, r.lengths, r.overheads)

    def process(self, element, num_keys: int):
        (epoch, key), values = element
        kept, duplicates = order_records([(sort_hash, from_row(row)) for sort_hash, row in values])
        if epoch == self.config.epoch_offset:  # reject a duplicate once, not once per epoch
            for measured in duplicates:
                RECORDS_REJECTED.inc()
                detail = "another record has this id; the first in input order (file name, then index) is kept"
                yield beam.pvalue.TaggedOutput(REJECTED, reject(measured.record, "duplicate_id", detail))
        samples = self.packer.pack(kept, epoch, key)
        SAMPLES_PACKED.inc(len(samples))
        ordinal = (epoch - self.config.epoch_offset) * num_keys + key
        yield ordinal, [sample_to_dict(sample) for sample in samples]


class MosaicSamples(beam.PTransform):
    """Measured rows -> (key ordinal, [sample dict]) per (epoch, key), and duplicate-id rejections.

    `num_keys` is a singleton PCollection: keys per epoch.
    """

    def __init__(self, config: MosaicConfig, handle: shared.Shared, num_keys):
        super().__init__()
        self.config, self.handle, self.num_keys = config, handle, num_keys

    def expand(self, rows):
        num_keys = beam.pvalue.AsSingleton(self.num_keys)
        return (
            rows
            | "AssignEpochKeys" >> beam.ParDo(_AssignEpochKeys(self.config), num_keys)
            | "GroupByKey" >> beam.GroupByKey()
            | "PackKeys" >> beam.ParDo(_PackKey(self.config, self.handle), num_keys).with_outputs(REJECTED, main=SAMPLES)
        )


def sample_to_dict(sample: Sample) -> dict:
    return {
        "id": sample.id,
        "instruction": sample.instruction,
        "input": sample.input,
        "output": sample.output,
        "count": sample.count,
        "epoch": sample.epoch,
        "strategy": sample.strategy,
        "rule": sample.rule,
        "sources": list(sample.sources),
        "response_order": list(sample.response_order),
        "masked": list(sample.masked),
        "n_tokens": sample.n_tokens,
    }
