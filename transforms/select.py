"""Beam wiring of IterIT selection: match the previous round, score through the cache and
RunInference, and order the round in one global step."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.utils import shared

from transforms.core.ifd import PairBuilder, ScoringIdentity, ScoringPair, ifd_score, length_bucket, micro_batches
from transforms.core.records import Record, Rejection, origin_order, reject
from transforms.core.selection import RoundOrder, ScoreRow, assemble_order, selection_size
from transforms.progress import CACHE_HITS, RECORDS_SCORED, RECORDS_TO_SCORE, ROUNDS_ORDERED, TOKENS_SCORED
from transforms.read import REJECTED
from transforms.score_cache import CachedLosses

WINDOW = "window"  # records this round scores
KEPT = "kept"  # previous rows this round keeps in place
MISSING = "missing"  # previous rows whose record is not in this round's input
PENDING = "pending"  # micro-batches holding a pair the cache does not hold
NEW_CACHE = "new_cache"  # (key, CachedLosses) computed by this run
GROUP_PAIRS = 2048  # pairs of a length bucket beyond which it is split, by key hash, into groups of about as many


@dataclass(frozen=True)
class ScoringConfig:
    """What scoring workers need; built once from the options."""

    model: str  # what workers load: a local directory or a hub id
    model_revision: str | None
    tokenizer: str
    tokenizer_revision: str | None
    identity: ScoringIdentity
    device: str
    batch_tokens: int
    round: int
    model_label: str  # the `model` field of this round's score rows: --model as given


@dataclass(frozen=True)
class SelectSettings:
    ratio: float
    score_type: str
    decay: float
    k: int | None  # fixed by a later round's previous order; None: from the round's window


@dataclass(frozen=True)
class Candidate:
    """A record this round scores, with its place in the previous order (None in round 0)."""

    record: Record
    position: int | None

    @property
    def window_rank(self) -> tuple:
        """Window order: the previous order, or input order in round 0."""
        return (-1 if self.position is None else self.position, origin_order(self.record.origin))


class _MatchPrevious(beam.DoFn):
    def __init__(self, window: int | None):
        self.window = window

    def process(self, element):
        _, groups = element
        records = sorted(groups["records"], key=lambda record: origin_order(record.origin))
        previous = list(groups["previous"])
        if not records:
            yield beam.pvalue.TaggedOutput(MISSING, previous[0]["id"])
            return
        first = records[0]
        for duplicate in records[1:]:
            detail = f"another record has this id; the first in input order ({first.origin}) is kept"
            yield beam.pvalue.TaggedOutput(REJECTED, reject(duplicate, "duplicate_id", detail))
        if self.window is None:
            yield Candidate(first, None)
        elif not previous:
            detail = "a later round orders the previous round's records; this id is not in its order.jsonl (it was absent or rejected)"
            yield beam.pvalue.TaggedOutput(REJECTED, reject(first, "not_in_previous_order", detail))
        elif previous[0]["position"] < self.window:
            yield Candidate(first, previous[0]["position"])
        else:
            yield beam.pvalue.TaggedOutput(KEPT, (previous[0]["position"], ScoreRow.from_dict(previous[0])))


class MatchPrevious(beam.PTransform):
    """(records, previous order rows) -> this round's candidates (main), kept rows
    (position, ScoreRow), ids missing from the input, and duplicate or unknown-id rejections.

    `window` is the number of head positions of the previous order to re-score; None in
    round 0, where every record is a candidate and `previous` is empty.
    """

    def __init__(self, window: int | None):
        super().__init__()
        self.window = window

    def expand(self, inputs):
        records, previous = inputs
        return (
            {
                "records": records | "KeyRecords" >> beam.Map(lambda record: (record.id, record)),
                "previous": previous | "KeyPrevious" >> beam.Map(lambda row: (row["id"], row)),
            }
            | "JoinById" >> beam.CoGroupByKey()
            | "Match" >> beam.ParDo(_MatchPrevious(self.window)).with_outputs(REJECTED, KEPT, MISSING, main=WINDOW)
        )


def _load_builder(config: ScoringConfig) -> PairBuilder:
    """The tokenizer and pair builder a worker process loads once."""
    from transformers import AutoTokenizer

    return PairBuilder(
        AutoTokenizer.from_pretrained(config.tokenizer, revision=config.tokenizer_revision), config.identity
    )


class _Prepare(beam.DoFn):
    def __init__(self, config: ScoringConfig, handle: shared.Shared):
        self.config = config
        self._handle = handle

    def setup(self):
        tag = repr((self.config.tokenizer, self.config.tokenizer_revision, self.config.identity))
        self.builder = self._handle.acquire(lambda: _load_builder(self.config), tag=tag)

    def process(self, batch: list[Candidate]):
        for candidate, result in zip(batch, self.builder.build([c.record for c in batch])):
            if isinstance(result, Rejection):
                yield beam.pvalue.TaggedOutput(REJECTED, result)
            else:
                yield result.key, (candidate, result)


@dataclass(frozen=True)
class Pending:
    """One pair to score and every candidate with the same scored text (and so the same key), with
    the cache's losses for it when the cache holds them."""

    pair: ScoringPair
    candidates: tuple[Candidate, ...]
    cached: CachedLosses | None = None


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    row: ScoreRow
    source: str  # "computed" or "cached"


