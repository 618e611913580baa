"""quicktok's imports of Hugging Face byte-level BPE tokenizers, cached on disk by content.

An import takes seconds, so it is kept under the user cache folder, with the sha256 of each of
its files: a damaged cached import is reported, discarded and imported again, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
from pathlib import Path

from transforms.core.user_cache import user_cache_directory

log = logging.getLogger(__name__)

_IMPORTED = "imported"  # the encoding's name inside its cache directory
_REFUSED = "refused.txt"
_CHECKSUMS = "checksums.json"  # sha256 of every other file of the directory, written last


def _checksums(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.name != _CHECKSUMS
    }


def _cache_damage(directory: Path) -> str | None:
    """Why a cached import cannot be trusted (a file changed, missing or added), or None."""
    try:
        recorded = json.loads((directory / _CHECKSUMS).read_text(encoding="utf-8"))
        found = _checksums(directory)
    except (OSError, ValueError) as err:
        return f"checksums unreadable: {err}"
    if not isinstance(recorded, dict):
        return "checksums unreadable"
    changed = sorted(name for name in recorded.keys() | found.keys() if recorded.get(name) != found.get(name))
    return f"files differ from their checksums: {', '.join(changed)}" if changed else None


def _discard(directory: Path) -> None:
    # Moved aside first (onto a fresh empty directory, which rename replaces), so that another
    # process never finds a half-deleted import under the directory's name.
    aside = Path(tempfile.mkdtemp(dir=directory.parent, prefix="discarded-"))
    with contextlib.suppress(OSError):  # another process moved it first
        directory.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)


def _import_into(directory: Path, serialized: str) -> None:
    """Imports (or records quicktok's refusal) in a staging directory, then renames it into place."""
    import quicktok

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent))
    (staging / "tokenizer.json").write_text(serialized, encoding="utf-8")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quicktok.import_tokenizer(str(staging / "tokenizer.json"), _IMPORTED, data_dir=str(staging))
    except Exception as err:  # refused or failed: Hugging Face still counts exactly
        (staging / _REFUSED).write_text(str(err).splitlines()[0] if str(err) else type(err).__name__, encoding="utf-8")
    (staging / "tokenizer.json").unlink()
    (staging / _CHECKSUMS).write_text(json.dumps(_checksums(staging), sort_keys=True), encoding="utf-8")
    try:
        staging.rename(directory)
    except OSError:  # another process got there first
        shutil.rmtree(staging, ignore_errors=True)


def quicktok_import(serialized: str, spec: str):
    """quicktok's import of a byte-level BPE tokenizer (its tokenizer.json text), or None if
    quicktok refuses it. Imports and refusals are cached on disk by content, with a checksum
    of each file: a damaged cached import is reported, discarded and imported again."""
    import quicktok

    key = hashlib.sha256(f"{quicktok.__version__}\0{serialized}".encode()).hexdigest()[:24]
    directory = user_cache_directory("quicktok") / key
    try:
        damage = _cache_damage(directory) if directory.is_dir() else None
        if damage:
            log.warning("%s: cached quicktok import %s is damaged (%s); importing it again", spec, directory, damage)
            _discard(directory)
        if not directory.is_dir():
            _import_into(directory, serialized)
        refused = (directory / _REFUSED).read_text(encoding="utf-8") if (directory / _REFUSED).is_file() else None
    except OSError as err:
        log.warning("%s: cannot cache quicktok's import (%s); counting with Hugging Face", spec, err)
        return None
    if refused is not None:
        log.warning("%s: quicktok cannot count it (%s); counting with Hugging Face", spec, refused)
        return None
    # Not quicktok.get_encoding: its per-process cache would keep an encoding loaded before a repair.
    return quicktok.Tokenizer(_IMPORTED, str(directory))
