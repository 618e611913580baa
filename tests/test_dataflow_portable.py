"""Dataflow's exact job graph, run on portable workers, writes the DirectRunner's files (needs `.[gcp]`).

DataflowRunner builds the job with `--dry_run=True --no_auth` (nothing reaches Google Cloud); its
pipeline proto, with the Docker environment of the worker image pointed at an external worker pool
instead, runs on Beam's Python job service. The pool imports the project from its source
distribution, as the worker image does. Only the environment changes: the transforms, coders and
artifacts are the ones Dataflow would receive.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "apache_beam.runners.dataflow.internal.apiclient", reason="the gcp extra is not installed (pip install '.[gcp]')"
)

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2, endpoints_pb2
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
from apache_beam.runners.portability.portable_runner import PortableRunner
from apache_beam.runners.runner import PipelineState

from pipeline.cli import main
from tests.corpus import RUN_OPTIONS, output_files, write_corpus
from tests.shared_data import SHARED_DATA, require_shared
from tests.test_runners import packaged_project, portable_endpoints  # noqa: F401 (fixtures)

IMAGE = "us-central1-docker.pkg.dev/my-project/mosaic/mosaic-it:2025-03-01"
DATAFLOW_FLAGS = [
    "--runner=DataflowRunner",
    "--project=my-project",
    "--region=us-central1",
    "--temp_location=gs://my-bucket/tmp",
    f"--sdk_container_image={IMAGE}",
    "--dry_run=True",
    "--no_auth",
]
RUN_ID = "2025-03-01"


class Described(Exception):
    """Raised in place of submitting: carries the pipeline proto DataflowRunner built."""

    def __init__(self, proto: beam_runner_api_pb2.Pipeline):
        super().__init__("the Dataflow job was described, not run")
        self.proto = proto


@pytest.fixture
def dataflow_graph(monkeypatch) -> Callable[[list[str]], beam_runner_api_pb2.Pipeline]:
    """Runs `mosaic-it ARGS` with DataflowRunner's dry run and returns the job's pipeline proto.

    Raising right after the dry run stops the command where a real submission would hand the job
    over; `select` would otherwise wait for a manifest that only the job writes."""
    dry_run = DataflowRunner.run_pipeline

    def describe(self, pipeline, options, pipeline_proto=None):
        raise Described(dry_run(self, pipeline, options, pipeline_proto).job.proto_pipeline)

    monkeypatch.setattr(DataflowRunner, "run_pipeline", describe)

    def build(args: list[str]) -> beam_runner_api_pb2.Pipeline:
        with pytest.raises(Described) as described:
            main([*args, *DATAFLOW_FLAGS])
        return described.value.proto

    return build


def on_external_workers(proto: beam_runner_api_pb2.Pipeline, pool_endpoint: str) -> Iterator[str]:
    """Points every Docker environment of `proto` at the worker pool; yields the images replaced."""
    external = beam_runner_api_pb2.ExternalPayload(endpoint=endpoints_pb2.ApiServiceDescriptor(url=pool_endpoint))
    for environment in proto.components.environments.values():
        if environment.urn == common_urns.environments.DOCKER.urn:
            yield beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image
            environment.urn = common_urns.environments.EXTERNAL.urn
            environment.payload = external.SerializeToString()


def run_portable(proto: beam_runner_api_pb2.Pipeline, endpoints) -> None:
    job_endpoint, pool_endpoint, pool_log = endpoints
    assert set(on_external_workers(proto, pool_endpoint)) == {IMAGE}
    options = PipelineOptions(
        [f"--job_endpoint={job_endpoint}", "--environment_type=EXTERNAL", f"--environment_config={pool_endpoint}"]
    )
    result = PortableRunner().run_portable_pipeline(proto, options)
    assert result.wait_until_finish() == PipelineState.DONE
    assert "Starting worker" in pool_log.read_text(), "the work did not run in the external worker pool"


def published(output: Path) -> tuple[dict, dict[str, bytes]]:
    """The manifest a `--run-id` run published and the files of the attempt folder it names."""
    manifest = json.loads((output / RUN_ID / "manifest.json").read_text(encoding="utf-8"))
    return manifest, output_files(Path(manifest["directory"]))


def assert_run_graph_writes_direct_files(inputs: list[str], tmp_path: Path, dataflow_graph, endpoints) -> None:
    args = ["run", "--input", *inputs, *RUN_OPTIONS, "--run-id", RUN_ID]
    assert main([*args, "--output", str(tmp_path / "direct")]) == 0
    run_portable(dataflow_graph([*args, "--output", str(tmp_path / "dataflow")]), endpoints)
    direct_manifest, direct_files = published(tmp_path / "direct")
    manifest, files = published(tmp_path / "dataflow")
    assert files == direct_files
    assert manifest["counts"] == direct_manifest["counts"]


def test_run_graph_on_the_synthetic_corpus(tmp_path, dataflow_graph, portable_endpoints):  # noqa: F811
    assert_run_graph_writes_direct_files(
        write_corpus(tmp_path / "corpus"), tmp_path, dataflow_graph, portable_endpoints
    )


def test_run_graph_on_alpaca(tmp_path, dataflow_graph, portable_endpoints):  # noqa: F811
    alpaca = require_shared(SHARED_DATA / "alpaca_en_demo.json")
    assert_run_graph_writes_direct_files([str(alpaca)], tmp_path, dataflow_graph, portable_endpoints)


def test_select_graph(tmp_path, dataflow_graph, portable_endpoints):  # noqa: F811
    pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")
    from tests.select.select_support import OWN_TEMPLATE, build_tiny_model, make_records, write_jsonl

    model = build_tiny_model(tmp_path / "model", OWN_TEMPLATE)
    records = write_jsonl(tmp_path / "input.jsonl", [*make_records(40), "{not json"])

    def args(name: str) -> list[str]:
        return [
            "select",
            "--input",
            str(records),
            "--model",
            str(model),
            "--max-tokens",
            "256",
            "--ratio",
            "0.2",
            "--output",
            str(tmp_path / name),
            "--cache",
            str(tmp_path / f"{name}-cache"),
        ]

    assert main(args("direct")) == 0
    run_portable(dataflow_graph(args("dataflow")), portable_endpoints)
    direct, dataflow = (output_files(tmp_path / name) for name in ("direct", "dataflow"))
    assert dataflow == direct and any(name.startswith("selected-") for name in direct)
    manifests = [
        json.loads((tmp_path / name / "manifest.json").read_text(encoding="utf-8")) for name in ("direct", "dataflow")
    ]
    assert manifests[0]["counts"] == manifests[1]["counts"]
