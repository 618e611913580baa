"""TF-IDF, the diversity greedy (against the plain loop), and the order of a round."""

from __future__ import annotations

import glob
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from select_support import SHARED

from transforms.core.randomness import digest
from transforms.core.selection import (
    ScoreRow,
    assemble_order,
    diverse_greedy,
    order_window,
    pick_scores,
    selection_size,
    tfidf,
    top_by_ifd,
    window_size,
)


def plain_greedy(
    ifd: np.ndarray, weights: sp.csr_matrix, k: int, decay: float, won_with: list | None = None
) -> list[int]:
    """The reference: the loop as the method states it, on a mutable copy of the weights.

    k times: score every row (ifd x sum of its current weights), take the best row not yet
    picked (the first on a tie), multiply every column of its terms by the decay, zero it.
    """
    current = weights.tocsr(copy=True)
    picked = np.zeros(len(ifd), dtype=bool)
    picks = []
    for _ in range(min(k, len(ifd))):
        scores = ifd * np.asarray(current.sum(axis=1)).ravel()
        scores[picked] = -np.inf
        best = int(np.argmax(scores))
        picks.append(best)
        if won_with is not None:
            won_with.append(float(scores[best]))
        picked[best] = True
        terms = current.indices[current.indptr[best] : current.indptr[best + 1]]
        current.data[np.isin(current.indices, terms)] *= decay
        current.data[current.indptr[best] : current.indptr[best + 1]] = 0
    return picks


def hashed_ifd(n: int, salt: str = "ifd") -> np.ndarray:
    """Deterministic IFD-like scores in [0.3, 1.2), as float32 values like the real ones."""
    values = [0.3 + 0.9 * int.from_bytes(digest(salt, i)[:4], "big") / 2**32 for i in range(n)]
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def test_tfidf_weights_by_hand():
    # "a" has one character, so it is no token; "Cat" is lowercased.
    weights = tfidf(["Cat sat", "cat a cat"], ngram_max=2).toarray()
    # Columns in first appearance: cat, sat, "cat sat", "cat cat".
    idf_both, idf_one = 1.0, math.log(3 / 2) + 1
    first = np.array([idf_both, idf_one, idf_one, 0.0])
    second = np.array([2 * idf_both, 0.0, 0.0, idf_one])
    np.testing.assert_allclose(weights[0], first / np.linalg.norm(first), rtol=1e-12)
    np.testing.assert_allclose(weights[1], second / np.linalg.norm(second), rtol=1e-12)


def test_tfidf_ngrams_stay_within_a_document():
    weights = tfidf(["one two", "three four five"])
    # one, two, "one two" | three, four, five, 2 bigrams, 1 trigram: nothing crosses documents.
    assert weights.shape == (2, 3 + 6)
    assert [weights[i].nnz for i in range(2)] == [3, 6]
    np.testing.assert_allclose(np.asarray(weights.multiply(weights).sum(axis=1)).ravel(), [1, 1])


def test_tfidf_of_texts_without_words_is_an_empty_row():
    weights = tfidf(["!", "a b", "word"])
    assert [weights[i].nnz for i in range(3)] == [0, 0, 1]


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(st.lists(st.sampled_from(["aa", "bb", "cc", "dd", "ee", "ff"]), max_size=6), min_size=1, max_size=25),
    k=st.integers(0, 30),
    decay=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    salt=st.text(max_size=3),
)
def test_lazy_greedy_picks_what_the_plain_loop_picks(docs, k, decay, salt):
    weights = tfidf([" ".join(doc) for doc in docs])
    ifd = hashed_ifd(len(docs), salt)
    assert diverse_greedy(ifd, weights, k, decay) == plain_greedy(ifd, weights, k, decay)


def test_ties_go_to_the_earlier_record_and_picks_never_repeat():
    weights = tfidf(["same words", "same words", "", "same words"])
    ifd = np.array([0.5, 0.5, 0.5, 0.5])
    # Rows 0, 1, 3 tie; after 0 is picked, 1 and 3 decay alike; then only zeros are left.
    assert diverse_greedy(ifd, weights, 10, 0.1) == [0, 1, 3, 2] == plain_greedy(ifd, weights, 10, 0.1)


def t0_completions() -> list[str]:
    files = sorted(glob.glob(str(SHARED / "data/t0_50k/*.jsonl")))
    if not files:
        pytest.skip(f"real data absent: {SHARED / 'data/t0_50k'}")
    texts = []
    for path in files:
        with open(path, encoding="utf-8") as handle:
            texts.extend(json.loads(line)["completion"] for line in handle)
    return texts


