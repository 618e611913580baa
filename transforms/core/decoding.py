"""Decoding input text into records: lines of any ending, element-by-element JSON arrays, limits on
nesting and size, and the labels that name files in record ids. Pure functions; `transforms/read.py`
feeds them the bytes of each file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from transforms.core.fields import DEFAULT_FIELDS, FieldMap
from transforms.core.records import Record, Rejection, origin_of, parse_object

MAX_NESTING = 100
MAX_RECORD_BYTES = 32 << 20  # a line or array element longer than this is rejected unread
EXCERPT_CHARS = 200  # of the text kept in a rejection that cannot hold the whole input


def file_rejection(label: str, reason: str, detail: str, excerpt: str = "") -> Rejection:
    """The one rejection of a file that cannot be read to its end (a reason of FILE_REJECT_REASONS)."""
    return Rejection(label, reason, detail, excerpt)


def input_labels(paths: Sequence[str]) -> dict[str, str]:
    """The label of each input file in record ids: the last `n` parts of its path, '/'-separated,
    with the same, smallest `n` that tells all the files apart. Files with distinct names keep
    their base names (the ids of earlier runs); `a/x.jsonl` and `b/x.jsonl` are told apart by
    their folders. Only the end of a path counts, so where the inputs lie does not."""
    parts = {path: [part for part in path.replace("\\", "/").split("/") if part] for path in paths}
    deepest = max((len(split) for split in parts.values()), default=0)
    for depth in range(1, deepest + 1):
        labels = {path: "/".join(split[-depth:]) for path, split in parts.items()}
        if len(set(labels.values())) == len(labels):
            return labels
    return {path: path for path in paths}  # one file named in two ways (a//x, a/x)


def parse_line(line: str, file_name: str, index: int, fields: FieldMap = DEFAULT_FIELDS) -> Record | Rejection:
    """Parses one JSONL line (or any JSON text holding one record)."""
    origin = origin_of(file_name, index)
    try:
        obj = json.loads(line)
    except RecursionError:
        return Rejection(origin, "too_deeply_nested", NESTING_DETAIL, line)
    except ValueError as err:
        return Rejection(origin, "malformed_json", f"invalid JSON: {err}", line)
    if too_deep(obj):
        return Rejection(origin, "too_deeply_nested", NESTING_DETAIL, line)
    return parse_object(obj, file_name, index, raw=line, fields=fields)


NESTING_DETAIL = f"the JSON nests deeper than {MAX_NESTING} levels of arrays and objects"

# A JSON string, or one bracket; what lies between them (numbers, commas...) is skipped.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _bracket_depths(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(nesting depth after each bracket outside strings, position after it), from start."""
    depth = 0
    for match in _STRUCTURE.finditer(text, start, end):
        first = text[match.start()]
        if first != '"':
            depth += 1 if first in "[{" else -1
            yield depth, match.end()


