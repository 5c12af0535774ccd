"""Pipeline assembly checks that run before any process starts."""

import pytest

from app.cli.assemble import check_shared_memory
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


def test_the_list_is_one_source_per_stream_then_the_stages_and_on_a_gpu_detect_aligns(media_dir, monkeypatch):
    """One module builds the list; "detect and align on the GPU" is the same list without the align step (its
    queue sized for the crops), chosen there once."""
    from dataclasses import replace

    from app.cli.assemble import RunRequest, assemble
    from app.protocol import Source, Stage
    from app.settings import Settings

    clip = str(media_dir / "video/short_hamilton_clip.mp4")
    cpu = Settings.load(None, environ={"VIDEO_SOURCE": f"{clip},{clip}"})
    plan = assemble(cpu, RunRequest(headless=True))
    names = [s.name for s in plan.steps]
    assert names == ["capture0", "capture1", "detect", "align", "embed+track", "identify", "display"]
    assert [isinstance(s.stage, Source) for s in plan.steps] == [True, True] + [False] * 5
    assert all(isinstance(s.stage, Stage) for s in plan.steps[2:]) and plan.every and not plan.layout.live
    assert sorted(plan.layout.frames) == [0, 1] and [s.stage.stream for s in plan.steps[:2]] == [0, 1]
    gpu = assemble(replace(cpu, detector_backend="pytorch", device="cuda"), RunRequest(headless=True, live=True))
    steps = {s.name: s for s in gpu.steps}
    assert "align" not in steps and steps["detect"].stage.aligns and gpu.layout.live
    assert steps["detect"].out_bytes > 112 * 112 * 3 * cpu.max_faces > {s.name: s for s in plan.steps}[
        "detect"].out_bytes
