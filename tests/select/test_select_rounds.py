"""Beam pieces of select without a model: matching a round to the previous order, and the cache files."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.core.records import Record
from transforms.core.selection import ScoreRow
from transforms.read import REJECTED
from transforms.score_cache import CachedLosses, ReadScoreCache, WriteScoreCache, cache_files
from transforms.select import KEPT, MISSING, WINDOW, MatchPrevious


def record(i: str, origin: str) -> Record:
    return Record(i, f"instruction {i}", "", f"output {i}", origin)


def previous_row(i: str, position: int) -> dict:
    return {"position": position, **ScoreRow(i, 0.5, 1.0, 1.2, 3, 0, "m0").to_dict(), "pick": None}


def test_a_later_round_scores_the_window_keeps_the_rest_and_rejects_strangers():
    records = [record("a", "f:0"), record("b", "f:1"), record("c", "f:2"), record("a", "f:3"), record("new", "f:4")]
    previous = [previous_row("b", 0), previous_row("a", 1), previous_row("c", 2), previous_row("gone", 3)]
    with BeamTestPipeline() as pipeline:
        matched = (
            pipeline | "Records" >> beam.Create(records),
            pipeline | "Previous" >> beam.Create(previous),
        ) | MatchPrevious(window=2)
        window = matched[WINDOW] | "WindowIds" >> beam.Map(lambda c: (c.record.id, c.record.origin, c.position))
        assert_that(window, equal_to([("b", "f:1", 0), ("a", "f:0", 1)]), label="window")
        assert_that(matched[KEPT], equal_to([(2, ScoreRow("c", 0.5, 1.0, 1.2, 3, 0, "m0"))]), label="kept")
        assert_that(matched[MISSING], equal_to(["gone"]), label="missing")
        reasons = matched[REJECTED] | "Reasons" >> beam.Map(lambda r: (r.source, r.reason))
        assert_that(reasons, equal_to([("a", "duplicate_id"), ("new", "not_in_previous_order")]), label="rejected")


def test_round_zero_scores_every_record_once():
    records = [record("a", "f:1"), record("a", "f:0"), record("b", "f:2")]
    with BeamTestPipeline() as pipeline:
        matched = (
            pipeline | "Records" >> beam.Create(records),
            pipeline | "Previous" >> beam.Create([]),
        ) | MatchPrevious(None)
        window = matched[WINDOW] | "WindowIds" >> beam.Map(lambda c: (c.record.id, c.record.origin, c.position))
        assert_that(window, equal_to([("a", "f:0", None), ("b", "f:2", None)]), label="window")


ENTRIES = [("ab" * 16, CachedLosses(1.5, 2.0, 4)), ("cd" * 16, CachedLosses(0.25, 0.5, 1))]


def write_cache(directory: str, entries) -> None:
    with BeamTestPipeline() as pipeline:
        _ = pipeline | beam.Create(entries) | WriteScoreCache(directory)


def test_cache_files_are_named_by_content_and_read_back(tmp_path):
    directory = str(tmp_path / "cache")
    assert cache_files(directory) == []
    write_cache(directory, ENTRIES)
    write_cache(directory, list(reversed(ENTRIES)))  # the same entries: the same file, not a second one
    [path] = cache_files(directory)
    write_cache(directory, [("ef" * 16, CachedLosses(3.0, 3.0, 2))])
    assert len(cache_files(directory)) == 2 and path in cache_files(directory)
    with BeamTestPipeline() as pipeline:
        read = pipeline | ReadScoreCache(cache_files(directory))
        assert_that(read, equal_to([*ENTRIES, ("ef" * 16, CachedLosses(3.0, 3.0, 2))]))


def test_a_length_bucket_is_split_by_key_hash_only_past_group_pairs(monkeypatch):
    from transforms import select
    from transforms.core.ifd import ScoringPair

    pairs = [ScoringPair(f"{i:08x}", (1,) * 40, 2, (1,) * 20, 2) for i in range(6)]  # one bucket
    assert select.micro_batch_plan(pairs, 10_000) == [pairs]
    monkeypatch.setattr(select, "GROUP_PAIRS", 2)  # 6 pairs: 3 groups, by key mod 3
    groups = [[pair.key for pair in batch] for batch in select.micro_batch_plan(pairs, 10_000)]
    assert sorted(groups) == [[f"{i:08x}", f"{i + 3:08x}"] for i in range(3)]
