"""Benchmark of `mosaic-it run` on the DirectRunner: speed, memory, the floor and the original's cost model.

    /work/venv/bin/python tests/benchmarks/bench_mosaic.py            # every in-memory row (about 10 minutes)
    /work/venv/bin/python tests/benchmarks/bench_mosaic.py --quick    # 55k T0 records and 10k Alpaca records only

Each row runs the CLI in a fresh process on inputs built from ../shared/data and prints:
records, epochs, tokenizer, runner mode, wall seconds, record-epochs per second, peak RSS
(the run's whole process tree), the floor for the same input (a process that reads every
shard, counts every record's tokens once with the same tokenizer and writes as many bytes
as the run wrote) and, for the Alpaca rows, the original method's cost model: for each
group of k records it renders and tokenizes the growing sample k times, one tokenizer call
per text, as the original Mosaic-IT code does. Both are timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "../shared"
T0 = SHARED / "data/t0_50k"
ALPACA = SHARED / "data/alpaca_en_demo.json"
LLAMA2 = SHARED / "tokenizers/llama2"
RECORDS_PER_FILE = 5000
EPOCHS = 4


@dataclass
class Row:
    records: int
    tokenizer: str  # as shown
    mode: str
    wall_s: float
    peak_rss_gb: float
    floor_s: float
    reference_s: float | None = None

    def cells(self) -> list[str]:
        speed = self.records * EPOCHS / self.wall_s
        cells = [
            f"{self.records:,}",
            str(EPOCHS),
            self.tokenizer,
            self.mode,
            f"{self.wall_s:.1f}",
            f"{speed:,.0f}",
            f"{self.peak_rss_gb:.2f} GB",
            f"{self.floor_s:.1f} ({self.wall_s / self.floor_s:.1f}x)",
        ]
        if self.reference_s is not None:
            cells.append(f"{self.reference_s:.1f} ({self.reference_s / self.wall_s:.1f}x)")
        else:
            cells.append("")
        return cells


HEADER = [
    "records",
    "epochs",
    "tokenizer",
    "runner mode",
    "wall s",
    "record-epochs/s",
    "peak RSS",
    "floor s (run/floor)",
    "original's cost model s (it/run)",
]


def print_row(cells: list[str]) -> None:
    print("| " + " | ".join(cells) + " |", flush=True)


# ---------------------------------------------------------------- inputs


def build_t0(records: int | None, work: Path) -> list[str]:
    """The shared T0 shards themselves (records=None), or `records` of them repeated with fresh ids."""
    if records is None:
        return [str(T0 / "*.jsonl")]
    lines = [
        line
        for path in sorted(T0.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return [str(_write_repeated(work / f"t0-{records}", [json.loads(line) for line in lines], records))]


def build_alpaca(records: int, work: Path) -> list[str]:
    return [str(_write_repeated(work / f"alpaca-{records}", json.loads(ALPACA.read_text(encoding="utf-8")), records))]


def _write_repeated(directory: Path, source: list[dict], records: int) -> Path:
    """`records` records cycling through `source`, each with a fresh id, in files of RECORDS_PER_FILE."""
    done = directory / "DONE"
    if not done.exists():
        directory.mkdir(parents=True, exist_ok=True)
        for start in range(0, records, RECORDS_PER_FILE):
            with open(directory / f"part-{start // RECORDS_PER_FILE:05d}.jsonl", "w", encoding="utf-8") as handle:
                for i in range(start, min(records, start + RECORDS_PER_FILE)):
                    handle.write(json.dumps({**source[i % len(source)], "id": f"r{i}"}, ensure_ascii=False) + "\n")
        done.touch()
    return directory / "*.jsonl"


def train_llama3_style(work: Path) -> str:
    """A byte-level BPE with the Llama-3 pre-tokenizer, trained on the shared data, saved as a
    Hugging Face tokenizer directory; returns its `hf:` spec."""
    directory = work / "llama3-style-tokenizer"
    if not (directory / "tokenizer.json").exists():
        sys.path.insert(0, str(ROOT))
        from tests.byte_level_bpe import train_byte_level_bpe

        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
        texts = [
            r["instruction"] + "\n" + r["input"] + "\n" + r["output"]
            for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json")
            for r in json.loads((SHARED / "data" / name).read_text(encoding="utf-8"))
        ]
        texts += [
            line for path in sorted(T0.glob("*.jsonl"))[::4] for line in path.read_text(encoding="utf-8").splitlines()
        ]
        tokenizer = train_byte_level_bpe(texts, 32000, specials, ignore_merges=True)
        directory.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(directory / "tokenizer.json"))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": specials[0], "eos_token": specials[1]}
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return f"hf:{directory}"


# ---------------------------------------------------------------- measuring


def run_measured(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of a command: the larger of its own peak and its process
    tree's, sampled every 0.1 s (a multi-processing run's workers are its children)."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        tree_peak, done = [0], threading.Event()

        def sample():
            while not done.wait(0.1):
                tree_peak[0] = max(tree_peak[0], _tree_rss(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        if process.returncode != 0:
            log.seek(0)
            raise SystemExit(f"command failed: {' '.join(command)}\n{log.read().decode()[-3000:]}")
    return wall, max(tree_peak[0], usage.ru_maxrss * 1024) / 1e9


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(entry.name)
        children.setdefault(int(fields[1]), []).append(child)
        rss[child] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


def output_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


FLOOR = """
import glob, json, sys
from transforms.core.tokens import load_counter
from transforms.read import read_file
patterns, spec, out_path, size = json.loads(sys.argv[1])
counter = load_counter(spec)
batch = []
for pattern in patterns:
    for path in sorted(glob.glob(pattern)):
        for record in read_file(path):
            batch.append(record.prompt + record.output)
            if len(batch) == 4096:
                counter.count(batch)
                batch = []
