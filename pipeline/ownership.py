"""Which output folder a run may write and clear, and one run at a time in it.

A run claims its output folder before it reads anything:

- it refuses an output that overlaps its inputs (an input file inside the output, or output
  files an input glob would match, so a rerun never reads its own earlier output);
- it refuses a folder holding files this tool did not write, or another command's results;
  a folder is this command's when it carries the marker file `.mosaic-it` naming the command
  (written on the first claim), or, for folders written before the marker existed, when its
  manifest names the command;
- it holds a lock (an advisory lock on the marker, on local filesystems) for the whole run, so
  a second run into the same folder or run id refuses at once; the lock dies with the process
  that holds it, so a crashed run never blocks the next one;
- only then does it delete what an earlier run left: files named exactly as this command names
  its outputs (`mosaics-00000-of-00004.jsonl`, ...), its manifest, and temporary files of
  killed writes. Nothing else in the folder is ever deleted.

Files with names anyone may use (the dataset card, `README.md` and `dataset_info.json`) are the
command's only when their bytes prove it (`OutputKind.wrote_card`); a folder holding one that
does not is refused, since the run would replace it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from pipeline.errors import UsageError
from transforms.manifest import MANIFEST, read_manifest_at

MARKER = ".mosaic-it"
_TEMPORARY = re.compile(r".+\.tmp-[0-9a-f]{32}")  # transforms/files.py:write_atomically


class OutputBusy(Exception):
    """Another run holds the output folder or run id."""


@dataclass(frozen=True)
class OutputKind:
    """The files one command writes into its output folder."""

    tool: str
    shard_prefixes: tuple[str, ...] = ()  # files PREFIX-SSSSS-of-NNNNN.EXT
    extensions: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # single files besides the manifest
    folder_prefix: str | None = None  # folders it writes (the attempt folders of a run id)
    cards: tuple[str, ...] = ()  # files it writes that are its own only when wrote_card(name, bytes) says so
    wrote_card: Callable[[str, bytes], bool] | None = None

    def owns(self, name: str) -> bool:
        """True for a file name this command writes (or a temporary file of one)."""
        shard = rf"({'|'.join(map(re.escape, self.shard_prefixes))})-\d{{5}}-of-\d{{5}}\."
        shard += rf"({'|'.join(map(re.escape, self.extensions))})"
        return (
            re.fullmatch(shard, name) is not None
            or name in (MANIFEST, *self.names)
            or _TEMPORARY.fullmatch(name) is not None
            or (self.folder_prefix is not None and name.startswith(self.folder_prefix))
        )

    def example_names(self) -> list[str]:
        shards = [f"{p}-00000-of-00001.{e}" for p in self.shard_prefixes for e in self.extensions]
        return [*shards, MANIFEST, *self.names, *self.cards]

    def owns_file(self, directory: str, name: str) -> bool:
        """True for a file of the folder this command wrote: by its name, or for a card by its bytes."""
        return self.owns(name) or self._proven_card(directory, name)

    def foreign_card(self, directory: str, names: Sequence[str]) -> str | None:
        """A card name among `names` whose file this command did not write (so a run would replace it)."""
        return next((name for name in names if name in self.cards and not self._proven_card(directory, name)), None)

    def _proven_card(self, directory: str, name: str) -> bool:
        if name not in self.cards or self.wrote_card is None:
            return False
        try:
            with FileSystems.open(FileSystems.join(directory, name)) as handle:
                return self.wrote_card(name, handle.read())
        except OSError:
            return False


def _is_local(path: str) -> bool:
    try:
        return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)
    except ValueError:
        return False


def normalized(path: str) -> str:
    """A path compared by meaning: absolute and without `..` for local paths, without a trailing slash."""
    return os.path.abspath(path) if _is_local(path) else path.rstrip("/")


def _glob_regex(pattern: str) -> re.Pattern:
    """A glob as Beam's filesystems read it: `*` and `?` stay within a folder, `**` crosses folders."""
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    wildcard = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcard.get(part, re.escape(part)) for part in parts))


def check_no_overlap(output: str, input_patterns: Sequence[str], inputs: Sequence[str], kind: OutputKind) -> None:
    """Raises UsageError when the output folder and the inputs overlap."""
    folder = normalized(output)
    for path in inputs:
        if normalized(path).startswith(folder + "/"):
            raise UsageError(f"--input file '{path}' lies inside --output '{output}'; write the output elsewhere")
    for pattern in input_patterns:
        regex = _glob_regex(normalized(pattern))
        for name in kind.example_names():
            if regex.fullmatch(posixpath.join(folder, name)):
                raise UsageError(
                    f"--input '{pattern}' would match this run's own output files in --output '{output}' "
                    f"(e.g. {name}); write the output elsewhere"
                )


