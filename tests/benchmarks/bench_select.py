"""Benchmark of the selection step of `mosaic-it select` (the global step after scoring).

Run from the repository root:  python tests/benchmarks/bench_select.py [--sizes 6898,13796,27592,55185]

Input: the responses of the T0 sample in ../shared/data/t0_50k (55,185 records) with IFD
scores drawn from hashes of the record number (uniform in [0.3, 1.2), about 78% below 1:
scoring 55k records needs a real model and is not what this measures). For each size (the
first n records, taking every (55185 / n)-th), it times the global step as the pipeline runs
it (`order_round`: sort, TF-IDF, lazy greedy, order rows) at --ratio 0.05, --score-type both,
and reports the phases, peak memory and a power-law fit t = a * n^b with its 1M extrapolation.
With --paired, records are two T0 responses joined (see `paired`), for sizes up to 1M and more.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transforms.core.randomness import digest
from transforms.core.records import Record
from transforms.core.selection import ScoreRow, diverse_greedy, selection_size, tfidf
from transforms.select import Candidate, Scored, SelectSettings, for_ordering, order_round

DATA = Path(__file__).resolve().parents[2] / "../shared/data/t0_50k"


def load() -> list[tuple[str, str]]:
    rows = []
    for path in sorted(glob.glob(str(DATA / "*.jsonl"))):
        name = Path(path).name
        with open(path, encoding="utf-8") as handle:
            rows.extend((f"{name}:{i}", json.loads(line)["completion"]) for i, line in enumerate(handle))
    if not rows:
        sys.exit(f"no data at {DATA}")
    return rows


def paired(rows: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """n synthetic records beyond the data's size: response i joined with a hash-chosen other
    response, so texts stay real T0 wording while the vocabulary keeps growing."""
    out = []
    for i in range(n):
        first = rows[i % len(rows)][1]
        other = rows[int.from_bytes(digest("pair", i)[:8], "big") % len(rows)][1]
        out.append((f"paired.jsonl:{i}", f"{first} {other}"))
    return out


def window(rows: list[tuple[str, str]]) -> list[tuple]:
    items = []
    for n, (origin, response) in enumerate(rows):
        ifd = float(np.float32(0.3 + 0.9 * int.from_bytes(digest("ifd", n)[:4], "big") / 2**32))
        record = Record(origin, "instruction", "", response, origin)
        row = ScoreRow(origin, ifd, 1.0, 1.0, 1, 0, "bench")
        items.append(for_ordering(Scored(Candidate(record, None), row, "computed")))
    return items


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="6898,13796,27592,55185")
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--paired", action="store_true", help="synthetic records of two responses each, any size")
    args = parser.parse_args()
    everything = load()
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = SelectSettings(args.ratio, "both", 0.1, None)
    results = []
    for n in sizes:
        step = max(1, len(everything) // n)
        rows = paired(everything, n) if args.paired else everything[::step][:n]
        items = window(rows)
        start = time.perf_counter()
        order = order_round(items, [], settings)
        total = time.perf_counter() - start
        # The phases alone, for the report.
        ifd = np.array([item[1].ifd for item in items])
        candidates = np.flatnonzero(ifd < 1)
        t0 = time.perf_counter()
        weights = tfidf([items[i][2] for i in candidates])
        t1 = time.perf_counter()
        k = selection_size(args.ratio, n)
        picks = diverse_greedy(ifd[candidates], weights, k, 0.1)
        t2 = time.perf_counter()
        assert len(picks) == order.selected == k
        results.append((n, total))
        print(
            f"n={n:>7} k={k:>5} candidates={len(candidates):>6} terms={weights.shape[1]:>8} nnz={weights.nnz:>9}  "
            f"global step {total:6.2f} s  (tfidf {t1 - t0:5.2f} s, greedy {t2 - t1:5.2f} s)  "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:7.0f} MiB",
            flush=True,
        )
    if len(results) > 1:
        x = np.log([n for n, _ in results])
        y = np.log([t for _, t in results])
        b, log_a = np.polyfit(x, y, 1)
        print(f"fit: t = {math.exp(log_a):.3g} * n^{b:.2f}; 1,000,000 records -> {math.exp(log_a) * 1e6**b:.0f} s")


if __name__ == "__main__":
    main()
