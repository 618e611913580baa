"""`mosaic-it` command line: `mosaic-it COMMAND [options] [Beam pipeline options]`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

from apache_beam.io.filesystems import FileSystems
from apache_beam.runners.runner import PipelineResult

from pipeline.errors import UsageError, check_local_directory, exit_code
from pipeline.mosaic import MOSAIC_OUTPUT, RUN_FOLDER_OUTPUT, build_mosaic_pipeline
from pipeline.options import MosaicOptions, OptionsError, own_option_values, validate
from pipeline.ownership import OutputBusy, check_no_overlap, claimed_output
from pipeline.progress import configure_logging, run_with_progress
from pipeline.recipes import apply_recipe
from pipeline.runner import describes_only, new_pipeline
from pipeline.select_options import SelectOptions
from pipeline.usage import command_help, version_line, wants_help
from reporting.inspection import inspect_command
from reporting.run_stats import mosaic_table
from reporting.verify import verify_command
from transforms.core.config import MosaicConfig
from transforms.core.rules import RulesError, parse_rules
from transforms.core.status import EXIT_BUSY, EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE
from transforms.core.tokens import TokenizerSpecError, load_counter
from transforms.manifest import MANIFEST, read_manifest_at
from transforms.publish import PublishRun, RunFolder
from transforms.read import InputError, expand_inputs

USAGE = """usage: mosaic-it COMMAND [options] [Beam pipeline options]
       mosaic-it COMMAND --help    every option of a command, with its default
       mosaic-it --version
  run       make mosaicked training data (see README.md for every option)
  select    score records with a causal LM and select them the IterIT way (needs the [select] extra)
  report    write DIR/report/index.html with figures of a finished run
  inspect   print samples of a finished run readably
  verify    check a finished run from its files: accounting, exact lengths, order and masking"""


def sample_input() -> str:
    """The sample records shipped with the package, the input when --input is not given."""
    return str(resources.files("pipeline").joinpath("data/sample.jsonl"))


def prepare(argv: Sequence[str]) -> tuple[MosaicOptions, MosaicConfig, list[str]]:
    """Parses and checks the options; returns them, the transforms' configuration and the
    input files. Raises UsageError."""
    options = MosaicOptions(list(argv))
    try:
        validate(options)
        try:
            config = options.config()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"--rules '{options.rules}' cannot be read: {err}") from None
        if config.rules_text is not None:
            parse_rules(config.rules_text, options.rules)
        if options.tokenizer.startswith("hf:"):
            check_local_directory(options.tokenizer.removeprefix("hf:"), "--tokenizer")
        load_counter(options.tokenizer)  # fail now, not inside a worker
        inputs = expand_inputs(options.input or [sample_input()])
    except (OptionsError, RulesError, TokenizerSpecError, InputError) as err:
        raise UsageError(str(err)) from None
    return options, config, inputs


@dataclass(frozen=True)
class Started:
    """A run handed to its runner: the runner's result and the manifest the run will publish."""

    result: PipelineResult
    manifest: str
    ran: bool  # False when the runner only described the job (a Dataflow template launch or dry run)


def start(argv: Sequence[str]) -> Started:
    """Builds the run and hands it to the runner; returns once the job is done or, for a runner
    that only describes the job, once it is described."""
    options, config, inputs = prepare(argv)
    check_no_overlap(options.output, options.input or [], inputs, MOSAIC_OUTPUT)
    run_folder = RunFolder.new_attempt(options.output, options.run_id) if options.run_id else None
    if run_folder:
        # A fresh attempt folder: nothing to clear; the run id's folder is locked.
        directory, manifest = run_folder.attempt_path, run_folder.manifest
        claim = claimed_output(run_folder.path, RUN_FOLDER_OUTPUT, clear=False)
    else:
        directory, manifest = options.output, FileSystems.join(options.output, MANIFEST)
        claim = claimed_output(directory, MOSAIC_OUTPUT)
    with claim:
        own_options = own_option_values(options, MosaicOptions)
        pipeline = new_pipeline(options)
        attempt_manifest = build_mosaic_pipeline(
            pipeline, config, inputs, directory, options.output_formats(), options.num_shards, own_options
        )
        if run_folder:
            attempt_manifest | "PublishRun" >> PublishRun(run_folder)
        result = run_with_progress(pipeline)
    return Started(result, manifest, ran=not describes_only(pipeline))


def run(argv: Sequence[str]) -> dict | None:
    """Runs the mosaic pipeline to completion; returns the manifest, or None when the job was only described."""
    started = start(argv)
    return read_manifest_at(started.manifest) if started.ran else None


def run_command(argv: Sequence[str]) -> int:
    if wants_help(argv):
        print(command_help("run", MosaicOptions), end="")
        return EXIT_OK
    flags = apply_recipe(argv, MosaicOptions)
    if flags is None:  # --print-config
        return 0
    started = start(flags)
    if not started.ran:
        print(f"job described, not run here; it writes {started.manifest} last")
        return EXIT_OK
    document = read_manifest_at(started.manifest)
    print(mosaic_table(document))
    print(f"manifest: {started.manifest}")
    return exit_code(document)


def select_command(argv: Sequence[str]) -> int:
    if wants_help(argv):
        print(command_help("select", SelectOptions), end="")
        return EXIT_OK
    from pipeline.iterit import select_command as select  # imported here: it loads torch (seconds)

    return select(argv)


def report_command(argv: Sequence[str]) -> int:
    from reporting.report import report_command as report  # imported here: it loads matplotlib

    return report(argv)


# Subcommand name -> function taking the remaining arguments and returning an exit code.
# A function raises UsageError for a one-line error message.
COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": run_command,
    "select": select_command,
    "report": report_command,
    "inspect": inspect_command,
    "verify": verify_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(version_line())
        return EXIT_OK
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
        return EXIT_USAGE
    except OutputBusy as err:
        print(f"mosaic-it: busy: {err}", file=sys.stderr)
        return EXIT_BUSY
    except Exception as err:
        failure = environment_failure(err)
        if failure is None:
            raise
        print(f"mosaic-it: error: {failure}", file=sys.stderr)
        return EXIT_ENVIRONMENT


def environment_failure(err: BaseException) -> str | None:
    """One line for an error of the machine rather than of the code (disk full, a file that vanished or
    cannot be written), found in the error or what caused it; None for anything else.

    Runners re-raise a worker's error wrapped in their own, so the chain is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            where = f": {current.filename}" if current.filename else ""
            return f"{current.strerror}{where}"
        current = current.__cause__ or current.__context__
    return None
