"""The job DataflowRunner would submit, built here with `--dry_run=True --no_auth` (needs `.[gcp]`)."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "apache_beam.runners.dataflow.internal.apiclient", reason="the gcp extra is not installed (pip install '.[gcp]')"
)

from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.cli import start
from tests.corpus import write_corpus

IMAGE = "us-central1-docker.pkg.dev/my-project/mosaic/mosaic-it:2025-03-01"
STAGES = {"Mosaic", "WriteRejected", "AllStats", "WriteManifest", "PublishRun"}
# Dataflow gets the plan for many workers: files spread over them, rows grouped by output shard.
SPREAD_PLAN = {
    "Mosaic/ReadAndMeasure/Read",
    "Mosaic/ReadAndMeasure/Measure",
    "Mosaic/CountValid",
    "Mosaic/Pack/AssignShards",
    "Mosaic/Pack/GroupByShard",
    "Mosaic/Pack/PackShards",
    "Mosaic/Write",
}


def test_the_dataflow_job_holds_every_stage_and_runs_in_the_project_image(tmp_path):
    started = start(
        [
            "--input",
            *write_corpus(tmp_path / "corpus"),
            "--output",
            "gs://my-bucket/mosaic",
            "--run-id",
            "2025-03-01",
            "--runner=DataflowRunner",
            "--project=my-project",
            "--region=us-central1",
            "--temp_location=gs://my-bucket/tmp",
            "--sdk_container_image=" + IMAGE,
            "--dry_run=True",
            "--no_auth",
        ]
    )
    assert not started.ran
    assert started.manifest == "gs://my-bucket/mosaic/2025-03-01/manifest.json"

    components = started.result.job.proto_pipeline.components
    names = {transform.unique_name for transform in components.transforms.values()}
    assert {name for name in names if "/" not in name} >= STAGES
    assert names >= SPREAD_PLAN and "Mosaic/ReadPackWrite" not in names
    images = {
        beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image
        for environment in components.environments.values()
        if environment.urn == common_urns.environments.DOCKER.urn
    }
    assert images == {IMAGE}
