"""Guards that performance work keeps the same output records.

A small fixed run (300 Alpaca records, 2 epochs, default tokenizer) is hashed: the
SHA-256 of its sorted sample and rejected lines, each re-serialized with json.dumps so
that the digest speaks of content (every field, value and field order), not of the
writer's spacing. Any change to what is sampled, how it is composed or how it is
counted (`n_tokens`) changes the digest. The digests below were last taken after groups
were filled to the budget exactly and the structure and phrasings were drawn as the
original draws them (issue 13); the restructure of the Beam layer before that left
them unchanged.
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
    "default": "6c9bf2a756ec9487673f153c3aedf3749372436528c311fde6c4c67fad448db3",
    "tight_budget": "7dd23c0e71eac15a622ced7c1ab51e5a237445fc4c9125f295b33339d1e7381b",
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
