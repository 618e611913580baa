"""`mosaic-it select`: launch checks, assembly of the IterIT pipeline, and its manifest."""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.errors import UsageError
from pipeline.mosaic import SumCounters, versions
from pipeline.options import OptionsError, own_option_values
from pipeline.outputs import manifest_at
from pipeline.progress import run_with_progress
from pipeline.recipes import apply_recipe
from pipeline.report import select_summary
from pipeline.runner import new_pipeline
from pipeline.select_options import CACHE_DIRECTORY, SelectOptions, validate
from transforms.core.ifd import PairBuilder, ScoringIdentity, TemplateError, resolve_template
from transforms.core.randomness import digest
from transforms.core.records import Record, Rejection
from transforms.core.selection import RoundOrder, ScoreRow, selection_size, window_size
from transforms.read import RECORDS, REJECTED, InputError, ReadRecords, expand_inputs
from transforms.score_cache import ReadScoreCache, WriteScoreCache, cache_files
from transforms.select import (
    KEPT,
    MISSING,
    NEW_CACHE,
    WINDOW,
    MatchPrevious,
    ScoreCandidates,
    ScoringConfig,
    SelectSettings,
    for_ordering,
    order_round,
)
from transforms.write import (
    SCORES_FORMAT,
    SELECTED_FORMAT,
    WriteRejected,
    WriteSortedShards,
    clear_outputs,
    write_atomically,
)

ORDER_FILE = "order.jsonl"
MANIFEST_FILE = "manifest.json"
OUTPUT_PREFIXES = ("scores", "selected", "rejected")
ROWS_PER_SHARD = 100_000
_FULL_HASH_LIMIT = 64 << 20  # files above this are fingerprinted by size, time, head and tail
_PACKAGES = ("mosaic-it-beam", "apache-beam", "transformers", "tokenizers", "torch", "numpy", "scipy")


@dataclass(frozen=True)
class Launch:
    """Everything the pipeline needs, resolved and checked before it starts."""

    inputs: list[str]
    output: str
    config: ScoringConfig
    settings: SelectSettings
    window: int | None  # None in round 0: every record is scored
    previous: str | None
    cache_directory: str | None
    cache_files: list[str]


def directory_fingerprint(path: str) -> str:
    """A hash of a model or tokenizer directory: its files' names, sizes and contents (for
    files over 64 MiB: size, modification time, first and last MiB)."""
    root = Path(path)
    state = hashlib.blake2b(digest_size=16)
    for file in sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ):
        stat = file.stat()
        state.update(f"{file.relative_to(root).as_posix()}\x1f{stat.st_size}\x1f".encode())
        with file.open("rb") as handle:
            if stat.st_size <= _FULL_HASH_LIMIT:
                state.update(handle.read())
            else:
                state.update(f"{stat.st_mtime_ns}".encode() + handle.read(1 << 20))
                handle.seek(-(1 << 20), 2)
                state.update(handle.read())
    return state.hexdigest()


def resolve_model(name: str, revision: str | None, option: str) -> tuple[str | None, str]:
    """(revision workers load, identity) of a local directory or a hub id (pinned to its commit)."""
    if Path(name).is_dir():
        if revision:
            raise UsageError("--model-revision applies to hub ids, not to a local directory")
        return None, f"dir:{directory_fingerprint(name)}"
    try:
        from huggingface_hub import snapshot_download

        commit = Path(snapshot_download(name, revision=revision)).name
    except Exception as err:  # the hub client raises many types for a bad id, revision or network
        raise UsageError(f"{option} '{name}' is neither a directory nor a reachable hub model: {err}") from None
    return commit, f"hub:{name}@{commit}"


def _previous_round(previous: str, round_number: int) -> int:
    """The number of records the previous round ordered; checks that it is a finished earlier round."""
    path = FileSystems.join(previous, MANIFEST_FILE)
    if not FileSystems.exists(path):
        raise UsageError(f"--previous '{previous}' holds no {MANIFEST_FILE}: not a finished select round")
    document = manifest_at(path)
    if document.get("tool") != "mosaic-it select":
        raise UsageError(f"--previous '{previous}' is not the output of mosaic-it select")
    if document["round"] >= round_number:
        raise UsageError(f"--round {round_number} must come after the previous round {document['round']}")
    return document["counts"]["order"]


