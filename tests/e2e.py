"""Helpers for end-to-end runs: run the CLI in-process and read what it wrote."""

import json
from collections import Counter
from pathlib import Path

import fastavro

from pipeline.cli import run
from reporting.verify import verify
from transforms.core.lengths import LengthTemplate, SampleLengths
from transforms.core.tokens import load_counter


def run_job(inputs, output: Path, *extra: str) -> dict:
    return run(["--input", *map(str, inputs), "--output", str(output), *extra])


def read_jsonl(directory: Path, prefix: str) -> list[dict]:
    rows = []
    for path in sorted(directory.glob(f"{prefix}-*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    return rows


def read_avro(directory: Path) -> list[dict]:
    rows = []
    for path in sorted(directory.glob("mosaics-*.avro")):
        with path.open("rb") as handle:
            rows.extend(fastavro.reader(handle))
    return rows


def output_bytes(directory: Path) -> dict[str, bytes]:
    """Every output file's bytes; the manifest is compared by its counts (it names the folder)."""
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.name not in ("manifest.json", ".mosaic-it")
    }


def check_run(
    directory: Path, manifest: dict, tokenizer: str, template: str, max_length: int
) -> tuple[list[dict], list[dict]]:
    """Asserts the non-negotiables on a finished run; returns (samples, rejected)."""
    samples, rejected = read_jsonl(directory, "mosaics"), read_jsonl(directory, "rejected")
    counts = manifest["counts"]
    # Nothing lost: per epoch, every record read is in exactly one sample or rejected.
    per_epoch = {}
    for sample in samples:
        per_epoch.setdefault(sample["epoch"], Counter()).update(sample["sources"])
    assert set(per_epoch) == {int(e) for e in counts["records_per_epoch"]}
    for epoch, placed in per_epoch.items():
        assert max(placed.values()) == 1, f"a record placed twice in epoch {epoch}"
        assert sum(placed.values()) + len(rejected) == counts["records_read"]
        assert sum(placed.values()) == counts["records_per_epoch"][str(epoch)]
    assert len(samples) == counts["samples"] and len(rejected) == counts["records_rejected"]
    assert Counter(r["reason"] for r in rejected) == Counter(counts["rejected"])
    assert counts["samples_per_epoch"] == {str(epoch): n for epoch, n in Counter(s["epoch"] for s in samples).items()}
    assert counts["strategy"] == Counter(s["strategy"] for s in samples)
    assert counts["rule"] == Counter(s["rule"] or "none" for s in samples)
    assert counts["group_size"] == {str(size): n for size, n in Counter(s["count"] for s in samples).items()}
    n_tokens = sorted(s["n_tokens"] for s in samples)
    assert (counts["tokens"]["total"], counts["tokens"]["min"], counts["tokens"]["max"]) == (
        sum(n_tokens),
        n_tokens[0],
        n_tokens[-1],
    )
    # The budget holds, counted exactly on the final text.
    lengths = SampleLengths(load_counter(tokenizer), LengthTemplate(template))
    exact = lengths.count([(s["instruction"], s["output"]) for s in samples])
    assert [s["n_tokens"] for s in samples] == exact
    assert max(exact) <= max_length
    # Every sample's response bookkeeping is consistent.
    for sample in samples:
        assert sorted(sample["response_order"] + sample["masked"]) == sorted(sample["sources"])
        assert sample["count"] == len(sample["sources"]) and sample["input"] == ""
    # The run's own checker agrees: verbatim texts, order and masking as each rule computes them.
    assert verify(str(directory)) == []
    return samples, rejected
