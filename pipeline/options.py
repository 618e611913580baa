"""Pipeline options of `mosaic-it run`, declared once, and their validation."""

from __future__ import annotations

import argparse
import re

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.errors import check_local_directory
from pipeline.flags import add_flag
from pipeline.runner import LaunchOptions
from transforms.core.config import MosaicConfig
from transforms.core.fields import FIELD_NAMES, TAG_NAMES, FieldMap, field_spec_problem, parse_field_map
from transforms.core.lengths import LENGTH_TEMPLATES, LengthTemplate, LengthTemplateError
from transforms.core.strategies import STRATEGIES
from transforms.core.tokens import DEFAULT_TOKENIZER
from transforms.core.wrap import WRAP_MODES
from transforms.formats import SAMPLE_FORMATS

DEFAULT_OUTPUT = "./mosaic-output"
MAPPING_OPTIONS = ("fields", "tags")  # a recipe may give these as a mapping instead of "a=b,c=d"
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one folder name on every filesystem


class OptionsError(ValueError):
    """An option value that cannot work; the message is one line naming the option."""


def own_option_values(options: PipelineOptions, options_class: type[PipelineOptions]) -> dict:
    """The values of the options `options_class` declares (not Beam's), by name, sorted."""
    parser = _BeamArgumentParser()
    options_class._add_argparse_args(parser)
    everything = options.get_all_options(retain_unknown_options=False)
    return {name: everything[name] for name in sorted(vars(parser.parse_args([])))}


def add_input_output(parser: argparse.ArgumentParser) -> None:
    """--input, --output, --fields, --tags and --max-reject-ratio, which every command shares. Beam parses the options of all loaded
    PipelineOptions classes together, so a flag may be declared only once among them."""
    if "--input" in parser._option_string_actions:
        return
    add_flag(
        parser,
        "input",
        nargs="+",
        action="extend",
        default=None,
        help="One or more globs of JSONL (.jsonl, .jsonl.gz, .jsonl.zst), JSON-array (.json) or Parquet files; repeat --input to add "
        "more. Default for run: the sample records shipped with the package.",
    )
    add_flag(
        parser,
        "output",
        default=DEFAULT_OUTPUT,
        help=f"Output directory (local path or any Beam filesystem URL). Default for run: {DEFAULT_OUTPUT}; "
        "select needs it.",
    )
    add_flag(
        parser,
        "max-reject-ratio",
        type=float,
        default=0.5,
        help="Exit with code 5 when more than this share of the records is rejected (the outputs are written).",
    )
    add_flag(
        parser,
        "fields",
        default=None,
        help=f"Input columns of a record's parts, as NAME=COLUMN pairs ({', '.join(FIELD_NAMES)}), e.g. "
        "instruction=query,output=response; messages=COLUMN names a conversation column. Default: the built-in shapes.",
    )
    add_flag(
        parser,
        "tags",
        default=None,
        help=f"Keys and role names inside conversation turns, as TAG=VALUE pairs ({', '.join(TAG_NAMES)}), "
        "e.g. role_tag=from,content_tag=value,user_tag=human,assistant_tag=gpt.",
    )


def add_limit(parser: argparse.ArgumentParser) -> None:
    """--limit, which every command shares (declared once, as add_input_output's flags)."""
    if "--limit" in parser._option_string_actions:
        return
    add_flag(
        parser,
        "limit",
        type=int,
        default=0,
        help="Read only the first N records of the input in input order (files sorted by path, then line order), "
        "for a trial run; the records after them are neither read nor rejected. 0: no limit.",
    )


