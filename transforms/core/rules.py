"""The rules data file: formats and meta-instruction phrasings, loaded and validated."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, TypeVar

import yaml

from transforms.core.rulebook import MASK_RULES, PERMUTE_RULES, Rule

FORMAT_KINDS = ("numbered_tagged", "numbered", "tagged", "plain")

# Placeholders each kind of phrasing must contain (all of them) and may contain.
_FORMAT_FIELDS = {
    "numbered_tagged": {"label", "begin", "end"},
    "numbered": {"label"},
    "tagged": {"begin", "end"},
    "plain": set(),
}

# Placeholders of a tag style: the tag word pair's two words and the instruction number.
_TAG_FIELDS = {"word", "end_word", "n"}
# How the tag words of a sample are written; one is drawn per sample.
TAG_CASES: tuple[Callable[[str], str], ...] = (str.lower, str.upper, str.capitalize)

RuleT = TypeVar("RuleT", bound=Rule)

BUILT_IN_RULES = resources.files("transforms").joinpath("data/rules.yaml")


class RulesError(ValueError):
    """The rules file is malformed; the message names the offending entry."""


@dataclass(frozen=True)
class ListStyle:
    sep: str
    last: str

    def join(self, numbers: list[int]) -> str:
        words = [str(number) for number in numbers]
        if len(words) < 2:
            return "".join(words)
        return self.sep.join(words[:-1]) + self.last + words[-1]


@dataclass(frozen=True)
class MaskPhrasings:
    one: tuple[str, ...]
    many: tuple[str, ...]


@dataclass(frozen=True)
class Structure:
    """How a sample is laid out, as probabilities; the defaults are the original's rates."""

    bare_format: float = 0.2  # of format samples: neither tags nor a meta-instruction (~10% of all with `both`)
    meta_before: float = 0.5  # each meta-instruction (format, rule), drawn apart: before the list, else after
    unnumbered: float = 0.09  # instructions without labels (rules naming numbers are then not drawn)
    tagged: float = 0.5  # of samples that are not bare: begin/end tags around each response


STRUCTURE_KNOBS = tuple(knob.name for knob in fields(Structure))
_SECTIONS = {
    "structure",
    "labels",
    "tag_styles",
    "tag_words",
    "instruction_separators",
    "meta_separators",
    "response_separator",
    "number_lists",
    "sequences",
    "format",
    "permute",
    "maskout",
}


@dataclass(frozen=True)
class Rules:
    labels: tuple[str, ...]
    tag_styles: tuple[tuple[str, str], ...]  # (begin, end), with {word}, {end_word} and optionally {n}
    tag_words: tuple[tuple[str, str], ...]  # (word, end word)
    instruction_separators: tuple[str, ...]
    meta_separators: tuple[str, ...]
    response_separator: str
    number_lists: tuple[ListStyle, ...]
    sequences: tuple[ListStyle, ...]
    format: Mapping[str, tuple[str, ...]]
    permute: Mapping[str, tuple[str, ...]]
    maskout: Mapping[str, MaskPhrasings]
    structure: Structure = Structure()

    def tag_choices(self) -> list[tuple[tuple[str, str], tuple[str, str]]]:
        """Every (tag style, (begin word, end word) cased) a sample may draw."""
        return [
            (style, (case(word), case(end_word)))
            for style in self.tag_styles
            for word, end_word in self.tag_words
            for case in TAG_CASES
        ]

    def all_tags(self, n: object) -> list[tuple[str, str]]:
        """Every (begin, end) tag pair a sample may draw, numbered n."""
        return [filled_tags(style, *words, n) for style, words in self.tag_choices()]

    def all_phrasings(self) -> list[str]:
        """Every meta-instruction phrasing, as the sample checker recognizes them."""
        phrasings = [p for kind in self.format.values() for p in kind]
        phrasings += [p for rule in self.permute.values() for p in rule]
        phrasings += [p for rule in self.maskout.values() for p in rule.one + rule.many]
        return phrasings


def filled_tags(style: tuple[str, str], word: str, end_word: str, n: object) -> tuple[str, str]:
    """The (begin, end) tags of a tag style, given the tag words (cased) and the number."""
    return (style[0].format(word=word, end_word=end_word, n=n), style[1].format(word=word, end_word=end_word, n=n))


def load_rules(path: str | None = None) -> Rules:
    """Loads the rules file at `path` (a local file), or the one shipped with the package."""
    if path is None:
        return parse_rules(BUILT_IN_RULES.read_text(encoding="utf-8"), "built-in rules")
    with open(path, encoding="utf-8") as handle:
        return parse_rules(handle.read(), path)


