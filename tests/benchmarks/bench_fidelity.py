"""How full Mosaic-IT groups are: group sizes and long samples of `mosaic-it run` on Alpaca.

    .venv/bin/python tests/benchmarks/bench_fidelity.py [--tree DIR]

Runs alpaca_en_demo.json with the Llama-2 tokenizer, budget 2,000, 4 epochs, uniform/10, strategy both,
for seeds 0-2 (the setting of the README's side-by-side table; `--seeds` for others), and prints per seed the number of samples,
the mean group size, the share of groups of 8, 9 and 10 records, and the samples of 1,800 tokens or more.
`--tree` runs another checkout of the project (for a before/after comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALPACA = ROOT / "../shared/data/alpaca_en_demo.json"
LLAMA2 = ROOT / "../shared/tokenizers/llama2"


def measure(tree: Path, seed: int, output: Path) -> str:
    argv = ["run", "--input", str(ALPACA), "--tokenizer", f"hf:{LLAMA2}", "--max-length", "2000"]
    argv += ["--seed", str(seed), "--output", str(output), "--formats", "jsonl", "--pack-processes", "1"]
    subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,  # `-m` puts the working directory first on the path, before PYTHONPATH
        check=True,
        capture_output=True,
    )
    counts = json.loads((output / "manifest.json").read_text())["counts"]
    sizes = {int(size): n for size, n in counts["group_size"].items()}
    samples = sum(sizes.values())
    mean = sum(size * n for size, n in sizes.items()) / samples
    shares = " / ".join(f"{100 * sizes.get(size, 0) / samples:.1f}" for size in (8, 9, 10))
    long = sum(json.loads(line)["n_tokens"] >= 1800 for path in output.glob("mosaics-*.jsonl") for line in path.open())
    return f"seed {seed}: {samples} samples, mean group size {mean:.2f}, sizes 8/9/10 {shares} %, {long} of 1,800+"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="Checkout of the project to run.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds to run (default: 0 1 2).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            print(measure(args.tree.resolve(), seed, Path(scratch) / f"seed-{seed}"), flush=True)


if __name__ == "__main__":
    main()
