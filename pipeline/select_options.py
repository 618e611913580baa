"""Pipeline options of `mosaic-it select`, declared once, and their validation."""

from __future__ import annotations

import math
import posixpath

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.flags import add_flag
from pipeline.options import OptionsError, add_input_output, add_limit, shared_checks
from transforms.core.ifd import OWN_TEMPLATE, PROMPT_TEMPLATES
from transforms.core.selection import SCORE_TYPES
from transforms.core.user_cache import user_cache_directory

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
REMOTE_CACHE_DIRECTORY = "ifd-score-cache"  # default --cache beside an output on a remote filesystem


def default_cache_directory(output: str) -> str:
    """The score cache without --cache: the user cache folder for a local output, else beside the output.

    Every select on this machine then shares one cache; workers of a distributed runner cannot reach the
    launching machine's home, so an output on gs:// (or any other remote filesystem) keeps its cache beside it.
    """
    if FileSystems.get_scheme(output) is None:
        return str(user_cache_directory("ifd-scores"))
    return posixpath.join(posixpath.dirname(output.rstrip("/")), REMOTE_CACHE_DIRECTORY)


class SelectOptions(PipelineOptions):
    """The options of `mosaic-it select`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_input_output(parser)
        add_flag(parser, "model", default=None, help="Causal LM that scores: a local directory or a hub id.")
        add_flag(parser, "model-revision", default=None, help="Hub revision of --model (hub ids only).")
        add_flag(parser, "model-tokenizer", default=None, help="Tokenizer directory or hub id. Default: the model's.")
        templates = f"{OWN_TEMPLATE} (the tokenizer's own), {', '.join(PROMPT_TEMPLATES)}, or a Jinja file"
        add_flag(parser, "prompt-template", default=OWN_TEMPLATE, help=f"Chat template: {templates}.")
        add_flag(parser, "max-tokens", type=int, default=2048, help="Tokens of each scored text, at most.")
        call = "Tokens of one model call, padding included (a longer text goes alone)."
        add_flag(parser, "batch-tokens", type=int, default=16384, help=call)
        add_flag(parser, "device", default="auto", help=f"{', '.join(DEVICES)}: auto is cuda when available.")
        add_flag(parser, "dtype", default="auto", help=f"{', '.join(DTYPES)}: auto is bfloat16 on a GPU, else float32.")
        add_flag(parser, "ratio", type=float, default=0.05, help="Share of records to select; above 1, a count.")
        add_flag(parser, "score-type", default="both", help=f"{' or '.join(SCORE_TYPES)}.")
        decay = "Factor on a picked record's TF-IDF terms, for every later pick."
        add_flag(parser, "diversity-decay", type=float, default=0.1, help=decay)
        add_flag(parser, "round", type=int, default=0, help="Round number; rounds after 0 need --previous.")
        add_flag(parser, "previous", default=None, help="Output directory of the previous round.")
        window = "A later round re-scores the first update-ratio x k records of the previous order."
        add_flag(parser, "update-ratio", type=int, default=3, help=window)
        where = (
            f"{user_cache_directory('ifd-scores')} for a local --output, {REMOTE_CACHE_DIRECTORY} beside a remote one"
        )
        cache = f"Score cache directory. Default: {where}."
        add_flag(parser, "cache", default=None, help=cache)
        add_flag(parser, "no-cache", action="store_true", help="Neither read nor write the score cache.")
        add_limit(parser)


def validate(options: SelectOptions, argv: list[str]) -> None:
    """Raises OptionsError with a one-line message for the first option that cannot work."""
    given = {flag.split("=", 1)[0] for flag in argv if flag.startswith("--")}
    ratio = options.ratio
    checks = [
        *shared_checks(options),
        (bool(options.input), "--input is required"),
        ("--output" in given, "--output is required"),
        (bool(options.model), "--model is required"),
        (options.max_tokens >= 2, f"--max-tokens must be at least 2, got {options.max_tokens}"),
        (options.batch_tokens >= 1, f"--batch-tokens must be at least 1, got {options.batch_tokens}"),
        (options.device in DEVICES, f"--device '{options.device}' is unknown; choose one of {', '.join(DEVICES)}"),
        (options.dtype in DTYPES, f"--dtype '{options.dtype}' is unknown; choose one of {', '.join(DTYPES)}"),
        (math.isfinite(ratio) and ratio > 0, f"--ratio must be a positive finite number, got {ratio}"),
        (ratio <= 1 or ratio.is_integer(), f"--ratio above 1 is a count and must be a whole number, got {ratio}"),
        (
            options.score_type in SCORE_TYPES,
            f"--score-type '{options.score_type}' is unknown; choose one of {', '.join(SCORE_TYPES)}",
        ),
        (0 <= options.diversity_decay <= 1, f"--diversity-decay must be within [0, 1], got {options.diversity_decay}"),
        (options.round >= 0, f"--round must not be negative, got {options.round}"),
        (
            options.round == 0 or options.previous,
            f"--round {options.round} needs --previous (the previous round's output)",
        ),
        (options.round > 0 or not options.previous, "--previous needs --round 1 or later"),
        (options.update_ratio >= 1, f"--update-ratio must be at least 1, got {options.update_ratio}"),
        (not (options.no_cache and options.cache), "--cache and --no-cache contradict each other"),
    ]
    for ok, message in checks:
        if not ok:
            raise OptionsError(message)
