"""Progress lines while a pipeline runs: local tally (in-memory and multi-processing) and remote metrics."""

import itertools
import json
import logging
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from pipeline import progress
from pipeline.mosaic import build_mosaic_pipeline
from pipeline.options import MosaicOptions, own_option_values

SHARED = Path(__file__).parents[1] / "../shared"
ALPACA = SHARED / "data/alpaca_en_demo.json"
SHARE = r"\d+% of [\d,]+ (record-epochs|records)( ETA \d+:\d\d)?"
PHASE = rf"(reading|packing {SHARE}|scoring {SHARE}|selecting|writing)"
LINE = re.compile(rf"progress \d+:\d\d  {PHASE}(  [a-z]+ [\d,]+ \([\d,]+/s\))+$")
LABELS = ("read", "tokenized", "samples", "rejected")


def _progress_counts(caplog) -> list[tuple[int, ...]]:
    """(read, tokenized, samples, rejected) of each progress line."""
    lines = [record.getMessage() for record in caplog.records if record.name == progress.LOGGER.name]
    assert all(LINE.match(line) for line in lines), lines
    counts = [dict(re.findall(r"  ([a-z]+) ([\d,]+) \(", line)) for line in lines]
    return [tuple(int(line.get(label, "0").replace(",", "")) for label in LABELS) for line in counts]


def test_progress_line_shows_what_was_counted_and_its_rate_since_the_last_line():
    line = progress.progress_line(65.0, Counter(records_read=3000, samples_packed=10), Counter(records_read=1000), 2.0)
    assert line == "progress 1:05  reading  read 3,000 (1,000/s)  samples 10 (5/s)"


def test_once_the_records_are_counted_the_line_shows_the_share_packed_and_what_is_left():
    now = Counter(records_read=1000, record_epochs_planned=4000, record_epochs_packed=1000)
    line = progress.progress_line(30.0, now, Counter(record_epochs_planned=4000, record_epochs_packed=500), 10.0)
    # 500 record-epochs in 10 s: the 3,000 left take 60 s.
    assert line == "progress 0:30  packing 25% of 4,000 record-epochs ETA 1:00  read 1,000 (100/s)"


def test_a_select_round_shows_the_share_of_its_records_scored_its_cache_hits_and_tokens_per_second():
    matched = Counter(records_read=1000, records_to_score=400, cache_hits=600)
    now = matched + Counter(records_scored=200, tokens_scored=50_000)
    line = progress.progress_line(20.0, now, matched + Counter(records_scored=100, tokens_scored=25_000), 10.0)
    # 100 records in 10 s: the 200 left take 20 s.
    assert line == (
        "progress 0:20  scoring 50% of 400 records ETA 0:20  read 1,000 (0/s)  scored 200 (10/s)  "
        "cached 600 (0/s)  tokens 50,000 (2,500/s)"
    )
    done = now + Counter(records_scored=200)
    assert progress.progress_line(30.0, done, now, 10.0).split("  ")[1] == "selecting"
    assert progress.progress_line(40.0, done + Counter(rounds_ordered=1), done, 10.0).split("  ")[1] == "writing"


@pytest.mark.skipif(not ALPACA.exists(), reason="needs ../shared/data (the project's shared test data)")
def test_quiet_runs_log_no_progress(tmp_path, caplog):
    pipeline = _mosaic_pipeline(tmp_path, "--epochs=1", "--quiet")
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        progress.run_with_progress(pipeline, local_every_s=0.01)
    assert not [record for record in caplog.records if record.name == progress.LOGGER.name]
    assert (tmp_path / "manifest.json").exists()


@pytest.mark.skipif(not ALPACA.exists(), reason="needs ../shared/data (the project's shared test data)")
def test_an_in_memory_run_logs_growing_counts_that_end_at_the_manifest_numbers(tmp_path, caplog):
    pipeline = _mosaic_pipeline(tmp_path, "--epochs=4")  # long enough for several reports, however fast
    before = progress.TALLY.snapshot()
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        progress.run_with_progress(pipeline, local_every_s=0.005)
    counts = _progress_counts(caplog)
    assert len(counts) >= 3
    assert all(later >= earlier for earlier, later in itertools.pairwise(counts))  # counts never go back
    manifest = json.loads((tmp_path / "manifest.json").read_text())["counts"]
    tally = progress.TALLY.snapshot()
    tally.subtract(before)
    assert (tally["records_read"], tally["records_tokenized"], tally["samples_packed"], tally["records_rejected"]) == (
        manifest["records_read"],
        manifest["records_read"],
        manifest["samples"],
        manifest["records_rejected"],
    )
    assert max(line[0] for line in counts) <= manifest["records_read"]
    packed = sum(manifest["records_per_epoch"].values())
    assert tally["record_epochs_planned"] == tally["record_epochs_packed"] == packed


def _mosaic_pipeline(tmp_path, *flags) -> beam.Pipeline:
    options = MosaicOptions([f"--input={ALPACA}", f"--output={tmp_path}", *flags])
    pipeline = beam.Pipeline(options=options)
    own = own_option_values(options, MosaicOptions)
    build_mosaic_pipeline(pipeline, options.config(), [str(ALPACA)], str(tmp_path), ["jsonl"], 0, own)
    return pipeline


