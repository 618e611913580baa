"""The dataset card of a mosaic run (README.md and dataset_info.json, `core/dataset_card.py`),
written once every sample file is, from the names of those files."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from transforms.core.dataset_card import (
    CARD,
    LLAMA_FACTORY_INFO,
    CardConfig,
    card_text,
    is_our_card,
    is_our_llama_factory_info,
    llama_factory_text,
)
from transforms.files import write_atomically
from transforms.formats import MESSAGES_PROVENANCE, PARQUET_SCHEMA, SAMPLE_FORMATS
from transforms.manifest import file_names


def _feature(field: pa.Field) -> dict:
    """A Parquet column as a feature of the card's YAML `dataset_info`."""
    if pa.types.is_list(field.type):
        return {"name": field.name, "list": str(field.type.value_type)}
    return {"name": field.name, "dtype": str(field.type)}


_MOSAIC_FEATURES = tuple(_feature(field) for field in PARQUET_SCHEMA)
_MESSAGES_FEATURES = (
    _feature(PARQUET_SCHEMA.field("id")),
    {"name": "messages", "list": [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}]},
    *(_feature(PARQUET_SCHEMA.field(name)) for name in MESSAGES_PROVENANCE),
)
_ALPACA_ENTRY = {"formatting": "alpaca", "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
_MESSAGES_ENTRY = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


def _config(name: str, output_format: str, features: tuple[dict, ...], entry: dict) -> CardConfig:
    fmt = SAMPLE_FORMATS[output_format]
    return CardConfig(name, fmt.prefix, fmt.extension, features, entry)


# In order of preference for the default config; Avro has none (`datasets` cannot read it).
CARD_CONFIGS = (
    _config("mosaics", "jsonl", _MOSAIC_FEATURES, _ALPACA_ENTRY),
    _config("messages", "messages", _MESSAGES_FEATURES, _MESSAGES_ENTRY),
    _config("mosaics", "parquet", _MOSAIC_FEATURES, _ALPACA_ENTRY),
)
_UNLOADABLE = {f"{SAMPLE_FORMATS['avro'].prefix}-*.{SAMPLE_FORMATS['avro'].extension}": "`datasets` cannot read Avro"}


def card_files(names: list[str]) -> dict[str, str]:
    """File name -> text of the card files for a folder holding the sample files `names`."""
    return {
        CARD: card_text(CARD_CONFIGS, names, _UNLOADABLE),
        LLAMA_FACTORY_INFO: llama_factory_text(CARD_CONFIGS, names),
    }


def written_by_this_tool(name: str, data: bytes) -> bool:
    """Whether a card file's bytes prove that a mosaic run wrote it, unchanged since."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if name == CARD:
        return is_our_card(text)
    return name == LLAMA_FACTORY_INFO and is_our_llama_factory_info(text, CARD_CONFIGS)


class _WriteCard(beam.DoFn):
    def __init__(self, directory: str):
        self.directory = directory

    def process(self, _, sample_paths: list[str]):
        for name, text in card_files(file_names(sample_paths)).items():
            path = FileSystems.join(self.directory, name)
            write_atomically(path, text.encode("utf-8"))
            yield path


class WriteDatasetCard(beam.PTransform):
    """Paths of the sample files -> the paths of DIRECTORY/README.md and dataset_info.json, written
    once every sample file is."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, sample_paths):
        return (
            sample_paths.pipeline
            | "Once" >> beam.Create([None])
            | "Write" >> beam.ParDo(_WriteCard(self.directory), beam.pvalue.AsList(sample_paths))
        )
