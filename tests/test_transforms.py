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
from apache_beam.utils import shared

from tests.shared_data import write_jsonl
from transforms.mosaic import MosaicConfig, MosaicShards, ReadAndMeasure
from transforms.read import REJECTED, ReadRecords, expand_inputs
from transforms.write import SAMPLE_FORMATS

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
            equal_to([("a.jsonl:2", "malformed_json"), ("c.json:1", "not_an_object"), ("e.json", "not_an_object")]),
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


@pytest.mark.parametrize("in_one_task", [False, True])
def test_read_measure_and_mosaic_place_every_record_once_per_epoch(in_one_task, tmp_path):
    paths = write_inputs(tmp_path, RECORDS[:20], [*RECORDS[20:], TOO_LONG, "not json"])
    output = tmp_path / "out"
    output.mkdir()
    handle = shared.Shared()
    with TestPipeline() as p:
        measured = p | ReadAndMeasure(paths, CONFIG, handle, in_one_task, processes=2)
        num_keys = p | "Keys" >> beam.Create([4])
        packed = measured["rows"] | MosaicShards(
            CONFIG, handle, num_keys, str(output), JSONL, in_one_task=in_one_task, processes=2
        )
        total_keys = 4 * CONFIG.epochs
        assert_that(packed["files"] | beam.combiners.Count.Globally(), equal_to([total_keys]), label="a file per shard")
        assert_that(packed[REJECTED], equal_to([]), label="no duplicates")
        rejected = measured[REJECTED] | beam.Map(lambda r: (r.source, r.reason))
        assert_that(
            rejected, equal_to([("long", "over_budget"), ("part-1.jsonl:26", "malformed_json")]), label="rejected"
        )
    per_epoch = {}
    for sample in written_samples(output):
        per_epoch.setdefault(sample["epoch"], Counter()).update(sample["sources"])
        assert sample["n_tokens"] <= CONFIG.max_length
    assert sorted(per_epoch) == list(CONFIG.epoch_numbers)
    assert all(placed == Counter(r["id"] for r in RECORDS) for placed in per_epoch.values())


def test_one_task_with_forked_helpers_writes_the_files_and_rejections_of_the_spread_plan(tmp_path):
    duplicate = {"id": "r3", "instruction": "A later record reusing an id", "output": "dropped"}
    paths = write_inputs(tmp_path, RECORDS[:15], [*RECORDS[15:30], TOO_LONG], RECORDS[30:], [duplicate, "[1]"])
    formats = [SAMPLE_FORMATS[name] for name in ("jsonl", "avro", "messages")]
    handle = shared.Shared()

    def run(p, label, **plan):
        output = tmp_path / label
        output.mkdir()
        measured = p | f"{label}Read" >> ReadAndMeasure(paths, CONFIG, handle, **plan)
        packed = measured["rows"] | f"{label}Pack" >> MosaicShards(
            CONFIG, handle, num_keys, str(output), formats, num_shards, **plan
        )
        rejected = (measured[REJECTED], packed[REJECTED]) | f"{label}Rejections" >> beam.Flatten()
        return (
            rejected
            | f"{label}Reasons" >> beam.Map(lambda r: (r.source, r.reason))
            | f"{label}Sorted" >> beam.combiners.ToList()
            | f"{label}Sort" >> beam.Map(sorted)
        )

    with TestPipeline() as p:
        num_keys = p | "Keys" >> beam.Create([4])
        num_shards = p | "Shards" >> beam.Create([5])
        one, spread = run(p, "one", in_one_task=True, processes=3), run(p, "spread")
        expected = [("part-3.jsonl:1", "not_an_object"), ("long", "over_budget"), ("r3", "duplicate_id")]
        assert_that(one, equal_to([sorted(expected)]), label="one task")
        assert_that(spread, equal_to([sorted(expected)]), label="spread")
    files = {
        directory: {path.name: path.read_bytes() for path in (tmp_path / directory).iterdir()}
        for directory in ("one", "spread")
    }
    assert files["one"] == files["spread"] and len(files["one"]) == 5 * len(formats)
    assert len(written_samples(tmp_path / "one")) > 0


@pytest.mark.parametrize("in_one_task", [False, True])
def test_with_no_valid_record_every_shard_is_written_empty(in_one_task, tmp_path):
    paths = write_inputs(tmp_path, ["not json", TOO_LONG])
    output = tmp_path / "out"
    output.mkdir()
    handle = shared.Shared()
    with TestPipeline() as p:
        measured = p | ReadAndMeasure(paths, CONFIG, handle, in_one_task, processes=2)
        num_keys, num_shards = p | "Keys" >> beam.Create([1]), p | "Shards" >> beam.Create([2])
        packed = measured["rows"] | MosaicShards(
            CONFIG, handle, num_keys, str(output), JSONL, num_shards, in_one_task, processes=2
        )
        assert_that(
            packed["files"] | beam.Map(lambda path: path.rsplit("/", 1)[-1]),
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
