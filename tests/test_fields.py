"""Column mapping (issue 14, item 2): --fields and --tags, in records, readers, recipes and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.options import MosaicOptions, field_map, own_option_values
from pipeline.recipes import recipe_flags
from pipeline.select_options import SelectOptions
from transforms.core.fields import DEFAULT_FIELDS, FieldSpecError, parse_field_map
from transforms.core.records import Record, Rejection, parse_object
from transforms.core.status import EXIT_OK, EXIT_USAGE
from transforms.read import read_file

QUERY_RESPONSE = [
    {"query": "What is 2 + 2?", "response": "4"},
    {"query": "Name the capital.", "context": "France", "response": "Paris"},
]
QUESTION_ANSWER = [{"uid": "q1", "question": "Who wrote Hamlet?", "answer": "Shakespeare"}]
SHAREGPT_DIALOG = [
    {
        "dialog": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi?"},
            {"from": "gpt", "value": "Hello."},
        ]
    }
]


def parsed(obj: dict, fields: str | None = None, tags: str | None = None) -> Record | Rejection:
    return parse_object(obj, "f.jsonl", 0, fields=parse_field_map(fields, tags))


def test_query_response_records_map_to_instruction_input_output():
    first, second = (parsed(obj, "instruction=query,input=context,output=response") for obj in QUERY_RESPONSE)
    assert (first.instruction, first.input, first.output) == ("What is 2 + 2?", "", "4")
    assert (second.instruction, second.input, second.output) == ("Name the capital.", "France", "Paris")


def test_question_answer_records_map_with_their_own_id_column():
    record = parsed(QUESTION_ANSWER[0], "id=uid,instruction=question,output=answer")
    assert (record.id, record.instruction, record.output) == ("q1", "Who wrote Hamlet?", "Shakespeare")


def test_llama_factory_alpaca_columns_are_not_read_as_prompt_completion():
    obj = {"prompt": "Translate: cat", "query": "to French", "response": "chat"}
    record = parsed(obj, "instruction=prompt,input=query,output=response")
    assert (record.instruction, record.input, record.output) == ("Translate: cat", "to French", "chat")
    assert parsed(obj).reason == "missing_field"  # unmapped, it is the prompt/completion shape without completion


def test_a_sharegpt_column_with_its_tags_is_read():
    record = parsed(
        SHAREGPT_DIALOG[0], "messages=dialog", "role_tag=from,content_tag=value,user_tag=human,assistant_tag=gpt"
    )
    assert (record.instruction, record.output) == ("Hi?", "Hello.")


def test_custom_role_names_replace_the_built_in_ones():
    obj = {"chat": [{"speaker": "asker", "text": "Why?"}, {"speaker": "bot", "text": "Because."}]}
    tags = "role_tag=speaker,content_tag=text,user_tag=asker,assistant_tag=bot"
    assert parsed(obj, "messages=chat", tags).output == "Because."
    rejection = parsed(
        {"chat": [{"speaker": "user", "text": "Why?"}, {"speaker": "bot", "text": "x"}]}, "messages=chat", tags
    )
    assert (rejection.reason, rejection.detail) == (
        "unsupported_role",
        "turns with role ['user']; only one user/assistant exchange can be mosaicked",
    )


def test_a_mapped_column_that_is_missing_is_rejected_by_its_own_name():
    rejection = parsed({"query": "x", "answer": "y"}, "instruction=query,output=response")
    assert (rejection.reason, rejection.detail) == ("missing_field", "field 'response' is missing")
    unknown = parsed({"text": "only text"}, "instruction=query,output=response")
    assert unknown.reason == "unknown_shape" and "Alpaca (query/response)" in unknown.detail


def test_no_mapping_is_the_built_in_shapes():
    assert parse_field_map(None, None) == parse_field_map("", " ") == DEFAULT_FIELDS


@pytest.mark.parametrize(
    ("fields", "tags", "message"),
    [
        ("instruction", None, "--fields takes NAME=VALUE pairs separated by commas, got 'instruction'"),
        (
            "prompt=q",
            None,
            "--fields has an unknown name 'prompt'; choose from id, instruction, input, output, messages",
        ),
        ("output=a,output=b", None, "--fields names 'output' twice"),
        ("output=", None, "--fields takes NAME=VALUE pairs separated by commas, got 'output='"),
        (
            None,
            "speaker=from",
            "--tags has an unknown name 'speaker'; choose from role_tag, content_tag, user_tag, assistant_tag, system_tag",
        ),
        (None, "user_tag=x,assistant_tag=x", "--tags gives the user and the assistant the same role name"),
    ],
)
def test_a_malformed_mapping_is_one_line_naming_the_flag(fields, tags, message):
    with pytest.raises(FieldSpecError) as raised:
        parse_field_map(fields, tags)
    assert str(raised.value) == message


# Column names other than those the built-in shapes detect by themselves (an id, a conversation).
_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
    lambda name: name not in ("id", "messages", "conversations")
)
_TEXTS = st.text(min_size=1, max_size=20).filter(str.strip)


@given(
    columns=st.lists(_NAMES, min_size=3, max_size=3, unique=True), texts=st.tuples(_TEXTS, st.text(max_size=10), _TEXTS)
)
def test_a_renamed_record_reads_as_the_alpaca_record_it_renames(columns, texts):
    """Whatever the columns are called, mapping them gives the record the Alpaca names give."""
    instruction, input_text, output = texts
    alpaca = parse_object({"instruction": instruction, "input": input_text, "output": output}, "f.jsonl", 3)
    renamed = dict(zip(columns, texts))
    spec = ",".join(f"{name}={column}" for name, column in zip(("instruction", "input", "output"), columns))
    mapped = parse_object(renamed, "f.jsonl", 3, fields=parse_field_map(spec, None))
    assert mapped == alpaca


def test_every_reader_applies_the_mapping(tmp_path):
    fields = parse_field_map("instruction=query,input=context,output=response", None)
    array = tmp_path / "qr.json"
    array.write_text(json.dumps(QUERY_RESPONSE))
    table = tmp_path / "qr.parquet"
    pq.write_table(pa.Table.from_pylist(QUERY_RESPONSE), table)
    lines = tmp_path / "qr.jsonl"
    lines.write_text("".join(json.dumps(obj) + "\n" for obj in QUERY_RESPONSE))
    for path in (array, table, lines):
        items = list(read_file(str(path), fields=fields))
        assert [(item.instruction, item.output) for item in items] == [
            ("What is 2 + 2?", "4"),
            ("Name the capital.", "Paris"),
        ]
        assert all(isinstance(item, Rejection) for item in read_file(str(path)))  # unmapped: nothing matches


def test_a_recipe_may_give_the_mapping_as_yaml(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("fields:\n  instruction: query\n  output: response\ntags: role_tag=from\n")
    assert recipe_flags(str(recipe), MosaicOptions) == [
        "--fields=instruction=query,output=response",
        "--tags=role_tag=from",
    ]
    recipe.write_text("epochs:\n  a: b\n")
    with pytest.raises(Exception, match="'epochs' takes plain values"):
        recipe_flags(str(recipe), MosaicOptions)


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_a_run_maps_query_response_records_into_samples(tmp_path):
    data = _jsonl(tmp_path / "qr.jsonl", QUERY_RESPONSE * 10)
    output = tmp_path / "out"
    argv = ["run", "--input", str(data), "--output", str(output), "--epochs", "1", "--formats", "jsonl"]
    assert main([*argv, "--fields", "instruction=query,input=context,output=response"]) == EXIT_OK
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["counts"]["records_rejected"] == 0 and manifest["counts"]["records_per_epoch"] == {"0": 20}
    assert manifest["options"]["fields"] == "instruction=query,input=context,output=response"
    samples = [json.loads(line) for path in output.glob("mosaics-*.jsonl") for line in path.read_text().splitlines()]
    assert sum(sample["count"] for sample in samples) == 20


def test_verify_inspect_and_report_read_the_inputs_through_the_runs_mapping(tmp_path, capsys):
    data = _jsonl(tmp_path / "qr.jsonl", QUERY_RESPONSE * 5)
    output = tmp_path / "out"
    argv = ["run", "--input", str(data), "--output", str(output), "--epochs", "1", "--formats", "jsonl", "--quiet"]
    assert main([*argv, "--fields", "instruction=query,input=context,output=response"]) == EXIT_OK
    capsys.readouterr()
    assert main(["verify", str(output)]) == EXIT_OK
    assert main(["inspect", str(output), "--n", "1"]) == EXIT_OK
    shown = capsys.readouterr().out
    assert "qr.jsonl:0" in shown and QUERY_RESPONSE[0]["query"].splitlines()[0][:40] in shown
    assert main(["report", str(output)]) == EXIT_OK
    page = (output / "report" / "index.html").read_text(encoding="utf-8")
    assert "not found" not in page.lower() and "qr.jsonl" in page


def test_select_reads_its_mapping_from_the_same_flags():
    argv = ["--input", "x.jsonl", "--output", "o", "--model", "m", "--fields", "instruction=question,output=answer"]
    options = own_option_values(SelectOptions(argv), SelectOptions)
    assert field_map(options) == parse_field_map("instruction=question,output=answer", None)


@pytest.mark.parametrize("command", ["run", "select"])
def test_a_malformed_mapping_exits_with_the_usage_code_in_one_line(tmp_path, command):
    data = _jsonl(tmp_path / "qr.jsonl", QUERY_RESPONSE)
    argv = [command, "--input", str(data), "--output", str(tmp_path / "out"), "--fields", "instruction"]
    if command == "select":
        argv += ["--model", "m"]
    done = subprocess.run([sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.strip().splitlines() == [
        "mosaic-it: error: --fields takes NAME=VALUE pairs separated by commas, got 'instruction'"
    ]
    assert not (tmp_path / "out").exists()
