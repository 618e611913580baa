"""Damaged and odd input files: each reads correctly or ends in one file-level rejection that
names it, after the records read before the damage; nothing raises and nothing is lost."""

from __future__ import annotations

import gzip
import itertools
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.cli import main
from transforms import read
from transforms.core.decoding import MAX_NESTING, MAX_RECORD_BYTES, LongLine, input_labels, split_lines
from transforms.core.records import FILE_REJECT_REASONS, REJECT_REASONS, Record
from transforms.read import read_file


def rows(count: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"Task {i}", "output": f"Reply {i}"} for i in range(start, start + count)]


def jsonl(records: list, newline: str = "\n") -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + newline for r in records).encode()


def nested(depth: int) -> object:
    value: object = "deep"
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth  # json.dumps itself recurses, so deep text is written by hand


def read_all(path: Path, label: str | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """(ids of the records, (source, reason) of the rejections) of one file, in file order."""
    items = list(read_file(str(path), label))
    return [i.id for i in items if isinstance(i, Record)], [
        (i.source, i.reason) for i in items if not isinstance(i, Record)
    ]


def ids(label: str, indexes) -> list[str]:
    return [f"{label}:{i}" for i in indexes]


def test_file_reasons_are_reasons():
    assert set(FILE_REJECT_REASONS) <= set(REJECT_REASONS)
    assert {"too_deeply_nested", "too_large"} <= set(REJECT_REASONS) - set(FILE_REJECT_REASONS)


# --- compression ---


def test_a_cut_gzip_keeps_the_records_before_the_cut_and_names_the_file(tmp_path):
    whole = gzip.compress(jsonl(rows(3000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    items = list(read_file(str(path)))
    kept = [i.id for i in items if isinstance(i, Record)]
    assert 0 < len(kept) < 3000 and kept == ids("cut.jsonl.gz", range(len(kept)))
    (rejection,) = [i for i in items if not isinstance(i, Record)]
    assert (rejection.source, rejection.reason) == ("cut.jsonl.gz", "truncated_compression")
    assert f"after line {len(kept):,}; the records before it are kept" in rejection.detail


def test_a_gzip_cut_at_a_line_end_is_still_reported(tmp_path):
    compressor = gzip.compress(jsonl(rows(10)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(compressor[:-8])  # the whole stream but its checksum and size
    assert read_all(path) == (ids("cut.jsonl.gz", range(10)), [("cut.jsonl.gz", "truncated_compression")])


def test_a_gz_file_that_is_not_gzip(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(jsonl(rows(5)))
    assert read_all(path) == ([], [("plain.jsonl.gz", "corrupt_compression")])


def test_a_gzip_with_a_wrong_checksum_keeps_its_records_and_is_rejected(tmp_path):
    data = bytearray(gzip.compress(jsonl(rows(10))))
    data[-8] ^= 0xFF  # the CRC-32 of the content
    path = tmp_path / "crc.jsonl.gz"
    path.write_bytes(bytes(data))
    assert read_all(path) == (ids("crc.jsonl.gz", range(10)), [("crc.jsonl.gz", "corrupt_compression")])


def test_gzip_data_without_gz_in_its_name(tmp_path):
    path = tmp_path / "zipped.jsonl"
    path.write_bytes(gzip.compress(jsonl(rows(3))))
    items = list(read_file(str(path)))
    assert [(i.source, i.reason) for i in items] == [("zipped.jsonl", "not_utf8")]
    assert "gzip" in items[0].detail


# --- text encoding and line ends ---


@pytest.mark.parametrize("name", ["bom.jsonl", "bom.json"])
def test_a_utf8_bom_is_skipped(name, tmp_path):
    path = tmp_path / name
    body = jsonl(rows(3)) if name.endswith("l") else json.dumps(rows(3)).encode()
    path.write_bytes(b"\xef\xbb\xbf" + body)
    assert read_all(path) == (ids(name, range(3)), [])


@pytest.mark.parametrize("chunk", [1 << 20, 3])
def test_every_line_end_gives_the_same_records(chunk, tmp_path, monkeypatch):
    monkeypatch.setattr(read, "CHUNK_BYTES", chunk)  # small chunks cut "\r\n" in two
    records = [*rows(2), "", *rows(2, 2), "not json"]
    found = {}
    for name, newline in (("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(jsonl(records, newline).rstrip(newline.encode()))  # no line end after the last line
        got_ids, rejected = read_all(path, "x.jsonl")
        found[name] = (got_ids, rejected)
    assert found["lf"] == (ids("x.jsonl", [0, 1, 3, 4]), [("x.jsonl:5", "malformed_json")])
    assert found["crlf"] == found["lf"] == found["cr"]


def test_a_json_file_that_is_not_utf8_keeps_the_elements_before_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.json"
    records = [*rows(2), {"instruction": "Café", "output": "ok"}, *rows(2, 2)]
    path.write_bytes(json.dumps(records, ensure_ascii=False).encode("latin-1"))
    assert read_all(path) == (ids("latin1.json", [0, 1]), [("latin1.json", "not_utf8")])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32_files_are_rejected_whole(encoding, tmp_path):
    path = tmp_path / "wide.jsonl"
    path.write_bytes(jsonl(rows(3)).decode().encode(encoding))
    assert read_all(path) == ([], [("wide.jsonl", "not_utf8")])


def test_a_jsonl_line_that_is_not_utf8_is_rejected_alone(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(jsonl(rows(1)) + '{"instruction": "Café", "output": "x"}\n'.encode("latin-1") + jsonl(rows(1, 1)))
    assert read_all(path) == (ids("mixed.jsonl", [0, 2]), [("mixed.jsonl:1", "malformed_json")])


# --- JSON arrays ---


def test_a_json_array_with_trailing_data_is_one_file_rejection(tmp_path):
    path = tmp_path / "trailing.json"
    path.write_text(json.dumps(rows(3), indent=1) + "\n}garbage\n" + "\n".join(json.dumps(r) for r in rows(50)))
    items = list(read_file(str(path)))
    assert [i.id for i in items if isinstance(i, Record)] == ids("trailing.json", range(3))
    (rejection,) = [i for i in items if not isinstance(i, Record)]
    assert (rejection.source, rejection.reason) == ("trailing.json", "trailing_data")
    assert rejection.record.startswith("}garbage") and "at line 15 column 1" in rejection.detail


@pytest.mark.parametrize(
    "text, kept",
    [
        ('[{"instruction": "a", "output": "b"}, {"instruction": "c", "output": ', 1),  # cut inside an element
        ('[{"instruction": "a", "output": "b"},\n {"instruction": "c", "output": "d"}', 2),  # no closing ]
        ('[{"instruction": "a", "output": "b"}, {"instruction": "c" "output": "d"}, {"x": 1}]', 1),  # bad element
        ('[{"instruction": "a", "output": "b"} {"instruction": "c", "output": "d"}]', 1),  # no comma
    ],
)
def test_a_broken_json_array_keeps_the_elements_before_the_break(text, kept, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(text)
    assert read_all(path) == (ids("broken.json", range(kept)), [("broken.json", "invalid_json_array")])


def test_a_json_file_holding_one_object_is_not_an_array(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(rows(1)[0], indent=2))
    assert read_all(path) == ([], [("one.json", "not_a_json_array")])


# --- nesting and size ---


def test_deep_nesting_is_rejected_per_record_in_used_and_unused_fields(tmp_path):
    lines = [
        json.dumps(rows(1)[0]),
        '{"instruction": ' + deep_json(1000) + ', "output": "x"}',  # a used field
        '{"instruction": "a", "output": "b", "meta": ' + deep_json(1000) + "}",  # an unused field
        '{"instruction": "a", "output": "b", "meta": ' + deep_json(100_000) + "}",
        json.dumps({"instruction": "at the limit", "output": "kept", "meta": nested(MAX_NESTING - 1)}),
        json.dumps({"instruction": "one over", "output": "b", "meta": nested(MAX_NESTING)}),
        json.dumps({"instruction": "brackets in text [[[[" * 60, "output": "{{{{" * 60}),
    ]
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines))
    assert read_all(path) == (
        ids("deep.jsonl", [0, 4, 6]),
        [(f"deep.jsonl:{i}", "too_deeply_nested") for i in (1, 2, 3, 5)],
    )


def test_deep_nesting_in_a_json_array_rejects_the_element_alone(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(
        "["
        + ", ".join(
            [
                json.dumps(rows(1)[0]),
                '{"instruction": "a", "output": "b", "meta": ' + deep_json(100_000) + "}",
                '{"instruction": "a", "output": "b", "meta": ' + deep_json(500) + "}",
                json.dumps(rows(1, 1)[0]),
            ]
        )
        + "]"
    )
    assert read_all(path) == (
        ids("deep.json", [0, 3]),
        [("deep.json:1", "too_deeply_nested"), ("deep.json:2", "too_deeply_nested")],
    )


def test_a_huge_line_is_rejected_alone(tmp_path):
    path = tmp_path / "huge.jsonl"
    huge = json.dumps({"instruction": "x" * (MAX_RECORD_BYTES + 10), "output": "y"})
    path.write_bytes(jsonl([rows(1)[0], huge, rows(1, 1)[0]]))
    items = list(read_file(str(path)))
    assert [i.id if isinstance(i, Record) else i.reason for i in items] == ["huge.jsonl:0", "too_large", "huge.jsonl:2"]
    assert len(items[1].record) <= 200


@given(
    data=st.binary(max_size=300).map(lambda raw: raw.translate(bytes.maketrans(b"\x00\x01", b"\r\n"))),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_split_lines_splits_as_splitlines_however_the_bytes_come_in_chunks(data, cuts):
    """Every line end ("\n", "\r\n", a lone "\r") ends a line, also where a chunk ends inside "\r\n"."""
    bounds = [0, *sorted(cut for cut in cuts if cut < len(data)), len(data)]
    chunks = [data[start:end] for start, end in itertools.pairwise(bounds)]
    assert list(split_lines(chunks)) == data.splitlines()


def test_split_lines_holds_no_more_than_the_head_of_a_long_line():
    chunks = [b"ab\r", b"\ncdefghij", b"klmnop", b"q\rr\n\n", b"s"]
    assert list(split_lines(chunks, limit=5)) == [b"ab", LongLine(b"cdefghij", 15), b"r", b"", b"s"]


# --- files that cannot be read, empty files ---


def test_a_file_that_vanished_or_is_a_folder_is_unreadable(tmp_path):
    assert read_all(tmp_path / "gone.jsonl") == ([], [("gone.jsonl", "unreadable_file")])
    (tmp_path / "folder.jsonl").mkdir()
    assert read_all(tmp_path / "folder.jsonl") == ([], [("folder.jsonl", "unreadable_file")])


def test_a_file_without_read_permission_is_unreadable(tmp_path):
    path = tmp_path / "secret.jsonl"
    path.write_bytes(jsonl(rows(2)))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads files without read permission (root)")
        assert read_all(path) == ([], [("secret.jsonl", "unreadable_file")])
    finally:
        path.chmod(0o644)


class FailingHandle:
    """A file whose reads fail after its first `good` bytes, like a disk or network error."""

    def __init__(self, data: bytes, good: int):
        self.data, self.good, self.position = data, good, 0

    def read(self, size: int = -1) -> bytes:
        if self.position >= self.good:
            raise OSError(5, "Input/output error")
        chunk = self.data[self.position : min(self.good, self.position + size)]
        self.position += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("name", ["flaky.jsonl", "flaky.jsonl.gz"])
def test_a_read_error_part_way_keeps_the_records_before_it(name, tmp_path, monkeypatch):
    data = jsonl(rows(10))
    stored = gzip.compress(data) if name.endswith(".gz") else data
    good = len(stored) if name.endswith(".gz") else data.index(b"Task 6")  # cut inside line 6
    monkeypatch.setattr(read.FileSystems, "open", lambda path, **_: FailingHandle(stored, good))
    items = list(read_file(name))
    kept = 10 if name.endswith(".gz") else 6
    assert [i.id for i in items if isinstance(i, Record)] == ids(name, range(kept))
    (rejection,) = [i for i in items if not isinstance(i, Record)]
    assert (rejection.source, rejection.reason) == (name, "unreadable_file")
    assert "Input/output error" in rejection.detail and f"after line {kept:,}" in rejection.detail


@pytest.mark.parametrize("name, data", [("e.jsonl", b""), ("e.json", b""), ("e.json", b" \n"), ("e.jsonl.gz", b"")])
def test_an_empty_file_holds_no_record(name, data, tmp_path):
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert read_all(path) == ([], [])


# --- labels ---


def test_labels_tell_same_named_files_apart_and_keep_base_names_otherwise():
    assert input_labels(["/data/x.jsonl"]) == {"/data/x.jsonl": "x.jsonl"}
    assert input_labels(["/d/x.jsonl", "/e/y.json"]) == {"/d/x.jsonl": "x.jsonl", "/e/y.json": "y.json"}
    assert input_labels(["/r/a/x.jsonl", "/r/b/x.jsonl", "/r/a/y.jsonl"]) == {
        "/r/a/x.jsonl": "a/x.jsonl",
        "/r/b/x.jsonl": "b/x.jsonl",
        "/r/a/y.jsonl": "a/y.jsonl",
    }
    moved = input_labels(["/elsewhere/r/a/x.jsonl", "/elsewhere/r/b/x.jsonl"])
    assert sorted(moved.values()) == ["a/x.jsonl", "b/x.jsonl"]
    assert input_labels(["gs://bucket/a/x.jsonl", "C:\\data\\b\\x.jsonl"]) == {
        "gs://bucket/a/x.jsonl": "a/x.jsonl",
        "C:\\data\\b\\x.jsonl": "b/x.jsonl",
    }


# --- end to end: `mosaic-it run` ---


def run_cli(tmp_path: Path, output: str, *argv: str) -> dict:
    """Runs `mosaic-it run`; the exit code is left to the CLI's rule on file rejections."""
    main(["run", "--output", str(tmp_path / output), "--formats", "jsonl", "--epochs", "2", *argv])
    return json.loads((tmp_path / output / "manifest.json").read_text())


def output_rows(directory: Path, prefix: str) -> list[dict]:
    return [json.loads(line) for path in sorted(directory.glob(f"{prefix}-*.jsonl")) for line in path.open()]


def check_accounted(directory: Path, manifest: dict) -> list[dict]:
    """Every record read is in the samples of each epoch or rejected; returns the rejections."""
    rejected = output_rows(directory, "rejected")
    counts = manifest["counts"]
    assert counts["records_rejected"] == len(rejected)
    placed: dict[int, Counter] = {}
    for sample in output_rows(directory, "mosaics"):
        placed.setdefault(sample["epoch"], Counter()).update(sample["sources"])
    for epoch, per_epoch in counts["records_per_epoch"].items():
        assert sum(placed[int(epoch)].values()) == per_epoch
        duplicates = counts["rejected"].get("duplicate_id", 0)
        assert per_epoch + counts["records_rejected"] - duplicates == counts["records_read"]
    return rejected


def test_damaged_files_in_a_folder_end_to_end(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jsonl").write_bytes(jsonl(rows(20)))
    whole = gzip.compress(jsonl(rows(400, 100)))
    (folder / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (folder / "plain.jsonl.gz").write_bytes(jsonl(rows(3)))
    (folder / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows(4, 30)).encode())
    (folder / "trailing.json").write_text(json.dumps(rows(5, 40)) + " ]]")
    (folder / "deep.jsonl").write_text('{"instruction": "a", "output": "b", "x": ' + deep_json(1000) + "}\r\n")
    (folder / "notes.txt").write_text("not an input")
    manifest = run_cli(tmp_path, "out", "--input", str(folder))
    rejected = check_accounted(tmp_path / "out", manifest)
    assert sorted((r["source"], r["reason"]) for r in rejected) == [
        ("cut.jsonl.gz", "truncated_compression"),
        ("deep.jsonl:0", "too_deeply_nested"),
        ("plain.jsonl.gz", "corrupt_compression"),
        ("trailing.json", "trailing_data"),
    ]
    cut_kept = manifest["counts"]["records_read"] - 4 - (20 + 4 + 5)
    assert 0 < cut_kept < 400
    assert sorted(Path(p).name for p in manifest["inputs"]) == [
        "bom.json",
        "cut.jsonl.gz",
        "deep.jsonl",
        "good.jsonl",
        "plain.jsonl.gz",
        "trailing.json",
    ]


def test_unreadable_file_end_to_end(tmp_path):
    (tmp_path / "ok.jsonl").write_bytes(jsonl(rows(5)))
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(jsonl(rows(5, 5)))
    secret.chmod(0)
    try:
        if os.access(secret, os.R_OK):
            pytest.skip("this user reads files without read permission (root)")
        manifest = run_cli(tmp_path, "out", "--input", str(tmp_path / "*.jsonl"))
    finally:
        secret.chmod(0o644)
    rejected = check_accounted(tmp_path / "out", manifest)
    assert [(r["source"], r["reason"]) for r in rejected] == [("secret.jsonl", "unreadable_file")]
    assert manifest["counts"]["records_read"] == 6


def test_same_named_files_in_two_folders_keep_distinct_ids_on_every_plan(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.jsonl").write_bytes(jsonl(rows(30)))
    inputs = ["--input", str(tmp_path / "a" / "x.jsonl"), str(tmp_path / "b" / "x.jsonl"), "--seed", "5"]
    plans = {
        "one": ["--pack-processes", "1"],
        "three": ["--pack-processes", "3"],
        "workers": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    }
    samples = {}
    for name, plan in plans.items():
        manifest = run_cli(tmp_path, name, *inputs, *plan)
        assert check_accounted(tmp_path / name, manifest) == []
        assert manifest["counts"]["records_read"] == 60 and set(manifest["counts"]["records_per_epoch"].values()) == {
            60
        }
        samples[name] = output_rows(tmp_path / name, "mosaics")
    sources = {source for sample in samples["one"] for source in sample["sources"]}
    assert sources == set(ids("a/x.jsonl", range(30)) + ids("b/x.jsonl", range(30)))
    assert samples["one"] == samples["three"] == samples["workers"]


# --- --input naming a folder ---


def test_input_folder_reads_the_input_files_directly_in_it(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.jsonl").write_bytes(jsonl(rows(2)))
    (folder / "two.json.gz").write_bytes(gzip.compress(json.dumps(rows(3, 2)).encode()))
    (folder / "README.md").write_text("# not data")
    (folder / "sub" / "three.jsonl").write_bytes(jsonl(rows(1)))
    assert read.expand_inputs([str(folder)]) == [str(folder / "one.jsonl"), str(folder / "two.json.gz")]
    assert read.expand_inputs([str(folder) + "/"]) == read.expand_inputs([str(folder)])
    manifest = run_cli(tmp_path, "out", "--input", str(folder))
    assert manifest["counts"]["records_read"] == 5 and check_accounted(tmp_path / "out", manifest) == []


@pytest.mark.parametrize("kind", ["empty folder", "folder without inputs", "glob matching nothing"])
def test_input_naming_nothing_to_read_is_a_one_line_error(kind, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    if kind == "folder without inputs":
        (folder / "notes.txt").write_text("x")
        (folder / "sub").mkdir()
        (folder / "sub" / "x.jsonl").write_bytes(jsonl(rows(1)))
    pattern = str(folder / "*.jsonl") if kind == "glob matching nothing" else str(folder)
    assert main(["run", "--input", pattern, "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"--input '{pattern}'" in error
