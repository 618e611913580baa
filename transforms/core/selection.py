"""IterIT selection as pure functions: response TF-IDF, the diversity-aware greedy, the order of a round.

The greedy is defined by the plain loop: k times, pick the candidate (not yet picked)
maximising ``ifd * sum(current TF-IDF weights of its row)``, the first in window order
on a tie; then multiply every column of the picked row's terms by the decay. Weights
only shrink, so a candidate's last computed score is an upper bound of its current
one: :func:`diverse_greedy` keeps those bounds in a max-heap and recomputes only the
top, which picks exactly what the loop picks with a small fraction of the work.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

SCORE_TYPES = ("ifd", "both")
NGRAM_MAX = 3
# Lowercased words of two or more word characters: scikit-learn's default token pattern.
WORD = re.compile(r"(?u)\b\w\w+\b")


def selection_size(ratio: float, population: int) -> int:
    """k: a fraction of the population when ratio <= 1 (at least one record), else a count."""
    if population <= 0:
        return 0
    if ratio > 1:
        return min(int(ratio), population)
    return min(population, max(1, math.floor(population * ratio)))


def window_size(k: int, update_ratio: int, population: int) -> int:
    """How many records at the head of the previous order a later round re-scores."""
    return min(population, k * update_ratio)


def tfidf(texts: Sequence[str], ngram_max: int = NGRAM_MAX) -> sp.csr_matrix:
    """Rows of L2-normalised TF-IDF weights of word 1..ngram_max-grams, smoothed idf.

    The same weights as scikit-learn's ``TfidfVectorizer(ngram_range=(1, ngram_max))``
    (raw counts, idf = ln((1 + n) / (1 + df)) + 1); columns follow first appearance.
    N-grams are numbered with integer codes (prefix id * words + last word), so the
    vocabulary is built by numpy rather than by a dictionary of joined strings.
    """
    words: dict[str, int] = {}
    doc_words = [[words.setdefault(word, len(words)) for word in WORD.findall(text.lower())] for text in texts]
    lengths = np.fromiter((len(ids) for ids in doc_words), dtype=np.int64, count=len(doc_words))
    ids = np.fromiter((i for doc in doc_words for i in doc), dtype=np.int64, count=int(lengths.sum()))
    doc_of = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    offset_in_doc = np.arange(len(ids), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)

    rows, columns = [], []
    gram = ids  # id of the n-gram starting at each position (valid where it fits in the document)
    next_column = 0
    for n in range(1, ngram_max + 1):
        if n > 1:
            fits = offset_in_doc[: len(ids) - n + 1] + n <= lengths[doc_of[: len(ids) - n + 1]]
            codes = gram[: len(ids) - n + 1] * max(len(words), 1) + ids[n - 1 :]
            codes = np.where(fits, codes, -1)
            gram = _dense_ids(codes)
        valid = (offset_in_doc[: len(gram)] + n <= lengths[doc_of[: len(gram)]]) & (gram >= 0)
        rows.append(doc_of[: len(gram)][valid])
        columns.append(gram[valid] + next_column)
        next_column += int(gram.max()) + 1 if len(gram) and valid.any() else 0

    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    column = np.concatenate(columns) if columns else np.zeros(0, np.int64)
    counts = sp.csr_matrix((np.ones(len(row)), (row, column)), shape=(len(texts), next_column))
    counts.sum_duplicates()
    df = np.bincount(counts.indices, minlength=next_column)
    idf = np.log((1 + len(texts)) / (1 + df)) + 1
    weights = counts.multiply(idf).tocsr()
    norms = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    weights = sp.diags(1 / norms) @ weights
    weights.sort_indices()
    return weights.tocsr()


def _dense_ids(codes: np.ndarray) -> np.ndarray:
    """Codes -> 0..m-1 in order of first appearance (-1 stays -1)."""
    out = np.full(len(codes), -1, dtype=np.int64)
    valid = codes >= 0
    unique, first, inverse = np.unique(codes[valid], return_index=True, return_inverse=True)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique))
    out[valid] = rank[inverse]
    return out


def row_score(ifd: float, weights: np.ndarray, multipliers: np.ndarray) -> float:
    """ifd x the sum of a row's current weights (its stored weights times their column multipliers)."""
    return float(ifd * np.add.reduce(weights * multipliers))


def diverse_greedy(ifd: np.ndarray, weights: sp.csr_matrix, k: int, decay: float) -> list[int]:
    """The first k picks of the plain greedy loop (positions into ifd), computed lazily.

    A heap entry is (-bound, position, step): its score as computed after `step` picks.
    An entry computed after the latest pick is exact; being the heap's top, no other
    candidate can beat it (ties: lower position first, as the loop's argmax).
    """
    multipliers = np.ones(weights.shape[1])
    indptr, indices, data = weights.indptr, weights.indices, weights.data

    def score(i: int) -> float:
        columns = indices[indptr[i] : indptr[i + 1]]
        return row_score(ifd[i], data[indptr[i] : indptr[i + 1]], multipliers[columns])

    heap = [(-score(i), i, 0) for i in range(len(ifd))]
    heapq.heapify(heap)
    picks: list[int] = []
    while heap and len(picks) < k:
        _bound, i, step = heapq.heappop(heap)
        if step == len(picks):
            picks.append(i)
            multipliers[indices[indptr[i] : indptr[i + 1]]] *= decay
        else:
            heapq.heappush(heap, (-score(i), i, len(picks)))
    return picks


