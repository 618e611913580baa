"""Where the shared test data lives, and small file helpers for tests."""

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
LLAMA2 = SHARED / "tokenizers" / "llama2"


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests read the shared data beside the repository (../shared)")
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows),
        encoding="utf-8",
    )
    return path
