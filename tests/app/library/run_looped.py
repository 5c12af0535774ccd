"""``facestream run …`` replaying its file LOOPS times (``python -m tests.app.library.run_looped LOOPS ARGS…``):
what ``run --loop`` does, for the tests of a long-running pipeline, until that option lands."""

from __future__ import annotations

import sys

from app import cli


def main(loops: int, argv: list[str]) -> int:
    build = cli.build_parser

    def looped_parser():
        parser = build()
        parse = parser.parse_args

        def parse_args(args=None, namespace=None):
            ns = parse(args, namespace)
            ns.loops = loops
            return ns

        parser.parse_args = parse_args
        return parser

    cli.build_parser = looped_parser
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
