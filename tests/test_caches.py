"""Damaged caches are detected, reported once, ignored and rebuilt: the IFD score cache of
`select` and the on-disk quicktok imports of Hugging Face byte-level tokenizers."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipeline.select_options import default_cache_directory
from tests.select.select_support import OWN_TEMPLATE, build_tiny_model, make_records, write_jsonl
from tests.test_tokens import FRAGMENTS, llama3_style  # noqa: F401 (a fixture: a byte-level BPE quicktok imports)
from transforms import score_cache
from transforms.core import quicktok_cache, tokens
from transforms.core.tokens import HuggingFaceCounter
from transforms.core.user_cache import user_cache_directory
from transforms.score_cache import CachedLosses, ReadScoreCache, check_cache_file, entry_line, file_name

ENTRIES = [(f"{i:02x}" * 16, CachedLosses(1.0 + i / 8, 2.0 - i / 16, 3 + i)) for i in range(6)]


def new_format(entries) -> bytes:
    return "".join(entry_line(key, losses) for key, losses in entries).encode("utf-8")


def old_format(entries) -> bytes:
    """A file as written before entries carried a check."""
    return "".join(json.dumps({"key": key, **losses._asdict()}) + "\n" for key, losses in entries).encode("utf-8")


def tamper(data: bytes, line: int) -> bytes:
    """The file with one entry's conditional loss changed, its key and check left as they were."""
    lines = data.splitlines(keepends=True)
    entry = json.loads(lines[line])
    lines[line] = (json.dumps({**entry, "conditional_loss": entry["conditional_loss"] + 0.5}) + "\n").encode()
    return b"".join(lines)


def checked(data: bytes, name: str | None = None):
    result = check_cache_file(name or file_name(data), data)
    return result.entries, result.dropped, result.problem


def cache_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == score_cache.__name__ and r.levelno == logging.WARNING]


# -- score cache files, entry by entry


def test_an_intact_file_gives_every_entry():
    assert checked(new_format(ENTRIES)) == (ENTRIES, 0, None)


@pytest.mark.parametrize(
    "damage, kept",
    [
        (lambda data: tamper(data, 2), [0, 1, 3, 4, 5]),
        (lambda data: data[:-10], [0, 1, 2, 3, 4]),  # the last line cut short
        (lambda data: data.replace(b'"key"', b"'key'", 1), [1, 2, 3, 4, 5]),  # invalid JSON
        (lambda data: data.replace(b'"prior_loss"', b'"prior_lost"', 1), [1, 2, 3, 4, 5]),  # not an entry
        (lambda data: b"\xff\xfe\x00garbage\n" + data, [0, 1, 2, 3, 4, 5]),
        (lambda data: tamper(tamper(data, 0), 4) + b"[1, 2]\n", [1, 2, 3, 5]),
    ],
    ids=["tampered-value", "truncated", "invalid-json", "missing-field", "garbage-line", "mixed"],
)
def test_damaged_entries_are_dropped_and_the_rest_kept(damage, kept):
    data = new_format(ENTRIES)
    damaged = damage(data)
    entries, dropped, problem = checked(damaged, name=file_name(data))
    assert entries == [ENTRIES[i] for i in kept]
    assert dropped == len([line for line in damaged.split(b"\n") if line.strip()]) - len(kept)
    assert problem == "its content does not match its name"


def test_a_renamed_file_keeps_the_entries_that_pass_their_check():
    assert checked(new_format(ENTRIES), name="ifd-0123.jsonl") == (ENTRIES, 0, "its content does not match its name")


def test_a_file_of_garbage_gives_nothing():
    garbage = bytes(range(256)) * 4
    entries, dropped, problem = checked(garbage, name=file_name(b"anything"))
    assert entries == [] and dropped > 0 and problem


def test_an_old_file_is_trusted_only_while_it_matches_its_name():
    data = old_format(ENTRIES)
    assert checked(data) == (ENTRIES, 0, None)
    assert checked(tamper(data, 1), name=file_name(data)) == ([], 6, "its content does not match its name")


def test_a_damaged_file_renamed_to_its_new_digest_still_drops_the_tampered_entry():
    damaged = tamper(new_format(ENTRIES), 3)
    assert checked(damaged) == ([e for i, e in enumerate(ENTRIES) if i != 3], 1, "entries fail their check")


# -- reading a cache directory in a pipeline


