"""Output formats: how a shard's rows become the bytes of one file.

Samples travel as their JSON lines (`core.shards.json_line`); the JSON-lines format
writes them as they are and the others decode them. Every encoder is deterministic: the
same rows give the same bytes on any runner.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import fastavro
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.core.randomness import digest
from transforms.core.records import prompt_of
from transforms.core.shards import json_line

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

_TEXT_LIST = pa.list_(pa.field("item", pa.string(), nullable=False))
PARQUET_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("input", pa.string(), nullable=False),
        pa.field("output", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("epoch", pa.int64(), nullable=False),
        pa.field("strategy", pa.string(), nullable=False),
        pa.field("rule", pa.string()),
        pa.field("sources", _TEXT_LIST, nullable=False),
        pa.field("response_order", _TEXT_LIST, nullable=False),
        pa.field("masked", _TEXT_LIST, nullable=False),
        pa.field("n_tokens", pa.int64(), nullable=False),
    ]
)
MESSAGES_PROVENANCE = ("epoch", "strategy", "sources")  # the sample columns the messages format keeps
PARQUET_ROW_GROUP = 10_000  # rows; fixed, so a shard's bytes do not depend on how it was written

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class OutputFormat(Generic[RowT]):
    """Files named `{prefix}-SSSSS-of-NNNNN.{extension}`; `encode(rows, file name)` gives a file's bytes."""

    prefix: str
    extension: str
    encode: Callable[[Iterable[RowT], str], bytes]


def _json_lines(rows: Iterable[dict], file_name: str) -> bytes:
    return b"".join([json_line(row) for row in rows])


def _messages(rows: Iterable[dict], file_name: str) -> bytes:
    """One user/assistant exchange per sample, with the sample's provenance beside it (trainers
    that read only `messages` ignore the other columns)."""
    return _json_lines(
        (
            {
                "id": row["id"],
                "messages": [
                    {"role": "user", "content": prompt_of(row["instruction"], row["input"])},
                    {"role": "assistant", "content": row["output"]},
                ],
                **{name: row[name] for name in MESSAGES_PROVENANCE},
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


def _parquet(rows: Iterable[dict], file_name: str) -> bytes:
    # Parquet metadata holds no time or random id; the writer's version (created_by) is fixed by the pin.
    buffer = pa.BufferOutputStream()
    table = pa.Table.from_pylist(list(rows), schema=PARQUET_SCHEMA)
    pq.write_table(table, buffer, compression="zstd", compression_level=3, row_group_size=PARQUET_ROW_GROUP)
    return buffer.getvalue().to_pybytes()


def _lines_as_written(lines: Iterable[bytes], file_name: str) -> bytes:
    return b"".join(lines)


def _decoded(encode: Callable[[Iterable[dict], str], bytes]) -> Callable[[Iterable[bytes], str], bytes]:
    """An encoder of rows given as JSON lines."""
    return lambda lines, file_name: encode(map(orjson.loads, lines), file_name)


SAMPLE_FORMATS: dict[str, OutputFormat[bytes]] = {
    "jsonl": OutputFormat("mosaics", "jsonl", _lines_as_written),
    "avro": OutputFormat("mosaics", "avro", _decoded(_avro)),
    "messages": OutputFormat("messages", "jsonl", _decoded(_messages)),
    "parquet": OutputFormat("mosaics", "parquet", _decoded(_parquet)),
}
REJECTED_FORMAT: OutputFormat[dict] = OutputFormat("rejected", "jsonl", _json_lines)
# `mosaic-it select`: every record's score, and the selected records (Alpaca with their id).
SCORES_FORMAT: OutputFormat[dict] = OutputFormat("scores", "jsonl", _json_lines)
SELECTED_FORMAT: OutputFormat[dict] = OutputFormat("selected", "jsonl", _json_lines)
