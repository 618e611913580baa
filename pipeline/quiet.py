"""Third-party notices that say nothing to a user of this command, dropped precisely.

Importing Beam's BigQuery client package without Google's apitools (the `[gcp]` extra) logs
"apitools not found ..." on the root logger, a warning about a feature this command never uses.
Only that message is dropped; every other warning of the root logger stays.
"""

from __future__ import annotations

import logging

_APITOOLS_NOTICE = "apitools not found, and bigquery client libraries are not available"


class _DropApitoolsNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and str(record.msg).startswith(_APITOOLS_NOTICE))


def install() -> None:
    root = logging.getLogger()
    if not any(isinstance(existing, _DropApitoolsNotice) for existing in root.filters):
        root.addFilter(_DropApitoolsNotice())


install()
