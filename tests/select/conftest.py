"""Fixtures of the select tests: tiny tokenizers and models in temporary directories."""

from __future__ import annotations

from pathlib import Path

import pytest
from select_support import OWN_TEMPLATE, build_tiny_model, build_tokenizer


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    """The test tokenizer with its own chat template."""
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"), OWN_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model directory whose tokenizer has its own chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), OWN_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_model_next(tmp_path_factory) -> Path:
    """Another checkpoint of the same shape (other weights): the model of a later round."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model-next"), OWN_TEMPLATE, seed=1)


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model-plain"), None)
