"""Guards that performance work keeps the same output records.

A small fixed run (300 Alpaca records, 2 epochs, default tokenizer) is hashed: the
SHA-256 of its sorted sample and rejected lines, each re-serialized with json.dumps so
that the digest speaks of content (every field, value and field order), not of the
writer's spacing. Any change to what is sampled, how it is composed or how it is
counted (`n_tokens`) changes the digest. The digests below were last taken when streams
began to draw eight values per hash (issue 13's speed bound); before that, after groups
were filled to the budget exactly and the structure and phrasings were drawn as the
original draws them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.cli import main

SHARED = Path(__file__).resolve().parents[1] / "../shared"
ALPACA = SHARED / "data/alpaca_en_demo.json"

# Regenerate after an intended change of outputs (a bug fix, new phrasings):
#   .venv/bin/python -m pytest tests/test_output_guard.py -q   # the failure prints the new digest
EXPECTED = {
    "default": "de2f7b9594722f85b90318cd96ecdec6f365027b7916d9a5e01038d9b2287871",
    "tight_budget": "d4b926a6790004f336b83eb0b80617fd3ce690035c0086bc163796f43bf88d6e",
}
RUNS = {
    "default": ["--epochs", "2"],
    # A tight budget and large groups: most groups are over the estimate or the budget and shrink.
    "tight_budget": ["--epochs", "2", "--max-length", "400", "--wrap-mode", "fix_max", "--seed", "7"],
}


@pytest.fixture(scope="module")
def alpaca_300(tmp_path_factory) -> Path:
    if not ALPACA.exists():
        pytest.skip(f"shared data not found at {ALPACA}")
    path = tmp_path_factory.mktemp("input") / "alpaca300.jsonl"
    records = json.loads(ALPACA.read_text(encoding="utf-8"))[:300]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def output_digest(directory: Path) -> str:
    lines = sorted(
        json.dumps(json.loads(line), ensure_ascii=False)
        for pattern in ("mosaics-*.jsonl", "rejected-*.jsonl")
        for path in directory.rglob(pattern)
        for line in path.read_text(encoding="utf-8").splitlines()
    )
    assert lines, f"no output lines under {directory}"
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_outputs_are_unchanged(name, alpaca_300, tmp_path):
    output = tmp_path / "out"
    argv = ["run", "--input", str(alpaca_300), "--output", str(output), "--formats", "jsonl", *RUNS[name]]
    assert main(argv) == 0
    assert output_digest(output) == EXPECTED[name], f"outputs of run '{name}' changed: {output_digest(output)}"