def test_lazy_greedy_matches_the_plain_loop_on_real_responses():
    texts = t0_completions()[::11]  # 5,017 real responses from every task
    ifd = hashed_ifd(len(texts))
    candidates = np.flatnonzero(ifd < 1)
    weights = tfidf([texts[i] for i in candidates])
    k = selection_size(0.05, len(texts))
    picks = diverse_greedy(ifd[candidates], weights, k, 0.1)
    assert len(picks) == k == 250
    assert picks == plain_greedy(ifd[candidates], weights, k, 0.1)


def test_pick_scores_are_the_scores_the_plain_loop_picked_with():
    texts = t0_completions()[::97]
    ifd = hashed_ifd(len(texts), salt="scores")
    weights = tfidf(texts)
    won_with: list[float] = []
    picks = plain_greedy(ifd, weights, 40, 0.1, won_with)
    assert pick_scores(ifd, weights, picks, 0.1) == pytest.approx(won_with, rel=1e-9)


def test_order_rows_carry_the_score_each_pick_won_with():
    ordered = order_window([0.9, 0.5, 1.2], ["alpha beta", "gamma delta", "epsilon"], 1, "ifd", 0.1)
    assert ordered.pick_scores == [pytest.approx(0.9)]


def test_diversity_prefers_new_terms_over_a_higher_score():
    # Three near-copies score highest on IFD alone; with diversity the second pick is the different one.
    responses = ["the cat sat on the mat", "the cat sat on the mat", "the cat sat on a mat", "dogs run in parks"]
    ifd = [0.9, 0.89, 0.88, 0.6]
    assert order_window(ifd, responses, 2, "ifd", 0.1).order[:2] == [0, 1]
    assert order_window(ifd, responses, 2, "both", 0.1).order[:2] == [0, 3]


def test_window_order_is_picks_then_not_candidates_then_rest_by_ifd():
    ifd = [0.5, 1.3, 0.9, 1.0, 0.7, 0.9, 0.2]
    responses = [f"word{i} common" for i in range(len(ifd))]
    ordered = order_window(ifd, responses, 2, "ifd", 0.1)
    assert ordered.order == [2, 5, 1, 3, 4, 0, 6]  # top 2 (tie: earlier first), IFD >= 1 in order, rest descending
    assert (ordered.picks, ordered.candidates) == (2, 5)


def test_fewer_candidates_than_k_selects_them_all():
    ordered = order_window([1.5, 0.4, 2.0], ["a b", "cc dd", "ee"], 5, "both", 0.1)
    assert ordered.order == [1, 0, 2] and ordered.picks == 1


def test_top_by_ifd_breaks_ties_by_position():
    assert top_by_ifd(np.array([0.5, 0.9, 0.9, 0.1]), 3) == [1, 2, 0]


@pytest.mark.parametrize(
    "ratio, population, k",
    [(0.05, 55185, 2759), (0.05, 10, 1), (0.5, 3, 1), (1.0, 7, 7), (250, 1000, 250), (250, 100, 100), (0.05, 0, 0)],
)
def test_selection_size(ratio, population, k):
    assert selection_size(ratio, population) == k


def test_window_size_is_update_ratio_times_k_within_the_population():
    assert window_size(10, 3, 100) == 30
    assert window_size(50, 3, 100) == 100


def row(i: str, ifd: float, round_number: int = 0) -> ScoreRow:
    return ScoreRow(i, ifd, 1.0, 1.0, 3, round_number, "m")


def test_assemble_order_reorders_the_window_and_keeps_the_rest_in_place():
    window = [(row("a", 0.8), "alpha beta"), (row("b", 1.2), "gamma"), (row("c", 0.9), "delta epsilon")]
    kept = [row("x", 0.99, 0), row("y", 0.1, 0)]
    order = assemble_order(window, kept, 1, "both", 0.1)
    assert [r["id"] for r in order.rows] == ["c", "b", "a", "x", "y"]
    assert [r["position"] for r in order.rows] == [0, 1, 2, 3, 4]
    assert [r["pick"] for r in order.rows] == [0, None, None, None, None]
    assert [r["score"] is None for r in order.rows] == [False, True, True, True, True]
    assert (order.window, order.candidates, order.k, order.selected) == (3, 2, 1, 1)
    assert ScoreRow.from_dict(order.rows[3]) == kept[0]
