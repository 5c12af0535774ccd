"""Pipeline assembly checks that run before any process starts."""

import pytest

from app.cli.pipeline import check_shared_memory
from app.errors import FacestreamError


def test_rings_larger_than_free_shared_memory_are_one_clear_error(tmp_path):
    with pytest.raises(FacestreamError, match=r"need \d+ MiB of .* only \d+ MiB is free.*shm_size.*fewer streams"):
        check_shared_memory(1 << 60, 16, every=False, folder=str(tmp_path))
    check_shared_memory(1 << 20, 1, every=True, folder=str(tmp_path))  # a megabyte fits anywhere


def test_captures_sharing_one_frames_queue_count_its_drops_once():
    from types import SimpleNamespace as S

    from app.cli.pipeline import total_drops

    rows = [S(name="capture0", drops=40), S(name="capture1", drops=42), S(name="detect", drops=3),
            S(name="display", drops=0)]
    assert total_drops(rows) == 45  # 42 from the shared queue (the latest count), 3 torn frames in detect
    assert total_drops([S(name="capture", drops=7), S(name="detect", drops=1)]) == 8
