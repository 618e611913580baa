"""What crosses the shuffle (RowBatch) and the one-shuffle sharding of samples."""

from __future__ import annotations

import json
import pickle

import apache_beam as beam

from tests.e2e import read_jsonl, run_job
from tests.shared_data import SHARED_DATA, require_shared
from transforms.core.shards import ShardPlan
from transforms.encoding import RowBatch, RowBatchCoder


def test_row_batch_round_trips_and_is_decoded_only_when_read():
    rows = [
        (f"r{i}", f"instruction é {i} " * 20, "", f"output {i} " * 30, f"f:{i}", 12, ("in", 3), ("output", 0))
        for i in range(3)
    ]
    coder = beam.coders.registry.get_coder(RowBatch)
    assert isinstance(coder, RowBatchCoder)
    encoded = coder.encode(RowBatch(rows))
    decoded = coder.decode(encoded)
    assert decoded._items is None, "decoding keeps the bytes"
    assert coder.encode(decoded) is encoded, "re-encoding an undecoded batch reuses its bytes"
    assert list(decoded) == rows and len(decoded) == 3 and decoded._items is not None
    assert len(encoded) < len(pickle.dumps(rows)), "compressed"
    assert 0 < coder.estimate_size(RowBatch(rows)) < 10 * len(pickle.dumps(rows))


def test_shards_hold_contiguous_key_ranges():
    plan = ShardPlan(keys_per_epoch=5, epochs=2, num_shards=4)
    shards = [plan.shard_of(ordinal) for ordinal in range(plan.total_keys)]
    assert shards == sorted(shards) and set(shards) == set(range(plan.num_shards))


def test_every_shard_is_written_when_there_are_more_shards_than_keys(tmp_path):
    data = require_shared(SHARED_DATA / "alpaca_en_demo.json")
    manifest = run_job([data], tmp_path, "--epochs", "1", "--num-shards", "5", "--formats", "jsonl,avro")
    names = sorted(path.name for path in tmp_path.glob("mosaics-*"))
    assert names == [f"mosaics-{shard:05d}-of-00005.{ext}" for shard in range(5) for ext in ("avro", "jsonl")]
    sizes = [len((tmp_path / f"mosaics-{shard:05d}-of-00005.jsonl").read_text().splitlines()) for shard in range(5)]
    assert sizes.count(0) == 4, "one key, one shard with samples, four empty ones"
    assert len(read_jsonl(tmp_path, "mosaics")) == manifest["counts"]["samples"]
    assert json.loads((tmp_path / "manifest.json").read_text())["outputs"]["samples"] == names
