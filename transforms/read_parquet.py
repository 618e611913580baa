"""Reading Parquet input files (as `datasets`' `to_parquet` and the Hugging Face Hub write them)
into records and rejections, one record batch at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.core.decoding import file_rejection
from transforms.core.fields import DEFAULT_FIELDS, FieldMap
from transforms.core.records import Record, Rejection, parse_object

PARQUET_EXTENSION = ".parquet"
BATCH_ROWS = 1024  # rows decoded at a time: a file is never held whole as Python objects


def read_parquet(path: str, label: str, fields: FieldMap = DEFAULT_FIELDS) -> Iterator[Record | Rejection]:
    """Every row of a Parquet file as a record or a rejection, with the origin `label:row index`.
    A file that is not Parquet, or whose data breaks part way, yields, after the rows read
    before the damage, one file-level rejection."""
    try:
        handle = FileSystems.open(path)
    except OSError as err:
        yield file_rejection(label, "unreadable_file", f"it cannot be opened ({err})")
        return
    index = 0
    with handle:
        try:
            parquet = pq.ParquetFile(handle, page_checksum_verification=True)
            # use_threads=False: the one-process plan forks helpers, and Arrow's thread pool does not survive a fork.
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
                for row in batch.to_pylist():
                    row = _present(row)
                    yield parse_object(row, label, index, raw=_raw(row), fields=fields)
                    index += 1
        except (pa.ArrowException, OSError) as err:  # pyarrow raises OSError for undecodable pages too
            detail = f"the Parquet data cannot be read after row {index:,} ({err}); the rows before it are kept"
            yield file_rejection(label, "corrupt_parquet", detail)


def _present(row: dict) -> dict:
    """A row without its null columns: every row of a Parquet file has every column, so a null
    stands for a field the record lacks (a JSON line with other shapes simply leaves it out)."""
    return {key: value for key, value in row.items() if value is not None}


def _raw(row: dict) -> str:
    """The row as JSON text for a rejection; values JSON lacks (bytes, dates) as their str()."""
    return json.dumps(row, ensure_ascii=False, default=str)
