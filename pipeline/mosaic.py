"""Assembly of the `mosaic-it run` pipeline and its manifest."""

from __future__ import annotations

import bisect
import itertools
import json
import math
import platform
from collections import Counter
from collections.abc import Iterable, Mapping
from importlib import metadata

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils import shared

from pipeline.runner import pack_processes, runs_in_one_process
from transforms.mosaic import STATS, MosaicConfig, MosaicShards, ReadAndMeasure, keys_per_epoch
from transforms.read import REJECTED
from transforms.write import SAMPLE_FORMATS, WriteRejected, write_atomically

KEYS_PER_SHARD = 8  # default sharding: one output shard per 8 (epoch, key) packing keys
_PACKAGES = ("mosaic-it-beam", "apache-beam", "transformers", "tokenizers", "fastavro", "quicktok-v1", "pyyaml")


def default_num_shards(total_keys: int) -> int:
    return max(1, math.ceil(total_keys / KEYS_PER_SHARD))


class SumCounters(beam.CombineFn):
    def create_accumulator(self):
        return Counter()

    def add_input(self, accumulator, element):
        accumulator.update(element)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = Counter()
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator):
        return dict(accumulator)


def token_summary(histogram: Mapping[str, int]) -> dict[str, int]:
    """Total, smallest, median, 90th percentile (nearest rank) and largest `n_tokens` of a histogram."""
    ordered = sorted((int(n_tokens), count) for n_tokens, count in histogram.items() if count)
    if not ordered:
        return {}
    cumulative = list(itertools.accumulate(count for _, count in ordered))

    def percentile(fraction: float) -> int:
        return ordered[bisect.bisect_left(cumulative, max(1, math.ceil(fraction * cumulative[-1])))][0]

    total = sum(n_tokens * count for n_tokens, count in ordered)
    return {"total": total, "min": ordered[0][0], "p50": percentile(0.5), "p90": percentile(0.9), "max": ordered[-1][0]}


def manifest(
    stats: dict, config: MosaicConfig, options: dict, inputs: list[str], directory: str, outputs: dict[str, list[str]]
) -> dict:
    """Everything about a run a later reader needs, without timestamps (so reruns compare equal)."""
    table: dict[str, dict[str, int]] = {}
    for (section, name), value in sorted(stats.items()):
        table.setdefault(section, {})[name] = value
    rejected = table.get("rejected", {})
    valid = stats.get(("input", "valid"), 0)
    return {
        "tool": "mosaic-it run",
        "options": options,
        "tokenizer": config.tokenizer,
        "length_template": config.length_template,
        "rules_text": config.rules_text,
        "versions": versions(_PACKAGES),
        "inputs": inputs,
        "counts": {
            # Every epoch: records_per_epoch[epoch] + records_rejected == records_read.
            "records_read": valid + sum(rejected.values()) - rejected.get("duplicate_id", 0),
            "records_rejected": sum(rejected.values()),
            "records_per_epoch": table.get("records", {}),
            "samples": sum(table.get("samples", {}).values()),
            "samples_per_epoch": table.get("samples", {}),
            "strategy": table.get("strategy", {}),
            "rule": table.get("rule", {}),
            "group_size": dict(sorted(table.get("group_size", {}).items(), key=lambda item: int(item[0]))),
            "tokens": token_summary(table.get("n_tokens", {})),
            "rejected": rejected,
        },
        "directory": directory,
        "outputs": outputs,
    }


def versions(packages: Iterable[str]) -> dict[str, str]:
    """Python's and each package's installed version."""
    return {"python": platform.python_version(), **{name: _version(name) for name in packages}}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


class _WriteManifest(beam.DoFn):
    def __init__(self, directory: str, config: MosaicConfig, options: dict, inputs: list[str]):
        self.directory, self.config, self.options, self.inputs = directory, config, options, inputs

    def process(self, stats: dict, sample_files: list[str], rejected_files: list[str]):
        outputs = {"samples": _names(sample_files), "rejected": _names(rejected_files)}
        document = manifest(stats, self.config, self.options, self.inputs, self.directory, outputs)
        path = FileSystems.join(self.directory, "manifest.json")
        write_atomically(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        yield path


def _names(paths: list[str]) -> list[str]:
    """File names within the manifest's `directory` (the attempt folder of a run with --run-id)."""
    return sorted(path.rsplit("/", 1)[-1] for path in paths)


def build_mosaic_pipeline(
    pipeline: beam.Pipeline,
    config: MosaicConfig,
    inputs: list[str],
    output: str,
    formats: list[str],
    num_shards: int,
    options: dict,
):
    """Wires the whole run; returns the PCollection holding the manifest path."""
    handle = shared.Shared()
    in_one_task, processes = runs_in_one_process(pipeline.options), pack_processes(pipeline.options, [*inputs, output])
    measured = pipeline | "ReadAndMeasure" >> ReadAndMeasure(inputs, config, handle, in_one_task, processes)
    rows = measured["rows"]

    valid_count = rows | "CountValid" >> beam.Map(len) | "SumValid" >> beam.CombineGlobally(sum)
    num_keys = valid_count | "KeysPerEpoch" >> beam.Map(keys_per_epoch, config.records_per_key)
    total_keys = num_keys | "TotalKeys" >> beam.Map(lambda keys: keys * config.epochs)
    sample_shards = total_keys | "SampleShards" >> beam.Map(lambda keys: num_shards or default_num_shards(keys))
    sample_formats = [SAMPLE_FORMATS[name] for name in formats]
    packed = rows | "Mosaic" >> MosaicShards(
        config, handle, num_keys, output, sample_formats, sample_shards, in_one_task, processes
    )
    sample_files = packed["files"]

    rejected = (measured[REJECTED], packed[REJECTED]) | "AllRejected" >> beam.Flatten()
    rejected_files = rejected | "WriteRejected" >> WriteRejected(output)

    stats = (
        (
            packed[STATS],
            rejected | "RejectStats" >> beam.Map(lambda rejection: Counter({("rejected", rejection.reason): 1})),
            valid_count | "ValidStats" >> beam.Map(lambda count: Counter({("input", "valid"): count})),
        )
        | "AllStats" >> beam.Flatten()
        | "SumStats" >> beam.CombineGlobally(SumCounters())
    )
    return stats | "WriteManifest" >> beam.ParDo(
        _WriteManifest(output, config, options, inputs),
        beam.pvalue.AsList(sample_files),
        beam.pvalue.AsList(rejected_files),
    )
