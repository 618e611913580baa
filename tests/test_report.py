"""`mosaic-it report` and `mosaic-it inspect` on a real run of the shared data, and the end-of-run table."""

import base64
import contextlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pipeline.cli import main
from reporting import outputs
from reporting.inspection import render_samples, run_rules, source_records
from reporting.run_stats import mosaic_table, scan_samples, strategy_shares
from reporting.select_figures import fitted_range
from transforms.core.anatomy import meta_instruction, response_blocks
from transforms.core.status import EXIT_NO_OUTPUT
from transforms.core.strategies import PRIMARY_SEPARATOR, STRATEGIES

SHARED = Path(__file__).parents[1] / "../shared"
INPUTS = [SHARED / "data/alpaca_en_demo.json", SHARED / "data/glaive_toolcall_en_demo.json"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.skipif(not INPUTS[0].exists(), reason="needs ../shared/data (the project's shared test data)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A mosaic run with rejections (multi-turn conversations) and every strategy."""
    directory = tmp_path_factory.mktemp("run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "run",
                "--input",
                *map(str, INPUTS),
                "--output",
                str(directory),
                "--epochs",
                "2",
                "--max-length",
                "1024",
                "--formats",
                "jsonl",
            ]
        )
    assert code == 0
    (directory / "printed.txt").write_text(printed.getvalue())
    return directory


def _manifest(run_dir) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def test_run_ends_with_the_summary_table(run_dir):
    manifest = _manifest(run_dir)
    table = (run_dir / "printed.txt").read_text()
    assert table == mosaic_table(manifest) + f"\nmanifest: {run_dir / 'manifest.json'}\n"
    counts = manifest["counts"]
    assert f"{counts['records_read']:,} read · {counts['records_rejected']:,} rejected" in table
    assert re.search(
        r"tokens +mean [\d,]+ \(\d+% of the 1,024 budget\) · median [\d,]+ · p90 [\d,]+ · max [\d,]+", table
    )
    assert "multi_turn" in table


def test_report_writes_a_self_contained_page_and_valid_figures(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(mosaic_table(_manifest(run_dir)))  # the same numbers as at the end of the run
    folder = run_dir / "report"
    names = [
        "input_mix",
        "record_lengths",
        "group_sizes",
        "n_tokens",
        "tokens_per_strategy",
        "strategies",
        "strategy_shares",
        "rejected",
    ]
    page = (folder / "index.html").read_text()
    embedded = [base64.b64decode(data) for data in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]
    assert len(embedded) == len(names)
    for name, data in zip(names, embedded):
        png = (folder / f"{name}.png").read_bytes()
        assert png.startswith(PNG_SIGNATURE) and png == data
        image = Image.open(io.BytesIO(png))
        image.verify()
        assert 400 <= image.size[0] <= 1400 and 150 <= image.size[1] <= 900
    assert "http" not in page.replace("http-equiv", "")  # nothing to fetch: opens offline
    assert "<h3>multi_turn: " in page and "unsupported_role" in page
    assert page.count("=== e") == 3  # one sample per strategy
    assert str(run_dir) in page


def test_the_figures_count_what_the_manifest_counts(run_dir):
    manifest = _manifest(run_dir)
    scan = scan_samples(outputs.samples(str(run_dir)))
    sizes = Counter()
    for per_epoch in scan.group_sizes.values():
        sizes.update(per_epoch)
    assert {str(size): n for size, n in sorted(sizes.items())} == manifest["counts"]["group_size"]
    assert {str(epoch): sum(c.values()) for epoch, c in scan.group_sizes.items()} == manifest["counts"][
        "samples_per_epoch"
    ]
    assert sum(n * count for n, count in scan.n_tokens.items()) == manifest["counts"]["tokens"]["total"]


def test_every_sample_of_the_run_comes_apart(run_dir):
    manifest = _manifest(run_dir)
    samples = list(outputs.samples(str(run_dir)))
    sources = {source for sample in samples for source in sample["sources"]}
    records = source_records(manifest["inputs"], sources, outputs.input_fields(manifest))
    rules = run_rules(manifest)
    for sample in samples:
        separator = PRIMARY_SEPARATOR if sample["strategy"] == "primary" else rules.response_separator
        blocks = response_blocks(
            sample["output"], [records[source].output for source in sample["response_order"]], separator
        )
        assert blocks is not None and len(blocks) == len(sample["response_order"]), sample["id"]
        meta = meta_instruction(sample["instruction"], sample["strategy"], rules)
        assert (meta == "") == (sample["strategy"] == "primary") and meta is not None, sample["id"]


def _headers(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("=== ")]


def test_inspect_prints_the_samples_asked_for(run_dir, capsys):
    assert main(["inspect", str(run_dir), "--strategy", "permute", "--n", "2"]) == 0
    text = capsys.readouterr().out
    assert len(_headers(text)) == 2 and all(" · permute " in header for header in _headers(text))
    assert "meta-instruction:" in text and "responses, in the order written:" in text


def test_inspect_marks_reordered_responses(run_dir, capsys):
    assert main(["inspect", str(run_dir), "--rule", "reverse", "--n", "1"]) == 0
    text = capsys.readouterr().out
    count = int(re.search(r"· (\d+) records ·", text).group(1))
    answered = [int(n) for n in re.findall(r"--- response \d+ · instruction (\d+) ·", text)]
    assert answered == list(range(count, 0, -1))
    assert text.count("[reordered:") == count - count % 2  # all but the middle one
    assert "Respond from the bottom" in text or "reverse order" in text or "Work backwards" in text


def test_inspect_marks_masked_instructions(run_dir, capsys):
    assert main(["inspect", str(run_dir), "--rule", "MASK_ODD", "--n", "1"]) == 0
    text = capsys.readouterr().out
    count = int(re.search(r"· (\d+) records ·", text).group(1))
    masked = [int(n) for n in re.findall(r"^ +(\d+)\. \S+ +.*\[masked: no response\]$", text, re.MULTILINE)]
    assert masked == list(range(1, count + 1, 2))
    assert [int(n) for n in re.findall(r"· instruction (\d+) ·", text)] == list(range(2, count + 1, 2))
    assert "[reordered:" not in text


def test_inspect_finds_the_samples_of_one_record(run_dir, capsys):
    assert main(["inspect", str(run_dir), "--id", "alpaca_en_demo.json:7", "--n", "5"]) == 0
    headers = _headers(capsys.readouterr().out)
    assert len(headers) == 2  # one sample per epoch holds each record
    assert {header.split(" · ")[1] for header in headers} == {"epoch 0", "epoch 1"}


def test_inspect_shows_the_output_whole_when_the_inputs_are_gone(run_dir):
    manifest = dict(_manifest(run_dir), inputs=["/nowhere/alpaca_en_demo.json"])
    sample = next(outputs.samples(str(run_dir)))
    (text,) = render_samples(str(run_dir), manifest, [sample])
    assert "the output is shown whole" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--strategy", "shuffle"], "invalid choice: 'shuffle'"),
        (["--n", "0"], "--n must be at least 1"),
    ],
)
def test_inspect_errors_are_one_line(run_dir, capsys, argv, message):
    assert main(["inspect", str(run_dir), *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_report_and_inspect_need_a_finished_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert main(["inspect", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("has no manifest.json") == 2


def test_a_run_that_wrote_no_sample_still_gets_a_report(tmp_path, capsys):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"instruction": "", "output": "x"}\nnot json\n')
    assert main(["run", "--input", str(source), "--output", str(tmp_path / "out"), "--epochs", "1"]) == EXIT_NO_OUTPUT
    assert "records     2 read · 2 rejected · 0 packed per epoch" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "out")]) == 0
    # No record parsed: no record lengths to draw.
    assert sorted(path.name for path in (tmp_path / "out/report").iterdir()) == [
        "index.html",
        "input_mix.png",
        "rejected.png",
    ]
    page = (tmp_path / "out/report/index.html").read_text()
    assert "The run wrote no sample." in page and "malformed_json: 1" in page
    assert main(["inspect", str(tmp_path / "out")]) == 1


