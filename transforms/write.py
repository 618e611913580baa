"""Deterministic sharded outputs: JSON lines, Avro and chat messages, plus the manifest.

Beam's own file sinks assign elements to shards in arrival order, so their files differ
from run to run. Here every element carries its shard and an order key; each shard is
grouped, sorted and written whole (to a temporary name, then renamed), so the same
input and seed give byte-identical files on any runner and any number of workers.
Every shard is written, empty or not, so a `-of-NNNNN` set is always complete.
"""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import apache_beam as beam
import fastavro
import orjson
from apache_beam.io.filesystems import FileSystems

from transforms.core.randomness import digest

SAMPLE_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "MosaicSample",
        "namespace": "mosaic_it",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "instruction", "type": "string"},
            {"name": "input", "type": "string"},
            {"name": "output", "type": "string"},
            {"name": "count", "type": "int"},
            {"name": "epoch", "type": "int"},
            {"name": "strategy", "type": "string"},
            {"name": "rule", "type": ["null", "string"]},
            {"name": "sources", "type": {"type": "array", "items": "string"}},
            {"name": "response_order", "type": {"type": "array", "items": "string"}},
            {"name": "masked", "type": {"type": "array", "items": "string"}},
            {"name": "n_tokens", "type": "int"},
        ],
    }
)


def json_line(row: dict) -> bytes:
    """One compact JSON object and a newline, non-ASCII text unescaped; orjson writes it
    4-5x faster than json.dumps on long texts."""
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


def _json_lines(rows: Iterable[dict], file_name: str) -> bytes:
    return b"".join([json_line(row) for row in rows])


def _messages(rows: Iterable[dict], file_name: str) -> bytes:
    return _json_lines(
        (
            {
                "id": row["id"],
                "messages": [
                    {"role": "user", "content": row["instruction"]},
                    {"role": "assistant", "content": row["output"]},
                ],
            }
            for row in rows
        ),
        file_name,
    )


def _avro(rows: Iterable[dict], file_name: str) -> bytes:
    buffer = io.BytesIO()
    # Avro files normally get a random sync marker; derive it from the file name instead.
    # Deflate at level 1 writes twice as fast as zlib's default level, for files about 10% larger.
    fastavro.writer(
        buffer,
        SAMPLE_SCHEMA,
        rows,
        codec="deflate",
        codec_compression_level=1,
        sync_marker=digest("avro-sync", file_name),
    )
    return buffer.getvalue()


def _decoded(encode: Callable[[Iterable[dict], str], bytes]) -> Callable[[Iterable[bytes], str], bytes]:
    """An encoder of rows given as JSON lines."""
    return lambda lines, file_name: encode(map(orjson.loads, lines), file_name)


@dataclass(frozen=True)
class OutputFormat:
    prefix: str
    extension: str
    encode: Callable[[Iterable[dict], str], bytes]


# Samples travel as their JSON lines (json_line): written as they are, decoded for the other formats.
SAMPLE_FORMATS = {
    "jsonl": OutputFormat("mosaics", "jsonl", lambda lines, file_name: b"".join(lines)),
    "avro": OutputFormat("mosaics", "avro", _decoded(_avro)),
    "messages": OutputFormat("messages", "jsonl", _decoded(_messages)),
}
REJECTED_FORMAT = OutputFormat("rejected", "jsonl", _json_lines)
REJECTED_PER_SHARD = 100_000
# `mosaic-it select`: every record's score, and the selected records (Alpaca with their id).
SCORES_FORMAT = OutputFormat("scores", "jsonl", _json_lines)
SELECTED_FORMAT = OutputFormat("selected", "jsonl", _json_lines)
OUTPUT_PREFIXES = sorted({f.prefix for f in SAMPLE_FORMATS.values()} | {REJECTED_FORMAT.prefix})


def shard_name(directory: str, fmt: OutputFormat, shard: int, num_shards: int) -> str:
    return FileSystems.join(directory, f"{fmt.prefix}-{shard:05d}-of-{num_shards:05d}.{fmt.extension}")


def write_atomically(path: str, data: bytes) -> None:
    """Writes to a unique temporary name, then renames, so a reader never sees half a file."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temporary) as handle:
        handle.write(data)
    FileSystems.rename([temporary], [path])


def write_shard(directory: str, formats: Sequence[OutputFormat], shard: int, num_shards: int, rows: list) -> list[str]:
    """Writes one shard's rows in every format; returns the files' paths."""
    paths = []
    for fmt in formats:
        path = shard_name(directory, fmt, shard, num_shards)
        write_atomically(path, fmt.encode(rows, path.rsplit("/", 1)[-1]))
        paths.append(path)
    return paths


class _WriteShard(beam.DoFn):
    def __init__(self, directory: str, formats: Sequence[OutputFormat]):
        self.directory = directory
        self.formats = list(formats)

    def process(self, element, num_shards: int):
        shard, parts = element
        ordered = sorted(parts, key=lambda part: part[0])
        yield from write_shard(
            self.directory, self.formats, shard, num_shards, [row for _, part_rows in ordered for row in part_rows]
        )


class WriteShards(beam.PTransform):
    """(shard, [(order key, [row])]) -> files, one per shard and format; yields their paths.

    A row is what the formats encode (a dict; a JSON line for SAMPLE_FORMATS). Rows within a shard are written in order-key order; every shard in range(num_shards)
    that gets no element is written empty, so a `-of-NNNNN` set is always complete.
    `num_shards` is a singleton PCollection.
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


def _missing_shards(num_shards: int, present: list[int]):
    return [(shard, []) for shard in sorted(set(range(num_shards)) - set(present))]


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


def clear_outputs(
    directory: str, prefixes: Sequence[str] = OUTPUT_PREFIXES, names: Sequence[str] = ("manifest.json",)
) -> None:
    """Removes the files of an earlier run in `directory`, so shard sets never mix."""
    patterns = [FileSystems.join(directory, f"{prefix}-*") for prefix in prefixes]
    patterns.extend(FileSystems.join(directory, name) for name in names)
    stale = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    if stale:
        FileSystems.delete(stale)


class ShardCount(beam.PTransform):
    """Elements -> a singleton: how many files hold them at `per_shard` elements a file (at least one)."""

    def __init__(self, per_shard: int):
        super().__init__()
        self.per_shard = per_shard

    def expand(self, elements):
        return (
            elements
            | "Count" >> beam.combiners.Count.Globally()
            | "Files" >> beam.Map(lambda count, per_shard: max(1, math.ceil(count / per_shard)), self.per_shard)
        )


class WriteRejected(beam.PTransform):
    """Rejections -> rejected-SSSSS-of-NNNNN.jsonl, one shard per REJECTED_PER_SHARD, sorted; yields the paths."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, rejections):
        shards = rejections | "RejectedShards" >> ShardCount(REJECTED_PER_SHARD)
        return (
            rejections
            | "ShardRejected" >> beam.Map(_assign_rejected_shard, beam.pvalue.AsSingleton(shards))
            | "WriteRejected" >> WriteSortedShards(self.directory, [REJECTED_FORMAT], shards)
        )


def _assign_rejected_shard(rejection, shards: int):
    row = rejection.to_dict()
    order = (row["source"], row["reason"], row["detail"], row["record"])
    return int.from_bytes(digest("rejected", row["source"])[:8], "big") % shards, (order, [row])
