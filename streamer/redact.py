"""Keep camera passwords out of logs, ``/health`` and error messages.

Camera and server URLs often carry credentials (``rtsp://admin:pass@10.0.0.5/stream1``,
``...?token=...``). Those URLs appear in log lines, in JSON log fields shipped
to log collectors, in the ``/health`` answer of the metrics endpoint and in
FFmpeg's own error texts. :func:`redact` replaces the secret parts, keeping
what an operator needs to tell cameras apart (scheme, user name, host, path).

Example:
    >>> redact("cannot connect to rtsp://admin:s3cret@10.0.0.5:554/stream1 (refused)")
    'cannot connect to rtsp://admin:***@10.0.0.5:554/stream1 (refused)'
    >>> redact("rtsp://cam/live?channel=1&token=abc123: cannot connect")
    'rtsp://cam/live?channel=1&token=***: cannot connect'
"""

from __future__ import annotations

import logging
import re

#: Shown instead of a secret.
MASK = "***"

#: ``scheme://user:password@``: the password (up to the last ``@`` before the path: a password may hold one).
_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/]*(?=@)")
#: Query parameters whose values are credentials: names ending in password, token, key, signature, ...
#: (``access_token``, ``api_key``, S3's ``X-Amz-Signature`` / ``X-Amz-Credential``, Azure's ``sig``).
_SECRET_PARAMETER = re.compile(
    r"(?P<head>[?&;][\w.-]*?(?:password|passwd|pwd|pass|token|auth|key|secret|signature|sig|credential)=)"
    r"[^\s&;#'\")]*?(?=:?(?:[\s&;#'\")]|$))",  # a colon right before a space ends the message's URL, not the value
    re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URL password and credential query value replaced by :data:`MASK`."""
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_PARAMETER.sub(rf"\g<head>{MASK}", _PASSWORD.sub(rf"\g<head>{MASK}", text))


def redact_value(value):
    """:func:`redact` applied to a string, or to the strings in a dict, list or tuple (recursively);
    other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's message and its ``extra`` string fields."""

    def __init__(self, standard: set[str]) -> None:
        super().__init__()
        self.standard = standard

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for key, value in list(vars(record).items()):
            if key not in self.standard and not key.startswith("_"):
                setattr(record, key, redact_value(value))
        return True
