"""Input records: shape detection and validation, as pure functions.

Every input line or array element becomes either a :class:`Record` or a
:class:`Rejection` with a reason from :data:`REJECT_REASONS`; nothing is dropped. A file
that cannot be read to its end gets one file-level rejection (a reason of
:data:`FILE_REJECT_REASONS`) naming it, after the records read before the damage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from transforms.core.fields import DEFAULT_FIELDS, Conversation, FieldMap

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
    "corrupt_parquet",  # a .parquet file that is not Parquet, or whose data cannot be decoded part way
    # `mosaic-it select` only:
    "template_mismatch",  # the chat template does not render the response as one piece of the text
    "response_truncated",  # nothing of the response is left within --max-tokens
    "non_finite_score",  # the model gave a NaN or infinite loss or IFD
    "not_in_previous_order",  # a later round's input record that the previous round did not order
)
FILE_REJECT_REASONS = (
    "unreadable_file",
    "truncated_compression",
    "corrupt_compression",
    "not_utf8",
    "not_a_json_array",
    "invalid_json_array",
    "trailing_data",
    "corrupt_parquet",
)


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


def parse_object(
    obj: Any, file_name: str, index: int, raw: str | None = None, fields: FieldMap = DEFAULT_FIELDS
) -> Record | Rejection:
    """Turns one decoded JSON value into a Record, or says why it cannot be one; `fields` names its columns."""
    origin = origin_of(file_name, index)
    if raw is None:
        raw = json.dumps(obj, ensure_ascii=False)
        if not _encodable(raw):
            raw = json.dumps(obj)
    if not isinstance(obj, dict):
        return Rejection(origin, "not_an_object", f"expected a JSON object, got {type(obj).__name__}", raw)
    record_id = obj.get(fields.id)
    record_id = origin if record_id is None else str(record_id)
    if not _encodable(record_id):
        return Rejection(origin, "invalid_unicode", _SURROGATE_DETAIL.format(field="id"), raw)
    try:
        instruction, input_text, output = _fields(obj, fields)
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


def _fields(obj: dict, fields: FieldMap) -> tuple[str, str, str]:
    """(instruction, input, output) of any supported shape."""
    for conversation in fields.conversations:
        if conversation.column in obj:
            return _single_exchange(obj[conversation.column], conversation, fields)
    if fields.alpaca_first and (fields.instruction in obj or fields.output in obj):
        return _alpaca(obj, fields)
    if "prompt" in obj or "completion" in obj:
        return _string(obj, "prompt"), "", _string(obj, "completion")
    if fields.instruction in obj or fields.output in obj:
        return _alpaca(obj, fields)
    raise _Invalid("unknown_shape", f"expected {fields.shapes()} fields; found {sorted(obj)[:8]}")


def _alpaca(obj: dict, fields: FieldMap) -> tuple[str, str, str]:
    input_text = _string(obj, fields.input) if obj.get(fields.input) is not None else ""
    return _string(obj, fields.instruction), input_text, _string(obj, fields.output)


def _string(obj: dict, field: str) -> str:
    if field not in obj:
        raise _Invalid("missing_field", f"field '{field}' is missing")
    value = obj[field]
    if not isinstance(value, str):
        raise _Invalid("not_a_string", f"field '{field}' is {type(value).__name__}, not a string")
    return value


def _single_exchange(turns: Any, conversation: Conversation, fields: FieldMap) -> tuple[str, str, str]:
    """One user turn then one assistant turn, optionally after a system turn (which is not used)."""
    column, role_key, text_key = conversation.column, conversation.role_tag, conversation.content_tag
    if not isinstance(turns, list):
        raise _Invalid("not_a_string", f"field '{column}' is {type(turns).__name__}, not a list of turns")
    exchange = []
    for position, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise _Invalid("missing_field", f"{column}[{position}] needs '{role_key}' and '{text_key}'")
        role, text = turn[role_key], turn[text_key]
        for key, value in ((role_key, role), (text_key, text)):
            if not isinstance(value, str):
                raise _Invalid("not_a_string", f"{column}[{position}].{key} is {type(value).__name__}, not a string")
        if not (role in fields.system_roles and position == 0):
            exchange.append((role, text))
    users = sum(role in fields.user_roles for role, _ in exchange)
    assistants = sum(role in fields.assistant_roles for role, _ in exchange)
    if users > 1 or assistants > 1:
        raise _Invalid(
            "multi_turn", f"{users} user and {assistants} assistant turns; only a single exchange can be mosaicked"
        )
    others = sorted({str(role) for role, _ in exchange} - fields.user_roles - fields.assistant_roles)
    if others:
        raise _Invalid(
            "unsupported_role", f"turns with role {others}; only one user/assistant exchange can be mosaicked"
        )
    if [role in fields.user_roles for role, _ in exchange] != [True, False]:
        raise _Invalid("missing_field", f"{column} must hold one user turn followed by one assistant turn")
    return exchange[0][1], "", exchange[1][1]
