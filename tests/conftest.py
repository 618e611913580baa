import pytest


@pytest.fixture(scope="session")
def quicktok_lengths():
    from transforms.core.tokens import LengthTemplate, SampleLengths, load_counter

    return SampleLengths(load_counter("quicktok:llama3"), LengthTemplate("raw"))