@pytest.mark.skipif(not ALPACA.exists(), reason="needs ../shared/data (the project's shared test data)")
def test_multi_processing_workers_publish_their_counts_to_the_driver(tmp_path, caplog, monkeypatch):
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    monkeypatch.setattr(progress.tempfile, "tempdir", str(own_tmp))  # other runs on the machine share /tmp
    pipeline = _mosaic_pipeline(
        tmp_path, "--epochs=8", "--direct_running_mode=multi_processing", "--direct_num_workers=2"
    )
    before = progress.TALLY.snapshot()
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        progress.run_with_progress(pipeline, local_every_s=0.2)
    assert progress.TALLY.snapshot() == before  # the DoFns ran in the worker processes...
    counts = _progress_counts(caplog)
    records_read = json.loads((tmp_path / "manifest.json").read_text())["counts"]["records_read"]
    assert counts and 0 < max(read for read, *_ in counts) <= records_read  # ...and the driver saw their counts
    assert not list(own_tmp.glob("mosaic-it-progress-*"))  # the folder is removed


class _RemoteResult:
    """A job on a remote runner: running for a few polls, then done."""

    def __init__(self):
        self.polls = 0
        self._state = PipelineState.RUNNING

    @property
    def state(self):
        return self._state

    def job_id(self):
        return "2026-01-01_00_00_00-123"

    def metrics(self):
        self.polls += 1
        if self.polls >= 3:
            self._state = PipelineState.DONE
        value = 1000 * self.polls

        class _Key:
            class metric:
                name = "records_read"

        class _Result:
            key, committed, attempted = _Key, value, value

        class _Metrics:
            def query(self, _filter):
                return {"counters": [_Result]}

        return _Metrics()

    def wait_until_finish(self, duration=None):
        import time

        while self._state == PipelineState.RUNNING:
            time.sleep(0.01)
        return self._state


class _SubmittingPipeline:
    def __init__(self, options):
        self.options = options
        self.result = _RemoteResult()

    def run(self):
        return self.result


def test_a_remote_run_says_where_to_watch_and_polls_its_metrics(caplog):
    options = PipelineOptions(["--runner=DataflowRunner", "--project=demo", "--region=europe-west1"])
    pipeline = _SubmittingPipeline(options)
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        progress.run_with_progress(pipeline, remote_every_s=0.01)
    messages = [record.getMessage() for record in caplog.records if record.name == progress.LOGGER.name]
    assert messages[0] == (
        "Dataflow job 2026-01-01_00_00_00-123: "
        "https://console.cloud.google.com/dataflow/jobs/europe-west1/2026-01-01_00_00_00-123?project=demo"
    )
    assert any(message.startswith("progress ") and "read 1,000 (" in message for message in messages[1:])


def test_a_select_run_logs_its_phases_in_order_with_the_share_scored_and_the_cache_hits(tmp_path, caplog):
    """Most records' scores are in the cache; the micro-batches holding one of the others are scored."""
    pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")
    from pipeline.iterit import build_select_pipeline
    from pipeline.runner import new_pipeline
    from pipeline.select_launch import prepare
    from pipeline.select_options import SelectOptions
    from tests.select.select_support import OWN_TEMPLATE, build_tiny_model, make_records, write_jsonl
    from transforms.core.records import Record
    from transforms.score_cache import CachedLosses, entry_line, file_name

    rows = make_records(24)
    model = build_tiny_model(tmp_path / "model", OWN_TEMPLATE)
    argv = [f"--input={write_jsonl(tmp_path / 'input.jsonl', rows)}", f"--output={tmp_path / 'out'}"]
    options, launch = prepare([*argv, f"--model={model}", "--max-tokens=256", f"--cache={tmp_path / 'cache'}"])
    keys = [launch.config.identity.key(Record(r["id"], r["instruction"], r["input"], r["output"], "")) for r in rows]
    data = "".join(entry_line(key, CachedLosses(1.0, 1.5, 3)) for i, key in enumerate(keys) if i % 6).encode()
    cache = tmp_path / "cache" / file_name(data)
    cache.parent.mkdir()
    cache.write_bytes(data)
    pipeline = new_pipeline(options)
    build_select_pipeline(
        pipeline, replace(launch, cache_files=[str(cache)]), own_option_values(options, SelectOptions)
    )
    before = progress.TALLY.snapshot()
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        progress.run_with_progress(pipeline, local_every_s=0.02)
    lines = [record.getMessage() for record in caplog.records if record.name == progress.LOGGER.name]
    assert all(LINE.match(line) for line in lines), lines
    scores = json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["scores"]
    assert scores["computed"] > 0 and scores["cached"] > 0
    tally = progress.TALLY.snapshot()
    tally.subtract(before)
    assert (tally["records_to_score"], tally["records_scored"], tally["cache_hits"]) == (
        scores["computed"],
        scores["computed"],
        scores["cached"],
    )
    phases = [line.split("  ")[1].split()[0] for line in lines]
    order = ["reading", "scoring", "selecting", "writing"]
    assert [order.index(phase) for phase in phases] == sorted(order.index(phase) for phase in phases)
    assert any(f"of {scores['computed']} records" in line for line in lines)  # the share scored, as it ran
    assert any(f"cached {scores['cached']} (" in line for line in lines)
