"""Command lines that must fail loudly: unknown options, bad values, impossible outputs, exit codes.

Each case runs `mosaic-it` as a real process (the console entry point's exit code and streams
are what a scheduler sees) or through `main` where only the code path matters.
"""

from __future__ import annotations

import errno
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.cli import main
from tests.shared_data import write_jsonl
from transforms.core.status import (
    EXIT_BUSY,
    EXIT_ENVIRONMENT,
    EXIT_INCOMPLETE_INPUT,
    EXIT_NO_OUTPUT,
    EXIT_OK,
    EXIT_TOO_MANY_REJECTED,
    EXIT_USAGE,
)

GOOD = [{"instruction": f"Task {i}", "output": f"Answer {i}"} for i in range(12)]


def mosaic_it(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("mosaic-it:")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--epoch", "2"], "unknown option '--epoch'; did you mean '--epochs'?"),
        (["run", "--max-lenght=1000"], "unknown option '--max-lenght'; did you mean '--max-length'?"),
        (["select", "--ratoi", "0.1"], "unknown option '--ratoi'; did you mean '--ratio'?"),
        (["run", "--no-such-thing"], "unknown option '--no-such-thing'"),
        (["run", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
        (["run", "--max-reject-ratio", "2"], "--max-reject-ratio must be within [0, 1], got 2.0"),
    ],
)
def test_bad_command_lines_are_one_line_errors(argv, message, tmp_path):
    done = mosaic_it(*argv, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert error_lines(done) == [f"mosaic-it: error: {message}"]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mosaic-output").exists(), "nothing ran"


def test_beam_options_still_pass_through(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    argv = ["--input", str(data), "--output", str(tmp_path / "out"), "--direct_running_mode=in_memory"]
    assert main(["run", *argv, "--pack_processes=1"]) == EXIT_OK


def test_repeated_input_flags_accumulate(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", GOOD[:5])
    second = write_jsonl(tmp_path / "b.jsonl", GOOD[5:])
    output = tmp_path / "out"
    assert main(["run", "--input", str(first), "--input", str(second), "--output", str(output)]) == EXIT_OK
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["inputs"] == sorted([str(first), str(second)])
    assert manifest["counts"]["records_read"] == len(GOOD)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inf", "--ratio must be a positive finite number, got inf"),
        ("nan", "--ratio must be a positive finite number, got nan"),
        ("2.5", "--ratio above 1 is a count and must be a whole number, got 2.5"),
    ],
)
def test_select_rejects_ratios_that_cannot_work(value, message, tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    done = mosaic_it("select", "--input", str(data), "--output", "sel", "--model", "m", "--ratio", value, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE and error_lines(done) == [f"mosaic-it: error: {message}"]


def test_output_that_is_a_file_is_refused_before_reading(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    (tmp_path / "taken").write_text("a file")
    done = mosaic_it("run", "--input", str(data), "--output", "taken", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert error_lines(done) == ["mosaic-it: error: --output 'taken' is a file, not a folder"]


def test_output_that_cannot_be_created_is_a_one_line_error(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    (tmp_path / "file").write_text("a file")
    done = mosaic_it("run", "--input", str(data), "--output", "file/out", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    [line] = error_lines(done)
    assert line.startswith("mosaic-it: error: --output 'file/out' cannot be created:")


def test_all_records_rejected_exits_4_with_outputs_written(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", ["not json", {"instruction": "", "output": "x"}])
    done = mosaic_it("run", "--input", str(data), "--output", "out", cwd=tmp_path)
    assert done.returncode == EXIT_NO_OUTPUT
    assert error_lines(done)[-1].startswith("mosaic-it: no_output:")
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["status"]["state"] == "no_output" and manifest["counts"]["records_rejected"] == 2
    assert (tmp_path / "out/rejected-00000-of-00001.jsonl").read_text().count("\n") == 2


def test_a_file_read_only_in_part_exits_3_and_keeps_what_was_read(tmp_path):
    whole = gzip.compress("".join(json.dumps(row) + "\n" for row in GOOD * 40).encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    output = tmp_path / "out"
    assert main(["run", "--input", str(cut), "--output", str(output), "--epochs", "1"]) == EXIT_INCOMPLETE_INPUT
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["status"]["state"] == "incomplete_input"
    assert manifest["counts"]["rejected"] == {"truncated_compression": 1}
    assert 0 < manifest["counts"]["records_per_epoch"]["0"] < len(GOOD) * 40


def test_more_rejected_than_the_threshold_exits_5(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", [*GOOD[:4], *["not json"] * 6])
    output = tmp_path / "out"
    assert main(["run", "--input", str(data), "--output", str(output)]) == EXIT_TOO_MANY_REJECTED
    assert json.loads((output / "manifest.json").read_text())["status"]["exit_code"] == EXIT_TOO_MANY_REJECTED
    assert main(["run", "--input", str(data), "--output", str(output), "--max-reject-ratio", "0.7"]) == EXIT_OK


def test_a_disk_that_fills_up_during_the_run_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr("transforms.files.write_atomically", full)
    monkeypatch.setattr("transforms.manifest.write_atomically", full)
    code = main(["run", "--input", str(data), "--output", str(tmp_path / "out"), "--pack-processes", "1"])
    assert code == EXIT_ENVIRONMENT
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mosaic-it:")]
    assert line.startswith("mosaic-it: error: No space left on device: ")


def test_environment_failures_are_found_behind_a_runners_wrapping():
    try:
        try:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/gone.jsonl")
        except OSError as err:
            raise RuntimeError("a worker failed") from err
    except RuntimeError as wrapped:
        assert cli.environment_failure(wrapped) == "No such file or directory: /data/gone.jsonl"
    assert cli.environment_failure(ValueError("a bug")) is None


def test_exit_codes_are_distinct():
    codes = [
        EXIT_OK,
        EXIT_USAGE,
        EXIT_INCOMPLETE_INPUT,
        EXIT_NO_OUTPUT,
        EXIT_TOO_MANY_REJECTED,
        EXIT_ENVIRONMENT,
        EXIT_BUSY,
    ]
    assert len(set(codes)) == len(codes) and EXIT_OK == 0 and EXIT_USAGE == 2
