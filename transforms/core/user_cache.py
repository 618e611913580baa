"""The user cache folder this tool keeps its caches under."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_directory(name: str) -> Path:
    """`$XDG_CACHE_HOME/mosaic-it/<name>`, with `~/.cache` when XDG_CACHE_HOME is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mosaic-it" / name
