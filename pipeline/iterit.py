"""`mosaic-it select`: assembly of one IterIT round and its manifest."""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.errors import exit_code
from pipeline.options import field_map, own_option_values
from pipeline.ownership import OutputKind, check_no_overlap, claimed_output
from pipeline.progress import run_with_progress
from pipeline.recipes import apply_recipe
from pipeline.runner import new_pipeline
from pipeline.select_launch import Launch, prepare
from pipeline.select_options import SelectOptions
from reporting.report import select_summary
from transforms.core.selection import RoundOrder
from transforms.core.status import run_status
from transforms.formats import REJECTED_FORMAT, SCORES_FORMAT, SELECTED_FORMAT
from transforms.manifest import (
    MANIFEST,
    SELECT_TOOL,
    Stats,
    WriteManifest,
    limited_to,
    read_manifest_at,
    stats_table,
    versions,
)
from transforms.read import RECORDS, REJECTED, ReadRecords
from transforms.score_cache import ReadScoreCache, WriteScoreCache
from transforms.select import (
    KEPT,
    MISSING,
    NEW_CACHE,
    WINDOW,
    MatchPrevious,
    ScoreCandidates,
    for_ordering,
    order_round,
)
from transforms.write import ORDER_FILE, WriteOrderFile, WriteRejected, WriteScores, WriteSelected

SELECT_OUTPUT = OutputKind(
    SELECT_TOOL,
    shard_prefixes=(SCORES_FORMAT.prefix, SELECTED_FORMAT.prefix, REJECTED_FORMAT.prefix),
    extensions=("jsonl",),
    names=(ORDER_FILE,),
)
_PACKAGES = ("mosaic-it-beam", "apache-beam", "transformers", "tokenizers", "torch", "numpy", "scipy")


def _order_stats(order: RoundOrder) -> Counter:
    return Counter(
        {
            ("order", "records"): len(order.rows),
            ("order", "window"): order.window,
            ("order", "candidates"): order.candidates,
            ("order", "k"): order.k,
            ("order", "selected"): order.selected,
        }
    )


def select_manifest(stats: Stats, outputs: dict[str, list[str]], *, launch: Launch, options: dict) -> dict:
    """Everything about a round a later reader (or round) needs."""
    table = stats_table(stats)
    rejected = table.get("rejected", {})
    order = table.get("order", {})
    scores = table.get("scores", {})
    config = launch.config
    records_read = sum(table.get("input", {}).values())
    return {
        "tool": SELECT_TOOL,
        "round": config.round,
        "options": options,
        "model": {"name": config.model, "revision": config.model_revision, "identity": config.identity.model},
        "tokenizer": {
            "name": config.tokenizer,
            "revision": config.tokenizer_revision,
            "identity": config.identity.tokenizer,
        },
        "prompt_template_sha": hashlib.sha256(config.identity.template.encode("utf-8")).hexdigest(),
        "device": config.device,
        "dtype": config.identity.dtype,
        "previous": launch.previous,
        "versions": versions(_PACKAGES),
        "inputs": launch.inputs,
        "counts": {
            # records_read == order + records_rejected (a record of the input is ordered or rejected).
            "records_read": records_read,
            "records_rejected": sum(rejected.values()),
            "rejected": rejected,
            "order": order.get("records", 0),
            "window": order.get("window", 0),
            "candidates": order.get("candidates", 0),
            "k": order.get("k", 0),
            "selected": order.get("selected", 0),
            "scores": {
                "computed": scores.get("computed", 0),
                "cached": scores.get("cached", 0),
                "kept": scores.get("kept", 0),
            },
            "previous_missing": table.get("previous", {}).get("missing", 0),
            **limited_to(options),
        },
        "status": run_status(
            records_read=records_read,
            rejected=rejected,
            produced=order.get("records", 0),
            max_reject_ratio=options["max_reject_ratio"],
        ),
        "cache": {
            "directory": launch.cache_directory,
            "files_read": len(launch.cache_files),
            "files_damaged": table.get("cache", {}).get("files_damaged", 0),
            "entries_rejected": table.get("cache", {}).get("entries_rejected", 0),
            "files_written": sorted(outputs["cache"]),
        },
        "outputs": {
            "order": outputs["order"][0],
            **{name: sorted(outputs[name]) for name in ("scores", "selected", "rejected")},
        },
    }


