import json

import pytest

from transforms.core.decoding import parse_line
from transforms.core.records import REJECT_REASONS, Record, Rejection, parse_object


def test_alpaca_with_and_without_input():
    record = parse_object({"instruction": "Add", "input": "2 and 3", "output": "5"}, "a.json", 4)
    assert record == Record("a.json:4", "Add", "2 and 3", "5", "a.json:4")
    assert record.prompt == "Add\n2 and 3"
    assert parse_object({"instruction": "Hi", "output": "Hello"}, "a.json", 0).prompt == "Hi"


def test_id_field_wins_over_position_and_is_stringified():
    assert parse_object({"id": 17, "prompt": "p", "completion": "c"}, "f.jsonl", 3).id == "17"


@pytest.mark.parametrize(
    "obj, expected",
    [
        ({"prompt": "Q?", "completion": "A."}, ("Q?", "", "A.")),
        ({"conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}]}, ("Q?", "", "A.")),
        (
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Q?"},
                    {"role": "assistant", "content": "A."},
                ]
            },
            ("Q?", "", "A."),
        ),
    ],
)
def test_shapes(obj, expected):
    record = parse_object(obj, "f.jsonl", 0)
    assert (record.instruction, record.input, record.output) == expected


@pytest.mark.parametrize(
    "obj, reason",
    [
        ([1, 2], "not_an_object"),
        ({"title": "x", "body": "y"}, "unknown_shape"),
        ({"instruction": "x"}, "missing_field"),
        ({"instruction": "x", "output": 5}, "not_a_string"),
        ({"instruction": "  ", "output": "y"}, "empty_instruction"),
        ({"instruction": "x", "output": "\n"}, "empty_response"),
        (
            {
                "conversations": [
                    {"from": "human", "value": "a"},
                    {"from": "gpt", "value": "b"},
                    {"from": "human", "value": "c"},
                    {"from": "gpt", "value": "d"},
                ]
            },
            "multi_turn",
        ),
        (
            {
                "conversations": [
                    {"from": "human", "value": "a"},
                    {"from": "function_call", "value": "{}"},
                    {"from": "gpt", "value": "d"},
                ]
            },
            "unsupported_role",
        ),
        ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}, "missing_field"),
        ({"messages": [{"role": ["user"], "content": "a"}]}, "not_a_string"),
        ({"messages": "hello"}, "not_a_string"),
        ({"instruction": "x\ud800", "output": "y"}, "invalid_unicode"),
        ({"id": "\udc80", "prompt": "x", "completion": "y"}, "invalid_unicode"),
    ],
)
def test_rejections_name_their_reason(obj, reason):
    rejection = parse_object(obj, "f.jsonl", 7)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason and reason in REJECT_REASONS
    assert rejection.source == "f.jsonl:7"
    assert json.loads(rejection.record) == obj
    assert rejection.detail


def test_malformed_line_keeps_its_raw_text():
    rejection = parse_line('{"instruction": "x", ', "f.jsonl", 2)
    assert (rejection.reason, rejection.source, rejection.record) == (
        "malformed_json",
        "f.jsonl:2",
        '{"instruction": "x", ',
    )


def test_rejection_of_a_record_with_id_uses_the_id():
    assert parse_object({"id": "r1", "instruction": "x", "output": ""}, "f.jsonl", 0).source == "r1"


def test_lone_surrogate_rejection_can_be_written_as_utf8():
    rejection = parse_object({"instruction": "x", "output": "y\udfff"}, "f.json", 3)
    assert (rejection.reason, rejection.source) == ("invalid_unicode", "f.json:3")
    assert "output" in rejection.detail
    rejection.record.encode("utf-8")
    line = r'{"instruction": "x", "output": "y\udfff"}'
    assert parse_line(line, "f.jsonl", 0).record == line
