"""Benchmarks of `mosaic-it select`: the selection step (the global step after scoring), and scoring.

Run from the repository root:  python tests/benchmarks/bench_select.py [--sizes 6898,13796,27592,55185]
Scoring row:                   python tests/benchmarks/bench_select.py --scoring

Scoring (`--scoring`): `select` of the 999 records of ../shared/data/alpaca_en_demo.json (round 0, no
cache, --dtype float32) with a tiny random Llama (hidden 64, 2 layers, the Llama-2 tokenizer of
../shared, vocabulary 32,000) built here, against a floor measured in the same run: one batched
forward pass over the same token sequences (sorted by length, cut to --batch-tokens), computing
only the response positions' logits (projected block by block into one reused 64 MiB buffer, the
fastest way found) and their float32 NLL, with the same dtype and threads and no Beam. It reports
both wall times and their ratio, tokens/s, the padding fraction, model calls and CPU user/system
seconds of each (the ratio of CPU seconds is the steadier figure on a shared machine). The floor
leaves out what select does before its first model call (tokenizer and model loads, tokenization):
these are timed apart and a second ratio counts them on the floor's side. Process start and imports
count on neither side (the bench imports torch and transformers before both).

Selection step: input: the responses of the T0 sample in ../shared/data/t0_50k (55,185 records) with IFD
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
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.select.select_support import save_random_llama
from transforms.core.randomness import digest
from transforms.core.records import Record
from transforms.core.selection import ScoreRow, diverse_greedy, selection_size, tfidf
from transforms.select import Candidate, Scored, SelectSettings, for_ordering, order_round

SHARED = Path(__file__).resolve().parents[2] / "../shared"
DATA = SHARED / "data/t0_50k"
ALPACA = SHARED / "data/alpaca_en_demo.json"
LLAMA2_TOKENIZER = SHARED / "tokenizers/llama2"
SCORING_TEMPLATE = "llama-2"  # the Llama-2 tokenizer ships no chat template


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


def build_scoring_model(directory: Path) -> Path:
    """The tiny random Llama of the scoring row (seeded), with the Llama-2 tokenizer."""
    sizes = {"vocab_size": 32000, "hidden_size": 64, "intermediate_size": 256, "num_key_value_heads": 4}
    save_random_llama(directory, 0, **sizes, max_position_embeddings=4096)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(LLAMA2_TOKENIZER / name, directory / name)
    return directory


def scoring_pairs(model_dir: Path, max_tokens: int) -> list:
    """The distinct scoring pairs select builds for the Alpaca records."""
    from transformers import AutoTokenizer

    from transforms.core.ifd import PairBuilder, ScoringIdentity, ScoringPair, resolve_template
    from transforms.core.records import Record

    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    records = [Record(str(i), r["instruction"], r["input"], r["output"], f"alpaca:{i}") for i, r in enumerate(rows)]
    template = resolve_template(SCORING_TEMPLATE, None)
    identity = ScoringIdentity("model", "tokenizer", template, max_tokens, "float32")
    builder = PairBuilder(AutoTokenizer.from_pretrained(model_dir), identity)
    built = builder.build(records)
    return list({pair.key: pair for pair in built if isinstance(pair, ScoringPair)}.values())  # each text once


def padding(batches: list[list[tuple]]) -> tuple[int, int]:
    """(real tokens, padded tokens) of batches of (token ids, n) sequences."""
    real = sum(len(ids) for batch in batches for ids, _ in batch)
    return real, sum(len(batch) * max(len(ids) for ids, _ in batch) for batch in batches)


def floor_batches(pairs: list, budget: int) -> list[list[tuple]]:
    """Every conditional and prior sequence, sorted by length and cut to `budget` padded tokens."""
    from transforms.core.ifd import micro_batches

    sequences = [s for p in pairs for s in ((p.conditional, p.conditional_response), (p.prior, p.prior_response))]
    return [[sequences[i] for i in batch] for batch in micro_batches([len(ids) for ids, _ in sequences], budget)]


def floor_pass(model, batches: list[list[tuple]]) -> float:
    """Seconds of one forward pass over the batches: the decoder on every (left-padded) token,
    the vocabulary projection and a float32 NLL on the response positions only."""
    import torch

    decoder, head = model.get_decoder(), model.get_output_embeddings()
    logits = torch.empty(((64 << 20) // (4 * head.out_features), head.out_features))
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            width = max(len(ids) for ids, _ in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            keep = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, (tokens, n) in enumerate(batch):
                ids[row, width - len(tokens) :] = torch.tensor(tokens)
                keep[row, width - n - 1 : -1] = True
            attention = (torch.arange(width) >= width - torch.tensor([len(t) for t, _ in batch]).unsqueeze(1)).long()
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            hidden = decoder(input_ids=ids, attention_mask=attention, position_ids=positions).last_hidden_state
            response, targets = hidden[keep], ids.roll(-1, dims=1)[keep]
            for first in range(0, len(response), len(logits)):
                part = response[first : first + len(logits)]
                block = torch.mm(part, head.weight.t(), out=logits[: len(part)])
                torch.log_softmax(block, -1, out=block).gather(1, targets[first : first + len(part), None]).neg()
    return time.perf_counter() - start


def scoring_row(batch_tokens: int, max_tokens: int) -> None:
    """select against the floor, in one run (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM

    from pipeline.iterit import run_select
    from transforms.select import micro_batch_plan

    if not (ALPACA.is_file() and LLAMA2_TOKENIZER.is_dir()):
        sys.exit(f"no data at {ALPACA} or no tokenizer at {LLAMA2_TOKENIZER}")
    with tempfile.TemporaryDirectory(prefix="bench-select-") as tmp:
        model_dir = build_scoring_model(Path(tmp) / "model")
        setup_cpu, start = cpu_seconds(), time.perf_counter()
        pairs = scoring_pairs(model_dir, max_tokens)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        setup_s, setup_cpu = time.perf_counter() - start, cpu_seconds() - setup_cpu
        select_cpu, start = cpu_seconds(), time.perf_counter()
        manifest = run_select(
            [
                "--input",
                str(ALPACA),
                "--output",
                str(Path(tmp) / "out"),
                "--model",
                str(model_dir),
                "--no-cache",
                "--prompt-template",
                SCORING_TEMPLATE,
                "--device",
                "cpu",
                "--dtype",
                "float32",
                "--batch-tokens",
                str(batch_tokens),
                "--max-tokens",
                str(max_tokens),
            ]
        )
        select_s, select_cpu = time.perf_counter() - start, cpu_seconds() - select_cpu
        batches = floor_batches(pairs, batch_tokens)
        floor_cpu = cpu_seconds()
        floor_s = floor_pass(model, batches)
        floor_cpu = cpu_seconds() - floor_cpu
    micro = micro_batch_plan(pairs, batch_tokens)  # select's micro-batches: one conditional and one prior call each
    plan = [[(p.conditional, p.conditional_response) for p in b] for b in micro]
    plan += [[(p.prior, p.prior_response) for p in b] for b in micro]
    (real, padded), (_, floor_padded) = padding(plan), padding(batches)
    scored = sum(p.conditional_response + p.prior_response for p in pairs)
    print(
        f"scoring: {manifest['counts']['scores']['computed']} records, {len(pairs)} distinct texts: "
        f"{real:,} tokens ({scored:,} scored), "
        f"torch threads {torch.get_num_threads()}, --batch-tokens {batch_tokens}",
        flush=True,
    )
    for name, seconds, cpu, padded_tokens, calls in (
        ("select", select_s, select_cpu, padded, len(plan)),
        ("floor", floor_s, floor_cpu, floor_padded, len(batches)),
    ):
        print(
            f"  {name:<6} {seconds:7.1f} s  {real / seconds:8,.0f} tokens/s  padding {1 - real / padded_tokens:5.1%}  "
            f"{calls:4} model calls  CPU user {cpu[0]:6.1f} s, sys {cpu[1]:5.1f} s",
            flush=True,
        )
    print(
        f"  floor's setup (tokenizer and model loads, tokenization) {setup_s:.1f} s, "
        f"CPU user {setup_cpu[0]:.1f} s, sys {setup_cpu[1]:.1f} s",
        flush=True,
    )
    ratio, cpu_ratio = select_s / floor_s, select_cpu.sum() / floor_cpu.sum()
    print(f"  select / floor = {ratio:.2f} (wall), {cpu_ratio:.2f} (CPU)", flush=True)
    ratio, cpu_ratio = select_s / (floor_s + setup_s), select_cpu.sum() / (floor_cpu + setup_cpu).sum()
    print(f"  select / (floor + its setup) = {ratio:.2f} (wall), {cpu_ratio:.2f} (CPU)", flush=True)


def cpu_seconds() -> np.ndarray:
    """(user, system) CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return np.array([usage.ru_utime, usage.ru_stime])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="6898,13796,27592,55185")
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--paired", action="store_true", help="synthetic records of two responses each, any size")
    parser.add_argument("--scoring", action="store_true", help="the scoring row instead of the selection step")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="with --scoring: select's --batch-tokens")
    parser.add_argument("--max-tokens", type=int, default=2048, help="with --scoring: select's --max-tokens")
    args = parser.parse_args()
    if args.scoring:
        scoring_row(args.batch_tokens, args.max_tokens)
        return
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
