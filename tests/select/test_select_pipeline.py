"""`mosaic-it select` end to end on the DirectRunner, with a tiny random model."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
from select_support import make_records, write_jsonl

from pipeline.cli import main, run
from pipeline.iterit import run_select
from transforms.core.selection import selection_size

pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")

RECORDS = make_records(40)
TWIN = {**RECORDS[7], "id": "twin-of-r007"}  # same text as r007: one model call serves both
BAD = [
    "{not json",
    {**RECORDS[1], "output": "a duplicate id"},
    {"id": "long", "instruction": "word " * 600, "output": "cut off"},
]
RATIO = "0.2"


def read_jsonl(pattern) -> list[dict]:
    return [json.loads(line) for path in sorted(glob.glob(str(pattern))) for line in open(path, encoding="utf-8")]


def select(tmp: Path, output: str, model: Path, *extra: str) -> dict:
    return run_select(
        [
            "--input",
            str(tmp / "input.jsonl"),
            "--output",
            str(tmp / output),
            "--model",
            str(model),
            "--max-tokens",
            "256",
            "--ratio",
            RATIO,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def round0(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("select")
    write_jsonl(tmp / "input.jsonl", [*RECORDS, TWIN, *BAD])
    return tmp, select(tmp, "round0", tiny_model)


def test_every_input_line_is_ordered_or_rejected(round0):
    tmp, manifest = round0
    counts = manifest["counts"]
    order = read_jsonl(tmp / "round0/order.jsonl")
    rejected = read_jsonl(tmp / "round0/rejected-*.jsonl")
    assert counts["records_read"] == len(RECORDS) + 1 + len(BAD) == len(order) + len(rejected)
    assert {r["reason"] for r in rejected} == {"malformed_json", "duplicate_id", "response_truncated"}
    assert counts["rejected"] == {"malformed_json": 1, "duplicate_id": 1, "response_truncated": 1}
    assert sorted(r["id"] for r in order) == sorted([r["id"] for r in RECORDS] + [TWIN["id"]])
    assert counts["scores"] == {"computed": 41, "cached": 0, "kept": 0}


def test_order_is_picks_then_ifd_at_least_one_then_the_rest_by_ifd(round0):
    tmp, manifest = round0
    order = read_jsonl(tmp / "round0/order.jsonl")
    k = selection_size(float(RATIO), len(order))
    assert manifest["counts"]["k"] == k == 8
    picks = [r for r in order if r["pick"] is not None]
    assert [r["pick"] for r in picks] == list(range(k)) and order[:k] == picks
    assert all(r["ifd"] < 1 for r in picks)
    after = order[k:]
    not_candidates = [r for r in after if r["ifd"] >= 1]
    assert after[: len(not_candidates)] == not_candidates
    rest = [r["ifd"] for r in after[len(not_candidates) :]]
    assert all(ifd < 1 for ifd in rest) and rest == sorted(rest, reverse=True)
    assert [r["position"] for r in order] == list(range(len(order)))
    assert manifest["counts"]["candidates"] == k + len(rest)


def test_scores_hold_every_record_once_with_its_losses(round0):
    tmp, _ = round0
    scores = {r["id"]: r for r in read_jsonl(tmp / "round0/scores-*.jsonl")}
    order = read_jsonl(tmp / "round0/order.jsonl")
    assert set(scores) == {r["id"] for r in order}
    first = scores["r000"]
    assert set(first) == {"id", "ifd", "conditional_loss", "prior_loss", "response_tokens", "round", "model"}
    assert first["round"] == 0 and first["model"] == order[0]["model"]
    twin, original = scores[TWIN["id"]], scores["r007"]
    assert {k: v for k, v in twin.items() if k != "id"} == {k: v for k, v in original.items() if k != "id"}


def test_selected_are_the_picked_records_in_pick_order(round0):
    tmp, _ = round0
    order = read_jsonl(tmp / "round0/order.jsonl")
    selected = read_jsonl(tmp / "round0/selected-*.jsonl")
    by_id = {r["id"]: r for r in [*RECORDS, TWIN]}
    assert [r["id"] for r in selected] == [r["id"] for r in order if r["pick"] is not None]
    assert selected == [
        {key: by_id[r["id"]][key] for key in ("id", "instruction", "input", "output")} for r in selected
    ]


def test_selected_records_feed_mosaic_run(round0):
    tmp, _ = round0
    manifest = run(["--input", str(tmp / "round0/selected-*.jsonl"), "--output", str(tmp / "mosaic"), "--epochs", "1"])
    assert manifest["counts"]["records_read"] == 8 and manifest["counts"]["records_rejected"] == 0


def outputs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != "manifest.json"}


def test_a_rerun_takes_every_score_from_the_cache_and_writes_the_same_files(round0, tiny_model):
    tmp, _ = round0
    manifest = select(tmp, "rerun", tiny_model)
    assert manifest["counts"]["scores"] == {"computed": 0, "cached": 41, "kept": 0}
    assert manifest["cache"]["files_read"] == 1 and manifest["cache"]["files_written"] == []
    assert outputs(tmp / "rerun") == outputs(tmp / "round0")


def test_scoring_again_without_the_cache_gives_identical_files_on_several_workers(round0, tiny_model):
    tmp, _ = round0
    manifest = select(
        tmp, "fresh", tiny_model, "--no-cache", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"
    )
    assert manifest["counts"]["scores"]["computed"] == 41 and manifest["cache"]["directory"] is None
    assert outputs(tmp / "fresh") == outputs(tmp / "round0")


def test_round_one_rescores_the_head_with_the_new_checkpoint_and_keeps_the_rest(round0, tiny_model_next):
    tmp, _ = round0
    write_jsonl(tmp / "input.jsonl", [*RECORDS, TWIN, *BAD, {"id": "new", "instruction": "a new one", "output": "new"}])
    manifest = select(
        tmp, "round1", tiny_model_next, "--round", "1", "--previous", str(tmp / "round0"), "--update-ratio", "2"
    )
    previous = read_jsonl(tmp / "round0/order.jsonl")
    order = read_jsonl(tmp / "round1/order.jsonl")
    k, window = 8, 16
    counts = manifest["counts"]
    assert (counts["k"], counts["window"], counts["order"]) == (k, window, len(previous))
    assert counts["scores"] == {"computed": window, "cached": 0, "kept": len(previous) - window}
    assert counts["rejected"]["not_in_previous_order"] == 2  # the new record, and the one round 0 rejected
    # The window holds the same records, re-scored by the new model; the rest did not move.
    assert {r["id"] for r in order[:window]} == {r["id"] for r in previous[:window]}
    assert all(r["round"] == 1 and r["model"] == str(tiny_model_next) for r in order[:window])
    assert [{**r, "pick": None} for r in order[window:]] == [{**r, "pick": None} for r in previous[window:]]
    assert [r["pick"] for r in order[: counts["selected"]]] == list(range(counts["selected"]))
    assert [r["id"] for r in read_jsonl(tmp / "round1/selected-*.jsonl")] == [
        r["id"] for r in order[: counts["selected"]]
    ]
    assert {r["ifd"] for r in order[:window]} != {r["ifd"] for r in previous[:window]}


def test_a_tokenizer_without_chat_template_needs_a_prompt_template(tmp_path, tiny_model_no_template, capsys):
    write_jsonl(tmp_path / "input.jsonl", RECORDS[:12])
    argv = [
        "select",
        "--input",
        str(tmp_path / "input.jsonl"),
        "--model",
        str(tiny_model_no_template),
        "--max-tokens",
        "256",
    ]
    assert main([*argv, "--output", str(tmp_path / "auto")]) == 2
    assert "has no chat template; pass --prompt-template" in capsys.readouterr().err
    assert (
        main([*argv, "--output", str(tmp_path / "chatml"), "--prompt-template", "chatml", "--score-type", "ifd"]) == 0
    )
    order = read_jsonl(tmp_path / "chatml/order.jsonl")
    assert len(order) == 12 and order[0]["pick"] == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--ratio", "2.5"], "--ratio above 1 is a count"),
        (["--ratio", "0"], "--ratio must be a positive finite number"),
        (["--score-type", "tfidf"], "--score-type 'tfidf' is unknown"),
        (["--round", "1"], "--round 1 needs --previous"),
        (["--previous", "somewhere"], "--previous needs --round 1 or later"),
        (["--diversity-decay", "2"], "--diversity-decay must be within [0, 1]"),
        (["--device", "tpu"], "--device 'tpu' is unknown"),
        (["--max-tokens", "1"], "--max-tokens must be at least 2"),
        (["--cache", "c", "--no-cache"], "contradict"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, tiny_model, capsys, arguments, message):
    write_jsonl(tmp_path / "input.jsonl", RECORDS[:2])
    argv = [
        "select",
        "--input",
        str(tmp_path / "input.jsonl"),
        "--output",
        str(tmp_path / "out"),
        "--model",
        str(tiny_model),
    ]
    assert main([*argv, *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_missing_output_model_and_previous_are_one_line_errors(tmp_path, tiny_model, capsys):
    write_jsonl(tmp_path / "input.jsonl", RECORDS[:2])
    base = ["select", "--input", str(tmp_path / "input.jsonl")]
    assert main([*base, "--model", str(tiny_model)]) == 2
    assert main([*base, "--output", str(tmp_path / "o")]) == 2
    assert (
        main(
            [
                *base,
                "--output",
                str(tmp_path / "o"),
                "--model",
                str(tmp_path / "nowhere"),
                "--round",
                "1",
                "--previous",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                *base,
                "--output",
                str(tmp_path / "o"),
                "--model",
                str(tiny_model),
                "--round",
                "1",
                "--previous",
                str(tmp_path),
            ]
        )
        == 2
    )
    errors = capsys.readouterr().err.splitlines()
    assert [e.split(": ", 2)[2][:30] for e in errors] == [
        "--output is required",
        "--model is required",
        f"--model: no such directory: {tmp_path / 'nowhere'}"[:30],
        f"--previous '{tmp_path}' holds no manifest"[:30],
    ]
