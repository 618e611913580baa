"""The settings of a mosaic run, and what each worker builds from them once."""

from __future__ import annotations

from dataclasses import dataclass

from transforms.core.lengths import LengthTemplate, SampleLengths
from transforms.core.overheads import Overheads
from transforms.core.packing import KeyPacker, PackSettings
from transforms.core.rules import Rules, load_rules, parse_rules
from transforms.core.tokens import load_counter


@dataclass(frozen=True)
class MosaicConfig:
    """The options the mosaic transforms need; built once from the pipeline options."""

    tokenizer: str
    length_template: str
    rules_text: str | None  # the --rules file's content; None for the built-in rules
    seed: int
    epochs: int
    epoch_offset: int
    strategy: str
    wrap_mode: str
    wrap_max: int
    max_length: int
    records_per_key: int
    system_prompt: str | None = None  # counted by the length template (--system-prompt)

    @property
    def epoch_numbers(self) -> range:
        return range(self.epoch_offset, self.epoch_offset + self.epochs)

    @property
    def pack_settings(self) -> PackSettings:
        return PackSettings(self.seed, self.strategy, self.wrap_mode, self.wrap_max, self.max_length)

    @property
    def resources_tag(self) -> str:
        """What Resources depend on: workers share one Resources per distinct tag."""
        return repr((self.tokenizer, self.length_template, self.system_prompt, self.rules_text))


class Resources:
    """What a worker process loads once and shares between its DoFns: the tokenizer, the rules
    and their overheads, which depend on `MosaicConfig.resources_tag` alone."""

    def __init__(self, config: MosaicConfig):
        template = LengthTemplate(config.length_template, config.system_prompt, config.tokenizer)
        self.lengths = SampleLengths(load_counter(config.tokenizer), template)
        self.rules: Rules = load_rules() if config.rules_text is None else parse_rules(config.rules_text, "--rules")
        self.overheads = Overheads.measure(self.lengths, self.rules)

    def packer(self, config: MosaicConfig) -> KeyPacker:
        return KeyPacker(config.pack_settings, self.rules, self.lengths, self.overheads)
