"""`mosaic-it verify`: a finished run passes, and each kind of damage to its files is flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from reporting.verify import verify
from tests.shared_data import SHARED_DATA, require_shared

TEXT_RULES = {"REVERSE", "WORDS_ASC", "WORDS_DESC", "CHARS_ASC", "CHARS_DESC", "ODD_EVEN", "EVEN_ODD"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    records = json.loads(require_shared(SHARED_DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:200]
    source = tmp_path_factory.mktemp("in") / "alpaca200.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    output = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", "--input", str(source), "--output", str(output), "--formats", "jsonl", "--epochs", "2"]) == 0
    return output


def damaged(run_dir: Path, tmp_path: Path, change) -> Path:
    """A copy of the run whose sample lines `change(samples)` edited."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in run_dir.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    [shard] = sorted(copy.glob("mosaics-*.jsonl"))
    samples = [json.loads(line) for line in shard.read_text(encoding="utf-8").splitlines()]
    change(samples)
    shard.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
    return copy


def first(samples, condition) -> dict:
    return next(sample for sample in samples if condition(sample))


def test_a_finished_run_verifies(run_dir, capsys):
    assert main(["verify", str(run_dir)]) == 0
    assert capsys.readouterr().out.startswith("verified:")


def test_a_wrong_n_tokens_is_flagged(run_dir, tmp_path):
    copy = damaged(run_dir, tmp_path, lambda samples: samples[0].update(n_tokens=samples[0]["n_tokens"] + 1))
    assert {v.check for v in verify(str(copy))} == {"n_tokens"}


def test_a_lost_sample_is_flagged_as_records_in_no_sample(run_dir, tmp_path):
    lost = []
    copy = damaged(run_dir, tmp_path, lambda samples: lost.append(samples.pop(3)))
    found = verify(str(copy))
    assert {v.check for v in found} == {"accounting"}
    assert len(found) == lost[0]["count"]


def test_responses_out_of_the_rules_order_are_flagged(run_dir, tmp_path, capsys):
    def swap(samples):
        sample = first(samples, lambda s: s["rule"] in TEXT_RULES and s["count"] >= 3)
        sample["response_order"] = sample["response_order"][::-1]

    copy = damaged(run_dir, tmp_path, swap)
    assert {v.check for v in verify(str(copy))} >= {"order", "rule"}
    assert main(["verify", str(copy)]) == 1
    assert "order: 1 violation(s)" in capsys.readouterr().out


def test_a_masked_response_left_in_the_sample_is_flagged(run_dir, tmp_path):
    records = json.loads((SHARED_DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))

    def leave_masked_response(samples):
        sample = first(samples, lambda s: s["strategy"] == "maskout" and s["masked"])
        index = int(sample["masked"][0].rsplit(":", 1)[1])  # ids are alpaca200.jsonl:<line>
        sample["output"] += "\n\n" + records[index]["output"]

    found = verify(str(damaged(run_dir, tmp_path, leave_masked_response)))
    assert [v.check for v in found if v.check != "n_tokens"] == ["mask"]
    assert "masked response" in found[0].detail or "masked response" in found[-1].detail