def _check_owner(directory: str, kind: OutputKind) -> None:
    """Raises UsageError unless the folder is empty, or holds this command's outputs and no card it
    did not write."""
    names = sorted(os.listdir(directory))
    if not names:
        return
    _check_cards(directory, kind, names)
    if MARKER in names:
        marked = _marker_tool(os.path.join(directory, MARKER))
        if marked == kind.tool:
            return
        raise UsageError(f"--output '{directory}' holds the results of `{marked}`; choose another folder")
    if MANIFEST in names:
        written_by = _manifest_tool(os.path.join(directory, MANIFEST))
        if written_by == kind.tool:
            return
        if written_by is not None:
            raise UsageError(f"--output '{directory}' holds the results of `{written_by}`; choose another folder")
    foreign = next((name for name in names if not kind.owns_file(directory, name)), names[0])
    raise UsageError(
        f"--output '{directory}' holds files this tool did not write (e.g. '{foreign}'); choose an empty or new folder"
    )


def _check_cards(directory: str, kind: OutputKind, names: Sequence[str]) -> None:
    foreign = kind.foreign_card(directory, names)
    if foreign is not None:
        raise UsageError(
            f"--output '{directory}' holds a {foreign} this tool did not write, which the run would replace; "
            "move it or choose another folder"
        )


def _manifest_tool(path: str) -> str | None:
    """The `tool` a manifest names, or None when the file is no manifest of this project."""
    try:
        tool = read_manifest_at(path).get("tool")
    except (OSError, ValueError, AttributeError):
        return None
    return tool if isinstance(tool, str) and tool.startswith("mosaic-it ") else None


def _marker_tool(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return str(json.load(handle).get("tool"))
    except (OSError, ValueError, AttributeError):
        return "an unknown tool"


@contextlib.contextmanager
def _locked(directory: str, kind: OutputKind) -> Iterator[None]:
    """Holds the folder's lock, creating its marker; raises OutputBusy while another process holds it."""
    try:
        descriptor = os.open(os.path.join(directory, MARKER), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UsageError(f"--output '{directory}' cannot be written: {err.strerror}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusy(
                f"'{directory}' is in use by another mosaic-it run (it holds the lock on {MARKER}); "
                "wait for it to finish or choose another folder"
            ) from None
        marker = (json.dumps({"tool": kind.tool}) + "\n").encode("utf-8")
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, marker, 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _clear(directory: str, kind: OutputKind) -> None:
    """Deletes what an earlier run of this command left: its outputs, manifest and temporary files."""
    for name in os.listdir(directory):
        if kind.owns_file(directory, name):
            os.remove(os.path.join(directory, name))


def _prepare_folder(directory: str) -> None:
    if FileSystems.exists(directory) and _is_local(directory) and not os.path.isdir(directory):
        raise UsageError(f"--output '{directory}' is a file, not a folder")
    try:
        if not FileSystems.exists(directory):
            FileSystems.mkdirs(directory)
    except OSError as err:
        raise UsageError(f"--output '{directory}' cannot be created: {err}") from None


@contextlib.contextmanager
def claimed_output(directory: str, kind: OutputKind, *, clear: bool = True) -> Iterator[None]:
    """Claims `directory` for one run of `kind` (see the module's docstring) and holds it until the
    block ends. With `clear` False (a fresh attempt folder of a run id) nothing is deleted.

    Checks are made on local filesystems; on object stores the folder is created and cleared by
    name as before, and concurrent runs must use distinct run ids.
    """
    if not _is_local(directory):
        if clear:
            _prepare_folder(directory)
            _clear_remote(directory, kind)
        yield
        return
    _prepare_folder(directory)
    _check_owner(directory, kind)
    with _locked(directory, kind):
        if clear:
            _clear(directory, kind)
        yield


def _clear_remote(directory: str, kind: OutputKind) -> None:
    result = FileSystems.match([FileSystems.join(directory, "*")])[0]
    names = [m.path.rsplit("/", 1)[-1] for m in result.metadata_list]
    _check_cards(directory, kind, names)
    stale = [FileSystems.join(directory, name) for name in names if kind.owns_file(directory, name)]
    if stale:
        FileSystems.delete(stale)
