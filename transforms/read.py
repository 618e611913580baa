"""Reading input files into records and rejections."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.core.records import Record, Rejection, origin_of, parse_line, parse_object
from transforms.progress import RECORDS_READ, RECORDS_REJECTED

RECORDS = "records"
REJECTED = "rejected"


class InputError(ValueError):
    """An --input glob that matches nothing."""


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Every file the globs match, sorted; a glob that matches nothing is an error."""
    paths = []
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        matched = sorted(metadata.path for metadata in result.metadata_list)
        if not matched:
            raise InputError(f"--input '{pattern}' matches no file")
        paths.extend(matched)
    return sorted(set(paths))


def file_label(path: str) -> str:
    """The name used in record ids: the file's base name."""
    return posixpath.basename(path.replace("\\", "/"))


def read_file(path: str) -> Iterator[Record | Rejection]:
    """Records of one file: a JSON array (`.json`) or JSON lines (anything else).

    A `.json` file that is not one JSON value is read as JSON lines, since many
    datasets ship JSON lines under that name. `.gz` files are decompressed.
    """
    name = file_label(path)
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
        if not name.removesuffix(".gz").endswith(".json"):
            yield from _read_lines(iter(handle.readline, b""), name)
            return
        data = handle.read()
    try:
        document = json.loads(data)
    except ValueError:
        yield from _read_lines(data.splitlines(keepends=True), name)
        return
    if not isinstance(document, list):
        yield Rejection(name, "not_an_object", "a .json input must hold an array of records", _text(data[:1000]))
        return
    for index, obj in enumerate(document):
        yield parse_object(obj, name, index)


def _read_lines(lines: Iterable[bytes], name: str) -> Iterator[Record | Rejection]:
    for index, raw in enumerate(lines):
        raw = raw.rstrip(b"\r\n")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield Rejection(origin_of(name, index), "malformed_json", f"line is not UTF-8: {err}", _text(raw))
            continue
        if line.strip():
            yield parse_line(line, name, index)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class _ParseFile(beam.DoFn):
    def process(self, path: str):
        for item in read_file(path):
            RECORDS_READ.inc()
            if isinstance(item, Record):
                yield item
            else:
                RECORDS_REJECTED.inc()
                yield beam.pvalue.TaggedOutput(REJECTED, item)


class ReadRecords(beam.PTransform):
    """Files -> records (main output) and rejections (tagged `rejected`).

    Files are spread over workers (Create reshuffles its elements); the records of one
    file are read by one worker.
    """

    def __init__(self, paths: Sequence[str]):
        super().__init__()
        self.paths = list(paths)

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self.paths)
            | "ParseFiles" >> beam.ParDo(_ParseFile()).with_outputs(REJECTED, main=RECORDS)
        )
