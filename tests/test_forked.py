import multiprocessing
import os
import time

import pytest

from transforms.forked import HelperFailed, can_fork, map_forked

pytestmark = pytest.mark.skipif(not can_fork(), reason="this platform cannot fork")
PARENT = os.getpid()


def slow_square(job: int) -> tuple[int, int, int]:
    time.sleep(0.005)
    return job, job * job, os.getpid()


def test_every_job_is_done_once_and_helpers_share_the_work():
    results = list(map_forked(slow_square, list(range(60)), processes=3))
    assert sorted((job, square) for job, square, _ in results) == [(job, job * job) for job in range(60)]
    assert len({pid for _, _, pid in results} - {PARENT}) >= 1, "no helper did any job"
    assert multiprocessing.active_children() == []


def test_one_process_is_a_plain_map_here():
    assert [pid for _, _, pid in map_forked(slow_square, [1, 2, 3], processes=1)] == [PARENT] * 3


def fails_in_a_helper(job: int) -> int:
    time.sleep(0.005)
    if os.getpid() != PARENT:
        raise ValueError(f"bad job {job}")
    return job


def dies_in_a_helper(job: int) -> int:
    time.sleep(0.005)
    if os.getpid() != PARENT:
        os._exit(3)
    return job


def test_a_helper_error_is_raised_with_its_traceback():
    with pytest.raises(HelperFailed, match=r"(?s)failed:.*ValueError: bad job"):
        list(map_forked(fails_in_a_helper, list(range(40)), processes=2))
    assert multiprocessing.active_children() == []


def test_a_helper_that_dies_is_an_error_not_a_hang():
    with pytest.raises(HelperFailed, match=r"died \(exit code 3\)"):
        list(map_forked(dies_in_a_helper, list(range(40)), processes=2))
    assert multiprocessing.active_children() == []


def test_helpers_are_stopped_when_the_caller_stops_early():
    results = map_forked(slow_square, list(range(200)), processes=3)
    next(results)
    results.close()
    assert multiprocessing.active_children() == []
