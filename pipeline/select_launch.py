"""`mosaic-it select` before it starts: options checked, model and tokenizer resolved, template probed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from pipeline.errors import UsageError, check_local_directory
from pipeline.options import OptionsError
from pipeline.ownership import normalized
from pipeline.select_options import SelectOptions, default_cache_directory, validate
from transforms.core.ifd import PairBuilder, ScoringIdentity, TemplateError, resolve_template
from transforms.core.records import Record, Rejection
from transforms.core.selection import selection_size, window_size
from transforms.manifest import MANIFEST, SELECT_TOOL, read_manifest_at
from transforms.read import InputError, expand_inputs
from transforms.score_cache import cache_files
from transforms.select import ScoringConfig, SelectSettings

_FULL_HASH_LIMIT = 64 << 20  # files above this are fingerprinted by size, time, head and tail


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
    path = FileSystems.join(previous, MANIFEST)
    if not FileSystems.exists(path):
        raise UsageError(f"--previous '{previous}' holds no {MANIFEST}: not a finished select round")
    document = read_manifest_at(path)
    if document.get("tool") != SELECT_TOOL:
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
    if options.previous and normalized(options.previous) == normalized(output):
        raise UsageError("--output must differ from --previous: a round keeps the previous one to read")
    try:
        from transforms.core import lm
    except ImportError:
        raise UsageError("mosaic-it select needs torch: pip install 'mosaic-it-beam[select]'") from None
    device = lm.resolve_device(options.device)
    if device == "cuda" and not lm.torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA device")
    dtype = lm.resolve_dtype(options.dtype, device)

    for name, option in ((options.model, "--model"), (options.model_tokenizer, "--model-tokenizer")):
        if name:
            check_local_directory(name, option)
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
    cache_directory = None if options.no_cache else options.cache or default_cache_directory(output)
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
