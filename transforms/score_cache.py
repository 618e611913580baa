"""The IFD score cache: JSON-lines files of (key, losses), in one directory shared by runs.

A key is the hash of everything a score depends on (model, tokenizer, template,
--max-tokens, dtype and the record's text), so entries never need invalidating. Each
run adds only the scores it computed, in files named by the hash of their content:
runs never overwrite each other, and a file is complete or absent.

Integrity: each entry carries `check`, a digest of its key and values, and each file's
name is the digest of its bytes. A file whose bytes no longer match its name is damaged:
its entries that still pass their own check are used, the others are dropped (their
records are scored again), and one warning names the file. Files written before entries
had a check are used only while their bytes match their name.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections import Counter
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.core.randomness import digest
from transforms.files import write_atomically
from transforms.write import KeyByShard

CACHE_PATTERN = "ifd-*.jsonl"
ENTRIES_PER_FILE = 100_000
STATS = "stats"  # ReadScoreCache's tagged output: a Counter for each damaged file

log = logging.getLogger(__name__)


class CachedLosses(NamedTuple):
    conditional_loss: float
    prior_loss: float
    response_tokens: int


class CheckedFile(NamedTuple):
    """What a cache file holds that can be trusted, and what was dropped."""

    entries: list[tuple[str, CachedLosses]]
    dropped: int  # entries (non-empty lines) ignored
    problem: str | None  # why the file is damaged; None when it is exactly as written


def cache_files(directory: str) -> list[str]:
    """The cache's files, sorted; none when the directory does not exist yet."""
    result = FileSystems.match([FileSystems.join(directory, CACHE_PATTERN)])[0]
    return sorted(metadata.path for metadata in result.metadata_list)


def file_name(data: bytes) -> str:
    """The name of a cache file holding `data`: the digest of its bytes."""
    return f"ifd-{digest('cache', data).hex()}.jsonl"


def entry_check(key: str, losses: CachedLosses) -> str:
    conditional, prior, tokens = losses
    return digest("cache entry", key, float(conditional), float(prior), int(tokens)).hex()


def entry_line(key: str, losses: CachedLosses) -> str:
    return json.dumps({"key": key, **losses._asdict(), "check": entry_check(key, losses)}) + "\n"


def _parse_entry(line: bytes) -> tuple[str, CachedLosses, str | None] | None:
    """(key, losses, check or None for an entry of the older format), or None if it is not an entry."""
    try:
        entry = json.loads(line.decode("utf-8"))
        key, conditional, prior, tokens = (
            entry["key"],
            entry["conditional_loss"],
            entry["prior_loss"],
            entry["response_tokens"],
        )
        check = entry.get("check")
    except (ValueError, TypeError, KeyError, AttributeError):  # not UTF-8, not JSON, or not an entry object
        return None
    numbers_ok = all(type(value) is float for value in (conditional, prior)) and type(tokens) is int
    if not (isinstance(key, str) and numbers_ok and (check is None or isinstance(check, str))):
        return None
    return key, CachedLosses(conditional, prior, tokens), check


def check_cache_file(name: str, data: bytes) -> CheckedFile:
    """The entries of a cache file named `name` holding `data` that pass their check.

    An entry without a check (a file of the older format) passes only when the whole
    file matches its name."""
    intact = name == file_name(data)
    entries, dropped = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        parsed = _parse_entry(line)
        if parsed is not None:
            key, losses, check = parsed
            if check == entry_check(key, losses) or (check is None and intact):
                entries.append((key, losses))
                continue
        dropped += 1
    problem = None
    if not intact:
        problem = "its content does not match its name"
    elif dropped:
        problem = "entries fail their check"
    return CheckedFile(entries, dropped, problem)


class _ReadCacheFile(beam.DoFn):
    """A cache file -> its trusted entries, and (tagged STATS) a Counter when it is damaged."""

    def process(self, path: str):
        try:
            with FileSystems.open(path) as handle:
                data = handle.read()
        except OSError as err:  # unreadable: every score it held is computed again
            log.warning("score cache file %s is unreadable (%s); its scores will be computed again", path, err)
            yield beam.pvalue.TaggedOutput(STATS, Counter({("cache", "files_damaged"): 1}))
            return
        checked = check_cache_file(posixpath.basename(path), data)
        if checked.problem:
            log.warning(
                "score cache file %s is damaged (%s): %d of its %d entries dropped; their scores will be computed again",
                path,
                checked.problem,
                checked.dropped,
                checked.dropped + len(checked.entries),
            )
            yield beam.pvalue.TaggedOutput(
                STATS, Counter({("cache", "files_damaged"): 1, ("cache", "entries_rejected"): checked.dropped})
            )
        yield from checked.entries


class ReadScoreCache(beam.PTransform):
    """Cache files -> (key, CachedLosses) of the entries that pass their checks.

    With `with_stats`, the result is the pair (entries, stats): stats holds a Counter for each
    damaged file, (cache, files_damaged) and (cache, entries_rejected), for the manifest."""

    def __init__(self, paths: list[str], with_stats: bool = False):
        super().__init__()
        self.paths, self.with_stats = paths, with_stats

    def expand(self, pbegin):
        read = (
            pbegin
            | "ListCacheFiles" >> beam.Create(self.paths)
            | "SpreadCacheFiles" >> beam.Reshuffle()
            | "ReadCacheFiles" >> beam.ParDo(_ReadCacheFile()).with_outputs(STATS, main="entries")
        )
        return (read["entries"], read[STATS]) if self.with_stats else read["entries"]


class _WriteCacheFile(beam.DoFn):
    def __init__(self, directory: str):
        self.directory = directory

    def process(self, element):
        _, entries = element
        data = "".join(entry_line(key, losses) for key, losses in sorted(entries)).encode("utf-8")
        path = FileSystems.join(self.directory, file_name(data))
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
