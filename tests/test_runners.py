"""The same input and seed give byte-identical files on every runner the pipeline is deployed on.

The portable test takes the path a Flink cluster takes: PortableRunner submits to Beam's job
service, which hands the work to SDK workers started by a separate worker-pool process
(`--environment_type=EXTERNAL`, like the worker-pool sidecar of a Flink TaskManager). The pool
imports the project from an unpacked source distribution built by setup.py, the package that
`--setup_file` stages and that `pip install .` puts in the worker image, never from this checkout
or a pickled main session.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.runners.portability.portable_runner import PortableRunner

from pipeline.cli import run
from pipeline.runner import new_pipeline, pack_processes
from tests.corpus import RUN_OPTIONS, output_files, write_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    return ["--input", *write_corpus(tmp_path_factory.mktemp("corpus")), *RUN_OPTIONS]


@pytest.fixture(scope="module")
def direct_run(corpus, tmp_path_factory) -> tuple[dict, dict[str, bytes]]:
    output = tmp_path_factory.mktemp("direct")
    document = run([*corpus, "--output", str(output)])
    return document, output_files(output)


def assert_same_run(output: Path, document: dict, direct_run) -> None:
    direct_document, direct_files = direct_run
    assert output_files(output) == direct_files
    assert document["counts"] == direct_document["counts"]
    assert document["counts"]["rejected"] == {
        "duplicate_id": 1,
        "malformed_json": 1,
        "missing_field": 1,
        "over_budget": 1,
    }


def test_multi_processing_direct_runner_writes_the_same_files(corpus, direct_run, tmp_path, monkeypatch):
    # Worker processes import the project as an installed package would be found.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    output = tmp_path / "multi"
    document = run(
        [*corpus, "--output", str(output), "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    )
    assert_same_run(output, document, direct_run)


@pytest.fixture(scope="module")
def packaged_project(tmp_path_factory) -> Path:
    """The project as `--setup_file` ships it: setup.py's source distribution, unpacked."""
    build = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(build), "sdist", "--dist-dir", str(build)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (archive,) = build.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(build, filter="data")
    return build / archive.name.removesuffix(".tar.gz")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def beam_service(module: str, flags: list[str], port: int, cwd: Path, log: Path):
    """Starts `python -m module`, waits until it accepts connections on 127.0.0.1:port, and
    always stops it and the workers it started (its whole process group)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(cwd),
        # The worker pool starts workers as `python ...`: make that this interpreter.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *flags],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{module} is not listening on port {port}: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def portable_endpoints(packaged_project, tmp_path_factory):
    """(job endpoint, worker pool endpoint, worker pool log) of a running job service and worker pool."""
    logs = tmp_path_factory.mktemp("services")
    pool_port, job_port = free_port(), free_port()
    with ExitStack() as services:
        services.enter_context(
            beam_service(
                "apache_beam.runners.worker.worker_pool_main",
                [f"--service_port={pool_port}"],
                pool_port,
                packaged_project,
                logs / "worker_pool.log",
            )
        )
        services.enter_context(
            beam_service(
                "apache_beam.runners.portability.local_job_service_main",
                [f"--port={job_port}"],
                job_port,
                packaged_project,
                logs / "job_service.log",
            )
        )
        yield f"127.0.0.1:{job_port}", f"127.0.0.1:{pool_port}", logs / "worker_pool.log"


def test_portable_runner_with_external_workers_writes_the_same_files(corpus, direct_run, portable_endpoints, tmp_path):
    job_endpoint, pool_endpoint, pool_log = portable_endpoints
    output = tmp_path / "portable"
    document = run(
        [
            *corpus,
            "--output",
            str(output),
            "--runner=PortableRunner",
            f"--job_endpoint={job_endpoint}",
            "--environment_type=EXTERNAL",
            f"--environment_config={pool_endpoint}",
            f"--setup_file={REPO / 'setup.py'}",
        ]
    )
    assert_same_run(output, document, direct_run)
    assert "Starting worker" in pool_log.read_text(), "the work did not run in the external worker pool"


@pytest.mark.parametrize(
    "flags", [[], ["--runner", "DirectRunner"], ["--runner=direct", "--direct_running_mode=multi_processing"]]
)
def test_local_runs_go_straight_to_the_fn_api_runner(flags):
    assert isinstance(new_pipeline(PipelineOptions(flags)).runner, FnApiRunner)


def test_a_named_runner_is_kept():
    assert isinstance(new_pipeline(PipelineOptions(["--runner", "PortableRunner"])).runner, PortableRunner)


def test_a_pipeline_keeps_no_folder_in_the_system_temp_folder():
    # Beam makes one per pipeline and removes it only in run(): a killed run would leave it behind.
    assert not os.path.exists(new_pipeline(PipelineOptions([])).local_tempdir)


def test_forked_helpers_only_where_every_path_is_local(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.runner.available_cpus", lambda: 4)
    local = [str(tmp_path / "in.jsonl"), str(tmp_path / "out")]
    assert pack_processes(PipelineOptions([]), local) == 4
    assert pack_processes(PipelineOptions(["--pack-processes", "2"]), local) == 2
    monkeypatch.setattr("pipeline.runner.available_cpus", lambda: 64)
    assert pack_processes(PipelineOptions([]), local) == 8  # the default's ceiling
    assert pack_processes(PipelineOptions(["--pack-processes", "16"]), local) == 16
    assert pack_processes(PipelineOptions([]), [*local, "gs://bucket/out"]) == 1  # a GCS client must not cross a fork
