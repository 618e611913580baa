"""The IFD score cache: JSON-lines files of (key, losses), in one directory shared by runs.

A key is the hash of everything a score depends on (model, tokenizer, template,
--max-tokens, dtype and the record's text), so entries never need invalidating. Each
run adds only the scores it computed, in files named by the hash of their content:
runs never overwrite each other, and a file is complete or absent.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.core.randomness import digest
from transforms.files import write_atomically
from transforms.write import KeyByShard

CACHE_PATTERN = "ifd-*.jsonl"
ENTRIES_PER_FILE = 100_000


class CachedLosses(NamedTuple):
    conditional_loss: float
    prior_loss: float
    response_tokens: int


def cache_files(directory: str) -> list[str]:
    """The cache's files, sorted; none when the directory does not exist yet."""
    result = FileSystems.match([FileSystems.join(directory, CACHE_PATTERN)])[0]
    return sorted(metadata.path for metadata in result.metadata_list)


def _read_cache_file(path: str):
    with FileSystems.open(path) as handle:
        for line in handle:
            entry = json.loads(line)
            yield entry["key"], CachedLosses(entry["conditional_loss"], entry["prior_loss"], entry["response_tokens"])


class ReadScoreCache(beam.PTransform):
    """Cache files -> (key, CachedLosses)."""

    def __init__(self, paths: list[str]):
        super().__init__()
        self.paths = paths

    def expand(self, pbegin):
        return (
            pbegin
            | "ListCacheFiles" >> beam.Create(self.paths)
            | "SpreadCacheFiles" >> beam.Reshuffle()
            | "ReadCacheFiles" >> beam.FlatMap(_read_cache_file)
        )


def _entry_line(key: str, losses: CachedLosses) -> str:
    return json.dumps({"key": key, **losses._asdict()}) + "\n"


class _WriteCacheFile(beam.DoFn):
    def __init__(self, directory: str):
        self.directory = directory

    def process(self, element):
        _, entries = element
        data = "".join(_entry_line(key, losses) for key, losses in sorted(entries)).encode("utf-8")
        path = FileSystems.join(self.directory, f"ifd-{digest('cache', data).hex()}.jsonl")
        if not FileSystems.exists(path):
            write_atomically(path, data)
        yield path


def _file_of(entry: tuple[str, CachedLosses], files: int) -> tuple[int, tuple[str, CachedLosses]]:
    return int(entry[0][:8], 16) % files, entry


@beam.ptransform_fn
def WriteScoreCache(entries, directory: str):
    """(key, CachedLosses) of newly computed scores -> new cache files; yields their paths."""
    keyed, _ = entries | "AssignFile" >> KeyByShard(ENTRIES_PER_FILE, _file_of)
    return keyed | "GroupByFile" >> beam.GroupByKey() | "WriteCacheFiles" >> beam.ParDo(_WriteCacheFile(directory))
