"""The one error type the CLI turns into a single clear line (no traceback unless --debug)."""


class FacestreamError(RuntimeError):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = 2
    user_facing = True  # the process runtime reports it as its one line, without a traceback