def scored(candidate: Candidate, losses: CachedLosses, config: ScoringConfig, source: str) -> Scored:
    row = ScoreRow(
        candidate.record.id,
        ifd_score(losses.conditional_loss, losses.prior_loss),
        losses.conditional_loss,
        losses.prior_loss,
        losses.response_tokens,
        config.round,
        config.model_label,
    )
    return Scored(candidate, row, source)


def _lookup(element) -> Iterable[Pending]:
    """(key, {pairs, cache}) -> the key's Pending, with its cached losses if any."""
    _, groups = element
    waiting = sorted(groups["pairs"], key=lambda item: item[0].window_rank)
    if waiting:
        cached = sorted(groups["cache"])
        yield Pending(waiting[0][1], tuple(candidate for candidate, _ in waiting), cached[0] if cached else None)


class _UseCache(beam.DoFn):
    """A micro-batch -> its scores from the cache when the cache holds every pair of it; else the
    micro-batch (PENDING), scored whole.

    Micro-batches are cut from all the window's pairs, cached or not, so a pair is always scored in
    the batch a run without cache scores it in: float results never depend on what the cache held.
    """

    def __init__(self, config: ScoringConfig):
        self.config = config

    def process(self, batch: list[Pending]):
        cached = [pending.cached for pending in batch if pending.cached is not None]
        records = sum(len(pending.candidates) for pending in batch)
        if len(cached) < len(batch):
            RECORDS_TO_SCORE.inc(records)
            yield beam.pvalue.TaggedOutput(PENDING, batch)
            return
        CACHE_HITS.inc(records)
        for pending, losses in zip(batch, cached):
            for candidate in pending.candidates:
                yield scored(candidate, losses, self.config, "cached")


class ResponseLossHandler(ModelHandler[Pending, tuple, Any]):
    """RunInference's model handler: a causal LM, loaded once per worker, on CUDA when
    available; each element is one micro-batch of similar lengths."""

    def __init__(self, config: ScoringConfig):
        super().__init__()
        self.config = config

    def load_model(self):
        from transformers.utils import logging as transformers_logging

        from transforms.core.lm import ResponseLosses

        transformers_logging.disable_progress_bar()
        c = self.config
        return ResponseLosses.load(c.model, c.model_revision, c.device, c.identity.dtype)

    def run_inference(self, batch: Sequence[Pending], model, inference_args=None) -> Iterable[tuple]:
        conditional = model.mean_nll([(p.pair.conditional, p.pair.conditional_response) for p in batch])
        prior = model.mean_nll([(p.pair.prior, p.pair.prior_response) for p in batch])
        return [
            (pending, CachedLosses(c, q, pending.pair.conditional_response))
            for pending, c, q in zip(batch, conditional, prior)
        ]

    def get_num_bytes(self, batch: Sequence[Pending]) -> int:
        return sum(8 * (len(p.pair.conditional) + len(p.pair.prior)) for p in batch)

    def get_metrics_namespace(self) -> str:
        return "mosaic_it_select"


