"""`facestream` command line: the only place that assembles a pipeline; nothing imports it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from app.errors import FacestreamError
from app.redact import redact, setup_logging
from engines.errors import EngineError

log = logging.getLogger("facestream")


def build_parser() -> argparse.ArgumentParser:
    from app.cli import bench, engines_cmd, people, run, tools
    from app.cli.helptext import Parser

    # every sub-parser is made by the parent's class, so all of them state their options' defaults
    parser = Parser(prog="facestream", description="Real-time face recognition on live video.")
    parser.add_argument("--env", default=".env", help="settings file read before the environment (default .env)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="what to do; `facestream COMMAND --help` for its options")
    sub.required = True
    for module in (run, people, tools, engines_cmd, bench):
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
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("facestream: interrupted", file=sys.stderr)
        return 130
    except (FacestreamError, EngineError) as exc:
        if args.debug:
            raise
        print(f"facestream: error: {redact(str(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except Exception as exc:  # one line for the unexpected too; the traceback with --debug
        if args.debug:
            raise
        print(f"facestream: error: {type(exc).__name__}: {redact(str(exc))} (run with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
