"""Fitting the ecosystem (issue 14): Parquet and zstd inputs, Parquet output, --limit, and the CLI's manners."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from transforms.core.records import FILE_REJECT_REASONS, Record
from transforms.read import InputError, expand_inputs, read_file


def rows(count: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"Say {i}.", "input": "", "output": f"{i}."} for i in range(start, start + count)]


def jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def read_all(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    items = list(read_file(str(path)))
    records = [item.id for item in items if isinstance(item, Record)]
    return records, [(item.source, item.reason) for item in items if not isinstance(item, Record)]


def write_parquet(path: Path, records: list[dict], row_group_size: int = 1000, **settings) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=row_group_size, **settings)
    return path


def test_a_parquet_file_of_many_row_groups_reads_every_row_in_order(tmp_path):
    path = write_parquet(tmp_path / "train-00000-of-00001.parquet", rows(2500), row_group_size=300)
    assert pq.ParquetFile(path).num_row_groups == 9
    records, rejected = read_all(path)
    assert records == [f"train-00000-of-00001.parquet:{i}" for i in range(2500)]
    assert rejected == []


def test_parquet_rows_get_the_rejection_reasons_of_json_lines(tmp_path):
    conversation = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]
    table = pa.Table.from_pylist(
        [
            {"instruction": "Add 1 and 1.", "output": "2", "conversations": None},
            {"instruction": "", "output": "empty", "conversations": None},
            {"instruction": "Blank answer.", "output": " ", "conversations": None},
            {"instruction": None, "output": None, "conversations": conversation},
        ]
    )
    pq.write_table(table, tmp_path / "mixed.parquet")
    items = list(read_file(str(tmp_path / "mixed.parquet")))
    assert [getattr(item, "reason", "record") for item in items] == [
        "record",
        "empty_instruction",
        "empty_response",
        "record",
    ]
    assert items[3].instruction == "Hi?" and items[3].origin == "mixed.parquet:3"


def test_a_truncated_parquet_file_is_one_file_rejection(tmp_path):
    path = write_parquet(tmp_path / "cut.parquet", rows(500))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    records, rejected = read_all(path)
    assert records == []
    assert rejected == [("cut.parquet", "corrupt_parquet")]
    assert "corrupt_parquet" in FILE_REJECT_REASONS


def test_a_parquet_file_damaged_in_a_later_row_group_keeps_the_rows_before(tmp_path):
    path = write_parquet(tmp_path / "hurt.parquet", rows(3000), row_group_size=1000, write_page_checksum=True)
    metadata = pq.ParquetFile(path).metadata
    last = metadata.row_group(2).column(0)
    start = last.dictionary_page_offset or last.data_page_offset
    data = bytearray(path.read_bytes())
    for offset in range(start + 40, start + last.total_compressed_size - 8):
        data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    records, rejected = read_all(path)
    assert records == [f"hurt.parquet:{i}" for i in range(len(records))]
    assert 1000 <= len(records) <= 2048  # the rows of the sound row groups, up to the batch holding the damage
    assert rejected == [("hurt.parquet", "corrupt_parquet")]


@pytest.mark.parametrize("name", ["data.jsonl.zst", "data.json.zst"])
def test_zstd_inputs_read_like_their_plain_files(name, tmp_path):
    records = rows(3000)
    text = jsonl(records) if name.startswith("data.jsonl") else json.dumps(records).encode()
    compressor = zstandard.ZstdCompressor()
    half = len(text) // 2  # two frames, as zstd's --rsyncable or concatenated files give
    (tmp_path / name).write_bytes(compressor.compress(text[:half]) + compressor.compress(text[half:]))
    assert read_all(tmp_path / name) == ([f"{name}:{i}" for i in range(3000)], [])


def test_a_cut_zstd_file_keeps_the_records_before_the_cut(tmp_path):
    data = zstandard.ZstdCompressor().compress(jsonl(rows(30_000)))  # several zstd blocks
    (tmp_path / "cut.jsonl.zst").write_bytes(data[: len(data) // 2])
    records, rejected = read_all(tmp_path / "cut.jsonl.zst")
    assert 0 < len(records) < 30_000
    assert rejected == [("cut.jsonl.zst", "truncated_compression")]


@pytest.mark.parametrize("name", ["data.csv", "data.txt", "data.parquet.gz", "data.jsonl.snappy"])
def test_a_file_of_an_unknown_kind_is_an_error_before_the_run(name, tmp_path):
    (tmp_path / name).write_bytes(b"{}\n")
    with pytest.raises(InputError, match="not a file the reader knows"):
        expand_inputs([str(tmp_path / name)])
    with pytest.raises(InputError, match="not a file the reader knows"):
        expand_inputs([str(tmp_path / "data.*")])


def test_a_folder_contributes_only_the_files_the_reader_knows(tmp_path):
    write_parquet(tmp_path / "b.parquet", rows(3))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl(rows(3))))
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "c.csv").write_text("instruction,output\n")
    assert [Path(path).name for path in expand_inputs([str(tmp_path)])] == ["a.jsonl.zst", "b.parquet"]


# Parquet output -------------------------------------------------------------------------------------------------

ALPACA = Path(__file__).resolve().parents[1] / "../shared/data/alpaca_en_demo.json"


@pytest.fixture(scope="module")
def alpaca_200(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "alpaca200.jsonl"
    if ALPACA.exists():
        records = json.loads(ALPACA.read_text(encoding="utf-8"))[:200]
    else:
        records = [
            {"instruction": f"Describe {i}.", "input": "", "output": f"It is {i}. " * (i % 7 + 1)} for i in range(200)
        ]
    path.write_bytes(jsonl(records))
    return path


def mosaic(argv: list[str]) -> int:
    from pipeline.cli import main

    return main(["run", "--epochs", "2", "--num-shards", "3", *argv])


def files(directory: Path, pattern: str) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob(pattern))}


def test_parquet_output_holds_the_json_lines_typed_and_the_same_bytes_for_any_process_count(alpaca_200, tmp_path):
    for processes in ("1", "3"):
        argv = ["--input", str(alpaca_200), "--formats", "jsonl,parquet", "--pack-processes", processes]
        assert mosaic([*argv, "--output", str(tmp_path / processes)]) == 0
    one, three = files(tmp_path / "1", "mosaics-*.parquet"), files(tmp_path / "3", "mosaics-*.parquet")
    assert list(one) == [f"mosaics-0000{i}-of-00003.parquet" for i in range(3)]
    assert one == three
    for name in one:
        table = pq.read_table(tmp_path / "1" / name)
        lines = (tmp_path / "1" / name.replace(".parquet", ".jsonl")).read_text(encoding="utf-8").splitlines()
        assert table.to_pylist() == [json.loads(line) for line in lines]
        schema = table.schema
        assert schema.field("n_tokens").type == pa.int64() and schema.field("count").type == pa.int64()
        assert schema.field("sources").type == pa.list_(pa.field("item", pa.string(), nullable=False))
        assert schema.field("rule").nullable and not schema.field("id").nullable
    manifest = json.loads((tmp_path / "1" / "manifest.json").read_text())
    assert sorted(name for name in manifest["outputs"]["samples"] if name.endswith(".parquet")) == list(one)


def test_parquet_output_reads_into_pandas(alpaca_200, tmp_path):
    pandas = pytest.importorskip("pandas")
    assert mosaic(["--input", str(alpaca_200), "--formats", "parquet", "--output", str(tmp_path)]) == 0
    frame = pandas.concat([pandas.read_parquet(path) for path in sorted(tmp_path.glob("mosaics-*.parquet"))])
    assert len(frame) > 0 and set(frame.columns) >= {"id", "instruction", "output", "n_tokens"}


def test_the_flex_template_accepts_parquet_as_a_format():
    import re

    metadata = json.loads((Path(__file__).resolve().parents[1] / "deploy/dataflow/metadata.json").read_text())
    [formats] = [parameter for parameter in metadata["parameters"] if parameter["name"] == "formats"]
    assert all(re.match(pattern, "jsonl,parquet") for pattern in formats["regexes"])


def test_a_rerun_clears_the_parquet_files_of_the_previous_run(alpaca_200, tmp_path):
    argv = ["--input", str(alpaca_200), "--formats", "parquet", "--output", str(tmp_path)]
    assert mosaic([*argv, "--num-shards", "4"]) == 0
    assert mosaic([*argv, "--num-shards", "2"]) == 0
    assert sorted(path.name for path in tmp_path.glob("*.parquet")) == [
        f"mosaics-0000{i}-of-00002.parquet" for i in range(2)
    ]


# --limit --------------------------------------------------------------------------------------------------------


def limited_inputs(folder: Path) -> list[str]:
    """Three files whose sorted paths differ from the order of their labels, with rejections between records."""
    (folder / "b").mkdir(parents=True)
    (folder / "a").mkdir()
    bad = [{"instruction": "", "output": "no instruction"}]
    (folder / "b" / "first.jsonl").write_bytes(jsonl(rows(4) + bad + rows(3, 4)))
    (folder / "a" / "second.jsonl").write_bytes(jsonl(bad + rows(5, 100)) + b"not json\n")
    write_parquet(folder / "a" / "third.parquet", rows(6, 200))
    return [str(folder / "b" / "first.jsonl"), str(folder / "a" / "second.jsonl"), str(folder / "a" / "third.parquet")]


def test_the_cut_of_the_parallel_reader_is_that_of_reading_in_order(tmp_path):
    from transforms.core.limit import file_cuts, first_of_files, first_records, is_kept

    files = [list(read_file(path)) for path in sorted(limited_inputs(tmp_path))]
    for limit in range(1, 20):
        in_order = [item for kept in first_of_files(files, limit) for item in kept]
        read = [list(first_records(items, limit)) for items in files]
        cuts = file_cuts([sum(isinstance(item, Record) for _, item in items) for items in read], limit)
        parallel = [item for items, cut in zip(read, cuts) for before, item in items if is_kept(before, cut)]
        assert parallel == in_order, limit
        assert sum(isinstance(item, Record) for item in in_order) == min(limit, 18)


def test_limit_gives_the_same_files_on_both_plans(tmp_path):
    inputs = limited_inputs(tmp_path / "in")
    outputs = {}
    for plan, flags in (("one_process", []), ("many_workers", ["--direct_running_mode", "multi_processing"])):
        output = tmp_path / plan
        argv = ["--input", *inputs, "--limit", "9", "--formats", "jsonl", "--output", str(output), "--seed", "3"]
        assert mosaic([*argv, *flags]) == 0
        outputs[plan] = files(output, "*.jsonl")
        manifest = json.loads((output / "manifest.json").read_text())
        assert manifest["counts"]["limited_to"] == 9
        assert manifest["counts"]["records_read"] == 9 + 2  # the 9 first records and the 2 rejections among them
    assert outputs["one_process"] == outputs["many_workers"]
    rejected = [json.loads(line) for line in outputs["one_process"]["rejected-00000-of-00001.jsonl"].splitlines()]
    # In path order a/second.jsonl (5 records), a/third.parquet (the next 4); b/first.jsonl is not read.
    assert sorted(r["source"] for r in rejected) == ["second.jsonl:0", "second.jsonl:6"]
    samples = b"".join(data for name, data in outputs["one_process"].items() if name.startswith("mosaics"))
    assert b"Say 203." in samples and b"Say 204." not in samples and b"Say 0." not in samples


def test_limit_is_validated(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["run", "--limit", "-1", "--output", str(tmp_path)]) == 2
    assert "--limit must not be negative" in capsys.readouterr().err


def test_select_limit_orders_only_the_first_records(tmp_path):
    pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "select"))
    from select_support import OWN_TEMPLATE, build_tiny_model, make_records, write_jsonl

    from pipeline.iterit import run_select

    model = build_tiny_model(tmp_path / "model", OWN_TEMPLATE)
    records = make_records(12)
    write_jsonl(tmp_path / "input.jsonl", [records[0], "{not json", *records[1:]])
    argv = ["--input", str(tmp_path / "input.jsonl"), "--model", str(model), "--max-tokens", "256", "--limit", "5"]
    manifest = run_select([*argv, "--output", str(tmp_path / "out")])
    assert manifest["counts"]["limited_to"] == 5
    assert (manifest["counts"]["order"], manifest["counts"]["records_rejected"]) == (5, 1)
    order = [json.loads(line)["id"] for line in (tmp_path / "out" / "order.jsonl").read_text().splitlines()]
    assert sorted(order) == sorted(record["id"] for record in records[:5])


# The command line -----------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_version_prints_the_package_version(capsys):
    from importlib import metadata

    from pipeline.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"mosaic-it {metadata.version('mosaic-it-beam')}\n"


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("run", ["--input", "--limit", "--formats", "--pack-processes", "--max-reject-ratio", "--tokenizer"]),
        ("select", ["--input", "--limit", "--model", "--pack-processes", "--max-reject-ratio", "--ratio"]),
    ],
)
def test_command_help_names_the_command_and_every_option_with_its_default(command, flags, capsys):
    from pipeline.cli import main

    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: mosaic-it {command} [options]")
    for flag in [*flags, "--config", "--print-config"]:
        assert f"\n  {flag}" in text, flag
    assert "(default: 0.5)" in text and "(default: 0)" in text
    assert "--dataflow_service_options" not in text and "--runner" not in text.split("Beam pipeline options")[1]


def test_help_runs_nothing_even_after_other_flags(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["run", "--output", str(tmp_path / "out"), "-h"]) == 0
    assert "usage: mosaic-it run" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_a_real_run_and_help_print_no_apitools_notice(tmp_path):
    import subprocess
    import sys

    input_file = tmp_path / "in.jsonl"
    input_file.write_bytes(jsonl(rows(30)))
    argv = ["run", "--input", str(input_file), "--output", str(tmp_path / "out"), "--epochs", "1"]
    for args in (argv, ["run", "--help"], ["--version"]):
        done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "apitools" not in done.stderr + done.stdout
        assert "WARNING" not in done.stderr


def test_other_root_warnings_still_show(caplog):
    import logging

    import pipeline  # noqa: F401  # installs the filter

    with caplog.at_level(logging.WARNING):
        logging.getLogger().warning("apitools not found, and bigquery client libraries are not available despite ...")
        logging.getLogger().warning("something else")
    assert [record.getMessage() for record in caplog.records] == ["something else"]


@pytest.mark.parametrize("path", ["./no-such-tokenizer", "../no/such/dir", "/no/such/dir", "~/no-such-dir-here"])
def test_a_tokenizer_path_that_does_not_exist_is_one_line(path, tmp_path, capsys, monkeypatch):
    from pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--tokenizer", f"hf:{path}", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"mosaic-it: error: --tokenizer: no such directory: {path}\n"


def test_a_select_model_path_that_does_not_exist_is_one_line(tmp_path, capsys):
    from pipeline.cli import main

    (tmp_path / "in.jsonl").write_bytes(jsonl(rows(3)))
    argv = ["select", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--model", "./no-such-model"]) == 2
    assert capsys.readouterr().err == "mosaic-it: error: --model: no such directory: ./no-such-model\n"
