"""Log output: one readable line per message, or one JSON object per line for log collectors.

Live-camera messages carry structured fields (``camera``, ``url``, ``event``,
``delay_s`` ...) through logging's ``extra``; the JSON format writes them as
keys, the text format keeps the message alone.

Example:
    >>> import logging
    >>> record = logging.makeLogRecord({"name": "streamer.live", "levelno": logging.WARNING,
    ...     "levelname": "WARNING", "msg": "camera door: cannot connect", "camera": "door", "event": "failed"})
    >>> line = JsonFormatter().format(record)
    >>> json.loads(line)["camera"], json.loads(line)["event"]
    ('door', 'failed')
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from streamer.redact import RedactingFilter, redact

#: Accepted values of ``--log-format``.
LOG_FORMATS = ("text", "json")
#: Attributes every LogRecord has: anything else on a record came through ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class OneLineFormatter(logging.Formatter):
    """``streamer: message`` for info, ``streamer: warning: message`` for warnings and worse."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"streamer: {level}{record.getMessage()}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    the record's ``extra`` fields, and ``exception`` (the traceback text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes each record to ``sys.stderr`` as it is at that moment, not as it was at setup, so logging
    survives a stderr that was replaced and closed since (pytest's capture, a host application)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property always answers sys.stderr
        pass


def json_logs(args) -> bool:
    """Whether the command line (an argparse namespace) asked for ``--log-format json``."""
    return getattr(args, "log_format", "text") == "json"


def setup_logging(log_format: str = "text", debug: bool = False, quiet: bool = False) -> None:
    """Send log records to stderr in ``log_format`` (``text`` or ``json``), URL passwords and tokens
    masked (:mod:`streamer.redact`).

    Args:
        log_format: one of :data:`LOG_FORMATS`.
        debug: everything, libraries included, at DEBUG.
        quiet: streamer's own messages from WARNING up only.

    Raises:
        ValueError: unknown ``log_format``.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else OneLineFormatter())
    handler.addFilter(RedactingFilter(_STANDARD))  # camera passwords never reach a log
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler], force=True)
    for name in ("streamer", "engines"):  # engines: model export, engine builds, GPU warm-up ("takes minutes")
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
