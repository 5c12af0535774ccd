"""The program's own lines, as a user sees them: warnings for .env slips, quiet ends, one line per error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def facestream(env: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "--env", str(env), *args], capture_output=True, text=True,
                          timeout=60, cwd=env.parent, env={**os.environ, "LOG_LEVEL": "WARNING"}, **kw)


@pytest.mark.timeout(60)
def test_env_typo_is_one_warning_naming_the_closest_key(tmp_path):
    env = tmp_path / ".env"
    env.write_text("MATCH_TRESHOLD=0.5\nDET_SIZE=320\n")
    proc = facestream(env, "settings")
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        "facestream: warning: .env: unknown key MATCH_TRESHOLD is ignored — did you mean MATCH_THRESHOLD?"]
    assert "MATCH_THRESHOLD=0.35\n" in proc.stdout and "DET_SIZE=320\n" in proc.stdout


@pytest.mark.timeout(60)
def test_old_key_name_works_with_one_warning(tmp_path):
    env = tmp_path / ".env"
    env.write_text("MATCH_THRESH=0.7\n")
    proc = facestream(env, "settings")
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        "facestream: warning: MATCH_THRESH is now TRACK_MATCH_THRESH: rename it in .env"]
    assert "TRACK_MATCH_THRESH=0.7\n" in proc.stdout


@pytest.mark.timeout(60)
def test_a_missing_env_file_named_on_purpose_is_an_error(tmp_path):
    proc = facestream(tmp_path / "prod.env", "settings")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"facestream: error: --env {tmp_path / 'prod.env'}: file not found — check the path, or leave --env out "
        "to read .env"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [("settings",), ("settings", "--example")])
def test_a_reader_that_goes_away_ends_it_quietly(tmp_path, args):
    """`facestream settings | head -1`: the reader closes the pipe before everything is written."""
    env = tmp_path / ".env"
    env.write_text("")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "app", "--env", str(env), *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60, cwd=tmp_path)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 0


def test_a_broken_pipe_elsewhere_is_still_an_error(tmp_path, monkeypatch, capsys):
    """Only stdout's reader going away is quiet: a socket or pipe of our own breaking is a real failure."""
    from app.cli import main

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("app.cli.tools.cmd_settings", broken)
    env = tmp_path / ".env"
    env.write_text("")
    assert main(["--env", str(env), "settings"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "facestream: error: BrokenPipeError: [Errno 32] Broken pipe (run with --debug for details)"]