def prepare(argv: Sequence[str]) -> tuple[SelectOptions, Launch]:
    """Parses and checks the options, loads the tokenizer and checks the template. Raises UsageError."""
    options = SelectOptions(list(argv))
    try:
        validate(options, list(argv))
        inputs = expand_inputs(options.input)
    except (OptionsError, InputError) as err:
        raise UsageError(str(err)) from None
    output = options.output.rstrip("/")
    if options.previous and options.previous.rstrip("/") == output:
        raise UsageError("--output must differ from --previous: a round keeps the previous one to read")
    try:
        from transforms.core import lm
    except ImportError:
        raise UsageError("mosaic-it select needs torch: pip install 'mosaic-it-beam[select]'") from None
    device = lm.resolve_device(options.device)
    if device == "cuda" and not lm.torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA device")
    dtype = lm.resolve_dtype(options.dtype, device)

    model_revision, model_identity = resolve_model(options.model, options.model_revision, "--model")
    tokenizer_name = options.model_tokenizer or options.model
    if options.model_tokenizer:
        tokenizer_revision, tokenizer_identity = resolve_model(tokenizer_name, None, "--model-tokenizer")
    else:
        tokenizer_revision, tokenizer_identity = model_revision, model_identity
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name, revision=tokenizer_revision)
    except Exception as err:  # transformers raises many types for a bad directory
        raise UsageError(f"cannot load the tokenizer of '{tokenizer_name}': {err}") from None
    try:
        template = resolve_template(options.prompt_template, tokenizer.chat_template)
        identity = ScoringIdentity(model_identity, tokenizer_identity, template, options.max_tokens, dtype)
        _check_template(PairBuilder(tokenizer, identity))
    except TemplateError as err:
        raise UsageError(str(err)) from None

    k: int | None = None
    window: int | None = None
    if options.previous:
        population = _previous_round(options.previous, options.round)
        k = selection_size(options.ratio, population)
        window = window_size(k, options.update_ratio, population)
    cache_directory = (
        None if options.no_cache else options.cache or posixpath.join(posixpath.dirname(output) or ".", CACHE_DIRECTORY)
    )
    config = ScoringConfig(
        model=options.model,
        model_revision=model_revision,
        tokenizer=tokenizer_name,
        tokenizer_revision=tokenizer_revision,
        identity=identity,
        device=device,
        batch_tokens=options.batch_tokens,
        round=options.round,
        model_label=options.model,
    )
    settings = SelectSettings(options.ratio, options.score_type, options.diversity_decay, k)
    files = cache_files(cache_directory) if cache_directory else []
    return options, Launch(inputs, output, config, settings, window, options.previous, cache_directory, files)


def _check_template(builder: PairBuilder) -> None:
    """Fails now, not in every worker, when the template cannot render a scoring pair."""
    probe = Record("probe", "Say hello.", "", "Hello!", "probe:0")
    try:
        [result] = builder.build([probe])
    except Exception as err:  # Jinja raises many types from inside a template
        raise TemplateError(f"the chat template cannot render the scored chats: {err}") from None
    if isinstance(result, Rejection) and result.reason == "template_mismatch":
        raise TemplateError(f"the chat template cannot be used for scoring: {result.detail}")


class _WriteOrder(beam.DoFn):
    def __init__(self, directory: str):
        self.directory = directory

    def process(self, order: RoundOrder):
        path = FileSystems.join(self.directory, ORDER_FILE)
        write_atomically(
            path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in order.rows).encode("utf-8")
        )
        yield path


def _shards_for(rows: int) -> int:
    return max(1, math.ceil(rows / ROWS_PER_SHARD))


def _score_rows(order: RoundOrder, shards: int):
    """Every row's score, sharded by id hash and sorted by id within a shard."""
    for row in order.rows:
        score = ScoreRow.from_dict(row).to_dict()
        yield int.from_bytes(digest("scores", row["id"])[:8], "big") % shards, (row["id"], [score])


