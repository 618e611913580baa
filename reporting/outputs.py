"""Reading what a finished run wrote: its manifest, samples and rejections (any Beam filesystem).

Files are found by their name patterns in the folder given (a run clears earlier
outputs first), so a run folder that was copied or moved can still be read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import cast

import fastavro
from apache_beam.io.filesystems import FileSystems

from transforms.core.fields import FieldMap, parse_field_map
from transforms.core.lengths import LengthTemplate, SampleLengths
from transforms.core.tokens import load_counter
from transforms.manifest import MANIFEST, read_manifest_at


class OutputsError(ValueError):
    """A folder that does not hold the outputs asked for; the message is one line."""


def read_manifest(directory: str) -> dict:
    path = FileSystems.join(directory, MANIFEST)
    if not FileSystems.exists(path):
        raise OutputsError(f"'{directory}' has no {MANIFEST}: not the output folder of a finished mosaic-it run")
    return read_manifest_at(path)


def input_fields(manifest: dict) -> FieldMap:
    """How the run read its inputs' columns (its --fields and --tags), to read them again the same way."""
    options = manifest.get("options", {})
    return parse_field_map(options.get("fields"), options.get("tags"))


def sample_lengths(manifest: dict) -> SampleLengths:
    """Counts under the run's tokenizer, length template and system prompt, as the run counted."""
    template = LengthTemplate(
        manifest["length_template"], manifest["options"].get("system_prompt"), manifest["tokenizer"]
    )
    return SampleLengths(load_counter(manifest["tokenizer"]), template)


def matching(directory: str, pattern: str) -> list[str]:
    """Files of `directory` matching a glob such as `scores-*.jsonl`, sorted."""
    result = FileSystems.match([FileSystems.join(directory, pattern)])[0]
    return sorted(metadata.path for metadata in result.metadata_list)


def json_lines(paths: Sequence[str]) -> Iterator[dict]:
    for path in paths:
        with FileSystems.open(path) as handle:
            for line in iter(handle.readline, b""):
                if line.strip():
                    yield json.loads(line)


def _avro_rows(paths: Sequence[str]) -> Iterator[dict]:
    for path in paths:
        with FileSystems.open(path) as handle:
            for row in fastavro.reader(handle):
                yield cast(dict, row)  # the reader of a record schema yields dicts


def samples(directory: str) -> Iterator[dict]:
    """The samples of a mosaic run in file order, from its JSON lines shards, else its Avro shards."""
    jsonl, avro = matching(directory, "mosaics-*.jsonl"), matching(directory, "mosaics-*.avro")
    if jsonl:
        return json_lines(jsonl)
    if avro:
        return _avro_rows(avro)
    raise OutputsError(
        f"'{directory}' has no mosaics-*.jsonl or mosaics-*.avro samples (run with --formats jsonl or avro)"
    )


def rejected(directory: str) -> Iterator[dict]:
    return json_lines(matching(directory, "rejected-*.jsonl"))
