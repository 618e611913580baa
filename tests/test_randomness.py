from hypothesis import given
from hypothesis import strategies as st

from transforms.core.randomness import RecordKeys, digest


@given(seed=st.integers(0, 2**40), epoch=st.integers(0, 10_000), record_id=st.text(st.characters(blacklist_categories=("Cs",))))
def test_record_keys_are_the_halves_of_the_record_digest(seed, epoch, record_id):
    value = digest("record", seed, epoch, record_id)
    assert RecordKeys(seed, epoch)(record_id) == (int.from_bytes(value[:8], "big"), int.from_bytes(value[8:], "big"))
