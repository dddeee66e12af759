"""The job worker's memory release (``jobs.release_freed_memory``, README "Soak")."""

from __future__ import annotations

import platform

import pytest

from streamrec_trainer import jobs


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_release_after_each_job_is_not_a_silent_no_op_on_glibc() -> None:
    """On glibc (the images, the local stack) the worker's release finds ``malloc_trim``; a
    lookup that failed would leave the trainer keeping every job's freed memory again."""
    assert jobs._MALLOC_TRIM is not None
    assert jobs._MALLOC_TRIM(0) in (0, 1)
    jobs.release_freed_memory()
