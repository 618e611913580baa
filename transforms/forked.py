"""Running independent jobs on every core of a one-process runner, with forked helpers.

Beam's in-memory runner executes one bundle at a time in one thread, so a task that
holds all the work (see MosaicShards) uses one core. `map_forked` lets that task
share its jobs with helper processes forked from it: they see the jobs' data without a
copy, take jobs from a shared counter and send back only the results. The results are
the same whichever process computes a job, so outputs do not depend on the number of
processes or on timing.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar, cast

Job = TypeVar("Job")
Result = TypeVar("Result")


class HelperFailed(RuntimeError):
    """A forked helper raised, or died; the message carries its traceback or exit code."""


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def can_fork() -> bool:
    """Forking a process that runs threads is only safe where system libraries allow it:
    Linux, not macOS (whose frameworks may crash in a forked child)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def map_forked(function: Callable[[Job], Result], jobs: Sequence[Job], processes: int) -> Iterator[Result]:
    """function(job) for every job, each computed once, by this process or by one of
    `processes - 1` forked helpers; yielded as they are done, in no fixed order.

    This process takes a job itself only when no helper has a result waiting, so the
    caller's work on each result does not hold the helpers up.
    With one process, one job, or no fork on this platform, it is a plain map.
    """
    helpers = min(processes, len(jobs)) - 1
    if helpers <= 0 or not can_fork():
        yield from map(function, jobs)
        return
    context = multiprocessing.get_context("fork")
    taken = context.Value("q", 0)  # jobs handed out so far, in shared memory
    running: dict[Any, BaseProcess] = {}  # receiving end of its pipe -> helper
    try:
        # Objects alive now are never collected by a helper, so its collector does not touch
        # (and so copy) the pages it shares with this process.
        gc.freeze()
        try:
            for _ in range(helpers):
                receiver, sender = context.Pipe(duplex=False)
                helper = context.Process(target=_serve, args=(function, jobs, taken, sender, os.getpid()), daemon=True)
                helper.start()
                sender.close()
                running[receiver] = helper
        finally:
            gc.unfreeze()
        while running:
            ready = wait(list(running), timeout=0)
            if not ready:
                job = _take(taken, len(jobs))
                if job is not None:
                    yield function(jobs[job])
                    continue
                ready = wait(list(running))
            for pipe_end in cast(list[Connection], ready):
                done, value = _receive(pipe_end, running[pipe_end])
                if done:
                    running.pop(pipe_end).join()
                    pipe_end.close()
                else:
                    yield value
    finally:  # on an error, or when the caller stops early: no helper outlives the map
        for pipe_end, running_helper in running.items():
            running_helper.terminate()
            running_helper.join()
            pipe_end.close()


def _take(taken, total: int):
    """The next job's index, or None when every job is handed out."""
    with taken.get_lock():
        job = taken.value
        if job >= total:
            return None
        taken.value = job + 1
    return job


_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with_parent(parent: int) -> None:
    """Makes the kernel kill this helper when its parent dies.

    A parent killed from outside (by an out-of-memory killer, say) runs no clean-up, and a helper
    left alone would go on writing shards of a run that no longer exists, then wait forever.
    """
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _serve(function, jobs, taken, sender: Connection, parent: int) -> None:
    """A helper's loop: results as ("result", value), then ("done", None) or ("error", traceback).

    A thread sends them, so the helper goes on with its next job while the parent is busy
    and not yet reading; at most _UNSENT results wait.
    """
    _die_with_parent(parent)
    unsent: queue.Queue = queue.Queue(maxsize=_UNSENT)
    sending = threading.Thread(target=_send_all, args=(unsent, sender))
    sending.start()
    try:
        while (job := _take(taken, len(jobs))) is not None:
            unsent.put(("result", function(jobs[job])))
        unsent.put(("done", None))
    except BaseException:  # reported to the parent, which raises it
        unsent.put(("error", traceback.format_exc()))
    finally:
        unsent.put(None)
        sending.join()
        sender.close()


_UNSENT = 16


def _send_all(unsent: queue.Queue, sender: Connection) -> None:
    while (message := unsent.get()) is not None:
        sender.send(message)


def _receive(receiver: Connection, helper: BaseProcess) -> tuple[bool, Any]:
    """(True, None) when the helper is done, else (False, its next result)."""
    try:
        kind, value = receiver.recv()
    except EOFError:
        helper.join()
        raise HelperFailed(
            f"a forked helper process died (exit code {helper.exitcode}) before finishing its jobs"
        ) from None
    if kind == "error":
        raise HelperFailed(f"a forked helper process failed:\n{value}")
    return kind == "done", value
