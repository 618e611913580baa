"""Reading input files into records and rejections."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, Protocol

import apache_beam as beam
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.core.decoding import (
    MAX_RECORD_BYTES,
    encoding_problem,
    excerpt,
    file_rejection,
    input_labels,
    is_single_value,
    parse_json_array,
    parse_raw_line,
    skip_space,
    split_lines,
)
from transforms.core.fields import DEFAULT_FIELDS, FieldMap
from transforms.core.limit import file_cuts, first_records, is_kept
from transforms.core.records import Record, Rejection
from transforms.progress import RECORDS_READ, RECORDS_REJECTED
from transforms.read_parquet import PARQUET_EXTENSION, read_parquet

RECORDS = "records"
REJECTED = "rejected"
_COMPRESSIONS = ("", ".gz", ".bz2", ".xz", ".lzma", ".zst")
# The only files read; a folder named by --input contributes those among its files.
INPUT_EXTENSIONS = (
    *(f"{kind}{compression}" for kind in (".jsonl", ".json") for compression in _COMPRESSIONS),
    PARQUET_EXTENSION,
)
CHUNK_BYTES = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
_GLOB_CHARACTERS = "*?["


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


# Decompressed here rather than by Beam, whose readers end a cut stream without an error.
_DECOMPRESSORS: dict[str, Callable[[Any], _Readable]] = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
    ".lzma": lzma.LZMAFile,
    ".zst": lambda raw: _ZstdStream(raw),
}


class _ZstdStream:
    """A decompressed zstd stream of one or more frames; a stream cut inside a frame raises EOFError
    (zstandard's own stream reader ends it quietly)."""

    def __init__(self, raw: _Readable):
        self.raw, self.decompressor = raw, zstandard.ZstdDecompressor().decompressobj()

    def read(self, size: int) -> bytes:
        while True:
            data = self.raw.read(size)
            if self.decompressor.eof:  # a frame ended: what follows it starts the next one
                data = self.decompressor.unused_data + data
                if not data:
                    return b""
                self.decompressor = zstandard.ZstdDecompressor().decompressobj()
            elif not data:
                raise EOFError("the zstd stream ends inside a frame")
            out = self.decompressor.decompress(data)
            if out:
                return out


class InputError(ValueError):
    """An --input glob that matches nothing, a folder holding no input file, or a file of an unknown kind."""


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Every file the patterns name, sorted. A glob that matches nothing is an error. A pattern
    naming a folder stands for the files directly in it with an extension of INPUT_EXTENSIONS
    (not those of its sub-folders); a folder holding none is an error, and so is a file named
    otherwise: its kind is never guessed."""
    paths: list[str] = []
    for pattern in patterns:
        matched = _folder_files(pattern) if _is_folder(pattern) else _matches(pattern)
        if not matched:
            raise InputError(f"--input '{pattern}' matches no file")
        paths += matched
    unknown = [path for path in paths if not path.lower().endswith(INPUT_EXTENSIONS)]
    if unknown:
        kinds = ", ".join(INPUT_EXTENSIONS)
        raise InputError(f"--input '{unknown[0]}' is not a file the reader knows; name it one of {kinds}")
    return sorted(set(paths))


def _matches(pattern: str) -> list[str]:
    try:
        (result,) = FileSystems.match([pattern])
    except OSError as err:  # Beam's BeamIOError: a missing bucket, no access...
        raise InputError(f"--input '{pattern}' cannot be listed: {err}") from None
    return sorted(metadata.path for metadata in result.metadata_list)


def _is_folder(pattern: str) -> bool:
    if any(character in pattern for character in _GLOB_CHARACTERS):
        return False
    if pattern.endswith(("/", "\\")) or os.path.isdir(pattern):
        return True
    return bool(_matches(FileSystems.join(pattern, "*")))  # a folder of a filesystem without folders (gs://)


def _folder_files(folder: str) -> list[str]:
    files = [
        path
        for path in _matches(FileSystems.join(folder.rstrip("/\\") or folder, "*"))
        if path.lower().endswith(INPUT_EXTENSIONS) and not os.path.isdir(path)
    ]
    if not files:
        raise InputError(f"--input '{folder}' is a folder holding no {', '.join(INPUT_EXTENSIONS)} file")
    return files


def file_label(path: str) -> str:
    """The label of a file read alone: its base name (see input_labels for a set of files)."""
    return input_labels([path])[path]


class _ReadFailure(Exception):
    """An OSError of the file itself, told apart from those a decompressor raises on bad data."""


class _Tagged:
    """A file whose read errors are raised as _ReadFailure."""

    def __init__(self, handle: IO[bytes]):
        self.handle = handle

    def read(self, size: int = -1) -> bytes:
        try:
            return self.handle.read(size)
        except OSError as err:
            raise _ReadFailure(err) from err


def _extension(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _holds_json_array(path: str) -> bool:
    name = path.lower()
    if CompressionTypes.detect_compression_type(name) != CompressionTypes.UNCOMPRESSED:
        name = os.path.splitext(name)[0]
    return name.endswith(".json")


class _Chunks:
    """The bytes of one file, decompressed and without a UTF-8 BOM, in chunks. A failure ends
    them and is kept in `failure` as (reason, what happened), for the one rejection of the file
    that follows the records read before it."""

    def __init__(self, path: str):
        self.path = path
        self.failure: tuple[str, str] | None = None
        self.ends_mid_line = False  # the last chunk does not end a line: a failure cut that line

    def __iter__(self) -> Iterator[bytes]:
        extension = _extension(self.path)
        with contextlib.ExitStack() as stack:
            try:
                own = extension in _DECOMPRESSORS
                compression = CompressionTypes.UNCOMPRESSED if own else CompressionTypes.AUTO
                raw = _Tagged(stack.enter_context(FileSystems.open(self.path, compression_type=compression)))
            except OSError as err:
                self.failure = ("unreadable_file", f"it cannot be opened ({err})")
                return
            stream = _DECOMPRESSORS[extension](raw) if own else raw
            read = getattr(stream, "read1", stream.read)  # read1: the data before an error is not held back
            head: bytes | None = b""  # the first bytes, until they tell whether the file can be UTF-8 text
            while True:
                try:
                    chunk = read(CHUNK_BYTES)
                except (_ReadFailure, EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as err:
                    self.failure = _failure(err, extension)
                    return
                if head is not None:
                    head += chunk
                    if len(head) < 4 and chunk:
                        continue
                    problem = encoding_problem(head)
                    if problem:
                        self.failure = ("not_utf8", problem)
                        return
                    chunk, head = head.removeprefix(_UTF8_BOM), None
                if not chunk:
                    return
                self.ends_mid_line = not chunk.endswith((b"\n", b"\r"))
                yield chunk


def _failure(err: Exception, extension: str) -> tuple[str, str]:
    kind = extension.lstrip(".")
    if isinstance(err, _ReadFailure):
        return "unreadable_file", f"reading it failed ({err.__cause__})"
    if isinstance(err, EOFError):
        return "truncated_compression", f"the {kind} stream ends early"
    return "corrupt_compression", f"the {kind} data is corrupt ({err})"


def read_file(path: str, label: str | None = None, fields: FieldMap = DEFAULT_FIELDS) -> Iterator[Record | Rejection]:
    """Records of one file: Parquet rows (`.parquet`), a JSON array (`.json`) or JSON lines
    (anything else); `.gz`, `.bz2`, `.xz` and `.zst` files are decompressed. `label` names the file in record ids (see input_labels);
    by default its base name. `fields` names the columns of its records (--fields, --tags).

    A `.json` file that is not one JSON value is read as JSON lines, since many datasets ship
    JSON lines under that name. A file that cannot be read to its end yields, after the
    records read before the damage, one rejection naming it (FILE_REJECT_REASONS): nothing
    about a file raises.
    """
    label = file_label(path) if label is None else label
    if path.lower().endswith(PARQUET_EXTENSION):
        yield from read_parquet(path, label, fields)
        return
    chunks = _Chunks(path)
    if not _holds_json_array(path):
        yield from _read_lines(chunks, label, chunks, fields)
        return
    data = b"".join(chunks)
    try:
        text, bad_byte = data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        text, bad_byte = data[: err.start].decode("utf-8"), err.start
    start = skip_space(text, 0)
    if text.startswith("[", start):
        count = 0
        complete = chunks.failure is None and bad_byte is None
        for item in parse_json_array(text, label, start, complete, fields):
            count += 1
            yield item
        if bad_byte is not None:
            what = f"byte {bad_byte:,} ({data[bad_byte : bad_byte + 1]!r}) is not UTF-8"
            yield file_rejection(label, "not_utf8", f"{what}; the {count:,} array elements before it are kept")
        if chunks.failure:
            reason, what = chunks.failure
            yield file_rejection(
                label, reason, f"{what} after array element {count:,}; the elements before it are kept"
            )
    elif chunks.failure is None and bad_byte is None and is_single_value(text, start):
        detail = "a .json file must hold an array of records, not one other JSON value"
        yield file_rejection(label, "not_a_json_array", detail, excerpt(data))
    else:
        yield from _read_lines([data], label, chunks, fields)


def _read_lines(source: Iterable[bytes], label: str, chunks: _Chunks, fields: FieldMap) -> Iterator[Record | Rejection]:
    """The items of JSON lines; each is held back until the next line is read, since the last line
    is cut short when reading fails within it."""
    held: Record | Rejection | None = None
    lines = 0
    for index, line in enumerate(split_lines(source, MAX_RECORD_BYTES)):
        if held is not None:
            yield held
        held, lines = parse_raw_line(line, label, index, fields), index + 1
    if chunks.failure and chunks.ends_mid_line and not isinstance(held, Record):
        held, lines = None, lines - 1  # the line the damage cut: the file's rejection speaks for it
    if held is not None:
        yield held
    if chunks.failure:
        reason, what = chunks.failure
        yield file_rejection(label, reason, f"{what} after line {lines:,}; the records before it are kept")


class _ParseFile(beam.DoFn):
    def __init__(self, fields: FieldMap):
        self.fields = fields

    def process(self, file: tuple[str, str]):
        for item in read_file(*file, self.fields):
            yield from _routed(item)


def _routed(item: Record | Rejection):
    RECORDS_READ.inc()
    if isinstance(item, Record):
        yield item
    else:
        RECORDS_REJECTED.inc()
        yield beam.pvalue.TaggedOutput(REJECTED, item)


_COUNTS = "counts"


class _ReadFirst(beam.DoFn):
    """(file number, (path, label)) -> (file number, records before, item) up to the file's
    `limit`-th record, and (file number, records read) tagged _COUNTS."""

    def __init__(self, limit: int, fields: FieldMap):
        self.limit, self.fields = limit, fields

    def process(self, numbered: tuple[int, tuple[str, str]]):
        number, file = numbered
        count = 0
        for before, item in first_records(read_file(*file, self.fields), self.limit):
            count = before + isinstance(item, Record)
            yield number, before, item
        yield beam.pvalue.TaggedOutput(_COUNTS, (number, count))


def _cuts(counts: list[tuple[int, int]], limit: int) -> list[int | None]:
    return file_cuts([count for _, count in sorted(counts)], limit)


def _keep_first(element: tuple[int, int, Record | Rejection], cuts: list[int | None]):
    number, before, item = element
    if is_kept(before, cuts[number]):
        yield from _routed(item)


class ReadRecords(beam.PTransform):
    """Files -> records (main output) and rejections (tagged `rejected`).

    Files are spread over workers (Create reshuffles its elements); the records of one
    file are read by one worker. Record ids name files by their labels among all `paths`.
    With `limit` (> 0), only the first `limit` records in input order and the rejections
    before the last of them (transforms/core/limit.py); each file is read up to its
    `limit`-th record at most. `fields` names the columns of the records (--fields, --tags).
    """

    def __init__(self, paths: Sequence[str], limit: int = 0, fields: FieldMap = DEFAULT_FIELDS):
        super().__init__()
        self.files = sorted(input_labels(paths).items())
        self.limit, self.fields = limit, fields

    def expand(self, pbegin):
        if not self.limit:
            files = pbegin | "ListFiles" >> beam.Create(self.files)
            return files | "ParseFiles" >> beam.ParDo(_ParseFile(self.fields)).with_outputs(REJECTED, main=RECORDS)
        numbered = pbegin | "ListFiles" >> beam.Create(list(enumerate(self.files)))
        read = numbered | "ReadFirst" >> beam.ParDo(_ReadFirst(self.limit, self.fields)).with_outputs(
            _COUNTS, main="items"
        )
        cuts = read[_COUNTS] | "AllCounts" >> beam.combiners.ToList() | "Cuts" >> beam.Map(_cuts, self.limit)
        keep = beam.ParDo(_keep_first, beam.pvalue.AsSingleton(cuts))
        return read["items"] | "KeepFirst" >> keep.with_outputs(REJECTED, main=RECORDS)
