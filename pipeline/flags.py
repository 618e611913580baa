"""How every command declares a flag."""

from __future__ import annotations

import argparse


def add_flag(parser: argparse.ArgumentParser, name: str, **settings) -> None:
    """`--name`, and for a multi-word name also `--name_with_underscores`: the form Beam,
    Dataflow templates and Airflow generate from an option's name."""
    dest = name.replace("-", "_")
    spellings = [f"--{name}", f"--{dest}"] if dest != name else [f"--{name}"]
    parser.add_argument(*spellings, dest=dest, **settings)
