"""How a command fails: the one-line error of a mistake in its command line, a parser that raises it,
and the exit code of a finished run."""

from __future__ import annotations

import argparse
import os
import sys

from transforms.core.status import EXIT_OK


class UsageError(ValueError):
    """A mistake in the command line, reported as one line."""


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose mistakes become a UsageError instead of an exit."""

    def error(self, message):
        raise UsageError(message)


_PATH_STARTS = ("/", "./", "../", "~")


def check_local_directory(name: str, option: str) -> None:
    """Raises UsageError for a name written as a filesystem path, not a hub id, that is no directory:
    the hub client would otherwise say it is an invalid repository id."""
    if name.startswith(_PATH_STARTS) and not os.path.isdir(os.path.expanduser(name)):
        raise UsageError(f"{option}: no such directory: {name}")


def exit_code(manifest: dict) -> int:
    """The exit code of a finished run, from its manifest's status; a status that is not ok is said on stderr."""
    status = manifest["status"]
    if status["exit_code"] != EXIT_OK:
        print(f"mosaic-it: {status['state']}: {status['detail']}", file=sys.stderr)
    return status["exit_code"]
