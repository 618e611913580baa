"""The dataset card of a run's folder, as pure functions of the sample files' names.

`README.md` holds YAML `configs` that name the data files of each loadable format by pattern,
with their features, so `datasets.load_dataset(DIR)` and `load_dataset(DIR, "messages")` need
no `data_files`. `dataset_info.json` registers every sample file for LLaMA-Factory, one file
per entry (its loader takes one file, or a folder of one file type). Neither holds a time, so
reruns write the same bytes.

A run deletes or replaces these two names only when it can prove it wrote them: the card ends
with the SHA-256 of the text above that line, and `dataset_info.json` must be exactly what the
file names it lists give.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

CARD = "README.md"
LLAMA_FACTORY_INFO = "dataset_info.json"
CARD_FILES = (CARD, LLAMA_FACTORY_INFO)


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases for the features configs share: each config reads alone."""

    def ignore_aliases(self, data):
        return True


@dataclass(frozen=True)
class CardConfig:
    """One `datasets` config: the sample files `{prefix}-*.{extension}`, their features (the YAML
    `dataset_info` form) and their LLaMA-Factory entry without its `file_name`."""

    name: str
    prefix: str
    extension: str
    features: tuple[Mapping[str, Any], ...]
    llama_factory: Mapping[str, Any]

    @property
    def pattern(self) -> str:
        return f"{self.prefix}-*.{self.extension}"

    def files(self, names: Sequence[str]) -> list[str]:
        return sorted(name for name in names if fnmatch.fnmatchcase(name, self.pattern))


def present_configs(configs: Sequence[CardConfig], names: Sequence[str]) -> list[CardConfig]:
    """The configs with at least one file among `names`, in their given order."""
    return [config for config in configs if config.files(names)]


def loadable_configs(configs: Sequence[CardConfig], names: Sequence[str]) -> list[CardConfig]:
    """The configs the card names: `datasets` reads every config of a folder with one builder, so
    only those of the first present config's file type (the first is the default)."""
    present = present_configs(configs, names)
    return [config for config in present if config.extension == present[0].extension] if present else []


def card_text(configs: Sequence[CardConfig], names: Sequence[str], unloadable: Mapping[str, str]) -> str:
    """README.md for a folder holding the sample files `names`. `unloadable` maps a file pattern
    that `datasets` cannot read (Avro) to why."""
    loadable = loadable_configs(configs, names)
    front = {
        "configs": [
            {
                "config_name": config.name,
                "data_files": [{"split": "train", "path": config.pattern}],
                **({"default": True} if position == 0 else {}),
            }
            for position, config in enumerate(loadable)
        ],
        "dataset_info": [{"config_name": config.name, "features": list(config.features)} for config in loadable],
    }
    lines = [
        "---",
        yaml.dump(front, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "---",
        "# Mosaic-IT samples",
        "",
        "Written by `mosaic-it run`; `manifest.json` beside this card says what it read, how, and what it counted.",
        "",
        *_config_table(loadable),
        *_left_out(configs, names, loadable, unloadable),
        *_llama_factory_lines(configs, names),
    ]
    body = "\n".join(lines) + "\n\n"
    return body + _signature(body)


def _config_table(loadable: Sequence[CardConfig]) -> list[str]:
    if not loadable:
        return ["No file of this run is one `datasets` reads."]
    rows = ["| Config | Files | Load with |", "|---|---|---|"]
    for position, config in enumerate(loadable):
        call = 'load_dataset("DIR")' if position == 0 else f'load_dataset("DIR", "{config.name}")'
        default = " (default)" if position == 0 else ""
        rows.append(f"| {config.name}{default} | `{config.pattern}` | `{call}` |")
    return rows


def _left_out(
    configs: Sequence[CardConfig], names: Sequence[str], loadable: Sequence[CardConfig], unloadable: Mapping[str, str]
) -> list[str]:
    """A paragraph for each kind of sample file the configs leave out, and how to read it."""
    lines = []
    for config in present_configs(configs, names):
        if config not in loadable:
            call = f'load_dataset("{config.extension}", data_files="DIR/{config.pattern}")'
            lines += [
                "",
                f"`{config.pattern}` is left out of the configs, which must share one file type: `{call}` reads it.",
            ]
    for pattern, why in unloadable.items():
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            lines += ["", f"`{pattern}` is left out of the configs: {why}."]
    return lines


def _llama_factory_lines(configs: Sequence[CardConfig], names: Sequence[str]) -> list[str]:
    entries = present_configs(configs, names)
    if not entries:
        return []
    lines = ["", "LLaMA-Factory: set `dataset_dir` to this folder and `dataset` to the entries of one format:", ""]
    for config in entries:
        formatting = config.llama_factory["formatting"]
        lines.append(f"- `{config.pattern}` ({formatting}): `dataset: {','.join(config.files(names))}`")
    return lines


def _signature(body: str) -> str:
    return f"<!-- written by mosaic-it run; sha256 of the text above: {hashlib.sha256(body.encode('utf-8')).hexdigest()} -->\n"


def is_our_card(text: str) -> bool:
    """Whether a README.md is a card this tool wrote, unchanged since."""
    body, newline, last = text.removesuffix("\n").rpartition("\n")
    return bool(newline) and text.endswith("\n") and _signature(body + "\n") == last + "\n"


def llama_factory_text(configs: Sequence[CardConfig], names: Sequence[str]) -> str:
    """dataset_info.json: one entry per sample file, named as the file, relative to the folder."""
    entries = {
        name: {"file_name": name, **config.llama_factory}
        for config in present_configs(configs, names)
        for name in config.files(names)
    }
    return json.dumps(entries, indent=2, ensure_ascii=False) + "\n"


def is_our_llama_factory_info(text: str, configs: Sequence[CardConfig]) -> bool:
    """Whether a dataset_info.json is exactly what this tool writes for the files it lists."""
    try:
        entries = json.loads(text)
    except ValueError:
        return False
    if not isinstance(entries, dict):
        return False
    names = [entry.get("file_name") if isinstance(entry, dict) else None for entry in entries.values()]
    listed = [name for name in names if isinstance(name, str)]
    return len(listed) == len(names) and llama_factory_text(configs, listed) == text