class MosaicOptions(PipelineOptions):
    """The options of `mosaic-it run`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_input_output(parser)
        tokenizers = "quicktok:<llama3|qwen3|cl100k_base|o200k_base> or hf:<hub id or local directory>"
        add_flag(parser, "tokenizer", default=DEFAULT_TOKENIZER, help=f"{tokenizers}.")
        templates = ", ".join(LENGTH_TEMPLATES)
        add_flag(parser, "length-template", default="raw", help=f"What is counted: {templates}.")
        add_flag(parser, "system-prompt", default=None, help="System prompt the length template counts (not raw).")
        add_flag(parser, "epochs", type=int, default=4, help="Passes over the data.")
        add_flag(parser, "epoch-offset", type=int, default=0, help="Number of the first epoch (reruns use fresh ones).")
        add_flag(parser, "seed", type=int, default=0, help="Seed of every random choice.")
        add_flag(parser, "wrap-mode", default="uniform", help=f"Group-size distribution: {', '.join(WRAP_MODES)}.")
        add_flag(parser, "wrap-max", type=int, default=10, help="Largest group size the distribution draws.")
        add_flag(parser, "max-length", type=int, default=2000, help="Token budget of one sample.")
        add_flag(parser, "strategy", default="both", help=f"Mosaic strategy: {', '.join(STRATEGIES)}.")
        add_flag(parser, "rules", default=None, help="Rules and phrasings file replacing the built-in one.")
        outputs = ", ".join(SAMPLE_FORMATS)
        add_flag(parser, "formats", default="jsonl,avro", help=f"Comma-separated sample outputs: {outputs}.")
        add_flag(parser, "num-shards", type=int, default=0, help="Sample output shards; 0 chooses from the data size.")
        unit = "Records per packing key and epoch (the unit of parallelism)."
        add_flag(parser, "records-per-key", type=int, default=2048, help=unit)
        add_flag(
            parser,
            "run-id",
            default=None,
            help="Publish this run as OUTPUT/RUN_ID/: written into a fresh attempt folder, then "
            "OUTPUT/RUN_ID/manifest.json is written last, listing the files; a rerun of the id replaces it.",
        )
        add_limit(parser)

    def output_formats(self) -> list[str]:
        return [name.strip() for name in self.formats.split(",") if name.strip()]

    def config(self) -> MosaicConfig:
        """The transforms' configuration; reads the --rules file (see read_rules_text)."""
        return MosaicConfig(
            tokenizer=self.tokenizer,
            length_template=self.length_template,
            system_prompt=self.system_prompt,
            rules_text=read_rules_text(self.rules),
            seed=self.seed,
            epochs=self.epochs,
            epoch_offset=self.epoch_offset,
            strategy=self.strategy,
            wrap_mode=self.wrap_mode,
            wrap_max=self.wrap_max,
            max_length=self.max_length,
            records_per_key=self.records_per_key,
        )


def read_rules_text(path: str | None) -> str | None:
    """The text of a --rules file on any Beam filesystem, or None for the built-in rules.

    It is read once, when the run starts, and travels with the pipeline: workers never
    open the file, so a local path works on Dataflow and Flink too, and editing the file
    during a run changes nothing.
    """
    if path is None:
        return None
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8")


def shared_checks(options: PipelineOptions) -> list[tuple[bool, str]]:
    """(holds, message) of the options add_input_output declares."""
    ratio = options.max_reject_ratio
    fields_problem = field_spec_problem(options.fields, options.tags)
    return [
        (fields_problem is None, str(fields_problem)),
        (0 <= ratio <= 1, f"--max-reject-ratio must be within [0, 1], got {ratio}"),
        (options.limit >= 0, f"--limit must not be negative, got {options.limit}"),
    ]


def field_map(options: dict) -> FieldMap:
    """The FieldMap of a command's --fields and --tags, from its own option values (own_option_values)."""
    return parse_field_map(options.get("fields"), options.get("tags"))


def validate(options: MosaicOptions) -> None:
    """Raises OptionsError with a one-line message for the first option that cannot work."""
    pack_processes = options.view_as(LaunchOptions).pack_processes
    checks = [
        *shared_checks(options),
        (
            options.wrap_mode in WRAP_MODES,
            f"--wrap-mode '{options.wrap_mode}' is unknown; choose one of {', '.join(WRAP_MODES)}",
        ),
        (
            options.strategy in STRATEGIES,
            f"--strategy '{options.strategy}' is unknown; choose one of {', '.join(STRATEGIES)}",
        ),
        (options.max_length >= 1, f"--max-length must be at least 1, got {options.max_length}"),
        (options.wrap_max >= 1, f"--wrap-max must be at least 1, got {options.wrap_max}"),
        (options.epochs >= 1, f"--epochs must be at least 1, got {options.epochs}"),
        (options.epoch_offset >= 0, f"--epoch-offset must not be negative, got {options.epoch_offset}"),
        (options.num_shards >= 0, f"--num-shards must not be negative, got {options.num_shards}"),
        (options.records_per_key >= 1, f"--records-per-key must be at least 1, got {options.records_per_key}"),
        (pack_processes >= 0, f"--pack-processes must not be negative, got {pack_processes}"),
        (
            options.run_id is None or RUN_ID.fullmatch(options.run_id) is not None,
            f"--run-id '{options.run_id}' must be letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
    ]
    unknown_formats = [name for name in options.output_formats() if name not in SAMPLE_FORMATS]
    checks.append(
        (
            not unknown_formats,
            f"--formats has unknown output(s) {unknown_formats}; choose from {', '.join(SAMPLE_FORMATS)}",
        )
    )
    checks.append((bool(options.output_formats()), "--formats names no output"))
    for ok, message in checks:
        if not ok:
            raise OptionsError(message)
    check_length_template(options)


def check_length_template(options: MosaicOptions) -> None:
    """The template with its system prompt works with the tokenizer (`chat` loads the tokenizer's chat template)."""
    if options.length_template == "chat" and options.tokenizer.startswith("hf:"):
        check_local_directory(options.tokenizer.removeprefix("hf:"), "--tokenizer")
    try:
        LengthTemplate(options.length_template, options.system_prompt, options.tokenizer)
    except LengthTemplateError as err:
        raise OptionsError(str(err)) from None
