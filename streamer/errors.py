"""User-facing errors: each one is printed as a single line, without traceback."""


class StreamerError(Exception):
    """An error caused by input, configuration or environment, not by a bug.

    The CLI prints ``streamer: error: <message>`` and exits with ``exit_code``.
    """

    exit_code = 2


class InputError(StreamerError):
    """The input cannot be opened or decoded."""

    exit_code = 3


class OutputError(StreamerError):
    """The output cannot be written."""

    exit_code = 4


class BackendError(StreamerError):
    """The requested compute backend or device is not available."""

    exit_code = 5


class FrameAbort(StreamerError):
    """A stage failed on a frame and the policy is ``on_error: abort``."""

    exit_code = 6


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: the job stops as on Ctrl-C (what is written so far is finalized) and the
    CLI exits with ``128 + signum`` (143 for SIGTERM, 129 for SIGHUP), as shells report a signal.

    Args:
        signum: the signal's number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def describe_error(exc: BaseException) -> str:
    """An OS or FFmpeg error in a few words for a one-line message, e.g. 'No space left on device'
    (the OS's text without the file name, FFmpeg's without its log excerpt)."""
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return text.split(";")[0].rstrip(".") or type(exc).__name__