def too_deep(value: object) -> bool:
    """Whether a decoded JSON value nests arrays and objects deeper than MAX_NESTING. Checked on the
    value, not the text, so that long strings are not scanned again; without recursion, since a
    value the decoder's recursion limit let through may still nest hundreds of levels."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(MAX_NESTING):
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return False
    return True


def value_end(text: str, start: int) -> int | None:
    """Where the array or object starting at `start` ends, None when the text ends first."""
    return next((end for depth, end in _bracket_depths(text, start, len(text)) if depth == 0), None)


@dataclass(frozen=True)
class LongLine:
    """A line longer than the limit, kept only as its first bytes and its size."""

    head: bytes
    size: int


def split_lines(chunks: Iterable[bytes], limit: int = MAX_RECORD_BYTES) -> Iterator[bytes | LongLine]:
    """The lines of a byte stream, without their ends; a line ends at "\\n", "\\r\\n" or a lone "\\r".
    A line over `limit` bytes comes as a LongLine, and no more than its head is held."""
    parts: list[bytes] = []
    size = 0
    in_line = after_cr = False
    for chunk in chunks:
        if after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the "\n" of a "\r\n" cut between two chunks
        after_cr = chunk.endswith(b"\r")
        for body, ended in _pieces(chunk):
            if size + len(body) <= limit:
                parts.append(body)
            elif size <= limit:  # the line goes over the limit here: only its head is kept
                parts = [b"".join([*parts, body])[:EXCERPT_CHARS]]
            size += len(body)
            in_line = True
            if ended:
                yield _line(parts, size, limit)
                parts, size, in_line = [], 0, False
    if in_line:
        yield _line(parts, size, limit)


def _pieces(chunk: bytes) -> Iterator[tuple[bytes, bool]]:
    """(text, whether a line end follows it) for each piece of a chunk between line ends."""
    if b"\r" in chunk:
        for piece in chunk.splitlines(keepends=True):
            body = piece.rstrip(b"\r\n")
            yield body, len(body) < len(piece)
        return
    start = 0  # where "\n" is the only line end, find (memchr) beats splitlines several times over
    while (end := chunk.find(b"\n", start)) >= 0:
        yield chunk[start:end], True
        start = end + 1
    if start < len(chunk):
        yield chunk[start:], False


def _line(parts: list[bytes], size: int, limit: int) -> bytes | LongLine:
    joined = b"".join(parts)
    return LongLine(joined[:EXCERPT_CHARS], size) if size > limit else joined


def parse_raw_line(
    raw: bytes | LongLine, file_name: str, index: int, fields: FieldMap = DEFAULT_FIELDS
) -> Record | Rejection | None:
    """One line of a JSON lines file: a record, a rejection, or None for a blank line."""
    origin = origin_of(file_name, index)
    if isinstance(raw, LongLine):
        detail = f"the line holds {raw.size:,} bytes, over the limit of {MAX_RECORD_BYTES:,}"
        return Rejection(origin, "too_large", detail, excerpt(raw.head))
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return Rejection(origin, "malformed_json", f"line is not UTF-8: {err}", excerpt(raw, len(raw)))
    return parse_line(line, file_name, index, fields) if line.strip() else None


def excerpt(data: bytes, limit: int = EXCERPT_CHARS) -> str:
    """Bytes as text for a rejection, invalid UTF-8 replaced, cut at `limit` bytes."""
    return data[:limit].decode("utf-8", "replace")


_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff")


def encoding_problem(head: bytes) -> str | None:
    """Why a file starting with these (at least 4, or all) bytes cannot be UTF-8 JSON text, or None.
    JSON text never holds a raw NUL, so one among the first bytes means UTF-16/32 or binary."""
    if head.startswith(_UTF16_32_BOMS) or b"\x00" in head[:4]:
        kind = "gzip data (name it .gz)" if head.startswith(b"\x1f\x8b") else "UTF-16, UTF-32 or binary"
        return f"the file is {kind}, not UTF-8 text: {head[:4]!r}"
    return None


_WHITE_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def skip_space(text: str, position: int) -> int:
    return _WHITE_SPACE.match(text, position).end()  # type: ignore[union-attr]  # it matches the empty string


def _where(text: str, position: int) -> str:
    line, line_start = text.count("\n", 0, position) + 1, text.rfind("\n", 0, position) + 1
    return f"line {line:,} column {position - line_start + 1:,}"


def is_single_value(text: str, start: int) -> bool:
    """Whether the text from `start` is one JSON value and nothing else."""
    try:
        _, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return False
    return skip_space(text, end) == len(text)


def parse_json_array(
    text: str, file_name: str, start: int, complete: bool = True, fields: FieldMap = DEFAULT_FIELDS
) -> Iterator[Record | Rejection]:
    """The elements of the JSON array opening at text[start], one by one; an element too deep or
    too large is rejected alone. A break in the array itself (an element that is not JSON, no
    closing ']', something after it) ends the reading with one file-level rejection, after the
    elements before it. With `complete` False the text was cut short and its reader reports
    that, so a break in it is not reported again."""
    position = skip_space(text, start + 1)
    index = 0
    if not text.startswith("]", position):
        while True:
            element, end, broken = _element(text, file_name, position, index, fields)
            if element is None:
                if complete:
                    detail = f"{broken}; the {index:,} elements before it are kept"
                    yield file_rejection(file_name, "invalid_json_array", detail)
                return
            yield element
            index += 1
            position = skip_space(text, end)
            if not text.startswith(",", position):
                break
            position = skip_space(text, position + 1)
        if not text.startswith("]", position):
            if complete:
                detail = f"expected ',' or ']' after element {index - 1:,} at {_where(text, position)}"
                excerpt_text = text[position : position + EXCERPT_CHARS]
                yield file_rejection(
                    file_name, "invalid_json_array", f"{detail}; the {index:,} elements are kept", excerpt_text
                )
            return
    rest = skip_space(text, position + 1)
    if rest < len(text):
        detail = f"{len(text) - rest:,} characters follow the end of the array at {_where(text, rest)}"
        excerpt_text = text[rest : rest + EXCERPT_CHARS]
        yield file_rejection(file_name, "trailing_data", f"{detail}; its {index:,} elements are kept", excerpt_text)


def _element(
    text: str, file_name: str, position: int, index: int, fields: FieldMap
) -> tuple[Record | Rejection | None, int, str]:
    """(the element at `position` as a record or rejection, where it ends, "") or (None, -1, why the array breaks)."""
    origin = origin_of(file_name, index)
    try:
        obj, end = _DECODER.raw_decode(text, position)
    except RecursionError:
        skipped = value_end(text, position)
        if skipped is None:
            return None, -1, f"the file ends inside element {index:,}"
        return (
            Rejection(origin, "too_deeply_nested", NESTING_DETAIL, text[position : position + EXCERPT_CHARS]),
            skipped,
            "",
        )
    except json.JSONDecodeError as err:
        return None, -1, f"element {index:,} is not valid JSON ({err.msg} at {_where(text, err.pos)})"
    if end - position > MAX_RECORD_BYTES:
        detail = f"the element holds {end - position:,} characters, over the limit of {MAX_RECORD_BYTES:,}"
        return Rejection(origin, "too_large", detail, text[position : position + EXCERPT_CHARS]), end, ""
    if too_deep(obj):
        return (
            Rejection(origin, "too_deeply_nested", NESTING_DETAIL, text[position : position + EXCERPT_CHARS]),
            end,
            "",
        )
    return parse_object(obj, file_name, index, fields=fields), end, ""
