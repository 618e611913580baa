"""A run's outcome from its counts: the manifest's `status` and the command's exit code.

The outputs and the manifest are written whatever the outcome, so a user can see why;
the exit code tells a scheduler that something was lost or nothing was made.
"""

from __future__ import annotations

from collections.abc import Mapping

from transforms.core.records import FILE_REJECT_REASONS

EXIT_OK = 0
EXIT_USAGE = 2  # a mistake in the command line, or an input or output that cannot work; nothing was run
EXIT_INCOMPLETE_INPUT = 3  # a file could not be read completely (see the rejected output)
EXIT_NO_OUTPUT = 4  # no sample (run) or no ordered record (select) was produced
EXIT_TOO_MANY_REJECTED = 5  # more than --max-reject-ratio of the records were rejected
EXIT_ENVIRONMENT = 6  # the output could not be written, or an input vanished, during the run
EXIT_BUSY = 7  # another run holds the output (or run id); nothing was run


def run_status(*, records_read: int, rejected: Mapping[str, int], produced: int, max_reject_ratio: float) -> dict:
    """{"state", "exit_code", "detail"} of a finished run; `produced` counts samples or ordered records."""
    unreadable = {reason: n for reason, n in rejected.items() if reason in FILE_REJECT_REASONS and n}
    if unreadable:
        files = ", ".join(f"{reason} {n}" for reason, n in sorted(unreadable.items()))
        return _status("incomplete_input", EXIT_INCOMPLETE_INPUT, f"files not read completely: {files}")
    if produced == 0:
        return _status("no_output", EXIT_NO_OUTPUT, "nothing was produced: every record was rejected or none was read")
    record_rejections = sum(rejected.values())
    if records_read and record_rejections / records_read > max_reject_ratio:
        share = record_rejections / records_read
        detail = f"{record_rejections:,} of {records_read:,} records rejected ({share:.0%}), over --max-reject-ratio"
        return _status("too_many_rejected", EXIT_TOO_MANY_REJECTED, f"{detail} {max_reject_ratio:g}")
    return _status("ok", EXIT_OK, "")


def _status(state: str, exit_code: int, detail: str) -> dict:
    return {"state": state, "exit_code": exit_code, "detail": detail}
