"""`--run-id`: each run publishes OUTPUT/<run id>/manifest.json last, and a rerun replaces it whole."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.cli import main, run
from pipeline.options import MosaicOptions
from pipeline.runner import describes_only, new_pipeline
from tests.corpus import RUN_OPTIONS, output_files, write_corpus
from transforms.publish import RunFolder, stale_attempts


def test_stale_attempts_are_the_other_attempt_folders_of_the_run():
    paths = [
        "gs://b/out/r1/attempt-1/mosaics-00000-of-00001.jsonl",
        "gs://b/out/r1/attempt-1/manifest.json",
        "gs://b/out/r1/attempt-2/rejected-00000-of-00001.jsonl",
        "gs://b/out/r1/attempt-3/mosaics-00000-of-00001.avro",
        "gs://b/out/r1/manifest.json",
        "gs://b/out/r10/attempt-9/manifest.json",  # another run whose id starts alike
    ]
    assert stale_attempts("gs://b/out/r1", paths, keep="attempt-2") == [
        "gs://b/out/r1/attempt-1",
        "gs://b/out/r1/attempt-3",
    ]
    assert stale_attempts("/data/out/r1/", ["/data/out/r1/attempt-7/x"], keep="attempt-7") == []


def test_run_folder_paths():
    run_folder = RunFolder.new_attempt("/data/out", "2025-03-01")
    assert run_folder.manifest == "/data/out/2025-03-01/manifest.json"
    assert run_folder.attempt_path == f"/data/out/2025-03-01/{run_folder.attempt}"
    assert run_folder.attempt.startswith("attempt-")
    assert RunFolder.new_attempt("/data/out", "2025-03-01").attempt != run_folder.attempt


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    return ["--input", *write_corpus(tmp_path_factory.mktemp("corpus")), *RUN_OPTIONS]


def attempt_folders(run_path: Path) -> list[Path]:
    return sorted(path for path in run_path.iterdir() if path.is_dir())


def published(output: Path, run_id: str) -> tuple[dict, Path]:
    """The published manifest and the one attempt folder its outputs lie in."""
    document = json.loads((output / run_id / "manifest.json").read_text())
    folder = Path(document["directory"])
    assert all((folder / name).is_file() for names in document["outputs"].values() for name in names)
    return document, folder


def test_a_run_id_publishes_the_manifest_of_one_complete_attempt(corpus, tmp_path):
    plain = tmp_path / "plain"
    run([*corpus, "--output", str(plain)])
    output = tmp_path / "runs"
    returned = run([*corpus, "--output", str(output), "--run-id", "2025-03-01"])

    document, attempt = published(output, "2025-03-01")
    assert returned == document
    assert document["options"]["run_id"] == "2025-03-01"
    assert attempt_folders(output / "2025-03-01") == [attempt]
    assert (attempt / "manifest.json").read_bytes() == (output / "2025-03-01" / "manifest.json").read_bytes()
    assert output_files(attempt) == output_files(plain)  # the same files a plain run writes
    listed = {name for names in document["outputs"].values() for name in names}
    assert listed == set(output_files(attempt))


def test_a_rerun_replaces_the_run_and_never_mixes_with_a_failed_attempt(corpus, tmp_path):
    output = tmp_path / "runs"
    run([*corpus, "--output", str(output), "--run-id", "r1"])
    run([*corpus, "--output", str(output), "--run-id", "r2"])
    first, first_attempt = published(output, "r1")

    # An attempt that died half-way: some shards, no manifest. Readers still see the first attempt.
    failed = output / "r1" / "attempt-19990101T000000Z-deadbeef"
    failed.mkdir()
    (failed / "mosaics-00000-of-00003.jsonl").write_text('{"broken": true}\n')
    assert published(output, "r1") == (first, first_attempt)

    rerun = run([*corpus, "--output", str(output), "--run-id", "r1", "--seed", "8"])
    second, second_attempt = published(output, "r1")
    assert rerun == second and second["options"]["seed"] == 8
    assert second_attempt != first_attempt
    assert attempt_folders(output / "r1") == [second_attempt]  # the old and the failed attempt are gone
    assert published(output, "r2")[1].is_dir()  # other runs are untouched
    for names in second["outputs"].values():
        for name in names:
            assert (second_attempt / name).is_file()


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "-x", ""])
def test_a_run_id_that_is_not_one_folder_name_is_a_one_line_error(run_id, capsys):
    assert main(["run", f"--run-id={run_id}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mosaic-it: error: --run-id") and error.count("\n") == 1


def _flag_spellings() -> dict[str, list[str]]:
    parser = argparse.ArgumentParser()
    MosaicOptions._add_argparse_args(parser)
    return {
        action.dest: action.option_strings for action in parser._actions if action.option_strings[0].startswith("--")
    }


def test_every_multi_word_flag_also_has_its_underscore_spelling():
    for dest, flags in _flag_spellings().items():
        assert f"--{dest}" in flags, f"--{dest} (the spelling Dataflow templates and Airflow pass) is missing"


def test_options_survive_the_round_trip_beam_makes_through_a_dictionary():
    argv = ["--epoch-offset", "12", "--max-length", "900", "--run-id", "2025-03-01", "--records-per-key", "64"]
    options = MosaicOptions(argv)
    again = PipelineOptions.from_dictionary(
        {name: value for name, value in options.get_all_options().items() if value is not None}
    ).view_as(MosaicOptions)
    assert (again.epoch_offset, again.max_length, again.run_id, again.records_per_key) == (12, 900, "2025-03-01", 64)


DATAFLOW = [
    "--runner=DataflowRunner",
    "--project=my-project",
    "--region=us-central1",
    "--temp_location=gs://my-bucket/tmp",
]


@pytest.mark.parametrize(
    "flags, only_described",
    [
        ([*DATAFLOW, "--template_location=gs://my-bucket/templates/job"], True),
        ([*DATAFLOW, "--dry_run=True"], True),
        (DATAFLOW, False),
        (["--runner=DirectRunner", "--dry_run=True"], False),
    ],
)
def test_only_a_dataflow_template_launch_or_dry_run_leaves_the_job_unrun(flags, only_described):
    assert describes_only(new_pipeline(PipelineOptions(flags))) is only_described
