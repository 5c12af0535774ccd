"""The one error type the CLI turns into a single clear line (no traceback unless --debug)."""


class FacestreamError(RuntimeError):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = 2
    user_facing = True  # the process runtime reports it as its one line, without a traceback


class Stopped(Exception):  # noqa: N818 - not an error: the user asked for it
    """The user stopped a run (Ctrl-C, SIGTERM) and the run has already said so in its last line: the CLI exits
    with ``exit_code`` (130, 143) and prints nothing more."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"stopped (exit {exit_code})")
        self.exit_code = exit_code
