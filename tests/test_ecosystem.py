"""Fitting the ecosystem (issue 14): Parquet and zstd inputs, Parquet output, --limit, and the CLI's manners."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from transforms.core.records import FILE_REJECT_REASONS, Record
from transforms.read import InputError, expand_inputs, read_file


def rows(count: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"Say {i}.", "input": "", "output": f"{i}."} for i in range(start, start + count)]


def jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def read_all(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    items = list(read_file(str(path)))
    records = [item.id for item in items if isinstance(item, Record)]
    return records, [(item.source, item.reason) for item in items if not isinstance(item, Record)]


def write_parquet(path: Path, records: list[dict], row_group_size: int = 1000, **settings) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=row_group_size, **settings)
    return path


def test_a_parquet_file_of_many_row_groups_reads_every_row_in_order(tmp_path):
    path = write_parquet(tmp_path / "train-00000-of-00001.parquet", rows(2500), row_group_size=300)
    assert pq.ParquetFile(path).num_row_groups == 9
    records, rejected = read_all(path)
    assert records == [f"train-00000-of-00001.parquet:{i}" for i in range(2500)]
    assert rejected == []


def test_parquet_rows_get_the_rejection_reasons_of_json_lines(tmp_path):
    conversation = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]
    table = pa.Table.from_pylist(
        [
            {"instruction": "Add 1 and 1.", "output": "2", "conversations": None},
            {"instruction": "", "output": "empty", "conversations": None},
            {"instruction": "Blank answer.", "output": " ", "conversations": None},
            {"instruction": None, "output": None, "conversations": conversation},
        ]
    )
    pq.write_table(table, tmp_path / "mixed.parquet")
    items = list(read_file(str(tmp_path / "mixed.parquet")))
    assert [getattr(item, "reason", "record") for item in items] == [
        "record",
        "empty_instruction",
        "empty_response",
        "record",
    ]
    assert items[3].instruction == "Hi?" and items[3].origin == "mixed.parquet:3"


def test_a_truncated_parquet_file_is_one_file_rejection(tmp_path):
    path = write_parquet(tmp_path / "cut.parquet", rows(500))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    records, rejected = read_all(path)
    assert records == []
    assert rejected == [("cut.parquet", "corrupt_parquet")]
    assert "corrupt_parquet" in FILE_REJECT_REASONS


def test_a_parquet_file_damaged_in_a_later_row_group_keeps_the_rows_before(tmp_path):
    path = write_parquet(tmp_path / "hurt.parquet", rows(3000), row_group_size=1000, write_page_checksum=True)
    metadata = pq.ParquetFile(path).metadata
    last = metadata.row_group(2).column(0)
    start = last.dictionary_page_offset or last.data_page_offset
    data = bytearray(path.read_bytes())
    for offset in range(start + 40, start + last.total_compressed_size - 8):
        data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    records, rejected = read_all(path)
    assert records == [f"hurt.parquet:{i}" for i in range(len(records))]
    assert 1000 <= len(records) <= 2048  # the rows of the sound row groups, up to the batch holding the damage
    assert rejected == [("hurt.parquet", "corrupt_parquet")]


@pytest.mark.parametrize("name", ["data.jsonl.zst", "data.json.zst"])
def test_zstd_inputs_read_like_their_plain_files(name, tmp_path):
    records = rows(3000)
    text = jsonl(records) if name.startswith("data.jsonl") else json.dumps(records).encode()
    compressor = zstandard.ZstdCompressor()
    half = len(text) // 2  # two frames, as zstd's --rsyncable or concatenated files give
    (tmp_path / name).write_bytes(compressor.compress(text[:half]) + compressor.compress(text[half:]))
    assert read_all(tmp_path / name) == ([f"{name}:{i}" for i in range(3000)], [])


def test_a_cut_zstd_file_keeps_the_records_before_the_cut(tmp_path):
    data = zstandard.ZstdCompressor().compress(jsonl(rows(30_000)))  # several zstd blocks
    (tmp_path / "cut.jsonl.zst").write_bytes(data[: len(data) // 2])
    records, rejected = read_all(tmp_path / "cut.jsonl.zst")
    assert 0 < len(records) < 30_000
    assert rejected == [("cut.jsonl.zst", "truncated_compression")]


@pytest.mark.parametrize("name", ["data.csv", "data.txt", "data.parquet.gz", "data.jsonl.snappy"])
def test_a_file_of_an_unknown_kind_is_an_error_before_the_run(name, tmp_path):
    (tmp_path / name).write_bytes(b"{}\n")
    with pytest.raises(InputError, match="not a file the reader knows"):
        expand_inputs([str(tmp_path / name)])
    with pytest.raises(InputError, match="not a file the reader knows"):
        expand_inputs([str(tmp_path / "data.*")])


def test_a_folder_contributes_only_the_files_the_reader_knows(tmp_path):
    write_parquet(tmp_path / "b.parquet", rows(3))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl(rows(3))))
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "c.csv").write_text("instruction,output\n")
    assert [Path(path).name for path in expand_inputs([str(tmp_path)])] == ["a.jsonl.zst", "b.parquet"]
