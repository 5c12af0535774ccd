"""`facestream` command line: the only place that assembles a pipeline; nothing imports it."""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys
import warnings

from app.errors import FacestreamError, Stopped
from app.redact import redact, setup_logging
from app.stages.capture import quiet_video_libraries
from engines.errors import EngineError

log = logging.getLogger("facestream")


def build_parser() -> argparse.ArgumentParser:
    from app.cli import bench, engines_cmd, people, run, sightings, tools
    from app.cli.helptext import Parser

    # every sub-parser is made by the parent's class, so all of them state their options' defaults
    parser = Parser(prog="facestream", description="Real-time face recognition on live video.")
    parser.add_argument("--env", default=".env", help="settings file read before the environment (default .env)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="what to do; `facestream COMMAND --help` for its options")
    sub.required = True
    for module in (run, people, sightings, tools, engines_cmd, bench):
        module.add_parsers(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"facestream: warning: {redact(str(message))}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # library warnings as one clean line, no source excerpt
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("DEBUG" if args.debug else "INFO")
    if args.debug:
        os.environ["FACESTREAM_DEBUG"] = "1"  # stage processes print tracebacks too
    quiet_video_libraries(args.debug)  # before any cv2 import here or in a stage process (they inherit it)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away (`| head`) is handled below
        return code
    except BrokenPipeError as exc:
        if _stdout_gone():
            return _reader_gone()
        return _unexpected(exc, args.debug)  # another pipe or socket: a real error
    except KeyboardInterrupt:
        print("facestream: stopped (Ctrl-C)", file=sys.stderr)
        return 130
    except Stopped as stop:  # the run said so in its last line
        return stop.exit_code
    except (FacestreamError, EngineError) as exc:
        if args.debug:
            raise
        print(f"facestream: error: {redact(str(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except Exception as exc:  # one line for the unexpected too; the traceback with --debug
        return _unexpected(exc, args.debug)


def _unexpected(exc: Exception, debug: bool) -> int:
    if debug:
        raise exc
    print(f"facestream: error: {type(exc).__name__}: {redact(str(exc))} (run with --debug for details)",
          file=sys.stderr)
    return 1


def _stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has closed it (poll says POLLERR on the write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a file
        return False


def _reader_gone() -> int:
    """stdout's reader closed the pipe (``facestream settings | head``): what it wanted, it has. Point stdout at
    /dev/null so the interpreter's last flush does not raise again, and end quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


if __name__ == "__main__":
    sys.exit(main())
