import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.shared_data import write_jsonl
from transforms.core.config import MosaicConfig
from transforms.formats import SAMPLE_FORMATS
from transforms.in_memory import MosaicInOneProcess
from transforms.mosaic import FILES, VALID, MosaicJob, MosaicSamples
from transforms.read import REJECTED, ReadRecords, expand_inputs

CONFIG = MosaicConfig(
    tokenizer="quicktok:llama3",
    length_template="raw",
    rules_text=None,
    seed=1,
    epochs=3,
    epoch_offset=2,
    strategy="both",
    wrap_mode="uniform",
    wrap_max=6,
    max_length=60,
    records_per_key=10,
)


def test_read_records_from_every_file_kind(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"instruction": "a", "output": "b"}, "", "not json"])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    (tmp_path / "c.json").write_text(json.dumps([{"id": "x1", "instruction": "i", "output": "o"}, 3]), encoding="utf-8")
    write_jsonl(tmp_path / "d.json", [{"instruction": "jsonl under a .json name", "output": "ok"}] * 2)
    (tmp_path / "e.json").write_text(json.dumps({"instruction": "an object, not an array"}), encoding="utf-8")

    with TestPipeline() as p:
        read = p | ReadRecords(expand_inputs([str(tmp_path / "*")]))
        assert_that(
            read.records | beam.Map(lambda r: r.id),
            equal_to(["a.jsonl:0", "b.jsonl.gz:0", "x1", "d.json:0", "d.json:1"]),
            label="ids",
        )
        assert_that(
            read[REJECTED] | beam.Map(lambda r: (r.source, r.reason)),
            equal_to([("a.jsonl:2", "malformed_json"), ("c.json:1", "not_an_object"), ("e.json", "not_a_json_array")]),
            label="rejected",
        )


RECORDS = [
    {"id": f"r{i}", "instruction": f"Task number {i} " + "x " * (i % 9), "output": f"Reply {i}"} for i in range(45)
]
TOO_LONG = {"id": "long", "instruction": "word " * 80, "output": "reply"}
JSONL = [SAMPLE_FORMATS["jsonl"]]


def write_inputs(directory: Path, *files: list) -> list[str]:
    return [str(write_jsonl(directory / f"part-{i}.jsonl", rows)) for i, rows in enumerate(files)]


def written_samples(directory: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("mosaics-*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def mosaic_plan(one_process: bool, paths: list[str], directory: Path, formats, num_shards: int):
    """The plan for many workers, or the one-process plan with three processes."""
    job = MosaicJob(tuple(paths), CONFIG, str(directory), tuple(formats), num_shards)
    return MosaicInOneProcess(job, processes=3) if one_process else MosaicSamples(job)


def reasons(rejections) -> list[tuple[str, str]]:
    return sorted((r.source, r.reason) for r in rejections)


@pytest.mark.parametrize("one_process", [False, True])
def test_both_plans_place_every_record_once_per_epoch(one_process, tmp_path):
    paths = write_inputs(tmp_path, RECORDS[:20], [*RECORDS[20:], TOO_LONG, "not json"])
    output = tmp_path / "out"
    output.mkdir()
    total_keys = 4 * CONFIG.epochs  # 45 valid records, 10 a key
    with TestPipeline() as p:
        produced = p | mosaic_plan(one_process, paths, output, JSONL, num_shards=total_keys)
        assert_that(produced[FILES] | beam.combiners.Count.Globally(), equal_to([total_keys]), label="shard files")
        assert_that(produced[VALID], equal_to([len(RECORDS)]), label="valid")
        assert_that(
            produced[REJECTED] | beam.combiners.ToList() | beam.Map(reasons),
            equal_to([[("long", "over_budget"), ("part-1.jsonl:26", "malformed_json")]]),
            label="rejected",
        )
    per_epoch = {}
    for sample in written_samples(output):
        per_epoch.setdefault(sample["epoch"], Counter()).update(sample["sources"])
        assert sample["n_tokens"] <= CONFIG.max_length
    assert sorted(per_epoch) == list(CONFIG.epoch_numbers)
    assert all(placed == Counter(r["id"] for r in RECORDS) for placed in per_epoch.values())


def test_the_one_process_plan_writes_the_files_and_rejections_of_the_plan_for_many_workers(tmp_path):
    duplicate = {"id": "r3", "instruction": "A later record reusing an id", "output": "dropped"}
    paths = write_inputs(tmp_path, RECORDS[:15], [*RECORDS[15:30], TOO_LONG], RECORDS[30:], [duplicate, "[1]"])
    formats = [SAMPLE_FORMATS[name] for name in ("jsonl", "avro", "messages")]
    expected = sorted([("part-3.jsonl:1", "not_an_object"), ("long", "over_budget"), ("r3", "duplicate_id")])
    with TestPipeline() as p:
        for label, one_process in (("one", True), ("spread", False)):
            (tmp_path / label).mkdir()
            produced = p | label >> mosaic_plan(one_process, paths, tmp_path / label, formats, num_shards=5)
            assert_that(
                produced[REJECTED] | f"{label}All" >> beam.combiners.ToList() | f"{label}Reasons" >> beam.Map(reasons),
                equal_to([expected]),
                label=f"{label} rejected",
            )
    files = {
        directory: {path.name: path.read_bytes() for path in (tmp_path / directory).iterdir()}
        for directory in ("one", "spread")
    }
    assert files["one"] == files["spread"] and len(files["one"]) == 5 * len(formats)
    assert len(written_samples(tmp_path / "one")) > 0


@pytest.mark.parametrize("one_process", [False, True])
def test_with_no_valid_record_every_shard_is_written_empty(one_process, tmp_path):
    paths = write_inputs(tmp_path, ["not json", TOO_LONG])
    output = tmp_path / "out"
    output.mkdir()
    with TestPipeline() as p:
        produced = p | mosaic_plan(one_process, paths, output, JSONL, num_shards=2)
        assert_that(
            produced[FILES] | beam.Map(lambda path: path.rsplit("/", 1)[-1]),
            equal_to([f"mosaics-0000{i}-of-00002.jsonl" for i in (0, 1)]),
        )
    assert [path.read_bytes() for path in sorted(output.iterdir())] == [b"", b""]


def test_default_run_uses_the_bundled_sample_data(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "mosaic-output" / "manifest.json").read_text())
    assert manifest["counts"]["records_read"] == 300 and manifest["inputs"][0].endswith("sample.jsonl")
    assert set(manifest["counts"]["rejected"]) >= {"malformed_json", "multi_turn", "over_budget", "unsupported_role"}
    assert "300 read · 11 rejected" in done.stdout


def test_the_core_logic_does_not_import_beam():
    core = Path(__file__).resolve().parents[1] / "transforms" / "core"
    code = "import sys; " + "; ".join(
        f"import transforms.core.{p.stem}" for p in core.glob("*.py") if p.stem != "__init__"
    )
    code += "; assert not any(m.startswith('apache_beam') for m in sys.modules), 'Beam imported'"
    subprocess.run([sys.executable, "-c", code], cwd=core.parents[1], check=True)
