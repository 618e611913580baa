"""`mosaic-it COMMAND --help` and `mosaic-it --version`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib import metadata

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.runner import LaunchOptions

PACKAGE = "mosaic-it-beam"


def version_line() -> str:
    return f"mosaic-it {metadata.version(PACKAGE)}"


def wants_help(argv: Sequence[str]) -> bool:
    return any(token in ("-h", "--help") for token in argv)


def command_help(command: str, options_class: type[PipelineOptions]) -> str:
    """Every option of the command, with its default; Beam's own options are only mentioned."""
    parser = _BeamArgumentParser(
        prog=f"mosaic-it {command}",
        usage=f"mosaic-it {command} [options] [Beam pipeline options]",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Beam pipeline options (--runner, --direct_num_workers, ...) are passed to Beam; see README.md.",
        allow_abbrev=False,
    )
    options_class._add_argparse_args(parser)  # pylint: disable=protected-access
    LaunchOptions._add_argparse_args(parser)  # pylint: disable=protected-access
    parser.add_argument(
        "--config", default=None, help="A recipe: a YAML file of options; flags on the command line override it."
    )
    parser.add_argument(
        "--print-config", action="store_true", help="Print the effective configuration as YAML and run nothing."
    )
    return parser.format_help()
