"""Assembly of the `mosaic-it run` pipeline and its manifest."""

from __future__ import annotations

import functools
from collections import Counter

import apache_beam as beam

from pipeline.options import field_map
from pipeline.ownership import OutputKind
from pipeline.runner import pack_processes, runs_in_one_process
from transforms.core.config import MosaicConfig
from transforms.core.dataset_card import CARD_FILES
from transforms.core.status import run_status
from transforms.dataset_card import WriteDatasetCard, written_by_this_tool
from transforms.formats import REJECTED_FORMAT, SAMPLE_FORMATS
from transforms.in_memory import MosaicInOneProcess
from transforms.manifest import (
    MOSAIC_TOOL,
    Stats,
    WriteManifest,
    file_names,
    limited_to,
    stats_table,
    token_summary,
    versions,
)
from transforms.mosaic import FILES, STATS, VALID, MosaicJob, MosaicSamples
from transforms.publish import ATTEMPT_PREFIX
from transforms.read import REJECTED
from transforms.write import WriteRejected

MOSAIC_OUTPUT = OutputKind(
    MOSAIC_TOOL,
    shard_prefixes=tuple(sorted({fmt.prefix for fmt in SAMPLE_FORMATS.values()} | {REJECTED_FORMAT.prefix})),
    extensions=tuple(sorted({fmt.extension for fmt in SAMPLE_FORMATS.values()})),
    cards=CARD_FILES,
    wrote_card=written_by_this_tool,
)
RUN_FOLDER_OUTPUT = OutputKind(MOSAIC_TOOL, folder_prefix=ATTEMPT_PREFIX)  # OUTPUT/RUN_ID with --run-id
_PACKAGES = ("mosaic-it-beam", "apache-beam", "transformers", "tokenizers", "fastavro", "quicktok-v1", "pyyaml")


def mosaic_manifest(
    stats: Stats,
    outputs: dict[str, list[str]],
    *,
    config: MosaicConfig,
    options: dict,
    inputs: list[str],
    directory: str,
) -> dict:
    """Everything about a run a later reader needs."""
    table = stats_table(stats)
    rejected = table.get("rejected", {})
    valid = stats.get(("input", "valid"), 0)
    records_read = valid + sum(rejected.values()) - rejected.get("duplicate_id", 0)
    samples = sum(table.get("samples", {}).values())
    return {
        "tool": MOSAIC_TOOL,
        "options": options,
        "tokenizer": config.tokenizer,
        "length_template": config.length_template,
        "rules_text": config.rules_text,
        "versions": versions(_PACKAGES),
        "inputs": inputs,
        "counts": {
            # Every epoch: records_per_epoch[epoch] + records_rejected == records_read.
            "records_read": records_read,
            "records_rejected": sum(rejected.values()),
            "records_per_epoch": table.get("records", {}),
            "samples": samples,
            "samples_per_epoch": table.get("samples", {}),
            "strategy": table.get("strategy", {}),
            "rule": table.get("rule", {}),
            "group_size": dict(sorted(table.get("group_size", {}).items(), key=lambda item: int(item[0]))),
            "tokens": token_summary(table.get("n_tokens", {})),
            "rejected": rejected,
            **limited_to(options),
        },
        "status": run_status(
            records_read=records_read,
            rejected=rejected,
            produced=samples,
            max_reject_ratio=options["max_reject_ratio"],
        ),
        "directory": directory,
        # File names within `directory` (the attempt folder of a run with --run-id).
        "outputs": {name: file_names(outputs[name]) for name in ("samples", "rejected", "card")},
    }


def build_mosaic_pipeline(
    pipeline: beam.Pipeline,
    config: MosaicConfig,
    inputs: list[str],
    output: str,
    formats: list[str],
    num_shards: int,
    options: dict,
):
    """Wires the whole run; returns the PCollection holding the manifest path.

    The in-memory runner gets the one-process plan, every other runner the plan for many
    workers: the same outputs either way.
    """
    job = MosaicJob(
        tuple(inputs),
        config,
        output,
        tuple(SAMPLE_FORMATS[name] for name in formats),
        num_shards,
        limit=options.get("limit", 0),
        fields=field_map(options),
    )
    plan: beam.PTransform
    if runs_in_one_process(pipeline.options):
        plan = MosaicInOneProcess(job, processes=pack_processes(pipeline.options, [*inputs, output]))
    else:
        plan = MosaicSamples(job)
    produced = pipeline | "Mosaic" >> plan

    rejected_files = produced[REJECTED] | "WriteRejected" >> WriteRejected(output)
    card_files = produced[FILES] | "WriteDatasetCard" >> WriteDatasetCard(output)
    counters = (
        produced[STATS],
        produced[REJECTED] | "RejectStats" >> beam.Map(lambda rejection: Counter({("rejected", rejection.reason): 1})),
        produced[VALID] | "ValidStats" >> beam.Map(lambda count: Counter({("input", "valid"): count})),
    ) | "AllStats" >> beam.Flatten()
    build = functools.partial(mosaic_manifest, config=config, options=options, inputs=inputs, directory=output)
    return counters | "WriteManifest" >> WriteManifest(
        output, build, {"samples": produced[FILES], "rejected": rejected_files, "card": card_files}
    )
