"""The error every command raises for a mistake in its command line, and a parser that raises it."""

from __future__ import annotations

import argparse


class UsageError(ValueError):
    """A mistake in the command line, reported as one line."""


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose mistakes become a UsageError instead of an exit."""

    def error(self, message):
        raise UsageError(message)
