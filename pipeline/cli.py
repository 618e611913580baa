"""`mosaic-it` command line: `mosaic-it run [options] [Beam pipeline options]`."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib import resources
from typing import Callable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.errors import UsageError
from pipeline.inspection import inspect_command
from pipeline.mosaic import build_mosaic_pipeline
from pipeline.options import MosaicOptions, OptionsError, validate
from pipeline.progress import configure_logging, run_with_progress
from pipeline.recipes import apply_recipe
from pipeline.report import report_command
from pipeline.run_stats import mosaic_table
from transforms.core.rules import RulesError, load_rules
from transforms.core.tokens import TokenizerSpecError, load_counter
from transforms.read import InputError, expand_inputs
from transforms.write import clear_outputs

USAGE = """usage: mosaic-it COMMAND [options] [Beam pipeline options]
  run       make mosaicked training data (see README.md for every option)
  report    write DIR/report/index.html with figures of a finished run
  inspect   print samples of a finished run readably"""


def sample_input() -> str:
    """The sample records shipped with the package, the input when --input is not given."""
    return str(resources.files("pipeline").joinpath("data/sample.jsonl"))


def prepare(argv: Sequence[str]) -> tuple[MosaicOptions, list[str]]:
    """Parses and checks the options; returns them with the input files. Raises UsageError."""
    options = MosaicOptions(list(argv))
    try:
        validate(options)
        load_rules(options.rules)
        load_counter(options.tokenizer)  # fail now, not inside a worker
        inputs = expand_inputs(options.input or [sample_input()])
    except (OptionsError, RulesError, TokenizerSpecError, InputError) as err:
        raise UsageError(str(err)) from None
    return options, inputs


def run(argv: Sequence[str]) -> dict:
    """Runs the mosaic pipeline to completion; returns the manifest."""
    options, inputs = prepare(argv)
    if not FileSystems.exists(options.output):
        FileSystems.mkdirs(options.output)
    clear_outputs(options.output)
    everything = options.get_all_options(retain_unknown_options=False)
    own_options = {name: everything[name] for name in sorted(_own_option_names())}
    pipeline = beam.Pipeline(options=options)
    build_mosaic_pipeline(pipeline, options.config(), inputs, options.output, options.output_formats(), options.num_shards, own_options)
    run_with_progress(pipeline)
    with FileSystems.open(FileSystems.join(options.output, "manifest.json")) as handle:
        return json.loads(handle.read())


def _own_option_names() -> set[str]:
    parser = argparse.ArgumentParser()
    MosaicOptions._add_argparse_args(parser)
    return set(vars(parser.parse_args([])))


def run_command(argv: Sequence[str]) -> int:
    flags = apply_recipe(argv, MosaicOptions)
    if flags is not None:
        print(mosaic_table(run(flags)))
    return 0


# Subcommand name -> function taking the remaining arguments and returning an exit code.
# A function raises UsageError for a one-line error message.
COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": run_command,
    "report": report_command,
    "inspect": inspect_command,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"mosaic-it: error: unknown command '{command}'; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.WARNING)
    configure_logging()
    try:
        return COMMANDS[command](rest)
    except UsageError as err:
        print(f"mosaic-it: error: {err}", file=sys.stderr)
        return 2