counter.count(batch)
block = bytes(1 << 20)
with open(out_path, "wb") as handle:
    for _ in range(size >> 20):
        handle.write(block)
    handle.write(bytes(size & ((1 << 20) - 1)))
"""


def floor_seconds(inputs: list[str], tokenizer: str, size: int, work: Path) -> float:
    argument = json.dumps([inputs, tokenizer, str(work / "floor.bin"), size])
    wall, _ = run_measured([sys.executable, "-c", FLOOR, argument])
    (work / "floor.bin").unlink()
    return wall


def reference_seconds(inputs: list[str], tokenizer: str, limit: int) -> float:
    """The original method's cost over EPOCHS epochs, timed on the first `limit` records and
    scaled to all of them (its cost is linear in the number of records)."""
    import glob

    sys.path.insert(0, str(ROOT))
    from transformers import AutoTokenizer

    from transforms.core.randomness import HashStream
    from transforms.core.rules import load_rules
    from transforms.core.strategies import compose
    from transforms.core.wrap import draw_group_size
    from transforms.read import read_file

    records = [r for pattern in inputs for path in sorted(glob.glob(pattern)) for r in read_file(path)]
    timed = records[:limit]
    hf = AutoTokenizer.from_pretrained(tokenizer.removeprefix("hf:"))
    rules = load_rules()
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        first, group = 0, 0
        while first < len(timed):
            size = draw_group_size("uniform", 10, HashStream("reference", epoch, group))
            chosen = timed[first : first + size]
            for k in range(1, len(chosen) + 1):  # the growing sample, rendered and tokenized again
                sample = compose(
                    [r.prompt for r in chosen[:k]],
                    [r.output for r in chosen[:k]],
                    "both",
                    rules,
                    HashStream(epoch, group, k),
                )
                len(hf(sample.instruction + sample.output)["input_ids"])
            first, group = first + len(chosen), group + 1
    return (time.perf_counter() - start) * len(records) / len(timed)


# ---------------------------------------------------------------- rows


def bench(
    inputs: list[str], records: int, tokenizer: str, label: str, mode: str, work: Path, reference_limit: int = 0
) -> Row:
    print(f"running {records:,} records, {label}, {mode} ...", file=sys.stderr, flush=True)
    output = work / "out"
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "--input",
        *inputs,
        "--output",
        str(output),
        "--formats",
        "jsonl",
        "--tokenizer",
        tokenizer,
    ]
    if mode == "multi_processing":
        command += ["--direct_running_mode=multi_processing", f"--direct_num_workers={os.cpu_count()}"]
    wall, peak = run_measured(command)
    floor = floor_seconds(inputs, tokenizer, output_bytes(output), work)
    reference = reference_seconds(inputs, tokenizer, reference_limit) if reference_limit else None
    return Row(records, label, mode, wall, peak, floor, reference)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Only the 55k T0 row and the 10k Alpaca rows.")
    parser.add_argument(
        "--t0-sizes",
        nargs="*",
        type=int,
        default=[250_000, 1_000_000],
        help="Built T0 inputs after the shared 55,185 records.",
    )
    parser.add_argument(
        "--alpaca-sizes",
        nargs="*",
        type=int,
        default=[10_000, 100_000],
        help="Built Alpaca inputs (byte-level tokenizer rows).",
    )
    parser.add_argument("--modes", nargs="+", default=["in_memory"], choices=["in_memory", "multi_processing"])
    parser.add_argument(
        "--reference-records",
        type=int,
        default=20_000,
        help="Records the original's cost model is timed on (then scaled).",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mosaic-it-bench",
        help="Built inputs and outputs (kept between runs).",
    )
    args = parser.parse_args(argv)
    if not T0.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    t0_sizes = [] if args.quick else args.t0_sizes
    alpaca_sizes = [10_000] if args.quick else args.alpaca_sizes
    llama3_style = train_llama3_style(args.work)

    print(
        f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; python {sys.version.split()[0]}"
    )
    print_row(HEADER)
    print_row(["---"] * len(HEADER))
    default = ("quicktok:llama3", "quicktok:llama3 (T0)")
    llama2 = (f"hf:{LLAMA2}", "hf: Llama-2 (Alpaca)")
    byte_level = (llama3_style, "hf: Llama-3-style BPE (Alpaca)")
    for mode in args.modes:
        print_row(bench(build_t0(None, args.work), 55_185, *default, mode, args.work).cells())
        for size in t0_sizes:
            print_row(bench(build_t0(size, args.work), size, *default, mode, args.work).cells())
        print_row(
            bench(build_alpaca(10_000, args.work), 10_000, *llama2, mode, args.work, args.reference_records).cells()
        )
        for size in alpaca_sizes:
            print_row(
                bench(build_alpaca(size, args.work), size, *byte_level, mode, args.work, args.reference_records).cells()
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
