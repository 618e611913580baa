"""`--limit N`: the first N records of the input, in input order (files sorted by path, then line,
element or row order), cut at the same place by every plan and runner. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from transforms.core.records import Record, Rejection

Item = TypeVar("Item", Record, Rejection, Record | Rejection)


def first_records(items: Iterable[Item], limit: int) -> Iterator[tuple[int, Item]]:
    """(records before it, item) for the items of one file up to its `limit`-th record; nothing
    after that record is read."""
    before = 0
    for item in items:
        yield before, item
        if isinstance(item, Record):
            before += 1
            if before == limit:
                return


def file_cuts(counts: Sequence[int], limit: int) -> list[int | None]:
    """For files in input order, each read by first_records (`counts`: the records it gave): how
    many records of each are kept, None where all its items are (it ended before the limit)."""
    cuts: list[int | None] = []
    left = limit
    for count in counts:
        cuts.append(None if count < left else left)
        left = max(0, left - count)
    return cuts


def is_kept(before: int, cut: int | None) -> bool:
    """Whether an item of a file, after `before` of its records, lies before the file's cut."""
    return cut is None or before < cut


def first_of_files(files: Iterable[Iterable[Item]], limit: int) -> Iterator[list[Item]]:
    """The kept items of each file, read in order; files after the `limit`-th record are not read.
    The same items as first_records, file_cuts and is_kept give."""
    left = limit
    for items in files:
        if left == 0:
            return
        kept = [item for _, item in first_records(items, left)]
        left -= sum(isinstance(item, Record) for item in kept)
        yield kept
