import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.core.randomness import HashStream
from transforms.core.wrap import WRAP_MODES, draw_group_size, size_pmf

BOUNDED = [mode for mode in WRAP_MODES if mode != "max_length"]


@given(mode=st.sampled_from(BOUNDED), wrap_max=st.integers(1, 40), name=st.integers(0, 10**9))
def test_sizes_stay_within_one_and_wrap_max(mode, wrap_max, name):
    size = draw_group_size(mode, wrap_max, HashStream("test", name))
    assert 1 <= size <= wrap_max


@pytest.mark.parametrize("mode", BOUNDED)
@pytest.mark.parametrize("wrap_max", [1, 3, 10])
def test_pmf_is_a_distribution(mode, wrap_max):
    pmf = size_pmf(mode, wrap_max)
    assert set(pmf) <= set(range(1, wrap_max + 1))
    assert math.isclose(sum(pmf.values()), 1.0, abs_tol=1e-9)


@pytest.mark.parametrize("mode", BOUNDED)
def test_draws_follow_the_stated_distribution(mode):
    draws = 20_000
    counts = Counter(draw_group_size(mode, 10, HashStream("fit", mode, i)) for i in range(draws))
    for size, p in size_pmf(mode, 10).items():
        tolerance = 5 * math.sqrt(p * (1 - p) / draws) + 1e-4
        assert abs(counts[size] / draws - p) <= tolerance, (mode, size)


def test_original_shapes():
    # Values that pin each mode to the original sampler's formula (wrap_max 10).
    assert size_pmf("exp", 10)[10] == pytest.approx(1 - math.exp(-1), rel=1e-3)  # x < 1 of Exp(1), truncated at 10
    assert size_pmf("pareto", 10)[10] == pytest.approx(
        (1 - 1 / 3) / (1 - 1 / 12)
    )  # Lomax(1) in [0, 2), truncated at 11
    assert size_pmf("logistic2", 10)[10] == pytest.approx(
        (1 / (1 + math.exp(-0.5)) - 0.5) / (1 / (1 + math.exp(-5)) - 0.5)
    )
    assert size_pmf("uniform", 4) == {1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25}
    assert draw_group_size("max_length", 10, HashStream("x")) is None
    assert draw_group_size("fix_max", 7, HashStream("x")) == 7


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown wrap mode"):
        draw_group_size("gaussian", 10, HashStream("x"))
