"""Progress counters: Beam metrics that the process driving a local run can also read while it runs.

On the DirectRunner `pipeline.run()` returns only at the end and Beam metrics are
only readable from its result, so every increment also goes to a tally kept by this
process. The driver watches its own tally (in-memory mode runs the DoFns in its
process); a worker process of a multi-processing run publishes its tally to the
folder named by MOSAIC_IT_PROGRESS_DIR about once a second, where the driver sums it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter

from apache_beam.metrics import Metrics

NAMESPACE = "mosaic-it"
PROGRESS_DIR_ENV = "MOSAIC_IT_PROGRESS_DIR"
_PUBLISH_EVERY_S = 1.0


class _Tally:
    """The counts of this process; a worker of a local run also publishes them to the progress folder."""

    def __init__(self):
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._publishing_decided = False
        self.watched_here = False  # set in the driver, which reads the tally instead of publishing it

    def add(self, name: str, n: int) -> None:
        with self._lock:
            self._counts[name] += n
            if not self._publishing_decided:  # once per process: reading os.environ costs more than counting
                self._publishing_decided = True
                directory = os.environ.get(PROGRESS_DIR_ENV)
                if directory and not self.watched_here:
                    threading.Thread(target=self._publish, args=(directory,), daemon=True).start()

    def snapshot(self) -> Counter:
        with self._lock:
            return Counter(self._counts)

    def _publish(self, directory: str) -> None:
        path = os.path.join(directory, f"{os.getpid()}.json")
        while True:
            try:
                with open(f"{path}.tmp", "w") as handle:
                    json.dump(self.snapshot(), handle)
                os.replace(f"{path}.tmp", path)  # the driver never reads half a file
            except OSError:  # the driver removed the folder: its run is over
                return
            time.sleep(_PUBLISH_EVERY_S)


TALLY = _Tally()


class ProgressCounter:
    """A Beam counter in the `mosaic-it` namespace whose increments the local driver also sees.

    Every counter with a label is listed in COUNTERS, the order of a progress line; the others
    feed its percentage.
    """

    def __init__(self, name: str, label: str | None = None):
        self.name, self.label = name, label
        self._metric = Metrics.counter(NAMESPACE, name)
        if label:
            COUNTERS.append(self)

    def inc(self, n: int = 1) -> None:
        self._metric.inc(n)
        TALLY.add(self.name, n)


COUNTERS: list[ProgressCounter] = []
RECORDS_READ = ProgressCounter("records_read", "read")
RECORDS_TOKENIZED = ProgressCounter("records_tokenized", "tokenized")
SAMPLES_PACKED = ProgressCounter("samples_packed", "samples")
RECORDS_REJECTED = ProgressCounter("records_rejected", "rejected")
RECORDS_SCORED = ProgressCounter("records_scored", "scored")
CACHE_HITS = ProgressCounter("cache_hits", "cached")
TOKENS_SCORED = ProgressCounter("tokens_scored", "tokens")
# The work of a mosaic run once its records are counted: every valid record once per epoch.
RECORD_EPOCHS_PLANNED = ProgressCounter("record_epochs_planned")
RECORD_EPOCHS_PACKED = ProgressCounter("record_epochs_packed")
# The work of a select round once its window is matched with the score cache: the records of the
# micro-batches the model scores; then the round is ordered and its files written.
RECORDS_TO_SCORE = ProgressCounter("records_to_score")
ROUNDS_ORDERED = ProgressCounter("rounds_ordered")
