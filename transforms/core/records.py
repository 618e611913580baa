"""Input records: shape detection and validation, as pure functions.

Every input line or array element becomes either a :class:`Record` or a
:class:`Rejection` with a reason from :data:`REJECT_REASONS`; nothing is dropped. A file
that cannot be read to its end gets one file-level rejection (a reason of
:data:`FILE_REJECT_REASONS`) naming it, after the records read before the damage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

REJECT_REASONS = (
    "malformed_json",  # the line or file is not valid JSON
    "not_an_object",  # valid JSON, but not an object
    "unknown_shape",  # an object matching none of the supported record shapes
    "missing_field",  # a required field is absent
    "not_a_string",  # a text field holds something other than a string
    "invalid_unicode",  # a text field holds a lone surrogate (an unpaired \ud800-\udfff escape)
    "empty_instruction",  # the instruction (with its input) is empty or blank
    "empty_response",  # the response is empty or blank
    "multi_turn",  # a conversation with more than one user/assistant exchange
    "unsupported_role",  # a conversation turn that is not system/user/assistant (tool calls...)
    "over_budget",  # the record alone exceeds --max-length tokens
    "duplicate_id",  # another record carries the same id; the first by origin is kept
    "too_deeply_nested",  # the record's JSON nests deeper than MAX_NESTING levels
    "too_large",  # the record's line (or array element) is longer than MAX_RECORD_BYTES
    # File-level (FILE_REJECT_REASONS), `source` is the file's label; the records before the damage are kept:
    "unreadable_file",  # the file cannot be opened or read (vanished, no permission, a folder, I/O error)
    "truncated_compression",  # the compressed stream ends before its end marker (a cut .gz)
    "corrupt_compression",  # the compressed data is invalid (not gzip at all, bad checksum, garbage after it)
    "not_utf8",  # the file is UTF-16/32 or binary, or a .json array holds a byte that is not UTF-8
    "not_a_json_array",  # a .json file holding one JSON value that is not an array
    "invalid_json_array",  # a .json array broken part way: an element that is not JSON, or no closing ']'
    "trailing_data",  # something other than white space follows the closing ']' of a .json array
    # `mosaic-it select` only:
    "template_mismatch",  # the chat template does not render the response as one piece of the text
    "response_truncated",  # nothing of the response is left within --max-tokens
    "non_finite_score",  # the model gave a NaN or infinite loss or IFD
    "not_in_previous_order",  # a later round's input record that the previous round did not order
)
# Reasons of a rejection that stands for (part of) a whole file, not one record: the run lost data.
FILE_REJECT_REASONS: tuple[str, ...] = ()

FILE_REJECT_REASONS = (
    "unreadable_file",
    "truncated_compression",
    "corrupt_compression",
    "not_utf8",
    "not_a_json_array",
    "invalid_json_array",
    "trailing_data",
)

# Python's json recurses once per level, and where it gives up depends on how deep the caller's stack
# already is; a fixed limit far below that makes the outcome the same on every runner.
MAX_NESTING = 100
MAX_RECORD_BYTES = 32 << 20  # a line or array element longer than this is rejected unread
EXCERPT_CHARS = 200  # of the text kept in a rejection that cannot hold the whole input

_USER_ROLES = {"user", "human"}
_ASSISTANT_ROLES = {"assistant", "gpt"}
_SYSTEM_ROLES = {"system"}


@dataclass(frozen=True)
class Record:
    """One instruction/response pair, whatever its input shape."""

    id: str
    instruction: str
    input: str
    output: str
    origin: str  # "<file label>:<0-based index>", unique per input position (see input_labels)

    @property
    def prompt(self) -> str:
        return prompt_of(self.instruction, self.input)

    def to_alpaca(self) -> dict[str, str]:
        return {"id": self.id, "instruction": self.instruction, "input": self.input, "output": self.output}


def prompt_of(instruction: str, input_text: str) -> str:
    """The instruction as the model sees it: the input, if any, on the next line."""
    return f"{instruction}\n{input_text}" if input_text else instruction


def origin_order(origin: str) -> tuple[str, int]:
    """Sort key of an origin: file name, then index as a number (so ":10" follows ":9")."""
    name, _, index = origin.rpartition(":")
    return name, int(index)


@dataclass(frozen=True)
class Rejection:
    """An input that cannot become (part of) a sample, and why."""

    source: str  # the record id when known, else "<file label>:<0-based index>"; the label alone for a file
    reason: str
    detail: str
    record: str  # the raw text of the input

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason, "detail": self.detail, "record": self.record}


def reject(record: Record, reason: str, detail: str) -> Rejection:
    """A rejection of a parsed record, which keeps the record in Alpaca form."""
    return Rejection(record.id, reason, detail, json.dumps(record.to_alpaca(), ensure_ascii=False))


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def origin_of(file_name: str, index: int) -> str:
    return f"{file_name}:{index}"


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


def parse_line(line: str, file_name: str, index: int) -> Record | Rejection:
    """Parses one JSONL line (or any JSON text holding one record)."""
    origin = origin_of(file_name, index)
    if too_deep(line):
        return Rejection(origin, "too_deeply_nested", NESTING_DETAIL, line)
    try:
        obj = json.loads(line)
    except RecursionError:
        return Rejection(origin, "too_deeply_nested", NESTING_DETAIL, line)
    except ValueError as err:
        return Rejection(origin, "malformed_json", f"invalid JSON: {err}", line)
    return parse_object(obj, file_name, index, raw=line)


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


def too_deep(text: str, start: int = 0, end: int | None = None) -> bool:
    """Whether the JSON text nests deeper than MAX_NESTING (counted outside strings)."""
    end = len(text) if end is None else end
    if text.count("[", start, end) + text.count("{", start, end) <= MAX_NESTING:
        return False
    return any(depth > MAX_NESTING for depth, _ in _bracket_depths(text, start, end))


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
        for piece in chunk.splitlines(keepends=True):
            body = piece.rstrip(b"\r\n")
            if size + len(body) <= limit:
                parts.append(body)
            elif size <= limit:  # the line goes over the limit here: only its head is kept
                parts = [b"".join([*parts, body])[:EXCERPT_CHARS]]
            size += len(body)
            in_line = True
            if len(body) < len(piece):
                yield _line(parts, size, limit)
                parts, size, in_line = [], 0, False
    if in_line:
        yield _line(parts, size, limit)


def _line(parts: list[bytes], size: int, limit: int) -> bytes | LongLine:
    joined = b"".join(parts)
    return LongLine(joined[:EXCERPT_CHARS], size) if size > limit else joined


def parse_raw_line(raw: bytes | LongLine, file_name: str, index: int) -> Record | Rejection | None:
    """One line of a JSON lines file: a record, a rejection, or None for a blank line."""
    origin = origin_of(file_name, index)
    if isinstance(raw, LongLine):
        detail = f"the line holds {raw.size:,} bytes, over the limit of {MAX_RECORD_BYTES:,}"
        return Rejection(origin, "too_large", detail, excerpt(raw.head))
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return Rejection(origin, "malformed_json", f"line is not UTF-8: {err}", excerpt(raw, len(raw)))
    return parse_line(line, file_name, index) if line.strip() else None


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


def parse_json_array(text: str, file_name: str, start: int, complete: bool = True) -> Iterator[Record | Rejection]:
    """The elements of the JSON array opening at text[start], one by one; an element too deep or
    too large is rejected alone. A break in the array itself (an element that is not JSON, no
    closing ']', something after it) ends the reading with one file-level rejection, after the
    elements before it. With `complete` False the text was cut short and its reader reports
    that, so a break in it is not reported again."""
    position = skip_space(text, start + 1)
    index = 0
    if not text.startswith("]", position):
        while True:
            element, end, broken = _element(text, file_name, position, index)
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


def _element(text: str, file_name: str, position: int, index: int) -> tuple[Record | Rejection | None, int, str]:
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
    if too_deep(text, position, end):
        return (
            Rejection(origin, "too_deeply_nested", NESTING_DETAIL, text[position : position + EXCERPT_CHARS]),
            end,
            "",
        )
    return parse_object(obj, file_name, index), end, ""


def parse_object(obj: Any, file_name: str, index: int, raw: str | None = None) -> Record | Rejection:
    """Turns one decoded JSON value into a Record, or says why it cannot be one."""
    origin = origin_of(file_name, index)
    if raw is None:
        raw = json.dumps(obj, ensure_ascii=False)
        if not _encodable(raw):
            raw = json.dumps(obj)
    if not isinstance(obj, dict):
        return Rejection(origin, "not_an_object", f"expected a JSON object, got {type(obj).__name__}", raw)
    record_id = obj.get("id")
    record_id = origin if record_id is None else str(record_id)
    if not _encodable(record_id):
        return Rejection(origin, "invalid_unicode", _SURROGATE_DETAIL.format(field="id"), raw)
    try:
        instruction, input_text, output = _fields(obj)
    except _Invalid as invalid:
        return Rejection(record_id, invalid.reason, invalid.detail, raw)
    if not (instruction.strip() or input_text.strip()):
        return Rejection(record_id, "empty_instruction", "the instruction is empty", raw)
    if not output.strip():
        return Rejection(record_id, "empty_response", "the response is empty", raw)
    for field, text in (("instruction", instruction), ("input", input_text), ("output", output)):
        if not _encodable(text):
            return Rejection(record_id, "invalid_unicode", _SURROGATE_DETAIL.format(field=field), raw)
    return Record(record_id, instruction, input_text, output, origin)


_SURROGATE_DETAIL = (
    "the {field} holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which no tokenizer or UTF-8 file can take"
)


def _encodable(text: str) -> bool:
    """False for text holding a lone surrogate, which JSON escapes can produce but UTF-8 cannot encode."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fields(obj: dict) -> tuple[str, str, str]:
    """(instruction, input, output) of any supported shape."""
    if "conversations" in obj:
        return _single_exchange(obj["conversations"], "conversations", "from", "value")
    if "messages" in obj:
        return _single_exchange(obj["messages"], "messages", "role", "content")
    if "prompt" in obj or "completion" in obj:
        return _string(obj, "prompt"), "", _string(obj, "completion")
    if "instruction" in obj or "output" in obj:
        input_text = _string(obj, "input") if obj.get("input") is not None else ""
        return _string(obj, "instruction"), input_text, _string(obj, "output")
    raise _Invalid(
        "unknown_shape",
        "expected Alpaca (instruction/output), prompt/completion, ShareGPT (conversations) "
        f"or OpenAI (messages) fields; found {sorted(obj)[:8]}",
    )


