"""A run writes and deletes only what is its own, one run at a time, and survives a killed predecessor.

The concurrent, interrupted and driver-killed cases run `mosaic-it` as real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.ownership import MARKER
from tests.shared_data import SHARED_DATA, require_shared, write_jsonl
from transforms.core.status import EXIT_BUSY, EXIT_OK, EXIT_USAGE

GOOD = [{"instruction": f"Task {i}", "output": f"Answer {i}"} for i in range(12)]
REPO = Path(__file__).resolve().parents[1]


def start(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def wait_for(condition, timeout_s: float = 60.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def folder_matches_manifest(output: Path) -> None:
    """The folder holds exactly the files its manifest lists, besides the manifest and the marker."""
    manifest = json.loads((output / "manifest.json").read_text())
    listed = {name for names in manifest["outputs"].values() for name in names}
    present = {path.name for path in output.iterdir()} - {"manifest.json", MARKER}
    assert present == listed


def lock_is_held(output: Path) -> bool:
    probe = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\ntry: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError: sys.exit(1)"
    marker = output / MARKER
    return marker.exists() and subprocess.run([sys.executable, "-c", probe, str(marker)]).returncode == 1


def child_pids(pid: int) -> set[int]:
    children = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children.update(int(child) for child in (task / "children").read_text().split())
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_an_input_inside_the_output_folder_is_refused_and_kept(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    named_like_an_output = write_jsonl(data / "messages-00000-of-00001.jsonl", GOOD)
    assert main(["run", "--input", str(named_like_an_output), "--output", str(data)]) == EXIT_USAGE
    assert named_like_an_output.exists() and sorted(p.name for p in data.iterdir()) == [named_like_an_output.name]


def test_an_output_an_input_glob_would_read_back_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data/part.jsonl", GOOD)
    assert main(["run", "--input", str(tmp_path / "**/*.jsonl"), "--output", str(tmp_path / "data/out")]) == EXIT_USAGE
    assert not (tmp_path / "data/out").exists()


def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    (theirs / "mosaics-00000-of-00001.jsonl").write_text("not ours: no marker, no manifest")
    assert main(["run", "--input", str(data), "--output", str(theirs)]) == EXIT_USAGE
    assert sorted(p.name for p in theirs.iterdir()) == ["mosaics-00000-of-00001.jsonl", "notes.txt"]


def test_a_select_round_folder_is_not_taken_by_run(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    round_folder = tmp_path / "round-0"
    round_folder.mkdir()
    (round_folder / "manifest.json").write_text(json.dumps({"tool": "mosaic-it select", "round": 0}))
    assert main(["run", "--input", str(data), "--output", str(round_folder)]) == EXIT_USAGE
    assert json.loads((round_folder / "manifest.json").read_text())["tool"] == "mosaic-it select"


def test_a_rerun_deletes_only_its_own_files(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD * 30)
    output = tmp_path / "out"
    assert main(["run", "--input", str(data), "--output", str(output), "--num-shards", "3"]) == EXIT_OK
    (output / "notes.txt").write_text("a file the user put there")
    assert main(["run", "--input", str(data), "--output", str(output), "--num-shards", "2"]) == EXIT_OK
    assert (output / "notes.txt").read_text() == "a file the user put there"
    assert not list(output.glob("*-of-00003.*")), "the earlier run's shards are gone"


def test_select_refuses_a_previous_round_that_is_its_output_by_another_spelling(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    (tmp_path / "r0").mkdir()
    argv = ["select", "--input", str(data), "--model", "m", "--round", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv, "--previous", str(tmp_path / "r0"), "--output", "./r0/"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == EXIT_USAGE
    assert "--output must differ from --previous" in done.stderr


def test_a_second_run_into_a_busy_output_refuses_and_the_first_completes(tmp_path):
    shards = sorted(require_shared(SHARED_DATA / "t0_50k").glob("*.jsonl"))
    first = start("run", "--input", *map(str, shards), "--output", "out", "--formats", "jsonl", cwd=tmp_path)
    wait_for(lambda: lock_is_held(tmp_path / "out") or first.poll() is not None, what="the first run's lock")
    assert first.poll() is None, "the first run must still be running"
    second = start("run", "--input", *map(str, shards[:3]), "--output", "out", cwd=tmp_path)
    code, stderr = finish(second)
    assert code == EXIT_BUSY and "is in use by another mosaic-it run" in stderr
    assert finish(first)[0] == EXIT_OK
    folder_matches_manifest(tmp_path / "out")


def hold(folder: Path, kind: str) -> subprocess.Popen:
    """A real process that claims `folder` as `kind` (an OutputKind of pipeline.mosaic) and waits."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pipeline import mosaic\n"
            "from pipeline.ownership import claimed_output\n"
            "with claimed_output(sys.argv[1], getattr(mosaic, sys.argv[2]), clear=False):\n"
            "    print('held', flush=True); time.sleep(600)",
            str(folder),
            kind,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_of_the_same_run_id_refuses(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    holder = hold(tmp_path / "out" / "2025-03-01", "RUN_FOLDER_OUTPUT")
    argv = ["run", "--input", str(data), "--output", str(tmp_path / "out")]
    try:
        assert main([*argv, "--run-id", "2025-03-01"]) == EXIT_BUSY
        assert main([*argv, "--run-id", "2025-03-02"]) == EXIT_OK, "another run id of the same output is free"
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", GOOD)
    holder = hold(tmp_path / "out", "MOSAIC_OUTPUT")
    assert main(["run", "--input", str(data), "--output", str(tmp_path / "out")]) == EXIT_BUSY
    holder.kill()
    holder.wait()
    assert main(["run", "--input", str(data), "--output", str(tmp_path / "out")]) == EXIT_OK
    folder_matches_manifest(tmp_path / "out")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked helpers run on Linux only")
def test_helpers_die_with_a_killed_driver_and_a_rerun_leaves_only_its_own_files(tmp_path):
    shards = sorted(require_shared(SHARED_DATA / "t0_50k").glob("*.jsonl"))
    argv = ["run", "--input", *map(str, shards), "--output", "out", "--formats", "jsonl,avro", "--num-shards", "7"]
    system_temp = tmp_path / "tmp"
    system_temp.mkdir()
    driver = start(*argv, "--pack-processes", "3", cwd=tmp_path, env={**os.environ, "TMPDIR": str(system_temp)})
    helpers: set[int] = set()

    def helpers_started() -> bool:
        helpers.update(child_pids(driver.pid))
        return bool(helpers) or driver.poll() is not None

    wait_for(helpers_started, what="forked helpers")
    assert driver.poll() is None, "the driver must still be running"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    wait_for(lambda: not any(alive(pid) for pid in helpers), timeout_s=10, what="the helpers to die")
    assert not list(system_temp.iterdir()), "the killed run left files in the system temp folder"

    rerun = start(*argv[:-2], "--num-shards", "5", "--seed", "1", cwd=tmp_path)
    assert finish(rerun)[0] == EXIT_OK
    folder_matches_manifest(tmp_path / "out")
    assert json.loads((tmp_path / "out/manifest.json").read_text())["options"]["seed"] == 1