class WriteScores(beam.PTransform):
    """The round's order -> scores-SSSSS-of-NNNNN.jsonl; yields the paths."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, order):
        shards = order | "ScoreShards" >> beam.Map(lambda o: _shards_for(len(o.rows)))
        return (
            order
            | "ScoreRows" >> beam.FlatMap(_score_rows, beam.pvalue.AsSingleton(shards))
            | "WriteScoreShards" >> WriteSortedShards(self.directory, [SCORES_FORMAT], shards)
        )


def _selected(candidate, picks: dict[str, int]):
    """A picked candidate's record in pick order, in contiguous shards of pick numbers."""
    pick = picks.get(candidate.record.id)
    if pick is not None:
        yield pick * _shards_for(len(picks)) // len(picks), (pick, [candidate.record.to_alpaca()])


class WriteSelected(beam.PTransform):
    """Candidates and the round's order -> selected-SSSSS-of-NNNNN.jsonl (the picks, Alpaca with
    their ids, in pick order: `mosaic-it run --input` reads them as they are); yields the paths."""

    def __init__(self, directory: str, order):
        super().__init__()
        self.directory, self.order = directory, order

    def expand(self, candidates):
        picks = self.order | "Picks" >> beam.Map(
            lambda o: {row["id"]: row["pick"] for row in o.rows if row["pick"] is not None}
        )
        shards = picks | "SelectedShards" >> beam.Map(lambda p: _shards_for(len(p)))
        return (
            candidates
            | "PickRecords" >> beam.FlatMap(_selected, beam.pvalue.AsSingleton(picks))
            | "WriteSelectedShards" >> WriteSortedShards(self.directory, [SELECTED_FORMAT], shards)
        )


def _order_stats(order: RoundOrder) -> Counter:
    return Counter(
        {
            ("order", "records"): len(order.rows),
            ("order", "window"): order.window,
            ("order", "candidates"): order.candidates,
            ("order", "k"): order.k,
            ("order", "selected"): order.selected,
        }
    )


def select_manifest(stats: dict, launch: Launch, options: dict, outputs: dict) -> dict:
    """Everything about a round a later reader (or round) needs, without timestamps."""
    table: dict[str, dict[str, int]] = {}
    for (section, name), value in sorted(stats.items()):
        table.setdefault(section, {})[name] = value
    rejected = table.get("rejected", {})
    order = table.get("order", {})
    scores = table.get("scores", {})
    config = launch.config
    return {
        "tool": "mosaic-it select",
        "round": config.round,
        "options": options,
        "model": {"name": config.model, "revision": config.model_revision, "identity": config.identity.model},
        "tokenizer": {
            "name": config.tokenizer,
            "revision": config.tokenizer_revision,
            "identity": config.identity.tokenizer,
        },
        "prompt_template_sha": hashlib.sha256(config.identity.template.encode("utf-8")).hexdigest(),
        "device": config.device,
        "dtype": config.identity.dtype,
        "previous": launch.previous,
        "versions": versions(_PACKAGES),
        "inputs": launch.inputs,
        "counts": {
            # records_read == order + records_rejected (a record of the input is ordered or rejected).
            "records_read": sum(table.get("input", {}).values()),
            "records_rejected": sum(rejected.values()),
            "rejected": rejected,
            "order": order.get("records", 0),
            "window": order.get("window", 0),
            "candidates": order.get("candidates", 0),
            "k": order.get("k", 0),
            "selected": order.get("selected", 0),
            "scores": {
                "computed": scores.get("computed", 0),
                "cached": scores.get("cached", 0),
                "kept": scores.get("kept", 0),
            },
            "previous_missing": table.get("previous", {}).get("missing", 0),
        },
        "cache": {
            "directory": launch.cache_directory,
            "files_read": len(launch.cache_files),
            "files_written": sorted(outputs["cache"]),
        },
        "outputs": {
            name: sorted(paths) if isinstance(paths, list) else paths
            for name, paths in outputs.items()
            if name != "cache"
        },
    }


