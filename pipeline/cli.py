"""`mosaic-it` command line: `mosaic-it COMMAND [options] [Beam pipeline options]`."""
from __future__ import annotations

import json
import logging
import sys
from importlib import resources
from typing import Callable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.mosaic import build_mosaic_pipeline
from pipeline.options import MosaicOptions, OptionsError, UsageError, own_option_values, validate
from pipeline.select import select_command
from transforms.core.rules import RulesError, load_rules
from transforms.core.tokens import TokenizerSpecError, load_counter
from transforms.read import InputError, expand_inputs
from transforms.write import clear_outputs

USAGE = (
    "usage: mosaic-it COMMAND [options] [Beam pipeline options]\n"
    "  run     make mosaicked training data (see README.md for every option)\n"
    "  select  score records with a causal LM and select them the IterIT way (needs the [select] extra)"
)


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
    own_options = own_option_values(options, MosaicOptions)
    with beam.Pipeline(options=options) as pipeline:
        build_mosaic_pipeline(
            pipeline, options.config(), inputs, options.output, options.output_formats(), options.num_shards, own_options
        )
    with FileSystems.open(FileSystems.join(options.output, "manifest.json")) as handle:
        return json.loads(handle.read())


def summary(document: dict) -> str:
    counts = document["counts"]
    lines = [
        f"records read: {counts['records_read']}   rejected: {counts['records_rejected']}   samples: {counts['samples']}",
        "per epoch (samples / records): " + ", ".join(
            f"{epoch}: {n} / {counts['records_per_epoch'].get(epoch, 0)}" for epoch, n in counts["samples_per_epoch"].items()
        ),
        "strategies: " + ", ".join(f"{k} {v}" for k, v in counts["strategy"].items()),
        "rejected: " + (", ".join(f"{k} {v}" for k, v in counts["rejected"].items()) or "none"),
        f"outputs: {document['options']['output']}",
    ]
    return "\n".join(lines)


def run_command(argv: Sequence[str]) -> int:
    print(summary(run(argv)))
    return 0


# Subcommand name -> function taking the remaining arguments and returning an exit code.
# A function raises UsageError for a one-line error message.
COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": run_command,
    "select": select_command,
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
    try:
        return COMMANDS[command](rest)
    except UsageError as err:
        print(f"mosaic-it: error: {err}", file=sys.stderr)
        return 2
