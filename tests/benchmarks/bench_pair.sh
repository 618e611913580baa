#!/usr/bin/env bash
# A/B of two checkouts on a noisy machine: both run `mosaic-it run` at the same time, each pinned to one
# core, swapping cores between rounds, so that both see the same load. Prints each run's wall, user and
# system seconds and, per round, the ratio of B's wall to A's.
#
#   tests/benchmarks/bench_pair.sh TREE_A TREE_B ROUNDS 'INPUT_GLOB' [more mosaic-it run flags]
#   tests/benchmarks/bench_pair.sh ../old . 4 '../shared/data/t0_50k/*.jsonl'
#
# Both trees run with this checkout's .venv (each tree's own code wins, from its working directory).
# Needs two cores; outputs go under the system temp folder.
set -euo pipefail
python="$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/python"
tree_a=$(cd "$1" && pwd) tree_b=$(cd "$2" && pwd) rounds=$3 input=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {  # tree core name [flags]: one run, timed; writes "wall user sys" to $work/name
  local tree=$1 core=$2 name=$3 TIMEFORMAT="%R %U %S"
  shift 3
  { time (cd "$tree" && taskset -c "$core" "$python" -m pipeline run --input "$input" --output "$work/out-$name" \
      --formats jsonl --tokenizer quicktok:llama3 --pack-processes 1 "$@" >/dev/null 2>"$work/log-$name" \
      || { echo "the run in $tree failed:" >&2; tail -3 "$work/log-$name" >&2; exit 1; }); } 2>"$work/$name"
}

for round in $(seq "$rounds"); do
  core_a=$(( round % 2 )) core_b=$(( (round + 1) % 2 ))
  run "$tree_a" "$core_a" a "$@" & run "$tree_b" "$core_b" b "$@" &
  wait -n && wait -n || { cat "$work/a" "$work/b" >&2; exit 1; }
  read -r wall_a user_a sys_a <"$work/a"
  read -r wall_b user_b sys_b <"$work/b"
  echo "round $round: A $wall_a s (user $user_a, sys $sys_a)  B $wall_b s (user $user_b, sys $sys_b)" \
       " B/A $(python3 -c "print(f'{$wall_b / $wall_a:.2f}')")"
  rm -rf "$work"/out-*
done