def test_samples_are_read_from_avro_when_no_json_lines_were_written(run_dir, tmp_path):
    import shutil

    import fastavro

    from transforms.formats import SAMPLE_SCHEMA

    rows = list(outputs.samples(str(run_dir)))
    shutil.copy(run_dir / "manifest.json", tmp_path / "manifest.json")
    with open(tmp_path / "mosaics-00000-of-00001.avro", "wb") as handle:
        fastavro.writer(handle, SAMPLE_SCHEMA, rows)
    assert list(outputs.samples(str(tmp_path))) == rows


def _table(page: str, first_header: str) -> list[list[str]]:
    """The cells of the page's table whose first header is `first_header`, row by row."""
    table = re.search(rf"<table><tr><th[^>]*>{first_header}</th>.*?</table>", page, re.DOTALL)
    assert table, first_header
    return [
        re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        for row in re.findall(r"<tr>(.*?)</tr>", table[0], re.DOTALL)[1:]
    ]


def _alpaca(n: int, tag: str) -> dict:
    return {"instruction": f"Name {n} facts about {tag}.", "input": "", "output": f"Here are {n} facts about {tag}."}


def test_the_input_mix_counts_each_file(tmp_path):
    """Two files: one with a record over the budget, one with a line that is not JSON."""
    long_record = {"instruction": "Say it long.", "input": "", "output": "a longer answer " * 200}
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [*map(_alpaca, range(4), "pqrs"), long_record])
    )
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(_alpaca(n, "b")) + "\n" for n in range(3)) + "{not json\n")
    out = tmp_path / "out"
    argv = ["run", "--input", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--output", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "--epochs", "2", "--max-length", "200", "--formats", "jsonl", "--strategy", "order"]) == 0
        assert main(["report", str(out)]) == 0
    page = (out / "report/index.html").read_text()
    samples = list(outputs.samples(str(out)))
    holding = Counter(file for sample in samples for file in {s.rpartition(":")[0] for s in sample["sources"]})
    assert holding["a.jsonl"] and holding["b.jsonl"]
    rows = {row[0]: row[1:6] for row in _table(page, "file")}
    # records, rejected, over budget, samples holding one, share of the records placed (4 + 3 per epoch)
    assert rows == {
        "a.jsonl": ["5", "1", "1", str(holding["a.jsonl"]), "57.1%"],
        "b.jsonl": ["4", "1", "0", str(holding["b.jsonl"]), "42.9%"],
    }
    (rejected_long,) = [row for row in outputs.rejected(str(out)) if row["reason"] == "over_budget"]
    run_count = int(rejected_long["detail"].split()[0])  # "N tokens on its own, ..."
    assert f"<td class=num>{run_count:,}</td></tr>" in page  # the recount's max of a.jsonl is the run's count
    assert "the rejected file lists 1 over_budget records." in page
    # --strategy order draws format or permute; groups of one are format.
    shares = {row[0]: row[1:4] for row in _table(page, "strategy")}
    assert set(shares) <= {"primary", "format", "permute"} and shares["permute"][0] == "50.0%"


def test_expected_strategy_shares_follow_the_draw_and_the_groups_of_one():
    shares = strategy_shares("both", {1: 30, 3: 70}, {"format": 60, "permute": 25, "maskout": 15})
    table = {s.kind: (round(s.drawn, 4), round(s.expected, 4), s.observed) for s in shares}
    assert table == {
        "format": (0.3333, round((30 + 70 / 3) / 100, 4), 0.6),
        "permute": (0.3333, round(70 / 3 / 100, 4), 0.25),
        "maskout": (0.3333, round(70 / 3 / 100, 4), 0.15),
    }
    (primary,) = strategy_shares("primary", {1: 5, 2: 5}, {"primary": 10})
    assert (primary.kind, primary.drawn, primary.expected, primary.observed) == ("primary", 1.0, 1.0, 1.0)
    # A kind the options never draw is listed when the run wrote it (a lone record's plain fallback).
    assert [s.kind for s in strategy_shares("order", {2: 4}, {"primary": 1, "format": 3})] == [
        "primary",
        "format",
        "permute",
    ]


@given(
    st.sampled_from(STRATEGIES),
    st.dictionaries(st.integers(1, 10), st.integers(1, 1000), min_size=1),
)
def test_expected_strategy_shares_add_up_to_one(strategy, group_sizes):
    shares = strategy_shares(strategy, group_sizes, {"format": 1})
    assert sum(s.drawn for s in shares) == pytest.approx(1.0)
    assert sum(s.expected for s in shares) == pytest.approx(1.0)


def test_the_ifd_axis_is_fitted_to_the_scores():
    scores = [0.9 + i / 10_000 for i in range(1000)] + [50.0]
    low, high = fitted_range(scores)
    assert 0.89 < low < 0.9 and 0.99 < high < 1.01  # the outlier is left off the axis
    assert fitted_range([2.0, 2.0]) == (1.98, 2.02)


@pytest.fixture(scope="module")
def select_dir(tmp_path_factory):
    """A select round of 80 records with a tiny random model."""
    pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")
    from pipeline.iterit import run_select
    from tests.select.select_support import OWN_TEMPLATE, build_tiny_model, make_records, write_jsonl

    tmp = tmp_path_factory.mktemp("select")
    model = build_tiny_model(tmp / "model", OWN_TEMPLATE)
    write_jsonl(tmp / "input.jsonl", make_records(80))
    argv = ["--input", str(tmp / "input.jsonl"), "--output", str(tmp / "out"), "--model", str(model)]
    run_select([*argv, "--max-tokens", "256", "--ratio", "0.2", "--no-cache"])
    return tmp / "out"


def test_the_select_report_shows_ifd_by_length_and_the_first_and_last_picks(select_dir):
    assert main(["report", str(select_dir)]) == 0
    page = (select_dir / "report/index.html").read_text()
    assert "alt='ifd'" in page and "alt='ifd_by_length'" in page
    assert (select_dir / "report/ifd_by_length.png").read_bytes().startswith(PNG_SIGNATURE)
    order = [json.loads(line) for line in (select_dir / "order.jsonl").read_text().splitlines()]
    picks = [row for row in order if row["pick"] is not None]
    assert len(picks) > 10
    shown = picks[:5] + picks[-5:]
    records = {row["id"]: row for row in map(json.loads, (select_dir.parent / "input.jsonl").read_text().splitlines())}
    assert _table(page, "pick") == [
        [
            str(row["pick"] + 1),
            row["id"],
            f"{row['ifd']:.4f}",
            f"{row['score']:.4f}",
            str(row["response_tokens"]),
            records[row["id"]]["instruction"]
            + (f"\n{records[row['id']]['input']}" if records[row["id"]]["input"] else ""),
        ]
        for row in shown
    ]


def test_a_report_whose_inputs_are_gone_says_so_and_draws_no_lengths(run_dir):
    from reporting.report import mosaic_report

    manifest = dict(
        _manifest(run_dir), inputs=["/nowhere/alpaca_en_demo.json", "/nowhere/glaive_toolcall_en_demo.json"]
    )
    report = mosaic_report(str(run_dir), manifest)
    assert (
        report.notes[0]
        == "The input /nowhere/alpaca_en_demo.json is gone: its records are left out of the input record lengths."
    )
    (inputs,) = [section for section in report.sections if section.title == "Inputs"]
    assert [plot.name for plot in inputs.plots] == ["input_mix"]
    # The default ids still name the files.
    files = {row[0]: row[1] for row in _table(inputs.html, "file")}
    assert files == {"alpaca_en_demo.json": "999", "glaive_toolcall_en_demo.json": "300"}
