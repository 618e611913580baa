"""Run folders: a run with `--run-id ID` publishes `OUTPUT/ID/manifest.json`, last.

The run writes into a fresh attempt folder `OUTPUT/ID/attempt-<token>/` (shards and that
attempt's manifest, exactly as a plain run writes `OUTPUT/`). Once the attempt's manifest is
written, publishing copies it to `OUTPUT/ID/manifest.json` in one atomic write (a rename on
local disks, a single object on object stores) and then deletes every other attempt folder.

The published manifest lists the files of one complete attempt, so a reader that waits for it
never sees a half-written or failed attempt, and a rerun of the same id replaces the run in one
step. Folders are never renamed: object stores cannot rename a folder atomically.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.files import write_atomically
from transforms.manifest import MANIFEST

ATTEMPT_PREFIX = "attempt-"


@dataclass(frozen=True)
class RunFolder:
    """Where one attempt of a run writes, and where the run is published."""

    output: str
    run_id: str
    attempt: str  # the attempt folder's name, "attempt-<UTC time>-<random>"

    @classmethod
    def new_attempt(cls, output: str, run_id: str) -> RunFolder:
        token = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        return cls(output, run_id, ATTEMPT_PREFIX + token)

    @property
    def path(self) -> str:
        return FileSystems.join(self.output, self.run_id)

    @property
    def attempt_path(self) -> str:
        return FileSystems.join(self.path, self.attempt)

    @property
    def manifest(self) -> str:
        return FileSystems.join(self.path, MANIFEST)


def stale_attempts(run_path: str, paths: Iterable[str], keep: str) -> list[str]:
    """The attempt folders other than `keep` that `paths` (files under `run_path`) lie in."""
    prefix = run_path.rstrip("/") + "/"
    names = {path[len(prefix) :].split("/", 1)[0] for path in paths if path.startswith(prefix)}
    return [prefix + name for name in sorted(names) if name.startswith(ATTEMPT_PREFIX) and name != keep]


def delete_folders(folders: list[str]) -> None:
    """Deletes whole folders: named as they are on filesystems with folders, with a trailing slash on object stores."""
    if folders:
        has_dirs = FileSystems.get_filesystem(folders[0]).has_dirs()
        FileSystems.delete([folder if has_dirs else folder + "/" for folder in folders])


class _Publish(beam.DoFn):
    def __init__(self, run: RunFolder):
        self.run = run

    def process(self, attempt_manifest: str):
        with FileSystems.open(attempt_manifest) as handle:
            write_atomically(self.run.manifest, handle.read())
        pattern = FileSystems.join(self.run.path, ATTEMPT_PREFIX + "*", "**")  # every file of every attempt
        matched = [metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list]
        delete_folders(stale_attempts(self.run.path, matched, self.run.attempt))
        yield self.run.manifest


class PublishRun(beam.PTransform):
    """The attempt's manifest path -> the published manifest path, once published.

    Runs inside the job, so a run launched without a waiting driver (a Dataflow Flex Template)
    publishes too. Publishing again is harmless, so a retried bundle does no damage.
    """

    def __init__(self, run: RunFolder):
        super().__init__()
        self.run = run

    def expand(self, attempt_manifest):
        return attempt_manifest | "Publish" >> beam.ParDo(_Publish(self.run))
