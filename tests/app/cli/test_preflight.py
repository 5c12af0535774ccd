"""Start-up checks of `facestream run` about the gallery server: one line and a non-zero exit, never a blind run."""

import time

import pytest

from app.cli import main


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("wait", [0, 2])
def test_an_unreachable_server_at_start_is_one_line_and_exit_69_after_qdrant_wait_s(tmp_path, checkpoint_dir,
                                                                                   media_dir, closed_url, wait,
                                                                                   capsys):
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\nQDRANT_URL={closed_url}\n"
                   f"QDRANT_WAIT_S={wait}\nDISPLAY_MODE=none\n")
    t0 = time.monotonic()
    code = main(["--env", str(env), "run", "--source", str(media_dir / "video/short_hamilton_clip.mp4")])
    waited = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert code == 69
    assert err == (f"facestream: error: the Qdrant server at {closed_url} did not answer within QDRANT_WAIT_S={wait} "
                   "s: start it or fix QDRANT_URL (or raise QDRANT_WAIT_S for a server that is still starting)\n")
    assert out == ""
    assert wait - 0.5 <= waited <= wait + 10
    assert not (tmp_path / "gallery" / "spool").exists()  # nothing was queued for a run that never started


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_single_process_loop_makes_the_same_start_up_check(tmp_path, checkpoint_dir, media_dir, closed_url,
                                                              capsys):
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\nQDRANT_URL={closed_url}\n"
                   "DISPLAY_MODE=none\n")
    code = main(["--env", str(env), "run", "--single-process", "--source",
                 str(media_dir / "video/short_hamilton_clip.mp4")])
    err = capsys.readouterr().err
    assert code == 69 and len(err.strip().splitlines()) == 1 and "did not answer within QDRANT_WAIT_S=0 s" in err
