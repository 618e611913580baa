"""Which columns of an input record hold its parts: `--fields` and `--tags`, as pure functions.

`--fields instruction=query,output=response` reads the instruction from `query` and the output
from `response`; `--fields messages=dialog` reads the conversation from `dialog`. `--tags` names
the keys and role names inside a conversation's turns (`role_tag=from,user_tag=human,...`), as
LLaMA-Factory's `tags` do. Without them, the built-in shapes are read (see records.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIELD_NAMES = ("id", "instruction", "input", "output", "messages")
TAG_NAMES = ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag")
_ALPACA_FIELDS = ("instruction", "input", "output")


class FieldSpecError(ValueError):
    """A --fields or --tags value that cannot be read; the message is one line naming the flag."""


@dataclass(frozen=True)
class Conversation:
    """A column holding a list of turns, each a mapping with a role key and a text key."""

    column: str
    role_tag: str
    content_tag: str


DEFAULT_CONVERSATIONS = (Conversation("conversations", "from", "value"), Conversation("messages", "role", "content"))


@dataclass(frozen=True)
class FieldMap:
    """The column names of each part of a record; the defaults read the built-in shapes."""

    id: str = "id"
    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    conversations: tuple[Conversation, ...] = DEFAULT_CONVERSATIONS
    user_roles: frozenset[str] = field(default=frozenset({"user", "human"}))
    assistant_roles: frozenset[str] = field(default=frozenset({"assistant", "gpt"}))
    system_roles: frozenset[str] = field(default=frozenset({"system"}))
    # An explicit instruction/input/output mapping is tried before prompt/completion, so that a
    # mapping naming a `prompt` column (LLaMA-Factory's Alpaca columns) is not read as that shape.
    alpaca_first: bool = False

    def shapes(self) -> str:
        """The shapes this map reads, for the rejection of a record matching none."""
        if self.conversations == DEFAULT_CONVERSATIONS:
            conversations = "ShareGPT (conversations) or OpenAI (messages)"
        else:
            conversations = f"conversation ({self.conversations[0].column})"
        return f"Alpaca ({self.instruction}/{self.output}), prompt/completion, {conversations}"


DEFAULT_FIELDS = FieldMap()


def parse_field_map(fields: str | None, tags: str | None) -> FieldMap:
    """The FieldMap of `--fields NAME=COLUMN,...` and `--tags TAG=VALUE,...` (either may be None).
    Raises FieldSpecError for a malformed pair, an unknown name or a name given twice."""
    columns = _pairs(fields, "--fields", FIELD_NAMES)
    tag_values = _pairs(tags, "--tags", TAG_NAMES)
    if "messages" in columns:
        column = columns["messages"]
        default_tags = DEFAULT_CONVERSATIONS[1] if column == "messages" else DEFAULT_CONVERSATIONS[0]
        conversations: tuple[Conversation, ...] = (
            Conversation(column, default_tags.role_tag, default_tags.content_tag),
        )
    else:
        conversations = DEFAULT_CONVERSATIONS
    mapped = FieldMap(
        id=columns.get("id", DEFAULT_FIELDS.id),
        instruction=columns.get("instruction", DEFAULT_FIELDS.instruction),
        input=columns.get("input", DEFAULT_FIELDS.input),
        output=columns.get("output", DEFAULT_FIELDS.output),
        conversations=tuple(
            Conversation(
                conversation.column,
                tag_values.get("role_tag", conversation.role_tag),
                tag_values.get("content_tag", conversation.content_tag),
            )
            for conversation in conversations
        ),
        user_roles=_roles(tag_values, "user_tag", DEFAULT_FIELDS.user_roles),
        assistant_roles=_roles(tag_values, "assistant_tag", DEFAULT_FIELDS.assistant_roles),
        system_roles=_roles(tag_values, "system_tag", DEFAULT_FIELDS.system_roles),
        alpaca_first=any(name in columns for name in _ALPACA_FIELDS),
    )
    if mapped.user_roles & mapped.assistant_roles:
        raise FieldSpecError("--tags gives the user and the assistant the same role name")
    return mapped


def _roles(tag_values: dict[str, str], tag: str, default: frozenset[str]) -> frozenset[str]:
    return frozenset({tag_values[tag]}) if tag in tag_values else default


def field_spec_problem(fields: str | None, tags: str | None) -> str | None:
    """Why --fields/--tags cannot be read, or None."""
    try:
        parse_field_map(fields, tags)
    except FieldSpecError as err:
        return str(err)
    return None


def _pairs(text: str | None, flag: str, names: tuple[str, ...]) -> dict[str, str]:
    """NAME=VALUE pairs separated by commas; NAME among `names`, each once, VALUE not empty."""
    pairs: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals or not value:
            raise FieldSpecError(f"{flag} takes NAME=VALUE pairs separated by commas, got '{part.strip()}'")
        if name not in names:
            raise FieldSpecError(f"{flag} has an unknown name '{name}'; choose from {', '.join(names)}")
        if name in pairs:
            raise FieldSpecError(f"{flag} names '{name}' twice")
        pairs[name] = value
    return pairs
