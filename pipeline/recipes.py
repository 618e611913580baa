"""Recipes: `--config recipe.yaml` holds a command's options; flags on the command line override them.

A recipe maps option names (`wrap_mode` or `wrap-mode`) to values (`fields` and `tags` also to a
mapping, the same as their "a=b,c=d" text). It may also hold
Beam's own pipeline options (`runner`, `direct_num_workers`, ...). It becomes command-line
flags placed before the real ones, so argparse's last-one-wins rule gives the precedence.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence, Set
from typing import Any

import yaml
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.errors import CommandParser, UsageError
from pipeline.options import MAPPING_OPTIONS
from pipeline.runner import LaunchOptions


class RecipeError(UsageError):
    """A recipe that cannot be used; the message is one line."""


def _actions(classes: Sequence[type[PipelineOptions]]) -> dict[str, list[argparse.Action]]:
    """Option name (argparse dest) -> its flags; a switch may have two (`--x` and `--no_x`)."""
    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in classes:
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    actions: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            actions.setdefault(action.dest, []).append(action)
    return actions


def _runner_option_classes() -> list[type[PipelineOptions]]:
    """Beam's option classes, and the options of this project's local runs."""
    beam = {str(cls): cls for cls in PipelineOptions.__subclasses__() if cls.__module__.startswith("apache_beam.")}
    return [*beam.values(), LaunchOptions]


def _flags(key: str, value: Any, actions: list[argparse.Action], where: str) -> list[str]:
    if value is None:
        return []
    switches = [action for action in actions if action.nargs == 0]
    if switches:  # store_true / store_false
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: '{key}' takes true or false, got {value!r}")
        return [_flag(action) for action in switches if action.const is value][:1]
    action = actions[0]
    if isinstance(value, dict) and action.dest in MAPPING_OPTIONS:
        value = ",".join(f"{name}={column}" for name, column in value.items())
    values = value if isinstance(value, list) else [value]
    if any(isinstance(item, (dict, list)) for item in values):
        raise RecipeError(f"{where}: '{key}' takes plain values, got {value!r}")
    texts = [str(item).lower() if isinstance(item, bool) else str(item) for item in values]
    if action.nargs in ("+", "*"):
        return [_flag(action), *texts]
    if isinstance(action, argparse._AppendAction):
        return [part for text in texts for part in (_flag(action), text)]
    if len(texts) != 1:
        raise RecipeError(f"{where}: '{key}' takes one value, got a list")
    return [f"{_flag(action)}={texts[0]}"]


def _flag(action: argparse.Action) -> str:
    return next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])


def recipe_flags(path: str, options_class: type[PipelineOptions], overridden: Set[str] = frozenset()) -> list[str]:
    """The command-line flags a recipe file stands for, but for the options named in `overridden` (which the
    command line sets: a list option such as --input would otherwise add to the recipe's list instead of
    replacing it). Raises RecipeError naming an unknown key."""
    try:
        with open(path, encoding="utf-8") as handle:
            recipe = yaml.safe_load(handle)
    except OSError as err:
        raise RecipeError(f"--config '{path}' cannot be read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"--config '{path}' is not valid YAML: {' '.join(str(err).split())}") from None
    if recipe is None:
        return []
    if not isinstance(recipe, dict):
        raise RecipeError(f"--config '{path}' must hold a mapping of option names to values")
    actions = {**_actions(_runner_option_classes()), **_actions([options_class])}
    flags = []
    for key, value in recipe.items():
        dest = str(key).replace("-", "_")
        if dest not in actions:
            close = difflib.get_close_matches(dest, actions, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RecipeError(f"{path}: unknown key '{key}'{hint}")
        if dest not in overridden:
            flags.extend(_flags(str(key), value, actions[dest], path))
    return flags


def effective_config(argv: Sequence[str], options_class: type[PipelineOptions]) -> dict:
    """The command's own options (all of them), then Beam options that differ from their defaults."""
    options = options_class(list(argv))
    own, beam = _actions([options_class]), _actions(_runner_option_classes())
    everything = options.get_all_options(retain_unknown_options=False)
    changed = options.get_all_options(drop_default=True, retain_unknown_options=False)
    config = {dest: everything[dest] for dest in own}
    config.update({dest: value for dest, value in changed.items() if dest in beam and dest not in own})
    return config


def _spellings(options_class: type[PipelineOptions]) -> dict[str, str]:
    """Every flag spelling the command or Beam declares -> its option name (argparse dest)."""
    return {
        spelling: dest
        for dest, actions in {**_actions(_runner_option_classes()), **_actions([options_class])}.items()
        for action in actions
        for spelling in action.option_strings
    }


def _dests(argv: Sequence[str], options_class: type[PipelineOptions]) -> set[str]:
    """The option names the flags in argv set."""
    by_flag = _spellings(options_class)
    return {by_flag[flag] for flag in (token.split("=", 1)[0] for token in argv) if flag in by_flag}


def check_flags(argv: Sequence[str], options_class: type[PipelineOptions]) -> None:
    """Raises UsageError for the first flag that neither the command nor Beam declares, naming the
    closest known flag: a misspelled option never falls through to Beam, which would only warn."""
    known = set(_spellings(options_class)) | {"--config", "--print-config"}
    for token in argv:
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and flag not in known and flag != "--help":
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UsageError(f"unknown option '{flag}'{hint}")


class _RaisingBeamParser(_BeamArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _check_values(flags: Sequence[str], options_class: type[PipelineOptions]) -> None:
    """Raises UsageError, one line, for a value of the command's own options that argparse cannot
    convert (`--epochs abc`); Beam's parser would print its whole usage first."""
    parser = _RaisingBeamParser(add_help=False, allow_abbrev=False)
    for cls in (options_class, LaunchOptions):
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    parser.parse_known_args(list(flags))


def apply_recipe(argv: Sequence[str], options_class: type[PipelineOptions]) -> list[str] | None:
    """Takes `--config FILE` and `--print-config` out of argv; returns the flags to parse, recipe first.

    With --print-config it prints the effective configuration as YAML and returns None.
    """
    parser = CommandParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--config", default=None)
    parser.add_argument("--print-config", dest="print_config", action="store_true")
    known, rest = parser.parse_known_args(list(argv))
    check_flags(rest, options_class)
    given = _dests(rest, options_class)
    flags = (recipe_flags(known.config, options_class, given) if known.config else []) + rest
    _check_values(flags, options_class)
    if known.print_config:
        print(yaml.safe_dump(effective_config(flags, options_class), sort_keys=False, allow_unicode=True), end="")
        return None
    return flags
