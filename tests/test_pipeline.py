import json

import pytest
from e2e import check_run, output_bytes, read_avro, read_jsonl, run_job

from pipeline.cli import main
from pipeline.ownership import MARKER
from tests.shared_data import LLAMA2, SHARED_DATA, require_shared, write_jsonl

BAD_LINES = [
    '{"instruction": "broken',
    json.dumps(
        {
            "conversations": [
                {"from": "human", "value": "a"},
                {"from": "gpt", "value": "b"},
                {"from": "human", "value": "c"},
                {"from": "gpt", "value": "d"},
            ]
        }
    ),
    json.dumps({"id": "dup", "instruction": "First copy", "output": "kept"}),
    json.dumps({"id": "dup", "instruction": "Second copy", "output": "rejected"}),
    json.dumps({"instruction": "Count to a lot", "output": " ".join(str(i) for i in range(3000))}),
    json.dumps({"instruction": "Say nothing", "output": ""}),
    r'{"instruction": "A lone surrogate \ud800 here", "output": "no tokenizer takes it"}',
]


@pytest.fixture(scope="module")
def alpaca_run(tmp_path_factory):
    data = require_shared(SHARED_DATA / "alpaca_en_demo.json")
    bad = write_jsonl(tmp_path_factory.mktemp("in") / "bad.jsonl", BAD_LINES)
    output = tmp_path_factory.mktemp("alpaca")
    manifest = run_job([data, bad], output, "--formats", "jsonl,avro,messages", "--seed", "7")
    return output, manifest


def test_alpaca_with_bad_lines(alpaca_run):
    output, manifest = alpaca_run
    _samples, rejected = check_run(output, manifest, "quicktok:llama3", "raw", 2000)
    assert {(r["source"], r["reason"]) for r in rejected} == {
        ("bad.jsonl:0", "malformed_json"),
        ("bad.jsonl:1", "multi_turn"),
        ("dup", "duplicate_id"),
        ("bad.jsonl:4", "over_budget"),
        ("bad.jsonl:5", "empty_response"),
        ("bad.jsonl:6", "invalid_unicode"),
    }
    assert [r["record"] for r in rejected if r["reason"] == "duplicate_id"] == [
        json.dumps({"id": "dup", "instruction": "Second copy", "input": "", "output": "rejected"})
    ]
    assert manifest["counts"]["records_read"] == 999 + len(BAD_LINES)
    assert set(manifest["counts"]["strategy"]) == {"format", "permute", "maskout"} | (
        {"primary"} & set(manifest["counts"]["strategy"])
    )


def test_avro_and_messages_hold_the_same_samples(alpaca_run):
    output, _ = alpaca_run
    samples = read_jsonl(output, "mosaics")
    assert read_avro(output) == samples
    messages = read_jsonl(output, "messages")
    assert messages == [
        {
            "id": s["id"],
            "messages": [{"role": "user", "content": s["instruction"]}, {"role": "assistant", "content": s["output"]}],
            "epoch": s["epoch"],
            "strategy": s["strategy"],
            "sources": s["sources"],
        }
        for s in samples
    ]


def test_manifest_is_written_last_and_lists_every_output(alpaca_run):
    output, manifest = alpaca_run
    listed = {name for names in manifest["outputs"].values() for name in names}
    outputs = [path for path in output.iterdir() if path.name not in ("manifest.json", MARKER)]
    assert listed == {path.name for path in outputs}
    newest = max(path.stat().st_mtime_ns for path in outputs)
    assert (output / "manifest.json").stat().st_mtime_ns >= newest
    assert manifest["options"]["seed"] == 7 and manifest["tokenizer"] == "quicktok:llama3"


