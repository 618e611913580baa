"""The inputs of a finished mosaic run, read again: which file each record id comes from, and
each record's length alone under the run's tokenizer and length template (the length the run
compared with --max-length). Reading and counting the 55k T0 records takes a few seconds with quicktok."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from apache_beam.io.filesystems import FileSystems

from reporting.run_stats import source_of
from transforms.core.decoding import input_labels
from transforms.core.fields import FieldMap
from transforms.core.lengths import SampleLengths
from transforms.core.records import Record
from transforms.read import read_file

_BATCH = 4096  # records per tokenizer call


@dataclass
class InputRecords:
    files: list[str]  # the labels of the inputs, in the manifest's order
    file_by_id: dict[str, str] = field(default_factory=dict)  # record id (or rejection source) -> file label
    lengths: dict[str, list[int]] = field(default_factory=dict)  # file label -> tokens of each record alone
    missing: list[str] = field(default_factory=list)  # inputs no longer there: their records are not counted

    @cached_property
    def _labels(self) -> set[str]:
        return set(self.files)

    def file_of(self, record_id: str) -> str:
        return self.file_by_id.get(record_id) or source_of(record_id, self._labels)


def read_inputs(inputs: Sequence[str], lengths: SampleLengths, fields: FieldMap) -> InputRecords:
    labels = input_labels(inputs)
    found = InputRecords(files=list(labels.values()))
    for path, label in labels.items():
        found.file_by_id[label] = label
        if not FileSystems.exists(path):
            found.missing.append(path)
            continue
        records: list[Record] = []
        for item in read_file(path, label, fields):
            if isinstance(item, Record):
                records.append(item)
                found.file_by_id.setdefault(item.id, label)
            else:
                found.file_by_id.setdefault(item.source, label)
        found.lengths[label] = [
            n
            for start in range(0, len(records), _BATCH)
            for n in lengths.count([(r.prompt, r.output) for r in records[start : start + _BATCH]])
        ]
    return found
