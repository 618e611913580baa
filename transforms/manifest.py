"""The manifest both commands write last into their output folder: one JSON document
that says what a run read, counted and wrote, without timestamps (so reruns compare equal).

Each command builds its own document (`pipeline/mosaic.py`, `pipeline/iterit.py`) from
the run's summed stats and the paths of its outputs; this module holds what they share.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import platform
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.files import write_atomically

MANIFEST = "manifest.json"
MOSAIC_TOOL = "mosaic-it run"  # the `tool` field of each command's manifest
SELECT_TOOL = "mosaic-it select"

Stats = Mapping[tuple[str, str], int]  # (section, name) -> count, summed over the run
DocumentBuilder = Callable[[Stats, dict[str, list[str]]], dict]  # (stats, output paths by kind) -> manifest


class SumCounters(beam.CombineFn):
    """Counters -> their sum, as a dict."""

    def create_accumulator(self):
        return Counter()

    def add_input(self, accumulator, element):
        accumulator.update(element)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: Counter = Counter()
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator):
        return dict(accumulator)


def stats_table(stats: Stats) -> dict[str, dict[str, int]]:
    """Section -> name -> count, sorted."""
    table: dict[str, dict[str, int]] = {}
    for (section, name), value in sorted(stats.items()):
        table.setdefault(section, {})[name] = value
    return table


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


def versions(packages: Iterable[str]) -> dict[str, str]:
    """Python's and each package's installed version."""
    return {"python": platform.python_version(), **{name: _version(name) for name in packages}}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def limited_to(options: Mapping) -> dict[str, int]:
    """The manifest's `counts.limited_to` of a run with --limit; nothing without one."""
    limit = options.get("limit", 0)
    return {"limited_to": limit} if limit else {}


def file_names(paths: Iterable[str]) -> list[str]:
    """File names within the manifest's folder, sorted."""
    return sorted(path.rsplit("/", 1)[-1] for path in paths)


def read_manifest_at(path: str) -> dict:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


class _WriteManifest(beam.DoFn):
    def __init__(self, directory: str, build: DocumentBuilder):
        self.directory, self.build = directory, build

    def process(self, element: Stats, *args, **outputs: list[str]):
        document = self.build(element, outputs)
        path = FileSystems.join(self.directory, MANIFEST)
        write_atomically(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        yield path


class WriteManifest(beam.PTransform):
    """Counters of the run -> the path of DIRECTORY/manifest.json, written once every output is.

    `outputs` names PCollections of written paths; `build(stats, {name: [path]})` makes the document.
    """

    def __init__(self, directory: str, build: DocumentBuilder, outputs: Mapping[str, beam.PCollection]):
        super().__init__()
        self.directory, self.build, self.outputs = directory, build, dict(outputs)

    def expand(self, counters):
        written = {name: beam.pvalue.AsList(paths) for name, paths in self.outputs.items()}
        return (
            counters
            | "SumStats" >> beam.CombineGlobally(SumCounters())
            | "Write" >> beam.ParDo(_WriteManifest(self.directory, self.build), **written)
        )
