"""Assembly of the `mosaic-it run` pipeline and its manifest."""
from __future__ import annotations

import json
import math
import platform
from collections import Counter
from importlib import metadata
from typing import Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils import shared

from transforms.core.randomness import digest
from transforms.mosaic import SAMPLES, MeasureRecords, MosaicConfig, MosaicSamples, keys_per_epoch
from transforms.read import RECORDS, REJECTED, ReadRecords
from transforms.write import REJECTED_FORMAT, SAMPLE_FORMATS, WriteShards, WriteSortedShards, write_atomically

KEYS_PER_SHARD = 8  # default sharding: one output shard per 8 (epoch, key) packing keys
REJECTED_PER_SHARD = 100_000
_PACKAGES = ("mosaic-it-beam", "apache-beam", "transformers", "tokenizers", "fastavro", "quicktok-v1", "pyyaml")


def default_num_shards(total_keys: int) -> int:
    return max(1, math.ceil(total_keys / KEYS_PER_SHARD))


class _SumCounters(beam.CombineFn):
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


def sample_stats(samples: Iterable[dict]) -> Counter:
    counts = Counter()
    for sample in samples:
        epoch = str(sample["epoch"])
        counts["samples", epoch] += 1
        counts["records", epoch] += sample["count"]
        counts["strategy", sample["strategy"]] += 1
        counts["rule", sample["rule"] or "none"] += 1
        counts["group_size", str(sample["count"])] += 1
    return counts


def manifest(stats: dict, config: MosaicConfig, options: dict, inputs: list[str], outputs: dict[str, list[str]]) -> dict:
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
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in _PACKAGES}},
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
            "rejected": rejected,
        },
        "outputs": outputs,
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


class _WriteManifest(beam.DoFn):
    def __init__(self, directory: str, config: MosaicConfig, options: dict, inputs: list[str]):
        self.directory, self.config, self.options, self.inputs = directory, config, options, inputs

    def process(self, stats: dict, sample_files: list[str], rejected_files: list[str]):
        outputs = {"samples": sorted(sample_files), "rejected": sorted(rejected_files)}
        document = manifest(stats, self.config, self.options, self.inputs, outputs)
        path = FileSystems.join(self.directory, "manifest.json")
        write_atomically(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        yield path


def build_mosaic_pipeline(
    pipeline: beam.Pipeline, config: MosaicConfig, inputs: list[str], output: str, formats: list[str], num_shards: int, options: dict
):
    """Wires the whole run; returns the PCollection holding the manifest path."""
    handle = shared.Shared()
    read = pipeline | "Read" >> ReadRecords(inputs)
    measured = read[RECORDS] | "Measure" >> MeasureRecords(config, handle)
    rows = measured["rows"]

    valid_count = rows | "CountValid" >> beam.Map(len) | "SumValid" >> beam.CombineGlobally(sum)
    num_keys = valid_count | "KeysPerEpoch" >> beam.Map(keys_per_epoch, config.records_per_key)
    total_keys = num_keys | "TotalKeys" >> beam.Map(lambda keys: keys * config.epochs)
    sample_shards = total_keys | "SampleShards" >> beam.Map(lambda keys: num_shards or default_num_shards(keys))
    packed = rows | "Mosaic" >> MosaicSamples(config, handle, num_keys, sample_shards)
    sample_rows = packed[SAMPLES]
    sample_files = sample_rows | "WriteSamples" >> WriteShards(output, [SAMPLE_FORMATS[name] for name in formats], sample_shards)

    rejected = (read[REJECTED], measured[REJECTED], packed[REJECTED]) | "AllRejected" >> beam.Flatten()
    rejected_shards = (
        rejected
        | "CountRejected" >> beam.combiners.Count.Globally()
        | "RejectedShards" >> beam.Map(lambda count: max(1, math.ceil(count / REJECTED_PER_SHARD)))
    )
    rejected_files = (
        rejected
        | "ShardRejected" >> beam.Map(_assign_rejected_shard, beam.pvalue.AsSingleton(rejected_shards))
        | "WriteRejected" >> WriteSortedShards(output, [REJECTED_FORMAT], rejected_shards)
    )

    stats = (
        (
            sample_rows | "SampleStats" >> beam.MapTuple(lambda shard, parts: sample_stats(row for _, rows in parts for row in rows)),
            rejected | "RejectStats" >> beam.Map(lambda rejection: Counter({("rejected", rejection.reason): 1})),
            valid_count | "ValidStats" >> beam.Map(lambda count: Counter({("input", "valid"): count})),
        )
        | "AllStats" >> beam.Flatten()
        | "SumStats" >> beam.CombineGlobally(_SumCounters())
    )
    return stats | "WriteManifest" >> beam.ParDo(
        _WriteManifest(output, config, options, inputs),
        beam.pvalue.AsList(sample_files),
        beam.pvalue.AsList(rejected_files),
    )


def _assign_rejected_shard(rejection, shards: int):
    row = rejection.to_dict()
    order = (row["source"], row["reason"], row["detail"], row["record"])
    return int.from_bytes(digest("rejected", row["source"])[:8], "big") % shards, (order, [row])
