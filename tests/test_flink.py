"""`mosaic-it run` and `select` on a real Flink cluster write DirectRunner's files, byte for byte.

deploy/flink/local-cluster.sh starts a standalone Flink 1.19 cluster on loopback, the Beam Flink job
server and a Python worker pool; jobs are submitted from its Python environment (apache-beam at the
job server's version, see the script) with the flags deploy/README.md documents. The DirectRunner
runs here, on this environment's Beam. Marked `flink`: the default test run skips it, .ci/run runs it
(`pytest -m flink tests/test_flink.py`); the first start fetches about 400 MB into .cache/flink/.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.corpus import output_files
from tests.shared_data import SHARED_DATA, require_shared

pytestmark = pytest.mark.flink

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "flink" / "local-cluster.sh"
SUBMITTER = REPO / ".cache" / "flink" / "venv-beam-2.62.0" / "bin" / "mosaic-it"
PARALLELISM = 2
FLINK_FLAGS = [
    "--runner=PortableRunner",
    "--job_endpoint=127.0.0.1:8099",
    "--artifact_endpoint=127.0.0.1:8098",
    "--environment_type=EXTERNAL",
    "--environment_config=127.0.0.1:50000",
    f"--parallelism={PARALLELISM}",
    "--sdk_worker_parallelism=1",
    # Beam 2.62's option parser would otherwise also read --output as Java's --output_executable_path,
    # and the job server would write a jar there instead of running the job.
    "--output_executable_path=",
]
RUN_OPTIONS = ["--seed", "11", "--formats", "jsonl,avro,messages"]
INPUTS = {"alpaca": "alpaca_en_demo.json", "t0_50k": "t0_50k/*.jsonl"}


@pytest.fixture(scope="module")
def flink_cluster():
    require_shared(SHARED_DATA)
    env = {**os.environ, "FLINK_SLOTS": str(PARALLELISM)}
    try:
        subprocess.run([str(SCRIPT), "up"], check=True, env=env)
        yield
    finally:
        subprocess.run([str(SCRIPT), "down"], check=True, env=env)


def submit(args: list[str], log: Path) -> None:
    with log.open("wb") as sink:
        finished = subprocess.run([str(SUBMITTER), *args, *FLINK_FLAGS], stdout=sink, stderr=subprocess.STDOUT)
    assert finished.returncode == 0, log.read_text(errors="replace")[-3000:]


def manifest_counts(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))["counts"]


@pytest.mark.parametrize("name", INPUTS)
def test_run_on_flink_writes_direct_files(name, flink_cluster, tmp_path):
    args = ["run", "--input", str(SHARED_DATA / INPUTS[name]), *RUN_OPTIONS]
    assert main([*args, "--output", str(tmp_path / "direct")]) == 0
    submit([*args, "--output", str(tmp_path / "flink")], tmp_path / "flink.log")
    assert output_files(tmp_path / "flink") == output_files(tmp_path / "direct")
    assert manifest_counts(tmp_path / "flink") == manifest_counts(tmp_path / "direct")


def test_select_on_flink_writes_direct_files(flink_cluster, tmp_path):
    pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")
    from tests.select.select_support import OWN_TEMPLATE, build_tiny_model

    model = build_tiny_model(tmp_path / "model", OWN_TEMPLATE)

    def args(name: str) -> list[str]:
        return [
            "select", "--input", str(SHARED_DATA / INPUTS["alpaca"]), "--model", str(model), "--max-tokens", "256",
            "--output", str(tmp_path / name), "--cache", str(tmp_path / f"{name}-cache"),
        ]  # fmt: skip

    assert main(args("direct")) == 0
    submit(args("flink"), tmp_path / "flink.log")
    direct = output_files(tmp_path / "direct")
    assert output_files(tmp_path / "flink") == direct and any(name.startswith("selected-") for name in direct)
    assert manifest_counts(tmp_path / "flink") == manifest_counts(tmp_path / "direct")
