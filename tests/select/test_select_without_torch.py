"""torch is optional: without it `mosaic-it run` works and `select` says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from select_support import make_records, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
# Makes every `import torch` fail, as if torch were not installed.
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"


def cli_without_torch(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *arguments], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_run_works_and_select_explains_without_torch(tmp_path):
    source = write_jsonl(tmp_path / "input.jsonl", make_records(6))
    mosaic = cli_without_torch("run", "--input", str(source), "--output", str(tmp_path / "mosaic"), "--epochs", "1")
    assert mosaic.returncode == 0, mosaic.stderr
    assert "6 read · 0 rejected" in mosaic.stdout
    selection = cli_without_torch(
        "select", "--input", str(source), "--output", str(tmp_path / "sel"), "--model", str(tmp_path)
    )
    assert selection.returncode == 2
    assert "mosaic-it select needs torch: pip install 'mosaic-it-beam[select]'" in selection.stderr
