import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.core.randomness import HashStream, RecordKeys, digest


@given(
    seed=st.integers(0, 2**40),
    epoch=st.integers(0, 10_000),
    record_id=st.text(st.characters(blacklist_categories=("Cs",))),
)
def test_record_keys_are_the_halves_of_the_record_digest(seed, epoch, record_id):
    value = digest("record", seed, epoch, record_id)
    assert RecordKeys(seed, epoch)(record_id) == (int.from_bytes(value[:8], "big"), int.from_bytes(value[8:], "big"))


@given(
    name=st.text(st.characters(blacklist_categories=("Cs",))),
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=20),
)
def test_a_stream_draws_blake2b_of_its_name_digest_and_a_counter(name, sizes):
    """Draw i is BLAKE2b-64(digest("stream", name) + i as 8 big-endian bytes); choice takes it modulo the size."""
    stream = HashStream(name)
    for i, size in enumerate(sizes):
        value = int.from_bytes(
            hashlib.blake2b(digest("stream", name) + i.to_bytes(8, "big"), digest_size=8).digest(), "big"
        )
        assert stream.choice(range(size)) == value % size


def test_choice_from_nothing_is_an_error():
    with pytest.raises(ValueError):
        HashStream("empty").choice([])


@given(st.lists(st.integers(0, 40), min_size=1, max_size=5))
def test_a_restarted_stream_draws_what_a_fresh_one_draws(lengths):
    fresh = HashStream(7, "restart")
    expected = [fresh.bits64() for _ in range(max(lengths))]
    stream = HashStream(7, "restart")
    for length in lengths:  # each restart rereads draws already made, and maybe makes new ones
        again = stream.restarted()
        assert [again.bits64() for _ in range(length)] == expected[:length]
    assert [stream.bits64() for _ in range(max(lengths))] == expected


def test_a_stream_restarts_at_any_draw_already_made():
    stream = HashStream(7, "restart at")
    expected = [stream.bits64() for _ in range(6)]
    for at in range(7):
        again = stream.restarted(at)
        assert again.position == at
        assert [again.bits64() for _ in range(6 - at)] == expected[at:]
    with pytest.raises(ValueError):
        stream.restarted(8)