def _string(obj: dict, field: str) -> str:
    if field not in obj:
        raise _Invalid("missing_field", f"field '{field}' is missing")
    value = obj[field]
    if not isinstance(value, str):
        raise _Invalid("not_a_string", f"field '{field}' is {type(value).__name__}, not a string")
    return value


def _single_exchange(turns: Any, field: str, role_key: str, text_key: str) -> tuple[str, str, str]:
    """One user turn then one assistant turn, optionally after a system turn (which is not used)."""
    if not isinstance(turns, list):
        raise _Invalid("not_a_string", f"field '{field}' is {type(turns).__name__}, not a list of turns")
    exchange = []
    for position, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise _Invalid("missing_field", f"{field}[{position}] needs '{role_key}' and '{text_key}'")
        role, text = turn[role_key], turn[text_key]
        for key, value in ((role_key, role), (text_key, text)):
            if not isinstance(value, str):
                raise _Invalid("not_a_string", f"{field}[{position}].{key} is {type(value).__name__}, not a string")
        if not (role in _SYSTEM_ROLES and position == 0):
            exchange.append((role, text))
    users = sum(role in _USER_ROLES for role, _ in exchange)
    assistants = sum(role in _ASSISTANT_ROLES for role, _ in exchange)
    if users > 1 or assistants > 1:
        raise _Invalid(
            "multi_turn", f"{users} user and {assistants} assistant turns; only a single exchange can be mosaicked"
        )
    others = sorted({str(role) for role, _ in exchange} - _USER_ROLES - _ASSISTANT_ROLES)
    if others:
        raise _Invalid(
            "unsupported_role", f"turns with role {others}; only one user/assistant exchange can be mosaicked"
        )
    if [role in _USER_ROLES for role, _ in exchange] != [True, False]:
        raise _Invalid("missing_field", f"{field} must hold one user turn followed by one assistant turn")
    return exchange[0][1], "", exchange[1][1]