def batch_group(pair: ScoringPair, bucket_sizes: Mapping[int, int]) -> tuple[int, int]:
    """The group a pair's micro-batch is cut from: its length bucket and, in a bucket of more than
    GROUP_PAIRS pairs (`bucket_sizes` counts them), a hash of its key."""
    bucket = length_bucket(pair.length)
    return bucket, int(pair.key[:8], 16) % -(-bucket_sizes[bucket] // GROUP_PAIRS)


def _cut_micro_batches(element, budget: int):
    _, group = element
    items = sorted(group, key=lambda pending: (pending.pair.length, pending.pair.key))
    for indices in micro_batches([pending.pair.length for pending in items], budget):
        yield [items[i] for i in indices]


def micro_batch_plan(pairs: Sequence[ScoringPair], budget: int) -> list[list[ScoringPair]]:
    """The micro-batches ScoreCandidates feeds the model for these pairs (all of them pending)."""
    sizes = Counter(length_bucket(pair.length) for pair in pairs)
    groups: dict[tuple[int, int], list[Pending]] = {}
    for pair in pairs:
        groups.setdefault(batch_group(pair, sizes), []).append(Pending(pair, ()))
    return [
        [pending.pair for pending in batch]
        for key in sorted(groups)
        for batch in _cut_micro_batches((key, groups[key]), budget)
    ]


class _Finish(beam.DoFn):
    def __init__(self, config: ScoringConfig):
        self.config = config

    def process(self, element):
        pending, losses = element
        RECORDS_SCORED.inc(len(pending.candidates))
        TOKENS_SCORED.inc(len(pending.pair.conditional) + len(pending.pair.prior))
        if not all(
            math.isfinite(value) for value in (*losses[:2], ifd_score(losses.conditional_loss, losses.prior_loss))
        ):
            detail = f"conditional loss {losses.conditional_loss}, prior loss {losses.prior_loss}"
            for candidate in pending.candidates:
                yield beam.pvalue.TaggedOutput(REJECTED, reject(candidate.record, "non_finite_score", detail))
            return
        if pending.cached is None:
            yield beam.pvalue.TaggedOutput(NEW_CACHE, (pending.pair.key, losses))
        for candidate in pending.candidates:
            yield scored(candidate, losses, self.config, "computed")


class ScoreCandidates(beam.PTransform):
    """Candidates -> Scored (main), rejections, and the new cache entries (key, CachedLosses).

    Pairs are cut into micro-batches by length from groups fixed by the data (length bucket and, in
    a large bucket, key hash), not by bundle or by what the cache holds, so every runner, with or
    without a cache, feeds the model the same batches and gets the same float results. A micro-batch whose every
    pair the cache holds takes its scores from the cache; any other is scored whole by RunInference.
    """

    def __init__(self, config: ScoringConfig, cache):
        super().__init__()
        self.config, self.cache = config, cache

    def expand(self, candidates):
        prepared = (
            candidates
            | "Batch" >> beam.BatchElements(min_batch_size=16, max_batch_size=512)
            | "Prepare" >> beam.ParDo(_Prepare(self.config, shared.Shared())).with_outputs(REJECTED, main="pairs")
        )
        pending = (
            {"pairs": prepared["pairs"], "cache": self.cache}
            | "JoinCache" >> beam.CoGroupByKey()
            | "Lookup" >> beam.FlatMap(_lookup)
        )
        bucket_sizes = (
            pending
            | "LengthBuckets" >> beam.Map(lambda p: length_bucket(p.pair.length))
            | "CountPerBucket" >> beam.combiners.Count.PerElement()
        )
        batches = (
            pending
            | "KeyByLengthGroup"
            >> beam.Map(lambda p, sizes: (batch_group(p.pair, sizes), p), beam.pvalue.AsDict(bucket_sizes))
            | "GroupByLength" >> beam.GroupByKey()
            | "CutMicroBatches" >> beam.FlatMap(_cut_micro_batches, self.config.batch_tokens)
            | "UseCache" >> beam.ParDo(_UseCache(self.config)).with_outputs(PENDING, main="cached")
        )
        finished = (
            batches[PENDING]
            # Every micro-batch is matched with the cache, and counted, before the first is scored.
            | "SpreadPending" >> beam.Reshuffle()
            | "RunInference" >> RunInference(ResponseLossHandler(self.config).with_no_batching())
            | "Finish" >> beam.ParDo(_Finish(self.config)).with_outputs(REJECTED, NEW_CACHE, main="computed")
        )
        return {
            "scored": (batches["cached"], finished["computed"]) | "AllScored" >> beam.Flatten(),
            REJECTED: (prepared[REJECTED], finished[REJECTED]) | "ScoringRejected" >> beam.Flatten(),
            NEW_CACHE: finished[NEW_CACHE],
        }


def for_ordering(item: Scored) -> tuple:
    """What the global step needs of a scored record: (window rank, row, response)."""
    return item.candidate.window_rank, item.row, item.candidate.record.output


def order_round(window: list[tuple], kept: list[tuple[int, ScoreRow]], settings: SelectSettings) -> RoundOrder:
    """The global step: the scored window (see for_ordering), then the kept rows -> the round's order."""
    ranked = sorted(window, key=lambda item: item[0])
    k = settings.k if settings.k is not None else selection_size(settings.ratio, len(ranked))
    order = assemble_order(
        [(row, response) for _, row, response in ranked],
        [row for _, row in sorted(kept, key=lambda item: item[0])],
        k,
        settings.score_type,
        settings.decay,
    )
    ROUNDS_ORDERED.inc()
    return order
