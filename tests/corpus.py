"""A small synthetic corpus for runner tests: two files, 200 records, and one input of every kind
the pipeline rejects on its way (bad JSON, a missing field, a duplicate id, a record over budget)."""

from __future__ import annotations

import json
from pathlib import Path

from transforms.core.randomness import HashStream

WORDS = [
    "river",
    "mountain",
    "signal",
    "garden",
    "library",
    "engine",
    "orbit",
    "lantern",
    "harvest",
    "puzzle",
    "meadow",
    "copper",
    "compass",
    "violin",
    "glacier",
    "market",
    "thunder",
    "pepper",
    "canyon",
    "ribbon",
    "falcon",
    "marble",
    "summit",
    "harbor",
]

# Options that make 200 records exercise many packing keys and several output shards.
RUN_OPTIONS = [
    "--seed",
    "7",
    "--epochs",
    "2",
    "--records-per-key",
    "16",
    "--num-shards",
    "3",
    "--max-length",
    "400",
    "--formats",
    "jsonl,avro,messages",
]


def _text(stream: HashStream, words: int) -> str:
    return " ".join(stream.choice(WORDS) for _ in range(words)).capitalize() + "."


def write_corpus(directory: Path) -> list[str]:
    """Writes the corpus into `directory`; returns the --input globs that read it."""
    directory.mkdir(parents=True, exist_ok=True)
    stream = HashStream("runner-test-corpus")
    records = [
        {"instruction": _text(stream, 4 + stream.below(30)), "input": "", "output": _text(stream, 3 + stream.below(80))}
        for _ in range(200)
    ]
    records[5]["id"] = records[6]["id"] = "twin"  # duplicate_id
    records[9]["output"] = _text(stream, 600)  # over_budget
    lines = [json.dumps(record) for record in records[:120]]
    lines[40:40] = ['{"instruction": "cut off', json.dumps({"instruction": "no response here"})]
    (directory / "part-a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "part-b.json").write_text(json.dumps(records[120:]), encoding="utf-8")
    return [str(directory / "part-a.jsonl"), str(directory / "part-b.json")]


def output_files(directory: Path) -> dict[str, bytes]:
    """Every file a run wrote, by name, except the manifest (which names its own folder)."""
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.name not in ("manifest.json", ".mosaic-it")
    }