def parse_rules(text: str, where: str) -> Rules:
    """The rules in the text of a rules file; `where` names the file in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RulesError(f"{where}: not valid YAML: {err}") from err
    try:
        return _parse(data)
    except RulesError as err:
        raise RulesError(f"{where}: {err}") from None


def _parse(data: Any) -> Rules:
    if not isinstance(data, dict):
        raise RulesError("expected a mapping at the top level")
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise RulesError(f"unknown section(s) {unknown}; a rules file has {sorted(_SECTIONS)}")
    if "" in data.get("labels", ()):
        raise RulesError("'labels': \"\" is not a label; the share of unnumbered samples is structure.unnumbered")
    labels = _strings(data, "labels", fields={"n"}, required={"n"})
    format_phrasings = {}
    formats = _mapping(data, "format")
    for kind in FORMAT_KINDS:
        format_phrasings[kind] = _strings(
            formats, kind, fields=_FORMAT_FIELDS[kind], required=_FORMAT_FIELDS[kind], where="format"
        )
    permute = {
        rule.name: _strings(
            table, rule.name, fields=rule.allowed, required=rule.placeholders.get("phrasings", set()), where="permute"
        )
        for rule, table in _rule_table(data, PERMUTE_RULES)
    }
    maskout = {}
    for rule, table in _rule_table(data, MASK_RULES):
        entry = _mapping(table, rule.name, where="maskout")
        forms = {
            form: _strings(
                entry,
                form,
                fields=rule.allowed,
                required=rule.placeholders.get(form, set()),
                where=f"maskout.{rule.name}",
                optional=form == "one",
            )
            for form in rule.forms
        }
        maskout[rule.name] = MaskPhrasings(forms["one"] or forms["many"], forms["many"])
    return Rules(
        labels=labels,
        tag_styles=_tag_styles(data),
        tag_words=_tag_words(data),
        instruction_separators=_strings(data, "instruction_separators"),
        meta_separators=_meta_separators(data),
        response_separator=_string(data, "response_separator"),
        number_lists=_list_styles(data, "number_lists"),
        sequences=_list_styles(data, "sequences"),
        format=format_phrasings,
        permute=permute,
        maskout=maskout,
        structure=_structure(data),
    )


def _rule_table(data: dict, known: Mapping[str, RuleT]) -> list[tuple[RuleT, dict]]:
    """(rule, the section's mapping) for each rule of the section the file names, in the rulebook's order."""
    section = next(iter(known.values())).kind
    table = _mapping(data, section)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise RulesError(f"{section}: unknown rule(s) {unknown}; implemented rules are {list(known)}")
    if not table:
        raise RulesError(f"{section}: needs at least one rule")
    return [(rule, table) for name, rule in known.items() if name in table]


def _mapping(data: dict, key: str, where: str = "") -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise RulesError(f"'{_name(where, key)}' must be a mapping")
    return value


def _list(data: dict, key: str, where: str = "") -> list:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise RulesError(f"'{_name(where, key)}' must be a non-empty list")
    return value


def _string(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise RulesError(f"'{key}' must be a string")
    return value


def _strings(
    data: dict,
    key: str,
    fields: Set[str] = frozenset(),
    required: Set[str] = frozenset(),
    where: str = "",
    optional: bool = False,
) -> tuple[str, ...]:
    if optional and key not in data:
        return ()
    values = _list(data, key, where)
    for value in values:
        if not isinstance(value, str):
            raise RulesError(f"'{_name(where, key)}' must hold strings, found {value!r}")
        _check_fields(value, fields, required, _name(where, key))
    return tuple(values)


def _check_fields(text: str, allowed: Set[str], required: Set[str], where: str) -> set[str]:
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as err:
        raise RulesError(f"'{where}': bad placeholder in {text!r}: {err}") from None
    if used - allowed:
        raise RulesError(f"'{where}': {text!r} uses unknown placeholder(s) {sorted(used - allowed)}")
    if required - used:
        raise RulesError(f"'{where}': {text!r} must contain {sorted('{' + f + '}' for f in required - used)}")
    return used


def _structure(data: dict) -> Structure:
    if "structure" not in data:
        return Structure()
    table = _mapping(data, "structure")
    unknown = sorted(set(table) - set(STRUCTURE_KNOBS))
    if unknown:
        raise RulesError(f"structure: unknown knob(s) {unknown}; the knobs are {list(STRUCTURE_KNOBS)}")
    for knob, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise RulesError(f"'structure.{knob}' must be a probability from 0 to 1, found {value!r}")
    return Structure(**{knob: float(value) for knob, value in table.items()})


def _tag_styles(data: dict) -> tuple[tuple[str, str], ...]:
    styles = []
    for i, entry in enumerate(_list(data, "tag_styles")):
        where = f"tag_styles[{i}]"
        begin, end = _pair(entry, where)
        _check_fields(begin, _TAG_FIELDS, {"word"}, where)
        if not _check_fields(end, _TAG_FIELDS, set(), where) & {"word", "end_word"}:
            raise RulesError(f"'{where}': the end tag {end!r} must contain {{word}} or {{end_word}}")
        if begin == end or "\n" in begin + end:
            raise RulesError(f"'{where}': begin and end tags must differ and stay on one line each")
        styles.append((begin, end))
    return tuple(styles)


def _tag_words(data: dict) -> tuple[tuple[str, str], ...]:
    pairs = tuple(_pair(entry, f"tag_words[{i}]") for i, entry in enumerate(_list(data, "tag_words")))
    for i, pair in enumerate(pairs):
        if not all(word.strip() and not set(word) & set("{}\n") for word in pair):
            raise RulesError(f"'tag_words[{i}]': {list(pair)} must be two non-empty words, one line, without braces")
    return pairs


def _meta_separators(data: dict) -> tuple[str, ...]:
    separators = _strings(data, "meta_separators")
    for separator in separators:
        if "\n" not in separator:
            raise RulesError(
                f"'meta_separators': {separator!r} must hold a line break: a meta-instruction has its own line"
            )
    return separators


def _pair(entry: Any, where: str) -> tuple[str, str]:
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(item, str) for item in entry)):
        raise RulesError(f"'{where}' must be a pair of strings")
    return entry[0], entry[1]


def _list_styles(data: dict, key: str) -> tuple[ListStyle, ...]:
    styles = []
    for i, entry in enumerate(_list(data, key)):
        if not (isinstance(entry, dict) and isinstance(entry.get("sep"), str) and isinstance(entry.get("last"), str)):
            raise RulesError(f"'{key}[{i}]' must be a mapping with string 'sep' and 'last'")
        styles.append(ListStyle(entry["sep"], entry["last"]))
    return tuple(styles)


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