def test_read_score_cache_uses_what_is_sound_and_warns_once_per_damaged_file(tmp_path, caplog):
    files = {
        "intact": (new_format(ENTRIES[:2]), None),
        "renamed": (new_format(ENTRIES[2:3]), "ifd-renamed.jsonl"),
        "tampered": (tamper(new_format(ENTRIES[3:5]), 0), file_name(new_format(ENTRIES[3:5]))),
        "old": (old_format(ENTRIES[5:]), None),
        "garbage": (b"\x00\x01\x02 not a cache file", file_name(b"")),
    }
    paths = {}
    for label, (data, name) in files.items():
        paths[label] = tmp_path / (name or file_name(data))
        paths[label].write_bytes(data)
    with caplog.at_level(logging.WARNING, logger=score_cache.__name__), beam.Pipeline() as pipeline:
        entries, stats = pipeline | ReadScoreCache(score_cache.cache_files(str(tmp_path)), with_stats=True)
        assert_that(entries, equal_to([*ENTRIES[:3], ENTRIES[4], ENTRIES[5]]), label="Entries")
        total = stats | beam.CombineGlobally(lambda counters: sum(counters, Counter()))
        expected = {("cache", "files_damaged"): 3, ("cache", "entries_rejected"): 2}
        assert_that(total, equal_to([expected]), label="Stats")
    warnings = cache_warnings(caplog)
    assert len(warnings) == 3
    for label, dropped, of in (("renamed", 0, 1), ("tampered", 1, 2), ("garbage", 1, 1)):
        [line] = [w for w in warnings if str(paths[label]) in w]
        assert f": {dropped} of its {of} entries dropped; their scores will be computed again" in line


# -- select with a damaged cache


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A round-0 select run that fills an empty cache: (folder, a function running select again, its manifest).
    Skips without torch."""
    from pipeline.iterit import run_select

    tmp = tmp_path_factory.mktemp("select")
    model = build_tiny_model(tmp / "model", OWN_TEMPLATE)
    write_jsonl(tmp / "input.jsonl", make_records(24))

    def select(output: str) -> dict:
        argv = ["--input", str(tmp / "input.jsonl"), "--output", str(tmp / output), "--model", str(model)]
        return run_select([*argv, "--max-tokens", "256", "--ratio", "0.25", "--cache", str(tmp / "cache")])

    return tmp, select, select("first")


def outputs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != "manifest.json"}


def scores(directory: Path) -> dict[str, dict]:
    return {row["id"]: row for p in sorted(directory.glob("scores-*.jsonl")) for row in map(json.loads, p.open())}


def test_a_run_with_a_valid_cache_writes_the_same_files_as_the_run_that_filled_it(first_run):
    tmp, select, first = first_run
    assert first["counts"]["scores"]["computed"] == 24
    again = select("again")
    assert again["counts"]["scores"] == {"computed": 0, "cached": 24, "kept": 0}
    assert again["cache"]["files_damaged"] == again["cache"]["entries_rejected"] == 0
    assert outputs(tmp / "again") == outputs(tmp / "first")


def test_without_cache_a_local_output_uses_the_user_cache_folder_shared_by_every_output(first_run):
    from pipeline.iterit import run_select

    tmp, _, _ = first_run
    argv = ["--input", str(tmp / "input.jsonl"), "--model", str(tmp / "model"), "--max-tokens", "256"]
    one = run_select([*argv, "--ratio", "0.25", "--output", str(tmp / "user-one")])
    other = run_select([*argv, "--ratio", "0.25", "--output", str(tmp / "user-other")])
    folder = user_cache_directory("ifd-scores")
    assert one["cache"]["directory"] == other["cache"]["directory"] == str(folder)
    assert str(folder).startswith(os.environ["XDG_CACHE_HOME"]), "the tests never write the real user cache"
    assert one["counts"]["scores"]["computed"] == 24 and len(list(folder.glob("ifd-*.jsonl"))) == 1
    assert other["counts"]["scores"] == {"computed": 0, "cached": 24, "kept": 0}
    assert outputs(tmp / "user-other") == outputs(tmp / "user-one") == outputs(tmp / "first")


def test_without_cache_a_remote_output_keeps_its_cache_beside_it():
    assert default_cache_directory("gs://bucket/runs/round-0") == "gs://bucket/runs/ifd-score-cache"
    assert default_cache_directory("gs://bucket/runs/round-0/") == "gs://bucket/runs/ifd-score-cache"
    assert default_cache_directory("runs/round-0") == str(user_cache_directory("ifd-scores"))


def test_a_run_with_damaged_entries_recomputes_them_and_writes_the_same_files(first_run, caplog):
    tmp, select, _ = first_run
    [path] = (tmp / "cache").glob("ifd-*.jsonl")
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    damaged_keys = {json.loads(lines[i])["key"] for i in (0, 5, len(lines) - 1)}
    damaged = tamper(data, 0)
    damaged = damaged.replace(lines[5], b"{not json\n")
    path.write_bytes(damaged[:-20])  # and the last line cut short
    (tmp / "cache" / file_name(b"garbage")).write_bytes(b"\x89PNG\x1a garbage")
    with caplog.at_level(logging.WARNING, logger=score_cache.__name__):
        manifest = select("damaged")
    counts = manifest["counts"]["scores"]
    # A micro-batch holding a damaged entry is scored whole, as a run without cache scores it.
    assert counts["computed"] >= 3 and counts["computed"] + counts["cached"] == 24 and counts["kept"] == 0
    assert manifest["cache"]["files_damaged"] == 2 and manifest["cache"]["entries_rejected"] == 4
    warnings = cache_warnings(caplog)
    assert len([w for w in warnings if str(path) in w]) == 1 and len(warnings) == 2
    [written] = manifest["cache"]["files_written"]
    assert {json.loads(line)["key"] for line in Path(written).read_text().splitlines()} == damaged_keys
    assert outputs(tmp / "damaged") == outputs(tmp / "first"), "a partial cache changes no byte of the round"


# -- quicktok's import cache

TEXTS = ["".join(FRAGMENTS[(i * 11 + k) % len(FRAGMENTS)] for k in range(12)) for i in range(300)]


@pytest.fixture
def import_cache(tmp_path, monkeypatch):
    """An empty quicktok import cache for the test; returns the folder holding the imports."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return user_cache_directory("quicktok")


