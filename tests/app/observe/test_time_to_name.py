"""Time to a name: the first mark of each kind per track wins (a restarted identify stage counts once), tracks
never named are counted apart, and the summary line says p50/p95/max."""

from __future__ import annotations

import pytest

from app.cli.summary import time_to_name_line
from app.events.spool import MarkLog
from app.events.tap import NAMED_MARK, PUBLISHED_MARK, UNNAMED_MARK
from app.observe.time_to_name import TimeToName, time_to_name

pytestmark = pytest.mark.timeout(30)


def test_first_mark_wins_and_unnamed_tracks_are_apart():
    ttn = TimeToName()
    for track, delay in ((1, 0.1), (2, 0.3), (3, 0.2)):
        ttn.add((NAMED_MARK, "r", "0", track, 100.0, 100.0 + delay))
    ttn.add((NAMED_MARK, "r", "0", 2, 100.0, 109.0))  # again, from a restarted identify: not counted
    ttn.add((PUBLISHED_MARK, "r", "0", 1, 100.0, 100.25))
    ttn.add((UNNAMED_MARK, "r", "0", 4, 100.0, None))
    ttn.add((UNNAMED_MARK, "r", "0", 1, 100.0, None))  # named before: not "never named"
    named = ttn.capture()
    assert named.count == 3 and named.p50 == pytest.approx(0.2) and named.max == pytest.approx(0.3)
    assert named.p95 == pytest.approx(0.29)
    assert ttn.publish().count == 1 and ttn.publish().max == pytest.approx(0.25)
    line = time_to_name_line(ttn)
    assert line == ("facestream: time to name: first detected → named p50 200 ms, p95 290 ms, max 300 ms (3 tracks); "
                    "→ person.appeared published p50 250 ms, p95 250 ms, max 250 ms (1 track); 1 track never named")
    assert time_to_name_line(TimeToName()) is None


def test_marks_written_by_processes_are_read_back_partial_lines_skipped(tmp_path):
    MarkLog(tmp_path).put((NAMED_MARK, "r", "0", 7, 10.0, 10.5))
    with open(tmp_path / "marks-999.jsonl", "w") as killed:  # a process killed in the middle of a line
        killed.write('["named", "r", "0", 8, 10.0, 10.2]\n["named", "r", "0", 9, 1')
    result = time_to_name(tmp_path)
    assert sorted(result.named.values()) == pytest.approx([0.2, 0.5])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_live_run_reports_time_to_name_before_its_end_line(enrolled_env, media_dir, tmp_path):
    """--realtime replays the clip as a camera would: the line before the end line gives the time to a name of
    the tracks named (Lin-Manuel's close-up at least); an every-frame run does not (its capture times are not
    real time)."""
    import re

    from tests.app.test_pipeline_video import run_cli

    log = tmp_path / "tracks.jsonl"
    proc = run_cli(enrolled_env, "run", "--realtime", "--headless", "--log-tracks", str(log), "--source",
                   str(media_dir / "video/short_hamilton_clip.mp4"))
    assert proc.returncode == 0, proc.stderr
    *_, ttn, end = proc.stderr.strip().splitlines()
    assert end.startswith("facestream: finished: ")
    found = re.match(r"facestream: time to name: first detected → named p50 (\d+) ms, p95 (\d+) ms, max (\d+) ms "
                     r"\((\d+) tracks?\)", ttn)
    assert found, ttn
    p50, p95, top, tracks = map(int, found.groups())
    assert tracks >= 1 and p50 <= p95 <= top
