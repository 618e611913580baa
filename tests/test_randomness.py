import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.core.randomness import HashStream, RecordKeys, StreamNames, digest


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
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=140),
)
def test_a_stream_draws_blake2b_of_its_name_digest_and_a_block_number(name, sizes):
    """Draw i is the (i mod 8)-th big-endian 64-bit word of BLAKE2b-512(digest("stream", name) + i // 8 as
    8 big-endian bytes); choice takes it modulo the size, random() its top 53 bits as a fraction."""
    stream, again = HashStream(name), HashStream(name)
    for i, size in enumerate(sizes):
        block = hashlib.blake2b(digest("stream", name) + (i // 8).to_bytes(8, "big"), digest_size=64).digest()
        value = int.from_bytes(block[8 * (i % 8) : 8 * (i % 8) + 8], "big")
        assert stream.choice(range(size)) == value % size
        assert again.random() == (value >> 11) / 2**53


@given(
    prefix=st.lists(st.one_of(st.integers(), st.text()), max_size=4),
    rest=st.lists(st.one_of(st.integers(), st.text()), min_size=1, max_size=3),
)
def test_named_streams_are_the_streams_of_their_whole_names(prefix, rest):
    named, whole = StreamNames(*prefix)(*rest), HashStream(*prefix, *rest)
    assert [named.bits64() for _ in range(3)] == [whole.bits64() for _ in range(3)]


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


def test_a_stream_restarts_at_any_draw():
    fresh = HashStream(7, "restart at")
    expected = [fresh.bits64() for _ in range(30)]
    stream = HashStream(7, "restart at")
    stream.bits64()
    for at in (0, 1, 5, 8, 9, 17, 29):  # within the blocks hashed so far and beyond them
        again = stream.restarted(at)
        assert again.position == at
        assert [again.bits64() for _ in range(30 - at)] == expected[at:]
