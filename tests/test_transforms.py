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
from transforms.mosaic import MosaicConfig, MosaicSamples, ReadAndMeasure
from transforms.read import REJECTED, ReadRecords, expand_inputs

CONFIG = MosaicConfig(
    tokenizer="quicktok:llama3", length_template="raw", rules_text=None, seed=1, epochs=3, epoch_offset=2,
    strategy="both", wrap_mode="uniform", wrap_max=6, max_length=60, records_per_key=10,
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
        assert_that(read.records | beam.Map(lambda r: r.id), equal_to(["a.jsonl:0", "b.jsonl.gz:0", "x1", "d.json:0", "d.json:1"]), label="ids")
        assert_that(
            read[REJECTED] | beam.Map(lambda r: (r.source, r.reason)),
            equal_to([("a.jsonl:2", "malformed_json"), ("c.json:1", "not_an_object"), ("e.json", "not_an_object")]),
            label="rejected",
        )


def _placed_once_per_epoch(ids, epochs):
    def check(elements):
        per_epoch = {}
        for _, keys in elements:
            for sample in (json.loads(line) for _, lines in keys for line in lines):
                per_epoch.setdefault(sample["epoch"], Counter()).update(sample["sources"])
                assert sample["n_tokens"] <= CONFIG.max_length
        assert sorted(per_epoch) == list(epochs)
        for placed in per_epoch.values():
            assert placed == Counter(ids)

    return check


RECORDS = [{"id": f"r{i}", "instruction": f"Task number {i} " + "x " * (i % 9), "output": f"Reply {i}"} for i in range(45)]
TOO_LONG = {"id": "long", "instruction": "word " * 80, "output": "reply"}


def write_inputs(directory: Path, *files: list) -> list[str]:
    return [str(write_jsonl(directory / f"part-{i}.jsonl", rows)) for i, rows in enumerate(files)]


@pytest.mark.parametrize("in_one_task", [False, True])
def test_read_measure_and_mosaic_place_every_record_once_per_epoch(in_one_task, tmp_path):
    paths = write_inputs(tmp_path, RECORDS[:20], RECORDS[20:] + [TOO_LONG, "not json"])
    handle = shared.Shared()
    with TestPipeline() as p:
        measured = p | ReadAndMeasure(paths, CONFIG, handle, in_one_task, processes=2)
        num_keys = p | "Keys" >> beam.Create([4])
        packed = measured["rows"] | MosaicSamples(CONFIG, handle, num_keys, in_one_task=in_one_task, processes=2)
        assert_that(packed.samples, _placed_once_per_epoch([r["id"] for r in RECORDS], CONFIG.epoch_numbers))
        assert_that(packed[REJECTED], equal_to([]), label="no duplicates")
        rejected = measured[REJECTED] | beam.Map(lambda r: (r.source, r.reason))
        assert_that(rejected, equal_to([("long", "over_budget"), ("part-1.jsonl:26", "malformed_json")]), label="rejected")


def test_one_task_with_forked_helpers_gives_the_samples_and_rejections_of_the_spread_plan(tmp_path):
    duplicate = {"id": "r3", "instruction": "A later record reusing an id", "output": "dropped"}
    paths = write_inputs(tmp_path, RECORDS[:15], RECORDS[15:30] + [TOO_LONG], RECORDS[30:], [duplicate, "[1]"])
    handle = shared.Shared()

    def everything(p, label, **plan):
        measured = p | f"{label}Read" >> ReadAndMeasure(paths, CONFIG, handle, **plan)
        packed = measured["rows"] | f"{label}Pack" >> MosaicSamples(CONFIG, handle, num_keys, num_shards, **plan)
        samples = packed.samples | f"{label}Samples" >> beam.FlatMap(lambda shard: [(shard[0], ordinal, s) for ordinal, ss in shard[1] for s in ss])
        rejected = (measured[REJECTED], packed[REJECTED]) | f"{label}Rejections" >> beam.Flatten()
        reasons = rejected | f"{label}Rejected" >> beam.Map(lambda r: ("rejected", r.source, r.reason))
        both = (samples, reasons) | f"{label}All" >> beam.Flatten()
        return both | f"{label}List" >> beam.combiners.ToList() | f"{label}Sort" >> beam.Map(lambda items: sorted(map(repr, items)))

    with TestPipeline() as p:
        num_keys = p | "Keys" >> beam.Create([4])
        num_shards = p | "Shards" >> beam.Create([5])
        one = everything(p, "One", in_one_task=True, processes=3)
        spread = everything(p, "Spread")
        reasons = ("duplicate_id", "over_budget", "not_an_object")
        same = one | beam.Map(lambda a, b: a == b and all(any(reason in item for item in a) for reason in reasons), beam.pvalue.AsSingleton(spread))
        assert_that(same, equal_to([True]))


def test_default_run_uses_the_bundled_sample_data(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "mosaic-output" / "manifest.json").read_text())
    assert manifest["counts"]["records_read"] == 300 and manifest["inputs"][0].endswith("sample.jsonl")
    assert set(manifest["counts"]["rejected"]) >= {"malformed_json", "multi_turn", "over_budget", "unsupported_role"}
    assert "300 read · 11 rejected" in done.stdout


def test_the_core_logic_does_not_import_beam():
    core = Path(__file__).resolve().parents[1] / "transforms" / "core"
    code = "import sys; " + "; ".join(f"import transforms.core.{p.stem}" for p in core.glob("*.py") if p.stem != "__init__")
    code += "; assert not any(m.startswith('apache_beam') for m in sys.modules), 'Beam imported'"
    subprocess.run([sys.executable, "-c", code], cwd=core.parents[1], check=True)
