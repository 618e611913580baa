import pytest


@pytest.fixture(scope="session")
def quicktok_lengths():
    from transforms.core.lengths import LengthTemplate, SampleLengths
    from transforms.core.tokens import load_counter

    return SampleLengths(load_counter("quicktok:llama3"), LengthTemplate("raw"))