def cached_import(root: Path) -> Path:
    [directory] = [path for path in root.iterdir() if len(path.name) == 24]
    return directory


def damage_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "imported.enc").write_text("scanner=qwen\n"),  # loads, but counts digits differently
        lambda d: (d / "imported.vocab").write_bytes((d / "imported.vocab").read_bytes()[:1000]),
        lambda d: (d / "imported.vocab").write_bytes(b"\x00" * 64),
        lambda d: (d / "uniclass.bin").unlink(),
        lambda d: (d / "checksums.json").write_text("{"),
        lambda d: (d / "refused.txt").write_text("refused"),
    ],
    ids=["tampered-scanner", "truncated-vocab", "garbage-vocab", "file-missing", "bad-checksums", "file-added"],
)
def test_a_damaged_import_is_reported_once_and_imported_again(llama3_style, import_cache, caplog, damage):  # noqa: F811
    clean = HuggingFaceCounter(str(llama3_style))
    expected = clean._count_hf(TEXTS)
    directory = cached_import(import_cache)
    files = {path.name: path.read_bytes() for path in directory.iterdir()}
    damage(directory)
    with caplog.at_level(logging.WARNING, logger=quicktok_cache.__name__):
        counter = HuggingFaceCounter(str(llama3_style))
        assert tokens.quicktok_counts(counter._quicktok, TEXTS) == expected
        assert counter.count(TEXTS) == expected and counter._quicktok is not None
    [warning] = damage_warnings(caplog)
    assert f"cached quicktok import {directory} is damaged" in warning and warning.endswith("importing it again")
    assert {path.name: path.read_bytes() for path in directory.iterdir()} == files
    caplog.clear()
    HuggingFaceCounter(str(llama3_style))
    assert damage_warnings(caplog) == []


def test_the_tampered_import_would_have_counted_wrong(llama3_style, import_cache):  # noqa: F811
    """What the check guards against: a damaged import that loads and counts, wrongly."""
    import quicktok

    counter = HuggingFaceCounter(str(llama3_style))
    directory = cached_import(import_cache)
    (directory / "imported.enc").write_text("scanner=qwen\n")
    unchecked = quicktok.Tokenizer("imported", str(directory))
    assert tokens.quicktok_counts(unchecked, TEXTS) != counter._count_hf(TEXTS)
