"""What the project knows of runners: the pipeline object of a command on the runner its
options name, the one-process plan of the in-memory runner, and Dataflow's ways of only
describing a job or being watched elsewhere."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.runners import DataflowRunner
from apache_beam.runners.runner import PipelineResult

from pipeline.flags import add_flag
from transforms.forked import available_cpus

_DIRECT_NAMES = {None, "direct", "directrunner"}


# The default's ceiling: each helper adds memory, and the driver's serial steps bound what more helpers gain.
DEFAULT_MAX_PROCESSES = 8


class LaunchOptions(PipelineOptions):
    """Options of how a run is carried out and shown; they never change what it writes, so the
    manifest's `options` leave them out."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_flag(
            parser,
            "pack-processes",
            type=int,
            default=0,
            help="In-memory DirectRunner: processes that read, measure and pack, this one and helpers forked from it "
            f"(0: one per CPU this process may use, at most {DEFAULT_MAX_PROCESSES}). Other runners use their own "
            "workers.",
        )
        add_flag(parser, "quiet", action="store_true", help="No progress lines while the job runs.")


def pack_processes(options: PipelineOptions, paths: Sequence[str]) -> int:
    """How many processes read, measure and pack on the in-memory runner. One while any of
    `paths` (inputs, output) is on a remote filesystem: a forked helper would share its
    parent's client connections (a GCS client is not fork-safe)."""
    if not all(_is_local(path) for path in paths):
        return 1
    return options.view_as(LaunchOptions).pack_processes or min(available_cpus(), DEFAULT_MAX_PROCESSES)


def _is_local(path: str) -> bool:
    try:
        return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)
    except ValueError:  # a scheme whose filesystem is not installed
        return False


def runs_locally(options: PipelineOptions) -> bool:
    """True when the options name no runner, or the DirectRunner."""
    runner = options.view_as(StandardOptions).runner
    return (runner.lower() if isinstance(runner, str) else runner) in _DIRECT_NAMES


def runs_in_one_process(options: PipelineOptions) -> bool:
    """True for the in-memory FnApiRunner, which runs every bundle in the driver, one at a time."""
    return runs_locally(options) and options.view_as(DirectOptions).direct_running_mode == "in_memory"


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the runner the options name. With none named, or the DirectRunner, it
    runs on the DirectRunner's FnApiRunner (in memory, or `multi_processing`) straight away:
    Beam's DirectRunner would first try to download and start the Prism runner, which
    costs a network round trip on every run and, where it succeeds, runs the job on an
    engine this project's determinism tests do not cover.

    Beam makes a folder in the system temp folder for every pipeline and removes it when run()
    returns; only cross-language transforms use it, and this project has none, so it is removed at
    once: a killed run leaves nothing there."""
    if runs_locally(options):
        pipeline = beam.Pipeline(runner=_fn_api_runner(options), options=options)
    else:
        pipeline = beam.Pipeline(options=options)
    shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
    return pipeline


def _fn_api_runner(options: PipelineOptions):
    """The runner Beam's DirectRunner picks after Prism, built as it builds it."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(
        provision_info=fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    )


def describes_only(pipeline: beam.Pipeline) -> bool:
    """True when the runner only describes the job: a Dataflow template launch (a Flex Template passes
    --template_location; the job runs later, on Dataflow) or a Dataflow dry run."""
    options = pipeline.options
    return isinstance(pipeline.runner, DataflowRunner) and bool(
        options.view_as(GoogleCloudOptions).template_location or options.view_as(TestOptions).dry_run
    )


def where_to_watch(result: PipelineResult, options: PipelineOptions) -> str:
    runner = str(options.view_as(StandardOptions).runner or "the runner")
    job_id = result.job_id() if hasattr(result, "job_id") else None
    cloud = options.view_as(GoogleCloudOptions)
    if job_id and "dataflow" in runner.lower() and cloud.project and cloud.region:
        return f"Dataflow job {job_id}: https://console.cloud.google.com/dataflow/jobs/{cloud.region}/{job_id}?project={cloud.project}"
    return f"job {job_id or '(no id)'} submitted to {runner}; watch it in that runner's console"