class _WriteManifest(beam.DoFn):
    def __init__(self, launch: Launch, options: dict):
        self.launch, self.options = launch, options

    def process(
        self,
        stats: dict,
        order_file: str,
        scores: list[str],
        selected: list[str],
        rejected: list[str],
        cache: list[str],
    ):
        outputs = {"order": order_file, "scores": scores, "selected": selected, "rejected": rejected, "cache": cache}
        document = select_manifest(stats, self.launch, self.options, outputs)
        path = FileSystems.join(self.launch.output, MANIFEST_FILE)
        write_atomically(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        yield path


def build_select_pipeline(pipeline: beam.Pipeline, launch: Launch, options: dict):
    """Wires one round; returns the PCollection holding the manifest path."""
    read = pipeline | "Read" >> ReadRecords(launch.inputs)
    if launch.previous:
        previous = (
            pipeline
            | "ReadPrevious" >> beam.io.ReadFromText(FileSystems.join(launch.previous, ORDER_FILE))
            | "ParsePrevious" >> beam.Map(json.loads)
        )
    else:
        previous = pipeline | "NoPrevious" >> beam.Create([])
    matched = (read[RECORDS], previous) | "MatchPrevious" >> MatchPrevious(launch.window)
    cache = pipeline | "ReadCache" >> ReadScoreCache(launch.cache_files)
    scoring = matched[WINDOW] | "Score" >> ScoreCandidates(launch.config, cache)
    kept = matched[KEPT] | "GatherKept" >> beam.combiners.ToList()
    order = (
        scoring["scored"]
        | "ForOrdering" >> beam.Map(for_ordering)
        | "GatherWindow" >> beam.combiners.ToList()
        | "OrderRound" >> beam.Map(order_round, beam.pvalue.AsSingleton(kept), launch.settings)
    )

    order_file = order | "WriteOrder" >> beam.ParDo(_WriteOrder(launch.output))
    score_files = order | "WriteScores" >> WriteScores(launch.output)
    selected_files = matched[WINDOW] | "WriteSelected" >> WriteSelected(launch.output, order)
    rejected = (read[REJECTED], matched[REJECTED], scoring[REJECTED]) | "AllRejected" >> beam.Flatten()
    rejected_files = rejected | "WriteRejected" >> WriteRejected(launch.output)
    if launch.cache_directory:
        cache_files_written = scoring[NEW_CACHE] | "WriteCache" >> WriteScoreCache(launch.cache_directory)
    else:
        cache_files_written = pipeline | "NoCache" >> beam.Create([])

    stats = (
        (
            read[RECORDS] | "RecordStats" >> beam.Map(lambda _: Counter({("input", "records"): 1})),
            read[REJECTED] | "UnreadableStats" >> beam.Map(lambda _: Counter({("input", "unreadable"): 1})),
            rejected | "RejectStats" >> beam.Map(lambda rejection: Counter({("rejected", rejection.reason): 1})),
            scoring["scored"] | "ScoreStats" >> beam.Map(lambda item: Counter({("scores", item.source): 1})),
            matched[KEPT] | "KeptStats" >> beam.Map(lambda _: Counter({("scores", "kept"): 1})),
            matched[MISSING] | "MissingStats" >> beam.Map(lambda _: Counter({("previous", "missing"): 1})),
            order | "OrderStats" >> beam.Map(_order_stats),
        )
        | "AllStats" >> beam.Flatten()
        | "SumStats" >> beam.CombineGlobally(SumCounters())
    )
    return stats | "WriteManifest" >> beam.ParDo(
        _WriteManifest(launch, options),
        beam.pvalue.AsSingleton(order_file),
        beam.pvalue.AsList(score_files),
        beam.pvalue.AsList(selected_files),
        beam.pvalue.AsList(rejected_files),
        beam.pvalue.AsList(cache_files_written),
    )


def run_select(argv: Sequence[str]) -> dict:
    """Runs one selection round to completion; returns its manifest."""
    options, launch = prepare(argv)
    for directory in filter(None, (launch.output, launch.cache_directory)):
        if not FileSystems.exists(directory):
            FileSystems.mkdirs(directory)
    clear_outputs(launch.output, OUTPUT_PREFIXES, (ORDER_FILE, MANIFEST_FILE))
    pipeline = new_pipeline(options)
    build_select_pipeline(pipeline, launch, own_option_values(options, SelectOptions))
    run_with_progress(pipeline)
    return manifest_at(FileSystems.join(launch.output, MANIFEST_FILE))


def select_command(argv: Sequence[str]) -> int:
    flags = apply_recipe(argv, SelectOptions)
    if flags is None:  # --print-config
        return 0
    document = run_select(flags)
    print(select_summary(document["options"]["output"]))
    return 0
