"""Airflow DAG: one Mosaic-IT run a day on Dataflow (or on the Flink cluster of deploy/flink/).

Each run is published as OUTPUT/<logical date>/ with its manifest written last, so a downstream DAG
waits for OUTPUT/<logical date>/manifest.json (e.g. with GCSObjectExistenceSensor). A run uses the
epochs [days since FIRST_RUN_DATE x EPOCHS, + EPOCHS): fresh mosaics every day, while a retry or a
cleared task reproduces its date exactly and replaces that date's folder in one step.

The Airflow worker needs the apache-beam provider (and the google provider for Dataflow); the task
installs the project into its own virtualenv from PACKAGE (py_requirements).
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

# Edit these for your project.
PROJECT = "your-project"
REGION = "us-central1"
BUCKET = "your-bucket"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/mosaic/mosaic-it:0.1.0"  # built from deploy/Dockerfile
PACKAGE = "mosaic-it-beam[gcp]==0.1.0"  # from your package index; the same version as IMAGE
INPUT = f"gs://{BUCKET}/corpus/*.jsonl"
OUTPUT = f"gs://{BUCKET}/mosaic"
EPOCHS = 4
FIRST_RUN_DATE = date(2025, 1, 1)
RUNNER = "DataflowRunner"  # or "PortableRunner": the Flink job server of deploy/flink/flink-deployment.yaml

# Pipeline options of each runner (worker sizing for 1M-10M records: deploy/README.md, "Sizing").
RUNNER_OPTIONS = {
    "DataflowRunner": {
        "temp_location": f"gs://{BUCKET}/tmp",
        "sdk_container_image": IMAGE,
        "machine_type": "n2-standard-4",
        "max_num_workers": 32,
        "disk_size_gb": 50,
    },
    "PortableRunner": {
        "job_endpoint": "beam-flink-job-server.mosaic.svc:8099",
        "artifact_endpoint": "beam-flink-job-server.mosaic.svc:8098",
        "environment_type": "EXTERNAL",
        "environment_config": "localhost:50000",
        "sdk_worker_parallelism": 4,
        "parallelism": 16,
    },
}


def epoch_offset(ds: str) -> int:
    """The first epoch of the run of logical date `ds` (YYYY-MM-DD): each day advances EPOCHS epochs."""
    return (date.fromisoformat(ds) - FIRST_RUN_DATE).days * EPOCHS


with DAG(
    dag_id="mosaic_it_daily",
    schedule="0 2 * * *",
    start_date=datetime(2025, 1, 2, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # runs never overlap
    user_defined_macros={"epoch_offset": epoch_offset},
    tags=["mosaic-it"],
):
    BeamRunPythonPipelineOperator(
        task_id="mosaic_it_run",
        runner=RUNNER,
        py_file="pipeline.launch",  # `python -m pipeline.launch OPTIONS` = `mosaic-it run OPTIONS`
        py_options=["-m"],
        py_requirements=[PACKAGE],
        py_interpreter="python3",
        py_system_site_packages=False,
        pipeline_options={
            "input": INPUT,
            "output": OUTPUT,
            "run_id": "{{ ds }}",
            "epochs": EPOCHS,
            "epoch_offset": "{{ epoch_offset(ds) }}",
            "seed": 0,
            **RUNNER_OPTIONS[RUNNER],
        },
        dataflow_config=DataflowConfiguration(
            job_name="mosaic-it-{{ ds_nodash }}", project_id=PROJECT, location=REGION, wait_until_finished=True
        )
        if RUNNER == "DataflowRunner"
        else None,
        retries=2,  # a retry keeps the logical date: a fresh attempt replaces the failed one
    )
