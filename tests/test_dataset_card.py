"""The dataset card (issue 14, item 4): `datasets.load_dataset(DIR)` with no data_files, LLaMA-Factory's
dataset_info.json under that loader's rules, deterministic bytes, and a card owned only by proof."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml

datasets = pytest.importorskip("datasets")

from pipeline.cli import main  # noqa: E402
from pipeline.iterit import SELECT_OUTPUT  # noqa: E402
from pipeline.mosaic import MOSAIC_OUTPUT  # noqa: E402
from tests.select.select_support import OWN_TEMPLATE, build_tiny_model  # noqa: E402
from transforms.core.dataset_card import CARD, LLAMA_FACTORY_INFO, is_our_card  # noqa: E402
from transforms.core.status import EXIT_OK, EXIT_USAGE  # noqa: E402
from transforms.dataset_card import CARD_CONFIGS, card_files, written_by_this_tool  # noqa: E402

RECORDS = [{"instruction": f"Say the number {i}.", "input": "", "output": f"{i}."} for i in range(40)]

# LLaMA-Factory's rules for a local dataset_info.json entry, reimplemented from its documentation.
_FILE_TYPES = {"arrow": "arrow", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet", "txt": "text"}
_SOURCES = ("hf_hub_url", "ms_hub_url", "script_url", "file_name")
_COLUMNS = {
    "alpaca": {"prompt", "query", "response", "history", "system", "tools", "images", "videos", "chosen", "rejected"},
    "sharegpt": {"messages", "system", "tools", "images", "videos", "chosen", "rejected"},
}
_TAGS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"}
_SHAREGPT_DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}


def llama_factory_problems(dataset_dir: Path, name: str, entry: dict) -> list[str]:
    """Why LLaMA-Factory would not load entry `name` of dataset_dir/dataset_info.json (empty when it would)."""
    sources = [key for key in _SOURCES if key in entry]
    if sources != ["file_name"]:
        return [f"{name}: one local file_name expected, got {sources}"]
    path = dataset_dir / entry["file_name"]
    files = sorted(path.iterdir()) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return [f"{name}: {entry['file_name']} is not a file or folder of dataset_dir"]
    kinds = {_FILE_TYPES.get(file.name.rsplit(".", 1)[-1]) for file in files}
    if len(kinds) != 1 or None in kinds:
        return [f"{name}: one known file type expected, got {sorted(map(str, kinds))}"]
    formatting = entry.get("formatting", "alpaca")
    if formatting not in _COLUMNS:
        return [f"{name}: unknown formatting {formatting}"]
    columns = entry.get("columns", {})
    problems = [
        f"{name}: column '{key}' is not one of {formatting}" for key in columns if key not in _COLUMNS[formatting]
    ]
    problems += [f"{name}: unknown tag '{key}'" for key in entry.get("tags", {}) if key not in _TAGS]
    data = datasets.load_dataset(kinds.pop(), data_files=[str(file) for file in files], split="train")
    problems += [f"{name}: no column '{column}'" for column in columns.values() if column not in data.column_names]
    if problems:
        return problems
    for position, row in enumerate(data):
        problems += (_alpaca_problems if formatting == "alpaca" else _sharegpt_problems)(row, entry)
        if problems:
            return [f"{name} row {position}: {problem}" for problem in problems]
    return []


def _alpaca_problems(row: dict, entry: dict) -> list[str]:
    columns = {"prompt": "instruction", "query": "input", "response": "output", **entry.get("columns", {})}
    prompt, response = row[columns["prompt"]], row[columns["response"]]
    ok = isinstance(prompt, str) and isinstance(response, str) and response != ""
    return [] if ok else ["the prompt and a non-empty response must be text"]


def _sharegpt_problems(row: dict, entry: dict) -> list[str]:
    tags = {**_SHAREGPT_DEFAULT_TAGS, **entry.get("tags", {})}
    turns = row[entry.get("columns", {}).get("messages", "conversations")]
    if tags.get("system_tag") and turns and turns[0].get(tags["role_tag"]) == tags["system_tag"]:
        turns = turns[1:]
    roles = [turn.get(tags["role_tag"]) for turn in turns]
    expected = [tags["user_tag"] if i % 2 == 0 else tags["assistant_tag"] for i in range(len(roles))]
    if not roles or len(roles) % 2 or roles != expected:
        return [f"turns must alternate {tags['user_tag']}/{tags['assistant_tag']}, got {roles}"]
    return []


@pytest.fixture(autouse=True)
def offline_datasets(tmp_path, monkeypatch):
    """No downloads, and a cache of the test's own: `datasets` reads its settings when imported, so they
    are set on `datasets.config` too. (A shared cache served a folder's earlier samples: its key is
    the folder name and configs, not the files' contents.)"""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def write_input(directory: Path) -> Path:
    path = directory / "in.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in RECORDS), encoding="utf-8")
    return path


def run_into(output: Path, data: Path, formats: str, *extra: str) -> int:
    argv = ["run", "--input", str(data), "--output", str(output), "--epochs", "2", "--num-shards", "2"]
    return main([*argv, "--formats", formats, "--max-length", "400", *extra])


@pytest.fixture(scope="module")
def every_format(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("card")
    output = directory / "out"
    assert run_into(output, write_input(directory), "jsonl,messages,parquet,avro") == EXIT_OK
    return output


def jsonl_rows(output: Path, prefix: str) -> list[dict]:
    return [
        json.loads(line) for path in sorted(output.glob(f"{prefix}-*.jsonl")) for line in path.read_text().splitlines()
    ]


def test_load_dataset_reads_both_configs_with_no_data_files(every_format):
    samples = jsonl_rows(every_format, "mosaics")
    mosaics = datasets.load_dataset(str(every_format), split="train")
    assert sorted(mosaics["id"]) == sorted(sample["id"] for sample in samples)
    assert mosaics.column_names == list(samples[0])
    messages = datasets.load_dataset(str(every_format), "messages", split="train")
    assert messages.column_names == ["id", "messages", "epoch", "strategy", "sources"]
    by_id = {sample["id"]: sample for sample in samples}
    for row in messages:
        sample = by_id[row["id"]]
        assert row["messages"] == [
            {"role": "user", "content": sample["instruction"]},
            {"role": "assistant", "content": sample["output"]},
        ]
        assert (row["epoch"], row["strategy"], row["sources"]) == (
            sample["epoch"],
            sample["strategy"],
            sample["sources"],
        )


def test_the_readmes_trl_snippet_trains_on_the_messages_config(every_format, tmp_path):
    trl = pytest.importorskip("trl", reason="the SFTTrainer check needs trl (the [test] extra)")
    model = build_tiny_model(tmp_path / "model", OWN_TEMPLATE)
    train = datasets.load_dataset(str(every_format), "messages", split="train")
    trainer = trl.SFTTrainer(  # as in "Using the output", on CPU: bf16 off, two steps
        model=str(model),
        train_dataset=train,
        args=trl.SFTConfig(
            output_dir=str(tmp_path / "sft-mosaic"),
            max_steps=2,
            bf16=False,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_pin_memory=False,
        ),
    )
    result = trainer.train()
    assert result.global_step == 2 and math.isfinite(result.training_loss)


def readme_axolotl_datasets() -> list[dict]:
    """The `datasets:` entries of the README's Axolotl config, the commented alternative included."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("**Axolotl**", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    uncommented = "\n".join(
        line.replace("# ", "", 1) if line.startswith("  # ") else line for line in block.split("\n")
    )
    return yaml.safe_load(uncommented.replace("  or the Alpaca columns of the default config:\n", ""))["datasets"]


def axolotl_local_folder(entry: dict) -> datasets.Dataset:
    """What Axolotl's loader does with a local folder and no data_files (src/axolotl/utils/data/shared.py):
    load_from_disk, and on FileNotFoundError load_dataset(path, name=..., split=...)."""
    try:
        return datasets.load_from_disk(entry["path"])
    except FileNotFoundError:
        return datasets.load_dataset(entry["path"], name=entry.get("name"), streaming=False, split=entry.get("split"))


def test_the_readmes_axolotl_entries_load_the_columns_their_types_read(every_format):
    messages, alpaca = readme_axolotl_datasets()
    assert (messages["type"], alpaca["type"]) == ("chat_template", "alpaca")
    chats = axolotl_local_folder({**messages, "path": str(every_format)})
    roles = {tuple(turn["role"] for turn in chat) for chat in chats["messages"]}
    assert roles == {("user", "assistant")}, "chat_template's default field and roles"
    rows = axolotl_local_folder({**alpaca, "path": str(every_format)})
    assert {"instruction", "input", "output"} <= set(rows.column_names) and len(rows) == len(chats) > 0


def test_the_card_leaves_out_parquet_and_avro_and_says_how_to_read_them(every_format):
    card = (every_format / CARD).read_text()
    assert 'load_dataset("parquet", data_files="DIR/mosaics-*.parquet")' in card
    assert "`mosaics-*.avro` is left out of the configs: `datasets` cannot read Avro." in card
    parquet = datasets.load_dataset("parquet", data_files=str(every_format / "mosaics-*.parquet"), split="train")
    assert sorted(parquet["id"]) == sorted(row["id"] for row in jsonl_rows(every_format, "mosaics"))


def test_every_llama_factory_entry_loads_under_its_rules(every_format):
    entries = json.loads((every_format / LLAMA_FACTORY_INFO).read_text())
    sample_files = sorted(path.name for path in every_format.glob("*-*-of-*.*") if not path.name.endswith(".avro"))
    assert sorted(entry["file_name"] for entry in entries.values()) == sorted(
        name for name in sample_files if not name.startswith("rejected")
    )
    for name, entry in entries.items():
        assert llama_factory_problems(every_format, name, entry) == []
    assert {entry["formatting"] for entry in entries.values()} == {"alpaca", "sharegpt"}


def test_the_rules_check_refuses_entries_that_llama_factory_would_not_load(every_format):
    messages = "messages-00000-of-00002.jsonl"
    broken = {
        "a glob": {"file_name": "mosaics-*.jsonl"},
        "the folder, of many file types": {"file_name": "."},
        "a missing column": {"file_name": messages, "columns": {"prompt": "instruction"}},
        "the default sharegpt tags": {
            "file_name": messages,
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
        },
    }
    for name, entry in broken.items():
        assert llama_factory_problems(every_format, name, entry), name


def test_the_card_names_only_the_folders_files_and_is_the_same_on_a_rerun(tmp_path):
    data = write_input(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_into(first, data, "messages") == EXIT_OK
    assert run_into(second, data, "messages", "--direct_num_workers", "2") == EXIT_OK
    for name in (CARD, LLAMA_FACTORY_INFO):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert datasets.load_dataset(str(first), split="train").column_names[:2] == ["id", "messages"]  # the default
    assert json.loads((first / "manifest.json").read_text())["outputs"]["card"] == [CARD, LLAMA_FACTORY_INFO]


def test_a_rerun_replaces_its_own_card(tmp_path):
    data = write_input(tmp_path)
    output = tmp_path / "out"
    assert run_into(output, data, "jsonl") == EXIT_OK
    assert run_into(output, data, "parquet") == EXIT_OK
    assert "mosaics-*.parquet" in (output / CARD).read_text() and "mosaics-*.jsonl" not in (output / CARD).read_text()
    assert datasets.load_dataset(str(output), split="train").num_rows > 0


@pytest.mark.parametrize("name", [CARD, LLAMA_FACTORY_INFO])
def test_a_card_file_the_run_did_not_write_is_never_replaced(tmp_path, name):
    data = write_input(tmp_path)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / name).write_text("the user's own file\n")
    assert run_into(fresh, data, "jsonl") == EXIT_USAGE
    assert sorted(os.listdir(fresh)) == [name]

    ours = tmp_path / "ours"
    assert run_into(ours, data, "jsonl") == EXIT_OK
    edited = (ours / name).read_text().replace("mosaics", "my-mosaics", 1)
    (ours / name).write_text(edited)
    assert run_into(ours, data, "jsonl") == EXIT_USAGE
    assert (ours / name).read_text() == edited


def test_only_the_exact_bytes_a_run_writes_prove_a_card():
    names = ["mosaics-00000-of-00001.jsonl", "messages-00000-of-00001.jsonl"]
    files = card_files(names)
    for name, text in files.items():
        assert written_by_this_tool(name, text.encode())
        assert not written_by_this_tool(name, (text + " ").encode())
        assert not written_by_this_tool(name, text.replace("alpaca", "sharegpt", 1).encode())
    assert is_our_card(files[CARD]) and not is_our_card("# My notes\n")
    assert not written_by_this_tool(CARD, b"\xff\xfe")
    assert [config.name for config in CARD_CONFIGS] == ["mosaics", "messages", "mosaics"]


def test_a_card_in_a_select_folder_is_not_the_run_commands(tmp_path):
    (tmp_path / CARD).write_text(card_files(["mosaics-00000-of-00001.jsonl"])[CARD])
    assert MOSAIC_OUTPUT.owns_file(str(tmp_path), CARD)
    assert not SELECT_OUTPUT.owns_file(str(tmp_path), CARD)


def test_a_run_id_writes_the_card_into_its_attempt_folder(tmp_path):
    data = write_input(tmp_path)
    assert run_into(tmp_path / "runs", data, "jsonl,messages", "--run-id", "r1") == EXIT_OK
    published = json.loads((tmp_path / "runs" / "r1" / "manifest.json").read_text())
    attempt = Path(published["directory"])
    assert sorted(path.name for path in (tmp_path / "runs" / "r1").iterdir() if path.is_file()) == [
        ".mosaic-it",
        "manifest.json",
    ]
    assert datasets.load_dataset(str(attempt), "messages", split="train").num_rows > 0
