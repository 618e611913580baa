"""The numbers behind the report and the terminal table, and the report of a select run (synthetic folder)."""

import json
import random

import pytest

from pipeline.cli import main
from pipeline.mosaic import token_summary
from reporting.report import select_summary
from reporting.run_stats import (
    UNKNOWN_SOURCE,
    expected_mean_size,
    mosaic_table,
    scan_rejected,
    scan_select,
    select_table,
    source_of,
)


def test_token_summary_takes_nearest_rank_percentiles_of_the_histogram():
    histogram = {"10": 5, "20": 4, "1000": 1}
    assert token_summary(histogram) == {"total": 50 + 80 + 1000, "min": 10, "p50": 10, "p90": 20, "max": 1000}
    assert token_summary({"7": 1}) == {"total": 7, "min": 7, "p50": 7, "p90": 7, "max": 7}
    assert token_summary({}) == {}


def test_expected_mean_size_follows_the_wrap_distribution():
    assert expected_mean_size("uniform", 10) == pytest.approx(5.5)
    assert expected_mean_size("fix_max", 4) == 4
    assert expected_mean_size("max_length", 10) is None
    assert 1 < expected_mean_size("lognormal", 10) < 10


def _manifest(**counts) -> dict:
    base = {
        "records_read": 12,
        "records_rejected": 2,
        "records_per_epoch": {"0": 10, "1": 10},
        "samples": 8,
        "samples_per_epoch": {"0": 4, "1": 4},
        "strategy": {"format": 5, "permute": 3},
        "rule": {"none": 5, "REVERSE": 3},
        "group_size": {"2": 4, "3": 4},
        "tokens": {"total": 4000, "min": 100, "p50": 400, "p90": 900, "max": 990},
        "rejected": {"multi_turn": 2},
    }
    options = {"epochs": 2, "seed": 3, "output": "out", "wrap_mode": "uniform", "wrap_max": 4, "max_length": 1000}
    return {"tool": "mosaic-it run", "options": options, "counts": {**base, **counts}}


def test_the_mosaic_table_states_every_number_once():
    table = mosaic_table(_manifest())
    assert table.splitlines()[0] == "run         mosaic-it run · 2 epochs · seed 3 · out"
    assert "12 read · 2 rejected · 10 packed per epoch" in table
    assert "samples     8 · per epoch 4 / 4" in table
    assert "mean 2.50 (target mean 2.50: uniform, wrap max 4) · 2: 4 · 3: 4" in table
    assert "mean 500 (50% of the 1,000 budget) · median 400 · p90 900 · max 990 · total 4,000" in table
    assert "strategy    format 5 (62%) · permute 3 (38%)" in table
    assert "rules       1 used · REVERSE 3 (38%)" in table
    assert "rejected    multi_turn 2 (100%)" in table
    assert all(len(line) <= 100 for line in table.splitlines())


def test_an_older_manifest_without_token_counts_still_makes_a_table():
    manifest = _manifest()
    del manifest["counts"]["tokens"]
    assert "not in this manifest" in mosaic_table(manifest)


def test_a_record_id_names_its_source_file_only_in_the_default_form():
    labels = {"a.jsonl", "b.json"}
    assert source_of("a.jsonl:12", labels) == "a.jsonl"
    assert source_of("b.json:0", None) == "b.json"
    assert source_of("c.jsonl:3", labels) == UNKNOWN_SOURCE  # not one of the inputs
    assert source_of("record-17", labels) == UNKNOWN_SOURCE


def _write_lines(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def select_dir(tmp_path):
    """A select run as issue 3 describes its outputs: 30 records from two files plus 5 with custom ids."""
    generator = random.Random(0)
    ids = [f"a.jsonl:{i}" for i in range(20)] + [f"b.json:{i}" for i in range(10)] + [f"custom-{i}" for i in range(5)]
    ifd = {record_id: round(generator.uniform(0.2, 1.4), 4) for record_id in ids}
    candidates = sorted((record_id for record_id in ids if ifd[record_id] < 1), key=ifd.get, reverse=True)
    picks = candidates[:6]
    rest = [record_id for record_id in ids if record_id not in picks]
    _write_lines(
        tmp_path / "scores-00000-of-00001.jsonl",
        [
            {"id": i, "ifd": ifd[i], "loss_conditional": 1.0, "loss_prior": 1.2, "round": 0, "model": "tiny"}
            for i in ids
        ],
    )
    _write_lines(
        tmp_path / "selected-00000-of-00001.jsonl",
        [{"id": i, "instruction": "x", "input": "", "output": "y"} for i in picks],
    )
    _write_lines(
        tmp_path / "order.jsonl",
        [{"id": i, "score": 1.0 / (rank + 1)} for rank, i in enumerate(picks)] + [{"id": i} for i in rest],
    )
    _write_lines(
        tmp_path / "rejected-00000-of-00001.jsonl",
        [{"source": "a.jsonl:20", "reason": "response_truncated", "detail": "no response token left", "record": "{}"}],
    )
    manifest = {
        "tool": "mosaic-it select",
        "options": {"output": str(tmp_path)},
        "inputs": ["/data/a.jsonl", "/data/b.json"],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path, ifd, picks


def test_scan_select_counts_selected_records_per_source(select_dir):
    directory, ifd, picks = select_dir
    from reporting import outputs

    scan = scan_select(
        outputs.json_lines([str(directory / "scores-00000-of-00001.jsonl")]),
        outputs.json_lines([str(directory / "selected-00000-of-00001.jsonl")]),
        outputs.json_lines([str(directory / "order.jsonl")]),
        ["/data/a.jsonl", "/data/b.json"],
    )
    assert scan.records == 35 and scan.selected == 6
    expected = {"a.jsonl": [0, 20], "b.json": [0, 10], UNKNOWN_SOURCE: [0, 5]}
    for pick in picks:
        expected[source_of(pick, {"a.jsonl", "b.json"})][0] += 1
    assert scan.per_source == expected
    assert scan.selected_ifd == [ifd[pick] for pick in picks]
    assert scan.pick_scores == [1.0 / (rank + 1) for rank in range(6)]
    assert sorted(scan.ifd) == sorted(ifd.values())
    table = select_table(json.loads((directory / "manifest.json").read_text()), scan, scan_rejected([]))
    assert f"6 ({6 / 35:.1%} of the records)" in table
    assert f"{sum(value < 1 for value in ifd.values())} candidates (IFD < 1)" in table


def test_report_of_a_select_run(select_dir, capsys):
    directory, _, _ = select_dir
    assert main(["report", str(directory)]) == 0
    assert capsys.readouterr().out.startswith(select_summary(str(directory)))  # the table select prints at its end
    folder = directory / "report"
    for name in ("ifd", "pick_scores", "selected_per_source", "rejected"):
        assert (folder / f"{name}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = (folder / "index.html").read_text()
    assert "response_truncated" in page and "diversity-adjusted" in page