def pick_scores(ifd: np.ndarray, weights: sp.csr_matrix, picks: Sequence[int], decay: float) -> list[float]:
    """The score each pick had when it was picked: IFD x its row's weights after the earlier picks' decay."""
    multipliers = np.ones(weights.shape[1])
    indptr, indices, data = weights.indptr, weights.indices, weights.data
    scores = []
    for i in picks:
        columns = indices[indptr[i] : indptr[i + 1]]
        scores.append(row_score(ifd[i], data[indptr[i] : indptr[i + 1]], multipliers[columns]))
        multipliers[columns] *= decay
    return scores


def top_by_ifd(ifd: np.ndarray, k: int) -> list[int]:
    """Positions of the k highest scores; ties by position."""
    return by_ifd_descending(ifd, range(len(ifd)))[:k]


def by_ifd_descending(ifd: np.ndarray, positions: Sequence[int]) -> list[int]:
    return sorted(positions, key=lambda i: (-ifd[i], i))


@dataclass(frozen=True)
class WindowOrder:
    """A window's new order (positions into it) and how many of its head are picks."""

    order: list[int]
    picks: int
    candidates: int
    pick_scores: list[float]  # the score each pick won with: IFD x diversity (`both`) or IFD (`ifd`)


def order_window(ifd: Sequence[float], responses: Sequence[str], k: int, score_type: str, decay: float) -> WindowOrder:
    """Orders one round's window: the picks in pick order, then the records with IFD >= 1
    (in window order), then the other candidates by IFD descending.

    Candidates are the records with IFD < 1. With `both`, picks follow :func:`diverse_greedy`
    over the TF-IDF of the candidates' responses; with `ifd`, the top k by IFD.
    """
    if score_type not in SCORE_TYPES:
        raise ValueError(f"unknown score type '{score_type}'; choose one of {', '.join(SCORE_TYPES)}")
    scores = np.asarray(ifd, dtype=np.float64)
    candidates = [i for i in range(len(scores)) if scores[i] < 1]
    others = [i for i in range(len(scores)) if not scores[i] < 1]
    candidate_ifd = scores[candidates]
    if score_type == "ifd":
        chosen = top_by_ifd(candidate_ifd, k)
        won_with = [float(candidate_ifd[j]) for j in chosen]
    else:
        weights = tfidf([responses[i] for i in candidates])
        chosen = diverse_greedy(candidate_ifd, weights, k, decay)
        won_with = pick_scores(candidate_ifd, weights, chosen, decay)
    picked = set(chosen)
    rest = by_ifd_descending(candidate_ifd, [j for j in range(len(candidates)) if j not in picked])
    order = [candidates[j] for j in chosen] + others + [candidates[j] for j in rest]
    return WindowOrder(order, len(chosen), len(candidates), won_with)


@dataclass(frozen=True)
class ScoreRow:
    """One record's score, as written to scores-*.jsonl and order.jsonl."""

    id: str
    ifd: float
    conditional_loss: float
    prior_loss: float
    response_tokens: int
    round: int  # the round whose model computed the score
    model: str

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "ifd": self.ifd,
            "conditional_loss": self.conditional_loss,
            "prior_loss": self.prior_loss,
            "response_tokens": self.response_tokens,
            "round": self.round,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, row: dict) -> ScoreRow:
        return cls(
            str(row["id"]),
            float(row["ifd"]),
            float(row["conditional_loss"]),
            float(row["prior_loss"]),
            int(row["response_tokens"]),
            int(row["round"]),
            str(row["model"]),
        )


@dataclass(frozen=True)
class RoundOrder:
    rows: list[dict]  # order.jsonl: ScoreRow fields plus position, pick (0-based, or None) and score (picks only)
    window: int
    candidates: int
    k: int
    selected: int


def assemble_order(
    window: Sequence[tuple[ScoreRow, str]], kept: Sequence[ScoreRow], k: int, score_type: str, decay: float
) -> RoundOrder:
    """A round's whole order: its re-ordered window (rows with responses, in window order),
    then the rows it kept in place from the previous round. The picks are the selection."""
    ordered = order_window([row.ifd for row, _ in window], [response for _, response in window], k, score_type, decay)
    rows = [window[i][0] for i in ordered.order] + list(kept)
    return RoundOrder(
        rows=[
            {
                "position": position,
                **row.to_dict(),
                "pick": position if position < ordered.picks else None,
                "score": ordered.pick_scores[position] if position < ordered.picks else None,
            }
            for position, row in enumerate(rows)
        ],
        window=len(window),
        candidates=ordered.candidates,
        k=k,
        selected=ordered.picks,
    )