def test_llama2_tokenizer_with_vicuna_template_on_chinese(tmp_path):
    data = require_shared(SHARED_DATA / "alpaca_zh_demo.json")
    tokenizer = f"hf:{require_shared(LLAMA2)}"
    manifest = run_job(
        [data],
        tmp_path,
        "--tokenizer",
        tokenizer,
        "--length-template",
        "vicuna",
        "--max-length",
        "700",
        "--epochs",
        "2",
    )
    samples, rejected = check_run(tmp_path, manifest, tokenizer, "vicuna", 700)
    assert {r["reason"] for r in rejected} == {"over_budget"}
    assert max(s["n_tokens"] for s in samples) > 600  # groups are packed close to the budget


def test_t0_shards(tmp_path):
    shards = sorted(require_shared(SHARED_DATA / "t0_50k").glob("*.jsonl"))[:40]
    manifest = run_job(
        shards,
        tmp_path,
        "--epochs",
        "2",
        "--wrap-mode",
        "lognormal",
        "--max-length",
        "1024",
        "--records-per-key",
        "500",
    )
    samples, _ = check_run(tmp_path, manifest, "quicktok:llama3", "raw", 1024)
    assert manifest["counts"]["records_read"] == sum(1 for shard in shards for line in shard.open() if line.strip())
    assert len({s["id"].split("-g")[0] for s in samples}) > 4  # several packing keys per epoch


def test_same_seed_gives_identical_files_in_memory_and_multi_process(tmp_path):
    """In memory packing in one process or with forked helpers, and on multi-processing workers."""
    data = require_shared(SHARED_DATA / "alpaca_en_demo.json")
    args = ("--epochs", "2", "--records-per-key", "200", "--seed", "3")
    first = run_job([data], tmp_path / "a", *args, "--pack-processes", "1")
    again = run_job([data], tmp_path / "b", *args, "--pack-processes", "3")
    multi = run_job([data], tmp_path / "c", *args, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert output_bytes(tmp_path / "a") == output_bytes(tmp_path / "b") == output_bytes(tmp_path / "c")
    assert first["outputs"] == again["outputs"] == multi["outputs"]
    assert first["counts"] == again["counts"] == multi["counts"]
    run_job([data], tmp_path / "d", "--epochs", "2", "--records-per-key", "200", "--seed", "4")
    assert read_jsonl(tmp_path / "d", "mosaics") != read_jsonl(tmp_path / "a", "mosaics")


def test_epoch_offset_gives_fresh_epochs(tmp_path):
    data = require_shared(SHARED_DATA / "alpaca_en_demo.json")
    run_job([data], tmp_path / "a", "--epochs", "1")
    manifest = run_job([data], tmp_path / "b", "--epochs", "1", "--epoch-offset", "4")
    later = read_jsonl(tmp_path / "b", "mosaics")
    assert {s["epoch"] for s in later} == {4} and list(manifest["counts"]["records_per_epoch"]) == ["4"]
    assert [s["sources"] for s in later] != [s["sources"] for s in read_jsonl(tmp_path / "a", "mosaics")]


def test_rerun_into_the_same_folder_replaces_the_old_shards(tmp_path):
    data = require_shared(SHARED_DATA / "alpaca_en_demo.json")
    run_job([data], tmp_path, "--num-shards", "3")
    run_job([data], tmp_path, "--num-shards", "2", "--formats", "jsonl")
    assert sorted(p.name for p in tmp_path.glob("mosaics-*")) == [
        "mosaics-00000-of-00002.jsonl",
        "mosaics-00001-of-00002.jsonl",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--wrap-mode", "gaussian"], "--wrap-mode 'gaussian' is unknown"),
        (["--max-length", "0"], "--max-length must be at least 1"),
        (["--input", "/nonexistent/*.jsonl"], "matches no file"),
        (["--tokenizer", "quicktok:gpt2"], "unknown quicktok encoding 'gpt2'"),
        (["--formats", "csv"], "--formats has unknown output(s) ['csv']"),
        (["--pack-processes", "-1"], "--pack-processes must not be negative"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, capsys, args, message):
    assert main(["run", "--output", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
