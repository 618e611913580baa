"""Deterministic sharded writers: samples, rejections, and select's order, scores and picks.

Beam's own file sinks assign elements to shards in arrival order, so their files differ
from run to run. Here every element carries its shard and an order key; each shard is
grouped, sorted and written whole (to a temporary name, then renamed), so the same
input and seed give byte-identical files on any runner and any number of workers.
Every shard is written, empty or not, so a `-of-NNNNN` set is always complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.core.randomness import digest
from transforms.core.records import Rejection
from transforms.core.selection import RoundOrder, ScoreRow
from transforms.core.shards import files_for
from transforms.files import write_atomically, write_shard
from transforms.formats import REJECTED_FORMAT, SCORES_FORMAT, SELECTED_FORMAT, OutputFormat

ROWS_PER_SHARD = 100_000  # rejections, scores and selected records per file
ORDER_FILE = "order.jsonl"  # a select round's whole order, one file


class _WriteShard(beam.DoFn):
    def __init__(self, directory: str, formats: Sequence[OutputFormat]):
        self.directory = directory
        self.formats = list(formats)

    def process(self, element, num_shards: int):
        shard, parts = element
        ordered = sorted(parts, key=lambda part: part[0])
        rows = [row for _, part_rows in ordered for row in part_rows]
        yield from write_shard(self.directory, self.formats, shard, num_shards, rows)


def _missing_shards(num_shards: int, present: list[int]):
    return [(shard, []) for shard in sorted(set(range(num_shards)) - set(present))]


class WriteShards(beam.PTransform):
    """(shard, [(order key, [row])]) -> files, one per shard and format; yields their paths.

    A row is what the formats encode (a dict; a JSON line for SAMPLE_FORMATS). Rows within
    a shard are written in order-key order; every shard in range(num_shards) that gets no
    element is written empty. `num_shards` is a singleton PCollection.
    """

    def __init__(self, directory: str, formats: Sequence[OutputFormat], num_shards):
        super().__init__()
        self.directory, self.formats, self.num_shards = directory, list(formats), num_shards

    def expand(self, shards):
        # Empty shards are found after the fact: a Flatten would copy all the data once more.
        num_shards = beam.pvalue.AsSingleton(self.num_shards)
        written = shards | "Write" >> beam.ParDo(_WriteShard(self.directory, self.formats), num_shards)
        empty = (
            self.num_shards
            | "EmptyShards" >> beam.FlatMap(_missing_shards, beam.pvalue.AsList(shards | "Shards" >> beam.Keys()))
            | "WriteEmpty" >> beam.ParDo(_WriteShard(self.directory, self.formats), num_shards)
        )
        return (written, empty) | "AllFiles" >> beam.Flatten()


class WriteSortedShards(beam.PTransform):
    """(shard, (order key, [row])) -> files, one per shard and format; yields their paths.

    `num_shards` is a singleton PCollection. Rows within a shard are written in order-key order.
    """

    def __init__(self, directory: str, formats: Sequence[OutputFormat], num_shards):
        super().__init__()
        self.directory, self.formats, self.num_shards = directory, list(formats), num_shards

    def expand(self, parts):
        return (
            parts
            | "GroupByShard" >> beam.GroupByKey()
            | "Write" >> WriteShards(self.directory, self.formats, self.num_shards)
        )


class KeyByShard(beam.PTransform):
    """Elements -> ((shard, value) pairs, a singleton: the number of shards), for `per_shard`
    elements a shard (at least one shard); `assign(element, shards)` gives an element's pair."""

    def __init__(self, per_shard: int, assign: Callable[[Any, int], tuple[int, Any]]):
        super().__init__()
        self.per_shard, self.assign = per_shard, assign

    def expand(self, elements):
        shards = elements | "Count" >> beam.combiners.Count.Globally() | "Shards" >> beam.Map(files_for, self.per_shard)
        return elements | "Assign" >> beam.Map(self.assign, beam.pvalue.AsSingleton(shards)), shards


def _rejected_shard(rejection: Rejection, shards: int):
    row = rejection.to_dict()
    order = (row["source"], row["reason"], row["detail"], row["record"])
    return int.from_bytes(digest("rejected", row["source"])[:8], "big") % shards, (order, [row])


@beam.ptransform_fn
def WriteRejected(rejections, directory: str):
    """Rejections -> rejected-SSSSS-of-NNNNN.jsonl, ROWS_PER_SHARD a file, sorted; yields the paths."""
    keyed, shards = rejections | "ShardRejected" >> KeyByShard(ROWS_PER_SHARD, _rejected_shard)
    return keyed | "WriteRejected" >> WriteSortedShards(directory, [REJECTED_FORMAT], shards)


class WriteOrderFile(beam.DoFn):
    """The round's order (a RoundOrder) -> DIRECTORY/order.jsonl, one file; yields its path."""

    def __init__(self, directory: str):
        self.directory = directory

    def process(self, order: RoundOrder):
        path = FileSystems.join(self.directory, ORDER_FILE)
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in order.rows)
        write_atomically(path, lines.encode("utf-8"))
        yield path


def _score_rows(order: RoundOrder, shards: int):
    """Every row's score, sharded by id hash and sorted by id within a shard."""
    for row in order.rows:
        score = ScoreRow.from_dict(row).to_dict()
        yield int.from_bytes(digest("scores", row["id"])[:8], "big") % shards, (row["id"], [score])


class WriteScores(beam.PTransform):
    """The round's order (a singleton RoundOrder) -> scores-SSSSS-of-NNNNN.jsonl; yields the paths."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, order):
        shards = order | "ScoreShards" >> beam.Map(lambda o: files_for(len(o.rows), ROWS_PER_SHARD))
        return (
            order
            | "ScoreRows" >> beam.FlatMap(_score_rows, beam.pvalue.AsSingleton(shards))
            | "WriteScoreShards" >> WriteSortedShards(self.directory, [SCORES_FORMAT], shards)
        )


def _selected(candidate, picks: dict[str, int]):
    """A picked candidate's record in pick order, in contiguous shards of pick numbers."""
    pick = picks.get(candidate.record.id)
    if pick is not None:
        shard = pick * files_for(len(picks), ROWS_PER_SHARD) // len(picks)
        yield shard, (pick, [candidate.record.to_alpaca()])


class WriteSelected(beam.PTransform):
    """Candidates and the round's order -> selected-SSSSS-of-NNNNN.jsonl (the picks, Alpaca with
    their ids, in pick order: `mosaic-it run --input` reads them as they are); yields the paths."""

    def __init__(self, directory: str, order):
        super().__init__()
        self.directory, self.order = directory, order

    def expand(self, candidates):
        picks = self.order | "Picks" >> beam.Map(
            lambda o: {row["id"]: row["pick"] for row in o.rows if row["pick"] is not None}
        )
        shards = picks | "SelectedShards" >> beam.Map(lambda p: files_for(len(p), ROWS_PER_SHARD))
        return (
            candidates
            | "PickRecords" >> beam.FlatMap(_selected, beam.pvalue.AsSingleton(picks))
            | "WriteSelectedShards" >> WriteSortedShards(self.directory, [SELECTED_FORMAT], shards)
        )
