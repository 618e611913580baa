"""Files on any Beam filesystem: shard names and atomic writes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from transforms.formats import OutputFormat


def shard_name(directory: str, fmt: OutputFormat, shard: int, num_shards: int) -> str:
    return FileSystems.join(directory, f"{fmt.prefix}-{shard:05d}-of-{num_shards:05d}.{fmt.extension}")


def write_atomically(path: str, data: bytes) -> None:
    """Writes to a unique temporary name, then renames, so a reader never sees half a file."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temporary) as handle:
        handle.write(data)
    FileSystems.rename([temporary], [path])


def write_shard(directory: str, formats: Sequence[OutputFormat], shard: int, num_shards: int, rows: list) -> list[str]:
    """Writes one shard's rows in every format; returns the files' paths."""
    paths = []
    for fmt in formats:
        path = shard_name(directory, fmt, shard, num_shards)
        write_atomically(path, fmt.encode(rows, path.rsplit("/", 1)[-1]))
        paths.append(path)
    return paths