def _read_previous(pipeline: beam.Pipeline, previous: str | None):
    """The previous round's order rows; none in round 0."""
    if not previous:
        return pipeline | "NoPrevious" >> beam.Create([])
    return (
        pipeline
        | "ReadPrevious" >> beam.io.ReadFromText(FileSystems.join(previous, ORDER_FILE))
        | "ParsePrevious" >> beam.Map(json.loads)
    )


def build_select_pipeline(pipeline: beam.Pipeline, launch: Launch, options: dict):
    """Wires one round; returns the PCollection holding the manifest path."""
    read = pipeline | "Read" >> ReadRecords(launch.inputs, options.get("limit", 0), field_map(options))
    previous = _read_previous(pipeline, launch.previous)
    matched = (read[RECORDS], previous) | "MatchPrevious" >> MatchPrevious(launch.window)
    cache, cache_stats = pipeline | "ReadCache" >> ReadScoreCache(launch.cache_files, with_stats=True)
    scoring = matched[WINDOW] | "Score" >> ScoreCandidates(launch.config, cache)
    kept = matched[KEPT] | "GatherKept" >> beam.combiners.ToList()
    order = (
        scoring["scored"]
        | "ForOrdering" >> beam.Map(for_ordering)
        | "GatherWindow" >> beam.combiners.ToList()
        | "OrderRound" >> beam.Map(order_round, beam.pvalue.AsSingleton(kept), launch.settings)
    )

    rejected = (read[REJECTED], matched[REJECTED], scoring[REJECTED]) | "AllRejected" >> beam.Flatten()
    written = {
        "order": order | "WriteOrder" >> beam.ParDo(WriteOrderFile(launch.output)),
        "scores": order | "WriteScores" >> WriteScores(launch.output),
        "selected": matched[WINDOW] | "WriteSelected" >> WriteSelected(launch.output, order),
        "rejected": rejected | "WriteRejected" >> WriteRejected(launch.output),
        "cache": (
            scoring[NEW_CACHE] | "WriteCache" >> WriteScoreCache(launch.cache_directory)
            if launch.cache_directory
            else pipeline | "NoCache" >> beam.Create([])
        ),
    }
    counters = (
        read[RECORDS] | "RecordStats" >> beam.Map(lambda _: Counter({("input", "records"): 1})),
        read[REJECTED] | "UnreadableStats" >> beam.Map(lambda _: Counter({("input", "unreadable"): 1})),
        rejected | "RejectStats" >> beam.Map(lambda rejection: Counter({("rejected", rejection.reason): 1})),
        scoring["scored"] | "ScoreStats" >> beam.Map(lambda item: Counter({("scores", item.source): 1})),
        matched[KEPT] | "KeptStats" >> beam.Map(lambda _: Counter({("scores", "kept"): 1})),
        matched[MISSING] | "MissingStats" >> beam.Map(lambda _: Counter({("previous", "missing"): 1})),
        order | "OrderStats" >> beam.Map(_order_stats),
        cache_stats,
    ) | "AllStats" >> beam.Flatten()
    build = functools.partial(select_manifest, launch=launch, options=options)
    return counters | "WriteManifest" >> WriteManifest(launch.output, build, written)


def run_select(argv: Sequence[str]) -> dict:
    """Runs one selection round to completion; returns its manifest."""
    options, launch = prepare(argv)
    check_no_overlap(launch.output, options.input, launch.inputs, SELECT_OUTPUT)
    if launch.cache_directory and not FileSystems.exists(launch.cache_directory):
        FileSystems.mkdirs(launch.cache_directory)
    with claimed_output(launch.output, SELECT_OUTPUT):
        pipeline = new_pipeline(options)
        build_select_pipeline(pipeline, launch, own_option_values(options, SelectOptions))
        run_with_progress(pipeline)
    return read_manifest_at(FileSystems.join(launch.output, MANIFEST))


def select_command(argv: Sequence[str]) -> int:
    flags = apply_recipe(argv, SelectOptions)
    if flags is None:  # --print-config
        return 0
    document = run_select(flags)
    print(select_summary(document["options"]["output"]))
    return exit_code(document)
