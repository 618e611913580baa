"""Running a pipeline while logging its progress at a steady pace: counts and rates, and a share done
once the total is counted, never guessed."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineResult, PipelineState

from pipeline.runner import LaunchOptions, runs_in_one_process, where_to_watch
from transforms.progress import (
    CACHE_HITS,
    COUNTERS,
    NAMESPACE,
    PROGRESS_DIR_ENV,
    RECORD_EPOCHS_PACKED,
    RECORD_EPOCHS_PLANNED,
    RECORDS_SCORED,
    RECORDS_TO_SCORE,
    ROUNDS_ORDERED,
    TALLY,
    ProgressCounter,
)

LOGGER = logging.getLogger("mosaic_it.progress")
LOCAL_EVERY_S = 10.0
REMOTE_EVERY_S = 30.0


def configure_logging() -> None:
    """Progress lines go to stderr even when the rest of the logging is quiet."""
    if not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def _clock(seconds: float) -> str:
    minutes, whole = divmod(int(seconds), 60)
    return f"{minutes}:{whole:02d}"


def _share(
    done: ProgressCounter, total: ProgressCounter, unit: str, counts: Counter, previous: Counter, interval_s: float
) -> str:
    """`45% of 4,000 record-epochs ETA 0:32`, where the rate of `done` since the last line estimates what is left."""
    planned, now = counts.get(total.name, 0), counts.get(done.name, 0)
    rate = (now - previous.get(done.name, 0)) / interval_s if interval_s > 0 else 0.0
    eta = f" ETA {_clock((planned - now) / rate)}" if rate > 0 and now < planned else ""
    return f"{now / planned:.0%} of {planned:,} {unit}{eta}"


def _phase(counts: Counter, previous: Counter, interval_s: float) -> str:
    """`reading` until the total work is counted. Then a run is `packing 45% of ... ETA 0:32`; a select
    round is `scoring 45% of ... ETA 0:32` (the records the model scores once the window is matched
    with the cache), `selecting` once they are scored, and `writing` once the round is ordered."""
    if counts.get(ROUNDS_ORDERED.name, 0):
        return "writing"
    if counts.get(RECORDS_TO_SCORE.name, 0) or counts.get(CACHE_HITS.name, 0):
        if counts.get(RECORDS_SCORED.name, 0) >= counts.get(RECORDS_TO_SCORE.name, 0):
            return "selecting"
        return f"scoring {_share(RECORDS_SCORED, RECORDS_TO_SCORE, 'records', counts, previous, interval_s)}"
    if counts.get(RECORD_EPOCHS_PLANNED.name, 0):
        return f"packing {_share(RECORD_EPOCHS_PACKED, RECORD_EPOCHS_PLANNED, 'record-epochs', counts, previous, interval_s)}"
    return "reading"


def progress_line(elapsed_s: float, counts: Counter, previous: Counter, interval_s: float) -> str:
    """`progress 1:05  reading  read 120,000 (2,857/s)  ...`: the phase, then what has been counted so far,
    with its rate since the last line."""
    parts = [f"progress {_clock(elapsed_s)}", _phase(counts, previous, interval_s)]
    for counter in COUNTERS:
        now = counts.get(counter.name, 0)
        if now:
            rate = (now - previous.get(counter.name, 0)) / interval_s if interval_s > 0 else 0.0
            parts.append(f"{counter.label} {now:,} ({rate:,.0f}/s)")
    return "  ".join(parts)


class _Pacer(threading.Thread):
    """Logs a progress line every `every_s` seconds from `read_counts`, once anything has been counted."""

    def __init__(self, read_counts: Callable[[], Counter], every_s: float):
        super().__init__(daemon=True)
        self.read_counts, self.every_s = read_counts, every_s
        self.stopped = threading.Event()

    def run(self):
        start = last_time = time.monotonic()
        previous: Counter = Counter()
        while not self.stopped.wait(self.every_s):
            try:
                counts = self.read_counts()
            except Exception as err:  # a runner's metrics service can fail; the job goes on
                LOGGER.warning("progress unavailable: %s", err)
                continue
            now = time.monotonic()
            if any(counts.values()):
                LOGGER.info(progress_line(now - start, counts, previous, now - last_time))
            previous, last_time = counts, now

    @contextmanager
    def running(self) -> Iterator[None]:
        self.start()
        try:
            yield
        finally:
            self.stopped.set()
            self.join()


@contextmanager
def _local_progress(every_s: float, workers_publish: bool) -> Iterator[None]:
    """Watches the tally of this process plus, where `workers_publish`, what the worker processes of a
    local run publish to a folder in the system temp folder (made only then: a killed run leaves it)."""
    TALLY.watched_here = True
    baseline = TALLY.snapshot()
    directory = tempfile.mkdtemp(prefix="mosaic-it-progress-") if workers_publish else None
    saved = os.environ.get(PROGRESS_DIR_ENV)
    if directory:
        os.environ[PROGRESS_DIR_ENV] = directory  # inherited by multi-processing workers

    def read_counts() -> Counter:
        counts = TALLY.snapshot()
        counts.subtract(baseline)
        for path in _published(directory):
            with open(path) as handle:
                counts.update(json.load(handle))
        return counts

    try:
        with _Pacer(read_counts, every_s).running():
            yield
    finally:
        if directory:
            if saved is None:
                del os.environ[PROGRESS_DIR_ENV]
            else:
                os.environ[PROGRESS_DIR_ENV] = saved
            shutil.rmtree(directory, ignore_errors=True)


def _published(directory: str | None) -> list[str]:
    """The tallies the workers published to the progress folder."""
    if directory is None:
        return []
    return [os.path.join(directory, name) for name in os.listdir(directory) if name.endswith(".json")]


def metric_counts(result: PipelineResult) -> Counter:
    """The `mosaic-it` counters of a running job, summed over steps (committed where the runner has them)."""
    counts: Counter = Counter()
    for metric in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = metric.committed if metric.committed is not None else metric.attempted
        counts[metric.key.metric.name] += value or 0
    return counts


def run_with_progress(
    pipeline: beam.Pipeline, local_every_s: float = LOCAL_EVERY_S, remote_every_s: float = REMOTE_EVERY_S
) -> PipelineResult:
    """Runs `pipeline` to the end, logging progress lines; raises if the job fails.

    A local runner returns from `run()` only at the end, so its DoFns' tally is watched
    meanwhile. A remote runner returns once the job is submitted: then the log says where
    to watch it, and the job's Beam metrics are polled until it ends.
    """
    if pipeline.options.view_as(LaunchOptions).quiet:
        result = pipeline.run()
        result.wait_until_finish()
        return result
    with _local_progress(local_every_s, workers_publish=not runs_in_one_process(pipeline.options)):
        result = pipeline.run()
    if PipelineState.is_terminal(result.state):
        result.wait_until_finish()
        return result
    LOGGER.info(where_to_watch(result, pipeline.options))
    with _Pacer(lambda: metric_counts(result), remote_every_s).running():
        result.wait_until_finish()
    return result
